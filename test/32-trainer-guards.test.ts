// The Trainer never trains on bad numbers and never loses an error: every numeric option is
// checked at construction, a non-finite update stops training with the last finite weights in
// place (fit, fitSync and step, every backend), a throwing callback rejects fit with its error,
// and every counter and setting read from a checkpoint is checked (ERR_FILE naming the key).
// The async fit runs dist/ (worker_threads needs JavaScript): `npx tsc -p tsconfig.build.json`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initParams, Trainer, xor, type TrainerOptions } from '../lib';
import { saveSafetensors } from '../lib/io/safetensors';
import type { TensorInput } from '../lib/io/safetensors';
import type { TrainState } from '../lib/train/state';
import { describeBackends, readSafetensorsFile, sameBits, thrown } from './helpers';

const params = () => initParams({ D: 2, H: 8, C: 2 }, { seed: 0 });

describe('every numeric option is checked finite and in range at construction', () => {
  // [option, value, error kind]: PyTorch's torch.optim ranges (lr ≥ 0, momentum ≥ 0, 0 ≤ β < 1,
  // ε ≥ 0, weight decay ≥ 0; Nesterov needs momentum > 0), finiteness, and this package's own
  // (lr > 0, momentum ≤ 1, ε ≤ 1, integer sizes, a seed whose epoch shuffles stay distinct).
  const cases: [string, Record<string, unknown>, typeof TypeError | typeof RangeError, RegExp][] = [
    ['lr Infinity', { lr: Infinity }, RangeError, /for opts\.lr but received Infinity/],
    ['lr NaN', { lr: NaN }, RangeError, /for opts\.lr but received NaN/],
    ['lr a string', { lr: '0.1' }, TypeError, /Expected a number for opts\.lr/],
    ['momentum Infinity', { optimizer: 'momentum', momentum: Infinity }, RangeError, /for opts\.momentum but received Infinity/],
    ['momentum NaN', { optimizer: 'momentum', momentum: NaN }, RangeError, /for opts\.momentum but received NaN/],
    ['momentum −0.1', { optimizer: 'momentum', momentum: -0.1 }, RangeError, /for opts\.momentum/],
    ['Nesterov without momentum', { optimizer: 'nesterov', momentum: 0 }, RangeError, /momentum > 0 .*for opts\.momentum but received 0/],
    ['beta1 = 1', { optimizer: 'adam', beta1: 1 }, RangeError, /\[0, 1\) for opts\.beta1 but received 1/],
    ['beta2 NaN', { optimizer: 'adam', beta2: NaN }, RangeError, /for opts\.beta2 but received NaN/],
    ['beta2 −0.5', { optimizer: 'adam', beta2: -0.5 }, RangeError, /for opts\.beta2/],
    ['epsilon −1e-8', { optimizer: 'adam', epsilon: -1e-8 }, RangeError, /for opts\.epsilon/],
    ['epsilon Infinity', { optimizer: 'adam', epsilon: Infinity }, RangeError, /for opts\.epsilon but received Infinity/],
    ['weightDecay Infinity', { weightDecay: Infinity }, RangeError, /finite .*for opts\.weightDecay but received Infinity/],
    ['weightDecay −1', { weightDecay: -1 }, RangeError, /for opts\.weightDecay/],
    ['weightDecay NaN', { optimizer: 'adamw', weightDecay: NaN }, RangeError, /for opts\.weightDecay but received NaN/],
    ['step gamma Infinity', { schedule: { type: 'step', every: 2, gamma: Infinity } }, RangeError, /for opts\.schedule\.gamma/],
    ['step gamma NaN', { schedule: { type: 'step', every: 2, gamma: NaN } }, RangeError, /for opts\.schedule\.gamma/],
    ['step every Infinity', { schedule: { type: 'step', every: Infinity } }, RangeError, /for opts\.schedule\.every/],
    ['cosine minLr Infinity', { schedule: { type: 'cosine', epochs: 4, minLr: Infinity } }, RangeError, /for opts\.schedule\.minLr but received Infinity/],
    ['cosine minLr NaN', { schedule: { type: 'cosine', epochs: 4, minLr: NaN } }, RangeError, /for opts\.schedule\.minLr/],
    ['cosine minLr a string', { schedule: { type: 'cosine', epochs: 4, minLr: '0' } }, TypeError, /for opts\.schedule\.minLr/],
    ['cosine epochs 0.5', { schedule: { type: 'cosine', epochs: 0.5 } }, RangeError, /for opts\.schedule\.epochs/],
    ['batchSize Infinity', { batchSize: Infinity }, RangeError, /for opts\.batchSize/],
    ['batchSize 2.5', { batchSize: 2.5 }, RangeError, /for opts\.batchSize/],
    ['seed Infinity', { seed: Infinity }, TypeError, /an integer for opts\.seed but received Infinity/],
    ['seed beyond 2^53', { seed: 2 ** 60 }, RangeError, /safe integer .*for opts\.seed/],
  ];
  it.each(cases)('%s', (_, opts, Kind, words) => {
    const e = thrown(() => new Trainer(params(), opts as never));
    expect(e).toBeInstanceOf(Kind);
    expect(e.message).toMatch(words);
  });

  it("fit's numeric options too (epochs, progressEvery, earlyStop)", () => {
    const t = new Trainer(params());
    const { X, y } = xor({ seed: 0, n: 8 });
    expect(() => t.fitSync(X, y, { epochs: Infinity })).toThrow(/for opts\.epochs/);
    expect(() => t.fitSync(X, y, { progressEvery: NaN })).toThrow(/for opts\.progressEvery/);
    expect(() => t.fitSync(X, y, { earlyStop: { patience: Infinity } })).toThrow(/for opts\.earlyStop\.patience/);
    expect(() => t.fitSync(X, y, { earlyStop: { patience: 2, minDelta: Infinity } })).toThrow(/for opts\.earlyStop\.minDelta/);
    expect(t.steps).toBe(0);
  });

  it('a large seed still gives each epoch its own shuffle (the shuffle seed is taken mod 2^32)', () => {
    // seed·1000003 + epoch rounded the epoch away for seeds past ~2^33: every epoch in one order.
    // lr = 1e-300 leaves the weights as they are, so the running losses of batch-size-1 steps
    // spell out the order of the examples.
    const { X, y } = xor({ seed: 3, n: 64 });
    const orders = (seed: number, epochs: number) => {
      const t = new Trainer(params(), { seed, batchSize: 1, lr: 1e-300 });
      const seen: number[][] = Array.from({ length: epochs }, () => []);
      t.fitSync(X, y, { epochs, progressEvery: 1, onProgress: (e) => e.type === 'step' && seen[e.epoch - 1].push(e.loss) });
      return seen;
    };
    const [a, b] = orders(2 ** 40, 2);
    expect(sameBits(a, b)).toBe(false);
    // A seed that never needed it keeps its shuffles (mod 2^32 arithmetic agrees with the exact one).
    const [c, d] = orders(7, 2);
    const [e, f] = orders(7 + 2 ** 32, 2);
    expect(sameBits(c, d)).toBe(false);
    expect(sameBits(c, e) && sameBits(d, f)).toBe(true);
  });
});

