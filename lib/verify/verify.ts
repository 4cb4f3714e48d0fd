// verify(params, X, y, opts): a candidate's loss and gradients against a reference, tensor by
// tensor, with the first failure in backward order explained.
//
// Reference: LibTorch autograd in float64 ('torch', the default when this build has it) or central
// finite differences in float64 ('fd', lib/verify/fd.ts: accurate to a few eps, measured against
// the PyTorch fixtures). Candidate: a backend's hand-derived path ('native' by default) or any
// function (params, X, y, opts) => grads.
import { getBackend } from '../backends';
import { HandgradError } from '../errors';
import { forwardBackward } from '../model';
import type { Activation, BackendName, Dims, Dtype, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { coerceTensor, splitResult, type Coerced, type GradsLike } from './coerce';
import { diagnose, measure, SHAPES, unravel, type Diagnosis, type TensorName } from './diagnose';
import { FiniteDifferences } from './fd';
import { backward64, checkedProblem, f64, variantsFor, type Backward64, type Problem64, type VariantId } from './model64';

/** A user's gradient function: returns the gradients (plain, nested or typed arrays), optionally with the loss. */
export type GradFunction = (
  params: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray },
  X: FloatArray,
  y: Int32Array,
  opts: { activation: Activation; reduction: Reduction; inputGrad: true },
) => GradsLike | { loss?: number; grads: GradsLike };

export type Candidate = BackendName | GradFunction;
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
}

export interface VerifyReport {
  ok: boolean;
  dims: Dims;
  dtype: Dtype;
  activation: Activation;
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
  /** loss, dX, dW1, db1, dW2, db2. */
  tensors: TensorCheck[];
  /** The first failing tensor in backward order (loss, then dW2, db2, dW1, db1, dX), or null. */
  firstFailure: TensorName | null;
  /** One paragraph: what failed first and what it means. */
  summary: string;
  /** Set when the candidate function threw. */
  candidateError?: string;
}

const TABLE_ORDER: TensorName[] = ['loss', 'dX', 'dW1', 'db1', 'dW2', 'db2'];
export const BACKWARD_ORDER: TensorName[] = ['loss', 'dW2', 'db2', 'dW1', 'db1', 'dX'];

type Ref = Record<TensorName, Float64Array>;

function referenceTorch(p: Problem64): Ref {
  getBackend('torch'); // throws ERR_TORCH_UNAVAILABLE when this build has none
  const r = forwardBackward({ W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2 }, p.X, p.y, {
    backend: 'torch', activation: p.activation, reduction: p.reduction, inputGrad: true,
  });
  const g = r.grads;
  return { loss: new Float64Array([r.loss]), dX: f64(g.dX!), dW1: f64(g.dW1), db1: f64(g.db1), dW2: f64(g.dW2), db2: f64(g.db2) };
}

function referenceFd(p: Problem64, step: number): Ref {
  const fd = new FiniteDifferences(p);
  const grad = (t: 'X' | 'W1' | 'b1' | 'W2' | 'b2') => fd.gradient(t, step, 'avoid').grad;
  return { loss: new Float64Array([fd.f.loss]), dX: grad('X'), dW1: grad('W1'), db1: grad('b1'), dW2: grad('W2'), db2: grad('b2') };
}

interface CandidateOut {
  name: string;
  loss?: Coerced;
  grads: Partial<Record<Exclude<TensorName, 'loss'>, Coerced>>;
  error?: string;
}

