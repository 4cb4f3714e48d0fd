// Argument checks shared by the data loaders and generators, in the library's one wording
// (lib/validate.ts): TypeError for the wrong kind of thing, RangeError for a wrong size or value.
import type { Dtype } from '../types';
import * as v from '../validate';

/** An options object (or undefined) with no keys other than `allowed`. */
export function options(name: string, opts: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) v.fail(TypeError, 'an options object', name, opts);
  const o = opts as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      v.fail(TypeError, `an option among ${allowed.join(', ')}`, name, new v.Received(`unknown option ${JSON.stringify(k)}`));
    }
  }
  return o;
}

/** A positive integer (at most 2^31 − 1: a count or a dimension), or the fallback when undefined. */
export function positiveInt(name: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  return v.dim(name, value);
}

/** A finite number ≥ 0, or the fallback when undefined. */
export function nonNegative(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') v.fail(TypeError, 'a number', name, value);
  if (!Number.isFinite(value) || value < 0) v.fail(RangeError, 'a finite number ≥ 0', name, value);
  return value;
}

/** An integer seed (any integer; the generator uses its low 32 bits), default 0. */
export function seed(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) v.fail(TypeError, 'an integer', name, value);
  return value;
}

export function dtype(name: string, value: unknown): Dtype {
  return v.oneOf(name, value, ['float64', 'float32'] as const, 'float64');
}
