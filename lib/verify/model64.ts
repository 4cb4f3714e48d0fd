// The two-layer network in float64 plain TypeScript, for the verifier: the forward pass that
// finite differences perturb (the stack forward of stack64.ts, under the names Z1, A1, logits), and
// the backward chain with one step deliberately changed at a time
// (the "variants"), so a failing candidate can be matched against the bug that explains it.
// Nothing here is used as the truth a candidate is judged by: that is torch or finite differences.
import type { Activation, Dims, FloatArray, Reduction } from '../types';
import { twoLayerNet } from '../model';
import * as v from '../validate';
import { f64, stackForward64, type Stack64, type StackForward64 } from './stack64';

export interface Problem64 {
  dims: Dims;
  X: Float64Array;
  y: Int32Array;
  W1: Float64Array;
  b1: Float64Array;
  W2: Float64Array;
  b2: Float64Array;
  activation: Activation;
  reduction: Reduction;
}

export interface Forward64 {
  Z1: Float64Array; // [B,H]
  A1: Float64Array; // [B,H]
  logits: Float64Array; // [B,C]
  probs: Float64Array; // [B,C]
  /** log Σ_c exp(logits[b,c]) − logits[b,y_b], per row [B]. */
  rowLoss: Float64Array;
  loss: number;
}

/** Aᵀ·B for A [K,M], B [K,N] → [M,N]. */
export function matmulTN(A: Float64Array, Bm: Float64Array, K: number, M: number, N: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < M; i++) {
      const a = A[k * M + i];
      if (a === 0) continue;
      const ci = i * N;
      const bk = k * N;
      for (let j = 0; j < N; j++) C[ci + j] += a * Bm[bk + j];
    }
  }
  return C;
}

/** A·Bᵀ for A [M,K], B [N,K] → [M,N]. */
export function matmulNT(A: Float64Array, Bm: Float64Array, M: number, K: number, N: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[i * K + k] * Bm[j * K + k];
      C[i * N + j] = s;
    }
  }
  return C;
}

/** Column sums of a [rows, cols] matrix (sum over the batch axis). */
export function sumRows(A: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] += A[r * cols + c];
  return out;
}

/** Row sums of a [rows, cols] matrix (the wrong axis for a bias gradient). */
export function sumCols(A: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r] += A[r * cols + c];
  return out;
}

/** The two-layer network as a stack: [Linear(W1, b1), act, Linear(W2, b2)] (shares its arrays). */
export function stackOf(p: Problem64): Stack64 {
  const { B, D, H, C } = p.dims;
  return {
    X: p.X, y: p.y, B, reduction: p.reduction, widths: [D, H, H, C],
    layers: [{ kind: 'linear', k: 1, in: D, out: H, W: p.W1, b: p.b1 }, { kind: p.activation }, { kind: 'linear', k: 2, in: H, out: C, W: p.W2, b: p.b2 }],
  };
}

/** The stack's forward (stackForward64), under the two-layer names. */
export function forward64(p: Problem64): Forward64 {
  const { outputs: [Z1, A1, logits], probs, rowLoss, loss } = stackForward64(stackOf(p));
  return { Z1, A1, logits, probs, rowLoss, loss };
}

/** A two-layer forward as the stack's (the same arrays). */
export function asStackForward(f: Forward64): StackForward64 {
  return { outputs: [f.Z1, f.A1, f.logits], probs: f.probs, rowLoss: f.rowLoss, loss: f.loss };
}

export interface Backward64 {
  dZ2: Float64Array;
  dW2: Float64Array;
  db2: Float64Array;
  dA1: Float64Array;
  dZ1: Float64Array;
  dW1: Float64Array;
  db1: Float64Array;
  dX: Float64Array;
}

