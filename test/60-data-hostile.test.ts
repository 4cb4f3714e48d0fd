// lib/data against input a reviewer built to break it: a headerless file whose first row holds a
// refused number, labels that are not UTF-8, a stream of strings split inside a surrogate pair,
// columns near the ends of the double range, shared memory, and white space other than ASCII.
// Truths are written by hand (messages, hex bytes, class names as string literals) or computed
// apart from lib/ in exact arithmetic (Python's fractions and decimal, quoted where used, or BigInt
// here). The allocations past the process's memory run dist/ in a child under `ulimit -v`:
// `npx tsc -p tsconfig.build.json` first.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HandgradError } from '../lib/errors';
import { blobs, fitStandardizer, loadDigits, loadIdx, loadMnist, readCsv, readCsvAsync, readIdx, spirals, trainValSplit, xor } from '../lib/data';
import { fileError } from './helpers';

const tmp = mkdtempSync(join(tmpdir(), 'handgrad-data60-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The error readCsvAsync rejects with (an ERR_FILE). */
async function asyncFileError(p: Promise<unknown>): Promise<HandgradError> {
  const e = await p.then(
    () => new Error('expected an ERR_FILE HandgradError, but the promise resolved'),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HandgradError);
  expect((e as HandgradError).code).toBe('ERR_FILE');
  return e as HandgradError;
}

describe("readCsv header: 'auto' and a first row that holds a refused number", () => {
  // The first row of a headerless file: data, refused on line 1 as the same cell is on line 2
  // (it was taken for a header: the row lost, numbers for feature names).
  const cases: [string, string][] = [
    ['1,,0\n3,4,1\n5,6,0\n', 'Expected a number for column 2 on line 1 but received "" (an empty cell)'],
    ['1e999,2,0\n3,4,1\n5,6,0\n', 'Expected a finite number for column 1 on line 1 but received "1e999"'],
    ['NaN,2,0\n3,4,1\n', 'Expected a number for column 1 on line 1 but received "NaN"'],
    ['1,-inf,0\n3,4,1\n', 'Expected a number for column 2 on line 1 but received "-inf"'],
    ['Infinity,2,0\n3,4,1\n', 'Expected a number for column 1 on line 1 but received "Infinity"'],
    ['" 1",2,0\n3,4,1\n', 'Expected a number for column 1 on line 1 but received " 1"'],
  ];

  it('is data, and refused on line 1 (readCsv and readCsvAsync alike); a row with a name is still a header', async () => {
    for (const [text, message] of cases) {
      expect(fileError(() => readCsv({ text })).message, text).toBe(message);
      expect((await asyncFileError(readCsvAsync({ text }))).message, text).toBe(message);
    }
    const d = readCsv({ text: 'x,,y\n1,2,0\n' });
    expect([d.header, d.featureNames, d.labelName, Array.from(d.X)]).toEqual([true, ['x', ''], 'y', [1, 2]]);
    const nan = readCsv({ text: 'NaN,width,y\n1,2,0\n' }); // one name is enough
    expect([nan.header, nan.featureNames]).toEqual([true, ['NaN', 'width']]);
    // The label rule is unchanged: a name over a numeric label.
    const byLabel = readCsv({ text: '1,,label\n3,4,0\n' });
    expect([byLabel.header, byLabel.featureNames, Array.from(byLabel.X)]).toEqual([true, ['1', ''], [3, 4]]);
  });
});

describe('labels and names that are not UTF-8', () => {
  const latin1 = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

  it('are an ERR_FILE naming the line, the column and the bytes (Latin-1 café and cafè were one class); UTF-8 reads as before', () => {
    const labels = latin1('a,b\n1,caf', [0xe9], '\n2,caf', [0xe8], '\n');
    const bytes = 'bytes 63 61 66 e9, not valid UTF-8'; // c a f é in Latin-1
    expect(fileError(() => readCsv(labels)).message).toBe(`Expected UTF-8 text (convert a Latin-1 or other file to UTF-8) for column 2 on line 2 but received ${bytes}`);
    const quoted = latin1('a,b\n1,x\n2,"caf', [0xe8], '"\n');
    expect(fileError(() => readCsv(quoted)).message).toMatch(/for column 2 on line 3 but received bytes 63 61 66 e8, not valid UTF-8$/);
    const name = latin1('caf', [0xe9], ',y\n1,0\n');
    expect(fileError(() => readCsv(name)).message).toMatch(/for column 1 on line 1 but received bytes 63 61 66 e9, not valid UTF-8$/);
    // UTF-8 itself reads as before, U+FFFD written in the file included.
    const d = readCsv(Buffer.from('a,b\n1,café\n2,cafè\n3,\ufffd\n', 'utf8'));
    expect(d.classNames).toEqual(['caf\u00e9', 'caf\u00e8', '\ufffd']);
    expect(Array.from(d.y)).toEqual([0, 1, 2]);
  });
});

describe('readCsvAsync over a stream of strings', () => {
  async function* chunks(parts: (string | Uint8Array)[]): AsyncGenerator<string | Uint8Array> {
    yield* parts;
  }

  it('reads a surrogate pair split between two chunks as the character (it was two U+FFFD), an unpaired one as readCsv does', async () => {
    const text = 'a,b\n1,\u{1F600}\n2,x\u{1F601}\n';
    for (let k = 0; k <= text.length; k++) {
      const d = await readCsvAsync(chunks([text.slice(0, k), text.slice(k)]));
      expect(d.classNames, `split at ${k}`).toEqual(['\u{1F600}', 'x\u{1F601}']);
    }
    // Each half a chunk of its own, and empty chunks between.
    const halves = await readCsvAsync(chunks(['a,b\n1,', '\ud83d', '', '\ude00', '\n']));
    expect(halves.classNames).toEqual(['\u{1F600}']);
    // An unpaired high surrogate is U+FFFD, as readCsv reads the same text.
    const lone = 'a,b\n1,x\ud83d';
    expect(readCsv({ text: lone }).classNames).toEqual(['x\ufffd']);
    expect((await readCsvAsync(chunks(['a,b\n1,x', '\ud83d']))).classNames).toEqual(['x\ufffd']);
    expect((await readCsvAsync(chunks(['a,b\n1,x\ud83d', Buffer.from('\n2,y\n')]))).classNames).toEqual(['x\ufffd', 'y']);
  });
});

describe('fitStandardizer near the ends of the double range', () => {
  /** Within 4 ulps of the truth (0 exactly when it is 0). */
  const near = (got: number, want: number, what: string) => expect(Math.abs(got - want), `${what}: ${got} against ${want}`).toBeLessThanOrEqual(4 * Number.EPSILON * Math.abs(want));
  const M = 1.7976931348623157e308; // the largest double

  // Truths: mean and population std of the doubles in exact arithmetic, rounded once —
  //   m = sum(map(Fraction, xs)) / n; var = sum((Fraction(x) - m)**2 for x in xs) / n
  //   float(m), float(Decimal(var.numerator) / Decimal(var.denominator)).sqrt())  (60 digits)
  const cases: [number[], number, number][] = [
    [[1e308, 1.5e308, 1e308, 1.7e308], 1.3e308, 3.082207001484488e307], // the sum overflowed: mean NaN
    [[1e308, -1e308, 1e308, -1e308], 0, 1e308], // the squares overflowed: std Infinity
    [[0, 1e-200, 0, 1e-200], 5e-201, 5e-201], // the squares underflowed: std 1
    [[M, -M, M, M], 8.988465674311579e307, 1.5568479229996504e308],
    [[2e-308, 5e-309, 1.5e-308, 5e-324], 1e-308, 7.905694150420945e-309], // subnormals
  ];

  it('mean and std are the exact ones, rounded', () => {
    for (const [xs, mean, std] of cases) {
      const s = fitStandardizer(Float64Array.from(xs), 1);
      near(s.mean[0], mean, `mean of ${xs}`);
      near(s.std[0], std, `std of ${xs}`);
    }
  });

  it('apply gives (x − mean) / std where x − mean passes the largest double', () => {
    // Python: [float((Fraction(x) - Fraction(m)) / Fraction(s)) for x in xs], m and s as above.
    const z = fitStandardizer(Float64Array.from([M, -M, M, M]), 1).apply(Float64Array.from([M, -M]));
    near(z[0], 0.5773502691896257, 'z of M');
    near(z[1], -1.7320508075688772, 'z of −M');
    const big = fitStandardizer(Float64Array.from([1e308, 1.5e308, 1e308, 1.7e308]), 1).apply(Float64Array.from([1e308, 1.5e308, 1.7e308]));
    [-0.9733285267845756, 0.64888568452305, 1.2977713690461].forEach((want, i) => near(big[i], want, `z[${i}]`));
  });

  it('a constant column keeps std 1; a std that rounds to 0, or whose reciprocal overflows, is a RangeError naming the column', () => {
    for (const c of [1e308, -M, 5e-324]) {
      const s = fitStandardizer(Float64Array.from([c, c, c]), 1);
      expect([s.mean[0], s.std[0]]).toEqual([c, 1]);
    }
    // Seven 0s and one 5e-324 (2^-1074): std = 2^-1074·√7/8 ≈ 0.33·2^-1074, below half the smallest double.
    const X = new Float64Array(16); // D = 2: column 0 ordinary, column 1 the tiny one
    for (let i = 0; i < 8; i++) X[2 * i] = i;
    X[15] = 5e-324;
    expect(() => fitStandardizer(X, 2)).toThrow(
      new RangeError('Expected a standard deviation a double can hold for column 1 of X but received values from 0 to 5e-324, whose standard deviation rounds to 0'),
    );
    // A std below 2^-1024 (about 5.6e-309) is a double, but 1 / std is +Infinity: apply gave
    // [Infinity] for [1], and saveModel refused the std the fit had returned. Python:
    // float(sqrt(var)) for [0, 2e-310] is 1e-310; for [3e-310, 1e-310, 2e-310, 5e-324] 1.1180339887499e-310.
    const wide = '(≥ 5.6e-309, as a model file requires)';
    expect(() => fitStandardizer(Float64Array.from([0, 2e-310]), 1)).toThrow(
      new RangeError(`Expected a standard deviation whose reciprocal is finite ${wide} for column 0 of X but received values from 0 to 2e-310, whose standard deviation is 1e-310`),
    );
    expect(() => fitStandardizer(Float64Array.from([1, 3e-310, 2, 1e-310, 3, 2e-310, 4, 5e-324]), 2)).toThrow(
      new RangeError(`Expected a standard deviation whose reciprocal is finite ${wide} for column 1 of X but received values from 5e-324 to 3e-310, whose standard deviation is 1.1180339887499e-310`),
    );
    // Just above the bound, 1 / std is finite and the column is kept: [0, 1.2e-308] has std 6e-309.
    expect(fitStandardizer(Float64Array.from([0, 1.2e-308]), 1).std[0]).toBe(6e-309);
  });
});

describe('fitStandardizer against exact rational arithmetic', () => {
  // The truth: every double is N·2^-1074 for an integer N (its bits, read here with a DataView),
  // so the column's sum S = ΣN is exact in BigInt, the mean is S / (n·2^1074) and the variance is
  // V / (n³·2^2148) with V = Σ(n·N − S)². A result g is within k ulps when |g·n − mean·n| ≤ k·ulp·n
  // and (g − k·ulp)² ≤ std² ≤ (g + k·ulp)², compared as integers: no rounding anywhere.
  const view = new DataView(new ArrayBuffer(8));
  function units(x: number): bigint {
    view.setFloat64(0, x);
    const [hi, lo] = [view.getUint32(0), view.getUint32(4)];
    const e = (hi >>> 20) & 0x7ff;
    const m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
    const N = e === 0 ? m : (m | (1n << 52n)) << BigInt(e - 1);
    return hi >>> 31 ? -N : N;
  }
  /** An ulp of |x| in units of 2^-1074: the spacing of the doubles at x (2^-1074 below 2^-1022). */
  function ulp(x: number): bigint {
    view.setFloat64(0, Math.abs(x));
    const e = (view.getUint32(0) >>> 20) & 0x7ff;
    return 1n << BigInt(Math.max(e, 1) - 1);
  }
  /** The least k in eighths of an ulp of g with |g − exact| ≤ k ulps, for the mean or the std of col. */
  function ulpsOff(col: number[], g: number, of: 'mean' | 'std'): number {
    const n = BigInt(col.length);
    const N = col.map(units);
    const S = N.reduce((a, b) => a + b, 0n);
    const V = N.reduce((a, x) => a + (n * x - S) ** 2n, 0n);
    const [G, U] = [units(g), ulp(g)];
    const within = (k: bigint): boolean => {
      if (of === 'mean') return (8n * G * n - 8n * S) ** 2n <= (k * U * n) ** 2n;
      const [lo, hi] = [8n * G - k * U, 8n * G + k * U];
      return (lo < 0n || lo * lo * n ** 3n <= 64n * V) && 64n * V <= hi * hi * n ** 3n;
    };
    let k = 0n;
    while (!within(k)) k++;
    return Number(k) / 8;
  }

  // A seeded draw apart from lib/rng: a 31-bit LCG.
  let seed = 7;
  const r = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const columns: [string, number, (i: number, n: number) => number][] = [
    ['one 1000 among zeros (the mean was 651 ulps off)', 5000, (i) => (i === 0 ? 1000 : 0)],
    ['one 1e6 among 0.5s (the std was 4,555 ulps off)', 20000, (i) => (i === 0 ? 1e6 : 0.5)],
    ['the outlier last', 20000, (i, n) => (i === n - 1 ? 1e6 : 0.5)],
    ['one 1e200 among values in [0, 1)', 3000, (i) => (i === 0 ? 1e200 : r())],
    ['one 1e-200 among zeros', 5000, (i) => (i === 0 ? 1e-200 : 0)],
    ['a huge offset, a tiny spread: 1e9 + k·1e-7', 5000, (i) => 1e9 + (i % 7) * 1e-7],
    ['123456789.123 + [0, 1e-6)', 5000, () => 123456789.123 + r() * 1e-6],
    ['one value an ulp above 1 among 1s', 5000, (i) => (i === 3 ? 1 + 2 ** -52 : 1)],
    ['1e300 and its next three doubles', 3001, (i) => 1e300 * (1 + (i % 4) * 2 ** -52)],
    ['subnormals', 3000, () => r() * 2.2e-308],
    ['subnormals and a few normals', 3000, (i) => (i % 97 ? r() * 2.2e-308 : r() * 1e-300)],
    ['mixed signs: 1e300, −1e300, 1, 3e299', 4001, (i) => [1e300, -1e300, 1, 3e299][i % 4]],
    ['±1e20 cancelling, values in [0, 1) between them', 20001, (i) => (i % 3 === 0 ? 1e20 : i % 3 === 1 ? -1e20 : r())],
    ['−1e16 and 1e16 + 2', 5000, (i) => (i % 2 ? 1e16 + 2 : -1e16)],
    ['signs and magnitudes from 1e-20 to 1e20', 5000, () => (r() - 0.5) * 10 ** (r() * 40 - 20)],
    ['log-uniform over 60 e-folds', 20000, () => Math.exp(r() * 60 - 30)],
    ['across the double range', 3000, () => (r() - 0.5) * 1.7e308],
  ];

  it('mean within 1 ulp and std within 2 ulps of the exact values, over adversarial columns', () => {
    for (const [name, n, g] of columns) {
      const col = Array.from({ length: n }, (_, i) => g(i, n));
      const s = fitStandardizer(Float64Array.from(col), 1);
      expect(ulpsOff(col, s.mean[0], 'mean'), `mean of ${name}: ${s.mean[0]}`).toBeLessThanOrEqual(1);
      expect(ulpsOff(col, s.std[0], 'std'), `std of ${name}: ${s.std[0]}`).toBeLessThanOrEqual(2);
    }
  });

  it('the columns of one X are fitted apart, from a Float32Array too', () => {
    const n = 4000;
    const cols = [(i: number) => (i === 0 ? 1e6 : 0.5), () => Math.fround(1e5 + r()), (i: number) => (i % 2 ? 3e38 : -3e38 + i)];
    const X = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) cols.forEach((g, j) => (X[i * 3 + j] = g(i)));
    const s = fitStandardizer(X, 3);
    for (let j = 0; j < 3; j++) {
      const col = Array.from({ length: n }, (_, i) => X[i * 3 + j]);
      expect(ulpsOff(col, s.mean[j], 'mean'), `mean of column ${j}`).toBeLessThanOrEqual(1);
      expect(ulpsOff(col, s.std[j], 'std'), `std of column ${j}`).toBeLessThanOrEqual(2);
    }
  });
});

describe("fitStandardizer's apply: a result that is not finite in X's dtype", () => {
  it('is a RangeError naming the row and column, never ±Infinity or NaN in the output', () => {
    // [0, 1e-30]: mean and std 5e-31; 1e10 standardizes to 2e40, past the largest float32
    // (3.4028234663852886e38), so the Float32Array came back holding Infinity.
    const z = fitStandardizer(Float64Array.from([0, 1e-30]), 1);
    const how = '((x − mean) / std, mean 5e-31, std 5e-31)';
    expect(() => z.apply(Float32Array.from([0, 1, 1e10]))).toThrow(
      new RangeError(`Expected a value whose standardized value is a finite float32 for X[2] (row 2, column 0) but received 10000000000, which standardizes to 1.9999999999999998e+40, past the largest float32 ${how}`),
    );
    expect(Array.from(z.apply(Float64Array.from([1e10])))).toEqual([(1e10 - 5e-31) / 5e-31]); // a double holds it
    // Past the largest double, and a NaN or an infinity in X, on row 1, column 1 of [n,2].
    const w = fitStandardizer(Float64Array.from([0, 0, 1, 1e-10]), 2); // column 1: mean and std 5e-11
    const at = 'for X[3] (row 1, column 1) but received';
    const tail = '((x − mean) / std, mean 5e-11, std 5e-11)';
    expect(() => w.apply(Float64Array.from([0, 0, 0, 1e300]))).toThrow(new RangeError(`Expected a value whose standardized value is a finite float64 ${at} 1e+300, which standardizes to Infinity ${tail}`));
    expect(() => w.apply(Float64Array.from([0, 0, 0, NaN]))).toThrow(new RangeError(`Expected a value whose standardized value is a finite float64 ${at} NaN, which standardizes to NaN ${tail}`));
    expect(() => w.apply(Float64Array.from([0, 0, 0, -Infinity]))).toThrow(/for X\[3\] \(row 1, column 1\) but received -Infinity, which standardizes to -Infinity/);
  });
});

describe('an option given as null', () => {
  // undefined alone means "the default". header, delimiter (readCsv), sliceMs (readCsvAsync) and
  // fraction (trainValSplit) took null for it (`?? default`) where every other option refused it:
  // delimiter: null read a ';' file as one column, and said so.
  const text = { text: 'a;b;l\n1;2;x\n3;4;y\n' };
  const X = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const y = Int32Array.from([0, 1, 0, 1]);
  const idx = join(tmp, 'null.idx');
  writeFileSync(idx, Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 7]));
  const calls: [string, string[], (o: Record<string, null>) => unknown][] = [
    ['readCsv', ['label', 'header', 'delimiter', 'maxBytes', 'maxColumns', 'maxClasses', 'classes'], (o) => readCsv(text, o)],
    ['xor', ['n', 'noise', 'seed'], (o) => xor(o)],
    ['spirals', ['n', 'classes', 'noise', 'turns', 'seed'], (o) => spirals(o)],
    ['blobs', ['n', 'classes', 'dim', 'spread', 'box', 'seed'], (o) => blobs(o)],
    ['trainValSplit', ['fraction', 'seed'], (o) => trainValSplit(X, y, 2, o)],
    ['loadDigits', ['dtype'], (o) => loadDigits(o)],
    ['loadMnist', ['dir', 'dtype', 'maxBytes'], (o) => loadMnist(o)],
    ['loadIdx', ['maxBytes'], (o) => loadIdx(idx, o)],
    ['readIdx', ['maxBytes', 'source'], (o) => readIdx(Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 7]), o)],
  ];

  it('is a TypeError naming the option, for every option of every data function', async () => {
    for (const [name, keys, call] of calls) {
      for (const key of keys) {
        expect(() => call({ [key]: null }), `${name} ${key}: null`).toThrow(TypeError);
        expect(() => call({ [key]: null }), `${name} ${key}: null`).toThrow(new RegExp(` for opts\.${key} but received null$`));
      }
    }
    for (const key of ['label', 'header', 'delimiter', 'maxBytes', 'maxColumns', 'maxClasses', 'classes', 'onProgress', 'signal', 'sliceMs']) {
      await expect(readCsvAsync(text, { [key]: null }), `readCsvAsync ${key}: null`).rejects.toThrow(new RegExp(` for opts\.${key} but received null$`));
    }
    expect(() => readCsv(text, { delimiter: null } as never)).toThrow(new TypeError('Expected a one-character string for opts.delimiter but received null'));
    expect(() => trainValSplit(X, y, 2, { fraction: null } as never)).toThrow(new TypeError('Expected a number for opts.fraction but received null'));
    expect(readCsv(text, { delimiter: ';' }).D).toBe(2); // the file as meant
  });
});