/** Data whose gradients are large enough that lr = 1e308 overflows on the first update. */
const big = () => {
  const { X, y } = xor({ seed: 0, n: 64 });
  return { X: X.map((x) => 100 * x), y };
};

describeBackends('a non-finite update stops training with the last finite weights in place', (backend) => {
  /** Two Trainers take the same two small steps; t is then given a third whose update overflows. */
  const overflowAtStep3 = (opts: TrainerOptions) => {
    const make = () => new Trainer(params(), { ...opts, batchSize: 2, backend });
    const t = make();
    const ref = make(); // the same two steps, never given the third
    const small = new Float64Array([1e-12, 2e-12, -1e-12, 3e-12]);
    for (const u of [t, ref]) {
      u.step(small, [0, 1]);
      u.step(small, [1, 0]);
    }
    return { t, ref, e: thrown(() => t.step(new Float64Array([1e300, 1, 1e300, 1]), [0, 1])) };
  };

  it('step: the update of step 3 overflows; weights and optimizer state are those after step 2', () => {
    const { t, ref, e } = overflowAtStep3({ optimizer: 'momentum', lr: 1e10 });
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/^Expected finite values after the update of step 3 for (W1|b1|W2|b2) but received -?Infinity|NaN at index \d+/);
    expect(t.steps).toBe(2);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], ref.params[k])).toBe(true);
    // The momentum buffers were rolled back too: one more ordinary step agrees to the bit.
    const next = new Float64Array([0.5, -0.25, 0.125, 1]);
    t.step(next, [1, 1]);
    ref.step(next, [1, 1]);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], ref.params[k])).toBe(true);
    expect(t.steps).toBe(3);
  });

  it('fitSync with lr = 1e308: a RangeError naming the tensor and step 1, the initial weights kept', () => {
    const { X, y } = big();
    const p = params();
    const t = new Trainer(p, { lr: 1e308, batchSize: 16, backend });
    const e = thrown(() => t.fitSync(X, y, { epochs: 2 }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/after the update of step 1 for (W1|b1|W2|b2) but received/);
    expect(t.steps).toBe(0);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], p[k])).toBe(true);
  });

  it('float32: an update that overflows only the float32 store (finite in double) is caught too', () => {
    const p = initParams({ D: 2, H: 8, C: 2 }, { seed: 0, dtype: 'float32' });
    const t = new Trainer(p, { lr: 1e33, batchSize: 2, backend });
    const e = thrown(() => t.step(new Float32Array([1e8, -1e8, 3e7, 2e8]), [0, 1]));
    expect(e.message).toMatch(/after the update of step 1 for (W1|b1|W2|b2) but received -?Infinity/);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], p[k])).toBe(true);
  });

  it('Adam with AMSGrad: the update of step 3 overflows v; W, m, v and vmax are those after step 2', () => {
    // The C++ rule copies each value into the step's saved buffers in its own loop (optimizerUpdate's
    // savedW…savedVmax): every slot must come back, or the next step would differ from the reference's.
    // Step 3's gradient (~1e300) squares past the float64 range: v = Infinity, caught by the update.
    const { t, ref, e } = overflowAtStep3({ optimizer: 'adam', amsgrad: true, lr: 0.01 });
    expect(e).toBeInstanceOf(RangeError);
    expect(t.steps).toBe(2);
    const next = new Float64Array([0.5, -0.25, 0.125, 1]);
    t.step(next, [1, 1]);
    ref.step(next, [1, 1]);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], ref.params[k])).toBe(true);
    // The optimizer state is private: the test looks inside, as bench/train.ts does.
    const slots = (u: Trainer) => (u as unknown as { state: TrainState }).state.slots;
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) {
      for (const slot of ['m', 'v', 'vmax'] as const) expect(sameBits(slots(t)[k][slot]!, slots(ref)[k][slot]!), `${k}.${slot}`).toBe(true);
    }
  });

  it('Adam with ε = 0 and a gradient that is zero from the start: 0/0 is caught, not written', () => {
    // Feature 1 is 0 in every row, so its W1 row never gets a gradient: m = v = 0 and m/√v = NaN.
    const t = new Trainer(params(), { optimizer: 'adam', epsilon: 0, lr: 0.01, batchSize: 4, backend });
    const X = new Float64Array([1, 0, -1, 0, 0.5, 0, 2, 0]);
    const before = t.snapshot();
    expect(() => t.step(X, [0, 1, 1, 0])).toThrow(/after the update of step 1 for W1 but received NaN/);
    expect(sameBits(t.params.W1, before.W1)).toBe(true);
  });
});

