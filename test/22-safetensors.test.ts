// The safetensors reader and writer: PyTorch-written fixtures (shapes, and forwardBackward on them
// reproducing PyTorch's gradients), write → read round trips, and hostile files, each of which must
// be a clear error (HandgradError ERR_FILE naming what was expected and received), never a crash.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { forwardBackward, HandgradError, loadSafetensors, readSafetensors, saveSafetensors, writeSafetensors } from '../lib';
import { MAX_HEADER_BYTES, tensorOf } from '../lib/io/safetensors';
import type { Activation, Reduction } from '../lib/types';
import { errEps, FIXTURES } from './helpers';

// A few units of epsilon relative to the tensor's largest entry (test/fixtures/README.md).
const TOL_EPS = 8;
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-st-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('PyTorch-written fixtures', () => {
  for (const [suffix, dtype] of [['', 'float64'], ['-float32', 'float32']] as const) {
    const base = join(FIXTURES, `seed-realistic-64x128x256x10${suffix}`);
    const F = dtype === 'float64' ? 'F64' : 'F32';
    const Arr = dtype === 'float64' ? Float64Array : Float32Array;

    it(`${dtype}: the case holds X, y, W1, b1, W2, b2 with the seed's shapes and metadata`, () => {
      const { tensors, metadata } = loadSafetensors(`${base}.case.safetensors`);
      const want: Record<string, [string, number[]]> = {
        X: [F, [64, 128]], y: ['I32', [64]], W1: [F, [128, 256]], b1: [F, [256]], W2: [F, [256, 10]], b2: [F, [10]],
      };
      expect(Object.keys(tensors).sort()).toEqual(Object.keys(want).sort());
      for (const [name, [dt, shape]] of Object.entries(want)) {
        expect(tensors[name].dtype, name).toBe(dt);
        expect(tensors[name].shape, name).toEqual(shape);
        expect(tensors[name].data.length, name).toBe(shape.reduce((a, b) => a * b, 1));
        expect(tensors[name].data, name).toBeInstanceOf(dt === 'I32' ? Int32Array : Arr);
        // A typed view must sit on its element size (the constructor would have thrown otherwise).
        expect(tensors[name].data.byteOffset % (dt === 'F64' ? 8 : 4), name).toBe(0);
      }
      expect(metadata).toEqual({ activation: 'relu', reduction: 'mean' });
      const y = tensors.y.data as Int32Array;
      expect(y.every((c) => c >= 0 && c < 10)).toBe(true);
    });

    for (const backend of ['native', 'ts'] as const) {
      it(`${dtype}: forwardBackward (${backend}) on the case reproduces the expected file`, () => {
        const c = loadSafetensors(`${base}.case.safetensors`);
        const e = loadSafetensors(`${base}.expected.safetensors`).tensors;
        const t = c.tensors;
        const r = forwardBackward(
          { W1: t.W1.data as Float64Array, b1: t.b1.data as Float64Array, W2: t.W2.data as Float64Array, b2: t.b2.data as Float64Array },
          t.X.data as Float64Array,
          t.y.data as Int32Array,
          { backend, inputGrad: true, activation: c.metadata.activation as Activation, reduction: c.metadata.reduction as Reduction },
        );
        expect(e.loss.shape).toEqual([1]);
        expect(errEps([r.loss], e.loss.data as Float64Array, dtype)).toBeLessThanOrEqual(TOL_EPS);
        for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) {
          expect(r.grads[k]!.length, k).toBe(e[k].data.length);
          expect(errEps(r.grads[k]!, e[k].data as Float64Array, dtype), k).toBeLessThanOrEqual(TOL_EPS);
        }
      });
    }
  }
});