describe('minor sources and white space', () => {
  const SMALL = 'x,y,medal\n0.5,1,gold\n2,-3.25,bronze\n';

  it('a SharedArrayBuffer, or a view on one, is read as an ArrayBuffer is', async () => {
    const sab = new SharedArrayBuffer(SMALL.length);
    new Uint8Array(sab).set(Buffer.from(SMALL));
    for (const source of [sab, new Uint8Array(sab)]) {
      const d = readCsv(source);
      expect([Array.from(d.X), d.classNames]).toEqual([[0.5, 1, 2, -3.25], ['gold', 'bronze']]);
      const a = await readCsvAsync(source);
      expect([Array.from(a.X), a.classNames]).toEqual([[0.5, 1, 2, -3.25], ['gold', 'bronze']]);
    }
  });

  it('readIdx refuses an opts.source that is not a string; loadIdx a .gz path that is not gzip', () => {
    const idx = Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 7]); // uint8, shape [1], data [7]
    expect(() => readIdx(idx, { source: 42 } as never)).toThrow(new TypeError('Expected a string (the name to give in messages) for opts.source but received 42'));
    const path = join(tmp, 'plain.idx.gz');
    writeFileSync(path, idx);
    expect(fileError(() => loadIdx(path)).message).toBe(`Expected gzip data (the path ends in .gz) for ${path} but received bytes starting 00 00`);
  });

  it('only ASCII spaces and tabs are trimmed: other white space in a number is refused, in a label kept', () => {
    for (const [cell, shown] of [['1\u00a0', '"1\u00a0"'], ['\u000b2', '"\\u000b2"'], ['\ufeff3', '"\ufeff3"'], ['4\u2003', '"4\u2003"']]) {
      const message = `Expected a number for column "a" (column 1) on line 2 but received ${shown}`;
      expect(fileError(() => readCsv({ text: `a,b\n${cell},0\n` })).message).toBe(message);
    }
    const d = readCsv({ text: 'a,b\n \t1 ,cat\n2,cat\u00a0\n3,\tcat \n' });
    expect(Array.from(d.X)).toEqual([1, 2, 3]);
    expect(d.classNames).toEqual(['cat', 'cat\u00a0']);
    expect(Array.from(d.y)).toEqual([0, 1, 0]);
  });
});