describe('fit (worker thread): a non-finite update rejects, the Trainer stays usable', () => {
  it('lr = 1e308 rejects with the RangeError; the weights are the initial ones', async () => {
    const { X, y } = big();
    const p = params();
    const t = new Trainer(p, { lr: 1e308, batchSize: 16 });
    const e = await t.fit(X, y, { epochs: 3 }).then(() => new Error('resolved'), (err: Error) => err);
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/after the update of step 1 for (W1|b1|W2|b2)/);
    expect(t.busy).toBe(false);
    expect(t.steps).toBe(0);
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(t.params[k], p[k])).toBe(true);
  });
});

describe('a throwing callback rejects fit with that same error', () => {
  const { X, y } = xor({ seed: 1, n: 64 });
  const make = () => new Trainer(params(), { lr: 0.1, batchSize: 8 });

  it('onProgress throwing on a step event: fit rejects with it (not { stopped: aborted })', async () => {
    const t = make();
    const boom = new Error('boom from onProgress');
    const calls: number[] = [];
    const r = await t.fit(X, y, {
      epochs: 50, progressEvery: 1,
      onProgress: (e) => {
        calls.push(e.type === 'step' ? e.step : -1);
        if (calls.length === 3) throw boom;
      },
    }).then((v) => v, (err: unknown) => err);
    expect(r).toBe(boom);
    expect(calls.length).toBe(3); // not called again after it threw
    expect(t.busy).toBe(false);
    // Usable afterwards: a plain fit runs to completion.
    expect((await t.fit(X, y, { epochs: 1 })).stopped).toBe('completed');
  });

  it('onProgress throwing on an epoch event, and a thrown non-Error value, reject with that value', async () => {
    const t = make();
    const r = await t.fit(X, y, { epochs: 5, onProgress: () => { throw 'a string'; } }).then((v) => v, (err: unknown) => err);
    expect(r).toBe('a string');
    const boom = new TypeError('epoch boom');
    const r2 = await t.fit(X, y, { epochs: 5, onProgress: (e) => { if (e.type === 'epoch') throw boom; } }).then((v) => v, (err: unknown) => err);
    expect(r2).toBe(boom);
    expect(t.busy).toBe(false);
  });

  it('fitSync throws it, and the Trainer stays usable', () => {
    const t = make();
    const boom = new Error('sync boom');
    expect(thrown(() => t.fitSync(X, y, { epochs: 3, progressEvery: 2, onProgress: () => { throw boom; } }))).toBe(boom);
    expect(t.fitSync(X, y, { epochs: 1 }).stopped).toBe('completed');
  });
});

