// Bad input: a TypeError/RangeError that names the tensor, what was expected and what came; the
// process lives and the next valid call is still exact. Every backend, and the raw native exports.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { forward, forwardBackward, initParams, predict, setNumThreads } from '../lib';
import { coreBinding, type StackHandle } from '../lib/binding';
import type { BackendName } from '../lib/types';
import { caseParams, describeBackends, errEps, jsonCases, randomArray, typed } from './helpers';

const DIST = join(__dirname, '..', 'dist', 'lib', 'index.js');
const golden = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
const { B, D, H, C } = golden.dims;

function fresh() {
  const p = caseParams(golden);
  return { p, X: typed('float64', golden.inputs.X), y: Int32Array.from(golden.inputs.y) };
}

/** After a refused call, a valid call still reproduces PyTorch's numbers, every tensor. */
function stillExact(backend: BackendName) {
  const { p, X, y } = fresh();
  const r = forwardBackward(p, X, y, { backend, inputGrad: true });
  expect(errEps([r.loss], golden.expected.loss, 'float64'), 'loss').toBeLessThanOrEqual(8);
  for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) expect(errEps(r.grads[k]!, golden.expected[k], 'float64'), k).toBeLessThanOrEqual(8);
}

interface Api {
  fb: typeof forwardBackward;
  forward: typeof forward;
  predict: typeof predict;
}
type Case = [string, typeof TypeError | typeof RangeError, RegExp, (t: ReturnType<typeof fresh>, api: Api) => unknown];

