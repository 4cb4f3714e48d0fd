// Every argument check of the public API, in one place, with one error wording:
//   Expected {what} for {name} but received {actual}
// TypeError for the wrong kind of thing, RangeError for a wrong size or value. Everything here runs
// before any backend touches memory; the native addon checks again (defence in depth).
import type { Activation, BackendName, Dims, Dtype, FloatArray, LossReduction, Params, Reduction } from './types';

type ErrorKind = typeof TypeError | typeof RangeError;

/** A short description of what came, for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) {
    const len = v instanceof DataView ? v.byteLength : lengthOf(v);
    const detached = v.byteLength === 0 && v.buffer.byteLength === 0 && isDetached(v.buffer);
    return `${v.constructor.name} of length ${len}${detached ? ' (detached buffer)' : ''}`;
  }
  if (Array.isArray(v)) return Array.isArray(v[0]) ? `nested Array [${v.length},${v[0].length}]` : `Array of length ${v.length}`;
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** describe(), and what a typed array's `length` claims when that is not what it holds. */
function lengthReceived(a: FloatArray): string {
  const claimed = a.length;
  return claimed === lengthOf(a) ? describe(a) : `${describe(a)} (its length property says ${String(claimed)})`;
}

/** A view cannot be made on a detached buffer (ArrayBuffer.prototype.detached is newer than Node 20). */
function isDetached(buf: ArrayBufferLike): boolean {
  try {
    new Uint8Array(buf as ArrayBuffer);
    return false;
  } catch {
    return true;
  }
}

/** What came, already put into words (an index, a count); anything else passed to fail is described. */
export class Received {
  constructor(readonly text: string) {}
}

export function fail(kind: ErrorKind, what: string, name: string, actual: unknown): never {
  throw new kind(`Expected ${what} for ${name} but received ${actual instanceof Received ? actual.text : describe(actual)}`);
}

const typedArrayLength = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'length')!.get!;

/**
 * A typed array's element count as the array itself holds it: %TypedArray%.prototype.length,
 * which a subclass or an own property cannot override (0 once its buffer is detached or shrunk
 * past it). Every length a check relies on is read this way, so what is checked is what is copied.
 */
export function lengthOf(a: ArrayBufferView): number {
  return typedArrayLength.call(a) as number;
}

const typedArrayBuffer = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'buffer')!.get!;
/** A typed array's buffer as the array holds it (not a subclass's `buffer` getter). */
const bufferOf = (a: ArrayBufferView): ArrayBufferLike => typedArrayBuffer.call(a) as ArrayBufferLike;
const typedArrayByteOffset = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteOffset')!.get!;
const typedArrayByteLength = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'byteLength')!.get!;
const dataViewBuffer = Object.getOwnPropertyDescriptor(DataView.prototype, 'buffer')!.get!;
const dataViewByteOffset = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteOffset')!.get!;
const dataViewByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, 'byteLength')!.get!;
/** A view's byte offset and byte length as the view holds them (not a subclass's getters; a DataView by its own). */
const byteOffsetOf = (a: ArrayBufferView): number => (a instanceof DataView ? dataViewByteOffset : typedArrayByteOffset).call(a) as number;
const byteLengthOf = (a: ArrayBufferView): number => (a instanceof DataView ? dataViewByteLength : typedArrayByteLength).call(a) as number;

/** 'float64' for a Float64Array, 'float32' for a Float32Array, otherwise a TypeError. */
export function dtypeOf(name: string, a: unknown): Dtype {
  // isView: a Proxy of a typed array passes instanceof but is not one (its length cannot be read).
  if (a instanceof Float64Array && ArrayBuffer.isView(a)) return 'float64';
  if (a instanceof Float32Array && ArrayBuffer.isView(a)) return 'float32';
  return fail(TypeError, 'a Float64Array or Float32Array', name, a);
}

export function floatArray(name: string, a: unknown, dtype: Dtype, length: number): FloatArray {
  if (dtypeOf(name, a) !== dtype) fail(TypeError, `a ${dtype === 'float64' ? 'Float64Array' : 'Float32Array'} (the dtype of X)`, name, a);
  const arr = a as FloatArray;
  if (lengthOf(arr) !== length || arr.length !== length) fail(RangeError, `${length} elements`, name, new Received(lengthReceived(arr)));
  return arr;
}

/** A typed-array constructor (Float64Array, Float32Array, …): its element size names the bytes asked for. */
type ArrayOfLength<A> = (new (n: number) => A) & { readonly BYTES_PER_ELEMENT: number };

