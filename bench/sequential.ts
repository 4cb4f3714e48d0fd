// The layer stack (lib/layers: Sequential) in the same harness as the fused two-layer step:
//  · a 4-layer net at realistic widths, Sequential.mlp([784, 512, 256, 128, 10]) with ReLU between,
//    B = 256, on every backend and dtype (native runs one Node-API kernel call per op, wasm and ts
//    the same ops in WebAssembly and TypeScript, torch the whole stack as one LibTorch autograd
//    graph); each backend's loss and gradients are checked once against native's, so a broken
//    backend cannot post a fast time;
//  · the overhead of the stack: Sequential.mlp([D, H, C]) against the fused forwardBackward on
//    native, at the two-layer sizes, on the same weights and data, measured alternately.
import { Sequential } from '../lib/layers';
import { forwardBackward, type ForwardBackwardOptions } from '../lib/model';
import { Rng } from '../lib/rng';
import type { BackendName, Dims, Dtype, FloatArray } from '../lib/types';
import type { Timing } from './harness';
import type { BenchOptions } from './options';
import { makeProblem, sizeLabel, stepFlop } from './sizes';
import { measureCase, type Measured } from './step';

/** A Sequential.mlp: B rows through widths[0] → widths[1] → … → widths[last] (the classes). */
export interface Net {
  B: number;
  widths: readonly number[];
}

/** The realistic deep case: an MNIST-shaped 4-layer MLP at batch 256. */
export const DEEP: Net = { B: 256, widths: [784, 512, 256, 128, 10] };

/** FLOP per step with dX: 2·B·in·out per Linear each for the forward, dW and dA (6·B·Σ in·out). */
export function netFlop(n: Net): number {
  let s = 0;
  for (let k = 0; k + 1 < n.widths.length; k++) s += n.widths[k] * n.widths[k + 1];
  return 6 * n.B * s;
}

/** '(256: 784→512→256→128→10)'. */
export function netLabel(n: Net): string {
  return `(${n.B}: ${n.widths.join('→')})`;
}

/** The number of Linear layers. */
export const depth = (n: Net): number => n.widths.length - 1;

/** A net's loss and gradients must match native's within these (relative; gradients: max |Δ| / max |native|). */
export const LOSS_RTOL = 1e-4;
export const GRAD_RTOL: Record<Dtype, number> = { float64: 1e-9, float32: 1e-4 };

/** A row of the deep-net table. */
export interface NetRow extends Measured {
  net: string;
  B: number;
  widths: number[];
  backend: BackendName;
  dtype: Dtype;
  /** gflops / the (d|s)gemm peak in %, set by run.ts once the peak is known. */
  pctPeak?: number | null;
  /**
   * The once-per-backend check against native (same net, data and dtype), from the out buffers
   * after the timed loop. A row that fails it keeps its timing in the JSON but is reported as
   * rejected and left out of every ratio.
   */
  check?: { against: BackendName; lossRelErr: number; gradRelErr: number; ok: boolean };
}

/** Seeded X ~ N(0,1) [B, D] and labels in [0, C), as bench/sizes.ts makes them. */
function batch(B: number, D: number, C: number, dtype: Dtype): { X: FloatArray; y: Int32Array } {
  const rng = new Rng(2);
  const X = dtype === 'float64' ? new Float64Array(B * D) : new Float32Array(B * D);
  for (let i = 0; i < X.length; i++) X[i] = rng.normal();
  const y = new Int32Array(B);
  for (let b = 0; b < B; b++) y[b] = rng.int(C);
  return { X, y };
}

/** Gradient buffers for every parameter of `seq` and dX, allocated once and passed as `out` on every step. */
function outBuffers(seq: Sequential, B: number): Record<string, FloatArray> {
  const make = (n: number): FloatArray => (seq.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
  const out: Record<string, FloatArray> = { dX: make(B * seq.inFeatures) };
  for (const [name, t] of Object.entries(seq.params)) out[`d${name}`] = make(t.length);
  return out;
}

/** The net of one dtype, its batch and the grads native computed (the reference of the other backends). */
export interface NetCase {
  net: Net;
  dtype: Dtype;
  seq: Sequential;
  X: FloatArray;
  y: Int32Array;
  reference?: { backend: BackendName; loss: number; grads: Record<string, FloatArray> };
}

export function makeNetCase(net: Net, dtype: Dtype): NetCase {
  const seq = Sequential.mlp(net.widths, { dtype, seed: 1 });
  const { X, y } = batch(net.B, net.widths[0], net.widths[net.widths.length - 1], dtype);
  return { net, dtype, seq, X, y };
}

function maxRelErr(got: Record<string, FloatArray>, want: Record<string, FloatArray>): number {
  let diff = 0;
  let scale = 0;
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    if (g === undefined || g.length !== w.length) return Infinity;
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(g[i] - w[i]);
      if (!(d <= diff)) diff = d; // NaN propagates as Infinity below
      scale = Math.max(scale, Math.abs(w[i]));
    }
  }
  return Number.isNaN(diff) ? Infinity : scale === 0 ? diff : diff / scale;
}

/**
 * One backend on the deep net: seq.forwardBackward(X, y, { backend, inputGrad: true, out }) with the
 * same options object and out buffers every step. The first backend measured (native) becomes the
 * case's reference; every later one is checked against it once, after its timed loop.
 * @param expectedMs one call, estimated from the two-layer rows, to skip a hopeless case untried
 */
