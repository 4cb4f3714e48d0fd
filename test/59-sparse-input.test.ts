// The native backend's sparse first layer (native/core/sparse.h, stack.h sparseFirstLayer): when
// the first layer is a Linear, B·in·out > 4096 and at most a quarter of X is nonzero, Z = b + X·W
// and dW = Xᵀ·dZ are summed over X's nonzeros only, each output in one fixed order. Held here to
// truths that share no code with it:
// 1. the bits of a plain sequential loop written below (float64; Math.fround at every operation for
//    float32), for the step and forward(), subnormals included, at 1, 2, 5 and 17 threads and on
//    wasm; the dense path (setSparseInput(false)) differs from that loop, so the comparison shows
//    which path ran;
// 2. LibTorch autograd (float64) on deeper nets, within test/05's bound for two summation orders;
// 3. which path runs: a quarter nonzero and one more, −0 not counted, a product of 4096 or less
//    (there the dense loops sum in the same order: it holds the toy sizes' bits, it cannot tell the
//    paths apart), an activation first, the exact mode;
// 4. failures (NaN/±Infinity in X, W, b, an overflowing dW) worded and staged as on the dense path;
// 5. X rewritten by another thread during the calls: no crash, a finite loss each time; 5b. Node
//    threads sharing the helper pool;
// 6. setSparseInput's and setKernelSet's argument checks; 7. a Trainer on sparse data against the torch backend's, and
//    the native minibatch gather's index and dtype checks.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { coreBinding } from '../lib/binding';
import { LAYER_CODE, type PreparedNet, type StackDescription, type StepFailure } from '../lib/engine/engine';
import { nativeEngine } from '../lib/engine/native';
import {
  getNumThreads, getSparseInput, type Layer, Linear, ReLU, Sequential, setNumThreads, setSparseInput, Sigmoid, SoftmaxCrossEntropy, Tanh, Trainer,
} from '../lib/index';
import type { Dtype, FloatArray, Reduction } from '../lib/types';
import { backendTitle, EPS, maxAbs, normwise, randomArray, randomLabels, sameBits, skipReason, thrown, typed } from './helpers';

const DTYPES: Dtype[] = ['float64', 'float32'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];
const wasmSkip = skipReason('wasm');
const torchSkip = skipReason('torch');
const THREADS = getNumThreads();
const DIST = join(__dirname, '..', 'dist', 'lib', 'index.js');
/** Why the exact mode does not run here (it refuses this machine's ATen capability), or null. */
const exactSkip = (() => {
  try {
    const b = coreBinding();
    b.stackExact(b.stackPrepare(new Int32Array([0]), new Int32Array([2, 2]), false), true);
    return null;
  } catch (e) {
    return `the exact mode refuses this machine: ${(e as Error).message}`;
  }
})();

afterEach(() => {
  setSparseInput(true);
  setNumThreads(THREADS);
});
afterAll(() => {
  setSparseInput(true);
  setNumThreads(THREADS);
});

/** fn with the sparse path switched on or off, the switch restored after. */
/**
 * The instruction sets this CPU runs the sparse loops in (native/core/sparse.h: AVX-512, AVX2 and
 * the portable 16-byte loops of SSE2, NEON and WebAssembly), widest first: each is held to the
 * same sequential loop. A CPU without AVX-512 runs the AVX2 loops, which 64-byte vectors once
 * made 16× slower there; the switch lets this machine run each set.
 */
const KERNELS = (['avx512', 'avx2', 'portable'] as const).filter((_, i, all) => all.indexOf(coreBinding().getKernelSet()) <= i);
function withKernels<R>(kernels: (typeof KERNELS)[number], fn: () => R): R {
  const was = coreBinding().getKernelSet();
  coreBinding().setKernelSet(kernels);
  try {
    return fn();
  } finally {
    coreBinding().setKernelSet(was);
  }
}

function withSparse<R>(on: boolean, fn: () => R): R {
  const was = getSparseInput();
  setSparseInput(on);
  try {
    return fn();
  } finally {
    setSparseInput(was);
  }
}

// ---- data ---------------------------------------------------------------------------------------

/** A small LCG in [0, 1), apart from lib/rng. */
function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * X [B,D] with about `density` of its entries nonzero (values in ±2, negatives included), every
 * fifth row all zeros, column `zeroCol` all zeros, and a −0 in some of the zero places (a zero for
 * the sparse path: skipped, never counted).
 */
function sparseX(dtype: Dtype, B: number, D: number, density: number, seed: number, zeroCol = Math.min(1, D - 1)): FloatArray {
  const r = lcg(seed);
  const X = typed(dtype, new Float64Array(B * D));
  for (let i = 0; i < B; i++) {
    for (let k = 0; k < D; k++) {
      const u = r();
      const v = (r() * 2 - 1) * 2;
      if (i % 5 === 3 || k === zeroCol) X[i * D + k] = u < 0.1 ? -0 : 0;
      else X[i * D + k] = u < density ? v : u < density + 0.05 ? -0 : 0;
    }
  }
  return X;
}