/**
 * new Ctor(n) (or share(n) when given: a SharedArrayBuffer-backed view), with V8's unnamed "Array
 * buffer allocation failed" (more memory than this process may have) as a RangeError naming the
 * tensor and its size.
 */
export function allocate<A>(Ctor: ArrayOfLength<A>, n: number, name: string, share?: (n: number) => A): A {
  try {
    return share ? share(n) : new Ctor(n);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    const gib = (n * Ctor.BYTES_PER_ELEMENT) / 2 ** 30;
    return fail(RangeError, 'a size this process can allocate', name, new Received(`${n} elements (${gib.toFixed(1)} GiB): ${e.message}`));
  }
}

/** A positive integer dimension (a BLAS index is a 32-bit int). */
export function dim(name: string, v: unknown): number {
  if (typeof v !== 'number') fail(TypeError, 'a positive integer', name, v);
  if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) fail(RangeError, 'a positive 32-bit integer', name, v);
  return v;
}

export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    fail(typeof v === 'string' ? RangeError : TypeError, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, name, v);
  }
  return v as T;
}

export function bool(name: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail(TypeError, 'a boolean', name, v);
  return v;
}

/**
 * An options object (or opts.out, or a nested option object such as validation or schedule) as a
 * plain object: {…}, Object.create(null), or one from another realm (its prototype's prototype is
 * null). Anything else is a TypeError: an option held by a prototype (Object.create({ lr }) or a
 * class's getter) or by a Map or a Date is not an own key, and would be silently ignored.
 * @throws {TypeError}
 */
export function plainObject(name: string, o: unknown, what = 'an options object'): Record<string, unknown> {
  // Not an object at all (or an array, a typed array): the kind expected, in the caller's words.
  if (o === null || typeof o !== 'object' || Array.isArray(o) || ArrayBuffer.isView(o)) return fail(TypeError, what, name, o);
  // An object, but not a plain one: a Map, a Date, a class instance, an object with a prototype.
  if (Object.prototype.toString.call(o) !== '[object Object]') return fail(TypeError, 'a plain object', name, o);
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto !== null && Object.getPrototypeOf(proto) !== null) {
    return fail(TypeError, 'a plain object', name, new Received(`${describe(o)} with a prototype of its own (inherited keys and class getters would not be read: pass { … })`));
  }
  return o as Record<string, unknown>;
}

/**
 * The own string keys of a plain object, non-enumerable ones too: a key set with
 * Object.defineProperty is checked (known: used, unknown: refused), never skipped as Object.keys would.
 */
export const ownKeys = (o: object): string[] => Object.getOwnPropertyNames(o);

/** The largest seed + 1: the generator's state is 32 bits, and a seed past it would be another seed's alias. */
export const SEED_LIMIT = 2 ** 32;

/**
 * A seed of a draw (initParams, Linear, Sequential.mlp, the seeded Rng): an integer in [0, 2^32),
 * default 0. The generator's state is 32 bits, so every seed outside that range would give the
 * very numbers of one inside it (2^32 those of 0, −1 those of 2^32 − 1): refused rather than aliased.
 * @throws {TypeError} not an integer; {RangeError} outside [0, 2^32)
 */
export function seed(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) return fail(TypeError, 'an integer', name, value);
  if (value < 0 || value >= SEED_LIMIT) fail(RangeError, `an integer in [0, 2^32) (the generator's state is 32 bits: any other seed would repeat one of these)`, name, value);
  return value;
}

export const ACTIVATIONS: readonly Activation[] = ['relu', 'sigmoid', 'tanh'];
export const REDUCTIONS: readonly Reduction[] = ['mean', 'sum'];
/** F.cross_entropy's reductions (SoftmaxCrossEntropy, Sequential.forwardBackward); 'none' gives the loss of each row. */
export const LOSS_REDUCTIONS: readonly LossReduction[] = ['mean', 'sum', 'none'];
export const BACKENDS: readonly BackendName[] = ['native', 'ts', 'torch', 'wasm'];

/**
 * The first NaN or ±Infinity in `a` is a RangeError naming the tensor and the index.
 * Scanned in blocks: x·0 is ±0 for every finite x and NaN for ±Infinity and NaN, so a block's
 * products summed (four sums, which the CPU overlaps) are 0 unless the block holds one, and only
 * that block is searched element by element. Twice as fast as Number.isFinite on each element:
 * fit checks its whole X on every call (60k × 784 floats: 85 → 40 ms).
 */
