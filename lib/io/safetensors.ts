// The safetensors format (https://github.com/huggingface/safetensors), read and written:
//   [u64 little-endian N][N bytes of UTF-8 JSON header][data buffer]
// header: { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } },
// offsets relative to the start of the data buffer, tensors tiling it with no gap and no overlap.
//
// A file is untrusted input: every field is checked before a byte of data is touched, sizes are
// compared against the bytes actually present (never allocated from a declared size), and every
// problem is a HandgradError with code ERR_FILE worded as the rest of the library:
//   Expected {what} for {name} but received {actual}
import { fileFail } from '../data/files';
import { limit } from '../data/options';
import { writeFileAtomic } from './atomic';
import { readRegularFile } from './regular-file';
import * as v from '../validate';

/** Every dtype the format defines; the first four convert to typed arrays, the rest stay raw bytes. */
export type SafetensorsDtype =
  | 'F64' | 'F32' | 'I32' | 'I64'
  | 'F16' | 'BF16' | 'I8' | 'U8' | 'I16' | 'U16' | 'U32' | 'U64' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2' | 'F8_E8M0' | 'F4' | 'F6_E2M3' | 'F6_E3M2';

/**
 * Bytes per element (the 4- and 6-bit float formats pack several per byte and are not sized here).
 * A Map, not an object: a dtype named "toString" or "__proto__" must not find Object.prototype's.
 */
const DTYPE_SIZE = new Map<string, number>(Object.entries({
  F64: 8, F32: 4, I32: 4, I64: 8,
  F16: 2, BF16: 2, I8: 1, U8: 1, I16: 2, U16: 2, U32: 4, U64: 8, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
}));
const sizeOf = (dtype: string): number => DTYPE_SIZE.get(dtype) ?? 0;
const PACKED = new Set(['F4', 'F6_E2M3', 'F6_E3M2']);
/** The dtypes that convert to typed arrays, with the name of their DataView accessors (for a big-endian host). */
type TypedCtor = Float64ArrayConstructor | Float32ArrayConstructor | Int32ArrayConstructor | BigInt64ArrayConstructor;
const TYPED = new Map<string, [TypedCtor, string]>([
  ['F64', [Float64Array, 'Float64']], ['F32', [Float32Array, 'Float32']], ['I32', [Int32Array, 'Int32']], ['I64', [BigInt64Array, 'BigInt64']],
]);
type Accessors = Record<string, (offset: number, value?: unknown, littleEndian?: boolean) => never>;

/** Typed data for the dtypes handgrad computes with; the raw little-endian bytes for the others. */
export type TensorData = Float64Array | Float32Array | Int32Array | BigInt64Array;

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** F64 → Float64Array, F32 → Float32Array, I32 → Int32Array, I64 → BigInt64Array; any other dtype → its raw bytes. */
  data: TensorData | Uint8Array;
}

