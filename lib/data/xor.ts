import { Rng } from '../rng';
import type { Dataset, PointsOptions } from './dataset';
import * as v from '../validate';
import * as o from './options';

export interface XorOptions extends PointsOptions {
  /** Standard deviation of the Gaussian noise on each coordinate (default 0.1). */
  noise?: number;
}

/**
 * The seed documents' XOR set: n points (default 200) in 2-D around the four corners of the unit
 * square, seeded Gaussian noise (std 0.1 by default), label 1 where exactly one coordinate's corner
 * is 1. Not linearly separable, so it needs the hidden layer. Point i sits at corner
 * (i & 1, (i >> 1) & 1), so the corners (and the two classes) take turns and stay balanced.
 * @returns `{ X [n,2], y [n], D: 2, C: 2 }`
 * @throws {TypeError|RangeError} n not a positive integer, noise not a finite number ≥ 0, seed not an integer, unknown options;
 *   a noise so large (near 1e308) that a point would not be finite
 */
export function xor(opts: XorOptions = {}): Dataset {
  const oo = v.options('opts', opts, ['n', 'noise', 'seed']);
  const n = o.positiveInt('opts.n', oo.n, 200);
  const noise = o.nonNegative('opts.noise', oo.noise, 0.1);
  const rng = new Rng(o.seed('opts.seed', oo.seed));
  const X = v.allocate(Float64Array, 2 * n, 'X (2·opts.n)');
  const y = v.allocate(Int32Array, n, 'y (opts.n)');
  for (let i = 0; i < n; i++) {
    const a = i & 1;
    const b = (i >> 1) & 1;
    X[2 * i] = a + noise * rng.normal();
    X[2 * i + 1] = b + noise * rng.normal();
    if (!(Number.isFinite(X[2 * i]) && Number.isFinite(X[2 * i + 1]))) o.nonFinite('a noise', 'opts.noise', `${noise}`, `point ${i}`, Number.isFinite(X[2 * i]) ? X[2 * i + 1] : X[2 * i]);
    y[i] = a ^ b;
  }
  return { X, y, D: 2, C: 2 };
}