function runCandidate(candidate: Candidate, p: v.CheckedParams, X: FloatArray, y: Int32Array, activation: Activation, reduction: Reduction): CandidateOut {
  if (typeof candidate === 'string') {
    const r = forwardBackward({ W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2 }, X, y, { backend: candidate, activation, reduction, inputGrad: true });
    const grads: CandidateOut['grads'] = {};
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) grads[k] = coerceTensor(r.grads[k]);
    return { name: candidate, loss: coerceTensor(r.loss), grads };
  }
  // The function gets copies: a buggy candidate that writes into its inputs cannot change the reference.
  let result: unknown;
  try {
    result = candidate({ W1: p.W1.slice(), b1: p.b1.slice(), W2: p.W2.slice(), b2: p.b2.slice() }, X.slice(), y.slice(), {
      activation, reduction, inputGrad: true,
    });
  } catch (err) {
    return { name: 'function', grads: {}, error: `the candidate threw: ${(err as Error)?.message ?? String(err)}` };
  }
  if (result !== null && typeof (result as { then?: unknown }).then === 'function') {
    throw new TypeError('Expected a synchronous gradient function for opts.candidate but received one that returns a Promise (await it in a wrapper and pass the values)');
  }
  const split = splitResult(result);
  if (split === null) return { name: 'function', grads: {}, error: `the candidate returned ${v.describe(result)}, not an object of gradients { dW1, db1, dW2, db2, dX? }` };
  const grads: CandidateOut['grads'] = {};
  for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) if (split.grads[k] !== undefined) grads[k] = coerceTensor(split.grads[k]);
  return { name: 'function', loss: split.loss === undefined ? undefined : coerceTensor(split.loss), grads };
}

/**
 * Checks a candidate's loss and gradients against a reference, tensor by tensor, and explains the
 * first failure in backward order (a constant factor such as B, a transpose, a bias summed over
 * the wrong axis, a sign flip, a wrong ReLU mask, a wrong shape, …).
 * @throws {TypeError|RangeError} invalid params, X, y or options (as forwardBackward)
 * @throws {HandgradError} ERR_TORCH_UNAVAILABLE when reference 'torch' is demanded and absent;
 *   a backend candidate that is unavailable
 */