/** X with exactly `count` nonzeros (values in ±2) at positions chosen by the seed, and `negZeros` −0s elsewhere. */
function exactlyNonzero(dtype: Dtype, B: number, D: number, count: number, seed: number, negZeros = 0): FloatArray {
  const r = lcg(seed);
  const order = Array.from({ length: B * D }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const X = typed(dtype, new Float64Array(B * D));
  for (let n = 0; n < count; n++) X[order[n]] = (r() < 0.5 ? -1 : 1) * (0.25 + r() * 1.75);
  for (let n = count; n < count + negZeros; n++) X[order[n]] = -0;
  return X;
}

function nonzeros(X: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < X.length; i++) n += X[i] !== 0 ? 1 : 0; // −0 === 0: not counted, as the path does not
  return n;
}

/** A one-Linear net (logits = Z) with seeded W [D,C] and b [C], its loss summed (dZ = probs − onehot). */
function oneLinear(dtype: Dtype, D: number, C: number, seed: number): Sequential {
  const W = typed(dtype, randomArray(D * C, seed, 1 / Math.sqrt(D)));
  const b = typed(dtype, randomArray(C, seed + 1, 0.1));
  return new Sequential([new Linear(D, C, { W, b })], { loss: new SoftmaxCrossEntropy({ reduction: 'sum' }) });
}

// ---- the sequential reference -------------------------------------------------------------------

/**
 * Z = b + X·W and dW = (old +) Xᵀ·(P − onehot(y)) from the definition of the sparse path, one
 * operation at a time: Z[i,j] = b[j] + ((0 + x_ik1·w_k1j) + x_ik2·w_k2j + …) over X's nonzeros in
 * increasing k, dW[k,j] = old[k,j] + ((0 + x_i1k·dZ_i1j) + …) over rows in increasing i, every
 * product and sum rounded to the dtype (Math.fround for float32: float64 holds a float32 product
 * exactly and rounding its sum twice is innocuous, so each step is float32's own rounding).
 */
function reference(dtype: Dtype, X: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, P: ArrayLike<number>, y: ArrayLike<number>, old: ArrayLike<number> | null) {
  const r = dtype === 'float64' ? (x: number) => x : Math.fround;
  const C = b.length;
  const D = W.length / C;
  const B = X.length / D;
  const Z = new Float64Array(B * C);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let k = 0; k < D; k++) {
        const x = X[i * D + k];
        if (x !== 0) s = r(s + r(x * W[k * C + j]));
      }
      Z[i * C + j] = r(b[j] + s);
    }
  }
  const dW = new Float64Array(D * C);
  for (let k = 0; k < D; k++) {
    for (let j = 0; j < C; j++) {
      let s = 0;
      for (let i = 0; i < B; i++) {
        const x = X[i * D + k];
        if (x !== 0) s = r(s + r(x * r(P[i * C + j] - (y[i] === j ? 1 : 0))));
      }
      dW[k * C + j] = old ? r(old[k * C + j] + s) : s;
    }
  }
  return { Z, dW };
}

/** Entries whose bits differ (−0 against 0 counts). */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) n += Object.is(a[i], b[i]) ? 0 : 1;
  return n;
}

/** One step of a one-Linear net: Z (a copy of the logits), dW1, and the probabilities. */
function step(seq: Sequential, X: FloatArray, y: Int32Array, backend: 'native' | 'wasm', old: FloatArray | null) {
  const out = old ? { dW1: old.slice() } : undefined;
  const r = seq.forwardBackward(X, y, { backend, cache: true, ...(out ? { out, accumulate: true } : {}) });
  return { Z: r.cache!.outputs[0].slice(), dW: r.grads.dW1.slice(), P: r.cache!.probs.slice() };
}

/** [B, D, C]: out past whole 4-vector blocks (a scalar tail), in < 16, out < one block, no tail, one row. */
const SHAPES: [number, number, number][] = [
  [40, 300, 70],
  [33, 13, 200],
  [64, 97, 10],
  [9, 520, 128],
  [1, 4100, 3],
];

