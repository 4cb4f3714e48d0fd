// gradcheck(fn | params, X, y, opts): analytical gradients against central finite differences in
// float64, in the manner of torch.autograd.gradcheck: eps (the step) 1e-6, atol 1e-5, rtol 1e-3,
// an entry passing when |a − n| ≤ atol + rtol·|n|; 'fast' mode compares the directional
// derivative along a random unit vector u (vᵀJu with v = 1 for the scalar loss) and re-checks a
// failing tensor entry by entry; backward run twice must agree bit for bit.
//
// The numerical side always differentiates this package's two-layer loss (lib/verify/fd.ts) at the
// given point; the analytical side is a backend's hand-derived backward (params given) or the
// gradients a user function returns (function given, the point in opts.params).
import { forwardBackward } from '../model';
import { Rng } from '../rng';
import type { Activation, BackendName, Dims, Dtype, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { coerceTensor, splitResult } from './coerce';
import { formatNum, unravel } from './diagnose';
import { FiniteDifferences, type FdTensor } from './fd';
import { checkedProblem, f64 } from './model64';
import type { GradFunction } from './verify';

type Params = { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray; D?: number; H?: number; C?: number };

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6, as torch.autograd.gradcheck). */
  eps?: number;
  /** Absolute tolerance (default 1e-5). */
  atol?: number;
  /** Relative tolerance (default 1e-3). */
  rtol?: number;
  /** 'full' (every entry, default) or 'fast' (one random directional derivative per tensor). */
  mode?: 'full' | 'fast';
  /** Check X as well (default false, as forwardBackward). */
  inputGrad?: boolean;
  activation?: Activation;
  reduction?: Reduction;
  /** The backend whose backward is checked when params are given (default 'native'). */
  backend?: BackendName;
  /** The point, when a gradient function is checked. */
  params?: Params;
  /** Seed of fast mode's random directions (default 0). */
  seed?: number;
  /** Run the backward twice and require bit-identical results (default true). */
  nondetCheck?: boolean;
  /** Called as full-mode entries complete (about every 1%). */
  onProgress?: (p: { tensor: FdTensor; done: number; total: number }) => void;
  /** How many worst entries (and kinks) to keep per tensor (default 5). */
  worstEntries?: number;
}

export interface GradcheckEntry {
  index: number[];
  numerical: number;
  analytical: number;
  absError: number;
  /** |a − n| / max(|a| + |n|, 1e-10). */
  relError: number;
}

export interface GradcheckTensor {
  /** The input: X, W1, b1, W2, b2. */
  name: FdTensor;
  shape: number[];
  /** How the verdict was reached ('full' also when a fast check was re-run in full). */
  mode: 'full' | 'fast';
  checked: number;
  failures: number;
  /** Entries whose ±step crossed a ReLU kink: reported, not failed. */
  kinks: number;
  maxAbsError: number;
  /** The largest |a − n| / max(|a| + |n|, 1e-10) over the checked entries (cs231n's measure). */
  maxRelError: number;
  /** The worst entries (failures first). */
  worst: GradcheckEntry[];
  kinkEntries: GradcheckEntry[];
  pass: boolean;
  /** Fast mode's directional check. */
  fast?: { numerical: number; analytical: number; kink: boolean; pass: boolean };
  recheckedInFull: boolean;
  /** Set when the analytical gradient was missing or the wrong shape. */
  problem?: string;
}

export interface GradcheckReport {
  ok: boolean;
  mode: 'full' | 'fast';
  eps: number;
  atol: number;
  rtol: number;
  activation: Activation;
  reduction: Reduction;
  dims: Dims;
  dtype: Dtype;
  /** Where the analytical gradients came from: a backend name or 'function'. */
  analytical: string;
  tensors: GradcheckTensor[];
  nondeterminism: { checked: boolean; ok: boolean; message?: string };
  /** PyTorch-shaped failure messages naming output, input, numerical and analytical values. */
  failures: string[];
  warnings: string[];
}

const TINY = 1e-10;
const GRAD_OF: Record<FdTensor, 'dX' | 'dW1' | 'db1' | 'dW2' | 'db2'> = { X: 'dX', W1: 'dW1', b1: 'db1', W2: 'dW2', b2: 'db2' };

const relErr = (a: number, n: number) => Math.abs(a - n) / Math.max(Math.abs(a) + Math.abs(n), TINY);

function num(name: string, x: unknown, fallback: number, positive: boolean): number {
  if (x === undefined) return fallback;
  if (typeof x !== 'number') v.fail(TypeError, 'a number', name, x);
  if (!Number.isFinite(x) || x < 0 || (positive && x === 0)) v.fail(RangeError, positive ? 'a positive finite number' : 'a non-negative finite number', name, x);
  return x;
}

type Analytic = { grads: Partial<Record<FdTensor, Float64Array>>; problems: Partial<Record<FdTensor, string>>; loss?: number };

