// Measuring a candidate tensor against its reference, and naming the bug when it fails.
//
// The error measure is normwise: max|candidate − reference| / max|reference|, in units of the
// dtype's epsilon (what test/fixtures/README.md asks for): rounding in a correct implementation
// stays within a few eps whatever the sizes, while every formula bug is off by far more.
//
// A failing tensor is explained, most specific first, by
//   - a value that is not finite, or all zeros;
//   - a constant factor c ≈ k·r (k = B: forgot /B or used sum for mean; 1/B the reverse; −1 a sign
//     flip), also on the transposed layout (c holds rᵀ, e.g. dW1 returned as [H,D]);
//   - another tensor of the same length it matches (dZ1 returned as db1: not summed over the batch;
//     Σ_h dZ1: a bias summed over the wrong axis; …);
//   - a variant of the backward chain recomputed in float64 from the forward cache (ReLU mask >=,
//     missing, on A1, inverted; sigmoid/tanh derivative on Z1 or applied twice; dZ2 without the
//     one-hot; dW2 from Z1 instead of A1; …), each possibly also scaled;
//   - a shape that differs from the tensor's shape.
// The factor, transpose, shape, zero and non-finite diagnoses hold for any network. The others are
// the two-layer network's (twoLayerContext): they recompute its intermediate tensors (dZ1, dA1, …)
// and its backward with one step changed (model64.ts). A Sequential of any depth gets the general
// ones and, as its impostors, its other gradients (a dW2 returned where dW3 belongs); its
// intermediate gradients are not computed, so a bias summed over the wrong axis or not at all shows
// as a shape mismatch there, and an activation variant as unexplained.
import type { Activation, Dims, Reduction } from '../types';
import type { Coerced } from './coerce';
import { backward64, sumCols, variantsFor, type Backward64, type Forward64, type Problem64, type Variant, type VariantId } from './model64';

/** The loss, dX, and dW_k / db_k of Linear layer k (dW1, db1, dW2, …; any depth). */
export type TensorName = 'loss' | 'dX' | `dW${number}` | `db${number}`;

/** The Linear layers of a network, as the messages name them (dZ_k, W_k, and each layer's input). */
export interface Chain {
  /** How many Linear layers (L); gradients dW1 … dW_L. */
  linears: number;
  /** The name of Linear k's input in formulas: 'X' for the first, 'A1' after an activation, … */
  input(k: number): string;
  /** Whether an activation sits between Linear k and Linear k + 1 (dZ_k = dA_k ⊙ act′(Z_k)). */
  activationAfter(k: number): boolean;
  /** Whether dX = dZ1·W1ᵀ (Linear 1 is the first layer). */
  dxFromLinear1: boolean;
}

/** X[B,D] → Linear 1 → act → Linear 2. */
export const TWO_LAYER_CHAIN: Chain = { linears: 2, input: (k) => (k === 1 ? 'X' : 'A1'), activationAfter: () => true, dxFromLinear1: true };

export type DiagnosisKind =
  | 'missing' | 'unreadable' | 'nonfinite' | 'zero' | 'shape' | 'transpose' | 'scale' | 'sign'
  | 'bias-axis' | 'bias-not-reduced' | 'wrong-tensor' | 'activation' | 'dZ2' | 'formula' | 'precision' | 'unexplained';

export interface Diagnosis {
  kind: DiagnosisKind;
  message: string;
  /** The constant factor candidate/reference, when one explains the values. */
  factor?: number;
  /** The backward-chain variant the candidate matches (see model64.ts). */
  variant?: VariantId;
}

export interface Measure {
  maxAbsDiff: number;
  maxAbsRef: number;
  /** max|Δ| / max|ref| (NaN when the candidate holds NaN; Infinity when the reference is all 0 and the candidate is not). */
  relError: number;
  /** Flat index of the largest |Δ| (a NaN wins). */
  worst: number;
  /** Entries with |Δ| > tol·max|ref|. */
  mismatches: number;
}

