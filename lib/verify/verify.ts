// verify(params | seq, X, y, opts): a candidate's loss and gradients against a reference, tensor
// by tensor, with the first failure in backward order explained (and, for a Sequential, the layer
// it belongs to).
//
// Reference: LibTorch autograd in float64 ('torch', the default when this build has it) or central
// finite differences in float64 ('fd', lib/verify/fd.ts: accurate to a few eps, measured against
// the PyTorch fixtures). Candidate: a backend's hand-derived path ('native' by default) or any
// function (params, X, y, opts) => grads, or (seq, X, y, opts) => grads.
import { HandgradError } from '../errors';
import type { Sequential } from '../layers/sequential';
import type { Activation, BackendName, Dims, Dtype, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { coerceTensor, splitResult, type Coerced, type GradsLike, type LayerGradsLike } from './coerce';
import { diagnose, generalContext, measure, twoLayerContext, unravel, type Diagnosis, type TensorName } from './diagnose';
import { FiniteDifferences, type FdTensor } from './fd';
import { f64 } from './stack64';
import { networkOptions, subjectOf, type LossAndGrads, type SequentialDescription, type Subject } from './subject';

/** A user's gradient function: returns the gradients (plain, nested or typed arrays), optionally with the loss. */
export type GradFunction = (
  params: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray },
  X: FloatArray,
  y: Int32Array,
  opts: { activation: Activation; reduction: Reduction; inputGrad: true },
) => GradsLike | { loss?: number; grads: GradsLike };

/**
 * A user's gradient function for a Sequential: returns dX?, dW1, db1, dW2, db2, … (one pair per
 * Linear layer, numbered from 1), optionally with the loss. It is handed a copy of the network.
 */
export type SequentialGradFunction = (
  seq: Sequential,
  X: FloatArray,
  y: Int32Array,
  opts: { reduction: Reduction; inputGrad: true },
) => LayerGradsLike | { loss?: number; grads: LayerGradsLike };

export type Candidate = BackendName | GradFunction;
export type SequentialCandidate = BackendName | SequentialGradFunction;
export type ReferenceName = 'torch' | 'fd';

export interface VerifyOptions {
  activation?: Activation;
  reduction?: Reduction;
  /** 'native' (default), 'ts', 'torch', 'wasm', or a gradient function. */
  candidate?: Candidate;
  /** 'auto' (default): torch when this build has it, otherwise fd. 'torch' insists (an error if unavailable). */
  reference?: 'auto' | ReferenceName;
  /** Pass when max|Δ|/max|ref| ≤ tolerance × eps of the candidate's dtype (default 8 against torch, 16 against fd). */
  tolerance?: number;
  /** Check dX as well (default true). */
  inputGrad?: boolean;
  /** Step of the finite differences when the reference is 'fd' (default 1e-8). */
  fdStep?: number;
}

/** verify's options for a Sequential: its activations are its layers', its reduction defaults to its loss's. */
export interface SequentialVerifyOptions extends Omit<VerifyOptions, 'activation' | 'candidate'> {
  /** 'native' (default), 'ts', 'torch', 'wasm', or a gradient function (seq, X, y, opts) => grads. */
  candidate?: SequentialCandidate;
}

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

export interface TensorCheck {
  name: TensorName;
  /** The tensor's shape ([] for the loss). */
  shape: number[];
  /** 'skipped': not computed by the candidate (dX when it returns none, a function's loss). */
  status: 'pass' | 'fail' | 'missing' | 'skipped';
  /** The shape the candidate gave, when it carried one (nested arrays); otherwise its length. */
  candidateShape: number[] | null;
  candidateLength: number;
  maxAbsDiff: number;
  maxAbsRef: number;
  /** max|candidate − reference| / max|reference|. */
  relError: number;
  /** relError / eps of the dtype. */
  epsUnits: number;
  worst: { index: number[]; candidate: number; reference: number } | null;
  /** Entries off by more than tolerance · max|reference|. */
  mismatches: number;
  diagnosis: Diagnosis[];
  /** A Sequential's layer the tensor belongs to: 'layers[2] (Linear 128→64)' (dX: layers[0]; the loss: its loss). */
  layer?: string;
}

