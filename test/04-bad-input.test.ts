// Bad input: a TypeError/RangeError that names the tensor, what was expected and what came; the
// process lives and the next valid call is still exact. Each backend, and the raw native exports.
import { describe, expect, it } from 'vitest';
import { forward, forwardBackward, initParams, predict, setNumThreads } from '../lib';
import { coreBinding } from '../lib/binding';
import { jsonCases, caseParams, errEps, typed } from './helpers';

const golden = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
const { B, D, H, C } = golden.dims;

function fresh() {
  const p = caseParams(golden);
  return { p, X: typed('float64', golden.inputs.X), y: Int32Array.from(golden.inputs.y) };
}

/** After a refused call, a valid call still reproduces PyTorch's numbers. */
function stillExact(backend: 'native' | 'ts') {
  const { p, X, y } = fresh();
  const r = forwardBackward(p, X, y, { backend, inputGrad: true });
  expect(errEps(r.grads.dW1, golden.expected.dW1, 'float64')).toBeLessThanOrEqual(8);
  expect(errEps(r.grads.dX!, golden.expected.dX, 'float64')).toBeLessThanOrEqual(8);
}

interface Api {
  fb: typeof forwardBackward;
  forward: typeof forward;
  predict: typeof predict;
}
type Case = [string, typeof TypeError | typeof RangeError, RegExp, (t: ReturnType<typeof fresh>, api: Api) => unknown];
/** A raw-export case: what, the error class, the call, and (the kernel primitives') what the message says. */
type RawCase = readonly [string, typeof TypeError | typeof RangeError, () => unknown, RegExp?];

/** The public functions with `backend` fixed, so every case runs through each backend. */
function apiFor(backend: 'native' | 'ts'): Api {
  return {
    fb: ((p, X, y, o) => forwardBackward(p, X, y, { backend, ...o })) as typeof forwardBackward,
    forward: ((p, X, o) => forward(p, X, { backend, ...o })) as typeof forward,
    predict: ((p, X, o) => predict(p, X, { backend, ...o })) as typeof predict,
  };
}

