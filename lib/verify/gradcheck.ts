// gradcheck(fn | net, X, y, opts): analytical gradients against central finite differences in
// float64 of the network's own loss (fd.ts), in the manner of torch.autograd.gradcheck: eps (the
// step) 1e-6, atol 1e-5, rtol 1e-3, an entry passing when |a − n| ≤ atol + rtol·|n|; 'fast' mode
// compares the directional derivative along a random unit vector u (vᵀJu with v = 1 for the scalar
// loss) and re-checks a failing tensor entry by entry; backward run twice must agree bit for bit.
import { seed as seedOf } from '../data/options';
import { shapeText } from '../io/safetensors';
import type { Sequential } from '../layers/sequential';
import { Rng } from '../rng';
import type { BackendName, Dtype, FloatArray, Params, Reduction } from '../types';
import * as v from '../validate';
import { shapeOk } from './coerce';
import { formatNum, unravel } from './diagnose';
import { FiniteDifferences, type FdTensor } from './fd';
import { num, subjectOf, type GradFunction, type Network, type NetworkInfo, type NetworkOptions } from './subject';
import { UNSUPPORTED } from './verify';

export interface GradcheckOptions<N extends Network = Params> extends NetworkOptions<N> {
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
  /** The backend whose backward is checked when the network is given (default 'native'). */
  backend?: BackendName;
  /** The point (the network), when a gradient function is checked. */
  params?: N;
  /** Seed of fast mode's random directions (default 0). */
  seed?: number;
  /** Run the backward twice and require bit-identical results (default true). */
  nondetCheck?: boolean;
  /** Called as full-mode entries complete (about every 1%). */
  onProgress?: (p: { tensor: FdTensor; done: number; total: number }) => void;
  /** How many worst entries (and kinks) to keep per tensor (default 5). */
  worstEntries?: number;
}
export type SequentialGradcheckOptions = GradcheckOptions<Sequential>;
const OPTIONS = ['eps', 'atol', 'rtol', 'mode', 'inputGrad', 'activation', 'reduction', 'backend', 'params', 'seed', 'nondetCheck', 'onProgress', 'worstEntries', 'weight', 'ignoreIndex', 'labelSmoothing'] as const;

export interface GradcheckEntry {
  index: number[]; numerical: number; analytical: number; absError: number;
  /** |a − n| / max(|a| + |n|, 1e-10). */
  relError: number;
}

export interface GradcheckTensor {
  /** The input: X, W1, b1, W2, b2 (W3, b3, … for a deeper Sequential). */
  name: FdTensor;
  /** A Sequential's layer the input belongs to ('layers[2] (Linear 7→9)'; X: layers[0]). */
  layer?: string;
  shape: number[]; checked: number; failures: number; maxAbsError: number; pass: boolean; recheckedInFull: boolean;
  /** How the verdict was reached ('full' also when a fast check was re-run in full). */
  mode: 'full' | 'fast';
  /** Entries whose ±step crossed a ReLU kink: reported, not failed. */
  kinks: number;
  /** The largest |a − n| / max(|a| + |n|, 1e-10) over the checked entries (cs231n's measure). */
  maxRelError: number;
  /** The worst entries (failures first). */
  worst: GradcheckEntry[];
  kinkEntries: GradcheckEntry[];
  /** Fast mode's directional check. */
  fast?: { numerical: number; analytical: number; kink: boolean; pass: boolean };
  /** Set when the analytical gradient was missing or the wrong shape. */
  problem?: string;
}

/** What every gradcheck report holds, whatever the network. */
export interface GradcheckReportBase {
  ok: boolean; mode: 'full' | 'fast'; eps: number; atol: number; rtol: number; reduction: Reduction; dtype: Dtype;
  /** Where the analytical gradients came from: a backend name or 'function'. */
  analytical: string;
  tensors: GradcheckTensor[];
  nondeterminism: { checked: boolean; ok: boolean; message?: string };
  warnings: string[];
  /** PyTorch-shaped failure messages naming output, input, numerical and analytical values. */
  failures: string[];
}

/** The report: on the two-layer params it has their dims and activation; on a Sequential its network, dims and widths. */
export type GradcheckReport<N extends Network = Params> = GradcheckReportBase & NetworkInfo<N>;
export type SequentialGradcheckReport = GradcheckReport<Sequential>;

/** The gradient of an input: dX, dW1, … */
const gradOf = (t: FdTensor) => `d${t}`;
const relErr = (a: number, n: number) => Math.abs(a - n) / Math.max(Math.abs(a) + Math.abs(n), 1e-10);

type Analytic = { grads: Partial<Record<FdTensor, Float64Array>>; problems: Partial<Record<FdTensor, string>> };

