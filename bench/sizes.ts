// The problem sizes and the data of one benchmark case, built as a training loop holds it: seeded
// weights, a batch, and gradient buffers allocated once and passed as `out` on every step.
import { initParams } from '../lib/params';
import { Rng } from '../lib/rng';
import type { Dims, Dtype, FloatArray, Grads } from '../lib/types';

/** From a toy size where call overhead dominates to one where the GEMMs do. */
export const SIZES: readonly Dims[] = [
  { B: 4, D: 5, H: 10, C: 3 },
  { B: 64, D: 128, H: 256, C: 10 },
  { B: 256, D: 784, H: 1024, C: 10 },
];

/**
 * The large case, where the GEMMs are all there is: measured in the one-engine section
 * only (native against the C program; not with --quick), since one step takes about a second.
 */
export const LARGE: Dims = { B: 1024, D: 1024, H: 4096, C: 1000 };

/** FLOP per forwardBackward with inputGrad: 2·B·(D·H + H·C) each for the forward, the weight gradients and dA1/dX. */
export function stepFlop(d: Dims): number {
  return 6 * d.B * (d.D * d.H + d.H * d.C);
}

export function sizeLabel(d: Dims): string {
  return `(${d.B},${d.D},${d.H},${d.C})`;
}

export interface Problem {
  dims: Dims;
  dtype: Dtype;
  params: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray };
  X: FloatArray;
  y: Int32Array;
  out: Required<Grads>;
}

/** Seeded data for one size and dtype (the same numbers for every backend). */
export function makeProblem(dims: Dims, dtype: Dtype): Problem {
  const { B, D, H, C } = dims;
  const params = initParams({ D, H, C }, { seed: 1, dtype });
  const make = (n: number): FloatArray => (dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
  const rng = new Rng(2);
  const X = make(B * D);
  for (let i = 0; i < X.length; i++) X[i] = rng.normal();
  const y = new Int32Array(B);
  for (let b = 0; b < B; b++) y[b] = rng.int(C);
  const out = { dX: make(B * D), dW1: make(D * H), db1: make(H), dW2: make(H * C), db2: make(C) };
  return { dims, dtype, params, X, y, out };
}
