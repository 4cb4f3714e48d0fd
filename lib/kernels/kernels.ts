// The kernels a Layer's forward and backward run on (LayerContext.kernels): the ts engine runs the
// stack on the TS kernels; the native and wasm kernels swap in their backend's GEMM for a Layer used
// on its own. Callers (the layers) have checked every length and dtype; the GEMMs check them again.
import type { Activation, FloatArray, Reduction } from '../types';

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
