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
 * Fits per-column standardization on X [n,D] (the training set) for use on any set of D columns
 * (the validation and test sets too, with the training set's statistics). A column whose values
 * are all equal gets std 1, so it maps to 0 and never to NaN. It takes no options (scikit-learn's
 * with_mean, with_std, … are refused, not ignored).
 * @throws {TypeError} X is not a Float64Array or Float32Array, D not a number, any option
 * @throws {RangeError} D not a positive integer, X empty or not a multiple of D long, a NaN or ±Infinity in X
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
      mean[j] += x;
      if (x < min[j]) min[j] = x;
      if (x > max[j]) max[j] = x;
    }
  }
  for (let j = 0; j < D; j++) mean[j] /= n;
  // Two passes (the mean, then squared deviations from it) with a correction of the mean by the
  // mean deviation: accurate where the one-pass E[x²] − E[x]² cancels catastrophically.
  const dev = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) {
      const d = X[i * D + j] - mean[j];
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
    mean[j] += c;
    std[j] = variance > 0 ? Math.sqrt(variance) : 1;
  }
  const apply = <T extends FloatArray>(Xt: T): T => {
    const m = rowsOf('X', Xt, D);
    const out = (Xt instanceof Float64Array ? new Float64Array(Xt.length) : new Float32Array(Xt.length)) as T;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < D; j++) out[i * D + j] = (Xt[i * D + j] - mean[j]) / std[j];
    }
    return out;
  };
  return { D, mean, std, apply };
}
