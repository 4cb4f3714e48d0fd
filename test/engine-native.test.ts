// The native and wasm engines (lib/engine/native.ts, wasm.ts over native/core/stack.h): bit for bit
// the layer stack as the public API runs it (Sequential.forwardBackward on 'native' and 'wasm', and
// the two-layer forwardBackward; the core's fused step while it exists) over activations, dtypes,
// reductions, accumulate, inputGrad and shapes (widths of 1, an activation first, depths 1–5, sizes
// on both sides of the small-GEMM cutoff); failures at the right stage and layer; and the raw stack
// exports refusing bad input with a TypeError/RangeError, never a crash.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { coreBinding, type StackHandle } from '../lib/binding';
import { type Engine, type ForwardOutcome, LAYER_CODE, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepOutcome } from '../lib/engine/engine';
import { nativeEngine, STAGES } from '../lib/engine/native';
import { wasmEngine } from '../lib/engine/wasm';
import { wasmAvailable } from '../lib/backends/wasm';
import { forwardBackward, Linear, ReLU, Sequential, Sigmoid, Tanh } from '../lib/index';
import type { Layer } from '../lib/layers';
import { OPTIMIZER_CODE } from '../lib/train/optimizer';
import type { Dtype, FloatArray, Reduction } from '../lib/types';
import { randomArray, randomLabels, typed } from './helpers';

const b = coreBinding();
const ENGINES: [string, Engine][] = [['native', nativeEngine], ...(wasmAvailable() ? [['wasm', wasmEngine] as [string, Engine]] : [])];
type Kind = keyof typeof LAYER_CODE;

/** A seeded Sequential of the given layer kinds and widths (widths[i] enters layer i). */
function net(kinds: Kind[], widths: number[], dtype: Dtype, seed: number): Sequential {
  const layers = kinds.map((k, i): Layer => {
    if (k === 'relu') return new ReLU();
    if (k === 'sigmoid') return new Sigmoid();
    if (k === 'tanh') return new Tanh();
    const [inF, outF] = [widths[i], widths[i + 1]];
    return new Linear(inF, outF, {
      W: typed(dtype, randomArray(inF * outF, seed + 13 * i, 2 / Math.sqrt(inF))),
      b: typed(dtype, randomArray(outF, seed + 13 * i + 5, 0.5)),
    });
  });
  return new Sequential(layers);
}

function describeNet(s: Sequential): StackDescription {
  return {
    dtype: s.dtype,
    kinds: Int32Array.from(s.layers, (l) => LAYER_CODE[l.kind]),
    widths: Int32Array.from(s.widths),
    params: Object.values(s.params),
  };
}

/** The outcome of a step or forward that must have succeeded. */
function ok<O extends StepOutcome | ForwardOutcome>(o: O, what = ''): Exclude<O, { failure: object }> {
  if (o.failure) throw new Error(`${what}: failed at ${o.failure.stage}, layer ${o.failure.layer}`);
  return o as Exclude<O, { failure: object }>;
}

function sameBits(a: ArrayLike<number> | null | undefined, e: ArrayLike<number> | null | undefined, what: string): void {
  expect(a, what).toBeTruthy();
  expect(e, what).toBeTruthy();
  const x = a as FloatArray;
  const y = e as FloatArray;
  expect(x.length, what).toBe(y.length);
  const u = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const v = new Uint8Array(y.buffer, y.byteOffset, y.byteLength);
  const at = u.findIndex((byte, i) => byte !== v[i]);
  expect(at, `${what}: first differing byte`).toBe(-1);
}