export function measure(c: ArrayLike<number>, r: ArrayLike<number>, tol: number): Measure {
  let maxAbsDiff = 0;
  let maxAbsRef = 0;
  let worst = r.length > 0 ? 0 : -1;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs(c[i] - r[i]);
    if (d > maxAbsDiff || (Number.isNaN(d) && !Number.isNaN(maxAbsDiff))) {
      maxAbsDiff = d;
      worst = i;
    }
    maxAbsRef = Math.max(maxAbsRef, Math.abs(r[i]));
  }
  const relError = Number.isNaN(maxAbsDiff) ? NaN : maxAbsRef === 0 ? (maxAbsDiff === 0 ? 0 : Infinity) : maxAbsDiff / maxAbsRef;
  let mismatches = 0;
  const bound = tol * maxAbsRef;
  for (let i = 0; i < r.length; i++) if (!(Math.abs(c[i] - r[i]) <= bound)) mismatches++;
  return { maxAbsDiff, maxAbsRef, relError, worst, mismatches };
}

/** Row-major index → per-dimension index. */
export function unravel(flat: number, shape: readonly number[]): number[] {
  const idx: number[] = [];
  let rest = flat;
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(rest % shape[d]);
    rest = Math.floor(rest / shape[d]);
  }
  return idx;
}

/** The [n,m] row-major transpose of an [m,n] matrix. */
export function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = a[i * n + j];
  return out;
}

/** The least-squares k with c ≈ k·r and the normwise residual max|c − k·r| / max|k·r|. */
export function fitScale(c: Float64Array, r: Float64Array): { k: number; residual: number } | null {
  let cr = 0;
  let rr = 0;
  for (let i = 0; i < r.length; i++) {
    cr += c[i] * r[i];
    rr += r[i] * r[i];
  }
  if (!(rr > 0) || !Number.isFinite(cr)) return null;
  const k = cr / rr;
  if (k === 0) return null;
  let res = 0;
  let scale = 0;
  for (let i = 0; i < r.length; i++) {
    res = Math.max(res, Math.abs(c[i] - k * r[i]));
    scale = Math.max(scale, Math.abs(k * r[i]));
  }
  return { k, residual: res / scale };
}

const shapeText = (s: readonly number[]) => `[${s.join(',')}]`;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export interface DiagnoseContext {
  /** Rows of the batch: a factor of B or 1/B is the mean's. */
  B: number;
  reduction: Reduction;
  /** The pass tolerance (relative, normwise). */
  tol: number;
  /** Every tensor's shape. */
  shapes: Record<string, number[]>;
  chain: Chain;
  /** Other tensors a wrong gradient often turns out to be (computed on first use). */
  impostors(name: TensorName): Impostor[];
  /** Variants of the backward chain (two-layer only; none for a Sequential) … */
  variants: Variant[];
  /** … and the value of a tensor under one of them (computed on first use). */
  variantValue(id: VariantId, name: TensorName): Float64Array;
}

export const SHAPES = (d: Dims): Record<TensorName, number[]> => ({
  loss: [],
  dX: [d.B, d.D],
  dW1: [d.D, d.H],
  db1: [d.H],
  dW2: [d.H, d.C],
  db2: [d.C],
});

/** What a factor k means for this tensor. */
function factorDiagnosis(name: TensorName, k: number, ctx: DiagnoseContext, kTol: number): Diagnosis | null {
  const B = ctx.B;
  const near = (x: number) => Math.abs(k / x - 1) <= kTol;
  const what = name === 'loss' ? 'the loss' : name;
  const mean = ctx.reduction === 'mean';
  if (near(1)) return null;
  if (near(-1)) {
    const hint = name === 'loss' ? 'the loss is negated' : 'sign flipped: a negated loss, or probs and onehot(y) swapped in dZ2 = probs − onehot(y)';
    return { kind: 'sign', factor: k, message: `${what} is −1 × the reference: ${hint}` };
  }
  if (B > 1 && near(B)) {
    const hint = mean ? 'forgot the /B of the mean, or used sum where mean was meant' : "multiplied by B although reduction 'sum' has no 1/B to undo";
    return { kind: 'scale', factor: k, message: `${what} is B = ${B} × the reference: ${hint}` };
  }
  if (B > 1 && near(1 / B)) {
    const hint = mean ? 'divided by B twice' : "divided by B: used mean where sum was meant (reduction 'sum' has no 1/B)";
    return { kind: 'scale', factor: k, message: `${what} is 1/B = 1/${B} × the reference: ${hint}` };
  }
  if (B > 1 && near(-B)) return { kind: 'scale', factor: k, message: `${what} is −B = −${B} × the reference: sign flipped and ${mean ? 'the /B of the mean forgotten' : 'multiplied by B'}` };
  if (B > 1 && near(-1 / B)) return { kind: 'scale', factor: k, message: `${what} is −1/B × the reference: sign flipped and ${mean ? 'divided by B twice' : 'divided by B (mean where sum was meant)'}` };
  return { kind: 'scale', factor: k, message: `${what} is a constant ${formatNum(k)} × the reference (every entry off by the same factor: a missing or extra scalar, e.g. a learning rate or a 1/B)` };
}