const cases: Case[] = [
  ['one-hot labels (length B·C)', RangeError, /for y .*one-hot/, ({ p, X, y }, api) => api.fb(p, X, Array.from({ length: B * C }, (_, i) => (i % C === y[Math.floor(i / C)] ? 1 : 0)))],
  ['labels shaped [B,1]', TypeError, /for y but received nested Array \[4,1\]/, ({ p, X, y }, api) => api.fb(p, X, Array.from(y, (v) => [v]) as unknown as number[])],
  ['one-hot rows as nested arrays', TypeError, /not one-hot rows/, ({ p, X }, api) => api.fb(p, X, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]] as unknown as number[])],
  ['label = C', RangeError, /labels in \[0, 3\) for y but received 3 at index 2/, ({ p, X }, api) => api.fb(p, X, [0, 1, 3, 2])],
  ['negative label', RangeError, /labels in \[0, 3\) for y but received -1 at index 0/, ({ p, X }, api) => api.fb(p, X, new Int32Array([-1, 1, 2, 0]))],
  ['non-integer label', TypeError, /integer class ids for y but received 1.5 at index 1/, ({ p, X }, api) => api.fb(p, X, [0, 1.5, 2, 0])],
  ['float labels array', TypeError, /Int32Array or an array of integer class ids for y but received Float64Array/, ({ p, X }, api) => api.fb(p, X, new Float64Array([0, 1, 2, 0]))],
  ['empty batch', RangeError, /at least one example/, ({ p }, api) => api.fb(p, new Float64Array(0), [])],
  ['X too short for B from y', RangeError, /Expected 20 elements \(\[B,D\] with B = 4 from y, D = 5\) for X but received Float64Array of length 15/, ({ p, X, y }, api) => api.fb(p, X.subarray(0, 15), y)],
  ['X length not a multiple of D', RangeError, /Expected 20 elements for X but received Float64Array of length 19/, ({ p, X, y }, api) => api.fb(p, X.subarray(0, 19), y)],
  ['W1 not a multiple of H', RangeError, /multiple of H = 10 .* for params.W1 but received Float64Array of length 49/, ({ p, X, y }, api) => api.fb({ ...p, W1: p.W1.subarray(0, 49) }, X, y)],
  ['W2 wrong length', RangeError, /Expected 30 elements for params.W2 but received Float64Array of length 29/, ({ p, X, y }, api) => api.fb({ ...p, W2: p.W2.subarray(0, 29) }, X, y)],
  ['b2 / W2 disagree', RangeError, /for params.W2/, ({ p, X, y }, api) => api.fb({ ...p, b2: new Float64Array(4) }, X, y)],
  ['declared D disagrees', RangeError, /Expected 10 elements for params.W1 but received Float64Array of length 50/, ({ p, X, y }, api) => api.fb({ ...p, D: 1 }, X, y)],
  ['non-integer dim', RangeError, /positive 32-bit integer for params.H but received 2.5/, ({ p, X, y }, api) => api.fb({ ...p, H: 2.5 }, X, y)],
  ['zero dim in initParams', RangeError, /positive 32-bit integer for dims.H but received 0/, (_t, api) => initParams({ D: 2, H: 0, C: 2 })],
  ['negative dim in initParams', RangeError, /for dims.D but received -3/, (_t, api) => initParams({ D: -3, H: 2, C: 2 })],
  ['string dim in initParams', TypeError, /positive integer for dims.C but received "3"/, (_t, api) => initParams({ D: 2, H: 2, C: '3' as unknown as number })],
  ['mixed dtypes (X float32, params float64)', TypeError, /one dtype \(params are float64\) for X but received Float32Array/, ({ p, y }, api) => api.fb(p, new Float32Array(B * D), y)],
  ['mixed dtypes inside params', TypeError, /Float64Array \(the dtype of X\) for params.b1 but received Float32Array/, ({ p, X, y }, api) => api.fb({ ...p, b1: new Float32Array(H) }, X, y)],
  ['Uint8Array X', TypeError, /Float64Array or Float32Array for X but received Uint8Array/, ({ p, y }, api) => api.fb(p, new Uint8Array(B * D) as unknown as Float64Array, y)],
  ['plain array weights', TypeError, /for params.W1 but received Array of length 50/, ({ p, X, y }, api) => api.fb({ ...p, W1: Array.from(p.W1) as unknown as Float64Array }, X, y)],
  ['missing params.b2', TypeError, /for params.b2 but received undefined/, ({ p, X, y }, api) => api.fb({ ...p, b2: undefined as unknown as Float64Array }, X, y)],
  ['params not an object', TypeError, /for params but received null/, ({ X, y }, api) => api.fb(null as unknown as never, X, y)],
  ['unknown activation', RangeError, /one of 'relu', 'sigmoid', 'tanh' for opts.activation but received "gelu"/, ({ p, X, y }, api) => api.fb(p, X, y, { activation: 'gelu' as never })],
  ['unknown reduction', RangeError, /for opts.reduction but received "none"/, ({ p, X, y }, api) => api.fb(p, X, y, { reduction: 'none' as never })],
  ['unknown backend', RangeError, /for opts.backend but received "cuda"/, ({ p, X, y }, api) => api.fb(p, X, y, { backend: 'cuda' as never })],
  ['non-boolean inputGrad', TypeError, /a boolean for opts.inputGrad but received 1/, ({ p, X, y }, api) => api.fb(p, X, y, { inputGrad: 1 as never })],
  ['out buffer of the wrong size', RangeError, /Expected 50 elements for out.dW1 but received Float64Array of length 49/, ({ p, X, y }, api) => api.fb(p, X, y, { out: { dW1: new Float64Array(49) } })],
  ['out buffer of the wrong dtype', TypeError, /for out.db2 but received Float32Array/, ({ p, X, y }, api) => api.fb(p, X, y, { out: { db2: new Float32Array(C) } })],
  ['out.dX without inputGrad', TypeError, /no out.dX when inputGrad is false/, ({ p, X, y }, api) => api.fb(p, X, y, { inputGrad: false, out: { dX: new Float64Array(B * D) } })],
  ['detached X', RangeError, /for X but received Float64Array of length 0 \(detached buffer\)/, ({ p, X, y }, api) => {
    structuredClone(X.buffer, { transfer: [X.buffer as ArrayBuffer] });
    return api.fb(p, X, y);
  }],
  ['detached W1', RangeError, /for params.W1 .*detached buffer/, ({ p, X, y }, api) => {
    structuredClone(p.W1.buffer, { transfer: [p.W1.buffer as ArrayBuffer] });
    return api.fb(p, X, y);
  }],
  ['forward: X not a multiple of D', RangeError, /multiple of D = 5 .* for X but received Float64Array of length 7/, ({ p }, api) => api.forward(p, new Float64Array(7))],
  ['predict: NaN input', RangeError, /Expected finite values in X but received NaN at index 3/, ({ p }, api) => api.predict(p, new Float64Array(10).fill(NaN, 3, 4))],
  ['threads 0', RangeError, /positive 32-bit integer for threads but received 0/, (_t, api) => setNumThreads(0)],
];

