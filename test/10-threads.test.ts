// Threads: the core addon is context-aware (each worker_thread that loads it gets its own
// exports), concurrent calls from several threads give the very bits a lone call gives, a worker
// terminated in the middle of a native call takes nothing down with it, and Trainer.fit's worker
// dying or failing is a clean rejection.
//
// Workers run the compiled library (dist/, built by `npm run setup`): worker_threads needs
// JavaScript. The main thread runs lib/ through vitest. Both load the same build/Release/handgrad.node,
// so agreement between them to the bit is itself a check.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardBackward, getNumThreads, HandgradError, initParams, setNumThreads, Trainer, xor } from '../lib';
import { torchAddonPath } from '../lib/backends/torch';
import type { ForwardBackwardResult } from '../lib';
import type { Activation, FloatArray, Reduction } from '../lib/types';
import { backendTitle, randomArray, randomLabels, skipReason } from './helpers';

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist', 'lib', 'index.js');
const ADDON = join(ROOT, 'build', 'Release', 'handgrad.node');
const TORCH = torchAddonPath();

interface Problem {
  p: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray };
  X: FloatArray;
  y: Int32Array;
  opts: { activation: Activation; reduction: Reduction; inputGrad: boolean };
}

/** A deterministic problem; sizes above the small-GEMM cutoff go through OpenBLAS (and its threads). */
function problem(seed: number, dims: { B: number; D: number; H: number; C: number }, dtype: 'float64' | 'float32', activation: Activation, reduction: Reduction): Problem {
  const { B, D, H, C } = dims;
  const A = dtype === 'float64' ? Float64Array : Float32Array;
  return {
    p: {
      W1: A.from(randomArray(D * H, seed, 1 / Math.sqrt(D))),
      b1: A.from(randomArray(H, seed + 1, 0.1)),
      W2: A.from(randomArray(H * C, seed + 2, 1 / Math.sqrt(H))),
      b2: A.from(randomArray(C, seed + 3, 0.1)),
    },
    X: A.from(randomArray(B * D, seed + 4)),
    y: randomLabels(B, C, seed + 5),
    opts: { activation, reduction, inputGrad: true },
  };
}

const PROBLEMS: Problem[] = [
  problem(11, { B: 64, D: 96, H: 128, C: 10 }, 'float64', 'relu', 'mean'),
  problem(22, { B: 64, D: 96, H: 128, C: 10 }, 'float32', 'tanh', 'sum'),
  problem(33, { B: 33, D: 70, H: 41, C: 7 }, 'float64', 'sigmoid', 'mean'),
  problem(44, { B: 4, D: 5, H: 10, C: 3 }, 'float32', 'relu', 'mean'), // the small-GEMM loops
  problem(55, { B: 128, D: 64, H: 96, C: 13 }, 'float64', 'tanh', 'sum'), // the main thread's
];

/** loss and every gradient as raw bytes, so equality is bit for bit (NaN payloads and −0 included). */
function bits(r: ForwardBackwardResult): Uint8Array[] {
  const loss = new Uint8Array(new Float64Array([r.loss]).buffer);
  return [loss, ...(['dX', 'dW1', 'db1', 'dW2', 'db2'] as const).map((k) => Uint8Array.from(new Uint8Array(r.grads[k]!.buffer, r.grads[k]!.byteOffset, r.grads[k]!.byteLength)))];
}

function sameBits(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, i) => x.length === b[i].length && x.every((v, j) => v === b[i][j]));
}