export function assertFinite(name: string, a: FloatArray): void {
  const n = a.length;
  for (let s = 0; s < n; s += 4096) {
    const e = Math.min(n, s + 4096);
    let p = 0, q = 0, r = 0, t = 0, i = s;
    for (; i + 3 < e; i += 4) {
      p += a[i] * 0;
      q += a[i + 1] * 0;
      r += a[i + 2] * 0;
      t += a[i + 3] * 0;
    }
    for (; i < e; i++) p += a[i] * 0;
    if (p + q + r + t === 0) continue;
    // Each entry read once: memory another thread rewrites must not get a finite value named.
    for (let j = s; j < e; j++) {
      const x = a[j];
      if (!Number.isFinite(x)) throw new RangeError(`Expected finite values in ${name} but received ${x} at index ${j}`);
    }
    nonFiniteRewritten(name);
  }
}

/** A scan found a NaN or ±Infinity that was gone when it looked again: the memory is another thread's to write. */
export function nonFiniteRewritten(name: string): never {
  throw new RangeError(`Expected finite values in ${name} but received a non-finite value that another thread rewrote while it was being checked`);
}

/** A label outside [0, C) that is not ignoreIndex: a RangeError naming its index. */
function labelOutOfRange(v: number | bigint, i: number, C: number, name: string, ignoreIndex: number): void {
  if (Number(v) !== ignoreIndex) fail(RangeError, `labels in [0, ${C})`, name, new Received(`${v} at index ${i}`));
}

const INT_TYPED = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Uint32Array];

/**
 * Labels as an Int32Array of class ids in [0, C). An Int32Array is used in place, or copied first
 * when it is in a SharedArrayBuffer (another thread could change it between the check and the
 * use; the engines also copy the labels they are given before they check and use them); a plain
 * array of integers or another integer typed array (BigInt64Array included) is checked, then
 * converted once: a value is range-checked before it is narrowed to int32, never wrapped.
 */
export function labels(y: unknown, C: number, name = 'y', ignoreIndex = -100): Int32Array {
  let out: Int32Array;
  let inPlace = false;
  const typed = ArrayBuffer.isView(y) && !(y instanceof DataView);
  if (typed && y instanceof Int32Array && y.length === lengthOf(y)) {
    // Shared memory can change under a synchronous call (another thread): checked on a copy.
    out = bufferOf(y) instanceof SharedArrayBuffer ? new Int32Array(y) : y;
    inPlace = true;
  } else if (typed && (y instanceof Int32Array || y instanceof BigInt64Array || INT_TYPED.some((K) => y instanceof K))) {
    const src = y as unknown as ArrayLike<number | bigint>;
    out = new Int32Array(lengthOf(y as ArrayBufferView));
    for (let i = 0; i < out.length; i++) {
      const v = src[i];
      if (v < 0 || v >= C) labelOutOfRange(v, i, C, name, ignoreIndex);
      out[i] = Number(v);
    }
  } else if (Array.isArray(y)) {
    if (y.length > 0 && Array.isArray(y[0])) {
      const inner = (y[0] as unknown[]).length;
      const hint = inner === 1 ? 'flatten y to [B]' : 'pass class ids (argmax of each row), not one-hot rows';
      fail(TypeError, `a flat array of class ids shaped [B] (${hint})`, name, y);
    }
    out = new Int32Array(y.length);
    for (let i = 0; i < out.length; i++) {
      const v: unknown = y[i];
      if (typeof v !== 'number' || !Number.isInteger(v)) fail(TypeError, 'integer class ids', name, new Received(`${describe(v)} at index ${i}`));
      if (v < 0 || v >= C) labelOutOfRange(v, i, C, name, ignoreIndex);
      out[i] = v;
    }
  } else {
    return fail(TypeError, 'an Int32Array or an array of integer class ids', name, y);
  }
  if (out.length === 0) fail(RangeError, 'at least one example (B ≥ 1)', name, y);
  if (inPlace) {
    for (let i = 0; i < out.length; i++) {
      const v = out[i];
      if (v < 0 || v >= C) labelOutOfRange(v, i, C, name, ignoreIndex);
    }
  }
  return out;
}

/** y that is one-hot rows flattened to length B·C, told apart from a plain length mismatch. */
function looksOneHot(y: ArrayLike<number>, C: number, xLength: number, D: number): boolean {
  if (C < 2 || y.length % C !== 0 || (y.length / C) * D !== xLength) return false;
  for (let i = 0; i < y.length; i++) if (y[i] !== 0 && y[i] !== 1) return false;
  return true;
}

/**
 * The two-layer tensors with D, H, C and their dtype, and the object they were read from (each read
 * once, here); `loss` as the record holds it (a LossSpec or undefined), checked by twoLayerNet
 * against the net's dtype and C.
 */
