// Hostile files cost what their size says (issue 12): every attack runs in a child process with a
// 256 MB JavaScript heap and a few GB of address space (ulimit -v, so that an allocation sized by
// a count the file declares fails there, as it would on a smaller machine, instead of being
// reserved lazily and unseen), and must end in a clean ERR_FILE (or a correct result) within a
// bound on time and peak memory: never a crash, never an abort, never the minutes and gigabytes
// the file claims. The children run the built package (dist/), as a user's process would.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { Linear, loadParams, readCsv, readIdx, readSafetensors, loadSafetensors, loadIdx, loadMnist, ReLU, saveParams, Sequential, writeSafetensors } from '../lib';
import { MAX_LAYERS } from '../lib/checkpoint';
import { MAX_CLASSES, MAX_COLUMNS } from '../lib/data/csv';
import { MAX_GUNZIPPED_BYTES } from '../lib/data/files';
import { MAX_HEADER_BYTES } from '../lib/io/safetensors';
import { thrown } from './helpers';

const DIST = join(__dirname, '..', 'dist', 'lib', 'index.js');
const dir = mkdtempSync(join(tmpdir(), 'handgrad-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  ok: boolean;
  value?: unknown;
  name?: string;
  code?: string;
  message?: string;
  /** Milliseconds the call took (the file's reading included, node's start not). */
  ms: number;
  /** The child's peak resident memory, MB. */
  maxRssMB: number;
}

/**
 * Runs `body` (a JavaScript expression with the package as `lib` in scope) in a child node with a
 * bounded heap and address space, and reports its value or its error, its time and peak memory.
 */
function hostile(body: string, { heapMB = 256, addressSpaceGB = 4, timeoutS = 120 } = {}): Outcome {
  const script = `
    const lib = require(process.env.HG_DIST);
    const started = process.hrtime.bigint();
    let out;
    try { out = { ok: true, value: (${body}) }; } catch (e) { out = { ok: false, name: e.name, code: e.code, message: e.message }; }
    out.ms = Number(process.hrtime.bigint() - started) / 1e6;
    out.maxRssMB = process.resourceUsage().maxRSS / 1024;
    process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync('bash', ['-c', `ulimit -v ${addressSpaceGB * 1024 * 1024} && exec "$0" --max-old-space-size=${heapMB} -e "$1"`, process.execPath, script], {
    env: { ...process.env, HG_DIST: DIST },
    encoding: 'utf8',
    timeout: timeoutS * 1000,
  });
  const report = `status ${r.status}, signal ${r.signal}\n${r.stdout.slice(0, 2000)}\n${r.stderr.slice(-2000)}`;
  expect(r.signal, report).toBeNull();
  expect(r.status, report).toBe(0);
  const o = JSON.parse(r.stdout) as Outcome;
  // HG_FIGURES=1 prints each attack's cost (the figures quoted in RELIABILITY.md).
  if (process.env.HG_FIGURES) console.log(`${body.slice(0, 90)}: ${o.ok ? 'ok' : o.code ?? o.name} in ${o.ms.toFixed(0)} ms, peak RSS ${o.maxRssMB.toFixed(0)} MB`);
  return o;
}

/** A clean ERR_FILE saying `message`, within `ms` and `rssMB`. */
function refused(o: Outcome, message: RegExp, { ms = 5000, rssMB = 400 } = {}): void {
  const what = JSON.stringify({ ...o, message: o.message?.slice(0, 300) }).slice(0, 600);
  expect(o.ok, what).toBe(false);
  expect(o.code, what).toBe('ERR_FILE');
  expect(o.message, what).toMatch(message);
  expect(o.ms, what).toBeLessThan(ms);
  expect(o.maxRssMB, what).toBeLessThan(rssMB);
}

const file = (name: string, content: string | Uint8Array): string => {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
};
const q = JSON.stringify;

/** A safetensors file of the given header (any JSON text) and data bytes. */
function forge(header: string, data = new Uint8Array(0)): Buffer {
  const json = Buffer.from(header, 'utf8');
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** A handgrad file whose "layers" metadata is `layers` (any JSON text), with one Linear(2, 2). */
function layersFile(name: string, layers: string): string {
  const header = { __metadata__: { format: 'handgrad', layout: 'handgrad', dtype: 'float64', layers }, W1: { dtype: 'F64', shape: [2, 2], data_offsets: [0, 32] }, b1: { dtype: 'F64', shape: [2], data_offsets: [32, 48] } };
  return file(name, forge(JSON.stringify(header), new Uint8Array(48)));
}

const gzipBomb = (() => {
  let bomb: Buffer | undefined;
  // 40 gzip members of 256 MiB of zeros each: 10 MB that claim 10 GiB (gunzip reads every member).
  return () => (bomb ??= Buffer.concat(Array(40).fill(gzipSync(Buffer.alloc(2 ** 28), { level: 9 }))));
})();

describe.skipIf(process.platform !== 'linux')('hostile files cost what their size says (child processes, 256 MB heap, ulimit -v)', () => {
  it('CSV: a 10,000-column header then 100,000 blank lines (179 KB) is "only a header", not an 8 GB X', () => {
    const head = Array.from({ length: 10_000 }, (_, i) => `c${i}`).join(',');
    const path = file('wide-blank.csv', `${head}${'\n'.repeat(100_000)}`);
    refused(hostile(`lib.readCsv(${q(path)})`), /^Expected at least one row of data for the CSV but received only a header \(line 1\)/, { ms: 3000 });
    // The same with one row of data after the blank lines: X is that one row.
    const one = file('wide-blank-one.csv', `${head}${'\n'.repeat(100_000)}${Array(10_000).fill('1').join(',')}\n`);
    const o = hostile(`(({ X, y, D }) => ({ X: X.length, bytes: X.buffer.byteLength, y: y.length, D }))(lib.readCsv(${q(one)}))`);
    expect(o, q(o)).toMatchObject({ ok: true, value: { X: 9999, bytes: 9999 * 8, y: 1, D: 9999 } });
    // X grows as rows come (past its first 4,096 rows here), every value in place, none to spare.
    const rows = Array.from({ length: 10_000 }, (_, i) => `${i},${-i / 4},${i % 3}`);
    const d = readCsv({ text: `a,b,c\n${rows.join('\n\n\n')}\n\n` });
    expect(d.X.length).toBe(20_000);
    expect(d.X.buffer.byteLength).toBe(20_000 * 8);
    expect(d.y.length).toBe(10_000);
    for (let i = 0; i < 10_000; i++) if (d.X[2 * i] !== i || d.X[2 * i + 1] !== -i / 4 || d.y[i] !== i % 3) throw new Error(`row ${i}`);
  });

  it('CSV: distinct labels past opts.maxClasses (default 65,536) stop at the first one past it, however many the file holds', () => {
    // 3 million distinct names (37 MB): a Map of them all aborted a 256 MB heap before.
    const n = 3_000_000;
    const rows = Buffer.alloc(n * 12);
    let at = 0;
    for (let i = 0; i < n; i++) at += rows.write(`1,L${String(i).padStart(8, '0')}\n`, at, 'latin1');
    const path = file('labels.csv', rows.subarray(0, at));
    refused(hostile(`lib.readCsv(${q(path)})`), new RegExp(`^Expected at most ${MAX_CLASSES} distinct labels \\(opts.maxClasses\\) for column 2 on line ${MAX_CLASSES + 1} but received ${MAX_CLASSES + 1} distinct labels, the last "L00065536"`), { ms: 5000 });
    // Lowered, it stops sooner; raised, the same names are read (C = their count).
    expect(thrown(() => readCsv({ text: '1,a\n2,b\n3,c\n' }, { maxClasses: 2 })).message).toBe('Expected at most 2 distinct labels (opts.maxClasses) for column 2 on line 3 but received 3 distinct labels, the last "c"');
    expect(readCsv({ text: '1,a\n2,b\n3,c\n' }, { maxClasses: 3 }).C).toBe(3);
  });

  it('CSV: a class id at or past opts.maxClasses is refused, naming its line (C is what W2 and the logits are sized by)', () => {
    const path = file('big-id.csv', '1,0\n2,2147483646\n3,1\n');
    refused(hostile(`lib.readCsv(${q(path)})`), new RegExp(`^Expected class ids below ${MAX_CLASSES} \\(opts.maxClasses\\) for column 2 on line 2 but received "2147483646"`));
    expect(thrown(() => readCsv({ text: '1,0\n2,9\n' }, { maxClasses: 9 })).message).toBe('Expected class ids below 9 (opts.maxClasses) for column 2 on line 2 but received "9"');
    expect(readCsv({ text: '1,0\n2,9\n' }, { maxClasses: 10 }).C).toBe(10);
  });

  it('CSV: a first row past opts.maxColumns, and a row far wider than the first, cost neither heap nor time', () => {
    // 8 MB of commas on the first line: 8 million cells, each once an entry in four arrays.
    const wide = file('commas.csv', `${','.repeat(8_000_000)}\n`);
    refused(hostile(`lib.readCsv(${q(wide)})`), new RegExp(`^Expected at most ${MAX_COLUMNS} columns \\(opts.maxColumns\\) for line 1 but received 8000001`), { ms: 5000 });
    const wider = file('wider-row.csv', `a,b\n1,0\n${'2,'.repeat(8_000_000)}0\n`);
    refused(hostile(`lib.readCsv(${q(wider)})`), /^Expected 2 cells \(as on line 1\) for line 3 but received 8000001/, { ms: 5000 });
    expect(thrown(() => readCsv({ text: 'a,b,c\n1,2,0\n' }, { maxColumns: 2 })).message).toBe('Expected at most 2 columns (opts.maxColumns) for line 1 but received 3');
  });

  it('CSV: a cell of 200,000 digits then a letter is refused in linear time (the number pattern backtracked quadratically)', () => {
    const digits = '1'.repeat(200_000);
    const path = file('digits.csv', `a,b\n${digits}x,0\n`);
    refused(hostile(`lib.readCsv(${q(path)})`), /^Expected a number for column "a" \(column 1\) on line 2 but received "1111/, { ms: 1000 });
    // As a label, the same text is a class name.
    const named = file('digits-label.csv', `a,b\n1,${digits}x\n2,${digits}y\n`);
    const o = hostile(`lib.readCsv(${q(named)}).C`);
    expect(o, q(o).slice(0, 600)).toMatchObject({ ok: true, value: 2 });
    expect(o.ms, q(o).slice(0, 600)).toBeLessThan(1000);
  });

  it(`layers: lists of 200,000 and 5,000 activations are refused at once (at most MAX_LAYERS = ${MAX_LAYERS}), and a list of MAX_LAYERS loads in linear time`, () => {
    const acts = (n: number) => JSON.stringify([{ kind: 'linear', in: 2, out: 2 }, ...Array.from({ length: n }, () => ({ kind: 'relu' }))]);
    // 200,000 (4 MB of header) passes the header's cap before its list is even parsed.
    const long = layersFile('200k.safetensors', acts(200_000));
    refused(hostile(`lib.loadSequential(${q(long)})`), new RegExp(`^Expected a header length of at most ${MAX_HEADER_BYTES} bytes`), { ms: 1000 });
    const longer = layersFile('5k.safetensors', acts(5000));
    refused(hostile(`lib.loadSequential(${q(longer)})`), new RegExp(`^Expected at most ${MAX_LAYERS} layers for __metadata__.layers but received 5001 layers`), { ms: 1000 });
    const most = layersFile('most.safetensors', acts(MAX_LAYERS - 1));
    const o = hostile(`lib.loadSequential(${q(most)}).layers.length`);
    expect(o, q(o)).toMatchObject({ ok: true, value: MAX_LAYERS });
    expect(o.ms, q(o)).toBeLessThan(1000);
  });

  it('layers: 2,100 Linear layers inferred from the tensor names (no list) are refused at once, not after a quadratic load', () => {
    const tensors: Record<string, { shape: number[]; data: Float64Array }> = {};
    for (let k = 1; k <= 2100; k++) Object.assign(tensors, { [`W${k}`]: { shape: [1, 1], data: new Float64Array(1) }, [`b${k}`]: { shape: [1], data: new Float64Array(1) } });
    const path = file('2100-linear.safetensors', writeSafetensors(tensors));
    refused(hostile(`lib.loadSequential(${q(path)})`), new RegExp(`^Expected at most ${MAX_LAYERS} layers for the file but received 2100 Linear layers`), { ms: 1000 });
  });

  it('layers: an entry nested 100,000 deep, or of a wrong kind, is an ERR_FILE naming its key (nothing walks the nesting)', () => {
    const deep = `[{"kind":"linear","in":${'['.repeat(100_000)}${']'.repeat(100_000)},"out":2}]`;
    refused(hostile(`lib.loadSequential(${q(layersFile('deep.safetensors', deep))})`), /^Expected a positive 32-bit integer for __metadata__.layers\[0\].in but received nested Array/);
    const cases: [string, RegExp][] = [
      ['[{"kind":"linear","in":2,"out":2},{"kind":"gelu"}]', /for __metadata__.layers\[1\] but received Object/],
      ['[{"kind":"linear","in":2,"out":"2"}]', /a positive 32-bit integer for __metadata__.layers\[0\].out but received "2"/],
      ['[{"kind":"linear","in":2,"out":2}, null]', /for __metadata__.layers\[1\] but received null/],
      ['{"kind":"linear"}', /a JSON list of layers for __metadata__.layers but received Object/],
    ];
    for (const [layers, message] of cases) {
      const o = hostile(`lib.loadSequential(${q(layersFile('bad.safetensors', layers))})`);
      refused(o, message);
    }
  });

  it(`safetensors: a 20 MB header is refused before it is parsed (default cap ${MAX_HEADER_BYTES} bytes); one at the cap costs well under a second`, () => {
    const meta = (bytes: number) => {
      const keys = Array.from({ length: Math.floor(bytes / 15) - 2 }, (_, i) => `"k${String(i).padStart(7, '0')}":"v"`); // 15 bytes with its comma
      return `{"__metadata__":{${keys.join(',')}}}`;
    };
    const entries = (bytes: number) => {
      const one = (i: number) => `"t${String(i).padStart(7, '0')}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`;
      return `{${Array.from({ length: Math.floor(bytes / (one(0).length + 1)) - 1 }, (_, i) => one(i)).join(',')}}`;
    };
    const big = file('20mb.safetensors', forge(meta(20_000_000)));
    refused(hostile(`lib.loadSafetensors(${q(big)})`), new RegExp(`^Expected a header length of at most ${MAX_HEADER_BYTES} bytes \\(opts.maxHeaderBytes\\) for the safetensors header but received \\d{8} \\(`), { ms: 1000 });
    for (const [kind, header] of [['metadata keys', meta(MAX_HEADER_BYTES - 100)], ['empty tensors', entries(MAX_HEADER_BYTES - 100)]]) {
      const path = file('at-cap.safetensors', forge(header));
      expect(Buffer.byteLength(header)).toBeLessThanOrEqual(MAX_HEADER_BYTES);
      const o = hostile(`Object.keys(lib.loadSafetensors(${q(path)}).tensors).length`);
      expect(o.ok, `${kind}: ${q(o)}`).toBe(true);
      expect(o.ms, `${kind}: ${q(o)}`).toBeLessThan(1000);
    }
    // Raised, a larger header is read.
    expect(Object.keys(readSafetensors(forge(meta(2_000_000)), { maxHeaderBytes: 2_000_000 }).metadata)).toHaveLength(Math.floor(2_000_000 / 15) - 2);
  });

  it('safetensors: data_offsets nested 100,000 deep is an ERR_FILE, not a stack overflow', () => {
    const deep = `{"W":{"dtype":"F64","shape":[1],"data_offsets":[${'['.repeat(100_000)}${']'.repeat(100_000)},8]}}`;
    const path = file('deep-offsets.safetensors', forge(deep, new Uint8Array(8)));
    refused(hostile(`lib.loadSafetensors(${q(path)})`), /^Expected non-negative integer offsets \[begin, end\] for the data_offsets of tensor "W" but received \[nested Array \[1,1\], 8\]/);
  });

  it(`gzip: a 10 MB bomb of 10 GiB stops at opts.maxBytes (default ${MAX_GUNZIPPED_BYTES} bytes) while inflating, in every loader`, () => {
    const bomb = gzipBomb();
    const gz = file('bomb.csv.gz', bomb);
    const idxGz = file('bomb.idx.gz', bomb);
    const mnist = join(dir, 'mnist-bomb');
    mkdirSync(mnist, { recursive: true });
    for (const name of ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']) writeFileSync(join(mnist, name), bomb);
    const cap = `at most ${MAX_GUNZIPPED_BYTES} bytes once gunzipped \\(opts.maxBytes\\)`;
    // The default cap: memory stays near 1 GiB (it reached 4.25 GB before), and the time is that of inflating 1 GiB.
    const limits = { ms: 15_000, rssMB: 1024 + 400 };
    refused(hostile(`lib.readCsv(${q(gz)})`), new RegExp(`^Expected gzip data of ${cap} for .*bomb.csv.gz but received more`), limits);
    refused(hostile(`lib.readIdx(require('fs').readFileSync(${q(idxGz)}))`), new RegExp(`^Expected gzip data of ${cap} for the IDX bytes but received more`), limits);
    // Lowered, it stops at once, having cost nothing.
    refused(hostile(`lib.loadIdx(${q(idxGz)}, { maxBytes: 1e6 })`), /^Expected gzip data of at most 1000000 bytes once gunzipped \(opts.maxBytes\) for .*bomb.idx.gz but received more/, { ms: 1000, rssMB: 200 });
    refused(hostile(`lib.loadMnist({ dir: ${q(mnist)}, maxBytes: 1e6 })`), /^Expected gzip data of at most 1000000 bytes once gunzipped \(opts.maxBytes\) for .*train-images-idx3-ubyte.gz but received more/, { ms: 1000, rssMB: 200 });
    refused(hostile(`lib.readCsv(require('fs').readFileSync(${q(gz)}), { maxBytes: 1e6 })`), /^Expected gzip data of at most 1000000 bytes once gunzipped \(opts.maxBytes\) for the CSV bytes but received more/, { ms: 1000, rssMB: 200 });
    // Within the cap, gzip input reads as before.
    expect(Array.from(readIdx(gzipSync(Buffer.from([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])), { maxBytes: 10 }).data)).toEqual([7, 9]);
    expect(readCsv(gzipSync('1,0\n2,1\n'), { maxBytes: 8 }).C).toBe(2);
  }, 120_000);
});