describe('1. the sparse first layer gives the bits of a sequential loop over the nonzeros', () => {
  for (const dtype of DTYPES) {
    for (const accumulate of [false, true]) {
      it(`${dtype}${accumulate ? ', accumulating into dW' : ''}: Z and dW at 1, 2, 5 and 17 threads, in each instruction set (${KERNELS.join(', ')}); the dense path differs`, () => {
        let denseDiffers = 0;
        for (const [B, D, C] of SHAPES) {
          const what = `${dtype} B=${B} D=${D} C=${C}`;
          const X = sparseX(dtype, B, D, 0.15, B + D);
          expect(nonzeros(X), `${what}: at most a quarter nonzero`).toBeLessThanOrEqual(Math.floor((B * D) / 4));
          const y = randomLabels(B, C, D);
          const seq = oneLinear(dtype, D, C, C);
          const old = accumulate ? typed(dtype, randomArray(D * C, 7, 3)) : null;
          // 5 and 17 threads: more helpers than cores, and more than the 16 parts a job is cut into.
          for (const kernels of KERNELS) {
            for (const threads of [1, 2, 5, 17]) {
              setNumThreads(threads);
              const got = withKernels(kernels, () => step(seq, X, y, 'native', old));
              const want = reference(dtype, X, seq.params.W1, seq.params.b1, got.P, y, old);
              const at = `${what}, ${kernels}, ${threads} thread(s)`;
              expect(differing(got.Z, want.Z), `${at}: Z`).toBe(0);
              expect(differing(got.dW, want.dW), `${at}: dW`).toBe(0);
              // The forward alone (forward, predict, evaluate) runs the same product.
              expect(differing(withKernels(kernels, () => seq.forward(X)), want.Z), `${at}: forward()`).toBe(0);
            }
          }
          setNumThreads(THREADS);
          const dense = withSparse(false, () => step(seq, X, y, 'native', old));
          const want = reference(dtype, X, seq.params.W1, seq.params.b1, dense.P, y, old);
          const d = differing(dense.Z, want.Z) + differing(dense.dW, want.dW);
          if (B === 40) expect(d, `${what}: the dense path's bits are OpenBLAS's, not the loop's`).toBeGreaterThan(0);
          denseDiffers += d;
        }
        expect(denseDiffers).toBeGreaterThan(0);
      });
    }
  }

  for (const dtype of DTYPES) {
    it(`${dtype}: subnormal x and products keep their bits on every thread and instruction set (nothing flushes to zero)`, () => {
      const [B, D, C] = [40, 300, 70];
      const tiny = dtype === 'float64' ? 1e-310 : 1e-40;
      const smallest = dtype === 'float64' ? 2 ** -1022 : 2 ** -126;
      const X = sparseX(dtype, B, D, 0.15, 17);
      for (let i = 0; i < X.length; i += 2) X[i] *= tiny; // half the nonzeros subnormal
      const y = randomLabels(B, C, 18);
      const seq = oneLinear(dtype, D, C, 19);
      for (let k = 0; k < D; k += 3) for (let j = 0; j < C; j++) seq.params.W1[k * C + j] *= 1e-10;
      let subnormal = 0;
      for (let i = 0; i < X.length; i++) subnormal += X[i] !== 0 && Math.abs(X[i]) < smallest ? 1 : 0;
      expect(subnormal).toBeGreaterThan(100);
      const backends: ('native' | 'wasm')[] = wasmSkip ? ['native'] : ['native', 'wasm'];
      for (const backend of backends) {
        for (const kernels of backend === 'native' ? KERNELS : (['portable'] as const)) {
          for (const threads of backend === 'native' ? [1, 2, 5] : [THREADS]) {
            setNumThreads(threads);
            const got = withKernels(kernels, () => step(seq, X, y, backend, null));
            const want = reference(dtype, X, seq.params.W1, seq.params.b1, got.P, y, null);
            expect(differing(got.Z, want.Z), `${backend} ${kernels} Z, ${threads} thread(s)`).toBe(0);
            expect(differing(got.dW, want.dW), `${backend} ${kernels} dW, ${threads} thread(s)`).toBe(0);
          }
        }
      }
    });
  }

  describe.skipIf(wasmSkip)(backendTitle("the WebAssembly build: the loop's bits, whatever setSparseInput says", 'wasm', wasmSkip), () => {
    for (const dtype of DTYPES) {
      it(`${dtype}: Z and dW, with and without accumulate`, () => {
        for (const [B, D, C] of SHAPES) {
          for (const accumulate of [false, true]) {
            const what = `${dtype} B=${B} D=${D} C=${C} accumulate=${accumulate}`;
            const X = sparseX(dtype, B, D, 0.15, B + D);
            const y = randomLabels(B, C, D);
            const seq = oneLinear(dtype, D, C, C);
            const old = accumulate ? typed(dtype, randomArray(D * C, 7, 3)) : null;
            const native = step(seq, X, y, 'native', old);
            for (const on of [true, false]) {
              const got = withSparse(on, () => step(seq, X, y, 'wasm', old));
              const want = reference(dtype, X, seq.params.W1, seq.params.b1, got.P, y, old);
              expect(differing(got.Z, want.Z), `${what} Z (setSparseInput(${on}))`).toBe(0);
              expect(differing(got.dW, want.dW), `${what} dW (setSparseInput(${on}))`).toBe(0);
              // Z has native's bits too (dW is held to the loop with wasm's own probabilities: its exp is not libm's).
              expect(differing(got.Z, native.Z), `${what} Z: native's bits`).toBe(0);
            }
          }
        }
      });
    }
  });
});

// ---- 2. whole networks against LibTorch ---------------------------------------------------------

function stack(widths: number[], acts: ('relu' | 'tanh' | 'sigmoid')[], dtype: Dtype, seed: number): Sequential {
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    if (i > 0) {
      const a = acts[(i - 1) % acts.length];
      layers.push(a === 'relu' ? new ReLU() : a === 'tanh' ? new Tanh() : new Sigmoid());
    }
    const [inF, outF] = [widths[i], widths[i + 1]];
    layers.push(new Linear(inF, outF, { W: typed(dtype, randomArray(inF * outF, seed + 13 * i, 2 / Math.sqrt(inF))), b: typed(dtype, randomArray(outF, seed + 13 * i + 5, 0.5)) }));
  }
  return new Sequential(layers);
}

function to64(seq: Sequential): Sequential {
  const p: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(seq.params)) p[k] = Float64Array.from(t);
  return Sequential.fromSpec({ ...seq.spec(), dtype: 'float64' }, p);
}

const NETS: { name: string; B: number; widths: number[]; acts: ('relu' | 'tanh' | 'sigmoid')[] }[] = [
  { name: 'Linear–ReLU–Linear', B: 64, widths: [300, 50, 10], acts: ['relu'] },
  { name: 'Linear–Tanh–Linear–Sigmoid–Linear', B: 48, widths: [200, 40, 30, 10], acts: ['tanh', 'sigmoid'] },
];

