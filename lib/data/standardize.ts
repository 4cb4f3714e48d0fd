import type { FloatArray } from '../types';
import * as v from '../validate';

export interface Standardizer {
  /** Features per example. */
  D: number;
  /** Column means of the data it was fitted on, [D]. */
  mean: Float64Array;
  /** Column standard deviations (population, as scikit-learn's StandardScaler), [D]; 1 for a constant column. */
  std: Float64Array;
  /** (X − mean) / std by columns, into a new array of X's dtype; X itself is left as it was. */
  apply<T extends FloatArray>(X: T): T;
}

/** A float matrix [n,D] with n ≥ 1: its row count. */
function rowsOf(name: string, X: unknown, D: number): number {
  if (!(X instanceof Float64Array) && !(X instanceof Float32Array)) return v.fail(TypeError, 'a Float64Array or Float32Array', name, X);
  if (X.length === 0 || X.length % D !== 0) v.fail(RangeError, `a positive multiple of D = ${D} elements ([n,D])`, name, X);
  return X.length / D;
}

/**
 * The power of two a column's sums are scaled by, from its largest magnitude M: 1 within 2^±400
 * (the sums of up to 2^31 values and their squared deviations can then neither overflow nor
 * underflow), else about M, so that every x / scale lies in (−2, 2).
 */
function scaleOf(M: number): number {
  if (M === 0 || (M >= 2 ** -400 && M <= 2 ** 400)) return 1;
  return 2 ** Math.min(1023, Math.max(-1074, Math.floor(Math.log2(M))));
}

/**
 * Fits per-column standardization on X [n,D] (the training set) for use on any set of D columns
 * (the validation and test sets too, with the training set's statistics). A column whose values
 * are all equal gets std 1, so it maps to 0 and never to NaN. It takes no options (scikit-learn's
 * with_mean, with_std, … are refused, not ignored).
 * @throws {TypeError} X is not a Float64Array or Float32Array, D not a number, any option
 * @throws {RangeError} D not a positive integer, X empty or not a multiple of D long, a NaN or ±Infinity
 *   in X, a column not all equal whose standard deviation rounds to 0 (below half of 5e-324, the
 *   smallest double: subnormal values a step or two of 5e-324 apart)
 */
export function fitStandardizer(X: FloatArray, D: number, opts: Record<string, never> = {}): Standardizer {
  v.options('opts', opts, []);
  D = v.dim('D', D);
  const n = rowsOf('X', X, D);
  v.assertFinite('X', X);
  const mean = new Float64Array(D);
  const std = new Float64Array(D);
  const min = new Float64Array(D).fill(Infinity);
  const max = new Float64Array(D).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) {
      const x = X[i * D + j];
      if (x < min[j]) min[j] = x;
      if (x > max[j]) max[j] = x;
    }
  }
  // The sums run on x / scale: finite values near 1e308 overflowed the sum (mean NaN) and the
  // squared deviations (std Infinity), and values near 1e-200 underflowed the squares to 0 (std 1,
  // the column taken for a constant). A power of two is exact both ways, so a column within
  // 2^±400 (every ordinary one) keeps scale 1 and the bits it always had.
  const scale = new Float64Array(D);
  for (let j = 0; j < D; j++) scale[j] = scaleOf(Math.max(-min[j], max[j]));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) mean[j] += X[i * D + j] / scale[j];
  }
  for (let j = 0; j < D; j++) mean[j] /= n;
  // Two passes (the mean, then squared deviations from it) with a correction of the mean by the
  // mean deviation: accurate where the one-pass E[x²] − E[x]² cancels catastrophically.
  const dev = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) {
      const d = X[i * D + j] / scale[j] - mean[j];
      dev[j] += d;
      std[j] += d * d;
    }
  }
  for (let j = 0; j < D; j++) {
    if (min[j] === max[j]) {
      mean[j] = min[j];
      std[j] = 1;
      continue;
    }
    const c = dev[j] / n;
    const variance = std[j] / n - c * c;
    // The mean lies within [min, max]; rounding must not take it out (past the largest double).
    mean[j] = Math.min(max[j], Math.max(min[j], (mean[j] + c) * scale[j]));
    std[j] = Math.sqrt(Math.max(variance, 0)) * scale[j];
    // Values that are not all equal have a std above 0 and at most (max − min) / 2; only one below
    // half the smallest double (a column of 0 and 5e-324) rounds to 0, and X / 0 would be ±Infinity.
    if (!(std[j] > 0 && std[j] < Infinity)) {
      const got = `values from ${min[j]} to ${max[j]}, whose standard deviation rounds to ${std[j]}`;
      v.fail(RangeError, 'a standard deviation a double can hold', `column ${j} of X`, new v.Received(got));
    }
  }
  const apply = <T extends FloatArray>(Xt: T): T => {
    const m = rowsOf('X', Xt, D);
    const out = (Xt instanceof Float64Array ? new Float64Array(Xt.length) : new Float32Array(Xt.length)) as T;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < D; j++) {
        const x = Xt[i * D + j];
        const d = x - mean[j];
        // x − mean passes the largest double when both are near it with opposite signs: halved, it cannot.
        out[i * D + j] = Number.isFinite(d) || !Number.isFinite(x) ? d / std[j] : (x / 2 - mean[j] / 2) / (std[j] / 2);
      }
    }
    return out;
  };
  return { D, mean, std, apply };
}
