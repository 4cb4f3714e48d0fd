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
//   - another tensor of the same length it matches: an intermediate gradient (dZ1 returned as db1:
//     not summed over the batch; Σ_h dZ1: a bias summed over the wrong axis; …) or another
//     layer's gradient (a dW2 returned where dW3 belongs);
//   - a variant of the backward chain recomputed in float64 from the forward pass (ReLU mask >=,
//     missing, on A, inverted; sigmoid/tanh derivative on Z or applied twice; dZ of the logits
//     without the one-hot; dW_k from Z_{k−1} instead of A_{k−1}; …, stack64.ts), possibly scaled;
//   - a shape that differs from the tensor's shape.
// The same for any network: the two-layer one is the stack [Linear, act, Linear].
import { transpose } from '../checkpoint';
import { shapeText } from '../io/safetensors';
import type { Reduction } from '../types';
import { shapeOk, type Coerced } from './coerce';
import { backward64, outputNames, sumOver, variantsOf, type Stack64, type StackForward64, type Variant, type VariantId } from './stack64';

/** The loss, dX, and dW_k / db_k of Linear layer k (dW1, db1, dW2, …; any depth). */
export type TensorName = 'loss' | 'dX' | `dW${number}` | `db${number}`;

/**
 * The Linear layers of a network as the messages name them: how many (L), the name of Linear k's
 * input in formulas ('X', 'A1' after an activation, …), whether an activation sits between Linear
 * k and k + 1 (dZ_k = dA_k ⊙ act′(Z_k)), whether dX = dZ1·W1ᵀ (Linear 1 is the first layer).
 */
export function chainOf(s: Stack64) {
  const at = s.layers.flatMap((l, i) => (l.kind === 'linear' ? [i] : []));
  const names = outputNames(s);
  return {
    linears: at.length,
    input: (k: number) => (at[k - 1] === 0 ? 'X' : names[at[k - 1] - 1]),
    activationAfter: (k: number) => k < at.length && at[k] - at[k - 1] > 1,
    dxFromLinear1: at[0] === 0,
  };
}
export type Chain = ReturnType<typeof chainOf>;

export type DiagnosisKind =
  | 'missing' | 'unreadable' | 'nonfinite' | 'zero' | 'shape' | 'transpose' | 'scale' | 'sign'
  | 'bias-axis' | 'bias-not-reduced' | 'wrong-tensor' | 'activation' | 'dZ2' | 'formula' | 'precision' | 'unexplained'
  | 'bits';

export interface Diagnosis {
  kind: DiagnosisKind; message: string;
  /** The constant factor candidate/reference, when one explains the values. */
  factor?: number;
  /** The backward-chain variant the candidate matches (see stack64.ts). */
  variant?: VariantId;
}

export interface Measure {
  maxAbsDiff: number; maxAbsRef: number;
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
  return shape.map((n, d) => Math.floor(flat / shape.slice(d + 1).reduce((a, b) => a * b, 1)) % n);
}