describe.skipIf(torchSkip)(backendTitle('2. whole networks on the sparse path agree with LibTorch autograd (float64)', 'torch', torchSkip), () => {
  for (const net of NETS) for (const dtype of DTYPES) for (const reduction of REDUCTIONS) {
    it(`${net.name}, ${dtype}, ${reduction}: loss, dX and every gradient within 2·n·eps (test/05's bound)`, () => {
      const seq = stack(net.widths, net.acts, dtype, net.widths[0] + net.B);
      const X = sparseX(dtype, net.B, net.widths[0], 0.2, net.B);
      expect(nonzeros(X)).toBeLessThanOrEqual(Math.floor((net.B * net.widths[0]) / 4));
      const y = randomLabels(net.B, 10, 3);
      const ref = to64(seq).forwardBackward(Float64Array.from(X), y, { backend: 'torch', reduction, inputGrad: true });
      const got = seq.forwardBackward(X, y, { reduction, inputGrad: true });
      // test/05: two summation orders of up to n terms, n·eps classically; 2·n·eps allowed, normwise,
      // each tensor to a floor of a hundredth of the largest gradient entry.
      const tol = 2 * EPS[dtype] * Math.max(net.B, ...net.widths);
      expect(normwise([got.loss], [ref.loss]), 'loss').toBeLessThanOrEqual(tol);
      expect(Object.keys(got.grads).sort()).toEqual(Object.keys(ref.grads).sort());
      const floor = 0.01 * Math.max(...Object.values(ref.grads).map(maxAbs));
      for (const [k, g] of Object.entries(ref.grads)) expect(normwise(got.grads[k], g, floor), k).toBeLessThanOrEqual(tol);
      // The sparse path ran: the dense one's dW1 has other bits.
      const dense = withSparse(false, () => seq.forwardBackward(X, y, { reduction, inputGrad: true }));
      expect(differing(got.grads.dW1, dense.grads.dW1)).toBeGreaterThan(0);
    });
  }
});

// ---- 3. which path runs -------------------------------------------------------------------------

describe('3. path selection', () => {
  for (const dtype of DTYPES) {
    it(`${dtype}: at most a quarter nonzero (−0 not counted) → sparse; one more → dense`, () => {
      const [B, D, C] = [32, 100, 20];
      const cap = (B * D) / 4;
      const y = randomLabels(B, C, 1);
      const seq = oneLinear(dtype, D, C, 2);
      const cases: [string, FloatArray, 'sparse' | 'dense'][] = [
        ['exactly a quarter', exactlyNonzero(dtype, B, D, cap, 3), 'sparse'],
        ['a quarter, and 500 −0s', exactlyNonzero(dtype, B, D, cap, 3, 500), 'sparse'],
        ['one past a quarter', exactlyNonzero(dtype, B, D, cap + 1, 3), 'dense'],
        ['one past a quarter, and 500 −0s', exactlyNonzero(dtype, B, D, cap + 1, 3, 500), 'dense'],
      ];
      for (const [what, X, path] of cases) {
        const got = step(seq, X, y, 'native', null);
        const dense = withSparse(false, () => step(seq, X, y, 'native', null));
        const want = reference(dtype, X, seq.params.W1, seq.params.b1, got.P, y, null);
        const loop = differing(got.Z, want.Z) + differing(got.dW, want.dW);
        const blas = differing(got.Z, dense.Z) + differing(got.dW, dense.dW);
        if (path === 'sparse') {
          expect(loop, `${what}: the loop's bits`).toBe(0);
          expect(blas, `${what}: not the dense path's`).toBeGreaterThan(0);
        } else {
          expect(blas, `${what}: the dense path's bits`).toBe(0);
          expect(loop, `${what}: not the loop's`).toBeGreaterThan(0);
        }
      }
    });

    it(`${dtype}: a product B·in·out of 4096 keeps the dense path's bits; 4352 takes the sparse path`, () => {
      // At ≤ 4096 the dense path is blas.h's smallGemm, whose loops sum in the same order as the
      // sparse path (k ascending from zero; a skipped zero adds ±0): equal bits either way, so this
      // holds the toy sizes' bits (test/15's goldens) rather than telling the paths apart.
      const y = randomLabels(4, 16, 1);
      const X = exactlyNonzero(dtype, 4, 64, 40, 5);
      const toy = oneLinear(dtype, 64, 16, 4);
      const on = step(toy, X, y, 'native', null);
      const off = withSparse(false, () => step(toy, X, y, 'native', null));
      expect(sameBits(on.Z, off.Z) && sameBits(on.dW, off.dW)).toBe(true);
      // One output more: OpenBLAS on the dense path, the loop's bits on the sparse one.
      const y17 = randomLabels(4, 17, 1);
      const over = oneLinear(dtype, 64, 17, 4);
      const got = step(over, X, y17, 'native', null);
      const want = reference(dtype, X, over.params.W1, over.params.b1, got.P, y17, null);
      expect(differing(got.Z, want.Z) + differing(got.dW, want.dW)).toBe(0);
    });

    it.skipIf(exactSkip)(`${dtype}: the exact mode never takes it (the same bits either way, not the default mode's)${exactSkip ? ` (skipped: ${exactSkip})` : ''}`, () => {
      const [B, D, C] = [40, 300, 70];
      const X = sparseX(dtype, B, D, 0.15, 14);
      const y = randomLabels(B, 10, 15);
      const seq = new Sequential([new Linear(D, C, { seed: 1, dtype }), new ReLU(), new Linear(C, 10, { seed: 2, dtype })]);
      const on = seq.forwardBackward(X, y, { exact: true });
      const off = withSparse(false, () => seq.forwardBackward(X, y, { exact: true }));
      expect(Object.is(on.loss, off.loss)).toBe(true);
      for (const k of Object.keys(on.grads)) expect(sameBits(on.grads[k], off.grads[k]), k).toBe(true);
      expect(sameBits(on.grads.dW1, seq.forwardBackward(X, y).grads.dW1)).toBe(false);
    });

    it(`${dtype}: an activation first → the dense path (bits of setSparseInput(false), not the loop's)`, () => {
      const [B, D, C] = [40, 300, 70];
      const X = sparseX(dtype, B, D, 0.15, 11);
      const y = randomLabels(B, C, 12);
      const inner = oneLinear(dtype, D, C, 13);
      const seq = new Sequential([new ReLU(), new Linear(D, C, { W: inner.params.W1, b: inner.params.b1 })], { loss: new SoftmaxCrossEntropy({ reduction: 'sum' }) });
      const run = () => {
        const r = seq.forwardBackward(X, y, { cache: true });
        return { Z: r.cache!.outputs[1].slice(), dW: r.grads.dW1.slice(), P: r.cache!.probs.slice() };
      };
      const on = run();
      const off = withSparse(false, run);
      expect(differing(on.Z, off.Z) + differing(on.dW, off.dW)).toBe(0);
      const relu = X.map((x) => (x > 0 ? x : 0));
      const want = reference(dtype, relu, seq.params.W1, seq.params.b1, on.P, y, null);
      expect(differing(on.Z, want.Z) + differing(on.dW, want.dW)).toBeGreaterThan(0);
    });
  }

  it('a first layer too wide for the room of a quarter of X: the dense path, never a workspace refused on its account', () => {
    // in = 2^26 features (float32): two B×in gradient buffers take 2·B·2^26 of the 2^32 − 1 elements
    // a workspace may hold, so B = 31 fits without the sparse region (cap = B·in/4) and not with it.
    const b = coreBinding();
    const handle = b.stackPrepare(Int32Array.of(LAYER_CODE.linear, LAYER_CODE.relu, LAYER_CODE.linear), Int32Array.of(2 ** 26, 4, 4, 2), true);
    const total = (B: number) => b.stackLayout(handle, B).at(-2)!;
    expect(total(31)).toBeLessThanOrEqual(2 ** 32 - 1);
    expect(total(31)).toBeLessThan(2 * 31 * 2 ** 26 + 2 ** 20); // the gradient buffers and the small tensors: no sparse region
    expect(total(8)).toBeGreaterThan(2 * 8 * 2 ** 26 + 8 * 2 ** 26 / 4); // where it fits, the region is there
    expect(() => b.stackLayout(handle, 33)).toThrow(/fits in a typed array/); // past the limit without it too
  });
});

