// Everything a training run reads and writes, allocated once: parameters, gradients, optimizer
// slots, the workspace and the minibatch buffers. All of it lives on SharedArrayBuffers so an
// async fit's worker thread works on the very same memory (no copies back and forth).
import type { Activation, BackendName, Dtype, FloatArray } from '../types';
import { workspaceLength } from '../workspace';
import { type OptimizerConfig, type SlotState, slotLengths } from './optimizer';
import type { Schedule } from './schedule';

export const TENSORS = ['W1', 'b1', 'W2', 'b2'] as const;
export type TensorName = (typeof TENSORS)[number];

export interface TrainConfig {
  dtype: Dtype;
  D: number;
  H: number;
  C: number;
  batchSize: number;
  lr: number;
  seed: number;
  backend: BackendName;
  activation: Activation;
  optimizer: OptimizerConfig;
  schedule: Schedule;
}

export interface TrainState {
  config: TrainConfig;
  params: Record<TensorName, FloatArray>;
  grads: Record<TensorName, FloatArray>;
  slots: Record<TensorName, SlotState>;
  ws: FloatArray; // workspace for batchSize rows
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

export function tensorLength(c: Pick<TrainConfig, 'D' | 'H' | 'C'>, k: TensorName): number {
  return k === 'W1' ? c.D * c.H : k === 'b1' ? c.H : k === 'W2' ? c.H * c.C : c.C;
}

export function allocateState(config: TrainConfig, initial: Record<TensorName, FloatArray>): TrainState {
  const params = {} as Record<TensorName, FloatArray>;
  const grads = {} as Record<TensorName, FloatArray>;
  const slots = {} as Record<TensorName, SlotState>;
  for (const k of TENSORS) {
    const n = tensorLength(config, k);
    params[k] = sharedFloat(config.dtype, n);
    params[k].set(initial[k]);
    grads[k] = sharedFloat(config.dtype, n);
    const len = slotLengths(config.optimizer.name, n);
    slots[k] = { m: len.m ? sharedFloat(config.dtype, len.m) : null, v: len.v ? sharedFloat(config.dtype, len.v) : null };
  }
  const dims = { B: config.batchSize, D: config.D, H: config.H, C: config.C };
  return {
    config,
    params,
    grads,
    slots,
    ws: sharedFloat(config.dtype, workspaceLength(dims)),
    Xb: sharedFloat(config.dtype, config.batchSize * config.D),
    yb: new Int32Array(new SharedArrayBuffer(4 * config.batchSize)),
    counters: new Float64Array(new SharedArrayBuffer(16)),
    control: new Int32Array(new SharedArrayBuffer(4)),
  };
}
