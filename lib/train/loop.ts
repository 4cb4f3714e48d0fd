// The training loop shared by fitSync (on the caller's thread) and fit (in a worker thread): the
// same code on the same buffers, so both give the same numbers for a seed.
import { Rng } from '../rng';
import type { FloatArray } from '../types';
import { coreBinding } from '../binding';
import { Sequential } from '../layers/sequential';
import { OPTIMIZER_CODE, update } from './optimizer';
import { learningRate } from './schedule';
import type { TrainState } from './state';

export interface EpochRecord {
  epoch: number; // 1-based
  lr: number;
  loss: number; // mean minibatch loss over the epoch (before each update)
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
const sequentials = new WeakMap<TrainState, { seq: Sequential; grads: Record<string, FloatArray> }>();

function stackOf(s: TrainState): { seq: Sequential; grads: Record<string, FloatArray> } {
  let entry = sequentials.get(s);
  if (!entry) {
    const c = s.config;
    const grads: Record<string, FloatArray> = {};
    for (const k of s.names) grads[`d${k}`] = s.grads[k];
    entry = { seq: Sequential.fromSpec({ dtype: c.dtype, layers: c.layers, reduction: 'mean' }, s.params), grads };
    sequentials.set(s, entry);
  }
  return entry;
}

export function sequentialOf(s: TrainState): Sequential {
  return stackOf(s).seq;
}

/**
 * Loss and accuracy of one minibatch already in s.Xb/s.yb (first B rows): forward, backward,
 * update. The data and buffers were checked once, when fit/step was called: nothing is re-checked
 * or allocated here.
 */
export function trainStep(s: TrainState, B: number, lr: number): { loss: number; correct: number } {
  const { backend } = s.config;
  const full = B === s.config.batchSize;
  const X = full ? s.Xb : s.Xb.subarray(0, B * s.config.D);
  const y = full ? s.yb : s.yb.subarray(0, B);
  const { seq, grads } = stackOf(s);
  const r = seq.forwardBackwardInto(X, y, grads, { backend, reduction: 'mean', accumulate: false });
  const correct = countCorrect(r.logits, s.yb, B, s.config.C);
  const t = ++s.counters[0];
  const o = s.config.optimizer;
  if (backend === 'native') {
    // The same rules in C++ (native/core/optimizer.h): a JS loop over W1 costs ~0.5 ms a step.
    const core = coreBinding();
    const kind = OPTIMIZER_CODE[o.name];
    for (const k of s.names) {
      const slot = s.slots[k];
      core.optimizerUpdate(s.params[k], s.grads[k], slot.m, slot.v, kind, lr, t, o.momentum, o.beta1, o.beta2, o.epsilon, o.weightDecay);
    }
  } else {
    for (const k of s.names) update(o, s.params[k], s.grads[k], s.slots[k], lr, t);
  }
  return { loss: r.loss, correct };
}

/** How many rows of the logits [B,C] pick the label. */
function countCorrect(logits: FloatArray, y: Int32Array, B: number, C: number): number {
  let correct = 0;
  for (let b = 0; b < B; b++) {
    const o = b * C;
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[o + c] > logits[o + best]) best = c;
    if (best === y[b]) correct++;
  }
  return correct;
}

function gather(s: TrainState, data: Data, order: Int32Array, start: number, B: number): void {
  const D = s.config.D;
  for (let b = 0; b < B; b++) {
    const row = order[start + b];
    s.yb[b] = data.y[row];
    // A view and a memcpy per row: several times faster than an element loop at D = 784.
    s.Xb.set(data.X.subarray(row * D, row * D + D), b * D);
  }
}

/**
 * One epoch over `data` in a seeded order (seed + epoch number, so an interrupted run resumes
 * with the same shuffles). Returns null when stopped through s.control between steps.
 */
export function runEpoch(s: TrainState, data: Data, order: Int32Array, onStep?: (e: StepEvent) => void, every = 0): EpochRecord | null {
  const epoch = s.counters[1] + 1;
  const lr = learningRate(s.config.schedule, s.config.lr, epoch - 1);
  const n = data.y.length;
  for (let i = 0; i < n; i++) order[i] = i;
  new Rng(s.config.seed * 1000003 + epoch).shuffle(order);
  const bs = s.config.batchSize;
  const steps = Math.ceil(n / bs);
  let lossSum = 0;
  let correct = 0;
  for (let step = 0; step < steps; step++) {
    if (Atomics.load(s.control, 0) !== 0) return null;
    const start = step * bs;
    const B = Math.min(bs, n - start);
    gather(s, data, order, start, B);
    const r = trainStep(s, B, lr);
    lossSum += r.loss * B;
    correct += r.correct;
    if (onStep && every > 0 && ((step + 1) % every === 0 || step + 1 === steps)) {
      onStep({ epoch, step: step + 1, steps, loss: lossSum / Math.min(n, start + B) });
    }
  }
  s.counters[1] = epoch;
  return { epoch, lr, loss: lossSum / n, accuracy: correct / n };
}

export interface FitPlan {
  epochs: number; minDelta: number;
  /** Emit a step event every this many steps (0: none). */
  progressEvery: number;
  /** Stop after this many epochs without the monitored loss improving by minDelta. */
  patience?: number;
}

export interface FitResult {
  history: EpochRecord[];
  /** Why it ended: all epochs ran, early stopping, or the AbortSignal. */
  stopped: 'completed' | 'early' | 'aborted';
}

/** Epochs with validation and early stopping; the body of both fitSync and the worker. */
export function fitLoop(
  s: TrainState, data: Data, validation: Data | undefined, plan: FitPlan,
  emit: { step?: (e: StepEvent) => void; epoch?: (r: EpochRecord) => void },
): FitResult {
  const order = new Int32Array(data.y.length);
  const history: EpochRecord[] = [];
  let best = Infinity;
  let since = 0;
  for (let e = 0; e < plan.epochs; e++) {
    const record = runEpoch(s, data, order, emit.step, plan.progressEvery);
    if (record === null) return { history, stopped: 'aborted' };
    if (validation) {
      const r = sequentialOf(s).score(validation.X, validation.y, s.config.batchSize, s.config.backend);
      record.valLoss = r.loss;
      record.valAccuracy = r.accuracy;
    }
    history.push(record);
    emit.epoch?.(record);
    if (plan.patience !== undefined) {
      const monitored = record.valLoss ?? record.loss;
      if (monitored < best - plan.minDelta) {
        best = monitored;
        since = 0;
      } else if (++since >= plan.patience) {
        return { history, stopped: 'early' };
      }
    }
  }
  return { history, stopped: 'completed' };
}