/**
 * Checks analytical gradients against float64 central finite differences, torch.autograd.gradcheck style.
 * @param target the network (the two-layer params or a Sequential; the backend in opts.backend is
 *   checked) or a gradient function (net, X, y, opts) => grads, as verify's, with the network in opts.params
 * @throws {TypeError|RangeError} invalid arguments or options (as forwardBackward; an unknown option
 *   is named, with the one it most likely meant)
 * @throws {HandgradError} the backend is unavailable
 */
// Overloads: the two-layer params with X of their dtype; a Sequential; a gradient function with
// its point in opts.params, which is required (without it the call is a compile error, not only a
// run-time TypeError); params beside a network is refused too (it would be ignored).
export function gradcheck<T extends FloatArray>(params: Params<T>, X: T, y: ArrayLike<number>, opts?: GradcheckOptions<Params<T>> & { params?: never }): GradcheckReport<Params<T>>;
export function gradcheck(seq: Sequential, X: FloatArray, y: ArrayLike<number>, opts?: SequentialGradcheckOptions & { params?: never }): SequentialGradcheckReport;
export function gradcheck<N extends Network>(fn: GradFunction<N>, X: FloatArray, y: ArrayLike<number>, opts: GradcheckOptions<N> & { params: N }): GradcheckReport<N>;
export function gradcheck<N extends Network>(target: N | GradFunction<N>, X: FloatArray, y: ArrayLike<number>, opts: GradcheckOptions<N> = {}): GradcheckReport<N> {
  const o = v.options('opts', opts, OPTIONS, UNSUPPORTED);
  const eps = num('opts.eps', o.eps, 1e-6, true);
  const atol = num('opts.atol', o.atol, 1e-5, false);
  const rtol = num('opts.rtol', o.rtol, 1e-3, false);
  const mode = v.oneOf('opts.mode', o.mode, ['full', 'fast'] as const, 'full');
  const isFn = typeof target === 'function';
  // Each option that applies to one kind of target is refused beside the other: it would be ignored.
  if (!isFn && o.params !== undefined) {
    v.fail(TypeError, 'no opts.params beside a network (it is the point of a gradient function; the network given is checked at its own weights)', 'opts.params', o.params);
  }
  if (isFn && o.backend !== undefined) {
    v.fail(TypeError, "no opts.backend with a gradient function (the function's gradients are checked; opts.backend picks the backend of a network given)", 'opts.backend', o.backend);
  }
  const point: unknown = isFn ? o.params : target;
  const backend = v.oneOf('opts.backend', o.backend, v.BACKENDS, 'native');
  const inputGrad = v.bool('opts.inputGrad', o.inputGrad, false);
  const nondetCheck = v.bool('opts.nondetCheck', o.nondetCheck, true);
  const keep = o.worstEntries === undefined ? 5 : v.dim('opts.worstEntries', o.worstEntries); // a whole count ≥ 1 (0.5 read list[−1])
  const rng = new Rng(seedOf('opts.seed', o.seed));
  const onProgress = o.onProgress as GradcheckOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') v.fail(TypeError, 'a function', 'opts.onProgress', onProgress);

  if (isFn && point === undefined) v.fail(TypeError, 'the point { W1, b1, W2, b2 } (or a Sequential) to check a gradient function at', 'opts.params', undefined);
  const s = subjectOf(point, X, y, o);
  const fd = new FiniteDifferences(s.stack, s.forward);

  const names = [...(inputGrad ? ['dX'] : []), ...s.weightGrads].map((g) => g.slice(1) as FdTensor);
  const warnings = s.dtype === 'float64' ? [] : [
    'the analytical gradients are float32: gradcheck is designed for float64 (as torch.autograd.gradcheck); expect float32 rounding (~1e-7 relative) in the comparison',
  ];

  // The analytical gradients, as float64 values of their tensor's shape, or what is wrong with them.
  const analytic = (): Analytic => {
    const c = s.grads(isFn ? (target as (...args: never[]) => unknown) : backend, inputGrad, 'target');
    if (c.thrown !== undefined) throw c.thrown;
    const res: Analytic = { grads: {}, problems: {} };
    for (const t of names) {
      const g = c.grads[gradOf(t)];
      const shape = s.shapes[gradOf(t)];
      if (g === undefined) res.problems[t] = c.error ?? `no ${gradOf(t)} was returned`;
      else if (g.values === null) res.problems[t] = `${gradOf(t)} could not be read: ${g.problem}`;
      else if (!shapeOk(g, shape)) res.problems[t] = `${gradOf(t)} has shape ${shapeText(g.shape ?? [g.values.length])}, expected ${shapeText(shape)}`;
      else res.grads[t] = g.values;
    }
    return res;
  };

  const first = analytic();
  const failures: string[] = [];
  const tensors: GradcheckTensor[] = [];

  for (const t of names) {
    const shape = s.shapes[gradOf(t)];
    const total = shape.reduce((a, c) => a * c, 1);
    const report: GradcheckTensor = {
      name: t, shape, mode, checked: 0, failures: 0, kinks: 0, maxAbsError: 0, maxRelError: 0,
      worst: [], kinkEntries: [], pass: true, recheckedInFull: false,
    };
    if (s.layerOf[gradOf(t)] !== undefined) report.layer = s.layerOf[gradOf(t)];
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
      Object.assign(report, { checked: 1, maxAbsError: Math.abs(an - nv.value), maxRelError: relErr(an, nv.value) });
      if (ok) continue;
      if (!nv.kink) {
        failures.push(
          `Gradient mismatch for output loss with respect to input ${t} (fast mode: the directional derivative along a random unit vector u, vᵀJu with v = 1),\n` +
            `numerical:${formatNum(nv.value)}\nanalytical:${formatNum(an)}\nRe-checking ${t} entry by entry (full mode).`,
        );
      }
      Object.assign(report, { recheckedInFull: true, mode: 'full' });
    }
    Object.assign(report, { checked: 0, maxAbsError: 0, maxRelError: 0 });
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
      if (onProgress && ((i + 1) % every === 0 || i + 1 === total)) onProgress({ tensor: t, done: i + 1, total });
    }
    report.worst = [...bad, ...good].slice(0, keep);
    // Every entry on a kink checks nothing: no pass (torch.autograd.gradcheck, which skips none,
    // compares them all). A ReLU net with zero biases and an all-zero row puts a whole b1 there.
    const unchecked = total > 0 && report.checked === 0;
    report.pass = report.failures === 0 && !unchecked;
    if (unchecked) {
      failures.push(
        `Nothing checked for input ${t}: all ${total} of its entries sit on a ReLU kink (a ±step flips a mask), where the finite difference says nothing ` +
          '— move the point off the kinks (nonzero biases, inputs that are not all zero) and check again',
      );
    } else if (!report.pass) {
      const w = bad[0];
      failures.push(
        `Gradient mismatch for output loss with respect to input ${t} at index ${shapeText(w.index)}` +
          ` (${report.failures} of ${report.checked} entries fail |a − n| ≤ atol + rtol·|n| with atol=${atol}, rtol=${rtol}),\n` +
          `numerical:${formatNum(w.numerical)}\nanalytical:${formatNum(w.analytical)}` +
          (bad.length > 1 ? `\nother failing entries: ${bad.slice(1).map((e) => `${shapeText(e.index)} numerical ${formatNum(e.numerical)} analytical ${formatNum(e.analytical)}`).join('; ')}` : ''),
      );
    }
  }

  const nondeterminism: GradcheckReportBase['nondeterminism'] = { checked: nondetCheck, ok: true };
  const second = nondetCheck ? analytic() : null;
  for (const t of second ? names : []) {
    const g1 = first.grads[t];
    const g2 = second!.grads[t];
    const i = g1 && g2 ? g1.findIndex((x, k) => !Object.is(x, g2[k])) : -1;
    if (i < 0) continue;
    nondeterminism.ok = false;
    nondeterminism.message =
      `Backward is not reentrant: running it twice on the same inputs gave different ${gradOf(t)} ` +
      `(first difference at ${shapeText(unravel(i, s.shapes[gradOf(t)]))}: ${g1![i]} then ${g2![i]}), although nothing changed between the runs. ` +
      'The tolerance for nondeterminism is 0 (bit for bit).';
    failures.push(nondeterminism.message);
    break;
  }
  const report: GradcheckReportBase = {
    ok: tensors.every((x) => x.pass) && nondeterminism.ok, mode, eps, atol, rtol, ...s.info, reduction: s.stack.reduction, dtype: s.dtype,
    analytical: isFn ? 'function' : backend, tensors, nondeterminism, failures, warnings,
  };
  return report as GradcheckReport<N>;
}

/** Keeps the `keep` entries with the largest absolute error, largest first. */
function insertWorst(list: GradcheckEntry[], e: GradcheckEntry, keep: number): void {
  if (list.length >= keep && !(e.absError > list[list.length - 1].absError)) return;
  let i = list.length;
  while (i > 0 && !(list[i - 1].absError >= e.absError)) i--;
  list.splice(i, 0, e);
  if (list.length > keep) list.pop();
}