export function formatNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e6 ? Number(x.toPrecision(6)).toString() : x.toExponential(4);
}

export interface Impostor {
  label: string;
  values: Float64Array;
  shape: number[];
  kind: DiagnosisKind;
  message: string;
  /** The impostor is 0 in exact arithmetic: it matches a candidate within rounding of this scale. */
  zeroAtScale?: number;
  /** How many terms of that scale its entries sum (their rounding grows with it). */
  zeroTerms?: number;
}

/** Another tensor returned in a gradient's place. */
export function wrongTensor(name: TensorName, label: string, values: Float64Array, shape: number[], shapes: Record<string, number[]>): Impostor {
  return { label, values, shape, kind: 'wrong-tensor', message: `${name} holds ${label} ${shapeText(shape)}, not ${name} ${shapeText(shapes[name])}` };
}

/** Other tensors a wrong two-layer gradient often turns out to be: its intermediates and its other gradients. */
function twoLayerImpostors(name: TensorName, dims: Dims, g: Backward64): Impostor[] {
  if (name === 'loss') return [];
  const { B, D, H, C } = dims;
  const out: Impostor[] = [];
  if (name === 'db1') {
    out.push({ label: 'Σ_h dZ1', values: sumCols(g.dZ1, B, H), shape: [B], kind: 'bias-axis', message: `db1 is summed over the wrong axis: it holds Σ_h dZ1[b,h] ([B] = [${B}]); db1 = Σ_b dZ1[b,:] sums over the batch ([H] = [${H}])` });
    out.push({ label: 'dZ1', values: g.dZ1, shape: [B, H], kind: 'bias-not-reduced', message: `db1 is not reduced over the batch: it holds dZ1 [B,H]; db1 = Σ_b dZ1[b,:] [H] (the bias is broadcast over the batch, so its gradient sums over it)` });
  }
  if (name === 'db2') {
    // Each row of dZ2 sums to 0 (softmax rows sum to 1, minus the one-hot), so this sum is 0 up to rounding.
    out.push({
      label: 'Σ_c dZ2', values: sumCols(g.dZ2, B, C), shape: [B], kind: 'bias-axis', zeroAtScale: maxAbs(g.dZ2), zeroTerms: C,
      message: `db2 is summed over the wrong axis: it holds Σ_c dZ2[b,c] ([B] = [${B}]), which is 0 in every row because softmax rows sum to 1; db2 = Σ_b dZ2[b,:] sums over the batch ([C] = [${C}])`,
    });
    out.push({ label: 'dZ2', values: g.dZ2, shape: [B, C], kind: 'bias-not-reduced', message: `db2 is not reduced over the batch: it holds dZ2 [B,C]; db2 = Σ_b dZ2[b,:] [C]` });
  }
  const others: [string, Float64Array, number[]][] = [
    ['dZ2', g.dZ2, [B, C]], ['dA1', g.dA1, [B, H]], ['dZ1', g.dZ1, [B, H]],
    ['dW1', g.dW1, [D, H]], ['db1', g.db1, [H]], ['dW2', g.dW2, [H, C]], ['db2', g.db2, [C]], ['dX', g.dX, [B, D]],
  ];
  for (const [label, values, shape] of others) {
    if (label === name || (name.startsWith('db') && label === `dZ${name[2]}`)) continue;
    out.push(wrongTensor(name, label, values, shape, SHAPES(dims)));
  }
  return out;
}

