// Hostile and contradictory files, and writes that would change a value (review of the file
// formats). Every file here is built byte by byte (the 8-byte length, the JSON text, the data),
// never by the writer under test, and every expectation is what the format or the math says: a
// refusal naming the key or tensor, a buffer of zeros, the value written. The /dev/zero and FIFO
// reads run dist/ in a child with a timeout (before the fix they never ended):
// `npx tsc -p tsconfig.build.json` first.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initParams, Linear, loadModel, loadParams, loadSequential, readSafetensors, ReLU, saveModel, saveParams, saveSequential, Sequential, Trainer, writeSafetensors, xor } from '../lib';
import { saveSafetensors } from '../lib/io/safetensors';

const DIST = join(__dirname, '..', 'dist', 'lib', 'index.js');
const dir = mkdtempSync(join(tmpdir(), 'hg-files-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file by hand: [u64 LE header length][header text][data]. */
function st(header: string | object, data: Uint8Array = new Uint8Array(0)): Buffer {
  const j = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(j.length));
  return Buffer.concat([len, j, data]);
}
const f64 = (...xs: number[]) => new Uint8Array(new Float64Array(xs).buffer);

/** A handgrad-layout file of Linear tensors W{k} [in,out], b{k} [out] (F64, filled with 0.1·index) and metadata. */
function net(dims: [number, number][], meta?: Record<string, string>, extra: Record<string, [number[], number[]]> = {}): Buffer {
  const header: Record<string, unknown> = meta ? { __metadata__: meta } : {};
  const parts: Uint8Array[] = [];
  let at = 0;
  const add = (name: string, shape: number[], values: number[]) => {
    header[name] = { dtype: 'F64', shape, data_offsets: [at, at + 8 * values.length] };
    at += 8 * values.length;
    parts.push(f64(...values));
  };
  dims.forEach(([i, o], k) => {
    add(`W${k + 1}`, [i, o], Array.from({ length: i * o }, (_, j) => 0.1 * (j + 1)));
    add(`b${k + 1}`, [o], Array.from({ length: o }, (_, j) => 0.01 * j));
  });
  for (const [name, [shape, values]] of Object.entries(extra)) add(name, shape, values);
  return st(header, Buffer.concat(parts));
}
const put = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};
function err(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('no error thrown');
}

describe('F1: only a regular file is read, never /dev/zero or a FIFO', () => {
  const child = (expr: string) => {
    const script = `const lib = require(${JSON.stringify(DIST)}); try { ${expr}; console.log('ok'); } catch (e) { console.log(e.code, e.message); }`;
    return spawnSync(process.execPath, ['--max-old-space-size=256', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  };
  for (const fn of ['loadSafetensors', 'loadModel', 'loadParams', 'loadSequential', 'Trainer.load']) {
    it(`${fn}('/dev/zero') is an ERR_FILE at once`, () => {
      const r = child(`lib.${fn}('/dev/zero')`);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.stdout).toMatch(/^ERR_FILE Expected a regular file .*\/dev\/zero/);
    });
  }
  // The data loaders read through the same function (lib/data/files.ts readFile): readCsv,
  // readCsvAsync and loadIdx on /dev/zero read until memory ran out, on a FIFO waited forever.
  for (const [fn, call] of [['readCsv', "lib.readCsv('/dev/zero')"], ['loadIdx', "lib.loadIdx('/dev/zero')"]] as const) {
    it(`${fn}('/dev/zero') is an ERR_FILE at once`, () => {
      const r = child(call);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.stdout).toMatch(/^ERR_FILE Expected a regular file .*\/dev\/zero but received a device/);
    });
  }
  it("readCsvAsync('/dev/zero') and a FIFO with no writer reject with an ERR_FILE at once", () => {
    const fifo = join(dir, 'fifo-async');
    execFileSync('mkfifo', [fifo]);
    for (const [path, kind] of [['/dev/zero', 'a device'], [fifo, 'a FIFO']] as const) {
      const script = `require(${JSON.stringify(DIST)}).readCsvAsync(${JSON.stringify(path)}).then(() => console.log('ok'), (e) => console.log(e.code, e.message));`;
      const r = spawnSync(process.execPath, ['--max-old-space-size=256', '-e', script], { encoding: 'utf8', timeout: 20_000 });
      expect(r.signal, r.stderr).toBeNull();
      expect(r.stdout).toContain(`ERR_FILE Expected a regular file (the CSV file) for ${path} but received ${kind}`);
    }
  });
  it('a FIFO with no writer is an ERR_FILE at once (the open does not wait for a writer)', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const r = child(`lib.loadModel(${JSON.stringify(fifo)})`);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout).toMatch(/^ERR_FILE Expected a regular file/);
  });
});

