// `npm run bench:train`: training at realistic size — seconds per MNIST epoch (batch 128,
// 784 → 256 → 10, SGD lr 0.1), the Trainer's epochs alternated with PyTorch Python's on the same
// data in the same run (bench/torchpeer.ts; PyTorch with 1 intra-op thread, its fastest setting
// here: with 2, its OpenMP threads and OpenBLAS's oversubscribe the 2 cores and an epoch took 8–14 s
// against 0.8–1.1 s), where the epoch's time goes (its phases, timed step by step on the Trainer's
// own state, against the FLOP bound at this machine's GEMM peak with 1 and 2 threads), and the
// event-loop delay a server sees while Trainer.fit runs at (256,784,1024,10).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { coreBinding } from '../lib/binding';
import { getNumThreads, initParams, loadMnist, Rng, setNumThreads, setSparseInput, Trainer } from '../lib';
import { assertFiniteData, gather, sequentialOf } from '../lib/train/loop';
import type { TrainState } from '../lib/train/state';
import { applyUpdate } from '../lib/train/update';
import type { Dtype, FloatArray } from '../lib/types';
import { describeMachine } from './machine';
import { timeGemms } from './peak';
import { machineLines } from './report';
import { startTorchPeer, torchPeerSkipReason } from './torchpeer';

/** Alternated rounds per dtype: HANDGRAD_BENCH_ROUNDS (a positive integer), default 3. */
const ROUNDS = rounds(process.env.HANDGRAD_BENCH_ROUNDS);

function rounds(setting: string | undefined): number {
  if (setting === undefined) return 3;
  const n = Number(setting);
  if (!(Number.isInteger(n) && n >= 1 && n <= 100)) throw new RangeError(`Expected an integer in [1, 100] for HANDGRAD_BENCH_ROUNDS but received "${setting}"`);
  return n;
}
const [D, H, C, BATCH, LR] = [784, 256, 10, 128, 0.1];
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

/**
 * The epoch's arithmetic, counted exactly: per row, the forward's two products (2·(D·H + H·C)),
 * and the backward's dW1 = Xᵀ·dZ1 (2·D·H), dW2 = Hᵀ·dZ2 and dH = dZ2·W2ᵀ (2·H·C each); no dX,
 * which no one asked for. Bias, activation, softmax and update passes are O(B·H) and not counted.
 */
export const epochFlops = (N: number) => 2 * N * (2 * D * H + 3 * H * C);

/**
 * The phases of one epoch, in seconds: what fitSync does once per call (check that X is finite) and
 * per epoch (shuffle), then each part of every step (lib/train/loop.ts's runEpoch, piece by piece).
 */
interface Phases { check: number; shuffle: number; gather: number; step: number; count: number; update: number; loop: number; gemms: number }

/**
 * One epoch's steps on the Trainer's own state, as runEpoch runs them (gather, the native step,
 * the accuracy count, the all-or-nothing update), each part timed; after each step, the step's
 * five products done dense (OpenBLAS) on scratch buffers of their shapes, timed apart: what the
 * step's arithmetic costs without the sparse first layer (with it, the step may take less than
 * them). The Trainer's state is private: a bench may look inside.
 */
function timePhases(t: Trainer, X: FloatArray, y: Int32Array, seed: number): Phases {
  const s = (t as unknown as { state: TrainState }).state;
  const seq = sequentialOf(s);
  const grads: Record<string, FloatArray> = {};
  for (const k of s.names) grads[`d${k}`] = s.grads[k];
  const N = y.length;
  const c0 = process.hrtime.bigint();
  assertFiniteData('X', X);
  const c1 = process.hrtime.bigint();
  const order = Int32Array.from({ length: N }, (_, i) => i);
  new Rng(seed).shuffle(order);
  const c2 = process.hrtime.bigint();
  const core = coreBinding();
  const make = (n: number): FloatArray => {
    const a = s.config.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37) * 0.1;
    return a;
  };
  const [A, W1, Z1, W2, Z2, dW1, dW2, dZ1] = [BATCH * D, D * H, BATCH * H, H * C, BATCH * C, D * H, H * C, BATCH * H].map(make);
  const p: Phases = { check: Number(c1 - c0), shuffle: Number(c2 - c1), gather: 0, step: 0, count: 0, update: 0, loop: 0, gemms: 0 };
  const loopStart = process.hrtime.bigint();
  for (let start = 0; start < N; start += BATCH) {
    const B = Math.min(BATCH, N - start);
    const t0 = process.hrtime.bigint();
    gather(s, { X, y }, order, start, B);
    const t1 = process.hrtime.bigint();
    const Xb = B === BATCH ? s.Xb : s.Xb.subarray(0, B * D);
    const yb = B === BATCH ? s.yb : s.yb.subarray(0, B);
    const r = seq.forwardBackwardInto(Xb, yb, grads, { backend: 'native', reduction: 'mean', accumulate: false, loss: null });
    const t2 = process.hrtime.bigint();
    let correct = 0;
    for (let b = 0; b < B; b++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (r.logits[b * C + c] > r.logits[b * C + best]) best = c;
      if (best === yb[b]) correct++;
    }
    const t3 = process.hrtime.bigint();
    applyUpdate(s, LR, () => void correct);
    const t4 = process.hrtime.bigint();
    // The step's five products alone, right after it (so both see the same load on the machine).
    const [a, z1, z2, dz1] = B === BATCH ? [A, Z1, Z2, dZ1] : [A.subarray(0, B * D), Z1.subarray(0, B * H), Z2.subarray(0, B * C), dZ1.subarray(0, B * H)];
    core.gemm(false, false, B, H, D, 1, a, W1, 1, z1); // Z1 = X·W1 (+ b1, already in Z1)
    core.gemm(false, false, B, C, H, 1, z1, W2, 1, z2); // logits = relu(Z1)·W2 (+ b2)
    core.gemm(true, false, H, C, B, 1, z1, z2, 0, dW2); // dW2 = Hᵀ·dZ2
    core.gemm(false, true, B, H, C, 1, z2, W2, 0, dz1); // dH = dZ2·W2ᵀ
    core.gemm(true, false, D, H, B, 1, a, dz1, 0, dW1); // dW1 = Xᵀ·dZ1
    p.gemms += Number(process.hrtime.bigint() - t4);
    p.gather += Number(t1 - t0);
    p.step += Number(t2 - t1);
    p.count += Number(t3 - t2);
    p.update += Number(t4 - t3);
  }
  p.loop = Number(process.hrtime.bigint() - loopStart) - p.gemms;
  for (const k of Object.keys(p) as (keyof Phases)[]) p[k] /= 1e9;
  return p;
}

