// native (OpenBLAS) and ts (plain loops) agree to a few epsilon on random shapes, including 1s,
// for every activation, reduction and dtype (property-based with fast-check).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forwardBackward } from '../lib';
import { randomArray, randomLabels } from './helpers';

const EPS = { float64: 2 ** -52, float32: 2 ** -23 } as const;

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * max|a − b| / max(max|b|, floor). The floor (a hundredth of the largest gradient entry of the
 * call) covers tensors that are themselves the result of cancellation — with D = H = 1, dW1 is one
 * sum whose terms are much larger than the result — where rounding is relative to the terms.
 */
function normwise(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  const scale = Math.max(maxAbs(b), floor);
  return scale === 0 ? diff : diff / scale;
}

describe('native and ts agree on random shapes', () => {
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
          const t = forwardBackward(params, X, y, { ...opts, backend: 'ts' });
          // Two different summation orders of up to n = max(B, D, H, C) terms: the classic bound is
          // n·eps; we allow 2·n·eps (seen here: at most 24 eps at n = 40).
          const tol = 2 * EPS[dtype] * Math.max(B, D, H, C);
          expect(normwise([n.loss], [t.loss])).toBeLessThanOrEqual(tol);
          const floor = 0.01 * Math.max(...(['dX', 'dW1', 'db1', 'dW2', 'db2'] as const).map((k) => maxAbs(t.grads[k]!)));
          for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) {
            expect(normwise(n.grads[k]!, t.grads[k]!, floor), `${k} ${JSON.stringify({ B, D, H, C, activation, reduction, dtype })}`).toBeLessThanOrEqual(tol);
          }
        },
      ),
      { numRuns: 300, seed: 20261123 },
    );
  });
});