// ---- 4. failures alike on both paths ------------------------------------------------------------

function describeNet(s: Sequential): StackDescription {
  return { dtype: s.dtype, kinds: Int32Array.from(s.layers, (l) => LAYER_CODE[l.kind]), widths: Int32Array.from(s.widths), params: Object.values(s.params) };
}

/** The engine's failure (stage, layer) of one step, or null; the gradient buffers it wrote into. */
function engineFailure(seq: Sequential, X: FloatArray, y: Int32Array, fill: number): { failure: StepFailure | null; grads: FloatArray[] } {
  const p: PreparedNet = nativeEngine.prepare(describeNet(seq));
  const grads = Object.values(seq.params).map((t) => typed(seq.dtype, new Float64Array(t.length).fill(fill)));
  const r = p.forwardBackward({ X, y, B: y.length, grads, dX: null, reduction: 'sum', accumulate: true });
  return { failure: r.failure ?? null, grads };
}

/** The error of a public step (class name and message), or 'ok'. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

describe('4. a NaN, an Infinity or an overflow fails alike on both paths', () => {
  for (const dtype of DTYPES) {
    const [B, D, C] = [40, 300, 70];
    const zeroCol = 17;
    const setup = () => {
      const X = sparseX(dtype, B, D, 0.15, 21, zeroCol);
      // Column 18 holds only −0s: a zero for the sparse path, −0·w for the dense product.
      for (let i = 0; i < B; i++) X[i * D + 18] = -0;
      const y = randomLabels(B, 10, 22);
      return { X, y, seq: new Sequential([new Linear(D, C, { W: typed(dtype, randomArray(D * C, 23, 0.06)), b: typed(dtype, randomArray(C, 24, 0.1)) }), new ReLU(), new Linear(C, 10, { seed: 2, dtype })]) };
    };
    const usedRow = (() => {
      const X = sparseX(dtype, B, D, 0.15, 21, zeroCol);
      for (let k = 0; k < D; k++) if (k !== zeroCol && k !== 18 && X[k] !== 0) return k;
      throw new Error('no used column in row 0');
    })();
    const cases: [string, (s: ReturnType<typeof setup>) => void, StepFailure][] = [
      ['NaN in X', (s) => { s.X[2 * D + usedRow] = NaN; }, { stage: 'forward', layer: 0 }],
      ['NaN in X, past the row\'s last whole vector', (s) => { s.X[2 * D + D - 1] = NaN; }, { stage: 'forward', layer: 0 }],
      ['−Infinity in X', (s) => { s.X[7 * D + 40] = -Infinity; }, { stage: 'forward', layer: 0 }],
      ['+Infinity in a row of W1 that no nonzero x multiplies (an all-zero column of X)', (s) => { s.seq.params.W1[zeroCol * C + 5] = Infinity; }, { stage: 'forward', layer: 0 }],
      ['NaN in a row of W1 that only −0s multiply', (s) => { s.seq.params.W1[18 * C + C - 1] = NaN; }, { stage: 'forward', layer: 0 }],
      ['−Infinity in a used row of W1', (s) => { s.seq.params.W1[usedRow * C + 3] = -Infinity; }, { stage: 'forward', layer: 0 }],
      ['NaN in b1', (s) => { s.seq.params.b1[C - 2] = NaN; }, { stage: 'forward', layer: 0 }],
    ];
    for (const [what, spoil, stage] of cases) {
      it(`${dtype}: ${what}: the same error and stage, and nothing written when accumulating`, () => {
        const errors: string[] = [];
        for (const on of [true, false]) {
          const s = setup();
          spoil(s);
          expect(nonzeros(s.X), 'at most a quarter nonzero (NaN counts)').toBeLessThanOrEqual((B * D) / 4);
          const e = withSparse(on, () => engineFailure(s.seq, s.X, s.y, 7));
          expect(e.failure, `setSparseInput(${on})`).toEqual(stage);
          expect(e.grads.every((g) => g.every((v) => v === 7)), `setSparseInput(${on}): nothing written`).toBe(true);
          errors.push(withSparse(on, () => outcome(() => s.seq.forwardBackward(s.X, s.y))));
          errors.push(withSparse(on, () => outcome(() => s.seq.forward(s.X))));
        }
        expect(errors[0]).not.toBe('ok');
        expect(errors[1]).not.toBe('ok');
        expect(errors[2]).toBe(errors[0]); // forwardBackward, dense
        expect(errors[3]).toBe(errors[1]); // forward, dense
      });
    }

    it(`${dtype}: a dW1 that overflows the dtype: the 'grads' failure at layer 0 on both paths, the same entries non-finite`, () => {
      const big = dtype === 'float64' ? 1e308 : 3e38;
      const tiny = dtype === 'float64' ? 3e-308 : 1.5e-38; // x·w ≈ 3–4.5: one equal shift of every logit
      const runs: { message: string; failure: StepFailure | null; bad: number[] }[] = [];
      for (const on of [true, false]) {
        const X = sparseX(dtype, B, D, 0.1, 31, zeroCol);
        for (const i of [0, 5, 9, 30]) X[i * D + 50] = big; // four rows of column 50, one label: dW1[50, 4] ≈ −4·big·0.9
        const y = randomLabels(B, C, 32);
        for (const i of [0, 5, 9, 30]) y[i] = 4;
        const seq = oneLinear(dtype, D, C, 33);
        seq.params.W1.fill(tiny, 50 * C, 51 * C);
        const message = withSparse(on, () => outcome(() => seq.forwardBackward(X, y)));
        const e = withSparse(on, () => engineFailure(seq, X, y, 0.5));
        const bad: number[] = [];
        e.grads[0].forEach((v, i) => Number.isFinite(v) || bad.push(i));
        runs.push({ message, failure: e.failure, bad });
      }
      expect(runs[0].message).toMatch(/^RangeError: Expected finite gradients but dW1 overflowed/);
      expect(runs[0].message).toBe(runs[1].message);
      expect(runs[0].failure).toEqual({ stage: 'grads', layer: 0 });
      expect(runs[1].failure).toEqual({ stage: 'grads', layer: 0 });
      // README: on a gradient overflow the buffers hold the overflowed values (accumulated here).
      expect(runs[0].bad).toContain(50 * C + 4);
      expect(runs[0].bad).toEqual(runs[1].bad);
    });

    it(`${dtype}: an Infinity already in the accumulated dW1 is the 'grads' failure on both paths`, () => {
      const outcomes: (StepFailure | null)[] = [];
      for (const on of [true, false]) {
        const X = sparseX(dtype, B, D, 0.15, 41, zeroCol);
        const y = randomLabels(B, C, 42);
        const seq = oneLinear(dtype, D, C, 43);
        const p = nativeEngine.prepare(describeNet(seq));
        const grads = Object.values(seq.params).map((t) => typed(dtype, new Float64Array(t.length)));
        grads[0][zeroCol * C + 1] = Infinity; // a row no x touches: the sum there is 0, the old value stays
        outcomes.push(withSparse(on, () => p.forwardBackward({ X, y, B, grads, dX: null, reduction: 'sum', accumulate: true })).failure ?? null);
      }
      expect(outcomes[0]).toEqual({ stage: 'grads', layer: 0 });
      expect(outcomes[1]).toEqual(outcomes[0]);
    });
  }
});

// ---- 5. X rewritten by another thread -----------------------------------------------------------

describe('5. X in a SharedArrayBuffer that another thread rewrites', () => {
  for (const threads of [1, 2]) {
    it(`${threads} thread(s): rows flip between all-zero and dense across the cap mid-call; every call a finite loss, no crash`, async () => {
      const [B, D, C] = [64, 256, 10];
      const sab = new SharedArrayBuffer(8 * B * D);
      const X = new Float64Array(sab);
      const y = randomLabels(B, C, 51);
      const seq = Sequential.mlp([D, 32, C], { seed: 5 });
      // Each pass makes a run of rows dense (ones), then zeroes them again: from about 1/64 of X to
      // well past a quarter, so a compression meets rows that change while it reads them.
      const worker = new Worker(
        `const { workerData } = require('node:worker_threads'); const X = new Float64Array(workerData.sab); const { B, D } = workerData;
         for (let pass = 0; ; pass++) {
           const first = pass % B, count = 1 + (pass * 7) % (B / 2);
           for (let i = first; i < first + count && i < B; i++) X.fill(0.5 + (pass & 1), i * D, (i + 1) * D);
           for (let i = 0; i < B; i++) X.fill(0, i * D, (i + 1) * D - 4);
         }`,
        { eval: true, workerData: { sab, B, D } },
      );
      try {
        setNumThreads(threads);
        let ok = 0;
        const seen = { sparse: 0, dense: 0 }; // X as sampled between calls: on both sides of the cap
        for (let i = 0; i < 3000; i++) {
          if (i % 10 === 0) seen[nonzeros(X) <= (B * D) / 4 ? 'sparse' : 'dense']++;
          const r = seq.forwardBackward(X, y, { inputGrad: true });
          expect(Number.isFinite(r.loss)).toBe(true);
          ok++;
        }
        expect(ok).toBe(3000);
        expect(seen.sparse, JSON.stringify(seen)).toBeGreaterThan(0);
        expect(seen.dense, JSON.stringify(seen)).toBeGreaterThan(0);
      } finally {
        await worker.terminate();
        setNumThreads(THREADS);
      }
    });
  }
});

describe("5b. Node threads sharing the helper pool (one per process): each step's bits, whoever holds the pool", () => {
  it('the main thread and two workers run sparse steps at 2 threads at once: every result is its own sequential bits', async () => {
    if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`npm run setup\` (workers need the compiled library)`);
    const [B, D, C] = [64, 400, 70];
    const problems = [0, 1, 2].map((p) => {
      const X = sparseX('float32', B, D, 0.15, 90 + p);
      const y = randomLabels(B, C, 93 + p);
      const W = typed('float32', randomArray(D * C, 96 + p, 1 / Math.sqrt(D)));
      const b = typed('float32', randomArray(C, 99 + p, 0.1));
      const seq = new Sequential([new Linear(D, C, { W, b })], { loss: new SoftmaxCrossEntropy({ reduction: 'sum' }) });
      return { X, y, W, b, seq };
    });
    setNumThreads(2);
    // Each problem's bits, alone in the process (held to the loop in test 1).
    const want = problems.map((p) => new Uint8Array(p.seq.forwardBackward(p.X, p.y).grads.dW1.slice().buffer));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const h = require(workerData.dist);
      const { B, D, C, X, y, W, b, want, n } = workerData;
      const seq = new h.Sequential([new h.Linear(D, C, { W, b })], { loss: new h.SoftmaxCrossEntropy({ reduction: 'sum' }) });
      let bad = 0;
      for (let i = 0; i < n; i++) {
        const g = seq.forwardBackward(X, y).grads.dW1;
        if (Buffer.compare(Buffer.from(g.buffer, g.byteOffset, g.byteLength), Buffer.from(want)) !== 0) bad++;
      }
      parentPort.postMessage({ bad });`;
    const n = 300;
    const workers = [1, 2].map((i) => new Worker(code, { eval: true, workerData: { dist: DIST, B, D, C, X: problems[i].X, y: problems[i].y, W: problems[i].W, b: problems[i].b, want: want[i], n } }));
    const done = workers.map((w) => new Promise<{ bad: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    }));
    try {
      let bad = 0;
      for (let i = 0; i < n; i++) {
        const g = problems[0].seq.forwardBackward(problems[0].X, problems[0].y).grads.dW1;
        if (!sameBits(new Uint8Array(g.buffer, g.byteOffset, g.byteLength), want[0])) bad++;
      }
      expect(bad, 'main thread').toBe(0);
      expect((await Promise.all(done)).map((r) => r.bad)).toEqual([0, 0]);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });
});

// ---- 6. the switch ------------------------------------------------------------------------------

describe('6. setSparseInput / getSparseInput', () => {
  it('on by default; round-trips; a non-boolean is a TypeError naming on', () => {
    expect(getSparseInput()).toBe(true);
    setSparseInput(false);
    expect(getSparseInput()).toBe(false);
    setSparseInput(true);
    expect(getSparseInput()).toBe(true);
    for (const bad of [1, 0, 'true', null, undefined, {}]) {
      const e = thrown(() => setSparseInput(bad as never));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/^Expected a boolean for on but received /);
      expect(getSparseInput()).toBe(true);
    }
    // The addon checks it too.
    expect(() => coreBinding().setSparseInput(1 as never)).toThrow(TypeError);
    expect(getSparseInput()).toBe(true);
  });

  it("setKernelSet: the CPU's widest set by default; a narrower one round-trips; a wider or unknown name is a RangeError, a non-string a TypeError", () => {
    const b = coreBinding();
    const best = b.getKernelSet();
    expect(best).toBe(KERNELS[0]);
    for (const k of KERNELS) expect(withKernels(k, () => b.getKernelSet())).toBe(k);
    expect(b.getKernelSet()).toBe(best);
    const wider = (['avx2', 'avx512'] as const).filter((k) => !(KERNELS as readonly string[]).includes(k));
    for (const name of [...wider, 'sse2', 'AVX2', '']) {
      expect(() => b.setKernelSet(name as never)).toThrow(/^Expected a kernel set this CPU runs \("portable" … "/);
      expect(b.getKernelSet()).toBe(best);
    }
    for (const bad of [0, 2, null, undefined, true, {}]) {
      expect(() => b.setKernelSet(bad as never)).toThrow(TypeError);
      expect(() => b.setKernelSet(bad as never)).toThrow(/^Expected "portable", "avx2" or "avx512" for name but received /);
    }
    expect(b.getKernelSet()).toBe(best);
  });
});

// ---- 7. training --------------------------------------------------------------------------------

describe('7. training on sparse data', () => {
  const [N, D, C] = [300, 784, 10];
  const r = lcg(12345);
  const X64 = new Float64Array(N * D);
  for (let i = 0; i < X64.length; i++) X64[i] = r() < 0.2 ? r() : 0; // 80% zeros, as MNIST's background
  const y = Int32Array.from({ length: N }, () => Math.floor(r() * C));

  for (const dtype of DTYPES) {
    it.skipIf(torchSkip)(backendTitle(`${dtype}: 784→64→10, 3 epochs of fitSync: native's loss curve is the torch backend's to 64 eps an epoch (test/07's bound)`, 'torch', torchSkip), () => {
      const X = dtype === 'float64' ? X64 : Float32Array.from(X64);
      const fit = (backend: 'native' | 'torch') => {
        const t = new Trainer(Sequential.mlp([D, 64, C], { seed: 1, dtype }), { backend, batchSize: 32, lr: 0.1, seed: 2 });
        return { t, history: t.fitSync(X, y, { epochs: 3 }).history };
      };
      const native = fit('native');
      const torch = fit('torch');
      for (let e = 0; e < 3; e++) {
        const rel = Math.abs(native.history[e].loss - torch.history[e].loss) / torch.history[e].loss;
        expect(rel / EPS[dtype], `epoch ${e + 1}`).toBeLessThanOrEqual(64);
      }
      expect(native.history[2].loss).toBeLessThan(native.history[0].loss);
      // The sparse path ran: the dense path's run has other bits.
      const dense = withSparse(false, () => fit('native'));
      expect(Object.keys(native.t.params).some((k) => !sameBits(native.t.params[k], dense.t.params[k]))).toBe(true);
    });
  }

  it('gatherRows copies the rows and labels that order names, and refuses a bad index or dtype', () => {
    const g = coreBinding().gatherRows;
    const X = Float64Array.from({ length: 5 * 3 }, (_, i) => i);
    const labels = Int32Array.of(10, 11, 12, 13, 14);
    const order = Int32Array.of(4, 0, 2, 1, 3);
    const Xb = new Float64Array(2 * 3);
    const yb = new Int32Array(2);
    g(X, 3, order, 1, 2, Xb, labels, yb);
    expect([...Xb]).toEqual([0, 1, 2, 6, 7, 8]);
    expect([...yb]).toEqual([10, 12]);
    for (const bad of [5, -1, 2 ** 31 - 1]) {
      const e = thrown(() => g(X, 3, Int32Array.of(0, bad), 0, 2, Xb, labels, yb));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe(`Expected a row index in [0, 5) but received ${bad}`);
    }
    expect(() => g(X, 3, order, 4, 2, Xb, labels, yb)).toThrow(RangeError); // past the end of order
    expect(() => g(X, 3, order, 0.5, 1, Xb, labels, yb)).toThrow(RangeError);
    expect(() => g(X, 3, order, 0, 3, Xb, labels, yb)).toThrow(RangeError); // Xb too short
    expect(() => g(X, 4, order, 0, 1, Xb, labels, yb)).toThrow(RangeError); // 15 is not N·4
    expect(() => g(X, 3, order, 0, 1, new Float32Array(6), labels, yb)).toThrow(TypeError);
    expect(() => g(X, 3, Float64Array.from(order) as never, 0, 1, Xb, labels, yb)).toThrow(TypeError);
    expect(() => g(X, 3, order, 0, 1, Xb, Float64Array.from(labels) as never, yb)).toThrow(TypeError);
    expect(() => g(X, 3, order, 0, 1, Xb, labels, new Uint32Array(2) as never)).toThrow(TypeError);
    expect(() => g(Array.from(X) as never, 3, order, 0, 1, Xb, labels, yb)).toThrow(TypeError);
    // Outputs that share memory with an input (the copy would read rows it already overwrote).
    expect(() => g(X, 3, order, 0, 2, X.subarray(3, 9), labels, yb)).toThrow(/Expected Xb not to share memory with X/);
    expect(() => g(X, 3, order, 0, 2, Xb, labels, labels.subarray(1, 3))).toThrow(/Expected yb not to share memory with y/);
    const both = new Int32Array(7);
    both.set(order);
    expect(() => g(X, 3, both.subarray(0, 5), 0, 2, Xb, labels, both.subarray(5, 7))).not.toThrow();
    expect(() => g(X, 3, both.subarray(0, 5), 0, 2, Xb, labels, both.subarray(4, 6))).toThrow(/Expected yb not to share memory with order/);
  });
});
