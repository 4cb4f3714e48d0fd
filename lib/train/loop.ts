// The training loop shared by fitSync (on the caller's thread) and fit (in a worker thread): the
// same code on the same buffers, so both give the same numbers for a seed.
import type { FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { available, coreBinding, once } from '../binding';
import type { LossArgs } from '../engine/engine';
import { Sequential } from '../layers/sequential';
import { learningRate } from './schedule';
import { COUNTER, holdingParams, STOP, type TrainState } from './state';
import { applyUpdate } from './update';
import { agree, averageGradients, epochOrder, scoreAcross, shardOf, verifyWeights } from './data-parallel';
import { allReduceSync, groupInfo } from '../distributed/group';
import { torchSamplerSeed } from './ddp-sampler';
import type { Evaluation } from '../layers/class-metrics';

export interface EpochRecord {
  epoch: number; // 1-based
  lr: number;
  // The epoch's loss as evaluate takes one (F.cross_entropy's 'mean' over the rows it counts: each
  // row's loss times its class weight, over the sum of those weights; ignored rows in neither),
  // each row's taken at its step, before that step's update. The same for 'sum' and 'mean' nets.
  loss: number;
  accuracy: number; // minibatch accuracy over the epoch (before each update)
  valLoss?: number; valAccuracy?: number;
}

export interface StepEvent {
  epoch: number;
  step: number; // within the epoch, 1-based
  steps: number; // per epoch
  loss: number; // running mean over the epoch so far
}

export interface Data { X: FloatArray; y: Int32Array }

// The Sequential of a state, rebuilt over the state's shared tensors once per thread (a worker
// receives the state as data), so each thread has its own engine buffers; with it, the gradient
// buffers under the names forwardBackwardInto writes (dW1 = s.grads.W1, …).
// The model's loss options travel in the state's config as the spec's `loss` (weight, ignoreIndex,
// labelSmoothing; absent: PyTorch's defaults), so a worker's rebuilt net trains on the same loss.
const sequentials = new WeakMap<TrainState, { seq: Sequential; grads: Record<string, FloatArray>; loss: LossArgs | null }>();

function stackOf(s: TrainState): { seq: Sequential; grads: Record<string, FloatArray>; loss: LossArgs | null } {
  let entry = sequentials.get(s);
  if (!entry) {
    const c = s.config;
    const grads: Record<string, FloatArray> = {};
    for (const k of s.names) grads[`d${k}`] = s.grads[k];
    const lossSpec = c.loss;
    const reduction = c.reduction ?? 'mean';
    const seq = Sequential.fromSpec({ dtype: c.dtype, layers: c.layers, reduction, ...(lossSpec ? { loss: lossSpec } : {}) }, s.params);
    const l = seq.loss;
    // The model's loss, as loss.backward() would see it: its reduction ('mean' or 'sum': the Trainer
    // refuses 'none') and its options.
    const loss: LossArgs | null = l.weight === null && l.labelSmoothing === 0 && l.ignoreIndex === -100
      ? null
      : { reduction, weight: l.weight, ignoreIndex: l.ignoreIndex, labelSmoothing: l.labelSmoothing, targets: null, gradOutput: null };
    entry = { seq, grads, loss };
    sequentials.set(s, entry);
  }
  return entry;
}

export function sequentialOf(s: TrainState): Sequential {
  return stackOf(s).seq;
}

/**
 * Loss and accuracy of one minibatch already in s.Xb/s.yb (first B rows): forward, backward,
 * update (all or nothing: ./update.ts), and `advance` (the epoch's own counters) with it. The data
 * and buffers were checked once, when fit/step was called: nothing is re-checked, no typed array allocated.
 * @throws {RangeError} a non-finite forward pass, gradient or update; the weights are then those after the last step
 */
export function trainStep(s: TrainState, B: number, lr: number, advance?: (loss: number, correct: number, ignored: number) => void): { loss: number; correct: number } {
  const { backend } = s.config;
  const full = B === s.config.batchSize;
  const X = full ? s.Xb : s.Xb.subarray(0, B * s.config.D);
  const y = full ? s.yb : s.yb.subarray(0, B);
  const { seq, grads, loss } = stackOf(s);
  const r = seq.forwardBackwardInto(X, y, grads, { backend, reduction: seq.loss.reduction as Reduction, accumulate: false, loss, exact: s.config.exact === true });
  const { correct, ignored } = countCorrect(r.logits, s.yb, B, s.config.C, seq.loss.ignoreIndex);
  const dp = s.config.distributed;
  // Data-parallel: every rank's gradients averaged before the update (DDP's rule), so the update
  // is the same on every rank and so are the weights after it.
  if (dp) averageGradients(s, dp);
  applyUpdate(s, lr, advance && (() => advance(r.loss, correct, ignored)));
  if (dp && dp.verifyEvery > 0 && s.counters[COUNTER.steps] % dp.verifyEvery === 0) verifyWeights(s, s.counters[COUNTER.steps]);
  return { loss: r.loss, correct };
}

/** Σ w[y_b] over the rows the loss does not ignore (their number without a class weight): F.cross_entropy's 'mean' divisor. */
function countedWeight(y: Int32Array, B: number, weight: FloatArray | null, ignoreIndex: number): number {
  let total = 0;
  for (let b = 0; b < B; b++) if (y[b] !== ignoreIndex) total += weight === null ? 1 : weight[y[b]];
  return total;
}

/** How many rows of the logits [B,C] pick the label, and how many rows the loss ignores (neither right nor wrong). */
function countCorrect(logits: FloatArray, y: Int32Array, B: number, C: number, ignoreIndex: number): { correct: number; ignored: number } {
  let correct = 0;
  let ignored = 0;
  for (let b = 0; b < B; b++) {
    if (y[b] === ignoreIndex) {
      ignored++;
      continue;
    }
    const o = b * C;
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[o + c] > logits[o + best]) best = c;
    if (best === y[b]) correct++;
  }
  return { correct, ignored };
}