// A request for more memory than the process may have, sized by an option or an argument: V8's
// bare "Array buffer allocation failed" named nothing (blobs' centers [classes, dim] were allocated
// with new Float64Array where X used the worded helper). Run in a child under `ulimit -v` (4 GB of
// address space: Node starts, these cannot be had), so the refusal is certain and this machine's
// memory untouched.
describe.skipIf(process.platform !== 'linux')('an allocation the process cannot make is a RangeError naming the array', () => {
  const DIST = join(__dirname, '..', 'dist', 'lib', 'index.js');
  const cases = [
    ['blobs({ n: 1, classes: 2 ** 20, dim: 4095 })', 'centers (opts.classes·opts.dim)'],
    ['fitStandardizer(new Float64Array(2 ** 28), 2 ** 28)', 'the column minima (D)'],
    ['fitStandardizer(Float64Array.from([0, 1]), 1).apply(new Float64Array(2 ** 28))', 'the standardized X'],
  ] as const;
  it.each(cases)('%s', (call, name) => {
    const script = `const { blobs, fitStandardizer } = require(${JSON.stringify(DIST)}); try { ${call}; console.log('ok'); } catch (e) { console.log(e.constructor.name + ': ' + e.message); }`;
    const r = spawnSync('bash', ['-c', `ulimit -v 4000000 && exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout.trim()).toMatch(new RegExp(`^RangeError: Expected a size this process can allocate for ${name.replace(/[()·]/g, '\\$&')} but received \\d+ elements \\(\\d+\\.\\d GiB\\)`));
  });
});