export interface SafetensorsFile {
  tensors: Record<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export interface ReadOptions {
  /** Always copy the data (default false: aligned data is a view into `bytes`, misaligned data is copied). */
  copy?: boolean;
  /**
   * The longest JSON header accepted, in bytes (default MAX_HEADER_BYTES = 1 MiB; at most 100 MB,
   * the reference implementation's own limit).
   */
  maxHeaderBytes?: number;
}

/** A tensor to write: dtype defaults to the typed array's (Float64Array → F64, …); raw bytes need one. */
export interface TensorInput {
  dtype?: SafetensorsDtype;
  shape: readonly number[];
  data: TensorData | Uint8Array | ArrayLike<number>;
}

/**
 * The default cap on the JSON header. Parsing and checking a header costs about 0.1–0.4 s per MB
 * (JSON.parse, then one object per entry), so the reference implementation's 100 MB lets a file
 * of that size cost 10–30 s and 2 GB before it is refused; 1 MiB keeps the worst header well under
 * a second (0.15–0.4 s measured, test/30). Real headers are far smaller: a handgrad file holds at most
 * MAX_LAYERS (4096) layers, whose header is under 0.5 MB, and a PyTorch shard of a large model
 * lists some hundreds of tensors in well under 100 KB. Larger headers can be read with
 * opts.maxHeaderBytes.
 */
export const MAX_HEADER_BYTES = 1 << 20;
/** The reference implementation's limit: opts.maxHeaderBytes may not exceed it. */
const FORMAT_MAX_HEADER_BYTES = 100_000_000;

/** The most dimensions a shape may have (the reference implementation's); the reader and the writer both hold to it. */
export const MAX_DIMS = 64;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const shapeText = (s: readonly number[]) => `[${s.join(',')}]`;

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** Defines an own property even for names like "__proto__", so a hostile name cannot reach a prototype. */
function put<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The first key that appears twice in one object of a JSON text that parses (JSON.parse keeps the
 * last silently, and a reviver sees only that one), with where: 'the safetensors header' for a
 * top-level key, else the entry it is in. A scan of the text, one pass, no recursion (the header
 * is at most FORMAT_MAX_HEADER_BYTES): strings are skipped by their escapes, and a key is
 * compared decoded (JSON.parse of its literal), so "a" and "\u0061" are the same key.
 */
function duplicateKey(text: string): { key: string; where: string } | undefined {
  // One entry per open container: the keys seen so far for an object, null for an array.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  let topKey = ''; // the last key read in the top-level object: the entry a nested key is in
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) {
          const where = stack.length === 1 ? 'the safetensors header' : topKey === '__metadata__' ? '__metadata__' : `tensor ${JSON.stringify(topKey)}`;
          return { key, where };
        }
        keys.add(key);
        if (stack.length === 1) topKey = key;
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return undefined;
}

type Entry = { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number };