/** The core addon's scan for NaN/±Infinity, or null where it is not built (a pure-TS install). */
const nativeAllFinite = once(() => (available(coreBinding) ? coreBinding().allFinite : null));

/**
 * The first NaN or ±Infinity of a data set's X is a RangeError naming it (validate.ts's
 * assertFinite). The core addon scans first, on its threads (an MNIST-size X is 188 MB: fit
 * checks it on every call); only when it finds one does the JS scan run, to name it — and if that
 * scan finds none, another thread rewrote X in between, which is refused as assertFinite refuses it.
 */
export function assertFiniteData(name: string, X: FloatArray): void {
  const scan = nativeAllFinite();
  if (!scan) return v.assertFinite(name, X);
  if (scan(X)) return;
  v.assertFinite(name, X);
  v.nonFiniteRewritten(name);
}

/** The core addon's row gather, or null where it is not built (a pure-TS install): the loop below then. */
const nativeGather = once(() => (available(coreBinding) ? coreBinding().gatherRows : null));

/** Rows order[start … start + B) of data into the state's minibatch s.Xb/s.yb (bench/train.ts times it). */
export function gather(s: TrainState, data: Data, order: Int32Array, start: number, B: number): void {
  const D = s.config.D;
  const g = nativeGather();
  // One native call a step: ~10× the JS loop (a view per row), 15% of an MNIST epoch before.
  if (g && data.X.constructor === s.Xb.constructor) return g(data.X, D, order, start, B, s.Xb, data.y, s.yb);
  for (let b = 0; b < B; b++) {
    const row = order[start + b];
    s.yb[b] = data.y[row];
    // A view and a memcpy per row: several times faster than an element loop at D = 784.
    s.Xb.set(data.X.subarray(row * D, row * D + D), b * D);
  }
}

/**
 * The shuffle seed of an epoch: seed·1000003 + epoch, taken mod 2^32 (the generator keeps 32 bits)
 * so that no seed loses the epoch to rounding (the exact product passes 2^53 for |seed| > ~2^33).
 */
export function shuffleSeed(seed: number, epoch: number): number {
  return (Math.imul(seed >>> 0, 1000003) + epoch) >>> 0;
}

