// Everything a training run reads and writes, allocated once: parameters, gradients, optimizer
// slots and the minibatch buffers (the Sequential keeps its own workspace). All of it lives on
// SharedArrayBuffers so an async fit's worker thread works on the very same memory (no copies).
import type { LayerSpec } from '../layers/layer';
import * as v from '../validate';
import type { SequentialSpec } from '../layers/sequential';
import type { BackendName, Dtype, FloatArray, Reduction } from '../types';
import { type OptimizerConfig, type SlotState, slotLengths } from './optimizer';
import type { Schedule } from './schedule';
import type { DataParallel } from './data-parallel';

export interface TrainConfig {
  dtype: Dtype; D: number; C: number; batchSize: number; lr: number; seed: number;
  backend: BackendName; optimizer: OptimizerConfig; schedule: Schedule;
  /** Every step in the exact mode (LibTorch's bits). */
  exact?: boolean;
  /** The net's layers (a worker thread rebuilds the Sequential from them over the shared tensors). */
  layers: LayerSpec[];
  /** The model's loss: its reduction ('mean' or 'sum') and F.cross_entropy's options, when not the defaults. */
  reduction?: Reduction;
  loss?: SequentialSpec['loss'];
  /** Data-parallel training (opts.distributed): the gradients averaged across the process group's ranks after each backward. */
  distributed?: DataParallel;
}

export interface TrainState {
  config: TrainConfig;
  /** The parameter names in order: W1, b1, W2, b2, … */
  names: string[];
  params: Record<string, FloatArray>; grads: Record<string, FloatArray>; slots: Record<string, SlotState>;
  Xb: FloatArray; // [batchSize, D] gathered minibatch
  yb: Int32Array; // [batchSize]
  /** Indexed by COUNTER: the steps, the epochs, and the position inside the epoch in progress. */
  counters: Float64Array;
  /**
   * [STOP] set to 1 to stop an async fit between steps; [LOCK] 1 while a step or a snapshot holds
   * the parameters; [TOUCHED] during a step's update, how many tensors (in names order) it may have
   * changed, 0 once the step is whole (./update.ts).
   */
  control: Int32Array;
  /**
   * The state as it was before the step in progress: each tensor's W, m, v (copied just before the
   * update touches it) and the counters. Shared, so that if the worker dies inside a step the
   * caller's thread can put back the last whole one (rollBackAbandonedStep).
   */
  before: { tensors: Record<string, { W: FloatArray; m: FloatArray | null; v: FloatArray | null; vmax: FloatArray | null }>; counters: Float64Array };
}

/**
 * The counters, all that a resume needs besides the tensors: optimizer steps taken, epochs
 * completed and, while an epoch is in progress (done > 0), the examples of it already trained on,
 * the data size and shuffle seed it was ordered with (shuffled: 1, or 0 for fit's shuffle: false),
 * and the loss sum and correct count so far.
 * Float64: every count is exact up to 2^53, and the loss sum is the very double an uninterrupted
 * epoch accumulates.
 */
export const COUNTER = { steps: 0, epochs: 1, done: 2, examples: 3, shuffleSeed: 4, lossSum: 5, correct: 6, shuffled: 7, ignored: 8, ranks: 9, weightSum: 10 } as const;
const COUNTERS = Object.keys(COUNTER).length;
export const STOP = 0;
const LOCK = 1;
export const TOUCHED = 2;

/**
 * Runs fn holding the parameters: a step's update (all tensors, all or nothing) and a snapshot's
 * copy never overlap, so a snapshot is always the weights after a whole step. A mutex rather than a
 * sequence counter: the compare-exchange that takes it orders the other thread's plain writes
 * before this thread's reads in the JS memory model, with no retry loop around a torn copy.
 */
export function holdingParams<T>(s: TrainState, fn: () => T): T {
  while (Atomics.compareExchange(s.control, LOCK, 0, 1) !== 0) Atomics.wait(s.control, LOCK, 1);
  try {
    return fn();
  } finally {
    unlock(s);
  }
}

/** The first `count` tensors (weights and optimizer state) put back as copied before the step's update (s.before). */
export function restoreTensors(s: TrainState, count: number): void {
  for (let i = 0; i < count; i++) {
    const k = s.names[i];
    const b = s.before.tensors[k];
    const slot = s.slots[k];
    s.params[k].set(b.W);
    if (slot.m) slot.m.set(b.m!);
    if (slot.v) slot.v.set(b.v!);
    if (slot.vmax) slot.vmax.set(b.vmax!);
  }
}

function unlock(s: TrainState): void {
  Atomics.store(s.control, LOCK, 0);
  Atomics.notify(s.control, LOCK, 1);
}

/**
 * After the worker thread ended without finishing (terminated, or killed by an error it could not
 * report) — never while it runs: puts back the state before the step it died inside, if any (the
 * tensors it may have touched and the counters), and frees the lock it held, so the Trainer is at
 * its last whole step and a snapshot does not wait forever.
 */
export function rollBackAbandonedStep(s: TrainState): void {
  if (Atomics.load(s.control, LOCK) === 0) return;
  const touched = Atomics.load(s.control, TOUCHED);
  restoreTensors(s, touched);
  if (touched > 0) s.counters.set(s.before.counters);
  Atomics.store(s.control, TOUCHED, 0);
  unlock(s);
}

export function sharedFloat(dtype: Dtype, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(new SharedArrayBuffer(8 * n)) : new Float32Array(new SharedArrayBuffer(4 * n));
}

export function allocateState(config: TrainConfig, initial: Readonly<Record<string, FloatArray>>): TrainState {
  const names = Object.keys(initial);
  const params: Record<string, FloatArray> = {};
  const grads: Record<string, FloatArray> = {};
  const slots: Record<string, SlotState> = {};
  const before: TrainState['before'] = { tensors: {}, counters: new Float64Array(new SharedArrayBuffer(8 * COUNTERS)) };
  for (const k of names) {
    const n = initial[k].length;
    params[k] = sharedFloat(config.dtype, n);
    params[k].set(initial[k]);
    grads[k] = sharedFloat(config.dtype, n);
    const len = slotLengths(config.optimizer.name, n, config.optimizer.amsgrad);
    const slot = (k: number) => (k ? sharedFloat(config.dtype, k) : null);
    slots[k] = { m: slot(len.m), v: slot(len.v), vmax: slot(len.vmax) };
    before.tensors[k] = { W: sharedFloat(config.dtype, n), m: slot(len.m), v: slot(len.v), vmax: slot(len.vmax) };
  }
  return {
    config, names, params, grads, slots,
    // A minibatch's buffers, batchSize rows: an allocation the process cannot make names the option.
    Xb: v.allocate<FloatArray>(config.dtype === 'float64' ? Float64Array : Float32Array, config.batchSize * config.D, 'the minibatch X [opts.batchSize, D]', (n) => sharedFloat(config.dtype, n)),
    yb: new Int32Array(new SharedArrayBuffer(4 * config.batchSize)),
    counters: new Float64Array(new SharedArrayBuffer(8 * COUNTERS)),
    control: new Int32Array(new SharedArrayBuffer(12)),
    before,
  };
}
