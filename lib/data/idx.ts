// The IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"):
//   [0x00 0x00][type byte][number of dimensions k][k sizes, uint32 big-endian][data, big-endian]
// type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
//
// A file is untrusted input: the header is checked against the bytes actually present, sizes are
// multiplied in BigInt (no overflow), nothing is allocated from a declared size, and every problem
// is a HandgradError with code ERR_FILE — never a crash or a silent short read.
import * as v from '../validate';
import { checkGzPath, fileFail, gunzip, hex, isGzip, MAX_BUFFER_BYTES, MAX_GUNZIPPED_BYTES, readFile } from './files';
import { limit } from './options';

export type IdxDtype = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDtype;
  /** Sizes of the dimensions, outermost first (MNIST images: [n, 28, 28]). */
  shape: number[];
  /** Row-major elements, in host order. uint8 and int8 data are views into the input bytes. */
  data: IdxData;
}

/** By type byte: the dtype, its size, and (wider than a byte) its typed array and DataView getter. */
const TYPES: Record<number, { dtype: IdxDtype; size: number; ctor?: new (n: number) => IdxData; get?: string }> = {
  0x08: { dtype: 'uint8', size: 1 },
  0x09: { dtype: 'int8', size: 1 },
  0x0b: { dtype: 'int16', size: 2, ctor: Int16Array, get: 'getInt16' },
  0x0c: { dtype: 'int32', size: 4, ctor: Int32Array, get: 'getInt32' },
  0x0d: { dtype: 'float32', size: 4, ctor: Float32Array, get: 'getFloat32' },
  0x0e: { dtype: 'float64', size: 8, ctor: Float64Array, get: 'getFloat64' },
};

export interface IdxOptions {
  /**
   * The most bytes gzipped input may inflate to (default 1 GiB, MAX_GUNZIPPED_BYTES): a gzip bomb
   * is refused once it passes this, having cost no more memory.
   */
  maxBytes?: number;
}

/**
 * Parses an IDX file held in memory (gzipped or not: gzip is recognised by its magic bytes).
 * @param source a name for error messages (the path, when read from a file)
 * @throws {TypeError} bytes is not a Uint8Array, opts.source not a string, an unknown option
 * @throws {RangeError} maxBytes not an integer in [1, 2^32]
 * @throws {HandgradError} code ERR_FILE: corrupt gzip or more than opts.maxBytes once gunzipped, a
 *   wrong magic number, an unknown type byte, no dimensions, a header or data shorter than declared,
 *   or bytes after the data
 */
export function readIdx(bytes: Uint8Array, opts: IdxOptions & { source?: string } = {}): IdxArray {
  if (!(bytes instanceof Uint8Array)) v.fail(TypeError, 'a Uint8Array (or Buffer)', 'bytes', bytes);
  const o = v.options('opts', opts, ['maxBytes', 'source']);
  const maxBytes = limit('opts.maxBytes', o.maxBytes, MAX_GUNZIPPED_BYTES, MAX_BUFFER_BYTES);
  const source = o.source;
  if (source !== undefined && typeof source !== 'string') v.fail(TypeError, 'a string (the name to give in messages)', 'opts.source', source);
  const name = source === undefined ? 'the IDX data' : 'the IDX file';
  if (isGzip(bytes)) bytes = gunzip(bytes, source ?? 'the IDX bytes', maxBytes);
  if (bytes.length < 4) fileFail('at least 4 bytes (the magic number)', name, `${bytes.length} bytes`, source);
  if (bytes[0] !== 0 || bytes[1] !== 0) fileFail('the IDX magic number 00 00 <type> <dims>', name, `bytes ${hex(bytes.subarray(0, 4))}`, source);
  const type = TYPES[bytes[2]];
  if (type === undefined) {
    fileFail('an IDX type byte (08 uint8, 09 int8, 0b int16, 0c int32, 0d float32, 0e float64)', name, `0x${hex(bytes.subarray(2, 3))}`, source);
  }
  const k = bytes[3];
  if (k === 0) fileFail('at least one dimension', name, '0 dimensions', source);
  const start = 4 + 4 * k;
  if (bytes.length < start) {
    fileFail(`a header of ${start} bytes (${k} dimension sizes)`, name, `${bytes.length} bytes (the file is truncated)`, source);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: k }, (_, i) => dv.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, s) => a * BigInt(s), 1n);
  const want = count * BigInt(type.size);
  const have = BigInt(bytes.length - start);
  if (want !== have) {
    const why = want > have ? 'the file is truncated or its sizes are wrong' : 'bytes after the data';
    fileFail(`${want} data bytes for shape [${shape.join(',')}] of ${type.dtype}`, name, `${have} (${why})`, source);
  }
  const n = Number(count);
  let data: IdxData;
  if (type.dtype === 'uint8') data = bytes.subarray(start, start + n);
  else if (type.dtype === 'int8') data = new Int8Array(bytes.buffer, bytes.byteOffset + start, n);
  else {
    // Big-endian elements, read one by one whatever the host's byte order.
    const get = (dv as unknown as Record<string, (at: number, littleEndian: boolean) => number>)[type.get!].bind(dv);
    data = new type.ctor!(n);
    for (let i = 0; i < n; i++) data[i] = get(start + type.size * i, false);
  }
  return { dtype: type.dtype, shape, data };
}

/**
 * Reads and parses an IDX file (gzipped or not).
 * @throws {TypeError} path not a string, an unknown option
 * @throws {RangeError} maxBytes not an integer in [1, 2^32]
 * @throws {HandgradError} code ERR_FILE: the file cannot be read, a path ending in .gz does not hold
 *   gzip, or its content is malformed (see readIdx)
 */
export function loadIdx(path: string, opts: IdxOptions = {}): IdxArray {
  const o = v.options('opts', opts, ['maxBytes']);
  if (typeof path !== 'string') v.fail(TypeError, 'a file path', 'path', path);
  const maxBytes = limit('opts.maxBytes', o.maxBytes, MAX_GUNZIPPED_BYTES, MAX_BUFFER_BYTES); // before the file is read
  const raw = readFile(path, 'IDX file');
  checkGzPath(path, raw); // as readCsv: an .idx.gz that is not gzip is a wrong file, not one to read as raw IDX
  return readIdx(raw, { maxBytes, source: path });
}