export type CheckedParams = Required<Params> & { source: object; dtype: Dtype; loss: unknown };

/** The two-layer net's tensors: a params key spelled as a tensor (W3, b10) must be one of them. */
const PARAMS_TENSORS: readonly string[] = ['W1', 'b1', 'W2', 'b2'];
/** Every key the readers of a two-layer params record read (activationOf reads `activation`, twoLayerNet `loss`). */
const PARAMS_KEYS: readonly string[] = [...PARAMS_TENSORS, 'D', 'H', 'C', 'activation', 'loss'];

/**
 * The key of PARAMS_KEYS that a params key not among them most likely meant, or undefined: one
 * that differs only in case (w1, d), or a near miss of a longer one ('activaton', 'act'). Short
 * keys are matched by case only: X or y beside the weights are the caller's own, not a typo of D.
 */
function paramsKeyMeant(key: string): string | undefined {
  if (PARAMS_KEYS.includes(key)) return undefined;
  const sameCase = PARAMS_KEYS.find((k) => k.toLowerCase() === key.toLowerCase());
  return sameCase ?? didYouMean(key, PARAMS_KEYS.filter((k) => k.length > 2));
}

/** W1, b1, W2, b2 of one dtype with consistent shapes; D, H, C read from them (and checked if given). */
export function params(p: unknown): CheckedParams {
  if (p === null || typeof p !== 'object') return fail(TypeError, 'an object { W1, b1, W2, b2 }', 'params', p);
  // A tensor of a deeper net (W3, b3, …) is refused by name: a copy of seq.params would otherwise
  // run as the two-layer net its W1…b2 make, predicting classes the net does not have. Other keys
  // are the caller's own (a test case's X beside its weights) and are not read.
  for (const key of Object.getOwnPropertyNames(p)) {
    if (/^[Wb]\d+$/.test(key) && !PARAMS_TENSORS.includes(key)) {
      throw new TypeError(`Expected no key '${key}' for params (the two-layer net's W1, b1, W2, b2): a deeper net's params are run by its Sequential (seq.forward, seq.predict)`);
    }
    const meant = paramsKeyMeant(key);
    if (meant !== undefined) {
      throw new TypeError(`Expected no key '${key}' for params (did you mean '${meant}'?): the keys read are ${PARAMS_KEYS.join(', ')}; a misspelt one would be left unread`);
    }
  }
  // Each field read once: a getter that returns another tensor on a second read changes nothing.
  const { W1, b1, W2, b2, D: dIn, H: hIn, C: cIn, loss } = p as Record<string, unknown>;
  if (W1 === undefined || b1 === undefined || W2 === undefined || b2 === undefined) {
    const missing = ['W1', 'b1', 'W2', 'b2'][[W1, b1, W2, b2].indexOf(undefined)];
    fail(TypeError, 'a Float64Array or Float32Array', `params.${missing}`, undefined);
  }
  const dtype = dtypeOf('params.W1', W1);
  dtypeOf('params.b1', b1);
  dtypeOf('params.b2', b2);
  const H = hIn === undefined ? lengthOf(b1 as FloatArray) : dim('params.H', hIn);
  const C = cIn === undefined ? lengthOf(b2 as FloatArray) : dim('params.C', cIn);
  if (H === 0) fail(RangeError, 'at least one hidden unit (H ≥ 1)', 'params.b1', b1);
  if (C === 0) fail(RangeError, 'at least one class (C ≥ 1)', 'params.b2', b2);
  const D = dIn === undefined ? lengthOf(W1 as FloatArray) / H : dim('params.D', dIn);
  if (!Number.isInteger(D) || D < 1) fail(RangeError, `a length that is a positive multiple of H = ${H} ([D,H])`, 'params.W1', W1);
  return {
    source: p, dtype, D, H, C, loss,
    W1: floatArray('params.W1', W1, dtype, D * H),
    b1: floatArray('params.b1', b1, dtype, H),
    W2: floatArray('params.W2', W2, dtype, H * C),
    b2: floatArray('params.b2', b2, dtype, C),
  };
}

/** X[B,D] in the params' dtype, with B taken from y. */
export function input(X: unknown, p: Pick<CheckedParams, 'dtype' | 'D'>, B: number, name = 'X'): FloatArray {
  const dt = dtypeOf(name, X);
  if (dt !== p.dtype) fail(TypeError, `X and params of one dtype (params are ${p.dtype})`, name, X);
  // floatArray's length check (its dtype check is the one just made).
  const arr = X as FloatArray;
  const n = B * p.D;
  if (lengthOf(arr) !== n || arr.length !== n) fail(RangeError, `${n} elements`, name, new Received(lengthReceived(arr)));
  return arr;
}