describe('the limits are options, checked as every other option', () => {
  const csv = { text: '1,0\n2,1\n' };
  const idx = Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 7]);
  const st = writeSafetensors({ W: { shape: [1], data: new Float64Array(1) } });
  const path = file('limits.safetensors', st);
  const idxPath = file('limits.idx', idx);
  const calls: [string, (value: unknown) => unknown, number][] = [
    ['readCsv opts.maxBytes', (x) => readCsv(csv, { maxBytes: x as number }), 2 ** 32],
    ['readCsv opts.maxColumns', (x) => readCsv(csv, { maxColumns: x as number }), 2 ** 31 - 1],
    ['readCsv opts.maxClasses', (x) => readCsv(csv, { maxClasses: x as number }), 2 ** 31 - 1],
    ['readIdx opts.maxBytes', (x) => readIdx(idx, { maxBytes: x as number }), 2 ** 32],
    ['loadIdx opts.maxBytes', (x) => loadIdx(idxPath, { maxBytes: x as number }), 2 ** 32],
    ['loadMnist opts.maxBytes', (x) => loadMnist({ dir: dir, maxBytes: x as number }), 2 ** 32],
    ['readSafetensors opts.maxHeaderBytes', (x) => readSafetensors(st, { maxHeaderBytes: x as number }), 100_000_000],
    ['loadSafetensors opts.maxHeaderBytes', (x) => loadSafetensors(path, { maxHeaderBytes: x as number }), 100_000_000],
  ];
  it.each(calls)('%s: a positive integer up to its maximum, else a TypeError or RangeError naming it', (name, call, max) => {
    const key = name.split(' ')[1];
    for (const x of [0, -1, 1.5, NaN, Infinity, max + 1]) {
      const e = thrown(() => call(x));
      expect(e, String(x)).toBeInstanceOf(RangeError);
      expect(e.message).toBe(`Expected an integer in [1, ${max}] for ${key} but received ${x}`);
    }
    for (const x of ['1000', null, 10n]) expect(thrown(() => call(x))).toBeInstanceOf(TypeError);
  });
  it('a misspelt limit is a TypeError that says which one was meant', () => {
    expect(thrown(() => readCsv(csv, { max_bytes: 10 } as never)).message).toMatch(/^Expected no option 'max_bytes' for opts \(did you mean 'maxBytes'\?\)/);
    expect(thrown(() => readCsv(csv, { maxClass: 10 } as never)).message).toMatch(/\(did you mean 'maxClasses'\?\)/);
    expect(thrown(() => loadIdx(idxPath, { maxbytes: 10 } as never)).message).toMatch(/\(did you mean 'maxBytes'\?\)/);
    expect(thrown(() => readSafetensors(st, { maxHeaderByte: 10 } as never)).message).toMatch(/\(did you mean 'maxHeaderBytes'\?\)/);
  });
});