/** The bugs the verifier recognises by recomputing them; each changes one step of the backward chain. */
export type VariantId =
  | 'mask-ge' | 'mask-missing' | 'mask-times-A1' | 'mask-inverted'
  | 'act-deriv-on-Z1' | 'act-deriv-applied-twice' | 'act-deriv-missing'
  | 'dZ2-no-onehot' | 'dZ2-logits-not-probs' | 'dW2-uses-Z1' | 'dW1-uses-A1' | 'dX-uses-dA1';

export interface Variant {
  id: VariantId;
  /** What the candidate did, in a sentence. */
  explain: string;
  /** Which tensors it changes. */
  affects: readonly string[];
}

const DOWNSTREAM_OF_DZ1 = ['dW1', 'db1', 'dX'] as const;
const ALL = ['dW2', 'db2', 'dW1', 'db1', 'dX'] as const;

/** The variants that make sense for an activation. */
export function variantsFor(activation: Activation): Variant[] {
  const common: Variant[] = [
    { id: 'dZ2-no-onehot', explain: 'dZ2 = probs/B: the one-hot of y was never subtracted (dZ2 must be (probs − onehot(y))/B)', affects: ALL },
    { id: 'dZ2-logits-not-probs', explain: 'dZ2 was built from the logits Z2 instead of softmax(Z2)', affects: ALL },
    { id: 'dW2-uses-Z1', explain: 'dW2 = Z1ᵀ·dZ2: used the pre-activation Z1 where the activation A1 belongs (dW2 = A1ᵀ·dZ2)', affects: ['dW2'] },
    { id: 'dW1-uses-A1', explain: 'dW1 = Xᵀ·dA1: the activation derivative was skipped on the way to dW1 (dW1 = Xᵀ·dZ1)', affects: ['dW1'] },
    { id: 'dX-uses-dA1', explain: 'dX = dA1·W1ᵀ: the activation derivative was skipped on the way to dX (dX = dZ1·W1ᵀ)', affects: ['dX'] },
  ];
  if (activation === 'relu') {
    return [
      { id: 'mask-ge', explain: 'ReLU mask Z1 >= 0 instead of Z1 > 0: the gradient flows through units with Z1 exactly 0 (PyTorch gives 0 there)', affects: DOWNSTREAM_OF_DZ1 },
      { id: 'mask-missing', explain: 'no ReLU mask: dZ1 = dA1 (a mask on A1 >= 0 is always true, so it does the same)', affects: DOWNSTREAM_OF_DZ1 },
      { id: 'mask-times-A1', explain: 'dZ1 = dA1 ⊙ A1: multiplied by the activation instead of its derivative (Z1 > 0)', affects: DOWNSTREAM_OF_DZ1 },
      { id: 'mask-inverted', explain: 'ReLU mask inverted: the gradient flows where Z1 <= 0 and is cut where Z1 > 0', affects: DOWNSTREAM_OF_DZ1 },
      ...common,
    ];
  }
  const f = activation === 'sigmoid' ? { d: 'A1(1−A1)', onZ: 'Z1(1−Z1)', twice: 'σ(A1)(1−σ(A1))' } : { d: '1−A1²', onZ: '1−Z1²', twice: '1−tanh(A1)²' };
  return [
    { id: 'act-deriv-on-Z1', explain: `${activation}′ written as ${f.onZ}: the output-form derivative applied to Z1 (it is ${f.d})`, affects: DOWNSTREAM_OF_DZ1 },
    { id: 'act-deriv-applied-twice', explain: `${activation}′ computed as ${f.twice}: the activation applied again to A1 (it is ${f.d})`, affects: DOWNSTREAM_OF_DZ1 },
    { id: 'act-deriv-missing', explain: `no ${activation}′ factor: dZ1 = dA1 (it is dA1 ⊙ ${f.d})`, affects: DOWNSTREAM_OF_DZ1 },
    ...common,
  ];
}