describe('write → read', () => {
  it('round-trips every supported dtype, shapes (scalar, empty, 3-d) and metadata', () => {
    const tensors = {
      a32: { shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 0, -0, 1e-30]) },
      b64: { shape: [3], data: Float64Array.from([Math.PI, -Infinity, 1e300]) },
      labels: { shape: [4], data: Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31)]) },
      big: { shape: [2], data: BigInt64Array.from([2n ** 62n, -5n]) },
      scalar: { shape: [], data: Float64Array.from([42]) },
      empty: { shape: [0, 7], data: new Float32Array(0) },
      cube: { shape: [2, 2, 2], data: Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]) },
      raw: { dtype: 'F16' as const, shape: [2], data: new Uint8Array([0x00, 0x3c, 0x00, 0xc0]) },
    };
    const bytes = writeSafetensors(tensors, { note: 'hello', 'ünïcode': '✓' });
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(n % 8).toBe(0); // header padded to 8 bytes
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(header.trimEnd().length).toBeLessThanOrEqual(n);
    expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);

    const back = readSafetensors(bytes);
    expect(back.metadata).toEqual({ note: 'hello', 'ünïcode': '✓' });
    for (const [name, t] of Object.entries(tensors)) {
      const got = back.tensors[name];
      expect(got.shape, name).toEqual(t.shape);
      expect(got.dtype, name).toBe((t as { dtype?: string }).dtype ?? { Float32Array: 'F32', Float64Array: 'F64', Int32Array: 'I32', BigInt64Array: 'I64' }[t.data.constructor.name]);
      expect(got.data.constructor, name).toBe(t.data.constructor);
      expect(Array.from(got.data as ArrayLike<number>), name).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    expect(Object.is((back.tensors.a32.data as Float32Array)[4], -0)).toBe(true);
  });

  it('plain arrays are converted to the declared dtype; the layout keeps every tensor aligned', () => {
    const bytes = writeSafetensors({
      y: { dtype: 'I32', shape: [3], data: [1, 2, 3] },
      w: { dtype: 'F64', shape: [2], data: [0.1, 0.2] },
      z: { dtype: 'I64', shape: [1], data: [7] },
    });
    const { tensors } = readSafetensors(bytes);
    expect(Array.from(tensors.y.data as Int32Array)).toEqual([1, 2, 3]);
    expect(Array.from(tensors.w.data as Float64Array)).toEqual([0.1, 0.2]);
    expect(Array.from(tensors.z.data as BigInt64Array)).toEqual([7n]);
    expect(tensors.w.data.byteOffset % 8).toBe(0);
    expect(tensors.z.data.byteOffset % 8).toBe(0);
  });

  it('misaligned input bytes give aligned copies with the right values; aligned ones are views unless copy is asked', () => {
    const bytes = writeSafetensors({ w: { shape: [3], data: Float64Array.from([1, 2, 3]) } });
    for (let shift = 1; shift < 8; shift++) {
      const buf = new Uint8Array(bytes.length + shift);
      buf.set(bytes, shift);
      const w = readSafetensors(buf.subarray(shift)).tensors.w.data as Float64Array;
      expect(w.byteOffset % 8).toBe(0);
      expect(Array.from(w)).toEqual([1, 2, 3]);
    }
    const view = readSafetensors(bytes).tensors.w.data as Float64Array;
    expect(view.buffer).toBe(bytes.buffer);
    const copy = readSafetensors(bytes, { copy: true }).tensors.w.data as Float64Array;
    expect(copy.buffer).not.toBe(bytes.buffer);
    expect(Array.from(copy)).toEqual([1, 2, 3]);
  });

  it('saveSafetensors → loadSafetensors through a file, and a file the fixtures hold reads back the same after a rewrite', () => {
    const path = join(tmp, 'rt.safetensors');
    const c = loadSafetensors(join(FIXTURES, 'seed-realistic-64x128x256x10.case.safetensors'));
    saveSafetensors(path, Object.fromEntries(Object.entries(c.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }])), c.metadata);
    const back = loadSafetensors(path);
    expect(back.metadata).toEqual(c.metadata);
    for (const [k, t] of Object.entries(c.tensors)) {
      expect(back.tensors[k].dtype).toBe(t.dtype);
      expect(back.tensors[k].shape).toEqual(t.shape);
      expect(Buffer.from(back.tensors[k].data.buffer, back.tensors[k].data.byteOffset, back.tensors[k].data.byteLength).equals(
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      )).toBe(true);
    }
  });

  it('writer errors: data that does not match its shape or dtype, bad names and metadata', () => {
    expect(() => writeSafetensors({ w: { shape: [2, 2], data: new Float64Array(3) } })).toThrow(RangeError);
    expect(() => writeSafetensors({ w: { shape: [2, 2], data: new Float64Array(3) } })).toThrow(/Expected 4 elements \(shape \[2,2\]\) for tensors\.w\.data but received Float64Array of length 3/);
    expect(() => writeSafetensors({ w: { shape: [-1], data: new Float64Array(0) } })).toThrow(TypeError);
    expect(() => writeSafetensors({ w: { shape: [2], data: [1, 2] } })).toThrow(/Float64Array, Float32Array, Int32Array or BigInt64Array \(or an explicit dtype\)/);
    expect(() => writeSafetensors({ w: { dtype: 'F17' as never, shape: [1], data: [1] } })).toThrow(RangeError);
    expect(() => writeSafetensors({ y: { dtype: 'I32', shape: [2], data: [1, 2.5] } })).toThrow(/Expected an integer in \[-2147483648, 2147483647\] \(I32\) for tensors\.y\.data\[1\] but received 2\.5/);
    expect(() => writeSafetensors({ y: { dtype: 'I64', shape: [1], data: Float64Array.from([0.5]) } })).toThrow(RangeError);
    expect(() => writeSafetensors({ w: { dtype: 'F16', shape: [2], data: new Uint8Array(3) } })).toThrow(/Expected 4 bytes/);
    expect(() => writeSafetensors({ w: { dtype: 'BF16', shape: [2], data: [1, 2] } })).toThrow(/raw bytes/);
    expect(() => writeSafetensors({ __metadata__: { shape: [1], data: new Float64Array(1) } })).toThrow(RangeError);
    expect(() => writeSafetensors({}, { n: 1 as unknown as string })).toThrow(/Expected a string for metadata\.n but received 1/);
  });
});