/**
 * The context of the two-layer network: its intermediates as impostors and its backward-chain
 * variants, each recomputed in float64 from the forward cache on first use.
 */
export function twoLayerContext(problem: Problem64, forward: Forward64, tol: number): DiagnoseContext {
  const cache = new Map<string, Backward64>();
  const backward = (variant?: VariantId) => {
    const key = variant ?? 'correct';
    let g = cache.get(key);
    if (!g) cache.set(key, (g = backward64(problem, forward, variant)));
    return g;
  };
  return {
    B: problem.dims.B, reduction: problem.reduction, tol, shapes: SHAPES(problem.dims), chain: TWO_LAYER_CHAIN,
    impostors: (name) => twoLayerImpostors(name, problem.dims, backward()),
    variants: variantsFor(problem.activation),
    variantValue: (id, name) => (backward(id) as unknown as Record<string, Float64Array>)[name],
  };
}

/**
 * Why a candidate tensor fails, most specific explanation first (several when they combine, e.g.
 * transposed and ×B). `cand.values` may have any length; `ref` has the tensor's.
 */
export function diagnose(name: TensorName, cand: Coerced, ref: Float64Array, ctx: DiagnoseContext): Diagnosis[] {
  const shape = ctx.shapes[name];
  if (cand.values === null) return [{ kind: 'unreadable', message: `${name} could not be read: ${cand.problem}` }];
  const c = cand.values;
  for (let i = 0; i < c.length; i++) {
    if (!Number.isFinite(c[i])) {
      return [{ kind: 'nonfinite', message: `${name} holds ${c[i]} at ${shapeText(unravel(i, cand.shape ?? (c.length === ref.length ? shape : [c.length])))} (an overflow: softmax without subtracting the row max, or log of a probability that underflowed to 0?)` }];
    }
  }
  const fitTol = Math.max(4 * ctx.tol, 1e-9);
  const kTol = Math.max(16 * fitTol, 1e-7);
  const givenShape = cand.shape;
  const out: Diagnosis[] = [];

  // Tries c ≈ k·target and c ≈ k·targetᵀ; returns the diagnoses if one fits.
  const tryMatch = (target: Float64Array, tshape: number[], onMatch: (transposed: boolean, k: number) => Diagnosis[]): Diagnosis[] | null => {
    if (target.length !== c.length) return null;
    const views: [boolean, Float64Array][] = [[false, target]];
    if (tshape.length === 2 && tshape[0] > 1 && tshape[1] > 1) views.push([true, transpose(target, tshape[0], tshape[1])]);
    for (const [transposed, t] of views) {
      const fit = fitScale(c, t);
      if (fit && fit.residual <= fitTol) return onMatch(transposed, fit.k);
    }
    return null;
  };
  const transposeDiag = (what: string, s: number[]): Diagnosis => ({
    kind: 'transpose',
    message: `${what} is transposed: it holds ${what}ᵀ ${shapeText([s[1], s[0]])} where ${what} ${shapeText(s)} belongs${transposeHint(what, ctx.chain)}`,
  });

  const lengthOk = c.length === ref.length;
  const shapeOk = givenShape === null ? lengthOk : givenShape.length === shape.length && givenShape.every((s, i) => s === shape[i]);
  if (lengthOk) {
    if (c.every((x) => x === 0) && ref.some((x) => x !== 0)) return [{ kind: 'zero', message: `${name} is all zeros (never written, or overwritten after the backward?)` }];
    // The reference itself, maybe transposed and/or scaled.
    const m = tryMatch(ref, shape, (transposed, k) => {
      const d: Diagnosis[] = [];
      if (transposed) d.push(transposeDiag(name, shape));
      const f = factorDiagnosis(name, k, ctx, kTol);
      if (f) d.push(f);
      if (d.length === 0 && !shapeOk) {
        d.push({ kind: 'shape', message: `${name} has the right values in row-major order but the shape ${shapeText(givenShape ?? [])}, expected ${shapeText(shape)}` });
      } else if (d.length === 0) {
        d.push({ kind: 'precision', factor: k, message: `${name} has the right formula but more rounding error than the tolerance allows (accumulation order or precision)` });
      }
      return d;
    });
    if (m) out.push(...m);
  }
  if (out.length === 0 && name !== 'loss') {
    // Another tensor of the right length.
    for (const imp of ctx.impostors(name)) {
      if (imp.zeroAtScale !== undefined) {
        if (c.length === imp.values.length && maxAbs(c) <= fitTol * imp.zeroAtScale * Math.max(1, imp.zeroTerms ?? 1)) {
          out.push({ kind: imp.kind, message: imp.message });
          break;
        }
        continue;
      }
      const m = tryMatch(imp.values, imp.shape, (transposed, k) => {
        const d: Diagnosis[] = [{ kind: imp.kind, message: transposed ? `${imp.message} (transposed)` : imp.message }];
        const f = factorDiagnosis(name, k, ctx, kTol);
        if (f) d.push(f);
        return d;
      });
      if (m) {
        out.push(...m);
        break;
      }
    }
  }
  if (out.length === 0 && lengthOk && name !== 'loss') {
    // The backward chain with one step changed, recomputed from the forward cache.
    for (const v of ctx.variants) {
      if (!v.affects.includes(name)) continue;
      const target = ctx.variantValue(v.id, name);
      const m = tryMatch(target, shape, (transposed, k) => {
        const kind: DiagnosisKind = v.id.startsWith('mask') || v.id.startsWith('act') ? 'activation' : v.id.startsWith('dZ2') ? 'dZ2' : 'formula';
        const d: Diagnosis[] = [{ kind, variant: v.id, message: `${name} matches the backward with ${v.explain}` }];
        if (transposed) d.push(transposeDiag(name, shape));
        const f = factorDiagnosis(name, k, ctx, kTol);
        if (f) d.push(f);
        return d;
      });
      if (m) {
        out.push(...m);
        break;
      }
    }
  }
  if (!shapeOk && !out.some((d) => d.kind === 'shape' || d.kind === 'transpose' || d.kind === 'bias-axis' || d.kind === 'bias-not-reduced' || d.kind === 'wrong-tensor')) {
    const given = givenShape ? shapeText(givenShape) : `a flat array of ${c.length}`;
    out.unshift({ kind: 'shape', message: `${name} has shape ${given}, expected ${shapeText(shape)} (${ref.length} elements)` });
  }
  if (out.length === 0) {
    const ms = measure(c, ref, ctx.tol);
    const idx = shapeText(unravel(ms.worst, shape));
    out.push({
      kind: 'unexplained',
      message: `${name}: ${ms.mismatches} of ${ref.length} entries differ beyond the tolerance; worst at ${idx}: ${formatNum(c[ms.worst])} vs ${formatNum(ref[ms.worst])}. Not a constant factor, a transpose, another tensor, or a known variant of the chain`,
    });
  }
  return out;
}

