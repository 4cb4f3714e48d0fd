/** The public vocabulary: tensors are flat row-major typed arrays, shapes as in the README's math section. */
export type FloatArray = Float64Array | Float32Array;
export type Dtype = 'float64' | 'float32';
export type Activation = 'relu' | 'sigmoid' | 'tanh';
export type Reduction = 'mean' | 'sum';
/** F.cross_entropy's reductions: 'none' keeps the loss of each row (a typed array [B]). */
export type LossReduction = Reduction | 'none';
export type BackendName = 'native' | 'ts' | 'torch' | 'wasm';

export interface Dims { B: number; D: number; H: number; C: number }

/** Weights of X[B,D] → Linear(W1[D,H], b1[H]) → act → Linear(W2[H,C], b2[C]). */
export interface Params<T extends FloatArray = FloatArray> { D?: number; H?: number; C?: number; W1: T; b1: T; W2: T; b2: T }

export interface Grads<T extends FloatArray = FloatArray> { dX?: T; dW1: T; db1: T; dW2: T; db2: T }

/** Intermediate tensors of one forward pass, returned when `cache: true`. */
export interface Cache<T extends FloatArray = FloatArray> {
  Z1: T; // [B,H] pre-activation
  A1: T; // [B,H] activation
  logits: T; // [B,C] Z2
  probs: T; // [B,C] softmax(Z2)
}

/** Labels: class ids in [0, C). */
export type Labels = Int32Array | ArrayLike<number>;
