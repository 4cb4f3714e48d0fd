import { productError, sumError } from '../train/fma';
import type { FloatArray } from '../types';
import * as v from '../validate';

export interface Standardizer {
  /** Features per example. */
  D: number;
  /** Column means of the data it was fitted on, [D]. */
  mean: Float64Array;
  /** Column standard deviations (population, as scikit-learn's StandardScaler), [D]; 1 for a constant column. */
  std: Float64Array;
  /**
   * (X − mean) / std by columns, into a new array of X's dtype; X itself is left as it was.
   * @throws {TypeError|RangeError} X not a float array of a positive multiple of D elements; a value
   *   whose result is not finite in X's dtype (NaN, ±Infinity, or one so far from the mean that it
   *   passes the largest float32 or double), naming its row and column
   */
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
 * A std the model file and apply() can use: finite, above 0, and with a finite reciprocal (the rule
 * saveModel checks a preprocess.std by, lib/model-file.ts: below 2^-1024, about 5.6e-309, 1 / std
 * overflows and (x − mean) / std is ±Infinity for every x ≠ mean).
 */
const usableStd = (s: number): boolean => s > 0 && Number.isFinite(s) && Number.isFinite(1 / s);

/**
 * Column sums as unevaluated sums sum + comp + comp2: each addition's rounding error (TwoSum,
 * exact) added into comp, and comp's own into comp2 (Rump, Ogita and Oishi's SumK with K = 3).
 */
interface Sums {
  min: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  comp: Float64Array;
  comp2: Float64Array;
}

/**
 * One pass over X: each column's min, max and compensated sum. Plain summation rounded away what
 * one 1000 among 4999 zeros holds (a mean 651 ulps off 0.2), and one level of compensation still
 * lost the small values between ±1e20 (its errors, summed plainly, are those values): two levels
 * leave an error of about (n·u)³ of the sum of magnitudes, far below an ulp of any mean whose
 * values do not cancel a billion-billion-fold.
 */
function columnSums(X: FloatArray, n: number, D: number): Sums {
  const min = v.allocate(Float64Array, D, 'the column minima (D)').fill(Infinity);
  const max = v.allocate(Float64Array, D, 'the column maxima (D)').fill(-Infinity);
  const sum = v.allocate(Float64Array, D, 'the column sums (D)');
  const comp = v.allocate(Float64Array, D, 'the column sums (D)');
  const comp2 = v.allocate(Float64Array, D, 'the column sums (D)');
  for (let i = 0; i < n; i++) {
    for (let j = 0, k = i * D; j < D; j++, k++) {
      const x = X[k];
      if (x < min[j]) min[j] = x;
      if (x > max[j]) max[j] = x;
      const s = sum[j];
      const t = s + x;
      const z = t - s;
      const e = s - (t - z) + (x - z);
      sum[j] = t;
      const c = comp[j];
      const u = c + e;
      const w = u - c;
      comp2[j] += c - (u - w) + (e - w);
      comp[j] = u;
    }
  }
  return { min, max, sum, comp, comp2 };
}

/** Column j's compensated sum of x / scale, again (a column outside 2^±400, where the plain pass over- or underflowed). */
function rescaledSum(X: FloatArray, n: number, D: number, j: number, scale: number, sums: Sums): void {
  let s = 0;
  let c = 0;
  let c2 = 0;
  for (let i = 0; i < n; i++) {
    const x = X[i * D + j] / scale;
    const t = s + x;
    const z = t - s;
    const e = s - (t - z) + (x - z);
    s = t;
    const u = c + e;
    const w = u - c;
    c2 += c - (u - w) + (e - w);
    c = u;
  }
  sums.sum[j] = s;
  sums.comp[j] = c;
  sums.comp2[j] = c2;
}

/** a + b = s + e exactly (Knuth's TwoSum). */
function twoSum(a: number, b: number): [number, number] {
  const s = a + b;
  return [s, sumError(a, b, s)];
}

/** a·b = p + e exactly (Dekker's product; |a|, |b| < 2^995, so the splits cannot overflow). */
function twoProduct(a: number, b: number): [number, number] {
  const p = a * b;
  return [p, productError(a, b, p)];
}

/**
 * The mean (s + c + c2) / n as a pair hi + lo, exact to about u² of it: deviations from hi alone
 * left n·lo² in the sum of squares, as large as the variance itself for a column a few ulps wide
 * (values 1 and 1 + 2^-52).
 */
function meanPair(s: number, c: number, c2: number, n: number): [number, number] {
  const [a, b] = twoSum(c, c2);
  const [sh, e] = twoSum(s, a);
  const sl = e + b;
  const hi = sh / n;
  const [p, pe] = twoProduct(hi, n);
  return [hi, (sh - p - pe + sl) / n]; // sh − p is exact (p is within an ulp or two of sh)
}

/**
 * Each column's sum of squared deviations from its mean pair, compensated as the sums are. A
 * deviation (x − hi) − lo is within 2u of the exact x − mean (x − hi is exact when x is near hi,
 * and lo is below its rounding otherwise), so the sum is within a few u of the exact one.
 */
function squaredDeviations(X: FloatArray, n: number, D: number, hi: Float64Array, lo: Float64Array, scale: Float64Array, scaled: boolean): Float64Array {
  const q = v.allocate(Float64Array, D, 'the column sums of squares (D)');
  const qc = v.allocate(Float64Array, D, 'the column sums of squares (D)');
  for (let i = 0; i < n; i++) {
    for (let j = 0, k = i * D; j < D; j++, k++) {
      // A division only where a column needs it: scale 1 is every column within 2^±400.
      const d = (scaled ? X[k] / scale[j] : X[k]) - hi[j] - lo[j];
      const x = d * d;
      const s = q[j];
      const t = s + x;
      const z = t - s;
      qc[j] += s - (t - z) + (x - z);
      q[j] = t;
    }
  }
  for (let j = 0; j < D; j++) q[j] += qc[j];
  return q;
}

/**
 * Fits per-column standardization on X [n,D] (the training set) for use on any set of D columns
 * (the validation and test sets too, with the training set's statistics). A column whose values
 * are all equal gets std 1, so it maps to 0 and never to NaN. It takes no options (scikit-learn's
 * with_mean, with_std, … are refused, not ignored).
 * @throws {TypeError} X is not a Float64Array or Float32Array, D not a number, any option
 * @throws {RangeError} D not a positive integer, X empty or not a multiple of D long, a NaN or ±Infinity
 *   in X, a column not all equal whose standard deviation rounds to 0 (below half of 5e-324, the
 *   smallest double: subnormal values a step or two of 5e-324 apart) or is below 2^-1024 (about
 *   5.6e-309: subnormal values such as 0 and 2e-310), where 1 / std overflows and a model file
 *   refuses it; each naming the column
 */
export function fitStandardizer(X: FloatArray, D: number, opts: Record<string, never> = {}): Standardizer {
  v.options('opts', opts, []);
  D = v.dim('D', D);
  const n = rowsOf('X', X, D);
  v.assertFinite('X', X);
  const sums = columnSums(X, n, D);
  const { min, max } = sums;
  // The sums run on x / scale where a column passes 2^±400: finite values near 1e308 overflowed
  // the sum (mean NaN) and the squared deviations (std Infinity), and values near 1e-200
  // underflowed the squares to 0 (std 1, the column taken for a constant). A power of two is exact
  // both ways; such a column is summed again (the pass above summed it unscaled).
  const scale = v.allocate(Float64Array, D, 'the column scales (D)');
  let scaled = false;
  for (let j = 0; j < D; j++) {
    scale[j] = scaleOf(Math.max(-min[j], max[j]));
    if (scale[j] === 1) continue;
    scaled = true;
    rescaledSum(X, n, D, j, scale[j], sums);
  }
  const hi = v.allocate(Float64Array, D, 'the column means (D)');
  const lo = v.allocate(Float64Array, D, 'the column means (D)');
  for (let j = 0; j < D; j++) [hi[j], lo[j]] = meanPair(sums.sum[j], sums.comp[j], sums.comp2[j], n);
  const squares = squaredDeviations(X, n, D, hi, lo, scale, scaled);
  const mean = v.allocate(Float64Array, D, 'mean (D)');
  const std = v.allocate(Float64Array, D, 'std (D)');
  for (let j = 0; j < D; j++) {
    if (min[j] === max[j]) {
      mean[j] = min[j];
      std[j] = 1;
      continue;
    }
    // The mean lies within [min, max]; rounding must not take it out (past the largest double).
    mean[j] = Math.min(max[j], Math.max(min[j], (hi[j] + lo[j]) * scale[j]));
    std[j] = Math.sqrt(squares[j] / n) * scale[j];
    checkStd(std[j], j, min[j], max[j]);
  }
  const apply = <T extends FloatArray>(Xt: T): T => {
    const m = rowsOf('X', Xt, D);
    const f64 = Xt instanceof Float64Array;
    const out = (f64 ? v.allocate(Float64Array, Xt.length, 'the standardized X') : v.allocate(Float32Array, Xt.length, 'the standardized X')) as T;
    for (let i = 0; i < m; i++) {
      for (let j = 0, k = i * D; j < D; j++, k++) {
        const x = Xt[k];
        const d = x - mean[j];
        // x − mean passes the largest double when both are near it with opposite signs: halved, it cannot.
        out[k] = Number.isFinite(d) || !Number.isFinite(x) ? d / std[j] : (x / 2 - mean[j] / 2) / (std[j] / 2);
        // Read back as stored: a float32 past 3.4e38 is Infinity only once rounded into X's dtype.
        if (!Number.isFinite(out[k])) notFinite(x, (x - mean[j]) / std[j], i, j, k, f64, mean[j], std[j]);
      }
    }
    return out;
  };
  return { D, mean, std, apply };
}

/**
 * Refuses a std apply() cannot divide by: values not all equal have a std above 0 and at most
 * (max − min) / 2, but one below half the smallest double (a column of 0 and 5e-324) rounds to 0,
 * and one below 2^-1024 (0 and 2e-310) has a reciprocal past the largest double: every x ≠ mean
 * would standardize to ±Infinity, and saveModel refuses that std.
 */
function checkStd(s: number, j: number, min: number, max: number): void {
  if (usableStd(s)) return;
  const what = s > 0 ? 'a standard deviation whose reciprocal is finite (≥ 5.6e-309, as a model file requires)' : 'a standard deviation a double can hold';
  const got = `values from ${min} to ${max}, whose standard deviation ${s > 0 ? 'is' : 'rounds to'} ${s}`;
  v.fail(RangeError, what, `column ${j} of X`, new v.Received(got));
}

/** The RangeError of apply() for a value whose standardized value is not finite in X's dtype (NaN, ±Infinity, or one far from the mean). */
function notFinite(x: number, z: number, i: number, j: number, k: number, f64: boolean, mean: number, std: number): never {
  const dtype = f64 ? 'float64' : 'float32';
  const past = Number.isFinite(z) ? ', past the largest float32' : '';
  const got = `${v.describe(x)}, which standardizes to ${v.describe(z)}${past} ((x − mean) / std, mean ${mean}, std ${std})`;
  return v.fail(RangeError, `a value whose standardized value is a finite ${dtype}`, `X[${k}] (row ${i}, column ${j})`, new v.Received(got));
}