// Depths 1–5, widths of 1, an activation first (and two in a row), hand-loop sizes (every GEMM
// ≤ 4096 multiply-adds at B = 4) and OpenBLAS sizes (B = 33).
const NETS: { name: string; kinds: Kind[]; widths: number[]; Bs: number[] }[] = [
  { name: 'Linear', kinds: ['linear'], widths: [6, 4], Bs: [1, 4] },
  { name: 'Linear 1→1', kinds: ['linear'], widths: [1, 1], Bs: [3] },
  { name: 'two-layer relu', kinds: ['linear', 'relu', 'linear'], widths: [5, 10, 10, 3], Bs: [4, 33] },
  { name: 'two-layer sigmoid, H = 1', kinds: ['linear', 'sigmoid', 'linear'], widths: [5, 1, 1, 3], Bs: [4] },
  { name: 'two-layer tanh', kinds: ['linear', 'tanh', 'linear'], widths: [40, 64, 64, 30], Bs: [4, 33] },
  { name: 'activation first', kinds: ['tanh', 'linear', 'relu', 'linear'], widths: [7, 7, 9, 9, 2], Bs: [1, 5] },
  { name: 'two activations first', kinds: ['sigmoid', 'relu', 'linear'], widths: [3, 3, 3, 4], Bs: [4] },
  { name: 'depth 3, width 1 inside', kinds: ['linear', 'sigmoid', 'linear', 'tanh', 'linear'], widths: [4, 1, 1, 6, 6, 3], Bs: [4] },
  { name: 'depth 4', kinds: ['linear', 'relu', 'linear', 'tanh', 'linear', 'sigmoid', 'linear'], widths: [20, 48, 48, 32, 32, 24, 24, 7], Bs: [2, 33] },
  { name: 'depth 5, ends in an activation', kinds: ['linear', 'relu', 'linear', 'sigmoid', 'linear', 'tanh', 'linear', 'relu', 'linear', 'tanh'], widths: [9, 20, 20, 15, 15, 10, 10, 8, 8, 4, 4], Bs: [6] },
];
const DTYPES: Dtype[] = ['float64', 'float32'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];

describe('enum codes have one source: the core addon', () => {
  it('codes equal LAYER_CODE, REDUCTION_CODE, OPTIMIZER_CODE and the engine stages', () => {
    expect(b.codes.layer).toEqual(LAYER_CODE);
    expect(b.codes.reduction).toEqual(REDUCTION_CODE);
    expect(b.codes.optimizer).toEqual(OPTIMIZER_CODE);
    for (const [name, code] of Object.entries(b.codes.stage)) expect(STAGES[code] ?? 'ok').toBe(name);
  });
});

