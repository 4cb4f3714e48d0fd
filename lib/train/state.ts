// Everything a training run reads and writes, allocated once: parameters, gradients, optimizer
// slots and the minibatch buffers (the Sequential keeps its own workspace). All of it lives on
// SharedArrayBuffers so an async fit's worker thread works on the very same memory (no copies).
import type { LayerSpec } from '../layers/layer';
import type { BackendName, Dtype, FloatArray } from '../types';
import { type OptimizerConfig, type SlotState, slotLengths } from './optimizer';
import type { Schedule } from './schedule';

export interface TrainConfig {
  dtype: Dtype; D: number; C: number; batchSize: number; lr: number; seed: number;
  backend: BackendName; optimizer: OptimizerConfig; schedule: Schedule;
  /** The net's layers (a worker thread rebuilds the Sequential from them over the shared tensors). */
  layers: LayerSpec[];
}

export interface TrainState {
  config: TrainConfig;
  /** The parameter names in order: W1, b1, W2, b2, … */
  names: string[];
  params: Record<string, FloatArray>; grads: Record<string, FloatArray>; slots: Record<string, SlotState>;
  Xb: FloatArray; // [batchSize, D] gathered minibatch
  yb: Int32Array; // [batchSize]
  /** [0] optimizer steps taken, [1] epochs completed. */
  counters: Float64Array;
  /** [0] set to 1 to stop an async fit between steps. */
  control: Int32Array;
}

export function sharedFloat(dtype: Dtype, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(new SharedArrayBuffer(8 * n)) : new Float32Array(new SharedArrayBuffer(4 * n));
}

export function allocateState(config: TrainConfig, initial: Readonly<Record<string, FloatArray>>): TrainState {
  const names = Object.keys(initial);
  const params: Record<string, FloatArray> = {};
  const grads: Record<string, FloatArray> = {};
  const slots: Record<string, SlotState> = {};
  for (const k of names) {
    const n = initial[k].length;
    params[k] = sharedFloat(config.dtype, n);
    params[k].set(initial[k]);
    grads[k] = sharedFloat(config.dtype, n);
    const len = slotLengths(config.optimizer.name, n);
    slots[k] = { m: len.m ? sharedFloat(config.dtype, len.m) : null, v: len.v ? sharedFloat(config.dtype, len.v) : null };
  }
  return {
    config, names, params, grads, slots,
    Xb: sharedFloat(config.dtype, config.batchSize * config.D),
    yb: new Int32Array(new SharedArrayBuffer(4 * config.batchSize)),
    counters: new Float64Array(new SharedArrayBuffer(16)),
    control: new Int32Array(new SharedArrayBuffer(4)),
  };
}
