// verify(params | seq, X, y, opts): a candidate's loss and gradients against a reference, tensor
// by tensor, with the first failure in backward order explained. The reference is LibTorch
// autograd in float64 or central finite differences in float64 (fd.ts: accurate to a few eps,
// measured against the PyTorch fixtures).
import { HandgradError } from '../errors';
import type { Sequential } from '../layers/sequential';
import type { BackendName, Dtype, FloatArray, Params, Reduction } from '../types';
import * as v from '../validate';
import { shapeOk } from './coerce';
import { diagnose, diagnoseContext, measure, unravel, type Chain, type Diagnosis, type Measure, type TensorName } from './diagnose';
import { FiniteDifferences, type FdTensor } from './fd';
import { num, subjectOf, type GradFunction, type Network, type NetworkInfo, type NetworkOptions } from './subject';

export type { GradFunction, GradOptions, Network, NetworkOptions, SequentialDescription } from './subject';

/** A Sequential's gradient function: (seq, X, y, { reduction, inputGrad }) => { dX?, dW1, db1, …, dW_L, db_L }. */
export type SequentialGradFunction = GradFunction<Sequential>;
/** A backend's hand-derived path, or a gradient function. */
export type Candidate<N extends Network = Params> = BackendName | GradFunction<N>;
export type SequentialCandidate = Candidate<Sequential>;
export type ReferenceName = 'torch' | 'fd';

export interface VerifyOptions<N extends Network = Params> extends NetworkOptions<N> {
  /** 'native' (default), 'ts', 'torch', 'wasm', or a gradient function. */
  candidate?: Candidate<N>;
  /** 'auto' (default): torch when this build has it, otherwise fd. 'torch' insists (an error if unavailable). */
  reference?: 'auto' | ReferenceName;
  /** Pass when max|Δ|/max|ref| ≤ tolerance × eps of the candidate's dtype (default 8 against torch, 16 against fd). */
  tolerance?: number;
  /** Check dX as well (default true). */
  inputGrad?: boolean;
  /** Step of the finite differences when the reference is 'fd' (default 1e-8). */
  fdStep?: number;
  /**
   * Fail on any bit that differs from LibTorch autograd in the candidate's own dtype (default false:
   * the tolerance decides). Needs the torch reference (ERR_TORCH_UNAVAILABLE without it).
   */
  exact?: boolean;
}
export type SequentialVerifyOptions = VerifyOptions<Sequential>;
const OPTIONS = ['activation', 'reduction', 'candidate', 'reference', 'tolerance', 'inputGrad', 'fdStep', 'exact', 'weight', 'ignoreIndex', 'labelSmoothing'] as const;

/** Options refused by name (none left: F.cross_entropy's weight, ignoreIndex and labelSmoothing are checked like the rest). */
export const UNSUPPORTED: Readonly<Record<string, string>> = {};

/**
 * The default tolerance, in units of the candidate dtype's epsilon (float64: 2^-52, float32: 2^-23),
 * per reference. Measured at the seed's sizes (docs/verifier.md): the native path and LibTorch round
 * alike and agree within ~3 eps, so 8 against torch. The finite differences come within ~2 eps of
 * the exact gradient (checked against 80-bit arithmetic), closer than LibTorch, so against them a
 * candidate shows its own full rounding error, up to ~7 eps for a correct float64 tanh network's
 * dX; 16 keeps a margin. Any formula bug is off by orders of magnitude more than either.
 */
export const DEFAULT_TOLERANCE_EPS: Record<ReferenceName, number> = { torch: 8, fd: 16 };
export const DEFAULT_FD_STEP = 1e-8;
export const EPSILON: Record<Dtype, number> = { float64: 2 ** -52, float32: 2 ** -23 };

