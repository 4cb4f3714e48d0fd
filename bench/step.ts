// One benchmark case: forwardBackward(…, { backend, inputGrad: true, out }) at one size, backend
// and dtype, called as a training loop calls it (same options object, same out buffers every step).
import { forwardBackward, type ForwardBackwardOptions } from '../lib/model';
import type { BackendName, Dims, Dtype, FloatArray } from '../lib/types';
import { time, warmUp, type Budget, type Timing } from './harness';
import type { BenchOptions } from './options';
import type { PeerName } from './peers';
import { makeProblem, sizeLabel, stepFlop } from './sizes';

/** What measureCase needs of a row and fills in: the FLOP of one step, then the figures. */
export interface Measured {
  flopPerStep: number;
  /** Set when the case was not measured; the other figures are then absent. */
  skipped?: string;
  timing?: Timing;
  /** flopPerStep / median time. */
  gflops?: number;
  loss?: number;
}

export interface Row extends Measured {
  size: string;
  dims: Dims;
  /** A handgrad backend, or a peer library (bench/peers.ts: tfjs-cpu, tfjs-wasm). */
  backend: BackendName | PeerName;
  dtype: Dtype;
  /** gflops / the matching (d|s)gemm peak, in %; null without a measured peak (set by run.ts). */
  pctPeak?: number | null;
  /** A sanity-check failure worth a line under the row (a peer's loss that differs from handgrad's). */
  warning?: string;
}

/** Warm-up calls: at least 3, and about 50 ms worth for fast calls. */
const WARMUP_MS = 50;
const MAX_WARMUP_CALLS = 20_000;

/**
 * Measures one case. A case slower than the normal budget allows gets fewer samples
 * (opts.slowMinSamples at least), and is skipped with a note if even that exceeds opts.slowBudgetS.
 * @param expectedMs an estimate of one call (from the smaller sizes), to skip hopeless cases untried
 */
export async function measureStep(dims: Dims, backend: BackendName, dtype: Dtype, opts: BenchOptions, expectedMs?: number): Promise<Row> {
  const flop = stepFlop(dims);
  const row: Row = { size: sizeLabel(dims), dims, backend, dtype, flopPerStep: flop };
  const slowBudgetMs = opts.slowBudgetS * 1e3;
  const tooSlow = (ms: number, verb: string) =>
    `one call ${verb} ~${(ms / 1e3).toFixed(1)} s: ${opts.slowMinSamples + 1} calls would exceed the ~${opts.slowBudgetS} s budget`;
  if (expectedMs !== undefined && expectedMs * (opts.slowMinSamples + 1) > slowBudgetMs) {
    return { ...row, skipped: tooSlow(expectedMs, 'would take (extrapolated from the smaller sizes)') };
  }

  const p = makeProblem(dims, dtype);
  const fbOpts: ForwardBackwardOptions<FloatArray> = { backend, inputGrad: true, out: p.out };
  return measureCase(row, () => forwardBackward(p.params, p.X, p.y, fbOpts).loss, opts);
}

/**
 * Warm-up, budget (or skip), and timing of one step function that returns the loss; used for
 * handgrad's backends, the peers and the layer stack (bench/sequential.ts) alike.
 */
export async function measureCase<R extends Measured>(row: R, stepLoss: () => number, opts: BenchOptions): Promise<R> {
  const flop = row.flopPerStep;
  const slowBudgetMs = opts.slowBudgetS * 1e3;
  const tooSlow = (ms: number, verb: string) =>
    `one call ${verb} ~${(ms / 1e3).toFixed(1)} s: ${opts.slowMinSamples + 1} calls would exceed the ~${opts.slowBudgetS} s budget`;
  let loss = NaN;
  const step = () => (loss = stepLoss());

  let callMs = warmUp(step, 1);
  if (callMs < WARMUP_MS) callMs = warmUp(step, Math.min(MAX_WARMUP_CALLS, Math.max(3, Math.ceil(WARMUP_MS / callMs))));
  const normalMs = Math.max(opts.step.minTimeMs, callMs * opts.step.minSamples);
  let budget: Budget = opts.step;
  if (normalMs > 3 * opts.step.minTimeMs) {
    // mitata makes one untimed call first, hence the + 1.
    if (callMs * (opts.slowMinSamples + 1) > slowBudgetMs) return { ...row, skipped: tooSlow(callMs, 'takes') };
    const n = Math.floor((0.25 * slowBudgetMs) / callMs);
    budget = { minTimeMs: 0, minSamples: Math.max(opts.slowMinSamples, Math.min(opts.step.minSamples, n)) };
  }
  const timing = await time(step, budget);
  const gflops = flop / (timing.medianUs * 1e3);
  return { ...row, timing, gflops, loss };
}