export function verify(
  params: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray; D?: number; H?: number; C?: number },
  X: FloatArray,
  y: ArrayLike<number>,
  opts: VerifyOptions = {},
): VerifyReport {
  if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
  const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');
  const reduction = v.oneOf('opts.reduction', opts.reduction, v.REDUCTIONS, 'mean');
  const referenceOpt = v.oneOf('opts.reference', opts.reference, ['auto', 'torch', 'fd'] as const, 'auto');
  const inputGrad = v.bool('opts.inputGrad', opts.inputGrad, true);
  const candidate = opts.candidate ?? 'native';
  if (typeof candidate !== 'function') v.oneOf('opts.candidate', candidate, v.BACKENDS, 'native');
  const toleranceOpt = opts.tolerance === undefined ? undefined : positive('opts.tolerance', opts.tolerance, 0);
  const fdStep = positive('opts.fdStep', opts.fdStep, DEFAULT_FD_STEP);

  const { p, b, problem, forward: fwd } = checkedProblem(params, X, y, activation, reduction);
  const dims = problem.dims;

  // Reference.
  let reference: ReferenceName;
  let referenceNote: string;
  let ref: Ref;
  if (referenceOpt === 'fd') {
    reference = 'fd';
    ref = referenceFd(problem, fdStep);
    referenceNote = `central finite differences in float64 (step ${fdStep}), as asked`;
  } else {
    try {
      ref = referenceTorch(problem);
      reference = 'torch';
      referenceNote = 'LibTorch autograd in float64';
    } catch (err) {
      if (referenceOpt === 'torch' || !(err instanceof HandgradError) || err.code !== 'ERR_TORCH_UNAVAILABLE') throw err;
      reference = 'fd';
      ref = referenceFd(problem, fdStep);
      referenceNote = `central finite differences in float64 (step ${fdStep}): the torch reference is unavailable in this build`;
    }
  }

  const cand = runCandidate(candidate, p, b.X, b.y, activation, reduction);
  const toleranceEps = toleranceOpt ?? DEFAULT_TOLERANCE_EPS[reference];
  const eps = EPSILON[p.dtype];
  const tol = toleranceEps * eps;
  const shapes = SHAPES(dims);
  const cache = new Map<string, Backward64>();
  const ctx = {
    dims, activation, reduction, tol,
    variants: variantsFor(activation),
    backward: (variant?: VariantId) => {
      const key = variant ?? 'correct';
      let g = cache.get(key);
      if (!g) cache.set(key, (g = backward64(problem, fwd, variant)));
      return g;
    },
  };

  const tensors: TensorCheck[] = TABLE_ORDER.map((name) => {
    const got = name === 'loss' ? cand.loss : cand.grads[name];
    const check: TensorCheck = {
      name, shape: shapes[name], status: 'pass', candidateShape: null, candidateLength: 0,
      maxAbsDiff: NaN, maxAbsRef: NaN, relError: NaN, epsUnits: NaN, worst: null, mismatches: 0, diagnosis: [],
    };
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
    const shapeOk = got.shape === null ? check.candidateLength === r.length : got.shape.length === check.shape.length && got.shape.every((s, i) => s === check.shape[i]);
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

  const firstFailure = BACKWARD_ORDER.find((n) => {
    const t = tensors.find((x) => x.name === n)!;
    return t.status === 'fail' || t.status === 'missing';
  }) ?? null;
  const report: VerifyReport = {
    ok: firstFailure === null && !cand.error,
    dims, dtype: p.dtype, activation, reduction,
    candidate: cand.name, reference, referenceNote, eps, toleranceEps, tolerance: tol,
    tensors, firstFailure, summary: '',
  };
  if (cand.error) report.candidateError = cand.error;
  report.summary = summarize(report);
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

/** What failed first in backward order, and where in the chain the error enters. */
function summarize(r: VerifyReport): string {
  const t = (n: TensorName) => r.tensors.find((x) => x.name === n)!;
  const bad = (n: TensorName) => t(n).status === 'fail' || t(n).status === 'missing';
  const checked = `${r.candidate} against ${r.reference} (${r.referenceNote}), tolerance ${r.toleranceEps} eps of ${r.dtype}`;
  if (r.candidateError) return `${r.candidateError}. Checked ${checked}.`;
  if (r.firstFailure === null) {
    const worst = Math.max(...r.tensors.filter((x) => x.status === 'pass').map((x) => x.epsUnits));
    return `All checked tensors match: ${checked}; the largest error is ${worst.toFixed(2)} eps.`;
  }
  const first = t(r.firstFailure);
  const lines = [`First failing tensor in backward order: ${first.name}. ${first.diagnosis.map((d) => d.message).join('; ')}.`];
  if (bad('dW2') && bad('db2') && sameCause(t('dW2').diagnosis, t('db2').diagnosis)) {
    lines.push('dW2 = A1ᵀ·dZ2 and db2 = Σ_b dZ2 fail the same way, so dZ2 itself is wrong, and everything computed from it (dW1, db1, dX) inherits the error.');
  } else if (bad('dW2') && !bad('db2')) {
    lines.push('db2 = Σ_b dZ2 passes, so dZ2 is right: the error is in the product dW2 = A1ᵀ·dZ2 itself.');
  } else if (!bad('dW2') && bad('db2')) {
    lines.push('dW2 = A1ᵀ·dZ2 passes, so dZ2 is right: the error is in the bias reduction db2 = Σ_b dZ2.');
  } else if (!bad('dW2') && !bad('db2') && (bad('dW1') || bad('db1'))) {
    if (bad('dW1') && bad('db1') && sameCause(t('dW1').diagnosis, t('db1').diagnosis)) {
      lines.push('The second layer is right (dW2, db2 pass); dW1 and db1 fail the same way, so dZ1 = (dZ2·W2ᵀ) ⊙ act\u2032(Z1) is wrong: check dA1 = dZ2·W2ᵀ and the activation derivative.');
    } else if (bad('dW1') && !bad('db1')) {
      lines.push('db1 = Σ_b dZ1 passes, so dZ1 is right: the error is in the product dW1 = Xᵀ·dZ1 itself.');
    } else if (!bad('dW1') && bad('db1')) {
      lines.push('dW1 = Xᵀ·dZ1 passes, so dZ1 is right: the error is in the bias reduction db1 = Σ_b dZ1.');
    } else {
      lines.push('The second layer is right (dW2, db2 pass): the error enters between dZ2 and dZ1.');
    }
  } else if (r.firstFailure === 'dX') {
    lines.push('Every weight gradient passes, so dZ1 is right: the error is in dX = dZ1·W1ᵀ itself.');
  }
  const others = BACKWARD_ORDER.filter((n) => n !== r.firstFailure && bad(n));
  if (others.length > 0) lines.push(`Also failing: ${others.join(', ')}.`);
  lines.push(`(${checked}.)`);
  return lines.join(' ');
}