// ---- hostile files ----------------------------------------------------------------------------

/** A file from a header (object or raw text), data bytes, and optionally a forged header length. */
function forge(header: unknown, data: Uint8Array = new Uint8Array(0), length?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** {"a":"?"} with the ? an invalid UTF-8 byte. */
function notUtf8(): Uint8Array {
  const b = forge('{"a":"?"}');
  b[b.indexOf(0x3f)] = 0xff;
  return b;
}

const f64 = (shape: number[], begin: number, end: number) => ({ dtype: 'F64', shape, data_offsets: [begin, end] });
const valid = writeSafetensors({ W: { shape: [2, 3], data: Float64Array.from([1, 2, 3, 4, 5, 6]) }, y: { shape: [2], data: Int32Array.from([0, 1]) } });

const HOSTILE: [string, Uint8Array, RegExp][] = [
  ['empty file', new Uint8Array(0), /at least 8 bytes \(the header length\) for the safetensors file but received 0 bytes/],
  ['7 bytes', new Uint8Array(7), /at least 8 bytes/],
  ['header length 0', forge('', new Uint8Array(16), 0n), /header length of at least 2 bytes for the safetensors header but received 0/],
  ['header length past the end of the file', forge({}, new Uint8Array(0), 1000n), /header length within the 10-byte file for the safetensors header but received 1000/],
  ['header length above the 1 MiB cap', forge({}, new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n), new RegExp(`at most ${MAX_HEADER_BYTES} bytes \\(opts.maxHeaderBytes\\) for the safetensors header but received ${MAX_HEADER_BYTES + 1}`)],
  ['header length 2^64 − 1', forge({}, new Uint8Array(0), 2n ** 64n - 1n), new RegExp(`at most ${MAX_HEADER_BYTES} bytes .* received 18446744073709551615`)],
  ['header not UTF-8', notUtf8(), /Expected UTF-8 text for the safetensors header but received invalid UTF-8/],
  ['header not JSON', forge('{"W": {"dtype": "F64",'), /Expected JSON for the safetensors header but received text that does not parse/],
  ['header a JSON array', forge([1, 2]), /Expected a JSON object for the safetensors header but received Array of length 2/],
  ['header JSON null', forge('null'), /Expected a JSON object for the safetensors header but received null/],
  ['header a JSON string', forge('"x"'), /Expected a JSON object for the safetensors header but received/],
  ['entry not an object', forge({ W: 5 }), /Expected an object \{ dtype, shape, data_offsets \} for tensor "W" but received 5/],
  ['unknown dtype', forge({ W: { ...f64([1], 0, 8), dtype: 'F65' } }, new Uint8Array(8)), /safetensors dtype .* for the dtype of tensor "W" but received "F65"/],
  ['dtype lowercase', forge({ W: { ...f64([1], 0, 8), dtype: 'f64' } }, new Uint8Array(8)), /for the dtype of tensor "W" but received "f64"/],
  ['dtype named after an Object.prototype member', forge({ W: { ...f64([1], 0, 8), dtype: 'toString' } }, new Uint8Array(8)), /for the dtype of tensor "W" but received "toString"/],
  ['dtype "__proto__"', forge({ W: { ...f64([1], 0, 8), dtype: '__proto__' } }, new Uint8Array(8)), /for the dtype of tensor "W" but received "__proto__"/],
  ['dtype a number', forge({ W: { ...f64([1], 0, 8), dtype: 64 } }, new Uint8Array(8)), /for the dtype of tensor "W" but received 64/],
  ['negative shape entry', forge({ W: f64([-1, 2], 0, 8) }, new Uint8Array(8)), /non-negative integers for the shape of tensor "W" but received -1 at dimension 0/],
  ['fractional shape entry', forge({ W: f64([1.5], 0, 8) }, new Uint8Array(8)), /for the shape of tensor "W" but received 1.5 at dimension 0/],
  ['shape entry a string', forge({ W: f64(['2' as unknown as number], 0, 16) }, new Uint8Array(16)), /for the shape of tensor "W" but received "2" at dimension 0/],
  ['shape not an array', forge({ W: { ...f64([1], 0, 8), shape: 8 } }, new Uint8Array(8)), /for the shape of tensor "W" but received 8/],
  ['offsets past the data', forge({ W: f64([2], 0, 16) }, new Uint8Array(8)), /offsets within the 8-byte data buffer for the data_offsets of tensor "W" but received \[0,16\]/],
  ['offsets reversed', forge({ W: f64([0], 8, 0) }, new Uint8Array(8)), /begin ≤ end for the data_offsets of tensor "W" but received \[8,0\]/],
  ['offsets negative', forge({ W: f64([1], -8, 0) }, new Uint8Array(8)), /non-negative integer offsets/],
  ['offsets of three numbers', forge({ W: { ...f64([1], 0, 8), data_offsets: [0, 8, 16] } }, new Uint8Array(8)), /\[begin, end\] for the data_offsets of tensor "W"/],
  ['offsets missing', forge({ W: { dtype: 'F64', shape: [1] } }, new Uint8Array(8)), /\[begin, end\] for the data_offsets of tensor "W" but received undefined/],
  ['size ≠ shape × dtype size', forge({ W: f64([3], 0, 16) }, new Uint8Array(16)), /shape \[3\] of F64 \(24 bytes\) to match its data_offsets for tensor "W" but received data_offsets \[0,16\] \(16 bytes\)/],
  ['huge declared shape', forge({ W: f64([2 ** 53 - 1, 2 ** 53 - 1, 2 ** 40], 0, 8) }, new Uint8Array(8)), /shape \[9007199254740991,9007199254740991,1099511627776\] of F64 \(\d+ bytes\) to match its data_offsets for tensor "W"/],
  ['overlapping tensors', forge({ A: f64([2], 0, 16), B: f64([2], 8, 24) }, new Uint8Array(24)), /data that overlaps no other tensor \(begin = 16\) for tensor "B" but received data_offsets \[8,24\]/],
  ['a hole between tensors', forge({ A: f64([1], 0, 8), B: f64([1], 16, 24) }, new Uint8Array(24)), /no gap \(begin = 8\) for tensor "B" but received data_offsets \[16,24\]/],
  ['a hole at the start', forge({ A: f64([1], 8, 16) }, new Uint8Array(16)), /no gap \(begin = 0\) for tensor "A"/],
  ['bytes left over after the last tensor', forge({ A: f64([1], 0, 8) }, new Uint8Array(16)), /tensors covering the whole 16-byte data buffer for the safetensors file but received tensors ending at byte 8/],
  ['metadata not an object', forge({ __metadata__: [1] }), /Expected an object of strings for __metadata__ but received Array of length 1/],
  ['metadata value not a string', forge({ __metadata__: { lr: 0.1 } }), /Expected string values for __metadata__\.lr but received 0\.1/],
  ['packed 4-bit dtype', forge({ W: { ...f64([2], 0, 1), dtype: 'F4' } }, new Uint8Array(1)), /whole bytes per element for the dtype of tensor "W" but received F4/],
  ['truncated data (half the file)', valid.subarray(0, valid.length - 20), /offsets within the \d+-byte data buffer .* \(the file is truncated or the header is wrong\)/],
  ['truncated inside the header', valid.subarray(0, 40), /header length within the 40-byte file/],
];

describe('hostile files are ERR_FILE errors that say what was expected and received', () => {
  it.each(HOSTILE)('%s', (_name, bytes, message) => {
    let caught: unknown;
    try {
      readSafetensors(bytes);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HandgradError);
    expect((caught as HandgradError).code).toBe('ERR_FILE');
    expect((caught as Error).message).toMatch(/^Expected /);
    expect((caught as Error).message).toMatch(message);
  });

  it('a file that is fine reads after all of the above (the process lives, nothing leaked)', () => {
    const { tensors } = readSafetensors(valid);
    expect(Array.from(tensors.W.data as Float64Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('loadSafetensors names the path', () => {
    const path = join(tmp, 'bad.safetensors');
    writeFileSync(path, forge({ W: f64([3], 0, 16) }, new Uint8Array(16)));
    expect(() => loadSafetensors(path)).toThrow(new RegExp(`for tensor "W" .*\\(${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
    expect(() => loadSafetensors(join(tmp, 'missing.safetensors'))).toThrow(/Expected a readable safetensors file for .*missing\.safetensors but received ENOENT/);
    expect(() => saveSafetensors(join(tmp, 'no', 'such', 'dir.safetensors'), {})).toThrow(HandgradError);
    expect(() => readSafetensors('not bytes' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('a tensor named "__proto__" is an own entry, and the prototype of the result is untouched', () => {
    // JSON.stringify drops a literal __proto__ key; write it into the header text by hand.
    const text = JSON.stringify({ ['__proto__x']: f64([1], 0, 8), polluted: f64([1], 8, 16) }).replace('__proto__x', '__proto__');
    const file = readSafetensors(forge(text, new Uint8Array(16)));
    expect(Object.keys(file.tensors).sort()).toEqual(['__proto__', 'polluted']);
    expect(Object.getPrototypeOf(file.tensors)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).dtype).toBeUndefined();
  });

  it('F16/BF16/U8 tensors are read as raw bytes, and asking for them as floats is a clear error', () => {
    const bytes = writeSafetensors({
      h: { dtype: 'F16', shape: [2], data: new Uint8Array([0, 0x3c, 0, 0x40]) },
      u: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
    });
    const file = readSafetensors(bytes);
    expect(file.tensors.h.dtype).toBe('F16');
    expect(file.tensors.h.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(file.tensors.u.data as Uint8Array)).toEqual([1, 2, 3]);
    expect(() => tensorOf(file, 'h', ['F64', 'F32'])).toThrow(/Expected dtype F64 or F32 for tensor "h" but received F16 \(half precision is not converted/);
    expect(() => tensorOf(file, 'X', ['F64'])).toThrow(/Expected a tensor named "X" for the safetensors file but received tensors "h", "u"/);
  });

  it('random corruption of a real file: every read either succeeds or is an ERR_FILE error', () => {
    const real = new Uint8Array(valid);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat(real.length), { nil: undefined }),
        (flips, cut) => {
          const b = real.slice(0, cut ?? real.length);
          for (const [i, v] of flips) if (i < b.length) b[i] = v;
          try {
            const f = readSafetensors(b);
            for (const t of Object.values(f.tensors)) expect(t.data.byteLength).toBeLessThanOrEqual(b.length);
          } catch (e) {
            expect(e).toBeInstanceOf(HandgradError);
            expect((e as HandgradError).code).toBe('ERR_FILE');
          }
        },
      ),
      { numRuns: 3000, seed: 7 },
    );
  });
});
