import { Rng } from '../rng';

/**
 * The seed documents' XOR set: n points (default 200) in 2-D around the four corners of the unit
 * square, seeded Gaussian noise (std 0.1 by default), label 1 where exactly one coordinate's corner
 * is 1. Not linearly separable, so it needs the hidden layer.
 */
export function xor(opts: { n?: number; noise?: number; seed?: number } = {}): { X: Float64Array; y: Int32Array } {
  const n = opts.n ?? 200;
  const noise = opts.noise ?? 0.1;
  const rng = new Rng(opts.seed ?? 0);
  const X = new Float64Array(2 * n);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const a = i & 1;
    const b = (i >> 1) & 1;
    X[2 * i] = a + noise * rng.normal();
    X[2 * i + 1] = b + noise * rng.normal();
    y[i] = a ^ b;
  }
  return { X, y };
}