/** What every verify report holds, whatever the network. */
export interface VerifyReportBase {
  ok: boolean;
  dtype: Dtype;
  reduction: Reduction;
  /** 'native', 'ts', … or 'function'. */
  candidate: string;
  reference: ReferenceName;
  /** How the reference was computed, and why it is that one. */
  referenceNote: string;
  eps: number;
  toleranceEps: number;
  /** The relative (normwise) tolerance: toleranceEps × eps. */
  tolerance: number;
  /** Two-layer: loss, dX, dW1, db1, dW2, db2. Sequential: loss, then backward order (dW_L, db_L, …, dW1, db1, dX). */
  tensors: TensorCheck[];
  /** The first failing tensor in backward order (loss, then dW2, db2, dW1, db1, dX), or null. */
  firstFailure: TensorName | null;
  /** One paragraph: what failed first and what it means. */
  summary: string;
  /** Set when the candidate function threw. */
  candidateError?: string;
}

/** The report on the two-layer params. */
export interface VerifyReport extends VerifyReportBase {
  dims: Dims;
  activation: Activation;
}

/** The report on a Sequential. */
export interface SequentialVerifyReport extends VerifyReportBase, SequentialDescription {
  /** The layer of the first failure ('layers[2] (Linear 7→9)'), or null. */
  firstFailureLayer: string | null;
}

/** loss, then dW_L, db_L, …, dW1, db1, then dX: the order the backward computes them in. */
function backwardOrder(s: Subject): TensorName[] {
  const pairs: TensorName[] = [];
  for (let i = s.weightGrads.length - 2; i >= 0; i -= 2) pairs.push(s.weightGrads[i] as TensorName, s.weightGrads[i + 1] as TensorName);
  return ['loss', ...pairs, 'dX'];
}

type Ref = Record<string, Float64Array>;

function asRef(r: LossAndGrads): Ref {
  const ref: Ref = { loss: new Float64Array([r.loss]) };
  for (const [k, g] of Object.entries(r.grads)) if (g !== undefined) ref[k] = f64(g);
  return ref;
}

function referenceFd(s: Subject, step: number, inputGrad: boolean): Ref {
  const fd = new FiniteDifferences(s.stack, s.forward);
  const ref: Ref = { loss: new Float64Array([fd.f.loss]) };
  for (const name of [...(inputGrad ? ['dX'] : []), ...s.weightGrads]) ref[name] = fd.gradient(name.slice(1) as FdTensor, step, 'avoid').grad;
  return ref;
}

interface CandidateOut {
  name: string;
  loss?: Coerced;
  grads: Record<string, Coerced>;
  error?: string;
}

function runCandidate(candidate: Candidate | SequentialCandidate, s: Subject): CandidateOut {
  const names = ['dX', ...s.weightGrads];
  const grads: CandidateOut['grads'] = {};
  if (typeof candidate === 'string') {
    const r = s.run(candidate, true);
    for (const k of names) grads[k] = coerceTensor(r.grads[k]);
    return { name: candidate, loss: coerceTensor(r.loss), grads };
  }
  // The function gets copies: a buggy candidate that writes into its inputs cannot change the reference.
  let result: unknown;
  try {
    result = s.call(candidate);
  } catch (err) {
    return { name: 'function', grads: {}, error: `the candidate threw: ${(err as Error)?.message ?? String(err)}` };
  }
  if (result !== null && typeof (result as { then?: unknown }).then === 'function') {
    throw new TypeError('Expected a synchronous gradient function for opts.candidate but received one that returns a Promise (await it in a wrapper and pass the values)');
  }
  const split = splitResult(result);
  if (split === null) return { name: 'function', grads: {}, error: `the candidate returned ${v.describe(result)}, not an object of gradients { ${s.weightGrads.join(', ')}, dX? }` };
  for (const k of names) if (split.grads[k] !== undefined) grads[k] = coerceTensor(split.grads[k]);
  return { name: 'function', loss: split.loss === undefined ? undefined : coerceTensor(split.loss), grads };
}

/**
 * Checks a candidate's loss and gradients against a reference, tensor by tensor, and explains the
 * first failure in backward order (a constant factor such as B, a transpose, a bias summed over
 * the wrong axis, a sign flip, a wrong ReLU mask, a wrong shape, …).
 *
 * The network is the two-layer params { W1, b1, W2, b2 } or a Sequential of any depth. For a
 * Sequential the candidate is its hand-derived path on a backend (seq.forwardBackward) or a function
 * (seq, X, y, opts) => { dX?, dW1, db1, dW2, db2, … }; the references work on a float64 copy of it;
 * each tensor names its layer (seq.where(i)).
 * @throws {TypeError|RangeError} invalid params (or Sequential), X, y or options (as forwardBackward)
 * @throws {HandgradError} ERR_TORCH_UNAVAILABLE when reference 'torch' is demanded and absent;
 *   a backend candidate that is unavailable
 */