/**
 * One epoch over `data` in a seeded order (in the data's order with shuffle false), or the rest of
 * the epoch in progress, in the order it started with (s.counters holds where it stopped, whether
 * and with what seed it was shuffled, and its sums so far; the caller checked that `data` has its
 * size). The position is written after every step, before any event: a stop, a thrown callback or
 * a save leaves it at the last whole step. Returns null when stopped through s.control.
 */
export function runEpoch(s: TrainState, data: Data, order: Int32Array, onStep?: (e: StepEvent) => void, every = 0, shuffle = true, shard?: Int32Array): EpochRecord | null {
  const c = s.counters;
  const N = data.y.length;
  const epoch = c[COUNTER.epochs] + 1;
  if (c[COUNTER.done] === 0) {
    c[COUNTER.examples] = N;
    // The torch sampler's generator seed is DistributedSampler's: seed + the 0-based epoch.
    c[COUNTER.shuffleSeed] = s.config.distributed?.sampler === 'torch' ? torchSamplerSeed(s.config.seed, epoch - 1) : shuffleSeed(s.config.seed, epoch);
    c[COUNTER.lossSum] = 0;
    c[COUNTER.weightSum] = 0;
    c[COUNTER.correct] = 0;
    c[COUNTER.ignored] = 0;
    c[COUNTER.shuffled] = shuffle ? 1 : 0;
  }
  const lr = learningRate(s.config.schedule, s.config.lr, epoch - 1);
  const dp = s.config.distributed;
  epochOrder(order, c[COUNTER.shuffleSeed], c[COUNTER.shuffled] === 1, dp?.sampler);
  // Data-parallel: this rank's shard of the epoch's order (DistributedSampler's rule), the same
  // length on every rank; single-process: the whole order. n is the rows this rank trains on.
  const { rank, worldSize } = dp ? groupInfo() : { rank: 0, worldSize: 1 };
  // The rows done of an epoch in progress count along one layout's shards: under another world size
  // they would name other rows (some trained twice, some never), so that is refused, never guessed.
  const was = c[COUNTER.ranks] || 1; // 0: not recorded (no epoch begun, or an old file): one process
  if (c[COUNTER.done] === 0) c[COUNTER.ranks] = worldSize;
  else if (was !== worldSize) {
    throw new RangeError(
      `Expected the epoch in progress to resume on ${was} rank${was === 1 ? '' : 's'} (it stopped after ${c[COUNTER.done]} rows of a ${was}-rank shard) ` +
        `but this fit runs on ${worldSize}: resume it with ${was === 1 ? 'a single process' : `${was} ranks`}, or load with { optimizerState: false } to start over from its weights`,
    );
  }
  const n = dp ? shardOf(order, N, rank, worldSize, shard!) : N;
  const rows = dp ? shard! : order;
  const bs = s.config.batchSize;
  const steps = Math.ceil(n / bs);
  let record: EpochRecord | null = null;
  let sums: Float64Array | null = null; // the epoch's loss sum, correct, counted rows, rows and weight sum, for the job's record
  let lossSum = 0; // the epoch's loss sum after the step, for its event
  let weightSum = 0; // and what it is divided by
  const netLoss = stackOf(s).seq.loss;
  const sumLoss = netLoss.reduction === 'sum';
  for (let start = c[COUNTER.done]; start < n; start += bs) {
    if (Atomics.load(s.control, STOP) !== 0) return null;
    const B = Math.min(bs, n - start);
    gather(s, data, rows, start, B);
    // The position moves with the step's update, in the same hold of the parameters (./update.ts);
    // the last step of the epoch completes it there too.
    // The step's rows as F.cross_entropy's mean weighs them: Σ w[y] over the rows not ignored.
    const weight = countedWeight(s.yb, B, netLoss.weight, netLoss.ignoreIndex);
    trainStep(s, B, lr, (loss, correct, ignored) => {
      // The epoch's loss is the weighted per-row sum over the weights counted: a 'mean' step's loss
      // times its rows' weight, a 'sum' step's as it is (so 'sum' and 'mean' report alike, as evaluate).
      lossSum = c[COUNTER.lossSum] += sumLoss ? loss : loss * weight;
      weightSum = c[COUNTER.weightSum] += weight;
      c[COUNTER.correct] += correct;
      c[COUNTER.ignored] += ignored;
      c[COUNTER.done] = start + B;
      if (start + B < n) return;
      // Accuracy over the rows the loss counts (as evaluate): an ignored label is neither right nor wrong.
      const counted = n - c[COUNTER.ignored];
      sums = Float64Array.of(lossSum, c[COUNTER.correct], counted, n, weightSum);
      record = { epoch, lr, loss: weightSum > 0 ? lossSum / weightSum : 0, accuracy: counted > 0 ? c[COUNTER.correct] / counted : 0 };
      for (const k of ['done', 'examples', 'shuffleSeed', 'lossSum', 'weightSum', 'correct', 'ignored'] as const) c[COUNTER[k]] = 0;
      c[COUNTER.epochs] = epoch;
    });
    const step = Math.ceil((start + B) / bs);
    if (onStep && every > 0 && (step % every === 0 || start + B === n)) {
      onStep({ epoch, step, steps, loss: weightSum > 0 ? lossSum / weightSum : 0 });
    }
  }
  // Data-parallel: the epoch's record is the job's (every rank's rows: the padded ones count as
  // DistributedSampler feeds them), the same on every rank, so early stopping decides alike.
  // With DDP peers the record is this rank's own, as a PyTorch rank's loss is (no collective).
  if (dp?.peers === 'handgrad' && record !== null && sums !== null) {
    allReduceSync(sums, 'sum');
    const r = record as EpochRecord;
    r.loss = sums[4] > 0 ? sums[0] / sums[4] : 0;
    r.accuracy = sums[2] > 0 ? sums[1] / sums[2] : 0;
  }
  return record;
}