interface Section {
  dtype: Dtype;
  /** The Trainer's fitSync epochs at OpenBLAS's thread count, then with 1 thread. */
  ours: number[]; oursOne: number[];
  /** The same epochs with setSparseInput(false): every product dense, as before the sparse first layer. */
  dense: number[];
  /** The share of MNIST's pixels that are nonzero: what the sparse first layer multiplies. */
  nonzero: number;
  torch: number[] | null; about: string;
  phases: Phases[]; phasesOne: Phases[];
  /** The sgemm/dgemm peak (GFLOP/s, best of n = 1024 products) with 1 and with the default threads. */
  peakOne: number; peak: number;
}

/** Best GFLOP/s of n×n×n products with the threads set now. */
async function peakNow(dtype: Dtype): Promise<number> {
  const t = await timeGemms(dtype, [1024], 5, 'before');
  return Math.max(...t.map((x) => x.bestGflops));
}

/** Every measurement of one dtype, alternated round by round: Trainer, PyTorch, phases, then the same at 1 OpenBLAS thread. */
async function mnistSection(dtype: Dtype): Promise<Section> {
  const threads = getNumThreads();
  const m = loadMnist({ dtype });
  const t = new Trainer(initParams({ D, H, C }, { seed: 0, dtype }), { lr: LR, batchSize: BATCH });
  t.fitSync(m.train.X.subarray(0, BATCH * 20 * D), m.train.y.subarray(0, BATCH * 20), { epochs: 1 }); // warm-up
  const skip = torchPeerSkipReason();
  const peer = skip ? null : await startTorchPeer(m.train.X, m.train.y, { N: m.train.y.length, D, H, C, batchSize: BATCH, lr: LR, threads: 1 });
  let nonzero = 0;
  for (let i = 0; i < m.train.X.length; i++) if (m.train.X[i] !== 0) nonzero++;
  const s: Section = { dtype, ours: [], oursOne: [], dense: [], nonzero: nonzero / m.train.X.length, torch: peer ? [] : null, about: peer ? peer.about : `skipped: ${skip}`, phases: [], phasesOne: [], peakOne: 0, peak: 0 };
  try {
    s.peak = await peakNow(dtype);
    setNumThreads(1);
    s.peakOne = await peakNow(dtype);
    setNumThreads(threads);
    for (let r = 0; r < ROUNDS; r++) {
      let start = process.hrtime.bigint();
      t.fitSync(m.train.X, m.train.y, { epochs: 1 });
      s.ours.push(seconds(start));
      if (peer) s.torch!.push(await peer.epoch());
      s.phases.push(timePhases(t, m.train.X, m.train.y, r));
      setNumThreads(1);
      start = process.hrtime.bigint();
      t.fitSync(m.train.X, m.train.y, { epochs: 1 });
      s.oursOne.push(seconds(start));
      setNumThreads(threads);
      setSparseInput(false);
      start = process.hrtime.bigint();
      t.fitSync(m.train.X, m.train.y, { epochs: 1 });
      s.dense.push(seconds(start));
      setSparseInput(true);
      setNumThreads(1);
      s.phasesOne.push(timePhases(t, m.train.X, m.train.y, r));
      setNumThreads(threads);
    }
  } finally {
    setNumThreads(threads);
    setSparseInput(true);
    peer?.close();
  }
  return s;
}