// The worker side, as CommonJS source: loads dist/, waits at a gate so every thread starts
// together, then runs `iters` steps and compares each with the reference it was given.
const STEP_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const h = require(workerData.dist);
const { p, X, y, opts, ref, iters } = workerData;
const gate = new Int32Array(workerData.gate);
const names = ['dX', 'dW1', 'db1', 'dW2', 'db2'];
const bytes = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
function same(r) {
  if (new BigUint64Array(new Float64Array([r.loss]).buffer)[0] !== ref.lossBits) return 'loss';
  for (let k = 0; k < names.length; k++) {
    const a = bytes(r.grads[names[k]]), b = ref.grads[k];
    if (a.length !== b.length) return names[k] + ' length';
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return names[k] + ' byte ' + i;
  }
  return null;
}
parentPort.postMessage({ type: 'ready' });
Atomics.wait(gate, 0, 0);
let mismatches = 0, first = null;
for (let i = 0; i < iters; i++) {
  const why = same(h.forwardBackward(p, X, y, opts));
  if (why) { mismatches++; first = first || ('iteration ' + i + ': ' + why); }
}
parentPort.postMessage({ type: 'done', mismatches, first });
`;

interface Done {
  mismatches: number;
  first: string | null;
}

function startStepWorker(pr: Problem, ref: Uint8Array[], iters: number, gate: SharedArrayBuffer): { worker: Worker; ready: Promise<void>; done: Promise<Done> } {
  const lossBits = new BigUint64Array(ref[0].buffer.slice(0))[0];
  const worker = new Worker(STEP_WORKER, {
    eval: true,
    workerData: { dist: DIST, ...pr, iters, gate, ref: { lossBits, grads: ref.slice(1) } },
  });
  let onReady!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const done = new Promise<Done>((resolve, reject) => {
    worker.on('message', (m: { type: string } & Done) => (m.type === 'ready' ? onReady() : resolve(m)));
    worker.on('error', reject);
    worker.on('exit', (code) => reject(new Error(`worker exited with code ${code} before reporting`)));
  });
  done.catch(() => onReady()); // a worker that fails before 'ready' must not leave the test waiting
  return { worker, ready, done };
}

let threadsBefore = 1;
beforeAll(() => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run \`npm run setup\` (workers need the compiled library)`);
  threadsBefore = getNumThreads();
});
afterAll(() => setNumThreads(threadsBefore));

