// Argument checks shared by the data loaders and generators, in the library's one wording
// (lib/validate.ts): TypeError for the wrong kind of thing, RangeError for a wrong size or value.
import type { Dtype } from '../types';
import * as v from '../validate';

/** A positive integer (at most 2^31 − 1: a count or a dimension), or the fallback when undefined. */
export function positiveInt(name: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  return v.dim(name, value);
}

/**
 * A limit on what a file may make a loader spend (bytes, classes, columns): an integer in
 * [1, max], or the fallback when undefined.
 */
export function limit(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') v.fail(TypeError, 'a positive integer', name, value);
  if (!Number.isInteger(value) || value < 1 || value > max) v.fail(RangeError, `an integer in [1, ${max}]`, name, value);
  return value;
}

/** A finite number ≥ 0, or the fallback when undefined. */
export function nonNegative(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') v.fail(TypeError, 'a number', name, value);
  if (!Number.isFinite(value) || value < 0) v.fail(RangeError, 'a finite number ≥ 0', name, value);
  return value;
}

/**
 * The RangeError for a generated point that is not finite. Options each finite can still overflow
 * a point together (noise 1e308 times a normal draw past 1.8 is ±Infinity; 2π·turns past the
 * largest double is an angle whose cosine is NaN): such a point names the options to lower and
 * their values, never becomes data. The draws are seeded, so the same options always fail alike.
 * @param what what the options are ('a noise'), said to be too large
 * @param got what came to x: 'point 26', "point 58's angle"
 */
export function nonFinite(what: string, name: string, values: string, got: string, x: number): never {
  return v.fail(RangeError, `${what} small enough that every point is finite`, name, new v.Received(`${values}: ${got} came to ${x}`));
}

/** A seed, default 0: one rule for every seeded draw (validate.ts seed), named as the caller wrote it. */
export function seed(name: string, value: unknown): number {
  return v.seed(name, value);
}

export function dtype(name: string, value: unknown): Dtype {
  return v.oneOf(name, value, ['float64', 'float32'] as const, 'float64');
}