/** X [B,D] for a forward pass, B read from its length (a positive multiple of D). */
export function inputRows(X: unknown, p: Pick<CheckedParams, 'dtype' | 'D'>): { X: FloatArray; B: number } {
  dtypeOf('X', X); // a TypeError for anything but a float typed array, before a length is read
  const xlen = lengthOf(X as FloatArray);
  const B = xlen / p.D;
  if (!Number.isInteger(B) || B < 1) fail(RangeError, `a positive multiple of D = ${p.D} elements ([B,D])`, 'X', X);
  return { X: input(X, p, B), B };
}

/**
 * Labels and X together: catches one-hot labels and [B,1] labels before a generic length error.
 * `prefix` names where they came from in errors (e.g. 'validation.').
 */
export function batch(X: unknown, y: unknown, p: Pick<CheckedParams, 'dtype' | 'D' | 'C'>, prefix = '', ignoreIndex = -100): { X: FloatArray; y: Int32Array; B: number } {
  const xlen = ArrayBuffer.isView(X) && !(X instanceof DataView) ? lengthOf(X) : -1;
  if ((Array.isArray(y) || ArrayBuffer.isView(y)) && !Array.isArray((y as unknown[])[0])) {
    const ya = y as ArrayLike<number>;
    if (ya.length * p.D !== xlen && looksOneHot(ya, p.C, xlen, p.D)) {
      fail(RangeError, `class ids shaped [B] (B = ${xlen / p.D})`, `${prefix}y`, new Received(`${describe(y)} holding only 0/1: one-hot rows [B,C]; pass the argmax of each row`));
    }
  }
  const labelsY = labels(y, p.C, `${prefix}y`, ignoreIndex);
  const B = labelsY.length;
  if (xlen >= 0 && xlen !== B * p.D && p.D > 0 && xlen % p.D === 0) {
    fail(RangeError, `${B * p.D} elements ([B,D] with B = ${B} from y, D = ${p.D})`, `${prefix}X`, X);
  }
  return { X: input(X, p, B, `${prefix}X`), y: labelsY, B };
}

export interface StepOptions {
  backend: BackendName; reduction: LossReduction; cache: boolean; accumulate: boolean; inputGrad: boolean;
  /** Whether reduction was the call's (else the default given): a two-layer call's default is its params' loss's, known only once the net is built. */
  reductionGiven: boolean;
  /**
   * opts.out's own keys and what each held (read once, here), side by side: arrays, not a copy of
   * the object, whose keyed stores cost more than the rest of the options' checks. Empty without out.
   */
  outNames: readonly string[]; outBuffers: readonly unknown[];
  /** The loss options as given for this call (undefined: the loss's own), checked against the net in lossCall. */
  weight: unknown; ignoreIndex: unknown; labelSmoothing: unknown; gradOutput: unknown;
  /** The two-layer call's activation as given (checked there). */
  activation: unknown;
  /** LibTorch's bits (native/core/exact.h): on 'native', or 'torch' (LibTorch itself). */
  exact: boolean;
}

const STEP_KEYS = ['backend', 'reduction', 'inputGrad', 'cache', 'out', 'accumulate', 'weight', 'ignoreIndex', 'labelSmoothing', 'gradOutput', 'exact'] as const;

/**
 * opts.exact checked against the backend: the exact mode reproduces LibTorch's CPU kernels on the
 * native backend ('torch' is LibTorch itself, so its bits are PyTorch's anyway); wasm and ts have
 * neither LibTorch's BLAS calls nor Sleef, so there it is refused, never quietly approximate.
 */
export function exactOption(name: string, x: unknown, backend: BackendName): boolean {
  const exact = bool(name, x, false);
  if (exact && backend !== 'native' && backend !== 'torch') {
    fail(TypeError, `backend 'native' (or 'torch') with ${name}: the exact mode reproduces LibTorch's CPU kernels on OpenBLAS`, 'backend', backend);
  }
  return exact;
}
/** forwardBackward's option keys; the two-layer call's add `activation`. */
export const STEP_OPTIONS = { sequential: STEP_KEYS, twoLayer: [...STEP_KEYS, 'activation'] } as const;

const NONE: readonly never[] = Object.freeze([]);

/**
 * The options of forwardBackward, checked as options() checks them (`known` is one of
 * STEP_OPTIONS): each own key once, in order, its value read once by name; an unknown key is the
 * same TypeError. By name rather than into a copy: this runs on every public step, and a copy
 * built by keyed stores cost a fifth of a toy-size step.
 */