describe.each(['native', 'ts'] as const)('%s: bad input is a clear error, never a crash', (backend) => {
  it.each(cases)('%s', (_, Kind, message, call) => {
    let thrown: unknown;
    try {
      call(fresh(), apiFor(backend));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Kind);
    expect((thrown as Error).message).toMatch(message);
    stillExact(backend);
  });

  // Non-finite values anywhere in any tensor, at every index: the native path detects them on Z1
  // and the logits (see native/core/mlp.h), so every position is exercised, not just one.
  for (const name of ['X', 'W1', 'b1', 'W2', 'b2'] as const) {
    it(`NaN, +Infinity or −Infinity at any index of ${name}`, () => {
      const base = fresh();
      const len = name === 'X' ? base.X.length : base.p[name].length;
      for (let i = 0; i < len; i++) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const t = fresh();
          const target = name === 'X' ? t.X : t.p[name];
          target[i] = bad;
          const out = { dW1: new Float64Array(D * H).fill(7) };
          expect(() => forwardBackward(t.p, t.X, t.y, { backend, out, accumulate: true })).toThrow(
            new RangeError(`Expected finite values in ${name} but received ${bad} at index ${i}`),
          );
          expect(out.dW1.every((v) => v === 7)).toBe(true); // nothing written on error
        }
      }
      stillExact(backend);
    });
  }

  it('finite inputs whose forward pass overflows are an error, not an Infinity loss', () => {
    const t = fresh();
    t.p.W1.fill(1e300);
    t.X.fill(1e300);
    expect(() => forwardBackward(t.p, t.X, t.y, { backend })).toThrow(/Z1 = X·W1 \+ b1 overflowed/);
    stillExact(backend);
  });

  it('finite logits too far apart for the loss are an error, and nothing is written', () => {
    const p = { W1: new Float64Array([1, 0, 0, 1]), b1: new Float64Array(2), W2: new Float64Array([1e308, -1e308, -1e308, 1e308]), b2: new Float64Array(2) };
    const out = { dW1: new Float64Array(4).fill(7) };
    expect(() => forwardBackward(p, new Float64Array([1, 0]), [1], { backend, out })).toThrow(
      new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)'),
    );
    expect(out.dW1.every((v) => v === 7)).toBe(true);
    stillExact(backend);
  });

  it('a finite loss whose gradient overflows names the gradient (dW1 = X·dZ1 ≈ 1e200·2e200)', () => {
    const p = { W1: new Float64Array([1e-200]), b1: new Float64Array(1), W2: new Float64Array([1e200, -1e200]), b2: new Float64Array(2) };
    const r = () => forwardBackward(p, new Float64Array([1e200]), [1], { backend, inputGrad: true });
    expect(r).toThrow(new RangeError('Expected finite gradients but dW1 overflowed (inputs or weights too large for the dtype)'));
    stillExact(backend);
  });

  it('an out buffer that aliases an input or another output', () => {
    const t = fresh();
    const shared = new Float64Array(200);
    expect(() => forwardBackward(t.p, t.X, t.y, { backend, out: { dW1: t.p.W1 } })).toThrow(/dW1 not to share memory with (params\.)?W1/);
    expect(() =>
      forwardBackward(t.p, t.X, t.y, { backend, out: { dW1: shared.subarray(0, 50), dW2: shared.subarray(40, 70) } }),
    ).toThrow(/not to share memory/);
    stillExact(backend);
  });
});

