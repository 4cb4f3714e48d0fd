// The network in the verifier's own float64 arithmetic: Linear layers and elementwise activations
// in any order, then softmax cross-entropy (the two-layer network is [Linear, act, Linear]).
// - The forward pass, with compensated sums: what finite differences (fd.ts) start from.
// - The hand-derived backward, or the same with one step deliberately changed (a "variant": a
//   ReLU mask >=, a derivative on the wrong tensor, dZ without the one-hot, …), so diagnose.ts can
//   match a failing candidate against the bug that explains it.
// Nothing here is the truth a candidate is judged by: that is torch, or the finite differences.
import type { LossArgs } from '../engine/engine';
import { reduceLoss } from '../engine/ts';
import { activationBackward as kernelActivationBackward, activationForward, crossEntropyGeneral, gemm, softmaxCrossEntropy } from '../kernels/ts';
import { Sequential } from '../layers/sequential';
import type { Activation, Dims, Reduction } from '../types';

export type Layer64 =
  | { kind: 'linear'; /** Linear number, from 1. */ k: number; in: number; out: number; W: Float64Array; b: Float64Array }
  | { kind: Activation };

export interface Stack64 {
  /** X [B, widths[0]]. */
  X: Float64Array;
  y: Int32Array; B: number; layers: Layer64[]; reduction: Reduction;
  /**
   * F.cross_entropy's options beyond the default (weight as float64, ignoreIndex, labelSmoothing;
   * reduction as above), or null/absent: the loss is then Σ_c t_bc·(lse_b − z_bc) (kernels/ts.ts
   * crossEntropyGeneral, in float64) and its gradient p_b·S_b − t_b.
   */
  loss?: LossArgs | null;
  /** widths[i] is the input width of layers[i]; the last one is C. */
  widths: number[];
}

export interface StackForward64 {
  /** outputs[i] is layers[i]'s output [B, widths[i+1]]; the last one is the logits. */
  outputs: Float64Array[];
  probs: Float64Array; // [B,C]
  loss: number;
}

/** matmul into C [M,N] = A[M,K]·B[K,N] (+ bias), each sum compensated (Neumaier); comp: N of scratch; zero rows of A skipped. */
export function matmulInto(A: Float64Array, Bm: Float64Array, M: number, K: number, N: number, C: Float64Array, comp: Float64Array, bias?: Float64Array): void {
  for (let i = 0; i < M; i++) {
    const ci = i * N;
    if (bias) C.set(bias, ci);
    else C.fill(0, ci, ci + N);
    comp.fill(0, 0, N);
    for (let k = 0; k < K; k++) {
      const a = A[i * K + k];
      if (a === 0) continue;
      const bk = k * N;
      for (let j = 0; j < N; j++) {
        const x = a * Bm[bk + j];
        const s = C[ci + j];
        const t = s + x;
        comp[j] += Math.abs(s) >= Math.abs(x) ? s - t + x : x - t + s;
        C[ci + j] = t;
      }
    }
    for (let j = 0; j < N; j++) C[ci + j] += comp[j];
  }
}

/** Every layer forward (the Linears' sums compensated), then the ts kernels' softmax and cross-entropy. */
export function stackForward64(s: Stack64): StackForward64 {
  const { B, widths } = s;
  const outputs: Float64Array[] = [];
  let a = s.X;
  s.layers.forEach((l, i) => {
    const out = new Float64Array(B * widths[i + 1]);
    if (l.kind === 'linear') matmulInto(a, l.W, B, l.in, l.out, out, new Float64Array(l.out), l.b);
    else activationForward(l.kind, a, out);
    outputs.push(out);
    a = out;
  });
  const C = widths[widths.length - 1];
  const probs = new Float64Array(B * C);
  if (s.loss) return { outputs, probs, loss: crossEntropyGeneral(a, s.y, s.loss, B, C, probs, new Float64Array(B * C), null) };
  return { outputs, probs, loss: reduceLoss(softmaxCrossEntropy(a, s.y, probs, B, C), B, s.reduction, false) };
}

/** The layers of a float64 Sequential (sharing its parameter arrays). */
export function stackLayersOf(seq: Sequential): Layer64[] {
  return seq.layers.map((l, i): Layer64 => {
    const spec = l.spec();
    if (spec.kind !== 'linear') return { kind: spec.kind };
    const k = seq.linearNumber[i];
    return { kind: 'linear', k, in: spec.in, out: spec.out, W: seq.params[`W${k}`] as Float64Array, b: seq.params[`b${k}`] as Float64Array };
  });
}

/** The two-layer problem written out (as the tests and docs/verifier.md write it). */
export type TwoLayer64 = Record<'X' | 'W1' | 'b1' | 'W2' | 'b2', Float64Array> & {
  dims: Dims; y: Int32Array; activation: Activation; reduction: Reduction;
};