/** The public functions with `backend` fixed, so every case runs through each backend. */
function apiFor(backend: BackendName): Api {
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
  ['unknown reduction', RangeError, /for opts.reduction but received "avg"/, ({ p, X, y }, api) => api.fb(p, X, y, { reduction: 'avg' as never })],
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

describeBackends('bad input is a clear error, never a crash', (backend) => {
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

  // Non-finite values anywhere in any tensor, at every index, both dtypes, in forwardBackward and
  // forward: the engines detect them on each Linear's output (native/core/stack.h), so every
  // position is exercised, not just one.
  for (const name of ['X', 'W1', 'b1', 'W2', 'b2'] as const) {
    it(`NaN, +Infinity or −Infinity at any index of ${name}, float64 and float32`, () => {
      for (const dtype of ['float64', 'float32'] as const) {
        const base = fresh();
        const len = name === 'X' ? base.X.length : base.p[name].length;
        for (let i = 0; i < len; i++) {
          for (const bad of [NaN, Infinity, -Infinity]) {
            const t = fresh();
            const p = { W1: typed(dtype, t.p.W1), b1: typed(dtype, t.p.b1), W2: typed(dtype, t.p.W2), b2: typed(dtype, t.p.b2) };
            const X = typed(dtype, t.X);
            (name === 'X' ? X : p[name])[i] = bad;
            const out = { dW1: typed(dtype, new Float64Array(D * H).fill(7)) };
            const message = `Expected finite values in ${name} but received ${bad} at index ${i}`;
            expect(() => forwardBackward(p, X, t.y, { backend, out, accumulate: true }), dtype).toThrow(new RangeError(message));
            expect(out.dW1.every((v) => v === 7), dtype).toBe(true); // nothing written on error
            expect(() => forward(p, X, { backend }), `${dtype} forward`).toThrow(new RangeError(message));
          }
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
    // The logits overflowing float32 (every input finite, A1 = 0.5·…, W2 = 3e38).
    const f = { W1: Float32Array.from(t.p.W1.fill(0.5)), b1: Float32Array.from(t.p.b1), W2: Float32Array.from(t.p.W2.fill(3e38)), b2: Float32Array.from(t.p.b2) };
    expect(() => forwardBackward(f, Float32Array.from(t.X.fill(1)), t.y, { backend })).toThrow(/logits = A1·W2 \+ b2 overflowed/);
    stillExact(backend);
  });

  it('an overflowing forward pass fails with the very error of the native backend', () => {
    // Every input finite, but Z1 = Σ_d 1·1e308 is not.
    const t = fresh();
    const huge = { ...t.p, W1: t.p.W1.map(() => 1e308) };
    const ones = t.X.map(() => 1);
    let native: unknown;
    try {
      forwardBackward(huge, ones, t.y, { backend: 'native' });
    } catch (e) {
      native = e;
    }
    expect(native).toBeInstanceOf(RangeError);
    expect((native as Error).message).toMatch(/Z1/);
    expect(() => forwardBackward(huge, ones, t.y, { backend })).toThrow(native as Error);
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

// The stack exports (native/addon/stack.cc), gemm and optimizerUpdate, called directly.
describe('raw native exports never trust their caller', () => {
  const b = coreBinding();
  const kinds = Int32Array.of(0, 1, 0);
  const widths = Int32Array.of(D, H, H, C);
  const h = b.stackPrepare(kinds, widths, false);
  const ws = new Float64Array(b.stackLayout(h, B)[kinds.length + 1]);
  const p = [randomArray(D * H, 1, 0.4), randomArray(H, 2, 0.1), randomArray(H * C, 3, 0.3), randomArray(C, 4, 0.1)];
  const X = randomArray(B * D, 5);
  const y = Int32Array.of(0, 2, 1, 2);
  const g = () => [new Float64Array(D * H), new Float64Array(H), new Float64Array(H * C), new Float64Array(C)];
  const args = (over: Record<number, unknown> = {}): unknown[] => {
    const a: unknown[] = [h, ws, X, y, B, null, 0, false, ...p, ...g()];
    for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
    return a;
  };
  const fb = (a: unknown[]) => (b.stackForwardBackward as (...x: unknown[]) => number)(...a);
  const ref = fb(args());
  const detached = (n: number) => {
    const a = new Float64Array(n);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    return a;
  };
  const shared = new Float64Array(64);
  // The prepared step: bound once (with and without dX), then run with X, y and the scalars.
  const grads = g();
  const dXb = new Float64Array(B * D);
  const bound = b.stackBind(h, new Float64Array(ws.length), dXb, ...p, ...grads);
  const run = (over: Record<number, unknown> = {}) => {
    const a: unknown[] = [bound, X, y, B, 0, false];
    for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
    return (b.stackRun as (...x: unknown[]) => number)(...a);
  };
  const bindArgs = (over: Record<number, unknown> = {}): unknown[] => {
    const a: unknown[] = [h, new Float64Array(ws.length), null, ...p, ...g()];
    for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
    return a;
  };
  const bind = (a: unknown[]) => (b.stackBind as (...x: unknown[]) => unknown)(...a);
  const cases: [string, typeof TypeError | typeof RangeError, () => unknown, RegExp?][] = [
    ['stackPrepare: no arguments', TypeError, () => (b.stackPrepare as () => unknown)(), /an Int32Array for kinds but received undefined/],
    ['stackPrepare: kinds of another type', TypeError, () => b.stackPrepare(Float64Array.of(0) as never, widths, false), /an Int32Array for kinds but received Float64Array/],
    ['stackPrepare: no layers', RangeError, () => b.stackPrepare(new Int32Array(0), Int32Array.of(3), false), /at least one layer for kinds/],
    ['stackPrepare: a code out of range', RangeError, () => b.stackPrepare(Int32Array.of(0, 9, 0), widths, false), /layer codes in \[0, 4\) .* for kinds but received 9 at index 1/],
    ['stackPrepare: widths of the wrong length', RangeError, () => b.stackPrepare(kinds, Int32Array.of(5, 10, 3), false), /4 elements \(one more than kinds\) for widths but received Int32Array of length 3/],
    ['stackPrepare: a width of 0', RangeError, () => b.stackPrepare(kinds, Int32Array.of(5, 0, 0, 3), false), /a positive width for widths\[1\] but received 0/],
    ['stackPrepare: an activation that changes the width', RangeError, () => b.stackPrepare(kinds, Int32Array.of(5, 10, 11, 3), false), /10 \(an activation keeps the width of widths\[1\]\) for widths\[2\] but received 11/],
    ['stackPrepare: no Linear', RangeError, () => b.stackPrepare(Int32Array.of(1), Int32Array.of(3, 3), false), /at least one Linear layer/],
    ['stackPrepare: W too large to exist', RangeError, () => b.stackPrepare(Int32Array.of(0), Int32Array.of(2 ** 31 - 1, 2 ** 31 - 1), false), /a size that fits in memory for W1/],
    ['stackPrepare: float32 not a boolean', TypeError, () => b.stackPrepare(kinds, widths, 1 as never), /a boolean for float32/],
    ['stackLayout: a batch whose workspace cannot exist', RangeError, () => b.stackLayout(b.stackPrepare(Int32Array.of(0), Int32Array.of(1, 2 ** 20), false), 2 ** 20), /fits in a typed array .* for B but received 1048576/],
    ['stackLayout: B = 0', RangeError, () => b.stackLayout(h, 0), /positive 32-bit integer for B/],
    ['no handle', TypeError, () => fb([]), /a handle from stackPrepare for handle but received undefined/],
    ['a plain object as the handle', TypeError, () => fb(args({ 0: {} })), /a handle from stackPrepare for handle but received object/],
    ['a number as the handle', TypeError, () => b.stackStatus(7 as never), /for handle but received 7/],
    ['X of the wrong dtype', TypeError, () => fb(args({ 2: Float32Array.from(X) })), /Expected Float64Array for X but received Float32Array/],
    ['X too short', RangeError, () => fb(args({ 2: X.subarray(1) })), /Expected 20 elements for X but received 19/],
    ['labels as Float64Array', TypeError, () => fb(args({ 3: new Float64Array(B) })), /Expected Int32Array for y/],
    ['a label = C', RangeError, () => fb(args({ 3: Int32Array.of(0, 1, 3, 0) })), /Expected labels in \[0, 3\) for y but received 3 at index 2/],
    ['a negative label', RangeError, () => fb(args({ 3: Int32Array.of(-1, 1, 2, 0) })), /received -1 at index 0/],
    ['B disagreeing with y', RangeError, () => fb(args({ 4: 5 })), /Expected 25 elements for X|Expected \d+ elements for workspace/],
    ['the workspace of another B', RangeError, () => fb(args({ 1: new Float64Array(ws.length + 8) })), /elements for workspace but received/],
    ['the workspace of the other dtype', TypeError, () => fb(args({ 1: new Float32Array(ws.length) })), /Expected Float64Array for workspace/],
    ['W2 of the wrong length', RangeError, () => fb(args({ 10: p[2].subarray(1) })), /Expected 30 elements for W2 but received 29/],
    ['a missing gradient', TypeError, () => fb(args().slice(0, 15)), /Expected Float64Array for out.db2/],
    ['dX of the wrong length', RangeError, () => fb(args({ 5: new Float64Array(3) })), /Expected 20 elements for out.dX/],
    ['reduction 2', RangeError, () => fb(args({ 6: 2 })), /\[0, 2\) for reduction/],
    ['accumulate not a boolean', TypeError, () => fb(args({ 7: 1 })), /a boolean for accumulate/],
    ['dW1 is W1', RangeError, () => fb(args({ 12: p[0] })), /Expected out.dW1 not to share memory with W1/],
    ['the workspace over X', RangeError, () => { const m = new Float64Array(ws.length + 40); m.set(X); return fb(args({ 2: m.subarray(0, 20), 1: m.subarray(19, 19 + ws.length) })); }, /Expected workspace not to share memory with X/],
    ['dX over y', RangeError, () => { const m = new Float64Array(32); return fb(args({ 3: new Int32Array(m.buffer, 0, B), 5: m.subarray(1, 21) })); }, /Expected out.dX not to share memory with y/],
    ['db2 over dW2', RangeError, () => fb(args({ 14: shared.subarray(0, 30), 15: shared.subarray(29, 32) })), /Expected out.db2 not to share memory with out.dW2/],
    ['a detached X', RangeError, () => fb(args({ 2: detached(B * D) })), /Expected 20 elements for X but received 0/],
    ['a detached workspace', RangeError, () => fb(args({ 1: detached(ws.length) })), /elements for workspace but received 0/],
    ['stackForward: a gradient list is not its business', RangeError, () => (b.stackForward as (...x: unknown[]) => boolean)(h, ws, X, 5, ...p), /Expected 25 elements for X|elements for workspace/],
    ['stackForward: the workspace over W1', RangeError, () => { const m = new Float64Array(ws.length + 50); m.set(p[0]); return (b.stackForward as (...x: unknown[]) => boolean)(h, m.subarray(49, 49 + ws.length), X, B, m.subarray(0, 50), ...p.slice(1)); }, /Expected workspace not to share memory with W1/],
    ['stackBind: no handle', TypeError, () => bind([]), /a handle from stackPrepare for handle but received undefined/],
    ['stackBind: a bound step as the handle', TypeError, () => bind(bindArgs({ 0: bound })), /a handle from stackPrepare for handle but received object/],
    ['stackBind: the workspace of the other dtype', TypeError, () => bind(bindArgs({ 1: new Float32Array(ws.length) })), /Expected Float64Array for workspace but received Float32Array/],
    ['stackBind: dX not [B, D]', RangeError, () => bind(bindArgs({ 2: new Float64Array(7) })), /a multiple of 5 elements \(\[B, D\]\) for out.dX but received 7/],
    ['stackBind: W2 of the wrong length', RangeError, () => bind(bindArgs({ 5: p[2].subarray(1) })), /Expected 30 elements for W2 but received 29/],
    ['stackBind: a missing gradient', TypeError, () => bind(bindArgs().slice(0, 10)), /Expected Float64Array for out.db2/],
    ['stackBind: a detached gradient', RangeError, () => bind(bindArgs({ 7: detached(D * H) })), /Expected 50 elements for out.dW1 but received 0/],
    ['stackBind: dW1 is W1', RangeError, () => bind(bindArgs({ 7: p[0] })), /Expected out.dW1 not to share memory with W1/],
    ['stackBind: db2 over dW2', RangeError, () => bind(bindArgs({ 9: shared.subarray(0, 30), 10: shared.subarray(29, 32) })), /Expected out.db2 not to share memory with out.dW2/],
    ['stackBind: the workspace over dX', RangeError, () => {
      const m = new Float64Array(ws.length + 20);
      return bind(bindArgs({ 1: m.subarray(0, ws.length), 2: m.subarray(ws.length - 1, ws.length + 19) }));
    }, /Expected out.dX not to share memory with workspace/],
    ['stackRun: no arguments', TypeError, () => (b.stackRun as () => unknown)(), /a bound step from stackBind for bound but received undefined/],
    ['stackRun: a handle, not a bound step', TypeError, () => run({ 0: h }), /a bound step from stackBind for bound but received object/],
    ['stackRun: X of the wrong dtype', TypeError, () => run({ 1: Float32Array.from(X) }), /Expected Float64Array for X but received Float32Array/],
    ['stackRun: X too short', RangeError, () => run({ 1: X.subarray(1) }), /Expected 20 elements for X but received 19/],
    ['stackRun: a detached X', RangeError, () => run({ 1: detached(B * D) }), /Expected 20 elements for X but received 0/],
    ['stackRun: a label = C', RangeError, () => run({ 2: Int32Array.of(0, 1, 3, 0) }), /Expected labels in \[0, 3\) for y but received 3 at index 2/],
    ['stackRun: B other than the bound dX\'s rows', RangeError, () => run({ 1: X.subarray(0, 15), 2: y.subarray(0, 3), 3: 3 }), /Expected 4 \(the rows of the bound out.dX\) for B but received 3/],
    ['stackRun: B past the bound workspace', RangeError,
      () => (b.stackRun as (...x: unknown[]) => number)(bind(bindArgs()), new Float64Array(5 * D), new Int32Array(5), 5, 0, false),
      /Expected a batch whose workspace fits the bound one \(\d+ elements\) for B but received 5/],
    ['stackRun: X over a bound gradient', RangeError, () => run({ 1: grads[0].subarray(0, 20) }), /Expected out.dW1 not to share memory with X/],
    ['stackRun: y over the bound dX', RangeError, () => run({ 2: new Int32Array(dXb.buffer, 8, B) }), /Expected out.dX not to share memory with y/],
    ['stackRun: reduction 2', RangeError, () => run({ 4: 2 }), /\[0, 2\) for reduction/],
    ['stackRun: accumulate not a boolean', TypeError, () => run({ 5: 1 }), /a boolean for accumulate/],
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
  ];
  for (const [name, Kind, call, message] of cases) {
    it(name, () => {
      let thrown: unknown;
      try {
        call();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(Kind);
      if (message) expect((thrown as Error).message).toMatch(message);
      expect(Object.is(fb(args()), ref)).toBe(true); // the next valid call is exact
      expect(Object.is(run(), ref)).toBe(true); // and on the bound step
      stillExact('native');
    });
  }

  it('a failure is NaN with the stage and layer in stackStatus; success resets it', () => {
    const bad = p.map((t) => t.slice());
    bad[2][0] = NaN;
    expect(fb([h, ws, X, y, B, null, 0, false, ...bad, ...g()])).toBeNaN();
    expect(b.stackStatus(h)).toEqual([b.codes.stage.forward, 2]);
    expect(fb(args())).toBe(ref);
    expect(b.stackStatus(h)).toEqual([0, 0]);
    expect((b.stackForward as (...x: unknown[]) => boolean)(h, ws, X, B, ...bad)).toBe(false);
    expect(b.stackStatus(h)).toEqual([b.codes.stage.forward, 2]);
  });

  it('handles are independent: each keeps its own description and status', () => {
    const h32: StackHandle = b.stackPrepare(Int32Array.of(0), Int32Array.of(2, 2), true);
    expect(() => fb(args({ 0: h32 }))).toThrow(/Float32Array for workspace|elements for workspace/);
    expect(fb(args())).toBe(ref);
  });

  it('labels in a SharedArrayBuffer that another thread rewrites: each call reads them once (a finite loss or a RangeError)', async () => {
    const sab = new SharedArrayBuffer(4 * B);
    const ys = new Int32Array(sab);
    ys.set(y);
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads'); const y = new Int32Array(workerData);
       for (let i = 0; ; i++) y[i & 3] = (i & 7) === 7 ? 1000000 : i % 3;`,
      { eval: true, workerData: sab },
    );
    try {
      let ok = 0;
      let refused = 0;
      for (let i = 0; i < 20000; i++) {
        try {
          expect(Number.isFinite(fb(args({ 3: ys })))).toBe(true);
          ok++;
        } catch (e) {
          expect((e as Error).message).toMatch(/^Expected labels in \[0, 3\) for y but received 1000000 at index \d$/);
          refused++;
        }
      }
      expect(ok + refused).toBe(20000);
    } finally {
      await worker.terminate();
    }
  });
});

// A step whose gradient buffers come again runs on a bound step (lib/engine/native.ts: stackBind
// once, then stackRun with X and y): its pointers into the bound buffers hold while no buffer is
// detached or shrunk, which the engine checks (each bound view's byteLength) before every call.
// Transferred (structuredClone, postMessage) and shrunk buffers under a bound step, in a child
// process as the other crash cases: each call is a clear error or the right bits, never a crash.
const DETACH_CHILD = `
const { Sequential, Linear, ReLU, forwardBackward } = require(process.env.HG_DIST);
const { MessageChannel } = require('node:worker_threads');
const dtype = process.env.HG_DTYPE;
const F = dtype === 'float32' ? Float32Array : Float64Array;
const fill = (n, s) => F.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.7);
const X = fill(20, 1);
const y = Int32Array.of(0, 2, 1, 2);
const opts = { backend: 'native', reduction: 'mean', accumulate: false };
const bits = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const seqOf = (W1 = fill(50, 2)) =>
  new Sequential([new Linear(5, 10, { W: W1, b: fill(10, 3) }), new ReLU(), new Linear(10, 3, { W: fill(30, 4), b: fill(3, 5) })]);
const want = seqOf().forwardBackward(X, y, { inputGrad: true });
const wantBits = Object.fromEntries(Object.entries(want.grads).map(([k, v]) => [k, bits(v)]));
const fresh = () => ({ dX: new F(20), dW1: new F(50), db1: new F(10), dW2: new F(30), db2: new F(3) });
const exact = (what, loss, g) => {
  if (!Object.is(loss, want.loss)) throw new Error(what + ': loss ' + loss + ' vs ' + want.loss);
  for (const k of Object.keys(wantBits)) if (bits(g[k]) !== wantBits[k]) throw new Error(what + ': ' + k + ' differs');
};
const refused = (what, fn, Kind, pattern) => {
  try { fn(); } catch (e) {
    if (!(e instanceof Kind) || !pattern.test(e.message)) throw new Error(what + ': threw ' + e.constructor.name + ': ' + e.message);
    return;
  }
  throw new Error(what + ': accepted');
};
const seen = [];
(async () => {
  const seq = seqOf();
  const g = fresh();
  const step = () => seq.forwardBackwardInto(X, y, g, opts);
  for (let i = 0; i < 3; i++) exact('hot loop ' + i, step().loss, g); // the second call binds
  // A bound gradient transferred by structuredClone: a TypeError naming it, every time.
  structuredClone(g.dW1.buffer, { transfer: [g.dW1.buffer] });
  refused('dW1 transferred', step, TypeError, /^Expected dW1 to keep its \\d+ bytes but it has 0: its ArrayBuffer was detached/);
  refused('dW1 transferred, again', step, TypeError, /dW1/);
  g.dW1 = new F(50);
  for (let i = 0; i < 3; i++) exact('dW1 replaced ' + i, step().loss, g);
  // Transferred through a MessageChannel port.
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(g.db2.buffer, [g.db2.buffer]);
  refused('db2 posted', step, TypeError, /^Expected db2 to keep its/);
  port1.close();
  port2.close();
  g.db2 = new F(3);
  exact('db2 replaced', step().loss, g);
  exact('db2 replaced, bound', step().loss, g);
  // A resizable ArrayBuffer shrunk under a bound dW2, then grown back.
  const rab = new ArrayBuffer(30 * F.BYTES_PER_ELEMENT, { maxByteLength: 60 * F.BYTES_PER_ELEMENT });
  g.dW2 = new F(rab, 0, 30);
  for (let i = 0; i < 3; i++) exact('dW2 resizable ' + i, step().loss, g);
  rab.resize(8);
  refused('dW2 shrunk', step, TypeError, /^Expected dW2 to keep its \\d+ bytes but it has 0/);
  rab.resize(60 * F.BYTES_PER_ELEMENT);
  exact('dW2 grown back', step().loss, g);
  // dX transferred.
  structuredClone(g.dX.buffer, { transfer: [g.dX.buffer] });
  refused('dX transferred', step, TypeError, /^Expected dX to keep its/);
  g.dX = new F(20);
  exact('dX replaced', step().loss, g);
  exact('dX replaced, bound', step().loss, g);
  // A parameter transferred, or shrunk: the net cannot step until it is whole again.
  const rabW = new ArrayBuffer(50 * F.BYTES_PER_ELEMENT, { maxByteLength: 50 * F.BYTES_PER_ELEMENT });
  const W1 = new F(rabW); // length-tracking: shrinks with its buffer
  W1.set(fill(50, 2));
  const seqR = seqOf(W1);
  const gR = fresh();
  for (let i = 0; i < 3; i++) exact('W1 resizable ' + i, seqR.forwardBackwardInto(X, y, gR, opts).loss, gR);
  rabW.resize(16);
  refused('W1 shrunk', () => seqR.forwardBackwardInto(X, y, gR, opts), TypeError, /^Expected W1 to keep its/);
  refused('W1 shrunk, public call', () => seqR.forwardBackward(X, y, { inputGrad: true, out: gR }), TypeError, /W1/);
  structuredClone(seq.params.W1.buffer, { transfer: [seq.params.W1.buffer] });
  refused('W1 transferred', step, TypeError, /^Expected W1 to keep its/);
  // The workspace, transferred through the logits view a step returns: the next call gets a new
  // one, and the right bits.
  const seq2 = seqOf();
  const g2 = fresh();
  for (let i = 0; i < 3; i++) exact('workspace ' + i, seq2.forwardBackwardInto(X, y, g2, opts).loss, g2);
  const logits = seq2.forwardBackwardInto(X, y, g2, opts).logits;
  const logitsBits = bits(logits);
  structuredClone(logits.buffer, { transfer: [logits.buffer] });
  const r = seq2.forwardBackwardInto(X, y, g2, opts);
  exact('workspace transferred', r.loss, g2);
  if (bits(r.logits) !== logitsBits) throw new Error('workspace transferred: logits differ');
  exact('workspace transferred, bound again', seq2.forwardBackwardInto(X, y, g2, opts).loss, g2);
  structuredClone(r.logits.buffer, { transfer: [r.logits.buffer] });
  if (bits(seq2.forward(X)) !== logitsBits) throw new Error('forward after the workspace was transferred: logits differ');
  // The public two-layer call with the same out buffers (bound from its second call): an out
  // buffer transferred is refused by the argument checks, before the engine.
  const p = { W1: fill(50, 2), b1: fill(10, 3), W2: fill(30, 4), b2: fill(3, 5) };
  const out = fresh();
  for (let i = 0; i < 3; i++) exact('public ' + i, forwardBackward(p, X, y, { inputGrad: true, out }).loss, out);
  structuredClone(out.dW1.buffer, { transfer: [out.dW1.buffer] });
  refused('public, out.dW1 transferred', () => forwardBackward(p, X, y, { inputGrad: true, out }), RangeError, /for out.dW1 but received .*length 0 \\(detached buffer\\)/);
  out.dW1 = new F(50);
  exact('public, out.dW1 replaced', forwardBackward(p, X, y, { inputGrad: true, out }).loss, out);
  exact('public, out.dW1 replaced, bound', forwardBackward(p, X, y, { inputGrad: true, out }).loss, out);
  // After all of it, collected: the bound steps' references released, nothing left dangling.
  if (global.gc) for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
  exact('the end', forwardBackward(p, X, y, { inputGrad: true, out }).loss, out);
  console.log('OK');
})().catch((e) => { console.error('FAILED ' + e.message); process.exit(2); });
`;

describe('a bound buffer transferred or shrunk between steps (native)', () => {
  for (const dtype of ['float64', 'float32']) {
    it(`${dtype}: each call is a TypeError naming the tensor or the right bits, in a child process`, () => {
      const r = spawnSync(process.execPath, ['--expose-gc', '-e', DETACH_CHILD], {
        env: { ...process.env, HG_DIST: DIST, HG_DTYPE: dtype },
        encoding: 'utf8',
        timeout: 60_000,
      });
      const report = `status ${r.status}, signal ${r.signal}\n${r.stdout}\n${r.stderr.slice(-2000)}`;
      expect(r.signal, report).toBeNull();
      expect(r.status, report).toBe(0);
      expect(r.stdout, report).toMatch(/^OK$/m);
    });
  }
});

// Sequential.forwardBackwardInto, the prepared step a training loop calls, validates nothing in JS
// on native and torch (their addons check every buffer in C++ on each call). wasm and ts used to
// compute on whatever they were given: an unknown reduction ran as 'mean' on wasm and 'sum' on ts,
// an out buffer over W1 overwrote the weights, a Float32Array X ran in a float64 net. Every
// backend now refuses each of these alike, before anything is written.
describeBackends('forwardBackwardInto refuses what the addons refuse, on every backend', (backend) => {
  it('an unknown reduction, an aliased or missing or wrong-dtype buffer, a non-boolean accumulate: the same error kind, W1 untouched', async () => {
    const { Sequential } = await import('../lib');
    const net = Sequential.mlp([3, 4, 2], { seed: 1 });
    const W1 = Float64Array.from(net.params.W1);
    const X = Float64Array.from({ length: 6 }, (_, i) => Math.sin(i + 1));
    const y = Int32Array.from([0, 1]);
    const g = () => ({ dW1: new Float64Array(12), db1: new Float64Array(4), dW2: new Float64Array(8), db2: new Float64Array(2) });
    const opts = { backend, reduction: 'mean' as const, accumulate: false };
    const cases: [string, () => unknown, ErrorConstructor, RegExp][] = [
      ['reduction', () => net.forwardBackwardInto(X, y, g(), { ...opts, reduction: 'avg' as never }), RangeError, /opts\.reduction/],
      ['aliased', () => net.forwardBackwardInto(X, y, { ...g(), dW1: net.params.W1 }, opts), RangeError, /dW1 not to share memory with W1/],
      ['missing', () => net.forwardBackwardInto(X, y, { ...g(), db1: undefined as never }, opts), TypeError, /db1/],
      ['dtype', () => net.forwardBackwardInto(Float32Array.from(X) as never, y, g(), opts), TypeError, /X|Float64Array/],
      ['short dW2', () => net.forwardBackwardInto(X, y, { ...g(), dW2: new Float64Array(7) }, opts), RangeError, /dW2/],
    ];
    if (backend === 'wasm' || backend === 'ts') cases.push(['accumulate', () => net.forwardBackwardInto(X, y, g(), { ...opts, accumulate: 1 as never }), TypeError, /accumulate/]);
    for (const [what, call, Kind, words] of cases) {
      let caught: unknown = null;
      try {
        call();
      } catch (e) {
        caught = e;
      }
      expect(caught, what).toBeInstanceOf(Kind);
      expect((caught as Error).message, what).toMatch(words);
      expect(Array.from(net.params.W1), what).toEqual(Array.from(W1));
    }
  });
});
