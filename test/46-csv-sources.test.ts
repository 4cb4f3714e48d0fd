// readCsv's sources (a path, bytes, { text }; a bare string is a path, always), opts.classes, and
// readCsvAsync: the same data to the bit, without blocking the event loop, with progress.
// Truths are independent of the parser: values written into the file by the test (String(x) of a
// double reads back as x, ECMA-262 Number::toString), class ids from the class list by indexOf,
// Number() for every numeral, and perf_hooks' event-loop delay histogram.
import fs, { appendFileSync, createReadStream, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { type CsvDataset, type CsvProgress, readCsv, readCsvAsync } from '../lib/data';
import { HandgradError } from '../lib/errors';
import { fileError } from './helpers';

const tmp = mkdtempSync(join(tmpdir(), 'handgrad-csv46-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));


/** The bits of X and everything else, for a to-the-bit comparison. */
function same(got: CsvDataset, want: CsvDataset): void {
  expect(Buffer.from(got.X.buffer, got.X.byteOffset, got.X.byteLength).equals(Buffer.from(want.X.buffer, want.X.byteOffset, want.X.byteLength))).toBe(true);
  expect(Array.from(got.y)).toEqual(Array.from(want.y));
  expect({ ...got, X: null, y: null }).toEqual({ ...want, X: null, y: null });
}

// A small file whose data the test knows.
const SMALL = 'x,y,medal\n0.5,1,gold\n2,-3.25,bronze\n1e2,4,silver\n';
const SMALL_X = [0.5, 1, 2, -3.25, 100, 4];

describe('readCsv sources', () => {
  const plain = join(tmp, 'small.csv');
  const gz = join(tmp, 'small.csv.gz');
  writeFileSync(plain, SMALL);
  writeFileSync(gz, gzipSync(SMALL));

  it('a path, a .gz path, a Buffer, a Uint8Array view, an ArrayBuffer, gzip bytes and { text } read the same data', () => {
    const bytes = Buffer.from(`junk${SMALL}junk`);
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset + 4, SMALL.length);
    const arrayBuffer = new TextEncoder().encode(SMALL).buffer; // as fetch's response.arrayBuffer() gives
    for (const source of [plain, gz, Buffer.from(SMALL), view, arrayBuffer, gzipSync(SMALL), { text: SMALL }]) {
      const d = readCsv(source);
      expect(Array.from(d.X)).toEqual(SMALL_X);
      expect(Array.from(d.y)).toEqual([0, 1, 2]);
      expect(d.classNames).toEqual(['gold', 'bronze', 'silver']);
      expect(d.featureNames).toEqual(['x', 'y']);
    }
  });

  it('a bare string is a path, always: with a line break it is refused (pass { text }), without one it opens a file', () => {
    const e = (() => {
      try {
        readCsv(SMALL);
      } catch (err) {
        return err as Error;
      }
      throw new Error('readCsv took a string with a line break');
    })();
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/^Expected a file path \(a string is always a path: pass \{ text \} for CSV text, or its bytes\) for source but received a string with a line break, "x,y,medal\\n0.5/);
    // One line of CSV as a string is a path that does not exist, never data.
    expect(fileError(() => readCsv('1,2,gold')).message).toMatch(/^Expected a readable CSV file for 1,2,gold but received ENOENT/);
    // …and a path it is, even in the working directory.
    const cwd = process.cwd();
    try {
      process.chdir(tmp);
      writeFileSync(join(tmp, '1,2,gold'), SMALL);
      expect(Array.from(readCsv('1,2,gold').X)).toEqual(SMALL_X);
    } finally {
      process.chdir(cwd);
    }
  });

  it('{ text } is checked like every option object; other sources are TypeErrors', () => {
    expect(() => readCsv({ text: 42 } as never)).toThrow(new TypeError('Expected a string of CSV text for source.text but received 42'));
    expect(() => readCsv({ txt: SMALL } as never)).toThrow(/^Expected no option 'txt' for source \(did you mean 'text'\?\)/);
    expect(() => readCsv(Readable.from([SMALL]) as never)).toThrow(/^Expected .* \(a stream is read by readCsvAsync\) for source but received Readable$/);
    for (const bad of [null, 42, [SMALL], new Float64Array(2)]) {
      expect(() => readCsv(bad as never)).toThrow(TypeError);
    }
    expect(() => readCsv({ text: SMALL }, { onProgress: () => {} } as never)).toThrow(/^Expected no option 'onProgress' for opts/);
  });
});

describe('opts.classes', () => {
  const classes = ['bronze', 'silver', 'gold'];
  const orders = [['gold', 'bronze', 'silver'], ['silver', 'bronze', 'gold'], ['gold', 'gold', 'bronze']];
  const file = (labels: string[]) => ({ text: `a,b,medal\n${labels.map((l, i) => `${i},${-i},${l}`).join('\n')}\n` });

  it('numbers the labels by the list, whatever order the file holds them in', () => {
    for (const labels of orders) {
      const d = readCsv(file(labels), { classes });
      expect(Array.from(d.y)).toEqual(labels.map((l) => classes.indexOf(l)));
      expect(d.C).toBe(3); // also when a class is absent from this file
      expect(d.classNames).toEqual(classes);
    }
    // Without the list: order of first appearance, so these two files disagree (what the list fixes).
    expect(Array.from(readCsv(file(orders[0])).y)).toEqual([0, 1, 2]);
    expect(Array.from(readCsv(file(orders[1])).y)).toEqual([0, 1, 2]);
  });

  it('labels that look like integers are names under a list', () => {
    const d = readCsv({ text: '1.5,2\n2.5,0\n3.5,1\n' }, { classes: ['2', '1', '0'] });
    expect(Array.from(d.y)).toEqual([0, 2, 1]);
    expect(d.classNames).toEqual(['2', '1', '0']);
  });

  it('a label not in the list is an ERR_FILE naming its line', () => {
    const text = 'a,b,medal\n1,2,gold\n3,4,silver\n\n5,6,platinum\n';
    expect(fileError(() => readCsv({ text }, { classes })).message).toBe(
      'Expected one of the 3 classes in opts.classes ("bronze", "silver", "gold") for column "medal" (column 3) on line 5 but received "platinum"',
    );
  });

  it('the list is checked: an array of distinct non-empty strings, at most maxClasses', () => {
    const t = file(orders[0]);
    expect(() => readCsv(t, { classes: 'gold' as never })).toThrow(new TypeError('Expected an array of class names for opts.classes but received "gold"'));
    expect(() => readCsv(t, { classes: [] })).toThrow(RangeError);
    expect(() => readCsv(t, { classes: ['gold', 1] as never })).toThrow(/^Expected a class name \(a string, as the label cells are written\) for opts.classes\[1\] but received 1/);
    expect(() => readCsv(t, { classes: ['gold', ''] })).toThrow(RangeError);
    expect(() => readCsv(t, { classes: ['gold', 'silver', 'gold'] })).toThrow(new RangeError('Expected a name not already at opts.classes[0] for opts.classes[2] but received "gold"'));
    expect(() => readCsv(t, { classes, maxClasses: 2 })).toThrow(RangeError);
  });
});

/** A ~12.7 MB CSV of 20 features (String(x) of doubles: 15-17 digits) and a class name, with its known X and labels. */
function bigCsv(targetBytes = 12.7e6): { text: string; X: Float64Array; labels: string[] } {
  let s = 0x9e3779b9;
  const rnd = () => (s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32;
  const names = ['gold', 'silver', 'bronze'];
  const parts = [Array.from({ length: 20 }, (_, j) => `f${j}`).join(',') + ',medal\n'];
  const xs: number[] = [];
  const labels: string[] = [];
  let bytes = parts[0].length;
  while (bytes < targetBytes) {
    const row: number[] = [];
    for (let j = 0; j < 20; j++) row.push(j % 2 ? (rnd() - 0.5) * 200 : Math.round((rnd() - 0.5) * 2e6) / 1e4);
    const label = names[Math.floor(rnd() * 3)];
    const line = `${row.map(String).join(',')},${label}\n`;
    parts.push(line);
    xs.push(...row);
    labels.push(label);
    bytes += line.length;
  }
  return { text: parts.join(''), X: Float64Array.from(xs), labels };
}

describe('readCsvAsync', () => {
  const big = bigCsv();
  const bigPath = join(tmp, 'big.csv');
  writeFileSync(bigPath, big.text);
  const bigGz = join(tmp, 'big.csv.gz');
  writeFileSync(bigGz, gzipSync(big.text, { level: 1 }));
  const classes = ['bronze', 'silver', 'gold'];
  const want = readCsv(bigPath, { classes });

  it('readCsv reads the 12.7 MB file as written (every double to the bit, labels by the list)', () => {
    expect(big.text.length).toBeGreaterThan(12.7e6);
    expect(Buffer.from(want.X.buffer).equals(Buffer.from(big.X.buffer))).toBe(true);
    expect(Array.from(want.y)).toEqual(big.labels.map((l) => classes.indexOf(l)));
  });

  it('gives readCsv\'s result to the bit from a path, a .gz path, bytes, { text } and streams', async () => {
    const sources = [
      bigPath,
      bigGz,
      Buffer.from(big.text),
      { text: big.text },
      createReadStream(bigPath, { highWaterMark: 64 * 1024 }),
      Readable.from([big.text.slice(0, 1000), Buffer.from(big.text.slice(1000))]),
    ];
    for (const source of sources) same(await readCsvAsync(source, { classes }), want);
    // Small files and their errors too.
    same(await readCsvAsync({ text: SMALL }), readCsv({ text: SMALL }));
    await expect(readCsvAsync({ text: 'a,b\n1,2\n3\n' })).rejects.toThrow('Expected 2 cells (as on line 1) for line 3 but received 1');
    await expect(readCsvAsync(SMALL)).rejects.toThrow(/^Expected a file path .* pass \{ text \}/);
  });

  it('keeps the event loop free: p99 delay under 50 ms while parsing 12.7 MB (readCsv blocks it for the whole parse)', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // The histogram records a delay when the late timer finally fires: the sleeps around the read
    // let a read that blocks the loop throughout be recorded, not missed.
    const delay = async (read: () => Promise<unknown>) => {
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      await sleep(5);
      await read();
      await sleep(5);
      h.disable();
      return { p99: h.percentile(99) / 1e6, max: h.max / 1e6, count: h.count };
    };
    // The control: the same measurement sees readCsv's block (one parse, 100-400 ms here), so a
    // reader that blocked would fail below.
    let syncMs = 0;
    const blocked = await delay(async () => {
      const t0 = performance.now();
      readCsv(bigPath, { classes });
      syncMs = performance.now() - t0;
    });
    expect(blocked.p99).toBeGreaterThan(0.8 * syncMs);
    const free = await delay(() => readCsvAsync(bigPath, { classes }));
    console.log(`event-loop delay while parsing ${(big.text.length / 1e6).toFixed(1)} MB: readCsvAsync p99 ${free.p99.toFixed(1)} ms, max ${free.max.toFixed(1)} ms (${free.count} samples); readCsv p99 ${blocked.p99.toFixed(1)} ms (its parse took ${syncMs.toFixed(0)} ms)`);
    expect(free.p99).toBeLessThan(50);
  });

  it('reports progress: bytes and rows only grow, the last event is the whole input', async () => {
    const events: CsvProgress[] = [];
    const d = await readCsvAsync(bigGz, { onProgress: (p) => events.push(p) });
    expect(events.length).toBeGreaterThan(3);
    for (let i = 1; i < events.length; i++) {
      expect(events[i].bytes).toBeGreaterThanOrEqual(events[i - 1].bytes);
      expect(events[i].rows).toBeGreaterThanOrEqual(events[i - 1].rows);
    }
    expect(events.every((p) => p.totalBytes === Buffer.byteLength(big.text))).toBe(true); // the inflated size
    expect(events.at(-1)).toEqual({ bytes: Buffer.byteLength(big.text), totalBytes: Buffer.byteLength(big.text), rows: big.labels.length });
    expect(d.y.length).toBe(big.labels.length);
  });

  it('an abort signal stops the parse; a stream past maxBytes is refused; options are checked', async () => {
    const ac = new AbortController();
    let calls = 0;
    const stopped = readCsvAsync(bigPath, { signal: ac.signal, onProgress: () => ++calls === 2 && ac.abort() });
    await expect(stopped).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(2);
    await expect(readCsvAsync(bigPath, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    // A stream stalled between chunks (a client that stops sending) is left at the abort, and destroyed.
    const stalled = new Readable({ read() {} });
    stalled.push('a,b,c\n1,2,');
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 30);
    const t0 = performance.now();
    await expect(readCsvAsync(stalled, { signal: ac2.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(performance.now() - t0).toBeLessThan(2000);
    await new Promise((r) => setImmediate(r));
    expect(stalled.destroyed).toBe(true);
    await expect(readCsvAsync(Readable.from([Buffer.alloc(600, 0x31), Buffer.alloc(600, 0x31)]), { maxBytes: 1000 })).rejects.toThrow(
      'Expected at most 1000 bytes (opts.maxBytes) for the CSV stream but received more',
    );
    await expect(readCsvAsync({ text: SMALL }, { onProgress: 1 as never })).rejects.toThrow(new TypeError('Expected a function for opts.onProgress but received 1'));
    await expect(readCsvAsync({ text: SMALL }, { signal: {} as never })).rejects.toThrow(TypeError);
    await expect(readCsvAsync({ text: SMALL }, { sliceMs: 0 })).rejects.toThrow(RangeError);
    await expect(readCsvAsync({ text: SMALL }, { onProgres: () => {} } as never)).rejects.toThrow(/did you mean 'onProgress'/);
  });
});

describe('numerals of 16 and 17 digits (the fast path now takes digits below 2^53)', () => {
  it('are the doubles Number() gives, to the bit, around 2^53 and for random doubles', () => {
    const cells = [
      '9007199254740991', '9007199254740992', '9007199254740993', '9007199254740994', '9007199254740995',
      '900719925474099.1', '900719925474099.3', '0.9007199254740993', '-9007199254740993e-5', '1234567890123456e22',
      '1234567890123456e-22', '9999999999999999', '99999999999999999', '0.30000000000000004', '4.35', '0000000000000000000001.5',
    ];
    let s = 12345;
    const rnd = () => (s = (Math.imul(s ^ (s >>> 13), 0x5bd1e995) + 0x3c6ef35f) >>> 0) / 2 ** 32;
    for (let i = 0; i < 20000; i++) {
      const x = (rnd() - 0.5) * 10 ** Math.floor(rnd() * 12 - 4);
      cells.push(String(x), x.toPrecision(16), x.toPrecision(17));
    }
    const d = readCsv({ text: cells.map((c, i) => `${c},${i % 2}`).join('\n') });
    const want = Float64Array.from(cells, Number);
    const bad = cells.filter((c, i) => !Object.is(d.X[i], want[i]));
    expect(bad).toEqual([]);
  });
});

describe('a file another writer changes between the check and the read', () => {
  // The writer acts right after the reader's fstat of its open descriptor (fs.fstatSync for readCsv,
  // FileHandle.prototype.stat for readCsvAsync, wrapped for the one call), the one moment the size
  // checked and the bytes read can disagree. readCsvAsync read whatever was there then: cut in a
  // label, it gave 502 of 1000 rows and a class "al" that no row of the file ever held.
  const path = join(tmp, 'changing.csv');
  const TEXT = 'a,b,label\n' + Array.from({ length: 1000 }, (_, i) => `${i % 10},${i % 7},${i % 2 ? 'alpha' : 'bravo'}\n`).join('');
  const CUT = TEXT.indexOf('alpha', TEXT.length >> 1) + 2; // the file then ends "…,al"
  const shrink = () => truncateSync(path, CUT);
  const grow = () => appendFileSync(path, '1,2,charlie\n');

  /** Runs read with `change` done once, right after the next fstat of an open file (sync or async). */
  async function withChange<T>(change: () => void, read: () => T | Promise<T>): Promise<T> {
    writeFileSync(path, TEXT);
    const handle = await open(path, 'r');
    const proto = Object.getPrototypeOf(handle) as { stat: (...a: unknown[]) => Promise<unknown> };
    await handle.close();
    const [stat, fstatSync] = [proto.stat, fs.fstatSync];
    let pending = true;
    const once = () => pending && ((pending = false), change());
    proto.stat = async function (this: unknown, ...a: unknown[]) {
      const st = await stat.apply(this, a);
      once();
      return st;
    };
    fs.fstatSync = ((...a: Parameters<typeof fstatSync>) => {
      const st = fstatSync(...a);
      once();
      return st;
    }) as typeof fstatSync;
    syncBuiltinESMExports();
    try {
      return await read();
    } finally {
      proto.stat = stat;
      fs.fstatSync = fstatSync;
      syncBuiltinESMExports();
      expect(pending, 'the change was made').toBe(false);
    }
  }

  const shrank = `Expected the ${TEXT.length} bytes its size said (the CSV file) for ${path} but received ${CUT} (the file shrank while read)`;
  const grew = `Expected the ${TEXT.length} bytes its size said (the CSV file) for ${path} but received more (the file grew while read)`;

  it('untouched, both read the 1000 rows', async () => {
    writeFileSync(path, TEXT);
    for (const d of [readCsv(path), await readCsvAsync(path)]) {
      expect(d.y.length).toBe(1000);
      expect(d.classNames).toEqual(['bravo', 'alpha']);
    }
  });

  it('cut short: readCsv and readCsvAsync both refuse it, never a shorter file with a made-up label', async () => {
    expect(await withChange(shrink, () => fileError(() => readCsv(path)).message)).toBe(shrank);
    await expect(withChange(shrink, () => readCsvAsync(path))).rejects.toThrow(new HandgradError('ERR_FILE', shrank));
  });

  it('lengthened: both refuse it, never the first bytes of another file', async () => {
    expect(await withChange(grow, () => fileError(() => readCsv(path)).message)).toBe(grew);
    await expect(withChange(grow, () => readCsvAsync(path))).rejects.toThrow(new HandgradError('ERR_FILE', grew));
  });
});
