// What a user's gradient function may return, turned into flat float64 values and a shape:
// typed arrays, plain arrays, nested arrays (their nesting is their shape), { data, shape } objects
// (a safetensors tensor, say), or a plain number for the loss. Nothing here throws for a bad
// value: a candidate's mistakes are reported by the verifier, not raised at the caller.
import { describe, fail, Received } from '../validate';

export interface Coerced {
  /** Row-major values, or null when they could not be read (see problem). */
  values: Float64Array | null;
  /** The shape the value carried (nesting, or { shape }), or null for a flat array (any shape of its length). */
  shape: number[] | null;
  /** What made the value unreadable. */
  problem?: string;
}

/** The gradient tensors a candidate may return, in any of the accepted forms. */
export type TensorLike = ArrayLike<number> | ArrayLike<ArrayLike<number>> | { data: ArrayLike<number>; shape: readonly number[] } | number;

/** What a gradient function returns: dX, and dW_k / db_k for each Linear layer k (dW1, db1, dW2, db2 for the two-layer params). */
export type GradsLike = { dX?: TensorLike; dW1?: TensorLike; db1?: TensorLike; dW2?: TensorLike; db2?: TensorLike } | LayerGradsLike;
export type LayerGradsLike = { dX?: TensorLike } & { [name in `dW${number}` | `db${number}`]?: TensorLike };

/** Whether a value carries the shape (nesting, or { shape }; a flat array: its length). */
export function shapeOk(c: Coerced, shape: readonly number[]): boolean {
  if (c.shape === null) return (c.values?.length ?? 0) === shape.reduce((a, b) => a * b, 1);
  return c.shape.length === shape.length && c.shape.every((d, i) => d === shape[i]);
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

function readFlat(a: ArrayLike<unknown>): { values: Float64Array | null; problem?: string } {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (typeof x === 'number') out[i] = x;
    else if (typeof x === 'bigint') out[i] = Number(x);
    else return { values: null, problem: `${describe(x)} at index ${i}, not a number` };
  }
  return { values: out };
}

export function coerceTensor(v: unknown): Coerced {
  if (typeof v === 'number') return { values: new Float64Array([v]), shape: [] };
  if (!isArrayLike(v)) {
    const o = v as { data?: unknown; shape?: unknown };
    if (v !== null && typeof v === 'object' && isArrayLike(o.data) && Array.isArray(o.shape)) {
      const flat = readFlat(o.data);
      const shape = (o.shape as unknown[]).every((s) => Number.isInteger(s) && (s as number) >= 0) ? (o.shape as number[]).slice() : null;
      if (shape === null) return { values: null, shape: null, problem: `a shape of ${describe(o.shape)}` };
      const n = shape.reduce((a, b) => a * b, 1);
      if (flat.values && n !== flat.values.length) return { values: null, shape, problem: `shape [${shape.join(',')}] with ${flat.values.length} values` };
      return { values: flat.values, shape, problem: flat.problem };
    }
    return { values: null, shape: null, problem: describe(v) };
  }
  if (!Array.isArray(v) || v.length === 0 || !isArrayLike(v[0])) return { ...readFlat(v), shape: null };
  // Nested: every level must be rectangular; the depths give the shape.
  const shape: number[] = [];
  let level: unknown = v;
  while (isArrayLike(level)) {
    shape.push(level.length);
    if (level.length === 0) break;
    level = level[0];
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  let at = 0;
  const walk = (node: unknown, depth: number, path: number[]): string | undefined => {
    if (depth === shape.length) {
      if (typeof node !== 'number') return `${describe(node)} at [${path.join(',')}], not a number`;
      out[at++] = node;
      return undefined;
    }
    if (!isArrayLike(node) || node.length !== shape[depth]) {
      return `a ragged nested array (length ${isArrayLike(node) ? node.length : describe(node)} at [${path.join(',')}], expected ${shape[depth]})`;
    }
    for (let i = 0; i < node.length; i++) {
      const p = walk(node[i], depth + 1, [...path, i]);
      if (p) return p;
    }
    return undefined;
  };
  const problem = walk(v, 0, []);
  return problem ? { values: null, shape, problem } : { values: out, shape };
}

/**
 * Splits what a gradient function (`name`) returned into { loss?, grads }; null for what is no object of gradients.
 * @throws {TypeError} a Promise: the verifier is synchronous
 */
export function splitResult(r: unknown, name: string): { loss?: unknown; grads: Record<string, unknown> } | null {
  if (r != null && typeof (r as { then?: unknown }).then === 'function') {
    fail(TypeError, 'a synchronous gradient function', name, new Received('one that returns a Promise (await it in a wrapper and pass the values)'));
  }
  if (r === null || typeof r !== 'object' || isArrayLike(r)) return null;
  const o = r as Record<string, unknown>;
  const nested = o.grads !== null && typeof o.grads === 'object' && !isArrayLike(o.grads);
  return { loss: o.loss, grads: (nested ? o.grads : o) as Record<string, unknown> };
}