describe('the limits hold on the way in from code and on the way out to a file', () => {
  it(`a Sequential of more than MAX_LAYERS (${MAX_LAYERS}) layers built in code is a RangeError, not a stack overflow at its first step`, () => {
    const layers = Array.from({ length: 50_000 }, (_, i) => (i % 2 === 0 ? new Linear(2, 2, { seed: i }) : new ReLU()));
    const e = thrown(() => new Sequential(layers.slice(0, 49_999)));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(`Expected at most ${MAX_LAYERS} layers for layers but received 49999 layers`);
    // At the cap the net runs, on the native engine that takes one argument per tensor.
    const atCap = new Sequential(layers.slice(0, MAX_LAYERS - 1));
    const r = atCap.forwardBackward(Float64Array.of(0.5, -0.25), Int32Array.of(1));
    expect(Number.isFinite(r.loss)).toBe(true);
  });

  it('a file whose header the readers would refuse is never written: the old file stays', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg-header-out-'));
    const file = join(dir, 'p.safetensors');
    const params = { W1: new Float64Array(4), b1: new Float64Array(2), W2: new Float64Array(4), b2: new Float64Array(2) };
    saveParams(file, params);
    const e = thrown(() => saveParams(file, params, { metadata: { note: 'x'.repeat(MAX_HEADER_BYTES) } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(new RegExp(`^Expected a header of at most ${MAX_HEADER_BYTES} bytes \\(what the readers take by default\\) for the tensor names and metadata but received \\d+ bytes of JSON$`));
    expect(loadParams(file).W1).toEqual(params.W1);
  });
});