describe('raw native exports never trust their caller', () => {
  const b = coreBinding();
  const { p, X, y } = fresh();
  const ws = new Float64Array(3 * B * H + 3 * B * C);
  const g = () => [new Float64Array(B * D), new Float64Array(D * H), new Float64Array(H), new Float64Array(H * C), new Float64Array(C)] as const;
  const args = (over: Record<number, unknown> = {}) => {
    const a: unknown[] = [X, y, p.W1, p.b1, p.W2, p.b2, ws, ...g(), B, D, H, C, 0, 0, false];
    for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
    return a as Parameters<typeof b.forwardBackward>;
  };
  const raw: RawCase[] = [
    ['no arguments', TypeError, () => (b.forwardBackward as unknown as () => number)()],
    ['W1 too short for the dims', RangeError, () => b.forwardBackward(...args({ 2: p.W1.subarray(0, 10) }))],
    ['dims larger than the buffers', RangeError, () => b.forwardBackward(...args({ 13: 5000 }))],
    ['B·D overflowing', RangeError, () => b.forwardBackward(...args({ 12: 2 ** 31 - 1, 13: 2 ** 31 - 1 }))],
    ['negative dim', RangeError, () => b.forwardBackward(...args({ 14: -1 }))],
    ['label out of range', RangeError, () => b.forwardBackward(...args({ 1: new Int32Array([0, 1, 9, 0]) }))],
    ['labels as Float64Array', TypeError, () => b.forwardBackward(...args({ 1: new Float64Array(4) }))],
    ['activation code 7', RangeError, () => b.forwardBackward(...args({ 16: 7 }))],
    ['accumulate not boolean', TypeError, () => b.forwardBackward(...args({ 18: 1 }))],
    ['workspace aliasing W2', RangeError, () => b.forwardBackward(...args({ 6: new Float64Array(p.W2.buffer, 0, ws.length) }))],
    ['gemm with A too small', RangeError, () => b.gemm(false, false, 4, 4, 4, 1, new Float64Array(15), new Float64Array(16), 0, new Float64Array(16))],
    ['gemm with mixed dtypes', TypeError, () => b.gemm(false, false, 2, 2, 2, 1, new Float64Array(4), new Float32Array(4), 0, new Float64Array(4))],
    ['gemm output aliasing an input', RangeError, () => { const m = new Float64Array(4); return b.gemm(false, false, 2, 2, 2, 1, m, new Float64Array(4), 0, m); }],
    ['optimizerUpdate with an unknown kind', RangeError, () => b.optimizerUpdate(new Float64Array(4), new Float64Array(4), null, null, 9, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate with g shorter than W', RangeError, () => b.optimizerUpdate(new Float64Array(4), new Float64Array(3), null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate with g of another dtype', TypeError, () => b.optimizerUpdate(new Float64Array(4), new Float32Array(4), null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate Adam without its v slot', TypeError, () => b.optimizerUpdate(new Float64Array(4), new Float64Array(4), new Float64Array(4), null, 3, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate with g aliasing W', RangeError, () => { const w = new Float64Array(4); return b.optimizerUpdate(w, w, null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0); }],
    ['optimizerUpdate with lr NaN', RangeError, () => b.optimizerUpdate(new Float64Array(4), new Float64Array(4), null, null, 0, NaN, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate with t = 0', RangeError, () => b.optimizerUpdate(new Float64Array(4), new Float64Array(4), null, null, 0, 0.1, 0, 0.9, 0.9, 0.999, 1e-8, 0)],
    ...kernelCases(b),
  ];
  for (const [name, Kind, call, message] of raw) {
    it(name, () => {
      let thrown: unknown;
      try {
        call();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(Kind);
      if (message) expect((thrown as Error).message).toMatch(message);
      stillExact('native');
    });
  }

  // The kernel primitives on tiny examples worked by hand: exact values wherever the arithmetic is
  // exact in binary, and to within a few ulps where exp/log/tanh are involved.
  describe.each(['float64', 'float32'] as const)('kernel primitives compute the hand-worked values (%s)', (dtype) => {
    const A = dtype === 'float64' ? Float64Array : Float32Array;
    const ulps = dtype === 'float64' ? 2 ** -52 : 2 ** -23;
    const near = (got: ArrayLike<number>, want: number[]) => {
      expect(got.length).toBe(want.length);
      want.forEach((w, i) => expect(Math.abs(got[i] - w)).toBeLessThanOrEqual(4 * ulps * Math.max(1, Math.abs(w))));
    };

    it('broadcastRows copies bias into every row, overwriting what was there', () => {
      const out = new A(6).fill(9);
      b.broadcastRows(A.from([1, -2, 0.5]), out, 2, 3);
      expect(Array.from(out)).toEqual([1, -2, 0.5, 1, -2, 0.5]);
      const col = new A(3).fill(9);
      b.broadcastRows(A.from([4]), col, 3, 1);
      expect(Array.from(col)).toEqual([4, 4, 4]);
    });

    it('sumRows sums the rows; accumulate adds to db, otherwise db is overwritten', () => {
      const dZ = A.from([1, 2, 3, 4, 5, 6]); // [[1,2,3],[4,5,6]]
      const db = A.from([10, 20, 30]);
      b.sumRows(dZ, db, 2, 3, true);
      expect(Array.from(db)).toEqual([15, 27, 39]);
      b.sumRows(dZ, db, 2, 3, false);
      expect(Array.from(db)).toEqual([5, 7, 9]);
      b.sumRows(dZ.subarray(0, 3), db, 1, 3, false); // the first row alone
      expect(Array.from(db)).toEqual([1, 2, 3]);
    });

    it('activationForward: relu, sigmoid and tanh at points whose values are known', () => {
      const Ar = new A(4).fill(9);
      b.activationForward(0, A.from([-2, -0, 0, 3.5]), Ar);
      expect(Array.from(Ar)).toEqual([0, 0, 0, 3.5]);
      const As = new A(3);
      b.activationForward(1, A.from([0, Math.log(3), -Math.log(3)]), As); // σ(ln 3) = 1/(1 + 1/3)
      near(As, [0.5, 0.75, 0.25]);
      const At = new A(3);
      b.activationForward(2, A.from([0, Math.log(2), -Math.log(2)]), At); // tanh(ln 2) = (2 − ½)/(2 + ½)
      near(At, [0, 0.6, -0.6]);
    });

    it("activationBackward: relu' is 0 at Z = 0, σ' = A(1 − A), tanh' = 1 − A²", () => {
      const dA = A.from([5, 5, 5, 5]);
      b.activationBackward(0, A.from([-1, 0, 1e-30, 2]), new A(4), dA);
      expect(Array.from(dA)).toEqual([0, 0, 5, 5]);
      const dS = A.from([1, 4, 2]);
      b.activationBackward(1, new A(3), A.from([0.5, 0.25, 1]), dS); // A(1 − A) = ¼, 3/16, 0
      expect(Array.from(dS)).toEqual([0.25, 0.75, 0]);
      const dT = A.from([1, 2, 3]);
      b.activationBackward(2, new A(3), A.from([0.5, -0.5, 0]), dT); // 1 − A² = ¾, ¾, 1
      expect(Array.from(dT)).toEqual([0.75, 1.5, 3]);
      // Z and A are both inputs: they may be one buffer.
      const Z = A.from([-1, 3]);
      const d = A.from([2, 2]);
      b.activationBackward(0, Z, Z, d);
      expect(Array.from(d)).toEqual([0, 2]);
    });

    it('softmaxCrossEntropy: equal logits give probs ½ and a loss of log 2 per row; the loss is summed', () => {
      const probs = new A(4).fill(9);
      const loss = b.softmaxCrossEntropy(A.from([0, 0, 0, 0]), Int32Array.from([0, 1]), probs, 2, 2);
      expect(Array.from(probs)).toEqual([0.5, 0.5, 0.5, 0.5]);
      expect(Math.abs(loss - 2 * Math.LN2)).toBeLessThanOrEqual(4 * ulps);
      // Logits [0, ln 3]: probs [¼, ¾]; the loss of label 0 is −log ¼ = log 4, of label 1 log(4/3).
      const p2 = new A(4);
      const l2 = b.softmaxCrossEntropy(A.from([0, Math.log(3), 0, Math.log(3)]), Int32Array.from([0, 1]), p2, 2, 2);
      near(p2, [0.25, 0.75, 0.25, 0.75]);
      expect(Math.abs(l2 - Math.log(4) - Math.log(4 / 3))).toBeLessThanOrEqual(8 * ulps);
      // Shifted by 1000 (exp(1000) overflows even float64): the same answer, since the max is taken out.
      const p3 = new A(2);
      const l3 = b.softmaxCrossEntropy(A.from([1000, 1000]), Int32Array.from([1]), p3, 1, 2);
      expect(Array.from(p3)).toEqual([0.5, 0.5]);
      expect(Math.abs(l3 - Math.LN2)).toBeLessThanOrEqual(4 * ulps);
      // C = 1: the only class has probability 1 and loss 0, exactly.
      const p4 = new A(3);
      expect(b.softmaxCrossEntropy(A.from([-7, 0, 12]), Int32Array.from([0, 0, 0]), p4, 3, 1)).toBe(0);
      expect(Array.from(p4)).toEqual([1, 1, 1]);
    });

    it('softmaxCrossEntropyBackward: (probs − onehot(y)) scaled by 1/B for mean, 1 for sum', () => {
      const probs = A.from([0.5, 0.5, 0.25, 0.75, 1, 0, 0, 1]);
      const y = Int32Array.from([0, 1, 0, 0]);
      const dZ = new A(8).fill(9);
      b.softmaxCrossEntropyBackward(probs, y, dZ, 4, 2, 1);
      expect(Array.from(dZ)).toEqual([-0.5, 0.5, 0.25, -0.25, 0, 0, -1, 1]);
      b.softmaxCrossEntropyBackward(probs, y, dZ, 4, 2, 0); // mean over B = 4: a quarter of the above
      expect(Array.from(dZ)).toEqual([-0.125, 0.125, 0.0625, -0.0625, 0, 0, -0.25, 0.25]);
    });

    it('allFinite: false for NaN, +Infinity or −Infinity anywhere; true for the extremes of the finite range', () => {
      const max = dtype === 'float64' ? Number.MAX_VALUE : 3.4028234663852886e38;
      const tiny = dtype === 'float64' ? 5e-324 : 1.401298464324817e-45;
      expect(b.allFinite(A.from([1, -0, max, -max, tiny]))).toBe(true);
      expect(b.allFinite(new A(0))).toBe(true);
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (let i = 0; i < 5; i++) {
          const x = A.from([1, 2, 3, 4, 5]);
          x[i] = bad;
          expect(b.allFinite(x)).toBe(false);
        }
      }
    });
  });
});

/** The raw-exports cases for the kernel primitives (native/addon/kernels_glue.cc). */
function kernelCases(b: ReturnType<typeof coreBinding>): RawCase[] {
  const f64 = (n: number) => new Float64Array(n);
  const f32 = (n: number) => new Float32Array(n);
  const labels = () => Int32Array.from([0, 1, 2, 0]);
  const detached = (n: number) => {
    const a = f64(n);
    structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
    return a;
  };
  const max = 2 ** 31 - 1;
  const anyArgs = (f: unknown) => f as (...a: unknown[]) => unknown;
  // Outputs laid over the bytes of an input, and y as an Int32Array inside probs' or dZ's buffer.
  const mem = new Float64Array(32);
  const yBuf = new ArrayBuffer(8 + 12 * 8);
  const yIn = new Int32Array(yBuf, 0, 4).fill(0);
  const overY = new Float64Array(yBuf, 8, 12);
  return [
    // broadcastRows(bias, out, rows, cols)
    ['broadcastRows with no arguments', TypeError, () => anyArgs(b.broadcastRows)(), /Float64Array or Float32Array for bias/],
    ['broadcastRows with an Int32Array bias', TypeError, () => anyArgs(b.broadcastRows)(new Int32Array(3), f64(6), 2, 3), /for bias but received Int32Array/],
    ['broadcastRows with out of another dtype', TypeError, () => b.broadcastRows(f64(3), f32(6), 2, 3), /Expected Float64Array for out but received Float32Array/],
    ['broadcastRows with out shorter than rows·cols', RangeError, () => b.broadcastRows(f64(3), f64(5), 2, 3), /Expected 6 elements for out but received 5/],
    ['broadcastRows with bias longer than cols', RangeError, () => b.broadcastRows(f64(4), f64(6), 2, 3), /Expected 3 elements for bias but received 4/],
    ['broadcastRows with rows 0', RangeError, () => b.broadcastRows(f64(3), f64(0), 0, 3), /positive 32-bit integer for rows but received 0/],
    ['broadcastRows with cols 1.5', RangeError, () => b.broadcastRows(f64(3), f64(6), 4, 1.5), /positive 32-bit integer for cols/],
    ['broadcastRows with rows·cols overflowing', RangeError, () => b.broadcastRows(f64(3), f64(6), max, max), /size that fits in memory for out/],
    ['broadcastRows with rows as a string', TypeError, () => anyArgs(b.broadcastRows)(f64(3), f64(6), '2', 3), /a number for rows/],
    ['broadcastRows with cols missing', TypeError, () => anyArgs(b.broadcastRows)(f64(3), f64(6), 2), /a number for cols/],
    ['broadcastRows with out sharing bytes with bias', RangeError, () => b.broadcastRows(mem.subarray(0, 3), mem.subarray(2, 8), 2, 3), /out not to share memory with bias/],
    ['broadcastRows with a detached out', RangeError, () => b.broadcastRows(f64(3), detached(6), 2, 3), /Expected 6 elements for out but received 0/],
    // sumRows(dZ, db, rows, cols, accumulate)
    ['sumRows with mixed dtypes', TypeError, () => b.sumRows(f32(6), f64(3), 2, 3, false), /Expected Float32Array for db but received Float64Array/],
    ['sumRows with dZ longer than rows·cols', RangeError, () => b.sumRows(f64(7), f64(3), 2, 3, false), /Expected 6 elements for dZ but received 7/],
    ['sumRows with db shorter than cols', RangeError, () => b.sumRows(f64(6), f64(2), 2, 3, false), /Expected 3 elements for db but received 2/],
    ['sumRows with rows −1', RangeError, () => b.sumRows(f64(6), f64(3), -1, 3, false), /positive 32-bit integer for rows but received -1/],
    ['sumRows with cols NaN', RangeError, () => b.sumRows(f64(6), f64(3), 2, NaN, false), /positive 32-bit integer for cols/],
    ['sumRows with rows·cols overflowing', RangeError, () => b.sumRows(f64(6), f64(3), max, max, false), /size that fits in memory for dZ/],
    ['sumRows with accumulate 1', TypeError, () => b.sumRows(f64(6), f64(3), 2, 3, 1 as unknown as boolean), /a boolean for accumulate/],
    ['sumRows with accumulate missing', TypeError, () => anyArgs(b.sumRows)(f64(6), f64(3), 2, 3), /a boolean for accumulate/],
    ['sumRows with db inside dZ', RangeError, () => b.sumRows(mem.subarray(0, 6), mem.subarray(5, 8), 2, 3, true), /db not to share memory with dZ/],
    ['sumRows with a detached dZ', RangeError, () => b.sumRows(detached(6), f64(3), 2, 3, false), /Expected 6 elements for dZ but received 0/],
    // activationForward(act, Z, A)
    ['activationForward with activation code 3', RangeError, () => b.activationForward(3, f64(4), f64(4)), /integer in \[0, 3\) for activation/],
    ['activationForward with activation code −1', RangeError, () => b.activationForward(-1, f64(4), f64(4)), /integer in \[0, 3\) for activation/],
    ['activationForward with activation code 0.5', RangeError, () => b.activationForward(0.5, f64(4), f64(4)), /integer in \[0, 3\) for activation/],
    ['activationForward with activation "relu"', TypeError, () => anyArgs(b.activationForward)('relu', f64(4), f64(4)), /a number for activation/],
    ['activationForward with a Uint8Array Z', TypeError, () => anyArgs(b.activationForward)(0, new Uint8Array(4), f64(4)), /Float64Array or Float32Array for Z but received Uint8Array/],
    ['activationForward with A shorter than Z', RangeError, () => b.activationForward(1, f64(4), f64(3)), /Expected 4 elements for A but received 3/],
    ['activationForward with mixed dtypes', TypeError, () => b.activationForward(2, f64(4), f32(4)), /Expected Float64Array for A but received Float32Array/],
    ['activationForward with A being Z', RangeError, () => { const z = f64(4); return b.activationForward(0, z, z); }, /A not to share memory with Z/],
    ['activationForward with A missing', TypeError, () => anyArgs(b.activationForward)(0, f64(4)), /Expected Float64Array for A/],
    ['activationForward with a detached Z', RangeError, () => b.activationForward(0, detached(4), f64(4)), /Expected 0 elements for A but received 4/],
    // activationBackward(act, Z, A, dA)
    ['activationBackward with activation code 7', RangeError, () => b.activationBackward(7, f64(4), f64(4), f64(4)), /integer in \[0, 3\) for activation/],
    ['activationBackward with a plain-array Z', TypeError, () => anyArgs(b.activationBackward)(0, [1, 2, 3, 4], f64(4), f64(4)), /Float64Array or Float32Array for Z/],
    ['activationBackward with A longer than Z', RangeError, () => b.activationBackward(1, f64(4), f64(5), f64(4)), /Expected 4 elements for A but received 5/],
    ['activationBackward with dA of another dtype', TypeError, () => b.activationBackward(2, f32(4), f32(4), f64(4)), /Expected Float32Array for dA but received Float64Array/],
    ['activationBackward with dA sharing bytes with Z', RangeError, () => b.activationBackward(0, mem.subarray(0, 4), f64(4), mem.subarray(3, 7)), /dA not to share memory with Z/],
    ['activationBackward with dA being A', RangeError, () => { const a = f64(4); return b.activationBackward(1, f64(4), a, a); }, /dA not to share memory with A/],
    ['activationBackward with dA missing', TypeError, () => anyArgs(b.activationBackward)(0, f64(4), f64(4)), /Expected Float64Array for dA/],
    ['activationBackward with a detached dA', RangeError, () => b.activationBackward(0, f64(4), f64(4), detached(4)), /Expected 4 elements for dA but received 0/],
    // softmaxCrossEntropy(logits, y, probs, B, C)
    ['softmaxCrossEntropy with label = C', RangeError, () => b.softmaxCrossEntropy(f64(12), Int32Array.from([0, 1, 3, 0]), f64(12), 4, 3), /labels in \[0, 3\) for y but received 3 at index 2/],
    ['softmaxCrossEntropy with a negative label', RangeError, () => b.softmaxCrossEntropy(f64(12), Int32Array.from([0, 1, 2, -1]), f64(12), 4, 3), /labels in \[0, 3\) for y but received -1 at index 3/],
    ['softmaxCrossEntropy with labels as Float64Array', TypeError, () => anyArgs(b.softmaxCrossEntropy)(f64(12), Float64Array.from([0, 1, 2, 0]), f64(12), 4, 3), /Expected Int32Array for y but received Float64Array/],
    ['softmaxCrossEntropy with labels as a plain array', TypeError, () => anyArgs(b.softmaxCrossEntropy)(f64(12), [0, 1, 2, 0], f64(12), 4, 3), /Expected Int32Array for y/],
    ['softmaxCrossEntropy with fewer labels than B', RangeError, () => b.softmaxCrossEntropy(f64(12), Int32Array.from([0, 1, 2]), f64(12), 4, 3), /Expected 4 elements for y but received 3/],
    ['softmaxCrossEntropy with logits shorter than B·C', RangeError, () => b.softmaxCrossEntropy(f64(11), labels(), f64(12), 4, 3), /Expected 12 elements for logits but received 11/],
    ['softmaxCrossEntropy with mixed dtypes', TypeError, () => b.softmaxCrossEntropy(f64(12), labels(), f32(12), 4, 3), /Expected Float64Array for probs but received Float32Array/],
    ['softmaxCrossEntropy with B 0', RangeError, () => b.softmaxCrossEntropy(f64(0), new Int32Array(0), f64(0), 0, 3), /positive 32-bit integer for B but received 0/],
    ['softmaxCrossEntropy with C 2^31', RangeError, () => b.softmaxCrossEntropy(f64(12), labels(), f64(12), 4, 2 ** 31), /positive 32-bit integer for C/],
    ['softmaxCrossEntropy with B·C overflowing', RangeError, () => b.softmaxCrossEntropy(f64(12), labels(), f64(12), max, max), /size that fits in memory for logits/],
    ['softmaxCrossEntropy with C missing', TypeError, () => anyArgs(b.softmaxCrossEntropy)(f64(12), labels(), f64(12), 4), /a number for C/],
    ['softmaxCrossEntropy with probs sharing bytes with logits', RangeError, () => b.softmaxCrossEntropy(mem.subarray(0, 12), labels(), mem.subarray(11, 23), 4, 3), /probs not to share memory with logits/],
    ['softmaxCrossEntropy with probs over y', RangeError, () => b.softmaxCrossEntropy(f64(12), yIn, new Float64Array(yBuf, 0, 12), 4, 3), /probs not to share memory with y/],
    ['softmaxCrossEntropy with a detached logits', RangeError, () => b.softmaxCrossEntropy(detached(12), labels(), f64(12), 4, 3), /Expected 12 elements for logits but received 0/],
    // softmaxCrossEntropyBackward(probs, y, dZ, B, C, reduction)
    ['softmaxCrossEntropyBackward with reduction code 2', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), labels(), f64(12), 4, 3, 2), /integer in \[0, 2\) for reduction/],
    ['softmaxCrossEntropyBackward with reduction "mean"', TypeError, () => anyArgs(b.softmaxCrossEntropyBackward)(f64(12), labels(), f64(12), 4, 3, 'mean'), /a number for reduction/],
    ['softmaxCrossEntropyBackward with reduction missing', TypeError, () => anyArgs(b.softmaxCrossEntropyBackward)(f64(12), labels(), f64(12), 4, 3), /a number for reduction/],
    ['softmaxCrossEntropyBackward with label 2^31 − 1', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), Int32Array.from([0, max, 2, 0]), f64(12), 4, 3, 0), /labels in \[0, 3\) for y but received 2147483647 at index 1/],
    ['softmaxCrossEntropyBackward with labels as Uint32Array', TypeError, () => anyArgs(b.softmaxCrossEntropyBackward)(f64(12), new Uint32Array(4), f64(12), 4, 3, 0), /Expected Int32Array for y but received Uint32Array/],
    ['softmaxCrossEntropyBackward with dZ of another dtype', TypeError, () => b.softmaxCrossEntropyBackward(f32(12), labels(), f64(12), 4, 3, 1), /Expected Float32Array for dZ but received Float64Array/],
    ['softmaxCrossEntropyBackward with C disagreeing with probs', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), labels(), f64(12), 4, 4, 0), /Expected 16 elements for probs but received 12/],
    ['softmaxCrossEntropyBackward with B·C overflowing', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), labels(), f64(12), 2 ** 30, 2 ** 30, 0), /size that fits in memory for probs/],
    ['softmaxCrossEntropyBackward with dZ being probs', RangeError, () => { const p = f64(12); return b.softmaxCrossEntropyBackward(p, labels(), p, 4, 3, 0); }, /dZ not to share memory with probs/],
    ['softmaxCrossEntropyBackward with dZ over y', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), yIn, overY, 4, 3, 1), /dZ not to share memory with y/],
    ['softmaxCrossEntropyBackward with a detached dZ', RangeError, () => b.softmaxCrossEntropyBackward(f64(12), labels(), detached(12), 4, 3, 0), /Expected 12 elements for dZ but received 0/],
    // allFinite(x)
    ['allFinite with no arguments', TypeError, () => anyArgs(b.allFinite)(), /Float64Array or Float32Array for x/],
    ['allFinite with an Int32Array', TypeError, () => anyArgs(b.allFinite)(new Int32Array(4)), /Float64Array or Float32Array for x but received Int32Array/],
    ['allFinite with a plain array', TypeError, () => anyArgs(b.allFinite)([1, NaN]), /Float64Array or Float32Array for x/],
    ['allFinite with a DataView', TypeError, () => anyArgs(b.allFinite)(new DataView(new ArrayBuffer(16))), /Float64Array or Float32Array for x/],
  ];
}