export async function measureNet(c: NetCase, backend: BackendName, opts: BenchOptions, expectedMs?: number): Promise<NetRow> {
  const row: NetRow = {
    net: netLabel(c.net), B: c.net.B, widths: [...c.net.widths], backend, dtype: c.dtype, flopPerStep: netFlop(c.net),
  };
  const { slowBudgetS, slowMinSamples } = opts.deep;
  if (expectedMs !== undefined && expectedMs * (slowMinSamples + 1) > slowBudgetS * 1e3) {
    return {
      ...row,
      skipped: `one call would take ~${(expectedMs / 1e3).toFixed(1)} s (extrapolated from the two-layer sizes): ` +
        `${slowMinSamples + 1} calls would exceed the ~${slowBudgetS} s budget`,
    };
  }
  const out = outBuffers(c.seq, c.net.B);
  const fbOpts = { backend, inputGrad: true, out };
  // The slow backends (ts) get the deep section's own, tighter bound: see options.ts.
  const measured = await measureCase(row, () => c.seq.forwardBackward(c.X, c.y, fbOpts).loss, { ...opts, ...opts.deep });
  if (measured.timing === undefined || measured.loss === undefined) return measured;
  const ref = c.reference;
  if (ref === undefined) {
    c.reference = { backend, loss: measured.loss, grads: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.slice()])) };
    return measured;
  }
  const lossRelErr = Math.abs(measured.loss - ref.loss) / Math.abs(ref.loss);
  const gradRelErr = maxRelErr(out, ref.grads);
  const ok = lossRelErr <= LOSS_RTOL && gradRelErr <= GRAD_RTOL[c.dtype];
  return { ...measured, check: { against: ref.backend, lossRelErr, gradRelErr, ok } };
}

/** Alternations of the fused step and the stack per overhead row (one with --quick). */
export const OVERHEAD_ROUNDS = 3;

/** A row of the overhead table: one size and dtype, the fused step and the stack back to back. */
export interface OverheadRow {
  size: string;
  dims: Dims;
  dtype: Dtype;
  backend: 'native';
  flopPerStep: number;
  fused?: Timing;
  sequential?: Timing;
  /** sequential median − fused median, µs. */
  extraUs?: number;
  /** sequential median ÷ fused median. */
  ratio?: number;
  /** Both losses (same weights and data: they must agree within LOSS_RTOL). */
  fusedLoss?: number;
  sequentialLoss?: number;
  skipped?: string;
  warning?: string;
}

/**
 * Sequential.mlp([D, H, C]) given the fused problem's weights (W1, b1, W2, b2 copied into the
 * stack's own tensors) against forwardBackward(params, …) on native, both with inputGrad and
 * preallocated out buffers, measured alternately (fused, stack, stack, fused, fused, stack).
 */
export async function measureOverhead(dims: Dims, dtype: Dtype, opts: BenchOptions): Promise<OverheadRow> {
  const row: OverheadRow = { size: sizeLabel(dims), dims, dtype, backend: 'native', flopPerStep: stepFlop(dims) };
  const p = makeProblem(dims, dtype);
  const seq = Sequential.mlp([dims.D, dims.H, dims.C], { dtype, seed: 1 });
  for (const name of ['W1', 'b1', 'W2', 'b2'] as const) seq.params[name].set(p.params[name]);
  const seqOut = outBuffers(seq, dims.B);
  const fbOpts: ForwardBackwardOptions<FloatArray> = { backend: 'native', inputGrad: true, out: p.out };
  const seqOpts = { backend: 'native' as const, inputGrad: true, out: seqOut };
  const fusedStep = () => forwardBackward(p.params, p.X, p.y, fbOpts).loss;
  const stackStep = () => seq.forwardBackward(p.X, p.y, seqOpts).loss;
  // Alternately, fused-stack, stack-fused, fused-stack, each window on a third of the budget, and
  // for each the lowest of its three medians: a burst of other work on the machine only ever slows
  // a window down, and this way it does not land on one side only.
  const rounds = opts.quick ? 1 : OVERHEAD_ROUNDS;
  const part: BenchOptions = { ...opts, step: { minTimeMs: opts.step.minTimeMs / rounds, minSamples: opts.step.minSamples } };
  const fusedRuns: Measured[] = [];
  const stackRuns: Measured[] = [];
  for (let round = 0; round < rounds; round++) {
    const pair: [Measured[], () => number][] = [[fusedRuns, fusedStep], [stackRuns, stackStep]];
    if (round % 2 === 1) pair.reverse();
    for (const [runs, step] of pair) runs.push(await measureCase({ flopPerStep: row.flopPerStep }, step, part));
  }
  const best = (runs: Measured[]) => runs.reduce((a, b) => (!b.timing || (a.timing && a.timing.medianUs <= b.timing.medianUs) ? a : b));
  const fused = best(fusedRuns);
  const stack = best(stackRuns);
  if (!fused.timing || !stack.timing) return { ...row, skipped: fused.skipped ?? stack.skipped ?? 'not measured' };
  const r: OverheadRow = {
    ...row, fused: fused.timing, sequential: stack.timing,
    extraUs: stack.timing.medianUs - fused.timing.medianUs, ratio: stack.timing.medianUs / fused.timing.medianUs,
    fusedLoss: fused.loss, sequentialLoss: stack.loss,
  };
  const rel = Math.abs(stack.loss! - fused.loss!) / Math.abs(fused.loss!);
  const gradErr = maxRelErr(seqOut, p.out as unknown as Record<string, FloatArray>);
  if (!(rel <= LOSS_RTOL) || !(gradErr <= GRAD_RTOL[dtype])) {
    r.warning = `Sequential's loss ${stack.loss} / gradients differ from the fused step's (${fused.loss}) by ${rel.toExponential(1)} / ${gradErr.toExponential(1)} relative`;
  }
  return r;
}
