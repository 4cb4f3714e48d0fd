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

/** A seed, default 0: one rule for every seeded draw (validate.ts seed), named as the caller wrote it. */
export function seed(name: string, value: unknown): number {
  return v.seed(name, value);
}

export function dtype(name: string, value: unknown): Dtype {
  return v.oneOf(name, value, ['float64', 'float32'] as const, 'float64');
}