describe('every counter and setting read from a checkpoint is checked (ERR_FILE naming the key)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hg-guards-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const { X, y } = xor({ seed: 2, n: 64 });
  const saved = join(dir, 'good.safetensors');
  const t = new Trainer(params(), { optimizer: 'adam', lr: 0.01, batchSize: 16 });
  t.fitSync(X, y, { epochs: 2 });
  t.save(saved);

  /** The saved checkpoint rewritten with some metadata changed (undefined: removed) or tensors changed. */
  const tampered = (meta: Record<string, string | undefined>, tensors: Record<string, TensorInput | undefined> = {}) => {
    const f = readSafetensorsFile(saved);
    const all: Record<string, TensorInput | undefined> = {};
    for (const [k, d] of Object.entries(f.tensors)) all[k] = { dtype: 'F64', shape: [d.length], data: d as Float64Array };
    // The parameters keep their 2-D shapes.
    for (const [k, shape] of [['W1', [2, 8]], ['W2', [8, 2]]] as const) all[k] = { dtype: 'F64', shape: [...shape], data: f.tensors[k] as Float64Array };
    Object.assign(all, tensors);
    const m: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...f.metadata, ...meta })) if (v !== undefined) m[k] = v;
    const path = join(dir, `t${Math.random().toString(36).slice(2)}.safetensors`);
    saveSafetensors(path, Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as Record<string, TensorInput>, m);
    return path;
  };
  const fileError = (path: string, words: RegExp) => {
    const e = thrown(() => Trainer.load(path)) as Error & { code?: string };
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toMatch(words);
  };

  it('the untouched file loads (the control for every case below)', () => {
    const r = Trainer.load(saved);
    expect([r.steps, r.epochs]).toEqual([t.steps, t.epochs]);
  });

  it.each(['-1', '0.5', '1e400', '', ' 7', '0x10', 'NaN', 'Infinity', '9007199254740993'])('steps %j', (s) => {
    fileError(tampered({ steps: s }), /__metadata__\.steps/);
  });

  it.each(['-400', '1.5', 'abc', '1e3'])('epochs %j', (s) => {
    fileError(tampered({ epochs: s }), /__metadata__\.epochs/);
  });

  it.each([
    ['null', /__metadata__\.trainer/],
    ['[]', /__metadata__\.trainer/],
    ['7', /__metadata__\.trainer/],
    ['"adam"', /__metadata__\.trainer/],
    ['{"lr":"0.1"}', /__metadata__\.trainer\.lr/],
    ['{"lr":-1}', /__metadata__\.trainer\.lr/],
    ['{"lr":1e400}', /__metadata__\.trainer\.lr/],
    ['{"batchSize":0}', /__metadata__\.trainer\.batchSize/],
    ['{"seed":0.5}', /__metadata__\.trainer\.seed/],
    ['{"backend":"gpu"}', /__metadata__\.trainer\.backend/],
    ['{"optimizer":null}', /__metadata__\.trainer\.optimizer/],
    ['{"optimizer":{"name":"adam","beta1":1}}', /__metadata__\.trainer\.optimizer\.beta1/],
    ['{"optimizer":{"name":"sgd","weightDecay":-1}}', /__metadata__\.trainer\.optimizer\.weightDecay/],
    ['{"schedule":{"type":"cosine","epochs":4,"minLr":-1}}', /__metadata__\.trainer\.schedule\.minLr/],
    ['{"learningRate":0.1}', /__metadata__\.trainer/],
  ] as const)('trainer %s', (json, words) => {
    fileError(tampered({ trainer: json }), words);
  });

  it('optimizer state of the wrong shape, length, dtype or with non-finite values', () => {
    const f = readSafetensorsFile(saved);
    const m = f.tensors['optimizer.W1.m'] as Float64Array;
    fileError(tampered({}, { 'optimizer.W1.m': { dtype: 'F64', shape: [2, 8], data: m } }), /optimizer\.W1\.m/);
    fileError(tampered({}, { 'optimizer.W1.m': { dtype: 'F64', shape: [15], data: m.subarray(0, 15) } }), /optimizer\.W1\.m/);
    fileError(tampered({}, { 'optimizer.W1.v': { dtype: 'F32', shape: [16], data: new Float32Array(16) } }), /optimizer\.W1\.v/);
    const nan = m.slice();
    nan[3] = NaN;
    fileError(tampered({}, { 'optimizer.W1.m': { dtype: 'F64', shape: [16], data: nan } }), /finite .*optimizer\.W1\.m/);
    // A Trainer checkpoint (steps > 0, Adam) without its Adam state cannot continue exactly.
    fileError(tampered({}, { 'optimizer.b2.v': undefined }), /optimizer\.b2\.v/);
  });
});