describe('F2: a misspelled activation is an ERR_FILE naming it', () => {
  for (const act of ['Tanh', 'gelu', '']) {
    it(`activation ${JSON.stringify(act)}`, () => {
      const e = err(() => loadModel(net([[2, 3], [3, 2]], { activation: act })));
      expect(e.code).toBe('ERR_FILE');
      expect(e.message).toMatch(/for __metadata__\.activation but received/);
    });
  }
  it('the activation beside a layers list must be the list\'s', () => {
    const layers = JSON.stringify([{ kind: 'linear', in: 2, out: 3 }, { kind: 'tanh' }, { kind: 'linear', in: 3, out: 2 }]);
    const e = err(() => loadSequential(put('act-vs-list.safetensors', net([[2, 3], [3, 2]], { layers, activation: 'relu' }))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__\.activation/);
  });
});

describe('F3: metadata that contradicts the tensors, and stray Linear tensors, are refused', () => {
  const layers2 = JSON.stringify([{ kind: 'linear', in: 2, out: 3 }, { kind: 'relu' }, { kind: 'linear', in: 3, out: 2 }]);
  it('W3, b3 beside a layers list of two Linear layers', () => {
    const e = err(() => loadSequential(put('w3.safetensors', net([[2, 3], [3, 2], [2, 2]], { layers: layers2 }))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/"W3"/);
  });
  it('W1, b1, W2, b2, W4, b4 without metadata (W4 is not after W2)', () => {
    const file = net([[2, 3], [3, 2]], undefined, { W4: [[2, 2], [1, 2, 3, 4]], b4: [[2], [0, 0]] });
    const e = err(() => loadModel(file));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/"W4"|"b4"/);
  });
  for (const [key, value] of [['D', '99'], ['C', '7'], ['H', '5'], ['dtype', 'float32'], ['layout', 'torch']] as const) {
    it(`__metadata__.${key} = ${value} against tensors of D 2, H 3, C 2, F64`, () => {
      const e = err(() => loadModel(net([[2, 3], [3, 2]], { activation: 'relu', [key]: value })));
      expect(e.code).toBe('ERR_FILE');
      expect(e.message).toContain(`__metadata__.${key}`);
    });
  }
  it('the same fields, agreeing, load', () => {
    const m = loadModel(net([[2, 3], [3, 2]], { activation: 'tanh', D: '2', H: '3', C: '2', dtype: 'float64', layout: 'handgrad' }));
    expect(m.net.layers.map((l) => l.kind)).toEqual(['linear', 'tanh', 'linear']);
  });
});

describe('F4: a key twice in the header is an ERR_FILE naming it', () => {
  const a = '{"dtype":"F64","shape":[1],"data_offsets":[0,8]}';
  it('the same tensor twice', () => {
    const e = err(() => readSafetensors(st(`{"a":${a},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, f64(1))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/"a"/);
  });
  it('a tensor twice under an escaped spelling ("a" and "\\u0061")', () => {
    const e = err(() => readSafetensors(st(`{"a":${a},"\\u0061":${a}}`, f64(1))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/"a"/);
  });
  it('__metadata__ twice', () => {
    const e = err(() => readSafetensors(st(`{"__metadata__":{"x":"1"},"a":${a},"__metadata__":{"x":"2"}}`, f64(1))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__/);
  });
  it('a field twice in one entry, and a metadata key twice', () => {
    const e1 = err(() => readSafetensors(st('{"a":{"dtype":"I64","dtype":"F64","shape":[1],"data_offsets":[0,8]}}', f64(1))));
    expect([e1.code, e1.message]).toEqual(['ERR_FILE', expect.stringMatching(/"dtype".*tensor "a"|tensor "a".*"dtype"/)]);
    const e2 = err(() => readSafetensors(st(`{"__metadata__":{"x":"1","x":"2"},"a":${a}}`, f64(1))));
    expect([e2.code, e2.message]).toEqual(['ERR_FILE', expect.stringMatching(/"x"/)]);
  });
  it('distinct keys that only look alike are read ("a", "A", "a\\"", "\\\\a")', () => {
    const b = (o: number) => `{"dtype":"F64","shape":[1],"data_offsets":[${o},${o + 8}]}`;
    const file = readSafetensors(st(`{"a":${b(0)},"A":${b(8)},"a\\"":${b(16)},"\\\\a":${b(24)}}`, f64(1, 2, 3, 4)));
    expect(Object.keys(file.tensors).sort()).toEqual(['A', '\\a', 'a', 'a"']);
  });
  it('a field the format does not have ("byteorder") is refused', () => {
    const e = err(() => readSafetensors(st('{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8],"byteorder":"big"}}', f64(1))));
    expect([e.code, e.message]).toEqual(['ERR_FILE', expect.stringMatching(/byteorder.*tensor "a"|tensor "a".*byteorder/)]);
  });
});

describe('F5: the writer refuses a value its dtype cannot hold, naming it', () => {
  const cases: [string, Record<string, unknown>, RegExp, ErrorConstructor][] = [
    ['I32 2**31 from numbers', { dtype: 'I32', shape: [2], data: [1, 2 ** 31] }, /tensors\.a\.data\[1\]/, RangeError],
    ['I32 -2**31-1 from numbers', { dtype: 'I32', shape: [1], data: [-(2 ** 31) - 1] }, /tensors\.a\.data\[0\]/, RangeError],
    ['I32 3e9 from a Float64Array', { dtype: 'I32', shape: [1], data: Float64Array.of(3e9) }, /tensors\.a\.data\[0\]/, RangeError],
    ['I32 2**40 from a BigInt64Array', { dtype: 'I32', shape: [2], data: BigInt64Array.of(1n, 2n ** 40n) }, /tensors\.a\.data\[1\]/, RangeError],
    ['I64 2**63 from numbers', { dtype: 'I64', shape: [1], data: [2 ** 63] }, /tensors\.a\.data\[0\]/, RangeError],
    ['F64 "abc"', { dtype: 'F64', shape: [2], data: ['abc', 1] }, /tensors\.a\.data\[0\]/, TypeError],
    ['F64 null', { dtype: 'F64', shape: [2], data: [1, null] }, /tensors\.a\.data\[1\]/, TypeError],
    ['F32 1e300 from a Float64Array', { dtype: 'F32', shape: [1], data: Float64Array.of(1e300) }, /tensors\.a\.data\[0\]/, RangeError],
    ['F64 2**60+1 from a BigInt64Array (not exact)', { dtype: 'F64', shape: [1], data: BigInt64Array.of(2n ** 60n + 1n) }, /tensors\.a\.data\[0\]/, RangeError],
  ];
  for (const [what, t, name, type] of cases) {
    it(what, () => {
      const e = err(() => writeSafetensors({ a: t as never }));
      expect(e).toBeInstanceOf(type);
      expect(e.message).toMatch(name);
    });
  }
  it('values the dtype holds are written as given (bytes checked by hand); NaN and ±Infinity already there are kept', () => {
    const out = writeSafetensors({ i: { dtype: 'I32', shape: [2], data: [-(2 ** 31), 2 ** 31 - 1] }, f: { dtype: 'F32', shape: [3], data: Float64Array.of(NaN, -Infinity, 3.4e38) } });
    const n = Number(Buffer.from(out).readBigUInt64LE(0));
    const data = Buffer.from(out.subarray(8 + n));
    expect([data.readInt32LE(0), data.readInt32LE(4)]).toEqual([-(2 ** 31), 2 ** 31 - 1]);
    expect([data.readFloatLE(8), data.readFloatLE(12), data.readFloatLE(16)]).toEqual([NaN, -Infinity, Math.fround(3.4e38)]);
  });
});

describe('F6: the writer refuses the shape the reader refuses', () => {
  it('65 dimensions: a RangeError; 64 are written and read back', () => {
    const e = err(() => writeSafetensors({ a: { dtype: 'F64', shape: Array(65).fill(1), data: [1] } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/at most 64 dimensions.*tensors\.a\.shape/);
    expect(readSafetensors(writeSafetensors({ a: { dtype: 'F64', shape: Array(64).fill(1), data: [1] } })).tensors.a.shape.length).toBe(64);
  });
});

describe("F7: a writer's metadata option may not use the format's keys", () => {
  const p = initParams({ D: 2, H: 3, C: 2 }, { seed: 1 });
  it('saveParams { steps, trainer }', () => {
    const e = err(() => saveParams(join(dir, 'p.safetensors'), p, { metadata: { steps: '5', trainer: '{"lr":5}' } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/opts\.metadata.*"steps"/);
  });
  it('saveSequential { layers }', () => {
    const seq = new Sequential([new Linear(2, 3), new ReLU(), new Linear(3, 2)]);
    const e = err(() => saveSequential(join(dir, 's.safetensors'), seq, { metadata: { dtype: 'float32' } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/opts\.metadata.*"dtype"/);
  });
});

describe('F8/F9: the optimizer state of a handgrad-layout checkpoint', () => {
  const { X, y } = xor({ seed: 5, n: 16 });
  const adam = () => {
    const t = new Trainer(initParams({ D: 2, H: 3, C: 2 }, { seed: 4 }), { optimizer: 'adam', lr: 0.01, batchSize: 8, seed: 1, backend: 'ts' });
    t.fitSync(X, y, { epochs: 1 });
    return readSafetensors(t.save());
  };
  /** The checkpoint's tensors and metadata rewritten by hand (F64 data), with `edit` applied. */
  function rewrite(edit: (tensors: Record<string, { shape: number[]; values: number[] }>, meta: Record<string, string>) => void): Buffer {
    const file = adam();
    const tensors: Record<string, { shape: number[]; values: number[] }> = {};
    for (const [k, t] of Object.entries(file.tensors)) tensors[k] = { shape: t.shape, values: Array.from(t.data as Float64Array) };
    const meta = { ...file.metadata };
    edit(tensors, meta);
    const header: Record<string, unknown> = { __metadata__: meta };
    let at = 0;
    const parts = Object.entries(tensors).map(([k, t]) => {
      header[k] = { dtype: 'F64', shape: t.shape, data_offsets: [at, (at += 8 * t.values.length)] };
      return f64(...t.values);
    });
    return st(header, Buffer.concat(parts));
  }
  const slots = (t: unknown) => (t as { state: { slots: Record<string, { m: Float64Array | null }> } }).state.slots;
  it('loaded with { optimizer: "momentum" }: the momentum buffer starts at zero, not at Adam\'s exp_avg', () => {
    const t = Trainer.load(rewrite(() => {}), { optimizer: 'momentum', backend: 'ts' });
    for (const k of ['W1', 'b1', 'W2', 'b2']) expect(Array.from(slots(t)[k].m!)).toEqual(Array(slots(t)[k].m!.length).fill(0));
  });
  it('Adam moments without a __metadata__.trainer record are an ERR_FILE', () => {
    const e = err(() => Trainer.load(rewrite((_, meta) => delete meta.trainer)));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__\.trainer/);
  });
  it('a stray optimizer tensor (optimizer.W9.m) is an ERR_FILE naming it', () => {
    const e = err(() => Trainer.load(rewrite((t) => (t['optimizer.W9.m'] = { shape: [1], values: [0] }))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/optimizer\.W9\.m/);
  });
  it('a negative second moment (optimizer.W1.v = -1) is an ERR_FILE naming it', () => {
    const e = err(() => Trainer.load(rewrite((t) => (t['optimizer.W1.v'].values[0] = -1))));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/≥ 0.*optimizer\.W1\.v/);
  });
});

describe('F9/F10 and the class lookup: the optimizer file of a torch-layout checkpoint', () => {
  const { X, y } = xor({ seed: 5, n: 16 });
  const pair = (name: string) => {
    const t = new Trainer(initParams({ D: 2, H: 3, C: 2 }, { seed: 4 }), { optimizer: 'adam', lr: 0.01, batchSize: 8, seed: 1, backend: 'ts' });
    t.fitSync(X, y, { epochs: 1 });
    const path = join(dir, `${name}.safetensors`);
    t.save(path, { layout: 'torch' });
    const model = readSafetensors(readFileSync(path));
    const optim = readSafetensors(readFileSync(join(dir, `${name}.optim.safetensors`)));
    return { path, model, optim };
  };
  /** The optimizer file rewritten by hand (F32 step, F64 buffers), `edit` applied; the model file's metadata then names it without a digest. */
  function optimizerFile(edit: (tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>, meta: Record<string, string>) => void, asPyTorch = false) {
    const { path, model, optim } = pair('torch');
    {
      // The model file rewritten without the digest that pairs it with the file written by save.
      const meta = { ...model.metadata };
      for (const k of [...(asPyTorch ? ['trainer'] : []), 'optimizer_state', 'optimizer_state_sha256']) delete meta[k];
      saveSafetensors(path, Object.fromEntries(Object.entries(model.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data as Float64Array }])), meta);
    }
    const tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> = {};
    for (const [k, t] of Object.entries(optim.tensors)) tensors[k] = { dtype: t.dtype, shape: t.shape, values: Array.from(t.data as Float64Array) };
    const meta = { ...optim.metadata };
    edit(tensors, meta);
    const header: Record<string, unknown> = { __metadata__: meta };
    let at = 0;
    // F64 first then F32: each aligned to its size.
    const order = Object.entries(tensors).sort(([, a], [, b]) => (a.dtype === b.dtype ? 0 : a.dtype === 'F64' ? -1 : 1));
    const parts = order.map(([k, t]) => {
      const bytes = t.dtype === 'F64' ? f64(...t.values) : new Uint8Array(new Float32Array(t.values).buffer);
      header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, (at += bytes.length)] };
      return bytes;
    });
    const opt = put('torch-edited.optim.safetensors', st(header, Buffer.concat(parts)));
    return () => Trainer.load(path, { optimizerState: opt, backend: 'ts' });
  }
  it('the edited file unchanged loads (the control)', () => {
    expect(optimizerFile(() => {})().steps).toBe(2);
  });
  it('a negative exp_avg_sq is an ERR_FILE naming it', () => {
    const e = err(optimizerFile((t) => (t['state.0.exp_avg_sq'].values[1] = -1e-9)));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/≥ 0.*state\.0\.exp_avg_sq/);
  });
  it('__metadata__.state = "zzz" is an ERR_FILE naming it', () => {
    const e = err(optimizerFile((_, meta) => (meta.state = 'zzz')));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__\.state/);
  });
  for (const cls of ['constructor', 'toString', '__proto__']) {
    it(`__metadata__.class = ${JSON.stringify(cls)} is an ERR_FILE naming it`, () => {
      // A pair PyTorch wrote: no "trainer" record in the model file, so the optimizer file's class is read.
      const e = err(optimizerFile((_, m) => (m.class = cls), true));
      expect(e.code).toBe('ERR_FILE');
      expect(e.message).toMatch(/one of SGD, Adam, AdamW.*for __metadata__\.class but received/);
    });
  }
});

describe('F11/F12: a model file\'s preprocess', () => {
  const file = (std: number) => net([[2, 3], [3, 2]], { activation: 'relu', preprocess: 'standardize' }, { 'preprocess.mean': [[2], [0, 0]], 'preprocess.std': [[2], [std, 1]] });
  it('a subnormal std (5e-324: 1/std is Infinity) is an ERR_FILE naming preprocess.std', () => {
    const e = err(() => loadModel(file(5e-324)));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/preprocess\.std/);
  });
  it('changing model.preprocess after load changes neither predict nor save', () => {
    const m = loadModel(file(2));
    const X = [4, 6, -2, 1];
    // (x − mean) / std by hand: [2, 6], [-1, 1].
    expect(Array.from(m.transform(X))).toEqual([2, 6, -1, 1]);
    try {
      m.preprocess!.std[0] = 0;
      m.preprocess!.mean[1] = 100;
    } catch {
      // Refusing the change is as good.
    }
    expect(Array.from(m.transform(X))).toEqual([2, 6, -1, 1]);
    const back = loadModel(m.save());
    expect(Array.from(back.preprocess!.std)).toEqual([2, 1]);
    expect(Array.from(back.preprocess!.mean)).toEqual([0, 0]);
  });
});

/** Every reader of a parameter file, each over a path (the four must agree on what a file is). */
const LOADERS: [string, (path: string) => unknown][] = [
  ['loadParams', (q) => loadParams(q)], ['loadSequential', (q) => loadSequential(q)], ['loadModel', (q) => loadModel(q)], ['Trainer.load', (q) => Trainer.load(q)],
];
/** Each loader's refusal of `path`: an ERR_FILE whose message matches `message` and names the file. */
function refusedByEvery(path: string, message: RegExp): void {
  for (const [name, load] of LOADERS) {
    const e = err(() => load(path));
    expect(e.code, `${name}: ${e.message}`).toBe('ERR_FILE');
    expect(e.message, name).toMatch(message);
    expect(e.message, name).toContain(path);
  }
}

describe("F13: a two-layer file's loss is read by every loader, and checked", () => {
  // The loss as written here is the truth: { reduction: 'sum', weight: [1, 5, 1] }.
  const loss = { reduction: 'sum', weight: [1, 5, 1] };
  const file = (text: string) => net([[4, 5], [5, 3]], { activation: 'relu', loss: text });
  it('loadParams returns it; loadSequential, loadModel and Trainer.load build the net with it', () => {
    const q = put('loss.st', file(JSON.stringify(loss)));
    expect(loadParams(q).loss).toEqual(loss);
    expect(loadSequential(q).spec()).toMatchObject({ reduction: 'sum', loss: { weight: [1, 5, 1] } });
    expect(loadModel(q).net.spec()).toMatchObject({ reduction: 'sum', loss: { weight: [1, 5, 1] } });
    // Two-layer params carry no loss: the Trainer trains the file's Sequential, with its loss.
    expect(Trainer.load(q).model.spec()).toMatchObject({ reduction: 'sum', loss: { weight: [1, 5, 1] } });
  });
  it('saved again (Model.save, Trainer.save), the loss is still in the file', () => {
    const q = put('loss.st', file(JSON.stringify(loss)));
    for (const bytes of [loadModel(q).save(), Trainer.load(q).save()]) {
      expect(JSON.parse(readSafetensors(bytes).metadata.loss)).toEqual(loss);
    }
  });
  it('a file without one reads as the mean (loadParams says so)', () => {
    expect(loadParams(put('noloss.st', net([[4, 5], [5, 3]], { activation: 'relu' }))).loss).toEqual({ reduction: 'mean' });
  });
  it('a malformed loss, an unknown reduction or option, a weight of other length than C: every loader refuses', () => {
    refusedByEvery(put('loss-bad.st', file('not json')), /__metadata__\.loss but received "not json"/);
    refusedByEvery(put('loss-red.st', file('{"reduction":"total"}')), /reduction but received "total"/);
    refusedByEvery(put('loss-key.st', file('{"reduction":"mean","weights":[1,5,1]}')), /'weights'/);
    refusedByEvery(put('loss-len.st', file('{"reduction":"mean","weight":[1,5]}')), /3 elements .*weight/);
  });
  it("Trainer.load refuses reduction 'none' as the file's (a step needs a scalar loss)", () => {
    const q = put('loss-none.st', file('{"reduction":"none"}'));
    expect(loadModel(q).net.spec().reduction).toBe('none');
    const e = err(() => Trainer.load(q));
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__\.loss\.reduction but received "none"/);
  });
});

describe('F14: a layers entry with a key the format does not define is refused', () => {
  const file = (layers: object[]) => net([[4, 5], [5, 3]], { layers: JSON.stringify(layers) });
  it("{ kind: 'linear', in, out, activation: 'tanh' } and { kind: 'relu', out: 5 }", () => {
    refusedByEvery(put('layers-act.st', file([{ kind: 'linear', in: 4, out: 5, activation: 'tanh' }, { kind: 'relu' }, { kind: 'linear', in: 5, out: 3 }])), /__metadata__\.layers\[0\] but received the key "activation"/);
    refusedByEvery(put('layers-out.st', file([{ kind: 'linear', in: 4, out: 5 }, { kind: 'relu', out: 5 }, { kind: 'linear', in: 5, out: 3 }])), /__metadata__\.layers\[1\] but received the key "out"/);
  });
  it('the same list without the extra keys loads (the control)', () => {
    const q = put('layers-ok.st', file([{ kind: 'linear', in: 4, out: 5 }, { kind: 'tanh' }, { kind: 'linear', in: 5, out: 3 }]));
    expect(loadModel(q).net.spec().layers.map((l) => l.kind)).toEqual(['linear', 'tanh', 'linear']);
  });
});

/**
 * A file of Linear layers by hand, in either layout: handgrad's W{k} [in,out], b{k} [out], or
 * PyTorch's {i}.weight [out,in], {i}.bias [out] at i = 0, 2, 4, … (F64, each filled with
 * 0.1·(index + 1)), with some tensors' values given instead.
 */
function linears(layout: 'handgrad' | 'torch', dims: [number, number][], edit: Record<string, number[]> = {}, meta: Record<string, string> = { activation: 'relu' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: meta };
  const parts: Uint8Array[] = [];
  let at = 0;
  const add = (name: string, shape: number[]) => {
    const values = edit[name] ?? Array.from({ length: shape.reduce((x, y) => x * y, 1) }, (_, j) => 0.1 * (j + 1));
    header[name] = { dtype: 'F64', shape, data_offsets: [at, at + 8 * values.length] };
    at += 8 * values.length;
    parts.push(f64(...values));
  };
  dims.forEach(([i, o], k) => {
    if (layout === 'torch') {
      add(`${2 * k}.weight`, [o, i]);
      add(`${2 * k}.bias`, [o]);
    } else {
      add(`W${k + 1}`, [i, o]);
      add(`b${k + 1}`, [o]);
    }
  });
  return st(header, Buffer.concat(parts));
}

describe('F15: a Linear with a zero dimension is refused by every loader', () => {
  it('W1 [0,5] (D = 0), W2 [5,0] with b2 [0] (C = 0), and a state_dict\'s 0.weight [5,0]', () => {
    refusedByEvery(put('d0.st', net([[0, 5], [5, 3]], { activation: 'relu' })), /positive dimensions for W1 but received shape \[0,5\]/);
    refusedByEvery(put('c0.st', net([[4, 5], [5, 0]], { activation: 'relu' })), /positive dimensions for W2 but received shape \[5,0\]/);
    refusedByEvery(put('d0-torch.st', linears('torch', [[0, 5], [5, 3]])), /positive dimensions for 0\.weight but received shape \[5,0\]/);
  });
});

describe('F16: NaN and ±Infinity weights are refused on load (naming file, tensor, index) and on save', () => {
  // Values 0.1·(j + 1) as net() writes them, one replaced.
  const w = (n: number, at: number, bad: number) => Array.from({ length: n }, (_, j) => (j === at ? bad : 0.1 * (j + 1)));
  it('NaN in W1, Infinity in b2: every loader; -Infinity in a deeper net\'s W3: every loader of one', () => {
    refusedByEvery(put('nan-w1.st', linears('handgrad', [[4, 5], [5, 3]], { W1: w(20, 3, NaN) })), /finite values for tensor "W1" but received NaN at index 3/);
    refusedByEvery(put('inf-b2.st', linears('handgrad', [[4, 5], [5, 3]], { b2: w(3, 2, Infinity) })), /finite values for tensor "b2" but received Infinity at index 2/);
    const deep = put('inf-w3.st', linears('handgrad', [[4, 5], [5, 5], [5, 3]], { W3: w(15, 14, -Infinity) }));
    for (const load of [() => loadSequential(deep), () => loadModel(deep), () => Trainer.load(deep)]) {
      const e = err(load);
      expect(e.code).toBe('ERR_FILE');
      expect(e.message).toMatch(/finite values for tensor "W3" but received -Infinity at index 14/);
    }
  });
  it("a state_dict's -Infinity is named by its own tensor and index (before the transpose)", () => {
    refusedByEvery(put('inf-torch.st', linears('torch', [[4, 5], [5, 3]], { '2.weight': w(15, 7, -Infinity) })), /finite values for tensor "2\.weight" but received -Infinity at index 7/);
  });
  it('the same files with finite values load (the control)', () => {
    for (const [name, load] of LOADERS) {
      expect(() => load(put('finite.st', linears('handgrad', [[4, 5], [5, 3]]))), name).not.toThrow();
      expect(() => load(put('finite-torch.st', linears('torch', [[4, 5], [5, 3]]))), name).not.toThrow();
    }
  });
  it('a net with a NaN weight is not written: saveParams, saveSequential, saveModel, Model.save', () => {
    const p = initParams({ D: 2, H: 3, C: 2 }, { seed: 1 });
    p.W2[4] = NaN;
    const seq = new Sequential([new Linear(2, 3), new ReLU(), new Linear(3, 2)]);
    const model = loadModel(saveModel(seq)!);
    seq.params.b1[1] = Infinity;
    model.net.params.W1[5] = -Infinity;
    const cases: [string, () => unknown, RegExp][] = [
      ['saveParams', () => saveParams(join(dir, 'nan.st'), p), /finite values in W2 but received NaN at index 4/],
      ['saveSequential', () => saveSequential(join(dir, 'nan.st'), seq), /finite values in b1 but received Infinity at index 1/],
      ['saveModel', () => saveModel(seq), /finite values in b1 but received Infinity at index 1/],
      ['Model.save', () => model.save(), /finite values in W1 but received -Infinity at index 5/],
    ];
    for (const [name, save, message] of cases) {
      const e = err(save);
      expect(e, name).toBeInstanceOf(RangeError);
      expect(e.message, name).toMatch(message);
    }
  });
});

describe('an empty path is a TypeError naming it', () => {
  it("saveParams(''), saveSequential(''), saveSafetensors('')", () => {
    const p = initParams({ D: 2, H: 3, C: 2 }, { seed: 1 });
    const seq = new Sequential([new Linear(2, 3), new ReLU(), new Linear(3, 2)]);
    for (const fn of [() => saveParams('', p), () => saveSequential('', seq), () => saveSafetensors('', { a: { shape: [1], data: Float64Array.of(1) } })]) {
      const e = err(fn);
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/for path but received/);
    }
  });
});

void loadParams;
