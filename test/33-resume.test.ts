// Resume is exact: a Trainer stopped inside an epoch (abort, a thrown callback) continues from the
// very batch it stopped at — by fit again, or by save + Trainer.load in a fresh process + fit —
// and ends with the weights of an uninterrupted run, bit for bit. snapshot() during an async fit
// is always the weights after a whole step. The truth is the same Trainer code run without the
// interruption (fitSync from the start), and per-step states recorded on the caller's thread.
// The async fit and the child process run dist/: `npx tsc -p tsconfig.build.json` first.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { initParams, Linear, ReLU, Sequential, SoftmaxCrossEntropy, Tanh, Trainer, xor } from '../lib';
import { saveSafetensors, type TensorInput } from '../lib/io/safetensors';
import type { BackendName, FloatArray } from '../lib/types';
import { describeBackends, readSafetensorsFile, sameBits, thrown } from './helpers';

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist', 'lib', 'index.js');
const NAMES = ['W1', 'b1', 'W2', 'b2'] as const;
const dir = mkdtempSync(join(tmpdir(), 'hg-resume-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 100 examples in batches of 8: 13 steps an epoch, the last one ragged (4 examples).
const DATA = { seed: 5, n: 100 };
const EPOCHS = 3;
const STEPS = 13;
const settings = (backend: BackendName) =>
  ({ optimizer: 'adam', lr: 0.02, batchSize: 8, seed: 11, backend, schedule: { type: 'step', every: 1, gamma: 0.9 } }) as const;
const fresh = (backend: BackendName) => new Trainer(initParams({ D: 2, H: 8, C: 2 }, { seed: 4 }), settings(backend));

type Tensors = Readonly<Record<(typeof NAMES)[number], FloatArray>>;
const sameParams = (a: Tensors, b: Tensors) => NAMES.every((k) => sameBits(a[k], b[k]));

describeBackends('abort + resume gives the weights of an uninterrupted run, bit for bit', (backend) => {
  const { X, y } = xor(DATA);
  const straight = fresh(backend);
  const history = straight.fitSync(X, y, { epochs: EPOCHS }).history;

  it('fitSync stopped at step 5 of epoch 2, then fitSync again: only the 8 steps left of it are run', () => {
    const t = fresh(backend);
    const ac = new AbortController();
    const r = t.fitSync(X, y, {
      epochs: EPOCHS, signal: ac.signal, progressEvery: 1,
      onProgress: (e) => e.type === 'step' && e.epoch === 2 && e.step === 5 && ac.abort(),
    });
    expect(r.stopped).toBe('aborted');
    expect([t.steps, t.epochs]).toEqual([STEPS + 5, 1]);
    const rest = t.fitSync(X, y, { epochs: EPOCHS - 1 });
    expect(t.steps).toBe(EPOCHS * STEPS);
    expect(sameParams(t.params, straight.params)).toBe(true);
    // The resumed epoch reports the whole epoch's loss and accuracy, as the uninterrupted one did.
    expect(rest.history.map((h) => [h.epoch, h.loss, h.accuracy])).toEqual(history.slice(1).map((h) => [h.epoch, h.loss, h.accuracy]));
  });

  it('stopped every 4 steps (through epoch boundaries and the ragged last batch), resumed each time', () => {
    const t = fresh(backend);
    let runs = 0;
    while (t.epochs < EPOCHS && runs < 40) { // (before the fix, each run replayed its epoch from the start: forever)
      const ac = new AbortController();
      let n = 0;
      t.fitSync(X, y, { epochs: EPOCHS - t.epochs, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && ++n === 4 && ac.abort() });
      runs++;
    }
    expect(runs).toBe(10); // ⌈39 / 4⌉
    expect(t.steps).toBe(EPOCHS * STEPS);
    expect(sameParams(t.params, straight.params)).toBe(true);
  });

  it('a throwing callback stops it mid-epoch too; the next fit resumes exactly', () => {
    const t = fresh(backend);
    const boom = new Error('stop here');
    expect(thrown(() => t.fitSync(X, y, { epochs: EPOCHS, progressEvery: 3, onProgress: (e) => { if (e.type === 'step' && e.epoch === 1 && e.step === 9) throw boom; } }))).toBe(boom);
    expect(t.steps).toBe(9);
    t.fitSync(X, y, { epochs: EPOCHS });
    expect(sameParams(t.params, straight.params)).toBe(true);
  });

  it('fit (worker thread) aborted mid-epoch, then fit again', async () => {
    const t = fresh(backend);
    const ac = new AbortController();
    // The worker trains on until the main thread's abort lands, one step or (on a loaded machine)
    // many later: far more epochs than that can take, so the run is always stopped by the abort.
    const r = await t.fit(X, y, {
      epochs: 10_000, signal: ac.signal, progressEvery: 1,
      onProgress: (e) => e.type === 'step' && e.epoch === 1 && e.step === 6 && ac.abort(),
    });
    expect(r.stopped).toBe('aborted');
    expect(t.steps).toBeGreaterThanOrEqual(6);
    // Finish the epoch in progress (fit counts it as its first) and one more; an uninterrupted run
    // of as many epochs ends on the same bits.
    const total = t.epochs + 2;
    await t.fit(X, y, { epochs: 2 });
    expect(t.steps).toBe(total * STEPS);
    const uninterrupted = total === EPOCHS ? straight : fresh(backend);
    if (uninterrupted !== straight) uninterrupted.fitSync(X, y, { epochs: total });
    expect(sameParams(t.params, uninterrupted.params)).toBe(true);
  });

  it('save mid-epoch + Trainer.load in a fresh process + fit', () => {
    const t = fresh(backend);
    const ac = new AbortController();
    t.fitSync(X, y, { epochs: EPOCHS, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.epoch === 2 && e.step === 10 && ac.abort() });
    const mid = join(dir, `mid-${backend}.safetensors`);
    const out = join(dir, `out-${backend}.safetensors`);
    t.save(mid);
    const child = `
      const h = require(${JSON.stringify(DIST)});
      const { X, y } = h.xor(${JSON.stringify(DATA)});
      const t = h.Trainer.load(${JSON.stringify(mid)});
      if (t.steps !== ${STEPS + 10} || t.epochs !== 1) throw new Error('counters ' + t.steps + ' ' + t.epochs);
      t.fitSync(X, y, { epochs: ${EPOCHS - 1} });
      t.save(${JSON.stringify(out)});`;
    const r = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const saved = readSafetensorsFile(out).tensors;
    expect(sameParams(saved as unknown as Tensors, straight.params)).toBe(true);
  });

  it("an epoch stopped on another data-parallel world size is refused, naming both (its rows done are that layout's shard); a malformed 'ranks' is ERR_FILE", () => {
    const t = fresh(backend);
    const ac = new AbortController();
    t.fitSync(X, y, { epochs: EPOCHS, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.epoch === 1 && e.step === 4 && ac.abort() });
    const mid = join(dir, `ranks-${backend}.safetensors`);
    t.save(mid);
    const file = readSafetensorsFile(mid);
    expect(JSON.parse(file.metadata.position).ranks).toBeUndefined(); // a single process writes none
    const rewrite = (ranks: unknown) => {
      const path = join(dir, `ranks-${String(ranks)}-${backend}.safetensors`);
      const position = { ...JSON.parse(file.metadata.position), ranks };
      const tensors: Record<string, TensorInput> = {};
      for (const [k, d] of Object.entries(file.tensors)) {
        const shape = k === 'W1' ? [2, 8] : k === 'W2' ? [8, 2] : [d.length];
        tensors[k] = { dtype: d instanceof Float32Array ? 'F32' : d instanceof Int32Array ? 'I32' : 'F64', shape, data: d };
      }
      saveSafetensors(path, tensors, { ...file.metadata, position: JSON.stringify(position) });
      return path;
    };
    const e = thrown(() => Trainer.load(rewrite(2)).fitSync(X, y, { epochs: 1 }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/resume on 2 ranks .* but this fit runs on 1/);
    for (const bad of [1, 2.5, 'two']) expect((thrown(() => Trainer.load(rewrite(bad))) as { code?: string }).code).toBe('ERR_FILE');
    // The file as saved resumes.
    expect(() => Trainer.load(mid).fitSync(X, y, { epochs: 1 })).not.toThrow();
  });
});

describe('a Sequential (three Linear layers) resumes exactly too, through save and Trainer.load', () => {
  it('stopped mid-epoch, saved, loaded, finished: the weights of the uninterrupted run', () => {
    const { X, y } = xor(DATA);
    const net = () => new Sequential([
      new Linear(2, 6, { W: new Float64Array(12).map((_, i) => Math.sin(i + 1)), b: new Float64Array(6) }), new Tanh(),
      new Linear(6, 5, { W: new Float64Array(30).map((_, i) => Math.cos(i)), b: new Float64Array(5).fill(0.1) }), new ReLU(),
      new Linear(5, 2, { W: new Float64Array(10).map((_, i) => Math.sin(2 * i)), b: new Float64Array(2) }),
    ]);
    const opts = { optimizer: 'nesterov', lr: 0.05, batchSize: 8, seed: 3 } as const;
    const straight = new Trainer(net(), opts);
    straight.fitSync(X, y, { epochs: 2 });
    const t = new Trainer(net(), opts);
    const ac = new AbortController();
    t.fitSync(X, y, { epochs: 2, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.epoch === 1 && e.step === 7 && ac.abort() });
    const path = join(dir, 'seq.safetensors');
    t.save(path);
    const r = Trainer.load(path);
    r.fitSync(X, y, { epochs: 2 });
    expect(r.steps).toBe(2 * STEPS);
    for (const k of ['W1', 'b1', 'W2', 'b2', 'W3', 'b3']) expect(sameBits((r.params as Record<string, FloatArray>)[k], straight.params[k])).toBe(true);
  });
});

describe("a class-weighted loss's epoch record resumes exactly: the weights it is divided by travel in the position", () => {
  it("stopped mid-epoch, saved, loaded, finished: the uninterrupted run's epoch loss and weights, bit for bit", () => {
    const { X, y } = xor(DATA);
    const net = () => Sequential.mlp([2, 6, 2], { seed: 8, loss: new SoftmaxCrossEntropy({ reduction: 'sum', weight: new Float64Array([0.25, 3]) }) });
    const opts = { optimizer: 'sgd', lr: 0.01, batchSize: 8, seed: 3 } as const;
    const straight = new Trainer(net(), opts);
    const want = straight.fitSync(X, y, { epochs: 1 }).history[0];
    const t = new Trainer(net(), opts);
    const ac = new AbortController();
    t.fitSync(X, y, { epochs: 1, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.step === 5 && ac.abort() });
    const path = join(dir, 'weighted.safetensors');
    t.save(path);
    // Σ w[y] of the 40 rows done: not their number, so it is written.
    const position = JSON.parse(readSafetensorsFile(path).metadata.position) as { done: number; weightSum?: number };
    expect(position.done).toBe(40);
    expect(position.weightSum).toBeGreaterThan(0);
    expect(position.weightSum).not.toBe(40);
    const r = Trainer.load(path);
    const got = r.fitSync(X, y, { epochs: 1 }).history[0];
    expect([got.loss, got.accuracy]).toEqual([want.loss, want.accuracy]);
    for (const k of ['W1', 'b1', 'W2', 'b2']) expect(sameBits((r.params as Record<string, FloatArray>)[k], straight.params[k])).toBe(true);
  });
});

describe('a position inside an epoch holds only for the data it was shuffled over', () => {
  const { X, y } = xor(DATA);
  const stopped = () => {
    const t = fresh('native');
    const ac = new AbortController();
    t.fitSync(X, y, { epochs: 2, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.step === 3 && ac.abort() });
    return t;
  };

  it('fit on data of another size mid-epoch is a RangeError naming y (nothing trained)', () => {
    const t = stopped();
    const other = xor({ seed: 5, n: 60 });
    expect(() => t.fitSync(other.X, other.y)).toThrow(/100 examples .*for y but received/);
    expect(() => t.fit(other.X, other.y)).toThrow(RangeError); // synchronously, as fit's other argument errors
    expect(t.steps).toBe(3);
  });

  it("a checkpoint's position is checked on load (ERR_FILE naming the key)", () => {
    const t = stopped();
    const path = join(dir, 'pos.safetensors');
    t.save(path);
    const f = readSafetensorsFile(path);
    const position = JSON.parse(f.metadata.position) as Record<string, unknown>;
    expect(position).toMatchObject({ epoch: 1, done: 24, examples: 100 });
    const rewrite = (value: string) => {
      const tensors: Record<string, TensorInput> = {};
      for (const [k, d] of Object.entries(f.tensors)) tensors[k] = { dtype: 'F64', shape: [d.length], data: d as Float64Array };
      tensors.W1 = { dtype: 'F64', shape: [2, 8], data: f.tensors.W1 as Float64Array };
      tensors.W2 = { dtype: 'F64', shape: [8, 2], data: f.tensors.W2 as Float64Array };
      const p = join(dir, `pos-${Math.random().toString(36).slice(2)}.safetensors`);
      saveSafetensors(p, tensors, { ...f.metadata, position: value });
      return p;
    };
    const bad: [unknown, RegExp][] = [
      [null, /__metadata__\.position/],
      [[], /__metadata__\.position/],
      [{ ...position, done: -8 }, /__metadata__\.position\.done/],
      [{ ...position, done: 100 }, /__metadata__\.position\.done/],
      [{ ...position, done: 2.5 }, /__metadata__\.position\.done/],
      [{ ...position, examples: 0 }, /__metadata__\.position\.examples/],
      [{ ...position, epoch: 5 }, /__metadata__\.position\.epoch/],
      [{ ...position, lossSum: 'x' }, /__metadata__\.position\.lossSum/],
      [{ ...position, correct: 25 }, /__metadata__\.position\.correct/],
      [{ ...position, shuffleSeed: 0.5 }, /__metadata__\.position\.shuffleSeed/],
    ];
    for (const [value, words] of bad) {
      const e = thrown(() => Trainer.load(rewrite(JSON.stringify(value)))) as Error & { code?: string };
      expect([e.code, e.message]).toEqual(['ERR_FILE', expect.stringMatching(words)]);
    }
    expect(thrown(() => Trainer.load(rewrite('{oops')))).toMatchObject({ code: 'ERR_FILE', message: expect.stringMatching(/__metadata__\.position/) });
    // The untouched value loads and resumes where it stopped.
    expect(Trainer.load(rewrite(f.metadata.position)).steps).toBe(3);
  });
});

/** A large two-layer run (Adam over a 256×512 W1: the update is a good part of each step), its per-step states recorded. */
function largeRun(epochs: number) {
  const D = 256, H = 512, C = 10, n = 128;
  const X = new Float64Array(n * D).map((_, i) => Math.sin(i * 0.37));
  const y = Array.from({ length: n }, (_, i) => i % C);
  const opts = { optimizer: 'adam', lr: 1e-3, batchSize: 32, seed: 1 } as const;
  const p = initParams({ D, H, C }, { seed: 9 });
  const fingerprint = (q: Tensors) => {
    const h = createHash('sha1');
    for (const k of NAMES) h.update(new Uint8Array(q[k].buffer, q[k].byteOffset, q[k].byteLength));
    return h.digest('hex');
  };
  // The state after each step (fingerprint → step), recorded on this thread where nothing runs concurrently.
  const ref = new Trainer(p, opts);
  const states = new Map([[fingerprint(ref.snapshot()), 0]]);
  ref.fitSync(X, y, { epochs, progressEvery: 1, onProgress: (e) => e.type === 'step' && states.set(fingerprint(ref.snapshot()), ref.steps) });
  return { X, y, make: () => new Trainer(p, opts), fingerprint, states, final: fingerprint(ref.snapshot()) };
}

describe('a worker terminated at any moment leaves the last whole step, and the run resumes exactly', () => {
  it('terminated at random moments, resumed each time: every stop is a recorded state, the end is the uninterrupted one', async () => {
    const epochs = 6;
    const run = largeRun(epochs);
    const t = run.make();
    let terminations = 0;
    for (let round = 0; round < 40 && t.epochs < epochs; round++) {
      // The Trainer's worker is private: catch it as it subscribes to its events.
      const on = Worker.prototype.on;
      let worker: Worker | undefined;
      Worker.prototype.on = function (this: Worker, ...args: Parameters<Worker['on']>) {
        worker ??= this;
        return on.apply(this, args);
      } as Worker['on'];
      let fit: Promise<unknown>;
      try {
        // Terminated a few milliseconds after its first step event: at some moment in training.
        let timer: NodeJS.Timeout | undefined;
        fit = t.fit(run.X, run.y, {
          epochs: epochs - t.epochs, progressEvery: 1,
          onProgress: () => (timer ??= setTimeout(() => void worker?.terminate(), round % 7)),
        });
        const clear = () => clearTimeout(timer);
        void fit.then(clear, clear);
      } finally {
        Worker.prototype.on = on;
      }
      const outcome = await fit.then(() => 'done', (e: { code?: string }) => e.code);
      if (outcome === 'done') break;
      expect(outcome).toBe('ERR_WORKER');
      terminations++;
      // Not held by the dead worker (this would wait forever), and a state some step ended in.
      const at = run.states.get(run.fingerprint(t.snapshot()));
      expect(at, `round ${round}: the weights are no step's`).toBe(t.steps);
    }
    expect(terminations).toBeGreaterThan(3);
    expect(t.epochs).toBe(epochs);
    expect(run.fingerprint(t.snapshot())).toBe(run.final);
  });
});

describe('snapshot() during an async fit is the weights after a whole step, never torn', () => {
  it('every snapshot equals one of the per-step states of the same run (about a hundred snapshots)', async () => {
    // 8 of 157 snapshots were torn before the fix (W1 half updated).
    const epochs = 12;
    const run = largeRun(epochs);
    expect(run.states.size).toBe(epochs * 4 + 1);
    const t = run.make();
    const fit = t.fit(run.X, run.y, { epochs });
    let snapshots = 0;
    let torn = 0;
    // Snapshots taken mid-run (neither the first state nor the last): only these can catch a torn copy.
    // How many there are depends on how the machine shares its cores between the two threads, so the
    // guard asks for enough to have seen the worker at work (36 on a loaded CI machine, ~100 idle),
    // not for a fixed share of the run.
    let midRun = 0;
    let done = false;
    const end = () => (done = true);
    void fit.then(end, end);
    while (!done) {
      const step = run.states.get(run.fingerprint(t.snapshot()));
      if (step === undefined) torn++;
      else if (step > 0 && step < epochs * 4) midRun++;
      snapshots++;
      await new Promise((r) => setImmediate(r));
    }
    await fit;
    expect(run.fingerprint(t.snapshot())).toBe(run.final);
    expect(torn, `${torn} of ${snapshots} snapshots were torn`).toBe(0);
    expect(midRun, `only ${midRun} of ${snapshots} snapshots were taken mid-run`).toBeGreaterThanOrEqual(10);
  });
});