/** The two-layer problem as the stack [Linear(W1, b1), act, Linear(W2, b2)] (sharing its arrays). */
export function twoLayerStack(p: TwoLayer64): Stack64 {
  const { B, D, H, C } = p.dims;
  return {
    X: p.X, y: p.y, B, reduction: p.reduction, widths: [D, H, H, C],
    layers: [{ kind: 'linear', k: 1, in: D, out: H, W: p.W1, b: p.b1 }, { kind: p.activation }, { kind: 'linear', k: 2, in: H, out: C, W: p.W2, b: p.b2 }],
  };
}

/**
 * The names of the layers' outputs in formulas: Z_k for Linear k, A_k for an activation after it
 * ('act(X)' for one before any Linear); the last is the logits.
 */
export function outputNames(s: Stack64): string[] {
  let k = 0;
  return s.layers.map((l) => (l.kind === 'linear' ? `Z${++k}` : k === 0 ? 'act(X)' : `A${k}`));
}

// ---- the backward chain, and its variants ----

/** The bugs the verifier recognises by recomputing them; each changes one step of the backward chain. */
export type VariantId =
  | 'mask-ge' | 'mask-missing' | 'mask-times-A1' | 'mask-inverted'
  | 'act-deriv-on-Z1' | 'act-deriv-applied-twice' | 'act-deriv-missing'
  | 'dZ2-no-onehot' | 'dZ2-logits-not-probs' | 'dW2-uses-Z1' | 'dW1-uses-A1' | 'dX-uses-dA1';

export interface Variant {
  id: VariantId;
  /** The activation whose layers it changes (the activation variants). */
  act?: Activation;
  /** What the candidate did, in a sentence. */
  explain: string;
}

const isAct = (l: Layer64 | undefined) => l !== undefined && l.kind !== 'linear';

/**
 * The variants that make sense for this stack: each activation's (on every layer of that kind), the
 * loss's, and the Linear layers' (on every Linear where the step exists). A step that happens in one
 * place is written with its names (Z1, dW2, …), one that happens in several with the layer index k.
 */
export function variantsOf(s: Stack64): Variant[] {
  const names = outputNames(s);
  const { layers } = s;
  const out: Variant[] = [];
  const at = (pred: (i: number) => boolean) => layers.map((_, i) => i).filter(pred);
  const kinds = [...new Set(layers.filter(isAct).map((l) => l.kind as Activation))];
  for (const a of kinds) {
    const one = at((i) => layers[i].kind === a);
    const [Z, A] = one.length === 1 ? [one[0] === 0 ? 'X' : names[one[0] - 1], names[one[0]]] : ['Z', 'A'];
    if (a === 'relu') {
      out.push(
        { id: 'mask-ge', act: a, explain: `ReLU mask ${Z} >= 0 instead of ${Z} > 0: the gradient flows through units with ${Z} exactly 0 (PyTorch gives 0 there)` },
        { id: 'mask-missing', act: a, explain: `no ReLU mask: d${Z} = d${A} (a mask on ${A} >= 0 is always true, so it does the same)` },
        { id: 'mask-times-A1', act: a, explain: `d${Z} = d${A} ⊙ ${A}: multiplied by the activation instead of its derivative (${Z} > 0)` },
        { id: 'mask-inverted', act: a, explain: `ReLU mask inverted: the gradient flows where ${Z} <= 0 and is cut where ${Z} > 0` },
      );
      continue;
    }
    const f = a === 'sigmoid' ? { d: `${A}(1−${A})`, onZ: `${Z}(1−${Z})`, twice: `σ(${A})(1−σ(${A}))` } : { d: `1−${A}²`, onZ: `1−${Z}²`, twice: `1−tanh(${A})²` };
    out.push(
      { id: 'act-deriv-on-Z1', act: a, explain: `${a}′ written as ${f.onZ}: the output-form derivative applied to ${Z} (it is ${f.d})` },
      { id: 'act-deriv-applied-twice', act: a, explain: `${a}′ computed as ${f.twice}: the activation applied again to ${A} (it is ${f.d})` },
      { id: 'act-deriv-missing', act: a, explain: `no ${a}′ factor: d${Z} = d${A} (it is d${A} ⊙ ${f.d})` },
    );
  }
  const logits = names[names.length - 1];
  // The loss's own bugs are recognised for the default loss (with its options the gradient is p·S − t).
  if (!s.loss) out.push(
    { id: 'dZ2-no-onehot', explain: `d${logits} = probs/B: the one-hot of y was never subtracted (d${logits} must be (probs − onehot(y))/B)` },
    { id: 'dZ2-logits-not-probs', explain: `d${logits} was built from the logits ${logits} instead of softmax(${logits})` },
  );
  const k = (i: number) => (layers[i] as { k: number }).k;
  const fromZ = at((i) => i >= 2 && layers[i].kind === 'linear' && isAct(layers[i - 1]) && layers[i - 2].kind === 'linear');
  if (fromZ.length > 0) {
    const [W, dZ, Z, A] = fromZ.length === 1 ? [`dW${k(fromZ[0])}`, `dZ${k(fromZ[0])}`, names[fromZ[0] - 2], names[fromZ[0] - 1]] : ['dW_k', 'dZ_k', 'Z_{k−1}', 'A_{k−1}'];
    out.push({ id: 'dW2-uses-Z1', explain: `${W} = ${Z}ᵀ·${dZ}: used the pre-activation ${Z} where the activation ${A} belongs (${W} = ${A}ᵀ·${dZ})` });
  }
  const beforeAct = at((i) => layers[i].kind === 'linear' && isAct(layers[i + 1]));
  if (beforeAct.length > 0) {
    const i = beforeAct[0];
    const [W, In, n] = beforeAct.length === 1 ? [`dW${k(i)}`, i === 0 ? 'X' : names[i - 1], String(k(i))] : ['dW_k', 'A_{k−1}', '_k'];
    out.push({ id: 'dW1-uses-A1', explain: `${W} = ${In}ᵀ·dA${n}: the activation derivative was skipped on the way to ${W} (${W} = ${In}ᵀ·dZ${n})` });
    if (i === 0) out.push({ id: 'dX-uses-dA1', explain: 'dX = dA1·W1ᵀ: the activation derivative was skipped on the way to dX (dX = dZ1·W1ᵀ)' });
  }
  return out;
}