describe('the core addon in worker_threads', () => {
  it('loads in several workers at once, each with its own working exports, and unloads cleanly', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.addon);
      const out = new Float64Array(4);
      b.gemm(false, false, 2, 2, 2, 1, new Float64Array([1, 2, 3, 4]), new Float64Array([5, 6, 7, 8]), 0, out);
      let refused = '';
      try { b.stackForwardBackward(); } catch (e) { refused = e.constructor.name; }
      parentPort.postMessage({ keys: Object.keys(b).sort(), out: Array.from(out), threads: b.getNumThreads(), refused });
    `;
    // Eight at once (more than the cores), twice over: each one loads, works, exits, and the
    // per-environment cleanup of the ones that exited never disturbs those still running.
    for (let round = 0; round < 2; round++) {
      const results = await Promise.all(
        Array.from({ length: 8 }, () => {
          const w = new Worker(code, { eval: true, workerData: { addon: ADDON } });
          return new Promise<{ keys: string[]; out: number[]; threads: number; refused: string }>((resolve, reject) => {
            w.once('message', resolve);
            w.once('error', reject);
          }).finally(() => w.terminate());
        }),
      );
      for (const r of results) {
        expect(r.keys).toEqual([
          'allFinite', 'atenCapability',
          'blasKernels', 'blasLanes',
          'codes', 'gatherRows', 'gemm', 'getBlasLanes', 'getKernelSet', 'getNumThreads', 'getSparseInput', 'optimizerUpdate', 'setBlasLanes', 'setKernelSet', 'setNumThreads', 'setSparseInput',
          'stackBind', 'stackExact', 'stackForward', 'stackForwardBackward', 'stackForwardBackwardLoss', 'stackLayout', 'stackPrepare', 'stackRun', 'stackStatus',
        ]);
        expect(r.out).toEqual([19, 22, 43, 50]);
        expect(r.threads).toBe(getNumThreads());
        expect(r.refused).toBe('TypeError');
      }
    }
    // The main thread's own instance still works after all of them have gone.
    const pr = PROBLEMS[3];
    expect(Number.isFinite(forwardBackward(pr.p, pr.X, pr.y, pr.opts).loss)).toBe(true);
  });

  // OpenBLAS's thread count is process-wide: the references are computed at the count under test,
  // and the results must then be the same bits whatever the other threads do meanwhile.
  it.each([1, 2])('4 workers and the main thread at once give the bits of a lone call (OpenBLAS threads = %i)', async (threads) => {
    setNumThreads(threads);
    const refs = PROBLEMS.map((pr) => bits(forwardBackward(pr.p, pr.X, pr.y, pr.opts)));
    // A lone call is deterministic to begin with (else the comparison below would mean nothing).
    PROBLEMS.forEach((pr, i) => expect(sameBits(bits(forwardBackward(pr.p, pr.X, pr.y, pr.opts)), refs[i])).toBe(true));

    const gate = new SharedArrayBuffer(4);
    const workers = PROBLEMS.slice(0, 4).map((pr, i) => startStepWorker(pr, refs[i], pr === PROBLEMS[3] ? 3000 : 150, gate));
    try {
      await Promise.all(workers.map((w) => w.ready));
      const g = new Int32Array(gate);
      Atomics.store(g, 0, 1);
      Atomics.notify(g, 0);
      // The main thread computes its own problem meanwhile (and one of each worker's, in turn).
      let mismatches = 0;
      for (let i = 0; i < 150; i++) {
        const k = i % 5 === 4 ? i % 4 : 4;
        const pr = PROBLEMS[k];
        if (!sameBits(bits(forwardBackward(pr.p, pr.X, pr.y, pr.opts)), refs[k])) mismatches++;
      }
      const done = await Promise.all(workers.map((w) => w.done));
      expect(done).toEqual(workers.map(() => ({ type: 'done', mismatches: 0, first: null })));
      expect(mismatches).toBe(0);
    } finally {
      await Promise.all(workers.map((w) => w.worker.terminate()));
    }
  });
});

// Terminations run in a child process (as sodium-native runs its crash cases): if one takes the
// process down, that test fails with the child's stderr and the rest of this file still runs.
// The child starts a worker that loops on native calls, terminates it at some point of the loop,
// checks that its own next call gives the bits it got before, and repeats; it prints OK at the end.
const TERMINATE_CHILD = `
const { Worker } = require('node:worker_threads');
const { dist, addon, torch, mode, rounds, dtype } = JSON.parse(process.env.HG_TERMINATE);
const h = require(dist);
const F = dtype === 'float32' ? Float32Array : Float64Array;
// Large enough that one call takes tens of milliseconds: the worker spends nearly all its time
// inside native code, so terminate() lands mid-call (V8 acts on it when the call returns).
const B = 256, D = 1024, H = 512, C = 100;
const fill = (n, s) => F.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.05);
const big = { p: { W1: fill(D * H, 1), b1: fill(H, 2), W2: fill(H * C, 3), b2: fill(C, 4) }, X: fill(B * D, 5), y: Int32Array.from({ length: B }, (_, i) => i % C) };
const small = { p: { W1: fill(50, 6), b1: fill(10, 7), W2: fill(30, 8), b2: fill(3, 9) }, X: fill(20, 10), y: new Int32Array([0, 1, 2, 0]) };
const bits = (r) => Buffer.concat([Buffer.from(new Float64Array([r.loss]).buffer), ...['dX', 'dW1', 'db1', 'dW2', 'db2'].map((k) => Buffer.from(r.grads[k].buffer, r.grads[k].byteOffset, r.grads[k].byteLength))]).toString('base64');
const step = (t) => bits(h.forwardBackward(t.p, t.X, t.y, { inputGrad: true }));
const refSmall = step(small), refBig = step(big);
// mode 'ok': valid calls; 'throw': calls that fail late (NaN in b2 shows on the logits after two
// GEMMs, then every input is scanned to name it), so the error is being thrown when the termination
// hits; 'raw-throw': the raw export refusing a call with no arguments, thousands of times a
// millisecond; 'gemm': the raw gemm export; 'torch-throw': the LibTorch addon (the same argument
// glue, its own build) refusing a call with no arguments.
const LOOP = \`
  const { parentPort, workerData } = require('node:worker_threads');
  const h = require(workerData.dist);
  const { big, mode } = workerData;
  const b = require(mode === 'torch-throw' ? workerData.torch : workerData.addon);
  const bad = { ...big.p, b2: big.p.b2.slice() };
  bad.b2[bad.b2.length - 1] = NaN;
  const n = 400, A = new Float64Array(n * n).fill(1), Bm = new Float64Array(n * n).fill(2), Cm = new Float64Array(n * n);
  const run = () => {
    if (mode === 'ok') return h.forwardBackward(big.p, big.X, big.y);
    if (mode === 'gemm') return b.gemm(false, true, n, n, n, 1, A, Bm, 0, Cm);
    try { mode === 'throw' ? h.forwardBackward(bad, big.X, big.y) : mode === 'torch-throw' ? b.sequentialForwardBackward() : b.stackForwardBackward(); } catch (e) { if (!(e instanceof Error)) throw e; }
  };
  run();
  parentPort.postMessage('looping');
  for (;;) run();
\`;
(async () => {
  const seen = [];
  for (let i = 0; i < rounds; i++) {
    const w = new Worker(LOOP, { eval: true, workerData: { dist, addon, torch, big, mode } });
    const errors = [];
    w.on('error', (e) => errors.push(e.message));
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('exit', (code) => reject(new Error('worker exited (' + code + ') before looping: ' + errors.join('; '))));
    });
    await new Promise((r) => setTimeout(r, (i * 7) % 31));
    const code = await w.terminate();
    if (code !== 1 || errors.length) throw new Error('round ' + i + ': exit code ' + code + ', errors ' + JSON.stringify(errors));
    if (step(small) !== refSmall || step(big) !== refBig) throw new Error('round ' + i + ': the next call is not exact');
    seen.push(code);
  }
  console.log('OK ' + JSON.stringify(seen));
})().catch((e) => { console.error('FAILED ' + e.message); process.exit(2); });
`;

/** Runs TERMINATE_CHILD for one mode: 6 workers, each terminated while it loops on calls. */
function terminations(mode: string, dtype: string): void {
  const r = spawnSync(process.execPath, ['-e', TERMINATE_CHILD], {
    env: { ...process.env, OPENBLAS_NUM_THREADS: '1', HG_TERMINATE: JSON.stringify({ dist: DIST, addon: ADDON, torch: TORCH, mode, dtype, rounds: 6 }) },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const report = `status ${r.status}, signal ${r.signal}\n${r.stdout}\n${r.stderr.slice(-2000)}`;
  expect(r.signal, report).toBeNull();
  expect(r.status, report).toBe(0);
  expect(r.stdout, report).toMatch(/^OK \[1,1,1,1,1,1\]$/m);
}

describe('a worker terminated in the middle of a native call', () => {
  it.each([
    ['valid calls', 'ok', 'float64'],
    ['valid calls', 'ok', 'float32'],
    ['calls that throw late', 'throw', 'float64'],
    ['calls that throw late', 'throw', 'float32'],
    ['raw calls that throw at once', 'raw-throw', 'float64'],
    ['raw gemm', 'gemm', 'float64'],
  ] as const)('%s (%s, %s), 6 times: the process lives and its next call is exact', (_name, mode, dtype) => {
    terminations(mode, dtype);
  });

  const torchSkip = skipReason('torch');
  it.skipIf(torchSkip)(backendTitle('the LibTorch addon: raw calls that throw at once, 6 times: the process lives and its next call is exact', 'torch', torchSkip), () => {
    terminations('torch-throw', 'float64');
  });

  it('many workers terminated at once, some still loading, some mid-call: the main thread stays exact', async () => {
    const small = PROBLEMS[0];
    const ref = bits(forwardBackward(small.p, small.X, small.y, small.opts));
    const big = problem(77, { B: 256, D: 1024, H: 512, C: 100 }, 'float64', 'relu', 'mean');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const h = require(workerData.dist);
      const { p, X, y } = workerData;
      h.forwardBackward(p, X, y);
      parentPort.postMessage('looping');
      for (;;) h.forwardBackward(p, X, y);
    `;
    const ws = Array.from({ length: 6 }, () => new Worker(code, { eval: true, workerData: { dist: DIST, ...big } }));
    const errors: Error[] = [];
    ws.forEach((w) => w.on('error', (e) => errors.push(e)));
    // Half are terminated at once (still loading dist/ and the addon: exit code 0 or 1, depending on
    // how far they got), the others once they loop.
    await Promise.all(ws.slice(0, 3).map((w) => w.terminate()));
    await Promise.all(ws.slice(3).map((w) => new Promise((r) => w.once('message', r))));
    for (let i = 0; i < 20; i++) expect(sameBits(bits(forwardBackward(small.p, small.X, small.y, small.opts)), ref)).toBe(true);
    expect(await Promise.all(ws.slice(3).map((w) => w.terminate()))).toEqual([1, 1, 1]);
    expect(errors).toEqual([]);
    expect(sameBits(bits(forwardBackward(small.p, small.X, small.y, small.opts)), ref)).toBe(true);
  });
});

describe("Trainer.fit's worker", () => {
  const { X, y } = xor({ seed: 3, n: 400 });

  it('terminated mid-run: fit rejects with ERR_WORKER, the Trainer is usable again', async () => {
    const t = new Trainer(initParams({ D: 2, H: 16, C: 2 }, { seed: 4 }), { lr: 0.05, batchSize: 8 });
    // The Trainer's worker is private: catch it as it subscribes to its events.
    const on = Worker.prototype.on;
    let captured: Worker | undefined;
    Worker.prototype.on = function (this: Worker, ...args: Parameters<Worker['on']>) {
      captured ??= this;
      return on.apply(this, args);
    } as Worker['on'];
    let p: Promise<unknown>;
    try {
      p = t.fit(X, y, {
        epochs: 100_000,
        progressEvery: 5,
        onProgress: (e) => {
          if (e.type === 'step' && e.step >= 20) void captured?.terminate();
        },
      });
    } finally {
      Worker.prototype.on = on;
    }
    expect(captured).toBeInstanceOf(Worker);
    const err = await p.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(HandgradError);
    expect((err as HandgradError).code).toBe('ERR_WORKER');
    expect((err as Error).message).toMatch(/exited \(code 1\) before finishing/);
    expect(t.busy).toBe(false);
    const steps = t.steps;
    expect(steps).toBeGreaterThanOrEqual(20);
    expect(steps).toBeLessThan(100_000 * 50);
    // Usable: a synchronous step and another fit both work, and the weights are finite.
    expect(Number.isFinite(t.step(X.subarray(0, 16), y.subarray(0, 8)))).toBe(true);
    const r = await t.fit(X, y, { epochs: 1 });
    expect(r.history).toHaveLength(1);
    // That fit finishes the epoch the terminated one was in (50 steps each), from the next batch.
    expect(t.steps).toBe(steps + 1 + (steps % 50 === 0 ? 50 : 50 - (steps % 50)));
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(t.params[k].every(Number.isFinite)).toBe(true);
  });

  it('failing inside the worker (the weights diverge): fit rejects with the RangeError, and is not busy', async () => {
    // lr 1e300 throws the weights to ~1e299 after the first step; the next forward pass overflows.
    const t = new Trainer(initParams({ D: 2, H: 16, C: 2 }, { seed: 5 }), { lr: 1e300, batchSize: 8 });
    const err = await t.fit(X, y, { epochs: 3 }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/^Expected (a )?finite/); // an overflow, or the weights already non-finite
    expect(t.busy).toBe(false);
    // The same failure synchronously is the same error, so nothing was lost in the message.
    const s = new Trainer(initParams({ D: 2, H: 16, C: 2 }, { seed: 5 }), { lr: 1e300, batchSize: 8 });
    expect(() => s.fitSync(X, y, { epochs: 3 })).toThrow((err as Error).message);
  });
});