export function verify(
  params: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray; D?: number; H?: number; C?: number },
  X: FloatArray,
  y: ArrayLike<number>,
  opts?: VerifyOptions,
): VerifyReport;
export function verify(seq: Sequential, X: FloatArray, y: ArrayLike<number>, opts?: SequentialVerifyOptions): SequentialVerifyReport;
export function verify(target: unknown, X: FloatArray, y: ArrayLike<number>, opts: VerifyOptions | SequentialVerifyOptions = {}): VerifyReport | SequentialVerifyReport {
  if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
  const net = networkOptions(target, opts);
  const referenceOpt = v.oneOf('opts.reference', opts.reference, ['auto', 'torch', 'fd'] as const, 'auto');
  const inputGrad = v.bool('opts.inputGrad', opts.inputGrad, true);
  const candidate = opts.candidate ?? 'native';
  if (typeof candidate !== 'function') v.oneOf('opts.candidate', candidate, v.BACKENDS, 'native');
  const toleranceOpt = opts.tolerance === undefined ? undefined : positive('opts.tolerance', opts.tolerance, 0);
  const fdStep = positive('opts.fdStep', opts.fdStep, DEFAULT_FD_STEP);

  const s = subjectOf(target, X, y, net);

  // Reference.
  let reference: ReferenceName;
  let referenceNote: string;
  let ref: Ref;
  if (referenceOpt === 'fd') {
    reference = 'fd';
    ref = referenceFd(s, fdStep, inputGrad);
    referenceNote = `central finite differences in float64 (step ${fdStep}), as asked`;
  } else {
    try {
      ref = asRef(s.torch());
      reference = 'torch';
      referenceNote = 'LibTorch autograd in float64';
    } catch (err) {
      if (referenceOpt === 'torch' || !(err instanceof HandgradError) || err.code !== 'ERR_TORCH_UNAVAILABLE') throw err;
      reference = 'fd';
      ref = referenceFd(s, fdStep, inputGrad);
      referenceNote = `central finite differences in float64 (step ${fdStep}): the torch reference is unavailable in this build`;
    }
  }

  const cand = runCandidate(candidate, s);
  const toleranceEps = toleranceOpt ?? DEFAULT_TOLERANCE_EPS[reference];
  const eps = EPSILON[s.dtype];
  const tol = toleranceEps * eps;
  // The two-layer network's own diagnoses (its intermediates, its activation variants) need its
  // whole backward chain; a Sequential of any depth gets the general ones (diagnose.ts).
  const ctx = s.twoLayer ? twoLayerContext(s.twoLayer.problem, s.twoLayer.forward, tol) : generalContext(s.B, s.reduction, tol, s.shapes, s.chain, ref);
  const order = backwardOrder(s);
  const table: TensorName[] = s.info.kind === 'params' ? ['loss', 'dX', ...(s.weightGrads as TensorName[])] : order;

  const tensors: TensorCheck[] = table.map((name) => {
    const got = name === 'loss' ? cand.loss : cand.grads[name];
    const check: TensorCheck = {
      name, shape: s.shapes[name], status: 'pass', candidateShape: null, candidateLength: 0,
      maxAbsDiff: NaN, maxAbsRef: NaN, relError: NaN, epsUnits: NaN, worst: null, mismatches: 0, diagnosis: [],
    };
    if (s.layerOf[name] !== undefined) check.layer = s.layerOf[name];
    if (name === 'dX' && !inputGrad) {
      check.status = 'skipped';
      return check;
    }
    if (got === undefined) {
      // A function may leave out its loss and dX (inputGrad is optional for it); the rest are required.
      const optional = name === 'loss' || name === 'dX';
      check.status = cand.error ? 'missing' : optional ? 'skipped' : 'missing';
      if (check.status === 'missing') check.diagnosis = [{ kind: 'missing', message: cand.error ?? `the candidate returned no ${name}` }];
      return check;
    }
    check.candidateShape = got.shape;
    check.candidateLength = got.values?.length ?? 0;
    const r = ref[name];
    const shapeOk = got.shape === null ? check.candidateLength === r.length : got.shape.length === check.shape.length && got.shape.every((d, i) => d === check.shape[i]);
    if (got.values !== null && got.values.length === r.length) {
      const m = measure(got.values, r, tol);
      check.maxAbsDiff = m.maxAbsDiff;
      check.maxAbsRef = m.maxAbsRef;
      check.relError = m.relError;
      check.epsUnits = m.relError / eps;
      check.mismatches = m.mismatches;
      check.worst = m.worst >= 0 ? { index: unravel(m.worst, check.shape), candidate: got.values[m.worst], reference: r[m.worst] } : null;
    } else {
      check.mismatches = r.length;
    }
    const pass = shapeOk && got.values !== null && got.values.length === r.length && check.relError <= tol;
    check.status = pass ? 'pass' : 'fail';
    if (!pass) check.diagnosis = diagnose(name, got, r, ctx);
    return check;
  });

  const firstFailure = order.find((n) => {
    const t = tensors.find((x) => x.name === n)!;
    return t.status === 'fail' || t.status === 'missing';
  }) ?? null;
  const ok = firstFailure === null && !cand.error;
  const common = { candidate: cand.name, reference, referenceNote, eps, toleranceEps, tolerance: tol, tensors, firstFailure, summary: '' };
  const report: VerifyReport | SequentialVerifyReport = s.info.kind === 'params'
    ? { ok, dims: s.info.dims, dtype: s.dtype, activation: s.info.activation, reduction: s.reduction, ...common }
    : {
      ok, network: s.info.network, dims: s.info.dims, widths: s.info.widths, dtype: s.dtype, reduction: s.reduction, ...common,
      firstFailureLayer: firstFailure === null ? null : s.layerOf[firstFailure] ?? null,
    };
  if (cand.error) report.candidateError = cand.error;
  report.summary = summarize(report, s, order);
  return report;
}