/** op(A)·op(B) [M,N] into a new array: the ts kernels' GEMM (plain sums, K ascending). */
function product(transA: boolean, transB: boolean, M: number, N: number, K: number, A: Float64Array, Bm: Float64Array): Float64Array {
  const C = new Float64Array(M * N);
  gemm(transA, transB, M, N, K, 1, A, Bm, 0, C);
  return C;
}

/** Sums of a [rows, cols] matrix over the rows (the batch: a bias gradient) or over the columns (the wrong axis). */
export function sumOver(A: Float64Array, rows: number, cols: number, axis: 'rows' | 'cols'): Float64Array {
  const out = new Float64Array(axis === 'rows' ? cols : rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[axis === 'rows' ? c : r] += A[r * cols + c];
  return out;
}

/** dZ = dA ⊙ act′(Z) by the ts kernel, or one of the wrong versions (Z the activation's input, A its output). */
function activationBackward(kind: Activation, Z: Float64Array, A: Float64Array, dA: Float64Array, id?: VariantId): Float64Array {
  const dZ = dA.slice();
  if (id === 'mask-missing' || id === 'act-deriv-missing') return dZ;
  if (kind === 'relu' && id !== undefined) return dZ.map((d, i) => d * (id === 'mask-ge' ? (Z[i] >= 0 ? 1 : 0) : id === 'mask-times-A1' ? A[i] : Z[i] > 0 ? 0 : 1));
  // The kernel takes σ′ and tanh′ in their output form, a(1 − a) and 1 − a²: the variants hand it Z, or act(A), for a.
  let a = A;
  if (id === 'act-deriv-on-Z1') a = Z;
  else if (id === 'act-deriv-applied-twice') {
    a = new Float64Array(A.length);
    activationForward(kind, A, a);
  }
  kernelActivationBackward(kind, Z, a, dZ);
  return dZ;
}

/**
 * The hand-derived backward in float64 (plain sums), or the variant with one step changed: every
 * gradient by name — d(logits), then back through the layers d(each output), dW_k, db_k, and dX.
 */
export function backward64(s: Stack64, f: StackForward64, variant?: Variant): Record<string, Float64Array> {
  const { B, layers, widths, y } = s;
  const id = variant?.id;
  const names = outputNames(s);
  const scale = s.reduction === 'mean' ? 1 / B : 1;
  const C = widths[widths.length - 1];
  const from = id === 'dZ2-logits-not-probs' ? f.outputs[layers.length - 1] : f.probs;
  let g: Float64Array = from.map((p) => p * scale);
  if (s.loss) crossEntropyGeneral(f.outputs[layers.length - 1], y, s.loss, B, C, new Float64Array(B * C), g, null);
  else if (id !== 'dZ2-no-onehot') for (let b = 0; b < B; b++) g[b * C + y[b]] -= scale;
  const out: Record<string, Float64Array> = { [`d${names[layers.length - 1]}`]: g };
  let after: Float64Array | null = null; // the gradient of the layer after this one's output
  for (let i = layers.length - 1; i >= 0; i--) {
    const l = layers[i];
    const input = i === 0 ? s.X : f.outputs[i - 1];
    let dIn: Float64Array;
    if (l.kind === 'linear') {
      const skipAct = id === 'dW1-uses-A1' && isAct(layers[i + 1]);
      const left = id === 'dW2-uses-Z1' && i >= 2 && isAct(layers[i - 1]) && layers[i - 2].kind === 'linear' ? f.outputs[i - 2] : input;
      out[`dW${l.k}`] = product(true, false, l.in, l.out, B, left, skipAct ? after! : g);
      out[`db${l.k}`] = sumOver(g, B, l.out, 'rows');
      dIn = product(false, true, B, l.in, l.out, id === 'dX-uses-dA1' && i === 0 && isAct(layers[1]) ? after! : g, l.W);
    } else {
      dIn = activationBackward(l.kind, input, f.outputs[i], g, variant?.act === l.kind ? id : undefined);
    }
    out[i === 0 ? 'dX' : `d${names[i - 1]}`] = dIn;
    after = g;
    g = dIn;
  }
  return out;
}
