import { Rng } from '../rng';
import type { FloatArray } from '../types';
import * as v from '../validate';
import * as o from './options';

export interface SplitOptions {
  /** Share of the examples that goes to validation, in (0, 1) (default 0.2). */
  fraction?: number;
  /** Integer seed of the shuffle (default 0). */
  seed?: number;
}

export interface Split<T extends FloatArray> {
  train: { X: T; y: Int32Array; index: Int32Array };
  val: { X: T; y: Int32Array; index: Int32Array };
}

/**
 * A seeded shuffle of the n examples of X [n,D] and y [n], then a split: the first n − nVal
 * shuffled examples train, the last nVal validate, nVal = round(fraction·n) kept within [1, n − 1].
 * Rows keep their labels; X's dtype is kept; `index` gives each row's position in the input.
 * @throws {TypeError} X not a Float64Array/Float32Array, y not an Int32Array or array of integers, bad option types, unknown options
 * @throws {RangeError} fewer than 2 examples, X not [n,D] for n = y.length, fraction not in (0, 1)
 */
export function trainValSplit<T extends FloatArray>(X: T, y: Int32Array | readonly number[], D: number, opts: SplitOptions = {}): Split<T> {
  const oo = v.options('opts', opts, ['fraction', 'seed']);
  D = v.dim('D', D);
  v.dtypeOf('X', X);
  if (!(y instanceof Int32Array) && !Array.isArray(y)) v.fail(TypeError, 'an Int32Array or an array of integers', 'y', y);
  const bad = y instanceof Int32Array ? -1 : y.findIndex((k) => typeof k !== 'number' || !Number.isInteger(k) || k < -(2 ** 31) || k >= 2 ** 31);
  if (bad >= 0) v.fail(TypeError, 'integer labels', 'y', new v.Received(`${String(y[bad])} at index ${bad}`));
  const labels = y instanceof Int32Array ? y : Int32Array.from(y);
  const n = labels.length;
  if (n < 2) v.fail(RangeError, 'at least 2 examples to split', 'y', labels);
  if (X.length !== n * D) v.fail(RangeError, `${n * D} elements ([n,D] with n = ${n} from y, D = ${D})`, 'X', X);
  const fraction = oo.fraction === undefined ? 0.2 : oo.fraction; // null is refused, as by every option
  if (typeof fraction !== 'number') v.fail(TypeError, 'a number', 'opts.fraction', fraction);
  if (!(fraction > 0 && fraction < 1)) v.fail(RangeError, 'a number in (0, 1)', 'opts.fraction', fraction);
  const rng = new Rng(o.seed('opts.seed', oo.seed));

  const order = v.allocate(Int32Array, n, 'the shuffled order (n)');
  for (let i = 0; i < n; i++) order[i] = i;
  rng.shuffle(order);
  const nVal = Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  const take = (index: Int32Array) => {
    const size = index.length * D;
    const Xp = (X instanceof Float64Array ? v.allocate(Float64Array, size, 'X of a split') : v.allocate(Float32Array, size, 'X of a split')) as T;
    const yp = v.allocate(Int32Array, index.length, 'y of a split');
    for (let r = 0; r < index.length; r++) {
      const i = index[r];
      Xp.set(X.subarray(i * D, i * D + D), r * D);
      yp[r] = labels[i];
    }
    return { X: Xp, y: yp, index };
  };
  return { train: take(order.slice(0, n - nVal)), val: take(order.slice(n - nVal)) };
}