/** A tensor's check: measure's max|Δ|, max|ref|, relError and mismatches (NaN, and 0 mismatches, where nothing was measured). */
export interface TensorCheck extends Omit<Measure, 'worst'> {
  name: TensorName;
  /** The tensor's shape ([] for the loss). */
  shape: number[];
  /** 'skipped': not computed by the candidate (dX when it returns none, a function's loss). */
  status: 'pass' | 'fail' | 'missing' | 'skipped';
  /** The shape the candidate gave, when it carried one (nested arrays); otherwise its length. */
  candidateShape: number[] | null;
  candidateLength: number;
  /** relError / eps of the dtype. */
  epsUnits: number;
  /**
   * The fraction of entries whose bits equal LibTorch autograd's in the candidate's own dtype (1:
   * bit for bit); null where LibTorch is not available or nothing was compared.
   */
  bitIdentical: number | null;
  worst: { index: number[]; candidate: number; reference: number } | null; diagnosis: Diagnosis[];
  /** A Sequential's layer the tensor belongs to: 'layers[2] (Linear 128→64)' (dX: layers[0]; the loss: its loss). */
  layer?: string;
}

/** What every verify report holds, whatever the network. */
export interface VerifyReportBase {
  ok: boolean; dtype: Dtype; reduction: Reduction; reference: ReferenceName; eps: number; toleranceEps: number;
  /** 'native', 'ts', … or 'function'. */
  candidate: string;
  /** How the reference was computed, and why it is that one. */
  referenceNote: string;
  /**
   * Set when reference 'auto' fell back to finite differences because LibTorch is unavailable: why
   * (the addon missing or not loading) and how to get it. The summary opens with it.
   */
  fallback?: string;
  /** The relative (normwise) tolerance: toleranceEps × eps. */
  tolerance: number;
  /** Two-layer params: loss, dX, dW1, db1, dW2, db2. Sequential: loss, then backward order (dW_L, db_L, …, dW1, db1, dX). */
  tensors: TensorCheck[];
  /** The first failing tensor in backward order (loss, then dW_L, db_L, …, dW1, db1, dX), or null. */
  firstFailure: TensorName | null;
  /** One paragraph: what failed first and what it means. */
  summary: string;
  /** Set when the candidate function threw. */
  candidateError?: string;
}

/**
 * The report: on the two-layer params it has their dims and activation; on a Sequential its
 * network, dims, widths, and the layer of the first failure ('layers[2] (Linear 7→9)', or null).
 */
export type VerifyReport<N extends Network = Params> = VerifyReportBase & NetworkInfo<N> & (N extends Sequential ? { firstFailureLayer: string | null } : unknown);
export type SequentialVerifyReport = VerifyReport<Sequential>;

/** dW_hi, db_hi, …, dW_lo, db_lo: the gradients of Linears hi down to lo, in the order the backward computes them. */
const gradsDown = (hi: number, lo: number) =>
  Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i): TensorName[] => [`dW${hi - i}`, `db${hi - i}`]).flat();
const failed = (t: TensorCheck) => t.status === 'fail' || t.status === 'missing';

/**
 * Checks a candidate's loss and gradients against a reference, tensor by tensor, and explains the
 * first failure in backward order (a constant factor such as B, a transpose, a bias summed over
 * the wrong axis, a sign flip, a wrong ReLU mask, a wrong shape, …).
 *
 * The network is the two-layer params { W1, b1, W2, b2 } (checked as the Sequential [Linear, act,
 * Linear]) or a Sequential of any depth. The candidate is its hand-derived path on a backend, or a
 * function handed copies of the network, in the form given (the params object with all its
 * fields, or the Sequential), and of the batch: (net, X, y, opts) => { dX?, dW1, db1, dW2, db2, … }.
 * The references work on a float64 copy; for a Sequential each tensor names its layer (seq.where(i)).
 * @throws {TypeError|RangeError} invalid params (or Sequential), X, y or options (as forwardBackward;
 *   an unknown option is named, with the one it most likely meant)
 * @throws {HandgradError} ERR_TORCH_UNAVAILABLE when reference 'torch' is demanded and absent;
 *   a backend candidate that is unavailable
 */