for (const [engineName, engine] of ENGINES) {
  const backend = engineName as 'native' | 'wasm';
  describe(`${engineName} engine = Sequential.forwardBackward({ backend: '${backend}' }), bit for bit`, () => {
    for (const n of NETS) for (const dtype of DTYPES) {
      it(`${n.name}, ${dtype}`, () => {
        const seq = net(n.kinds, n.widths, dtype, n.widths.length * 7 + n.widths[0]);
        const prepared = engine.prepare(describeNet(seq));
        const L = n.kinds.length;
        const C = n.widths[L];
        for (const B of n.Bs) for (const reduction of REDUCTIONS) for (const accumulate of [false, true]) for (const inputGrad of [false, true]) {
          const what = `B=${B} ${reduction}${accumulate ? ' accumulate' : ''}${inputGrad ? ' dX' : ''}`;
          const X = typed(dtype, randomArray(B * n.widths[0], B + 3, 2));
          const y = randomLabels(B, C, B + 4);
          const start = (): Record<string, FloatArray> => {
            const g: Record<string, FloatArray> = {};
            if (inputGrad) g.dX = typed(dtype, randomArray(X.length, 1));
            Object.entries(seq.params).forEach(([k, t], j) => (g[`d${k}`] = typed(dtype, randomArray(t.length, j + 2))));
            return g;
          };
          const want = seq.forwardBackward(X, y, { backend, reduction, accumulate, inputGrad, out: start(), cache: true });
          const got = start();
          const grads = Object.keys(seq.params).map((k) => got[`d${k}`]);
          const r = ok(prepared.forwardBackward({ X, y, B, grads, dX: got.dX ?? null, reduction, accumulate }), what);
          expect(Object.is(r.loss, want.loss), `${what}: loss ${r.loss} vs ${want.loss}`).toBe(true);
          for (const k of Object.keys(want.grads)) sameBits(got[k], want.grads[k], `${what}: ${k}`);
          sameBits(r.logits, want.cache!.outputs[L - 1], `${what}: logits`);
          const t = prepared.tensors(B)!;
          t.outputs.forEach((o, i) => sameBits(o, want.cache!.outputs[i], `${what}: outputs[${i}]`));
          sameBits(t.probs, want.cache!.probs, `${what}: probs`);
          const f = ok(prepared.forward(X, B), what);
          sameBits(f.logits, want.cache!.outputs[L - 1], `${what}: forward's logits`);
        }
      });
    }
  });

  describe(`${engineName} engine = the two-layer forwardBackward${engineName === 'native' ? ' and the core\'s fused step' : ''}, bit for bit`, () => {
    for (const dtype of DTYPES) for (const act of ['relu', 'sigmoid', 'tanh'] as const) {
      it(`${dtype} ${act}`, () => {
        for (const [B, D, H, C] of [[4, 5, 10, 3], [33, 40, 64, 10], [1, 1, 1, 2]]) {
          const seq = net(['linear', act, 'linear'], [D, H, H, C], dtype, B + D);
          const p = seq.params;
          const prepared = engine.prepare(describeNet(seq));
          const X = typed(dtype, randomArray(B * D, 9, 1.5));
          const y = randomLabels(B, C, 10);
          for (const reduction of REDUCTIONS) {
            const want = forwardBackward({ W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2 }, X, y, { backend, activation: act, reduction, inputGrad: true, cache: true });
            const F = dtype === 'float64' ? Float64Array : Float32Array;
            const g = [new F(D * H), new F(H), new F(H * C), new F(C)];
            const dX = new F(B * D);
            const r = ok(prepared.forwardBackward({ X, y, B, grads: g, dX, reduction, accumulate: false }));
            expect(Object.is(r.loss, want.loss)).toBe(true);
            ['dW1', 'db1', 'dW2', 'db2'].forEach((k, j) => sameBits(g[j], want.grads[k as 'dW1'], k));
            sameBits(dX, want.grads.dX, 'dX');
            const t = prepared.tensors(B)!;
            sameBits(t.outputs[0], want.cache!.Z1, 'Z1');
            sameBits(t.outputs[1], want.cache!.A1, 'A1');
            sameBits(t.probs, want.cache!.probs, 'probs');
            // The core's fused two-layer step (native/core/mlp.h), marked for deletion.
            if (engineName === 'native' && typeof b.forwardBackward === 'function') {
              const fg = [new F(D * H), new F(H), new F(H * C), new F(C)];
              const fdX = new F(B * D);
              const ws = new F(3 * B * H + 3 * B * C);
              const loss = b.forwardBackward(X, y, p.W1, p.b1, p.W2, p.b2, ws, fdX, fg[0], fg[1], fg[2], fg[3], B, D, H, C, ['relu', 'sigmoid', 'tanh'].indexOf(act), REDUCTION_CODE[reduction], false);
              expect(Object.is(r.loss, loss)).toBe(true);
              fg.forEach((x, j) => sameBits(g[j], x, `fused ${j}`));
              sameBits(dX, fdX, 'fused dX');
            }
          }
        }
      });
    }
  });

  describe(`${engineName} engine: a NaN or ±Infinity is a failure at the right stage and layer`, () => {
    const setup = (kinds: Kind[], widths: number[], dtype: Dtype = 'float64') => {
      const seq = net(kinds, widths, dtype, 3);
      const B = 3;
      const X = typed(dtype, randomArray(B * widths[0], 4));
      const y = randomLabels(B, widths[kinds.length], 5);
      const grads = Object.values(seq.params).map((t) => typed(dtype, new Float64Array(t.length).fill(7)));
      const step = (p: PreparedNet, dX: FloatArray | null = null) => p.forwardBackward({ X, y, B, grads, dX, reduction: 'mean', accumulate: false });
      return { seq, X, y, B, grads, step, prepare: () => engine.prepare(describeNet(seq)) };
    };
    const untouched = (grads: FloatArray[]) => expect(grads.every((g) => g.every((v) => v === 7))).toBe(true);

    for (const dtype of DTYPES) {
      it(`${dtype}: X, a weight, an overflow, the loss, a gradient`, () => {
        const big = dtype === 'float64' ? 1e300 : 1e38;
        // NaN in X with a Linear first: the first Linear's output.
        let s = setup(['linear', 'relu', 'linear'], [4, 5, 5, 3], dtype);
        s.X[2] = NaN;
        expect(s.step(s.prepare()).failure).toEqual({ stage: 'forward', layer: 0 });
        expect(s.prepare().forward(s.X, s.B).failure).toEqual({ stage: 'forward', layer: 0 });
        untouched(s.grads);
        // −Infinity in X with an activation first (ReLU would hide it): the input.
        s = setup(['relu', 'linear'], [4, 4, 3], dtype);
        s.X[1] = -Infinity;
        expect(s.step(s.prepare()).failure).toEqual({ stage: 'input', layer: 0 });
        untouched(s.grads);
        // Infinity in W2: the second Linear, layers[2].
        s = setup(['linear', 'tanh', 'linear'], [4, 5, 5, 3], dtype);
        s.seq.params.W2[4] = Infinity;
        expect(s.step(s.prepare()).failure).toEqual({ stage: 'forward', layer: 2 });
        // Finite weights whose product overflows: the layer that overflowed.
        const max = dtype === 'float64' ? Number.MAX_VALUE : 3.4028234663852886e38;
        s = setup(['linear', 'sigmoid', 'linear', 'sigmoid', 'linear'], [2, 3, 3, 3, 3, 2], dtype);
        s.seq.params.W3.fill(max / 2); // 3 sigmoid outputs of about ½, times max/2, plus max/2
        s.seq.params.b3.fill(max / 2);
        expect(s.step(s.prepare()).failure).toEqual({ stage: 'forward', layer: 4 });
        untouched(s.grads);
        // Finite logits too far apart: the loss, nothing written.
        s = setup(['linear'], [1, 2], dtype);
        s.X.fill(1);
        s.seq.params.W1.set([max, -max]);
        s.seq.params.b1.fill(0);
        s.y.fill(1);
        expect(s.step(s.prepare()).failure).toEqual({ stage: 'loss', layer: 0 });
        untouched(s.grads);
        // A finite loss whose gradient overflows: dW1 = Xᵀ·dZ with X huge.
        s = setup(['linear', 'relu', 'linear'], [1, 1, 1, 2], dtype);
        s.X.fill(big);
        s.seq.params.W1.fill(1 / big);
        s.seq.params.b1.fill(0);
        s.seq.params.W2.set([big / 10, -big / 10]);
        s.y.fill(1);
        const f = s.step(s.prepare());
        expect(f.failure?.stage).toBe('grads');
        expect(s.grads.some((g) => g.some((v) => !Number.isFinite(v)))).toBe(true);
      });
    }
  });
}