export function stepOptions(
  opts: unknown, defaultReduction: LossReduction, known: (typeof STEP_OPTIONS)[keyof typeof STEP_OPTIONS] = STEP_KEYS,
): StepOptions {
  let backend, reduction, inputGrad, cache, out, accumulate, weight, ignoreIndex, labelSmoothing, gradOutput, exact, activation: unknown;
  if (opts !== undefined) {
    const r = plainObject('opts', opts);
    const keys = ownKeys(r);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      switch (key) {
        case 'backend': backend = r.backend; break;
        case 'reduction': reduction = r.reduction; break;
        case 'inputGrad': inputGrad = r.inputGrad; break;
        case 'cache': cache = r.cache; break;
        case 'out': out = r.out; break;
        case 'accumulate': accumulate = r.accumulate; break;
        case 'weight': weight = r.weight; break;
        case 'ignoreIndex': ignoreIndex = r.ignoreIndex; break;
        case 'labelSmoothing': labelSmoothing = r.labelSmoothing; break;
        case 'gradOutput': gradOutput = r.gradOutput; break;
        case 'exact': exact = r.exact; break;
        case 'activation':
          if (known !== STEP_OPTIONS.twoLayer) unknownOption('opts', key, known, NOT_YET_SUPPORTED);
          activation = r.activation;
          break;
        default: unknownOption('opts', key, known, NOT_YET_SUPPORTED);
      }
    }
  }
  if (out !== undefined) plainObject('opts.out', out, 'an object of gradient buffers');
  // The buffers read once, here, before any tensor is checked (see options()).
  let outNames: readonly string[] = NONE;
  let outBuffers: readonly unknown[] = NONE;
  let dX: unknown;
  if (out !== undefined) {
    const names = ownKeys(out as object);
    const buffers: unknown[] = [];
    for (let i = 0; i < names.length; i++) {
      const b = (out as Record<string, unknown>)[names[i]];
      buffers.push(b);
      if (names[i] === 'dX') dX = b;
    }
    outNames = names;
    outBuffers = buffers;
  }
  const wantDX = bool('opts.inputGrad', inputGrad, dX !== undefined);
  if (!wantDX && dX !== undefined) fail(TypeError, 'no out.dX when inputGrad is false', 'opts.out.dX', dX);
  const b = oneOf('opts.backend', backend, BACKENDS, 'native');
  return {
    backend: b,
    exact: exactOption('opts.exact', exact, b),
    reduction: oneOf('opts.reduction', reduction, LOSS_REDUCTIONS, defaultReduction),
    reductionGiven: reduction !== undefined,
    cache: bool('opts.cache', cache, false),
    accumulate: bool('opts.accumulate', accumulate, false),
    inputGrad: wantDX,
    outNames,
    outBuffers,
    activation,
    weight, ignoreIndex, labelSmoothing, gradOutput,
  };
}

// ---- F.cross_entropy's options ----

/** A float typed array used by the engines during a call: one in a SharedArrayBuffer is copied (another thread could change it). */
export function ownCopy<A extends FloatArray>(a: A): A {
  return bufferOf(a) instanceof SharedArrayBuffer ? (a.slice() as A) : a;
}

/** weight: a Float64Array/Float32Array [C] of finite values (null when not given); C unknown (a loss not yet on a net): any length ≥ 1. */
export function lossWeight(name: string, w: unknown, dtype: Dtype | null, C: number | null): FloatArray | null {
  if (w === undefined || w === null) return null;
  const dt = dtypeOf(name, w);
  if (dtype !== null && dt !== dtype) fail(TypeError, `a ${dtype === 'float64' ? 'Float64Array' : 'Float32Array'} (the dtype of the net)`, name, w);
  const a = w as FloatArray;
  if (C !== null) floatArray(name, a, dt, C);
  else if (lengthOf(a) === 0) fail(RangeError, 'at least one class weight', name, a);
  const copy = ownCopy(a);
  assertFinite(name, copy);
  return copy;
}

/** ignore_index: a 32-bit integer, default −100 (PyTorch's). */
export function ignoreIndex(name: string, v: unknown, fallback = -100): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') fail(TypeError, 'an integer', name, v);
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) fail(RangeError, 'a 32-bit integer', name, v);
  return v;
}

/** label_smoothing: a number in [0, 1], default 0 (PyTorch refuses anything outside). */
export function labelSmoothing(name: string, v: unknown, fallback = 0): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') fail(TypeError, 'a number in [0, 1]', name, v);
  if (!(v >= 0 && v <= 1)) fail(RangeError, 'a number in [0, 1]', name, v);
  return v;
}