export interface FitPlan {
  epochs: number; minDelta: number;
  /** Each epoch in a new seeded order (true), or in the data's order (PyTorch's DataLoader shuffle=False). */
  shuffle: boolean;
  /** Emit a step event every this many steps (0: none). */
  progressEvery: number;
  /** Stop after this many epochs without the monitored loss improving by minDelta. */
  patience?: number;
  /** At the end of a fit that ran out its epochs or was stopped by patience: the weights of the best epoch (Keras's restore_best_weights). */
  restoreBest?: boolean;
  /**
   * fit's worker: the best epoch's weights are kept in these (shared) tensors and put back by the
   * caller's thread (restoreBestWeights) once it has delivered every event — a checkpoint written
   * for the last epoch must hold that epoch's weights, not the restored ones (the worker restoring
   * them itself raced the caller's save).
   */
  bestOnCaller?: Record<string, FloatArray>;
}

export interface FitResult {
  history: EpochRecord[];
  /** Why it ended: all epochs ran, early stopping, or the AbortSignal. */
  stopped: 'completed' | 'early' | 'aborted';
  /**
   * With restoreBest, the epoch (1-based, as in the history) whose weights the Trainer now holds:
   * the one with the lowest monitored loss. Absent without restoreBest, and when the fit was aborted.
   */
  bestEpoch?: number;
}

/**
 * A copy of the weights of the best epoch so far, kept by the thread that trains (the worker, for
 * fit). It never needs to leave that thread: the copy is taken between steps (this thread is the
 * only writer) and put back by the same thread before it reports 'done', holding the parameters
 * as a step's update does, so a snapshot or save on the caller's thread sees the weights before or
 * after the restore, never half of it. A worker that dies reports nothing: its fit rejects and,
 * as for an abort, nothing is restored.
 */
class BestWeights {
  epoch = 0;

  /** copy: tensors to keep the weights in (fit's shared ones), else allocated on the first keep. */
  constructor(private readonly copy: Record<string, FloatArray> = {}) {}

  keep(s: TrainState, epoch: number): void {
    for (const k of s.names) {
      if (this.copy[k]) this.copy[k].set(s.params[k]);
      else this.copy[k] = s.params[k].slice();
    }
    this.epoch = epoch;
  }

