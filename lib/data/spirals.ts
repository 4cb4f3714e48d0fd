import { Rng } from '../rng';
import type { Dataset, PointsOptions } from './dataset';
import * as v from '../validate';
import * as o from './options';

export interface SpiralsOptions extends PointsOptions {
  /** Number of arms, one class each (default 2: the classic two-spirals problem). */
  classes?: number;
  /** Standard deviation of the Gaussian noise on each coordinate (default 0.05). */
  noise?: number;
  /** Turns each arm makes from the centre to radius 1 (default 1). */
  turns?: number;
}

/**
 * Interleaved spiral arms in 2-D, one class per arm. Point i belongs to class c = i mod classes and
 * is the k-th (k = ⌊i / classes⌋) of the m points of its arm, at
 *   t = (k + ½) / m,  r = t,  θ = 2π·(turns·t + c / classes),  x = r·(cos θ, sin θ) + noise·N(0, I),
 * so every arm starts near the centre, ends at radius 1, and the arms are rotated copies of each
 * other. Class sizes differ by at most one. Seeded: the same options give the same points.
 * @returns `{ X [n,2], y [n], D: 2, C: classes }`
 * @throws {TypeError|RangeError} n or classes not a positive integer, noise or turns not a finite number ≥ 0, seed not an integer, unknown options;
 *   a noise (near 1e308) or turns (past 2.8e307) so large that a point would not be finite
 */
export function spirals(opts: SpiralsOptions = {}): Dataset {
  const oo = v.options('opts', opts, ['n', 'classes', 'noise', 'turns', 'seed']);
  const n = o.positiveInt('opts.n', oo.n, 200);
  const C = o.positiveInt('opts.classes', oo.classes, 2);
  const noise = o.nonNegative('opts.noise', oo.noise, 0.05);
  const turns = o.nonNegative('opts.turns', oo.turns, 1);
  const rng = new Rng(o.seed('opts.seed', oo.seed));
  const X = v.allocate(Float64Array, 2 * n, 'X (2·opts.n)');
  const y = v.allocate(Int32Array, n, 'y (opts.n)');
  for (let i = 0; i < n; i++) {
    const c = i % C;
    const k = Math.floor(i / C);
    const m = Math.floor((n - 1 - c) / C) + 1; // the points i < n with i mod C = c
    const t = (k + 0.5) / m;
    const theta = 2 * Math.PI * (turns * t + c / C);
    if (!Number.isFinite(theta)) o.nonFinite('a number of turns', 'opts.turns', `${turns}`, `point ${i}'s angle`, theta);
    X[2 * i] = t * Math.cos(theta) + noise * rng.normal();
    X[2 * i + 1] = t * Math.sin(theta) + noise * rng.normal();
    if (!(Number.isFinite(X[2 * i]) && Number.isFinite(X[2 * i + 1]))) o.nonFinite('a noise', 'opts.noise', `${noise}`, `point ${i}`, Number.isFinite(X[2 * i]) ? X[2 * i + 1] : X[2 * i]);
    y[i] = c;
  }
  return { X, y, D: 2, C };
}