/** One header entry, checked field by field; `dataLength` bounds every size (nothing is trusted). */
function checkEntry(name: string, raw: unknown, dataLength: number, source?: string): Entry {
  const tname = `tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(raw)) fileFail('an object { dtype, shape, data_offsets }', tname, v.describe(raw), source);
  // A field the format does not define (e.g. "byteorder") would be silently ignored, while the
  // writer meant something by it: refused.
  const unknown = Object.keys(raw).find((k) => k !== 'dtype' && k !== 'shape' && k !== 'data_offsets');
  if (unknown !== undefined) fileFail('only the fields dtype, shape, data_offsets', tname, `also ${JSON.stringify(unknown)}`, source);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string' || (!DTYPE_SIZE.has(dtype) && !PACKED.has(dtype))) {
    fileFail(`a safetensors dtype (F64, F32, I64, I32, F16, BF16, U8, …)`, `the dtype of ${tname}`, v.describe(dtype), source);
  }
  if (PACKED.has(dtype)) fileFail('a dtype of whole bytes per element', `the dtype of ${tname}`, dtype, source);
  const sname = `the shape of ${tname}`;
  if (!Array.isArray(shape)) fileFail('an array of non-negative integers', sname, v.describe(shape), source);
  if (shape.length > MAX_DIMS) fileFail(`at most ${MAX_DIMS} dimensions`, sname, `${shape.length}`, source);
  const i = shape.findIndex((s) => typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0);
  if (i >= 0) fileFail('an array of non-negative integers', sname, `${v.describe(shape[i])} at dimension ${i}`, source);
  const oname = `the data_offsets of ${tname}`;
  if (!Array.isArray(offsets) || offsets.length !== 2) fileFail('[begin, end]', oname, v.describe(offsets), source);
  const [b, e] = offsets as number[];
  if (!offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    // Each offset described, not JSON.stringify'd: a deeply nested array would overflow the stack.
    fileFail('non-negative integer offsets [begin, end]', oname, `[${offsets.map(v.describe).join(', ')}]`, source);
  }
  if (e < b) fileFail('begin ≤ end', oname, JSON.stringify(offsets), source);
  if (e > dataLength) {
    fileFail(`offsets within the ${dataLength}-byte data buffer`, oname, `${JSON.stringify(offsets)} (the file is truncated or the header is wrong)`, source);
  }
  // Elements × size against the bytes the entry spans, in BigInt: exact for any declared shape
  // (at most 64 dimensions below 2^53 each), so a huge declared size is a mismatch, never an allocation.
  const bytes = (shape as number[]).reduce((n, s) => n * BigInt(s), BigInt(sizeOf(dtype)));
  if (bytes !== BigInt(e - b)) {
    const what = `shape ${shapeText(shape as number[])} of ${dtype} (${bytes} bytes) to match its data_offsets`;
    fileFail(what, tname, `data_offsets ${JSON.stringify(offsets)} (${e - b} bytes)`, source);
  }
  return { name, dtype: dtype as SafetensorsDtype, shape: (shape as number[]).slice(), begin: b, end: e };
}

function viewOrCopy(bytes: Uint8Array, start: number, e: Entry, copy: boolean): TensorData | Uint8Array {
  const typed = TYPED.get(e.dtype);
  if (typed === undefined) return bytes.slice(start + e.begin, start + e.end);
  const [ctor, accessor] = typed;
  const len = e.end - e.begin;
  const abs = bytes.byteOffset + start + e.begin;
  const size = ctor.BYTES_PER_ELEMENT;
  const n = len / size;
  if (!LITTLE_ENDIAN) {
    // The format is little-endian: read each element through a DataView on a big-endian host.
    const dv = new DataView(bytes.buffer, abs, len) as unknown as Accessors;
    return (ctor as Float64ArrayConstructor).from({ length: n }, (_, i) => dv[`get${accessor}`](i * size, true));
  }
  if (!copy && abs % size === 0) return new ctor(bytes.buffer as ArrayBuffer, abs, n);
  // Misaligned (or a copy was asked for): copy the bytes into a fresh, aligned buffer.
  const out = new ctor(n);
  new Uint8Array(out.buffer).set(bytes.subarray(start + e.begin, start + e.end));
  return out;
}

/**
 * Parses a safetensors file held in memory.
 * @param bytes the whole file
 * @param source a name for error messages (the path, when read from a file)
 * @throws {TypeError} bytes is not a Uint8Array, an unknown option, copy not a boolean, maxHeaderBytes not a number
 * @throws {RangeError} maxHeaderBytes not an integer in [1, 100000000]
 * @throws {HandgradError} code ERR_FILE: any malformed or hostile content, naming the tensor and
 *   what was expected and received (a header longer than opts.maxHeaderBytes, bad header length, non-JSON header, bad dtype or shape, offsets
 *   out of range, overlapping or leaving gaps, size mismatches, truncation)
 */
export function readSafetensors(bytes: Uint8Array, opts: ReadOptions & { source?: string } = {}): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) v.fail(TypeError, 'a Uint8Array (or Buffer)', 'bytes', bytes);
  const o = v.options('opts', opts, ['copy', 'maxHeaderBytes', 'source']);
  const copy = v.bool('opts.copy', o.copy, false);
  const maxHeader = limit('opts.maxHeaderBytes', o.maxHeaderBytes, MAX_HEADER_BYTES, FORMAT_MAX_HEADER_BYTES);
  const source = (o.source || undefined) as string | undefined; // an empty name adds no ' ()'
  if (bytes.length < 8) fileFail('at least 8 bytes (the header length)', 'the safetensors file', `${bytes.length} bytes`, source);
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 === 0n) fileFail('a header length of at least 2 bytes', 'the safetensors header', '0', source);
  if (n64 > BigInt(maxHeader)) {
    fileFail(`a header length of at most ${maxHeader} bytes (opts.maxHeaderBytes)`, 'the safetensors header', `${n64}`, source);
  }
  const n = Number(n64);
  if (8 + n > bytes.length) {
    fileFail(`a header length within the ${bytes.length}-byte file`, 'the safetensors header', `${n} (the file is truncated or not safetensors)`, source);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    return fileFail('UTF-8 text', 'the safetensors header', 'invalid UTF-8', source);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    return fileFail('JSON', 'the safetensors header', `text that does not parse (${(err as Error).message})`, source);
  }
  if (!isPlainObject(header)) fileFail('a JSON object', 'the safetensors header', v.describe(header), source);
  const twice = duplicateKey(text);
  if (twice !== undefined) fileFail('each key once', twice.where, `${JSON.stringify(twice.key)} twice`, source);

  const start = 8 + n;
  const dataLength = bytes.length - start;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const name of Object.keys(header)) {
    const raw = header[name];
    if (name === '__metadata__') {
      if (!isPlainObject(raw)) fileFail('an object of strings', '__metadata__', v.describe(raw), source);
      for (const k of Object.keys(raw)) {
        if (typeof raw[k] !== 'string') fileFail('string values', `__metadata__.${k}`, v.describe(raw[k]), source);
        put(metadata, k, raw[k] as string);
      }
      continue;
    }
    entries.push(checkEntry(name, raw, dataLength, source));
  }

  // The tensors must tile the data buffer: sorted by begin, each starts where the last ended.
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) {
      const what = e.begin < at ? 'data that overlaps no other tensor' : 'data that follows the previous tensor with no gap';
      fileFail(`${what} (begin = ${at})`, `tensor ${JSON.stringify(e.name)}`, `data_offsets [${e.begin},${e.end}]`, source);
    }
    at = e.end;
  }
  if (at !== dataLength) {
    fileFail(`tensors covering the whole ${dataLength}-byte data buffer`, 'the safetensors file', `tensors ending at byte ${at}`, source);
  }

  const tensors: Record<string, SafetensorsTensor> = {};
  for (const e of entries) put(tensors, e.name, { dtype: e.dtype, shape: e.shape, data: viewOrCopy(bytes, start, e, copy) });
  return { tensors, metadata };
}

const INT_RANGE: Record<string, [bigint, bigint]> = { I32: [-(2n ** 31n), 2n ** 31n - 1n], I64: [-(2n ** 63n), 2n ** 63n - 1n] };

/**
 * Every value converted to another dtype than its own must arrive unchanged: a typed array's
 * constructor wraps an integer out of range (2^31 → -2^31 in I32), turns a string or null into
 * NaN or 0, and rounds a finite double past float32's range to Infinity. So each is checked:
 * numbers (or BigInt) only; integer dtypes take integers within their range; F64 takes a BigInt
 * only when exact; F32 refuses a finite value that would become ±Infinity (its rounding to the
 * nearest float32 is what F32 means, and NaN or ±Infinity already in the data are kept as given).
 * @throws {TypeError} a value that is not a number (or BigInt); {RangeError} one the dtype cannot hold, naming tensors.<name>.data[i]
 */
function checkValues(tn: string, dtype: string, a: ArrayLike<unknown>): void {
  const range = INT_RANGE[dtype];
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const name = `${tn}.data[${i}]`;
    if (typeof x === 'bigint') {
      if (range !== undefined ? x < range[0] || x > range[1] : BigInt(Number(x)) !== x || (dtype === 'F32' && BigInt(Math.fround(Number(x))) !== x)) {
        v.fail(RangeError, `a value that ${dtype} holds exactly`, name, new v.Received(`${x}n`));
      }
    } else if (typeof x !== 'number') {
      v.fail(TypeError, 'a number', name, x);
    } else if (range !== undefined) {
      if (!Number.isInteger(x) || BigInt(x) < range[0] || BigInt(x) > range[1]) v.fail(RangeError, `an integer in [${range[0]}, ${range[1]}] (${dtype})`, name, x);
    } else if (dtype === 'F32' && Number.isFinite(x) && !Number.isFinite(Math.fround(x))) {
      v.fail(RangeError, 'a value within float32\'s range (±3.4028234663852886e38)', name, x);
    }
  }
}

function inferDtype(name: string, data: unknown): SafetensorsDtype {
  for (const [dtype, [ctor]] of TYPED) if (data instanceof ctor) return dtype as SafetensorsDtype;
  return v.fail(TypeError, 'a Float64Array, Float32Array, Int32Array or BigInt64Array (or an explicit dtype)', `${name}.data`, data);
}

/** The little-endian bytes of one tensor's data, checked against its dtype and shape. */
function encode(name: string, t: TensorInput): { dtype: SafetensorsDtype; shape: number[]; bytes: Uint8Array } {
  const tn = `tensors.${name}`;
  if (t === null || typeof t !== 'object') v.fail(TypeError, 'an object { shape, data, dtype? }', tn, t);
  v.options(tn, t, ['dtype', 'shape', 'data']);
  const dtype = t.dtype ?? inferDtype(tn, t.data);
  if (typeof dtype !== 'string' || !DTYPE_SIZE.has(dtype)) v.fail(RangeError, 'a safetensors dtype (F64, F32, I32, I64, …)', `${tn}.dtype`, dtype);
  if (!Array.isArray(t.shape) || t.shape.some((s) => !Number.isSafeInteger(s) || s < 0)) {
    v.fail(TypeError, 'an array of non-negative integers', `${tn}.shape`, t.shape);
  }
  // The readers' limit: never write what they refuse.
  if (t.shape.length > MAX_DIMS) v.fail(RangeError, `at most ${MAX_DIMS} dimensions`, `${tn}.shape`, new v.Received(`${t.shape.length}`));
  const shape = t.shape.slice();
  const count = shape.reduce((a, b) => a * b, 1);
  const size = sizeOf(dtype);
  const data = t.data;
  if (data instanceof Uint8Array) {
    if (data.length !== count * size) v.fail(RangeError, `${count * size} bytes (shape ${shapeText(shape)} of ${dtype})`, `${tn}.data`, data.length);
    return { dtype, shape, bytes: data };
  }
  const typedOf = TYPED.get(dtype);
  if (typedOf === undefined) return v.fail(TypeError, 'the raw bytes (a Uint8Array)', `${tn}.data of dtype ${dtype}`, data);
  const [ctor, accessor] = typedOf;
  const len = (data as ArrayLike<unknown> | null)?.length;
  if (typeof len !== 'number') v.fail(TypeError, 'a typed array or an array of numbers', `${tn}.data`, data);
  if (len !== count) v.fail(RangeError, `${count} elements (shape ${shapeText(shape)})`, `${tn}.data`, data);
  if (!(data instanceof ctor)) checkValues(tn, dtype, data as ArrayLike<unknown>);
  let typed: TensorData;
  if (data instanceof ctor) typed = data as TensorData;
  else if (ctor === BigInt64Array) typed = BigInt64Array.from(data as ArrayLike<number | bigint>, (v) => BigInt(v));
  else if (data instanceof BigInt64Array) typed = (ctor as Float64ArrayConstructor).from(data as unknown as ArrayLike<number>, (v) => Number(v));
  else typed = (ctor as Float64ArrayConstructor).from(data as ArrayLike<number>, (x) => Number(x)); // (a BigInt in an array: checked exact above)
  let bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  if (!LITTLE_ENDIAN) {
    bytes = new Uint8Array(typed.byteLength);
    const dv = new DataView(bytes.buffer) as unknown as Accessors;
    for (let i = 0; i < typed.length; i++) dv[`set${accessor}`](i * ctor.BYTES_PER_ELEMENT, typed[i], true);
  }
  return { dtype, shape, bytes };
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes. Tensors are laid out by
 * decreasing element size (then in the order given), so that each starts aligned to its element
 * size; the header is padded with spaces to a multiple of 8 bytes.
 * @throws {TypeError|RangeError} a tensor whose data does not match its dtype or shape, a key other than
 *   dtype, shape, data in a tensor, a bad name or metadata
 */
export function writeSafetensors(tensors: Record<string, TensorInput>, metadata?: Record<string, string>): Uint8Array {
  if (tensors === null || typeof tensors !== 'object') v.fail(TypeError, 'an object of tensors', 'tensors', tensors);
  const items = Object.keys(tensors).map((name, order) => {
    if (name === '__metadata__' || name.length === 0) {
      v.fail(RangeError, 'a tensor name other than "" and "__metadata__"', 'tensors', new v.Received(JSON.stringify(name)));
    }
    return { name, order, ...encode(name, tensors[name]) };
  });
  items.sort((a, b) => sizeOf(b.dtype) - sizeOf(a.dtype) || a.order - b.order);

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) v.fail(TypeError, 'an object of strings', 'metadata', metadata);
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata)) {
      if (typeof metadata[k] !== 'string') v.fail(TypeError, 'a string', `metadata.${k}`, metadata[k]);
      put(meta, k, metadata[k]);
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const it of items) {
    put(header, it.name, { dtype: it.dtype, shape: it.shape, data_offsets: [offset, offset + it.bytes.length] });
    offset += it.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Never write what the readers refuse by default (a checkpoint's loaders take no maxHeaderBytes).
  if (json.length > MAX_HEADER_BYTES) {
    v.fail(RangeError, `a header of at most ${MAX_HEADER_BYTES} bytes (what the readers take by default)`, 'the tensor names and metadata', new v.Received(`${json.length} bytes of JSON`));
  }
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let at = 8 + n;
  for (const it of items) {
    out.set(it.bytes, at);
    at += it.bytes.length;
  }
  return out;
}

/**
 * Reads and parses a safetensors file.
 * @throws {TypeError} path not a string, an unknown option
 * @throws {HandgradError} code ERR_FILE: the file cannot be read, or its content is malformed (see readSafetensors)
 */
export function loadSafetensors(path: string, opts: ReadOptions = {}): SafetensorsFile {
  if (typeof path !== 'string') v.fail(TypeError, 'a file path', 'path', path);
  const { copy, maxHeaderBytes } = v.options('opts', opts, ['copy', 'maxHeaderBytes']) as ReadOptions;
  // A fresh Buffer owns its memory, so views into it are as safe as copies.
  // A regular file only, read once by size: /dev/zero or a FIFO would never end (lib/io/regular-file.ts).
  return readSafetensors(readRegularFile(path, 'safetensors file'), { copy, maxHeaderBytes, source: path });
}

/**
 * Writes tensors (and optional string metadata) to a safetensors file, atomically: into a temporary
 * file in the same folder, fsynced, then renamed over `path` (lib/io/atomic.ts).
 * @throws {TypeError|RangeError} as writeSafetensors
 * @throws {HandgradError} code ERR_FILE: the file cannot be written (the old file, if any, is left intact)
 */
export function saveSafetensors(path: string, tensors: Record<string, TensorInput>, metadata?: Record<string, string>): void {
  // '' names no file (the write would fail as EISDIR on the temporary file's folder): the argument is wrong.
  if (typeof path !== 'string' || path === '') v.fail(TypeError, 'a file path', 'path', path);
  const bytes = writeSafetensors(tensors, metadata);
  writeFileAtomic(path, bytes); // a crash mid-write leaves the old file or the new one, never neither
}

/**
 * One tensor of a read file as a typed array of one of the wanted dtypes: the error when the
 * name is missing or the dtype is another (F16, BF16, … are not converted) names both.
 * @throws {HandgradError} code ERR_FILE
 */
export function tensorOf(file: SafetensorsFile, name: string, dtypes: readonly SafetensorsDtype[], source?: string): SafetensorsTensor & { data: TensorData } {
  const t = Object.prototype.hasOwnProperty.call(file.tensors, name) ? file.tensors[name] : undefined;
  if (t === undefined) {
    // Listed only on failure: a loader calls this once per tensor, and listing every time is quadratic.
    const present = Object.keys(file.tensors);
    fileFail(`a tensor named ${JSON.stringify(name)}`, 'the safetensors file', `tensors ${present.length ? present.map((p) => JSON.stringify(p)).join(', ') : '(none)'}`, source);
  }
  if (!dtypes.includes(t.dtype)) {
    const hint = t.dtype === 'F16' || t.dtype === 'BF16' ? ' (half precision is not converted: save it with .double() or .float())' : '';
    fileFail(`dtype ${dtypes.join(' or ')}`, `tensor ${JSON.stringify(name)}`, `${t.dtype}${hint}`, source);
  }
  return t as SafetensorsTensor & { data: TensorData };
}