function positive(name: string, x: unknown, fallback: number): number {
  if (x === undefined) return fallback;
  if (typeof x !== 'number') v.fail(TypeError, 'a positive number', name, x);
  if (!(x > 0) || !Number.isFinite(x)) v.fail(RangeError, 'a positive finite number', name, x);
  return x;
}

/** The same explanation for two tensors (same kind, factor within rounding, same variant). */
function sameCause(a: Diagnosis[], b: Diagnosis[]): boolean {
  if (a.length === 0 || b.length === 0) return false;
  const key = (d: Diagnosis) => `${d.kind}|${d.variant ?? ''}|${d.factor === undefined ? '' : d.factor.toPrecision(4)}`;
  const ka = a.filter((d) => d.kind !== 'transpose' && d.kind !== 'shape').map(key).sort().join(';');
  const kb = b.filter((d) => d.kind !== 'transpose' && d.kind !== 'shape').map(key).sort().join(';');
  return ka !== '' && ka === kb;
}

/** What failed first in backward order, and where in the chain the error enters (for any number of Linear layers). */
function summarize(r: VerifyReportBase, s: Subject, order: TensorName[]): string {
  const t = (n: TensorName) => r.tensors.find((x) => x.name === n)!;
  const bad = (n: TensorName) => t(n).status === 'fail' || t(n).status === 'missing';
  const checked = `${r.candidate} against ${r.reference} (${r.referenceNote}), tolerance ${r.toleranceEps} eps of ${r.dtype}`;
  if (r.candidateError) return `${r.candidateError}. Checked ${checked}.`;
  if (r.firstFailure === null) {
    const worst = Math.max(...r.tensors.filter((x) => x.status === 'pass').map((x) => x.epsUnits));
    return `All checked tensors match: ${checked}; the largest error is ${worst.toFixed(2)} eps.`;
  }
  const first = t(r.firstFailure);
  const where = first.layer ? ` of ${first.layer}` : '';
  const lines = [`First failing tensor in backward order: ${first.name}${where}. ${first.diagnosis.map((d) => d.message).join('; ')}.`];
  // The Linear layer nearest the loss with a failing gradient: every layer after it is right.
  const { chain } = s;
  const L = chain.linears;
  let k = L;
  while (k >= 1 && !bad(`dW${k}`) && !bad(`db${k}`)) k--;
  if (k >= 1) {
    const dW: TensorName = `dW${k}`;
    const db: TensorName = `db${k}`;
    const dWf = `${dW} = ${chain.input(k)}ᵀ·dZ${k}`;
    const dbf = `${db} = Σ_b dZ${k}`;
    const later = [];
    for (let j = L; j > k; j--) later.push(`dW${j}`, `db${j}`);
    const right = L === 2 ? 'The second layer is right' : k + 1 === L ? `Linear ${L} is right` : `Linears ${k + 1}–${L} are right`;
    const dZ = chain.activationAfter(k) ? `dZ${k} = (dZ${k + 1}·W${k + 1}ᵀ) ⊙ act′(Z${k})` : `dZ${k} = dZ${k + 1}·W${k + 1}ᵀ`;
    if (bad(dW) && bad(db) && sameCause(t(dW).diagnosis, t(db).diagnosis)) {
      if (k === L) {
        const after = [];
        for (let j = k - 1; j >= 1; j--) after.push(`dW${j}`, `db${j}`);
        lines.push(`${dWf} and ${dbf} fail the same way, so dZ${k} itself is wrong, and everything computed from it (${[...after, 'dX'].join(', ')}) inherits the error.`);
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
