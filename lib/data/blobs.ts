import { Rng } from '../rng';
import * as v from '../validate';
import type { Dataset, PointsOptions } from './dataset';
import * as o from './options';

export interface BlobsOptions extends PointsOptions {
  /** Number of blobs, one class each (default 3). */
  classes?: number;
  /** Dimension of the points (default 2). */
  dim?: number;
  /** Standard deviation of each blob along every axis (default 1). */
  spread?: number;
  /** Centres are drawn uniformly in [−box, box]^dim (default 10, as scikit-learn's make_blobs). */
  box?: number;
}

/**
 * Isotropic Gaussian blobs, one class per blob. The centres are drawn first (uniform in
 * [−box, box]^dim, row c for class c), then point i belongs to class c = i mod classes and is
 * centre[c] + spread·N(0, I). Class sizes differ by at most one. Seeded: the same options give
 * the same points.
 * @returns `{ X [n,dim], y [n], D: dim, C: classes, centers [classes,dim] }`
 * @throws {TypeError|RangeError} n, classes or dim not a positive integer, spread or box not a finite number ≥ 0, seed not an integer, unknown options;
 *   a spread (near 1e308), or a box and spread together, so large that a point would not be finite
 */
export function blobs(opts: BlobsOptions = {}): Dataset & { centers: Float64Array } {
  const oo = v.options('opts', opts, ['n', 'classes', 'dim', 'spread', 'box', 'seed']);
  const n = o.positiveInt('opts.n', oo.n, 200);
  const C = o.positiveInt('opts.classes', oo.classes, 3);
  const D = o.positiveInt('opts.dim', oo.dim, 2);
  const spread = o.nonNegative('opts.spread', oo.spread, 1);
  const box = o.nonNegative('opts.box', oo.box, 10);
  if (n * D > 2 ** 32 - 1) v.fail(RangeError, `at most ${2 ** 32 - 1} elements (n·dim)`, 'X', new v.Received(`${n * D} elements`));
  if (C * D > 2 ** 32 - 1) v.fail(RangeError, `at most ${2 ** 32 - 1} elements (classes·dim)`, 'centers', new v.Received(`${C * D} elements`));
  const rng = new Rng(o.seed('opts.seed', oo.seed));
  const centers = v.allocate(Float64Array, C * D, 'centers (opts.classes·opts.dim)');
  for (let j = 0; j < centers.length; j++) centers[j] = box * (2 * rng.uniform() - 1);
  const X = v.allocate(Float64Array, n * D, 'X (opts.n·opts.dim)');
  const y = v.allocate(Int32Array, n, 'y (opts.n)');
  for (let i = 0; i < n; i++) {
    const c = i % C;
    for (let j = 0; j < D; j++) X[i * D + j] = point(centers[c * D + j], spread * rng.normal(), i, spread, box);
    y[i] = c;
  }
  return { X, y, D, C, centers };
}

/** centre + spread·N(0, 1), finite: the spread alone can overflow, or its sum with a centre near box. */
function point(centre: number, noise: number, i: number, spread: number, box: number): number {
  const x = centre + noise;
  if (Number.isFinite(x)) return x;
  if (!Number.isFinite(noise)) o.nonFinite('a spread', 'opts.spread', `${spread}`, `point ${i}`, x);
  return o.nonFinite('a box and spread', 'opts.box and opts.spread', `${box} and ${spread}`, `point ${i}`, x);
}