export function verify<N extends Network>(net: N, X: FloatArray, y: ArrayLike<number>, opts: VerifyOptions<N> = {}): VerifyReport<N> {
  const o = v.options('opts', opts, OPTIONS, UNSUPPORTED);
  const referenceOpt = v.oneOf('opts.reference', o.reference, ['auto', 'torch', 'fd'] as const, 'auto');
  const inputGrad = v.bool('opts.inputGrad', o.inputGrad, true);
  // Asked for by name (not the default): a candidate function must then return dX.
  const inputGradAsked = o.inputGrad === true;
  const exact = v.bool('opts.exact', o.exact, false);
  if (exact && o.reference === 'fd') v.fail(TypeError, "reference 'torch' or 'auto' with exact: true (bits are compared with LibTorch)", 'opts.reference', o.reference);
  // undefined is the default; null is a value, refused as null is for every other option.
  const candidate = (o.candidate === undefined ? 'native' : o.candidate) as Candidate<Network>;
  if (typeof candidate !== 'function') v.oneOf('opts.candidate', candidate, v.BACKENDS, 'native');
  const toleranceOpt = o.tolerance === undefined ? undefined : num('opts.tolerance', o.tolerance, 0, true);
  const fdStep = num('opts.fdStep', o.fdStep, DEFAULT_FD_STEP, true);

  const s = subjectOf(net, X, y, o);

  let reference: ReferenceName = 'fd';
  let referenceNote = `central finite differences in float64 (step ${fdStep}), as asked`;
  let ref: Record<string, Float64Array> | undefined;
  let fallback: string | undefined;
  if (referenceOpt !== 'fd') {
    try {
      ref = s.torch();
      reference = 'torch';
      referenceNote = 'LibTorch autograd in float64';
    } catch (err) {
      if (referenceOpt === 'torch' || !(err instanceof HandgradError) || err.code !== 'ERR_TORCH_UNAVAILABLE') throw err;
      // Said, not silent: the reference is weaker than asked for (a default the user may not know).
      const why = err.message.split('. Build it')[0].replace(/\.$/, '');
      fallback = `${why}; \`npx handgrad build-torch\` builds it, or ask for reference 'fd' (--reference fd) to make the choice yours`;
      referenceNote = `central finite differences in float64 (step ${fdStep}): the torch reference is unavailable in this build`;
    }
  }
  if (ref === undefined) {
    const fd = new FiniteDifferences(s.stack, s.forward);
    ref = { loss: new Float64Array([fd.f.loss]) };
    for (const name of [...(inputGrad ? ['dX'] : []), ...s.weightGrads]) ref[name] = fd.gradient(name.slice(1) as FdTensor, fdStep, 'avoid').grad;
  }

  // LibTorch in the candidate's own dtype, for the bits column (and exact mode, which demands it).
  let same: Record<string, Float64Array> | null = null;
  if (reference === 'torch' || exact) {
    try {
      same = s.dtype === 'float64' && ref !== undefined && reference === 'torch' ? ref : s.torchInDtype();
    } catch (err) {
      if (exact || !(err instanceof HandgradError) || err.code !== 'ERR_TORCH_UNAVAILABLE') throw err;
    }
  }
  const cand = s.grads(candidate, true, 'opts.candidate', exact);
  const toleranceEps = toleranceOpt ?? DEFAULT_TOLERANCE_EPS[reference];
  const eps = EPSILON[s.dtype];
  const tol = toleranceEps * eps;
  const ctx = diagnoseContext(s.stack, s.forward, s.shapes, tol);
  const order: TensorName[] = ['loss', ...gradsDown(s.weightGrads.length / 2, 1), 'dX'];
  // A Sequential's tensors are listed in backward order, each with its layer; the params' as they always were.
  const layered = s.layerOf.loss !== undefined;
  const table: TensorName[] = layered ? order : ['loss', 'dX', ...(s.weightGrads as TensorName[])];

  const tensors: TensorCheck[] = table.map((name) => {
    const got = name === 'loss' ? cand.loss : cand.grads[name];
    const check: TensorCheck = {
      name, shape: s.shapes[name], status: 'pass', candidateShape: null, candidateLength: 0,
      maxAbsDiff: NaN, maxAbsRef: NaN, relError: NaN, epsUnits: NaN, bitIdentical: null, worst: null, mismatches: 0, diagnosis: [],
    };
    if (s.layerOf[name] !== undefined) check.layer = s.layerOf[name];
    if (name === 'dX' && !inputGrad) return Object.assign(check, { status: 'skipped' as const });
    if (got === undefined) {
      // A function may leave out its loss, and dX unless inputGrad: true was asked for (then dX is
      // what is being verified, and its absence fails as any missing tensor's); the rest are required.
      const optional = name === 'loss' || (name === 'dX' && !inputGradAsked);
      check.status = !cand.error && optional ? 'skipped' : 'missing';
      if (check.status === 'missing') check.diagnosis = [{ kind: 'missing', message: cand.error ?? `the candidate returned no ${name}` }];
      return check;
    }
    check.candidateShape = got.shape;
    check.candidateLength = got.values?.length ?? 0;
    const r = ref[name];
    const comparable = got.values !== null && got.values.length === r.length;
    if (comparable) {
      const { worst: w, ...m } = measure(got.values!, r, tol);
      const worst = w >= 0 ? { index: unravel(w, check.shape), candidate: got.values![w], reference: r[w] } : null;
      Object.assign(check, m, { epsUnits: m.relError / eps, worst });
    } else check.mismatches = r.length;
    if (comparable && same !== null) check.bitIdentical = bitIdentical(got.values!, same[name]);
    const bitsOk = !exact || check.bitIdentical === 1;
    const withinTolerance = comparable && shapeOk(got, check.shape) && check.relError <= tol;
    check.status = withinTolerance && bitsOk ? 'pass' : 'fail';
    if (!withinTolerance) check.diagnosis = diagnose(name, got, r, ctx);
    if (!bitsOk && comparable) {
      const differ = Math.round((1 - check.bitIdentical!) * r.length);
      check.diagnosis.push({ kind: 'bits', message: `${differ} of ${r.length} entries differ in their bits from LibTorch autograd in ${s.dtype} (exact: true)` });
    }
    return check;
  });

  const firstFailure = order.find((n) => failed(tensors.find((x) => x.name === n)!)) ?? null;
  const report: VerifyReportBase & Record<string, unknown> = {
    ok: firstFailure === null && !cand.error, ...s.info, dtype: s.dtype, reduction: s.stack.reduction, candidate: cand.name, reference, referenceNote,
    eps, toleranceEps, tolerance: tol, tensors, firstFailure, summary: '',
  };
  if (layered) report.firstFailureLayer = firstFailure === null ? null : s.layerOf[firstFailure] ?? null;
  if (cand.error) report.candidateError = cand.error;
  if (fallback !== undefined) report.fallback = fallback;
  report.summary = summarize(report, ctx.chain, order);
  if (fallback !== undefined) report.summary = `Fell back to finite differences, not LibTorch autograd: ${fallback}. ${report.summary}`;
  return report as VerifyReport<N>;
}