/** How the transpose comes about: ' (dZ1ᵀ·X instead of Xᵀ·dZ1)' for dW1, … */
function transposeHint(name: string, chain: Chain): string {
  const m = /^dW(\d+)$/.exec(name);
  if (m) {
    const input = chain.input(Number(m[1]));
    return ` (dZ${m[1]}ᵀ·${input} instead of ${input}ᵀ·dZ${m[1]})`;
  }
  return name === 'dX' && chain.dxFromLinear1 ? ' (W1·dZ1ᵀ instead of dZ1·W1ᵀ)' : '';
}

/**
 * The context of any network (a Sequential of any depth): the general diagnoses, with the other
 * gradients of the reference as the tensors a wrong one may turn out to be.
 */
export function generalContext(B: number, reduction: Reduction, tol: number, shapes: Record<string, number[]>, chain: Chain, reference: Record<string, Float64Array>): DiagnoseContext {
  return {
    B, reduction, tol, shapes, chain,
    impostors: (name) => (name === 'loss' ? [] : Object.keys(reference).filter((k) => k !== 'loss' && k !== name).map((k) => wrongTensor(name, k, reference[k], shapes[k], shapes))),
    variants: [],
    variantValue: () => {
      throw new Error('no backward-chain variants outside the two-layer network');
    },
  };
}