/**
 * Probability targets: y as a Float64Array/Float32Array of the net's dtype and length B·C, B from X
 * (PyTorch's float-target form, a row-stochastic [B,C]; like PyTorch, rows are not required to sum
 * to 1). Finite; copied when shared. null when y is anything else (then class labels).
 */
export function probabilityTargets(X: unknown, y: unknown, p: Pick<CheckedParams, 'dtype' | 'D' | 'C'>): { X: FloatArray; targets: FloatArray; B: number } | null {
  if (!(y instanceof Float64Array || y instanceof Float32Array) || !ArrayBuffer.isView(y)) return null;
  const { B } = inputRows(X, p);
  // Any other length is not this form: class ids' own check answers it (class ids go in an Int32Array).
  if (lengthOf(y) !== B * p.C) return null;
  const targets = floatArray('y', y, p.dtype, B * p.C);
  const copy = ownCopy(targets);
  assertFinite('y', copy);
  return { X: input(X, p, B), targets: copy, B };
}

/** Products that a 32-bit BLAS index or a typed array cannot hold are refused up front. */
export function sizes(d: Dims): void {
  const maxLen = 2 ** 32 - 1;
  const products = { X: d.B * d.D, W1: d.D * d.H, W2: d.H * d.C, workspace: 3 * d.B * d.H + 3 * d.B * d.C };
  for (const [name, n] of Object.entries(products)) {
    if (n > maxLen) fail(RangeError, `at most ${maxLen} elements`, name, new Received(`${n} elements`));
  }
}

/** The buffer a view holds bytes of (through the intrinsic getters), or null for a view of no bytes, which shares memory with nothing. */
export function memoryOf(view: ArrayBufferView): ArrayBufferLike | null {
  if (byteLengthOf(view) === 0) return null;
  return view instanceof DataView ? (dataViewBuffer.call(view) as ArrayBufferLike) : bufferOf(view);
}

/**
 * Refuses an output that shares bytes with an input or another output (a silent wrong answer).
 * Names are looked up only on failure: this runs on every call with `out` buffers.
 */
export function disjoint(outNames: readonly string[], outs: readonly (ArrayBufferView | undefined)[], inNames: readonly string[], ins: readonly ArrayBufferView[]): void {
  // .buffer is a getter, and this runs on every training step of a Sequential: read each once.
  const n = outs.length;
  const views = [...outs, ...ins];
  // Through %TypedArray%.prototype's getters: a subclass's own `buffer`, `byteOffset` or
  // `byteLength` getter could otherwise hide that it shares memory with an input.
  const buffers = views.map((a) => (a === undefined ? undefined : a instanceof DataView ? (dataViewBuffer.call(a) as ArrayBufferLike) : bufferOf(a)));
  const starts = views.map((a) => (a === undefined ? 0 : byteOffsetOf(a)));
  const ends = views.map((a, k) => (a === undefined ? 0 : starts[k] + byteLengthOf(a)));
  for (let i = 0; i < n; i++) {
    if (views[i] === undefined) continue;
    for (let j = 0; j < views.length; j++) {
      if (j === i || views[j] === undefined || buffers[i] !== buffers[j]) continue;
      if (starts[i] < ends[j] && starts[j] < ends[i]) {
        const other = j < n ? `out.${outNames[j]}` : inNames[j - n];
        throw new RangeError(`Expected out.${outNames[i]} not to share memory with ${other}`);
      }
    }
  }
}

// ---- option objects: every key known, or a TypeError that names it ----

/**
 * Names users bring from PyTorch, tfjs, Keras, scikit-learn and pandas, and this package's name (or
 * names, the first known one wins) for the same thing. An unknown key found here is answered with
 * "did you mean", whichever entry point it reached; snake_case and kebab-case keys are looked up
 * in camelCase too (learning_rate, --learning-rate → learningRate).
 */
const FOREIGN_NAMES: Readonly<Record<string, string | readonly string[]>> = {
  learningRate: 'lr', epoch: 'epochs', numEpochs: 'epochs', maxEpochs: 'epochs', nEpochs: 'epochs', batchSize: 'batch',
  validationSplit: 'fraction', testSize: 'fraction', validationData: 'validation',
  callbacks: 'onProgress', callback: 'onProgress', verbose: 'onProgress', onBatchEnd: 'onStep', onTrainBatchEnd: 'onStep', shuffleSeed: 'seed', randomState: 'seed', randomSeed: 'seed',
  requiresGrad: 'inputGrad', dtypes: 'dtype', activationFn: 'activation', act: 'activation', eps: 'epsilon', betas: 'beta1 and beta2',
  earlyStopping: 'earlyStop', patience: 'earlyStop: { patience }', numClasses: 'classes', nClasses: 'classes', classWeight: 'weight',
  sizeAverage: 'reduction', reduce: 'reduction', device: 'backend', fastMode: 'mode', kernelInitializer: 'init', hiddenSize: 'hidden',
  optim: 'optimizer', sep: 'delimiter', separator: 'delimiter', output: 'out', outputDir: 'out', outDir: 'out', nSamples: 'n', numSamples: 'n',
};