/** The least-squares k with c ≈ k·r and the normwise residual max|c − k·r| / max|k·r|. */
function fitScale(c: Float64Array, r: Float64Array): { k: number; residual: number } | null {
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

const maxAbs = (a: Float64Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

export function formatNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e6 ? Number(x.toPrecision(6)).toString() : x.toExponential(4);
}

/** What a factor k means for this tensor. */
function factorDiagnosis(name: TensorName, k: number, B: number, reduction: Reduction, kTol: number): Diagnosis | null {
  const near = (x: number) => Math.abs(k / x - 1) <= kTol;
  const what = name === 'loss' ? 'the loss' : name;
  const mean = reduction === 'mean';
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

interface Impostor {
  values: Float64Array; shape: number[]; kind: DiagnosisKind; message: string;
  /** The impostor is 0 in exact arithmetic: it matches a candidate within rounding of this scale … */
  zeroAtScale?: number;
  /** … summed over this many terms. */
  zeroTerms?: number;
}

/**
 * The context of a network: its float64 backward (every intermediate gradient, as impostors) and
 * the variants of its backward chain, each computed on first use.
 */
export function diagnoseContext(stack: Stack64, forward: StackForward64, shapes: Record<string, number[]>, tol: number) {
  const cache = new Map<Variant | null, Record<string, Float64Array>>();
  const backward = (v: Variant | null) => {
    let g = cache.get(v);
    if (!g) cache.set(v, (g = backward64(stack, forward, v ?? undefined)));
    return g;
  };
  const { B, layers } = stack;
  return {
    B, reduction: stack.reduction, tol, shapes, chain: chainOf(stack), variants: variantsOf(stack),
    /** A tensor under a variant, or undefined where the variant leaves it as it is. */
    variantValue: (v: Variant, name: TensorName): Float64Array | undefined => {
      const a = backward(v)[name];
      const ok = backward(null)[name];
      return a === undefined || a.every((x, i) => Object.is(x, ok[i])) ? undefined : a;
    },
    /** Other tensors a wrong gradient often turns out to be. */
    impostors: (name: TensorName): Impostor[] => {
      if (name === 'loss') return [];
      const g = backward(null);
      const out: Impostor[] = [];
      const bias = /^db(\d+)$/.exec(name);
      if (bias) {
        // db_k from dZ_k [B,out]: summed over the wrong axis, or not at all.
        const dZ = `dZ${bias[1]}`;
        const [, w] = shapes[dZ];
        const last = layers[layers.length - 1].kind === 'linear' && (layers[layers.length - 1] as { k: number }).k === Number(bias[1]);
        const [j, J] = last ? ['c', 'C'] : ['h', 'H'];
        // Each row of the logits' dZ sums to 0 (softmax rows sum to 1, minus the one-hot), so that sum is 0 up to rounding.
        out.push({
          values: sumOver(g[dZ], B, w, 'cols'), shape: [B], kind: 'bias-axis', ...(last ? { zeroAtScale: maxAbs(g[dZ]), zeroTerms: w } : {}),
          message: `${name} is summed over the wrong axis: it holds Σ_${j} ${dZ}[b,${j}] ([B] = [${B}])${last ? ', which is 0 in every row because softmax rows sum to 1' : ''}; ${name} = Σ_b ${dZ}[b,:] sums over the batch ([${J}] = [${w}])`,
        });
        out.push({
          values: g[dZ], shape: [B, w], kind: 'bias-not-reduced',
          message: `${name} is not reduced over the batch: it holds ${dZ} [B,${J}]; ${name} = Σ_b ${dZ}[b,:] [${J}] (the bias is broadcast over the batch, so its gradient sums over it)`,
        });
      }
      // The intermediate gradients (dZ_L, …, dA1, dZ1), then the others in forward order, then dX.
      const grads = Object.keys(g).filter((k) => /^d[Wb]\d+$/.test(k)).sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)));
      const others = [...Object.keys(g).filter((k) => k !== 'dX' && !grads.includes(k)), ...grads, 'dX'];
      for (const label of others) {
        if (label === name || (bias && label === `dZ${bias[1]}`) || shapes[label] === undefined) continue;
        out.push({ values: g[label], shape: shapes[label], kind: 'wrong-tensor', message: `${name} holds ${label} ${shapeText(shapes[label])}, not ${name} ${shapeText(shapes[name])}` });
      }
      return out;
    },
  };
}
export type DiagnoseContext = ReturnType<typeof diagnoseContext>;

/**
 * Why a candidate tensor fails, most specific explanation first (several when they combine, e.g.
 * transposed and ×B). `cand.values` may have any length; `ref` has the tensor's.
 */
