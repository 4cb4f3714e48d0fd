// The native and wasm engines (lib/engine/native.ts, wasm.ts over native/core/stack.h): bit for bit
// the layer stack as the public API runs it (Sequential.forwardBackward on 'native' and 'wasm', and
// the two-layer forwardBackward) over activations, dtypes, reductions, accumulate, inputGrad and
// shapes (widths of 1, an activation first, depths 1–5, sizes on both sides of the small-GEMM
// cutoff), and failures at the right stage and layer. Before the public API ran on these engines,
// they matched its kernel-by-kernel path bit for bit; test/15-golden holds the bits recorded then.
// The raw stack exports' refusals are test/04's.
import { describe, expect, it } from 'vitest';
import { coreBinding } from '../lib/binding';
import { type Engine, type ForwardOutcome, LAYER_CODE, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepOutcome } from '../lib/engine/engine';
import { STAGES } from '../lib/engine/engine';
import { MAX_BINDINGS, nativeEngine } from '../lib/engine/native';
import { wasmEngine } from '../lib/engine/wasm';
import { forwardBackward, Linear, ReLU, Sequential, Sigmoid, Tanh } from '../lib/index';
import type { Layer } from '../lib/layers';
import { OPTIMIZER_CODE } from '../lib/train/optimizer';
import type { Dtype, FloatArray, Reduction } from '../lib/types';
import { backendCases, backendTitle, randomArray, randomLabels, typed } from './helpers';

const b = coreBinding();
const ENGINES: Record<'native' | 'wasm', Engine> = { native: nativeEngine, wasm: wasmEngine };
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

for (const [backend, skip] of backendCases(['native', 'wasm'])) {
  const engine = ENGINES[backend as 'native' | 'wasm'];
  describe.skipIf(skip)(backendTitle(`engine = Sequential.forwardBackward({ backend: '${backend}' }), bit for bit`, backend, skip), () => {
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
          // The same buffers three times (refilled each time): on native the second call binds
          // them (stackBind) and the third runs bound (stackRun), as a training loop does.
          const again = start();
          const first = Object.fromEntries(Object.entries(again).map(([k, t]) => [k, t.slice()]));
          const list = Object.keys(seq.params).map((k) => again[`d${k}`]);
          for (let c = 1; c <= 3; c++) {
            for (const k of Object.keys(again)) again[k].set(first[k]);
            const r2 = ok(prepared.forwardBackward({ X, y, B, grads: list, dX: again.dX ?? null, reduction, accumulate }), `${what} call ${c}`);
            expect(Object.is(r2.loss, want.loss), `${what} call ${c}: loss`).toBe(true);
            for (const k of Object.keys(want.grads)) sameBits(again[k], want.grads[k], `${what} call ${c}: ${k}`);
            sameBits(r2.logits, want.cache!.outputs[L - 1], `${what} call ${c}: logits`);
          }
        }
      });
    }
  });

  describe.skipIf(skip)(backendTitle('engine: many sets of gradient buffers and batch sizes in turn, bit for bit', backend, skip), () => {
    it(`more sets than MAX_BINDINGS (${MAX_BINDINGS}), two batch sizes, reduction and accumulate changing per call`, () => {
      const seq = net(['linear', 'tanh', 'linear'], [6, 8, 8, 3], 'float64', 11);
      // Count the native engine's binds and bound runs (it takes both exports at prepare).
      const calls = { bind: 0, run: 0 };
      const { stackBind, stackRun } = b;
      if (backend === 'native') {
        Object.assign(b, {
          stackBind: (...a: Parameters<typeof stackBind>) => (calls.bind++, stackBind(...a)),
          stackRun: (...a: Parameters<typeof stackRun>) => (calls.run++, stackRun(...a)),
        });
      }
      let prepared: PreparedNet;
      try {
        prepared = engine.prepare(describeNet(seq));
      } finally {
        Object.assign(b, { stackBind, stackRun });
      }
      const sets = Array.from({ length: MAX_BINDINGS + 2 }, (_, s) => ({
        grads: Object.values(seq.params).map((t, j) => Float64Array.from(randomArray(t.length, 20 * s + j))),
        dX: s % 3 === 0 ? null : new Float64Array(0),
      }));
      // Each set twice in a row (bound from its second call on native), in turn, three rounds:
      // past MAX_BINDINGS the oldest bound set is dropped, and comes back unbound, then bound again.
      for (let round = 0; round < 3; round++) {
        for (const [s, set] of sets.entries()) for (const B of [2, 5]) for (const twice of [0, 1]) {
          const reduction = REDUCTIONS[(round + s + twice) % 2];
          const accumulate = (round + s + B + twice) % 3 === 0;
          const what = `round ${round}, set ${s}, B=${B}, call ${twice + 1} ${reduction}${accumulate ? ' accumulate' : ''}`;
          const X = Float64Array.from(randomArray(B * 6, B + 30));
          const y = randomLabels(B, 3, B + 31);
          // Each set's dX per B: a new one when B changes (its rows are B's).
          if (set.dX !== null && set.dX.length !== B * 6) set.dX = Float64Array.from(randomArray(B * 6, s + 40));
          const out: Record<string, FloatArray> = {};
          Object.keys(seq.params).forEach((k, j) => (out[`d${k}`] = set.grads[j].slice()));
          if (set.dX) out.dX = set.dX.slice();
          const want = seq.forwardBackward(X, y, { backend, reduction, accumulate, inputGrad: set.dX !== null, out });
          const r = ok(prepared.forwardBackward({ X, y, B, grads: set.grads, dX: set.dX, reduction, accumulate }), what);
          expect(Object.is(r.loss, want.loss), `${what}: loss`).toBe(true);
          Object.keys(seq.params).forEach((k, j) => sameBits(set.grads[j], want.grads[`d${k}`], `${what}: d${k}`));
          if (set.dX) sameBits(set.dX, want.grads.dX, `${what}: dX`);
        }
      }
      if (backend === 'native') {
        // Every second call of a set ran bound (3 rounds × 6 sets × 2 sizes), each bound anew:
        // cycling through more sets than MAX_BINDINGS drops each before it comes back.
        expect(calls).toEqual({ bind: 3 * sets.length * 2, run: 3 * sets.length * 2 });
        // The last set is still bound: no new bind.
        const last = sets[sets.length - 1];
        for (let i = 0; i < 2; i++) ok(prepared.forwardBackward({ X: new Float64Array(30), y: new Int32Array(5), B: 5, grads: last.grads, dX: last.dX, reduction: 'sum', accumulate: false }));
        expect(calls).toEqual({ bind: 3 * sets.length * 2, run: 3 * sets.length * 2 + 2 });
      }
    });
  });

  describe.skipIf(skip)(backendTitle('engine = the two-layer forwardBackward, bit for bit', backend, skip), () => {
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
          }
        }
      });
    }
  });

  describe.skipIf(skip)(backendTitle('engine: a NaN or ±Infinity is a failure at the right stage and layer', backend, skip), () => {
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