describe('raw stack exports never trust their caller', () => {
  const D = 5;
  const H = 10;
  const C = 3;
  const B = 4;
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
  const cases: [string, typeof TypeError | typeof RangeError, () => unknown, RegExp][] = [
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
    ['a missing gradient', TypeError, () => fb(args().slice(0, 15)), /Expected Float64Array for db2/],
    ['dX of the wrong length', RangeError, () => fb(args({ 5: new Float64Array(3) })), /Expected 20 elements for dX/],
    ['reduction 2', RangeError, () => fb(args({ 6: 2 })), /\[0, 2\) for reduction/],
    ['accumulate not a boolean', TypeError, () => fb(args({ 7: 1 })), /a boolean for accumulate/],
    ['dW1 is W1', RangeError, () => fb(args({ 12: p[0] })), /Expected dW1 not to share memory with W1/],
    ['the workspace over X', RangeError, () => { const m = new Float64Array(ws.length + 40); m.set(X); return fb(args({ 2: m.subarray(0, 20), 1: m.subarray(19, 19 + ws.length) })); }, /Expected workspace not to share memory with X/],
    ['dX over y', RangeError, () => { const m = new Float64Array(32); return fb(args({ 3: new Int32Array(m.buffer, 0, B), 5: m.subarray(1, 21) })); }, /Expected dX not to share memory with y/],
    ['db2 over dW2', RangeError, () => fb(args({ 14: shared.subarray(0, 30), 15: shared.subarray(29, 32) })), /Expected db2 not to share memory with dW2/],
    ['a detached X', RangeError, () => fb(args({ 2: detached(B * D) })), /Expected 20 elements for X but received 0/],
    ['a detached workspace', RangeError, () => fb(args({ 1: detached(ws.length) })), /elements for workspace but received 0/],
    ['stackForward: a gradient list is not its business', RangeError, () => (b.stackForward as (...x: unknown[]) => boolean)(h, ws, X, 5, ...p), /Expected 25 elements for X|elements for workspace/],
    ['stackForward: the workspace over W1', RangeError, () => { const m = new Float64Array(ws.length + 50); m.set(p[0]); return (b.stackForward as (...x: unknown[]) => boolean)(h, m.subarray(49, 49 + ws.length), X, B, m.subarray(0, 50), ...p.slice(1)); }, /Expected workspace not to share memory with W1/],
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
      expect((thrown as Error).message).toMatch(message);
      expect(Object.is(fb(args()), ref)).toBe(true); // the next valid call is exact
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