/** The fraction of c's entries equal to r's bit for bit (both hold values of the candidate's dtype; −0 ≠ 0). */
function bitIdentical(c: Float64Array, r: Float64Array): number {
  let same = 0;
  for (let i = 0; i < r.length; i++) if (Object.is(c[i], r[i])) same++;
  return r.length === 0 ? 1 : same / r.length;
}

/** The same explanation for two tensors (same kind, factor within rounding, same variant). */
function sameCause(a: Diagnosis[], b: Diagnosis[]): boolean {
  // Two tensors the candidate did not return have no formula in common: "dZ is wrong" would blame
  // the chain rule for what is a missing key.
  if (a.some((d) => d.kind === 'missing') || b.some((d) => d.kind === 'missing')) return false;
  const key = (ds: Diagnosis[]) =>
    ds.filter((d) => d.kind !== 'transpose' && d.kind !== 'shape' && d.kind !== 'bits').map((d) => `${d.kind}|${d.variant ?? ''}|${d.factor === undefined ? '' : d.factor.toPrecision(4)}`).sort().join(';');
  return key(a) !== '' && key(a) === key(b);
}

/** What failed first in backward order, and where in the chain the error enters (for any number of Linear layers). */
function summarize(r: VerifyReportBase, chain: Chain, order: TensorName[]): string {
  const t = (n: TensorName) => r.tensors.find((x) => x.name === n)!;
  const bad = (n: TensorName) => failed(t(n));
  const checked = `${r.candidate} against ${r.reference} (${r.referenceNote}), tolerance ${r.toleranceEps} eps of ${r.dtype}`;
  if (r.candidateError) return `${r.candidateError}. Checked ${checked}.`;
  if (r.firstFailure === null) {
    const worst = Math.max(...r.tensors.filter((x) => x.status === 'pass').map((x) => x.epsUnits));
    return `All checked tensors match: ${checked}; the largest error is ${worst.toFixed(2)} eps.`;
  }
  const failing = r.tensors.filter(failed);
  if (failing.every((x) => x.diagnosis.every((d) => d.kind === 'bits'))) {
    const list = failing.map((x) => `${x.name} ${(100 * x.bitIdentical!).toFixed(1)}%`).join(', ');
    return `Every tensor is within the tolerance, but not bit for bit (exact: true): the entries identical to LibTorch autograd in ${r.dtype} are ${list}. (${checked}.)`;
  }
  const first = t(r.firstFailure);
  const where = first.layer ? ` of ${first.layer}` : '';
  const lines = [`First failing tensor in backward order: ${first.name}${where}. ${first.diagnosis.map((d) => d.message).join('; ')}.`];
  // The Linear layer nearest the loss with a failing gradient: every layer after it is right.
  const L = chain.linears;
  let k = L;
  while (k >= 1 && !bad(`dW${k}`) && !bad(`db${k}`)) k--;
  if (k >= 1) {
    const dW: TensorName = `dW${k}`;
    const db: TensorName = `db${k}`;
    const dWf = `${dW} = ${chain.input(k)}ᵀ·dZ${k}`;
    const dbf = `${db} = Σ_b dZ${k}`;
    const later = gradsDown(L, k + 1);
    const right = L === 2 ? 'The second layer is right' : k + 1 === L ? `Linear ${L} is right` : `Linears ${k + 1}–${L} are right`;
    const dZ = chain.activationAfter(k) ? `dZ${k} = (dZ${k + 1}·W${k + 1}ᵀ) ⊙ act′(Z${k})` : `dZ${k} = dZ${k + 1}·W${k + 1}ᵀ`;
    if (bad(dW) && bad(db) && sameCause(t(dW).diagnosis, t(db).diagnosis)) {
      if (k === L) {
        const after = [...gradsDown(k - 1, 1), 'dX'].join(', ');
        lines.push(`${dWf} and ${dbf} fail the same way, so dZ${k} itself is wrong, and everything computed from it (${after}) inherits the error.`);
      } else {
        const check = chain.activationAfter(k) ? `: check dA${k} = dZ${k + 1}·W${k + 1}ᵀ and the activation derivative` : '';
        lines.push(`${right} (${later.join(', ')} pass); ${dW} and ${db} fail the same way, so ${dZ} is wrong${check}.`);
      }
    } else if (bad(dW) && !bad(db)) {
      lines.push(`${dbf} passes, so dZ${k} is right: the error is in the product ${dWf} itself.`);
    } else if (!bad(dW) && bad(db)) {
      lines.push(`${dWf} passes, so dZ${k} is right: the error is in the bias reduction ${dbf}.`);
    } else if (k < L) {
      lines.push(`${right} (${later.join(', ')} pass): the error enters between dZ${k + 1} and dZ${k}.`);
    }
  } else if (r.firstFailure === 'dX') {
    lines.push(`Every weight gradient passes, so dZ1 is right: the error is in ${chain.dxFromLinear1 ? 'dX = dZ1·W1ᵀ itself' : 'the backward of the layers before Linear 1'}.`);
  }
  const others = order.filter((n) => n !== r.firstFailure && bad(n));
  if (others.length > 0) lines.push(`Also failing: ${others.join(', ')}.`);
  lines.push(`(${checked}.)`);
  return lines.join(' ');
}
