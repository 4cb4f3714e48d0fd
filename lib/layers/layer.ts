// The Layer contract of the layer stack. A layer is the math of one step of the network and its
// hand-derived backward; it owns its parameters but no per-batch memory. Everything that depends
// on the batch (its output, its input gradient, what forward saved for backward) lives in a
// LayerContext that the caller allocates once per batch size and reuses every step (a Sequential
// runs its layers through an engine instead, lib/engine).
import type { Kernels } from '../kernels/kernels';
import type { FloatArray } from '../types';

export type LayerKind = 'linear' | 'relu' | 'sigmoid' | 'tanh';

/** A layer as plain data: enough to rebuild it (with its parameters given separately). */
export type LayerSpec = { kind: 'linear'; in: number; out: number } | { kind: 'relu' | 'sigmoid' | 'tanh' };

export interface LayerContext<T extends FloatArray = FloatArray> {
  /** Rows of the batch. */
  readonly B: number;
  /** The backend's kernels (gemm, bias, activation, …): every layer's arithmetic goes through these. */
  kernels: Kernels;
  /** [B, outputWidth], written by forward and returned from it. */
  readonly output: T;
  /** [B, inputWidth], written by backward and returned from it; null when no one needs it. */
  gradInput: T | null;
  /** Add into gradInput instead of overwriting it (a Sequential's dX with `accumulate`). */
  accumulateInput: boolean;
  /** Where backward writes this layer's parameter gradients, by parameter name (dW into grads.W). */
  grads: Record<string, T>;
  /** Add into grads instead of overwriting them (PyTorch's .grad semantics). */
  accumulate: boolean;
  /** What forward saw; backward reads it (the GEMM's left operand, or the pre-activation). */
  input: T | null;
  /** [B, inputWidth] scratch for an activation whose gradInput is accumulated into; else null. */
  readonly scratch: T | null;
}

export interface Layer {
  readonly kind: LayerKind;
  /** Trainable tensors by name: { W [in,out], b [out] } for Linear, {} for an activation. */
  readonly params: Readonly<Record<string, FloatArray>>;
  /** The input width this layer requires, or null when it takes any (activations). */
  readonly inFeatures: number | null;
  /** The width it produces from an input of `inputWidth` columns. */
  outputWidth(inputWidth: number): number;
  /**
   * input [B, inputWidth] → ctx.output [B, outputWidth]. Saves in ctx what backward needs (a
   * reference, not a copy: the input is the previous layer's output buffer, left untouched).
   */
  forward(input: FloatArray, ctx: LayerContext): FloatArray;
  /**
   * gradOutput [B, outputWidth] = ∂loss/∂output → ctx.gradInput = ∂loss/∂input (or null when
   * ctx.gradInput is null), and ∂loss/∂params into ctx.grads. Reads only what forward saved.
   */
  backward(gradOutput: FloatArray, ctx: LayerContext): FloatArray | null;
  spec(): LayerSpec;
  /** 'Linear 784→128', 'ReLU', … for messages and tables. */
  toString(): string;
}