/** foo_bar and foo-bar as fooBar. */
const camel = (key: string) => key.replace(/[_-]([a-z])/g, (_, c: string) => c.toUpperCase());

/** This package's names for a foreign key, its camelCase first (none when it is not one). */
const foreignNames = (key: string): string[] => [camel(key), FOREIGN_NAMES[key] ?? FOREIGN_NAMES[camel(key)] ?? []].flat().filter((n) => n !== key);

/**
 * Options PyTorch's F.cross_entropy (and torch.optim) have that this package does not support yet:
 * refused by name rather than ignored. Entry points pass the subset that applies to them.
 */
export const NOT_YET_SUPPORTED: Readonly<Record<string, string>> = {
  // Supported where a loss is: an entry point without one points there.
  weight: "F.cross_entropy's weight is an option of the loss: pass loss: new SoftmaxCrossEntropy({ weight }) to the model, or weight to forwardBackward",
  ignoreIndex: "F.cross_entropy's ignore_index is an option of the loss: pass loss: new SoftmaxCrossEntropy({ ignoreIndex }) to the model, or ignoreIndex to forwardBackward",
  labelSmoothing: "F.cross_entropy's label_smoothing is an option of the loss: pass loss: new SoftmaxCrossEntropy({ labelSmoothing }) to the model, or labelSmoothing to forwardBackward",
  // Supported by fit and fitSync (the last rows held out, as tfjs): an entry point without it points there.
  validationSplit: 'validationSplit is an option of trainer.fit and fitSync (or split with trainValSplit and pass { validation })',
};

/**
 * Edit distance with transpositions (optimal string alignment), case-blind, for "did you mean":
 * 'trian' is one edit from 'train'. Option names are short: the quadratic table is fine.
 */
function editDistance(a: string, b: string): number {
  [a, b] = [a.toLowerCase(), b.toLowerCase()];
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i + j));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known name a misspelt or foreign `key` most likely meant, or undefined. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  const foreign = foreignNames(key).find((f) => known.includes(f) || known.some((k) => f.startsWith(`${k}:`) || f.startsWith(`${k} `)));
  if (foreign !== undefined) return foreign;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = Math.min(editDistance(key, k), editDistance(camel(key), k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

/**
 * An options object whose every own key is one of `known`: undefined is {}, anything but a plain
 * object is a TypeError, and an unknown key is a TypeError that names it, says what it most likely
 * meant, and lists the known ones. A key in `unsupported` is refused with that reason.
 * @throws {TypeError}
 */
export function options<K extends string>(
  name: string, opts: unknown, known: readonly K[], unsupported: Readonly<Record<string, string>> = {},
): { readonly [P in K]?: unknown } {
  if (opts === undefined) return {};
  const o = plainObject(name, opts);
  // A copy, each value read once: a getter cannot answer one thing to the check and another to the
  // use. The copy's keys are enumerable, so a non-enumerable option given is read as any other.
  const copy: Record<string, unknown> = {};
  for (const key of ownKeys(o)) {
    if (!(known as readonly string[]).includes(key)) unknownOption(name, key, known, unsupported);
    copy[key] = o[key];
  }
  return copy as { readonly [P in K]?: unknown };
}

/** The TypeError for an option `key` not among `known`: the reason when it is unsupported, else a did-you-mean and the known ones. */
function unknownOption(name: string, key: string, known: readonly string[], unsupported: Readonly<Record<string, string>>): never {
  // An unsupported entry names what this entry point lacks: one it knows is answered by did-you-mean below.
  const why = [key, ...foreignNames(key)].filter((k) => !known.includes(k)).map((k) => unsupported[k]).find((w) => w !== undefined);
  if (why !== undefined) throw new TypeError(`Expected no option '${key}' for ${name}: ${why}`);
  const guess = didYouMean(key, known);
  const hint = guess !== undefined ? ` (did you mean '${guess}'?)` : '';
  throw new TypeError(`Expected no option '${key}' for ${name}${hint}; the options are ${known.join(', ') || '(none)'}`);
}