/**
 * Checks analytical gradients against float64 central finite differences, torch.autograd.gradcheck style.
 * @param target the parameters (the backend in opts.backend is checked) or a gradient function
 *   (params, X, y, opts) => grads, with the point in opts.params
 * @throws {TypeError|RangeError} invalid arguments or options (as forwardBackward)
 * @throws {HandgradError} the backend is unavailable
 */
export function gradcheck(target: Params | GradFunction, X: FloatArray, y: ArrayLike<number>, opts: GradcheckOptions = {}): GradcheckReport {
  if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
  const eps = num('opts.eps', opts.eps, 1e-6, true);
  const atol = num('opts.atol', opts.atol, 1e-5, false);
  const rtol = num('opts.rtol', opts.rtol, 1e-3, false);
  const mode = v.oneOf('opts.mode', opts.mode, ['full', 'fast'] as const, 'full');
  const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');
  const reduction = v.oneOf('opts.reduction', opts.reduction, v.REDUCTIONS, 'mean');
  const backend = v.oneOf('opts.backend', opts.backend, v.BACKENDS, 'native');
  const inputGrad = v.bool('opts.inputGrad', opts.inputGrad, false);
  const nondetCheck = v.bool('opts.nondetCheck', opts.nondetCheck, true);
  const keep = Math.floor(num('opts.worstEntries', opts.worstEntries, 5, true));
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) v.fail(TypeError, 'an integer', 'opts.seed', seed);
  if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') v.fail(TypeError, 'a function', 'opts.onProgress', opts.onProgress);

  const isFn = typeof target === 'function';
  const rawParams = isFn ? opts.params : target;
  if (isFn && rawParams === undefined) v.fail(TypeError, 'the point { W1, b1, W2, b2 } to check a gradient function at', 'opts.params', undefined);
  const { p, b, problem, forward } = checkedProblem(rawParams, X, y, activation, reduction);
  const dims = problem.dims;
  const fd = new FiniteDifferences(problem, forward);

  const names: FdTensor[] = inputGrad ? ['X', 'W1', 'b1', 'W2', 'b2'] : ['W1', 'b1', 'W2', 'b2'];
  const warnings: string[] = [];
  if (p.dtype !== 'float64') {
    warnings.push('the analytical gradients are float32: gradcheck is designed for float64 (as torch.autograd.gradcheck); expect float32 rounding (~1e-7 relative) in the comparison');
  }

  const analytic = (): Analytic => {
    if (!isFn) {
      const r = forwardBackward(p, b.X, b.y, { backend, activation, reduction, inputGrad });
      const grads: Analytic['grads'] = {};
      for (const t of names) grads[t] = f64(r.grads[GRAD_OF[t]]!);
      return { grads, problems: {}, loss: r.loss };
    }
    const out = (target as GradFunction)(
      { W1: p.W1.slice(), b1: p.b1.slice(), W2: p.W2.slice(), b2: p.b2.slice() }, b.X.slice(), b.y.slice(), { activation, reduction, inputGrad: true },
    );
    if (out !== null && typeof (out as { then?: unknown }).then === 'function') {
      v.fail(TypeError, 'a synchronous gradient function', 'target', new v.Received('one that returns a Promise'));
    }
    const split = splitResult(out);
    const res: Analytic = { grads: {}, problems: {} };
    for (const t of names) {
      const g = split?.grads[GRAD_OF[t]];
      const shape = fd.shape(t);
      const n = shape.reduce((a, c) => a * c, 1);
      if (g === undefined) {
        res.problems[t] = `no ${GRAD_OF[t]} was returned`;
        continue;
      }
      const c = coerceTensor(g);
      if (c.values === null) res.problems[t] = `${GRAD_OF[t]} could not be read: ${c.problem}`;
      else if (c.values.length !== n || (c.shape !== null && c.shape.join(',') !== shape.join(','))) {
        res.problems[t] = `${GRAD_OF[t]} has shape [${(c.shape ?? [c.values.length]).join(',')}], expected [${shape.join(',')}]`;
      } else res.grads[t] = c.values;
    }
    if (split && typeof split.loss === 'number') res.loss = split.loss;
    return res;
  };

  const first = analytic();
  const failures: string[] = [];
  const tensors: GradcheckTensor[] = [];
  const rng = new Rng(seed);

  for (const t of names) {
    const shape = fd.shape(t);
    const total = shape.reduce((a, c) => a * c, 1);
    const report: GradcheckTensor = {
      name: t, shape, mode, checked: 0, failures: 0, kinks: 0, maxAbsError: 0, maxRelError: 0,
      worst: [], kinkEntries: [], pass: true, recheckedInFull: false,
    };
    tensors.push(report);
    const a = first.grads[t];
    if (a === undefined) {
      report.pass = false;
      report.problem = first.problems[t];
      failures.push(`Gradient missing for output loss with respect to input ${t}: ${first.problems[t]}`);
      continue;
    }
    if (mode === 'fast') {
      // A random unit direction u over the whole tensor: compare ∇L·u (analytical) with the
      // central difference of L along u (numerical).
      const u = new Float64Array(total);
      let norm = 0;
      for (let i = 0; i < total; i++) norm += (u[i] = rng.normal()) ** 2;
      norm = Math.sqrt(norm);
      let an = 0;
      for (let i = 0; i < total; i++) an += a[i] * (u[i] /= norm);
      const nv = fd.direction(t, u, eps);
      const ok = !nv.kink && Math.abs(an - nv.value) <= atol + rtol * Math.abs(nv.value);
      report.fast = { numerical: nv.value, analytical: an, kink: nv.kink, pass: ok };
      report.checked = 1;
      report.maxAbsError = Math.abs(an - nv.value);
      report.maxRelError = relErr(an, nv.value);
      if (ok) continue;
      if (!nv.kink) {
        failures.push(
          `Gradient mismatch for output loss with respect to input ${t} (fast mode: the directional derivative along a random unit vector u, vᵀJu with v = 1),\n` +
            `numerical:${formatNum(nv.value)}\nanalytical:${formatNum(an)}\nRe-checking ${t} entry by entry (full mode).`,
        );
      }
      report.recheckedInFull = true;
      report.mode = 'full';
    }
    // Full mode: every entry.
    report.checked = 0;
    report.maxAbsError = 0;
    report.maxRelError = 0;
    const bad: GradcheckEntry[] = [];
    const good: GradcheckEntry[] = [];
    const every = Math.max(1, Math.floor(total / 100));
    for (let i = 0; i < total; i++) {
      const r = fd.entry(t, i, eps, 'report');
      const e: GradcheckEntry = { index: unravel(i, shape), numerical: r.value, analytical: a[i], absError: Math.abs(a[i] - r.value), relError: relErr(a[i], r.value) };
      if (r.kink) {
        report.kinks++;
        if (report.kinkEntries.length < keep) report.kinkEntries.push(e);
      } else {
        report.checked++;
        const ok = e.absError <= atol + rtol * Math.abs(r.value);
        if (!ok) report.failures++;
        if (!(e.absError <= report.maxAbsError)) report.maxAbsError = e.absError;
        if (!(e.relError <= report.maxRelError)) report.maxRelError = e.relError;
        insertWorst(ok ? good : bad, e, keep);
      }
      if (opts.onProgress && ((i + 1) % every === 0 || i + 1 === total)) opts.onProgress({ tensor: t, done: i + 1, total });
    }
    report.worst = [...bad, ...good].slice(0, keep);
    report.pass = report.failures === 0;
    if (!report.pass) {
      const w = bad[0];
      const idx = `[${w.index.join(',')}]`;
      failures.push(
        `Gradient mismatch for output loss with respect to input ${t} at index ${idx}` +
          ` (${report.failures} of ${report.checked} entries fail |a − n| ≤ atol + rtol·|n| with atol=${atol}, rtol=${rtol}),\n` +
          `numerical:${formatNum(w.numerical)}\nanalytical:${formatNum(w.analytical)}` +
          (bad.length > 1 ? `\nother failing entries: ${bad.slice(1).map((e) => `[${e.index.join(',')}] numerical ${formatNum(e.numerical)} analytical ${formatNum(e.analytical)}`).join('; ')}` : ''),
      );
    }
  }

  // Backward run twice must agree bit for bit.
  const nondeterminism: GradcheckReport['nondeterminism'] = { checked: false, ok: true };
  if (nondetCheck) {
    nondeterminism.checked = true;
    const second = analytic();
    for (const t of names) {
      const g1 = first.grads[t];
      const g2 = second.grads[t];
      if (g1 === undefined || g2 === undefined) continue;
      const i = g1.findIndex((x, k) => !Object.is(x, g2[k]));
      if (i >= 0) {
        nondeterminism.ok = false;
        nondeterminism.message =
          `Backward is not reentrant: running it twice on the same inputs gave different ${GRAD_OF[t]} ` +
          `(first difference at [${unravel(i, fd.shape(t)).join(',')}]: ${g1[i]} then ${g2[i]}), although nothing changed between the runs. ` +
          'The tolerance for nondeterminism is 0 (bit for bit).';
        failures.push(nondeterminism.message);
        break;
      }
    }
  }
  return {
    ok: tensors.every((x) => x.pass) && nondeterminism.ok,
    mode, eps, atol, rtol, activation, reduction, dims, dtype: p.dtype,
    analytical: isFn ? 'function' : backend,
    tensors, nondeterminism, failures, warnings,
  };
}

/** Keeps the `keep` entries with the largest absolute error, largest first. */
function insertWorst(list: GradcheckEntry[], e: GradcheckEntry, keep: number): void {
  if (list.length >= keep && !(e.absError > list[list.length - 1].absError)) return;
  let i = list.length;
  while (i > 0 && !(list[i - 1].absError >= e.absError)) i--;
  list.splice(i, 0, e);
  if (list.length > keep) list.pop();
}
