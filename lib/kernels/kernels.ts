// The kernels every layer is built from, one interface per backend. Each backend has exactly one
// implementation of each kernel, used by its fused two-layer step and by the layer stack
// (lib/layers): native = native/core/{blas,kernels}.h through the core addon, wasm = the same C++
// compiled to WebAssembly, ts = lib/kernels/ts.ts. Callers (the layers) have checked every length
// and dtype; the native glue checks them again so a wrong call is an error, never a crash.
import type { Activation, FloatArray, Reduction } from '../types';

/** Activation and reduction codes of native/core/kernels.h (Activation, Reduction). */
export const ACTIVATION_CODE: Record<Activation, number> = { relu: 0, sigmoid: 1, tanh: 2 };
export { REDUCTION_CODE } from '../engine/engine';

export interface Kernels {
  readonly name: 'native' | 'wasm' | 'ts';
  /**
   * C[M,N] = alpha·op(A)·op(B) + beta·C, row-major; op(A) is [M,K] (A stored [K,M] when transA),
   * op(B) is [K,N] (B stored [N,K] when transB). beta = 0 ignores what C held.
   */
  gemm<T extends FloatArray>(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: T, B: T, beta: number, C: T,
  ): void;
  /** out[r, :] = bias for each of `rows` rows; out is [rows, bias.length]. */
  broadcastRows<T extends FloatArray>(bias: T, out: T, rows: number): void;
  /** db = Σ_r dZ[r, :] (db += … when accumulate); dZ is [rows, db.length]. */
  sumRows<T extends FloatArray>(dZ: T, db: T, rows: number, accumulate: boolean): void;
  /** A = act(Z) elementwise; Z and A have the same length. */
  activationForward<T extends FloatArray>(act: Activation, Z: T, A: T): void;
  /** dA ⊙= act'(Z) in place (ReLU from Z, strict Z > 0; sigmoid and tanh from A, as PyTorch). */
  activationBackward<T extends FloatArray>(act: Activation, Z: T, A: T, dA: T): void;
  /**
   * probs = softmax(logits) row by row; returns Σ_b loss_b (log-sum-exp on the logits, summed in
   * float64). logits and probs are [B,C], y holds B labels in [0, C).
   */
  softmaxCrossEntropy<T extends FloatArray>(logits: T, y: Int32Array, probs: T, B: number, C: number): number;
  /** dZ = (probs − onehot(y)) · scale, scale = 1/B (in the dtype) for mean, 1 for sum. */
  softmaxCrossEntropyBackward<T extends FloatArray>(
    probs: T, y: Int32Array, dZ: T, B: number, C: number, reduction: Reduction,
  ): void;
  /** Whether no entry is NaN or ±Infinity. */
  allFinite(x: FloatArray): boolean;
}