function report(s: Section, threads: number): void {
  const fmt = (a: number[]) => `min ${Math.min(...a).toFixed(3)} s, median ${median(a).toFixed(3)} s`;
  const flop = epochFlops(60000);
  console.log(`MNIST epoch, ${s.dtype}, batch ${BATCH}, ${D}→${H}→${C}, SGD, ${ROUNDS} alternated rounds (${(flop / 1e9).toFixed(2)} GFLOP of GEMMs an epoch)`);
  console.log(`  handgrad native, OpenBLAS ${threads} threads: ${fmt(s.ours)}`);
  console.log(`  handgrad native, OpenBLAS 1 thread: ${fmt(s.oursOne)}`);
  console.log(`  handgrad native, OpenBLAS ${threads} threads, setSparseInput(false) (every product dense): ${fmt(s.dense)}`);
  if (s.torch === null) console.log(`  PyTorch: ${s.about}`);
  else {
    const ratio = (ours: number[]) => `${(Math.min(...s.torch!) / Math.min(...ours)).toFixed(2)}× (minima), ${(median(s.torch!) / median(ours)).toFixed(2)}× (medians)`;
    console.log(`  PyTorch (${s.about}): ${fmt(s.torch)}`);
    console.log(`  PyTorch ÷ handgrad: ${ratio(s.ours)} at ${threads} threads; ${ratio(s.oursOne)} at 1 thread; ${ratio(s.dense)} dense at ${threads}; target ≥ 2×`);
  }
  const routine = s.dtype === 'float64' ? 'dgemm' : 'sgemm';
  console.log(`  ${(100 * s.nonzero).toFixed(1)}% of the pixels are nonzero: the sparse first layer multiplies ${(100 * s.nonzero).toFixed(1)}% of its two products' multiply-adds ` +
    `(${((s.nonzero * 4 * D * H + 6 * H * C) / (4 * D * H + 6 * H * C) * 100).toFixed(1)}% of the epoch's)`);
  console.log(`  FLOP bound (every product dense): ${(flop / s.peak / 1e9).toFixed(3)} s at the ${routine} peak with ${threads} threads (${s.peak.toFixed(1)} GFLOP/s), ` +
    `${(flop / s.peakOne / 1e9).toFixed(3)} s with 1 (${s.peakOne.toFixed(1)} GFLOP/s)`);
  for (const [label, ph] of [[`${threads} threads`, s.phases], ['1 thread', s.phasesOne]] as const) {
    // Each phase's least-disturbed round (its minimum): on a shared machine a whole round is rarely quiet.
    const least = (k: keyof Phases) => Math.min(...ph.map((p) => p[k]));
    const [loop, gemms, step] = [least('loop'), least('gemms'), least('step')];
    const pct = (x: number) => `${x.toFixed(3)} s (${((100 * x) / loop).toFixed(0)}%)`;
    const rest = Math.min(...ph.map((p) => p.loop - p.gather - p.step - p.count - p.update));
    console.log(`  phases at ${label}, minima of ${ph.length}: fit's check of X ${least('check').toFixed(3)} s and shuffle ${least('shuffle').toFixed(3)} s, then ` +
      `the steps ${loop.toFixed(3)} s = gather ${pct(least('gather'))} + native step ${pct(step)} ` +
      `[its five products done dense, alone: ${gemms.toFixed(3)} s, ${(flop / gemms / 1e9).toFixed(1)} GFLOP/s]  + accuracy ${pct(least('count'))} + update ${pct(least('update'))} + JS ${pct(rest)}`);
  }
}

async function eventLoopDuringFit(): Promise<{ p50: number; p99: number; max: number; seconds: number }> {
  const [B, D, H, C] = [256, 784, 1024, 10];
  const n = B * 40;
  const X = new Float64Array(n * D).map((_, i) => Math.sin(i * 0.37));
  const y = new Int32Array(n).map((_, i) => i % C);
  const t = new Trainer(initParams({ D, H, C }, { seed: 0 }), { lr: 0.01, batchSize: B });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const start = process.hrtime.bigint();
  await t.fit(X, y, { epochs: 2 });
  const s = seconds(start);
  h.disable();
  return { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, seconds: s };
}

async function main(): Promise<void> {
  const threads = getNumThreads();
  // The machine, OpenBLAS's thread count and kernel family (PyTorch's child process inherits the
  // same environment, so OPENBLAS_CORETYPE picks its kernels too).
  for (const line of machineLines(describeMachine())) console.log(line);
  for (const dtype of ['float32', 'float64'] as const) report(await mnistSection(dtype), threads);
  const e = await eventLoopDuringFit();
  console.log(
    `event-loop delay while fit() trains (256,784,1024,10) in a worker, ${e.seconds.toFixed(1)} s: ` +
      `p50 ${e.p50.toFixed(2)} ms, p99 ${e.p99.toFixed(2)} ms, max ${e.max.toFixed(2)} ms (target p99 < 20 ms)`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