export function diagnose(name: TensorName, cand: Coerced, ref: Float64Array, ctx: DiagnoseContext): Diagnosis[] {
  const shape = ctx.shapes[name];
  if (cand.values === null) return [{ kind: 'unreadable', message: `${name} could not be read: ${cand.problem}` }];
  const c = cand.values;
  const i = c.findIndex((x) => !Number.isFinite(x));
  if (i >= 0) {
    const at = shapeText(unravel(i, cand.shape ?? (c.length === ref.length ? shape : [c.length])));
    return [{ kind: 'nonfinite', message: `${name} holds ${c[i]} at ${at} (an overflow: softmax without subtracting the row max, or log of a probability that underflowed to 0?)` }];
  }
  const fitTol = Math.max(4 * ctx.tol, 1e-9);
  const kTol = Math.max(16 * fitTol, 1e-7);
  const factor = (k: number) => factorDiagnosis(name, k, ctx.B, ctx.reduction, kTol);
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
  const transposeDiag = (): Diagnosis => ({
    kind: 'transpose',
    message: `${name} is transposed: it holds ${name}ᵀ ${shapeText([shape[1], shape[0]])} where ${name} ${shapeText(shape)} belongs${transposeHint(name, ctx.chain)}`,
  });
  const withFactor = (d: Diagnosis[], k: number) => [...d, ...[factor(k)].filter((f) => f !== null)];

  const lengthOk = c.length === ref.length;
  const shapeFits = shapeOk(cand, shape);
  if (lengthOk) {
    if (c.every((x) => x === 0) && ref.some((x) => x !== 0)) return [{ kind: 'zero', message: `${name} is all zeros (never written, or overwritten after the backward?)` }];
    // The reference itself, maybe transposed and/or scaled.
    const m = tryMatch(ref, shape, (transposed, k) => {
      const d = withFactor(transposed ? [transposeDiag()] : [], k);
      if (d.length === 0 && !shapeFits) {
        d.push({ kind: 'shape', message: `${name} has the right values in row-major order but the shape ${shapeText(cand.shape ?? [])}, expected ${shapeText(shape)}` });
      } else if (d.length === 0) {
        d.push({ kind: 'precision', factor: k, message: `${name} has the right formula but more rounding error than the tolerance allows (accumulation order or precision)` });
      }
      return d;
    });
    if (m) out.push(...m);
  }
  // The diagnoses of the first of `xs` that explains the values.
  const firstOf = <T>(xs: T[], match: (x: T) => Diagnosis[] | null) => {
    for (const x of xs) {
      const m = match(x);
      if (m) return out.push(...m);
    }
  };
  if (out.length === 0 && name !== 'loss') {
    // Another tensor of the right length.
    firstOf(ctx.impostors(name), (imp) => {
      if (imp.zeroAtScale === undefined) {
        return tryMatch(imp.values, imp.shape, (transposed, k) =>
          withFactor([{ kind: imp.kind, message: transposed ? `${imp.message} (transposed)` : imp.message }], k));
      }
      const zero = c.length === imp.values.length && maxAbs(c) <= fitTol * imp.zeroAtScale * Math.max(1, imp.zeroTerms ?? 1);
      return zero ? [{ kind: imp.kind, message: imp.message }] : null;
    });
  }
  if (out.length === 0 && lengthOk && name !== 'loss') {
    // The backward chain with one step changed, recomputed from the forward pass.
    firstOf(ctx.variants, (v) => {
      const target = ctx.variantValue(v, name);
      if (target === undefined) return null;
      const kind: DiagnosisKind = v.id.startsWith('mask') || v.id.startsWith('act') ? 'activation' : v.id.startsWith('dZ2') ? 'dZ2' : 'formula';
      const diagnosis: Diagnosis = { kind, variant: v.id, message: `${name} matches the backward with ${v.explain}` };
      return tryMatch(target, shape, (transposed, k) => withFactor([diagnosis, ...(transposed ? [transposeDiag()] : [])], k));
    });
  }
  if (!shapeFits && !out.some((d) => d.kind === 'shape' || d.kind === 'transpose' || d.kind === 'bias-axis' || d.kind === 'bias-not-reduced' || d.kind === 'wrong-tensor')) {
    const given = cand.shape ? shapeText(cand.shape) : `a flat array of ${c.length}`;
    out.unshift({ kind: 'shape', message: `${name} has shape ${given}, expected ${shapeText(shape)} (${ref.length} elements)` });
  }
  if (out.length === 0) {
    const ms = measure(c, ref, ctx.tol);
    out.push({
      kind: 'unexplained',
      message: `${name}: ${ms.mismatches} of ${ref.length} entries differ beyond the tolerance; worst at ${shapeText(unravel(ms.worst, shape))}: ${formatNum(c[ms.worst])} vs ${formatNum(ref[ms.worst])}. Not a constant factor, a transpose, another tensor, or a known variant of the chain`,
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