  /** The kept weights back into the live tensors (the optimizer state and counters stay the last epoch's, as in Keras). */
  restore(s: TrainState): number {
    restoreBestWeights(s, this.copy);
    return this.epoch;
  }
}

/** Kept weights back into the live tensors, held as a step's update holds them (fit's caller, or BestWeights). */
export function restoreBestWeights(s: TrainState, copy: Readonly<Record<string, FloatArray>>): void {
  holdingParams(s, () => {
    for (const k of s.names) s.params[k].set(copy[k]);
  });
}

/** The evaluation of a data set; data-parallel, of every rank's part of it together (the same on every rank). */
export function scoreOf(s: TrainState, d: Data): Evaluation {
  const seq = sequentialOf(s);
  const { batchSize, backend } = s.config;
  return s.config.distributed?.peers === 'handgrad' ? scoreAcross(seq, d.X, d.y, batchSize, backend) : seq.score(d.X, d.y, batchSize, backend);
}

/** Epochs with validation and early stopping; the body of both fitSync and the worker. */
export function fitLoop(
  s: TrainState, data: Data, validation: Data | undefined, plan: FitPlan,
  emit: { step?: (e: StepEvent) => void; epoch?: (r: EpochRecord) => void },
): FitResult {
  const order = new Int32Array(data.y.length);
  const dp = s.config.distributed;
  const shard = dp ? new Int32Array(Math.ceil(data.y.length / groupInfo().worldSize)) : undefined;
  // With DDP peers every rank decides alone (no collective but DDP's): early stopping on each
  // rank's own loss would stop the ranks at different epochs, and the others would wait for them.
  if (dp?.peers === 'ddp' && (plan.patience !== undefined || plan.restoreBest)) {
    throw new TypeError("Expected no early stopping or restoreBest with distributed peers 'ddp' (each rank would decide on its own loss; stop the PyTorch and Node ranks after the same epochs)");
  }
  // Every rank must run the same steps: the same data size, epochs and order, from the same place.
  if (dp?.peers === 'handgrad') {
    const c = s.counters;
    agree('fit', {
      'the training rows': String(data.y.length), 'the validation rows given (each rank may pass its part)': validation ? 'a set' : 'none',
      'the epochs': String(plan.epochs), 'shuffle': String(plan.shuffle), 'the early stopping': JSON.stringify([plan.patience, plan.minDelta, plan.restoreBest === true]),
      'the place in training (steps, epochs, rows done)': `${c[COUNTER.steps]}, ${c[COUNTER.epochs]}, ${c[COUNTER.done]}`,
    });
  }
  const history: EpochRecord[] = [];
  let best = Infinity;
  let since = 0;
  const kept = plan.restoreBest ? new BestWeights(plan.bestOnCaller) : undefined;
  // The end of a fit that was not aborted: with restoreBest, the best epoch's weights (put back by
  // fit's caller when it holds them: bestOnCaller).
  const end = (stopped: 'completed' | 'early'): FitResult => {
    if (!kept || kept.epoch === 0) return { history, stopped };
    return { history, stopped, bestEpoch: plan.bestOnCaller ? kept.epoch : kept.restore(s) };
  };
  for (let e = 0; e < plan.epochs; e++) {
    const record = runEpoch(s, data, order, emit.step, plan.progressEvery, plan.shuffle, shard);
    if (record === null) return { history, stopped: 'aborted' };
    if (validation) {
      const r = scoreOf(s, validation);
      record.valLoss = r.loss;
      record.valAccuracy = r.accuracy;
    }
    history.push(record);
    emit.epoch?.(record);
    if (plan.patience !== undefined || kept) {
      const monitored = record.valLoss ?? record.loss;
      if (monitored < best - plan.minDelta) {
        best = monitored;
        since = 0;
        kept?.keep(s, record.epoch);
      } else if (plan.patience !== undefined && ++since >= plan.patience) {
        return end('early');
      }
    }
  }
  return end('completed');
}