/** dZ1 = dA1 ⊙ act'(Z1), or one of the wrong versions. */
function activationBackward(p: Problem64, f: Forward64, dA1: Float64Array, variant?: VariantId): Float64Array {
  const { Z1, A1 } = f;
  const out = new Float64Array(dA1.length);
  for (let i = 0; i < out.length; i++) {
    const z = Z1[i];
    const a = A1[i];
    let g: number;
    if (variant === 'mask-missing' || variant === 'act-deriv-missing') g = 1;
    else if (p.activation === 'relu') {
      if (variant === 'mask-ge') g = z >= 0 ? 1 : 0;
      else if (variant === 'mask-times-A1') g = a;
      else if (variant === 'mask-inverted') g = z > 0 ? 0 : 1;
      else g = z > 0 ? 1 : 0;
    } else if (p.activation === 'sigmoid') {
      if (variant === 'act-deriv-on-Z1') g = z * (1 - z);
      else if (variant === 'act-deriv-applied-twice') {
        const s = 1 / (1 + Math.exp(-a));
        g = s * (1 - s);
      } else g = a * (1 - a);
    } else {
      if (variant === 'act-deriv-on-Z1') g = 1 - z * z;
      else if (variant === 'act-deriv-applied-twice') {
        const t = Math.tanh(a);
        g = 1 - t * t;
      } else g = 1 - a * a;
    }
    out[i] = dA1[i] * g;
  }
  return out;
}

/** The hand-derived backward in float64, or the variant with one step changed. */
export function backward64(p: Problem64, f: Forward64, variant?: VariantId): Backward64 {
  const { B, D, H, C } = p.dims;
  const scale = p.reduction === 'mean' ? 1 / B : 1;
  const dZ2 = new Float64Array(B * C);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      const v = variant === 'dZ2-logits-not-probs' ? f.logits[b * C + c] : f.probs[b * C + c];
      dZ2[b * C + c] = v * scale;
    }
    if (variant !== 'dZ2-no-onehot') dZ2[b * C + p.y[b]] -= scale;
  }
  const dW2 = matmulTN(variant === 'dW2-uses-Z1' ? f.Z1 : f.A1, dZ2, B, H, C);
  const db2 = sumRows(dZ2, B, C);
  const dA1 = matmulNT(dZ2, p.W2, B, C, H);
  const dZ1 = activationBackward(p, f, dA1, variant);
  const dW1 = matmulTN(p.X, variant === 'dW1-uses-A1' ? dA1 : dZ1, B, D, H);
  const db1 = sumRows(dZ1, B, H);
  const dX = matmulNT(variant === 'dX-uses-dA1' ? dA1 : dZ1, p.W1, B, H, D);
  return { dZ2, dW2, db2, dA1, dZ1, dW1, db1, dX };
}

/**
 * The checked problem both verify and gradcheck start from: params and batch validated, every
 * input finite, copied to float64, and a forward pass that stays finite (else the RangeError
 * naming what overflowed).
 * @throws {TypeError|RangeError}
 */
export function checkedProblem(
  params: unknown,
  X: unknown,
  y: unknown,
  activation: Activation,
  reduction: Reduction,
): { p: v.CheckedParams; b: { X: FloatArray; y: Int32Array; B: number }; problem: Problem64; forward: Forward64 } {
  const p = v.params(params);
  const b = v.batch(X, y, p);
  const dims: Dims = { B: b.B, D: p.D, H: p.H, C: p.C };
  v.sizes(dims);
  for (const [name, a] of [['X', b.X], ['params.W1', p.W1], ['params.b1', p.b1], ['params.W2', p.W2], ['params.b2', p.b2]] as const) v.assertFinite(name, a);
  const problem: Problem64 = { dims, X: f64(b.X), y: b.y, W1: f64(p.W1), b1: f64(p.b1), W2: f64(p.W2), b2: f64(p.b2), activation, reduction };
  const forward = forward64(problem);
  // The ts engine names what overflowed, in the two-layer API's words.
  if (!v.allFinite(forward.Z1) || !v.allFinite(forward.logits)) twoLayerNet(params, activation).forward(b.X as never, { backend: 'ts' });
  return { p, b, problem, forward };
}
