// The layer stack (lib/layers: Sequential), which every step now runs (the two-layer
// forwardBackward is a cached Linear–act–Linear Sequential):
//  · a 4-layer net at realistic widths, Sequential.mlp([784, 512, 256, 128, 10]) with ReLU between,
//    B = 256, on every backend and dtype (native and wasm run the stack in C++, ts the same ops in
//    TypeScript, torch the whole stack as one LibTorch autograd graph); each backend's loss and
//    gradients are checked once against native's, so a broken backend cannot post a fast time;
//  · one engine against the C program (bench/cpeer.ts): at the two-layer sizes, the public
//    forwardBackward with out buffers on native and wasm (and at the toy size the prepared step a
//    training loop calls, seq.forwardBackwardInto), measured alternately with the same step in C on
//    OpenBLAS with the same thread count, and with another checkout's step when --before is given.
import { Sequential } from '../lib/layers';
import { forwardBackward, type ForwardBackwardOptions } from '../lib/model';
import { getNumThreads } from '../lib/threads';
import { wasmThreads } from '../lib/engine/wasm-threads';
import { Rng } from '../lib/rng';
import type { BackendName, Dims, Dtype, FloatArray } from '../lib/types';
import type { Before } from './before';
import { runCPeer, type CPeer, type CPeerRun } from './cpeer';
import type { BenchOptions } from './options';
import { makeProblem, sizeLabel, SIZES, stepFlop } from './sizes';
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
export function outBuffers(seq: Sequential, B: number): Record<string, FloatArray> {
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


// --- One engine against the C program ------------------------------------------------------------

/** Alternations of the steps and the C program per size and dtype (one with --quick). */
export const ENGINE_ROUNDS = 3;

/** What one window gave: its median and minimum µs per call (mitata's, or the C program's own). */
export interface Window {
  medianUs: number;
  minUs: number;
}

/** One step measured alternately with the C program, over several windows. */
export interface EngineStep {
  /** 'native', 'native prepared', 'wasm', or 'before <commit>' (--before). */
  name: string;
  /** The call that was timed. */
  call: string;
  windows: Window[];
  /** The lowest of the windows' medians (other work only ever slows a window down). */
  medianUs?: number;
  /** The lowest single sample of any window. */
  minUs?: number;
  /** medianUs ÷ the C program's, minUs ÷ the C program's. */
  vsC?: { median: number; min: number };
  loss?: number;
  skipped?: string;
  warning?: string;
}

/** A row of the one-engine table: one size and dtype, every step and the C program, alternately. */
export interface EngineRow {
  size: string;
  dims: Dims;
  dtype: Dtype;
  flopPerStep: number;
  rounds: number;
  /** OpenBLAS threads of handgrad and of the C program (OPENBLAS_NUM_THREADS set to the first). */
  threads: number;
  /** The threads of the wasm GEMMs (lib/engine/wasm-threads.ts), where wasm ran. */
  wasmThreads?: number;
  c: { windows: CPeerRun[]; medianUs?: number; minUs?: number; skipped?: string };
  steps: EngineStep[];
}

/** The targets for the one-engine step (reported, not asserted): at (4,5,10,3) f64 on native. */
export const ENGINE_TARGETS: readonly { step: string; label: string; us: number }[] = [
  { step: 'native', label: 'forwardBackward(…, { out }), native f64', us: 2 },
  { step: 'native prepared', label: 'seq.forwardBackwardInto, native f64', us: 1.5 },
];

/**
 * Before the change, from the issue (not run here): the fused two-layer step (native/core/mlp.h,
 * one Node-API call) at commit f29bba6 on the 2-core VM, against the same C program.
 */
export const BEFORE_REPORTED = { commit: 'f29bba6', toyUs: 2.3, vsC: { '(4,5,10,3)': 4.3, '(64,128,256,10)': 1.34 } as Record<string, number> };

const PUBLIC_CALL = (backend: string) => `forwardBackward(params, X, y, { backend: '${backend}', inputGrad: true, out })`;
const PREPARED_CALL = "seq.forwardBackwardInto(X, y, grads, { backend: 'native', reduction: 'mean', accumulate: false })";

/**
 * At one size and dtype: the public step on each of `backends` (native, wasm where they run), the
 * prepared step at the toy size in f64, the --before tree's step, and the C program, one window each
 * per round, the order reversed every other round; each window on a third of the normal budget.
 * Every handgrad step runs on the same data; their losses must agree.
 */
export async function measureEngine(
  dims: Dims, dtype: Dtype, backends: readonly BackendName[], peer: CPeer, before: Before | undefined, opts: BenchOptions,
): Promise<EngineRow> {
  const rounds = opts.quick ? 1 : ENGINE_ROUNDS;
  const part: BenchOptions = { ...opts, step: { minTimeMs: opts.step.minTimeMs / rounds, minSamples: opts.step.minSamples } };
  const threads = getNumThreads();
  const flopPerStep = stepFlop(dims);
  const row: EngineRow = { size: sizeLabel(dims), dims, dtype, flopPerStep, rounds, threads, c: { windows: [] }, steps: [] };
  if (peer.skipped !== undefined) row.c.skipped = peer.skipped;

  const p = makeProblem(dims, dtype);
  type Contender = { step: EngineStep; window: () => Promise<Window & { loss?: number }> };
  const contenders: Contender[] = [];
  const inProcess = (name: string, call: string, stepLoss: () => number): Contender => ({
    step: { name, call, windows: [] },
    window: async () => {
      const m = await measureCase<Measured>({ flopPerStep }, stepLoss, part);
      if (!m.timing) throw new Error(m.skipped ?? 'not measured');
      return { medianUs: m.timing.medianUs, minUs: m.timing.minUs, loss: m.loss };
    },
  });
  for (const backend of backends) {
    const out = { dX: p.out.dX.slice(), dW1: p.out.dW1.slice(), db1: p.out.db1.slice(), dW2: p.out.dW2.slice(), db2: p.out.db2.slice() };
    const fbOpts: ForwardBackwardOptions<FloatArray> = { backend, inputGrad: true, out };
    contenders.push(inProcess(backend, PUBLIC_CALL(backend), () => forwardBackward(p.params, p.X, p.y, fbOpts).loss));
    if (backend === 'native' && dtype === 'float64' && sizeLabel(dims) === sizeLabel(SIZES[0])) {
      // A Sequential over copies of the same weights; grads with dX, so it does the C program's work.
      const seq = Sequential.mlp([dims.D, dims.H, dims.C], { dtype, seed: 1 });
      for (const name of ['W1', 'b1', 'W2', 'b2'] as const) seq.params[name].set(p.params[name]);
      const grads = outBuffers(seq, dims.B);
      const intoOpts = { backend: 'native' as const, reduction: 'mean' as const, accumulate: false };
      contenders.push(inProcess('native prepared', PREPARED_CALL, () => seq.forwardBackwardInto(p.X, p.y, grads, intoOpts).loss));
    }
  }
  if (before !== undefined) {
    contenders.push({
      step: { name: `before ${before.commit ?? before.dir}`, call: `${before.dir}: ${PUBLIC_CALL('native')} (its bench/step.ts)`, windows: [] },
      window: async () => {
        const r = await before.measure(dims, dtype, 'native', part.step);
        if (!r.timing) throw new Error(r.error ?? r.skipped ?? 'not measured');
        return { medianUs: r.timing.medianUs, minUs: r.timing.minUs, loss: r.loss };
      },
    });
  }
  if (peer.path !== undefined) {
    const path = peer.path;
    const c: Contender = {
      step: { name: 'c-openblas', call: '', windows: [] },
      window: async () => {
        const r = runCPeer(path, dims, dtype, part.step.minTimeMs / 1e3, threads);
        if (r.threads !== threads) throw new Error(`the C program ran with ${r.threads} OpenBLAS threads, handgrad with ${threads}`);
        row.c.windows.push(r);
        return r;
      },
    };
    contenders.unshift(c);
  }

  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    for (const k of order) {
      if (k.step.skipped !== undefined) continue;
      try {
        const w = await k.window();
        k.step.windows.push({ medianUs: w.medianUs, minUs: w.minUs });
        if (w.loss !== undefined) k.step.loss = w.loss;
      } catch (e) {
        k.step.skipped = `failed: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }

  const settle = (s: EngineStep) => {
    if (s.windows.length === 0) return;
    s.medianUs = Math.min(...s.windows.map((w) => w.medianUs));
    s.minUs = Math.min(...s.windows.map((w) => w.minUs));
  };
  for (const k of contenders) settle(k.step);
  const cStep = peer.path !== undefined ? contenders[0].step : undefined;
  if (cStep) {
    if (cStep.skipped !== undefined) row.c.skipped = cStep.skipped;
    row.c.medianUs = cStep.medianUs;
    row.c.minUs = cStep.minUs;
  }
  row.steps = contenders.filter((k) => k.step !== cStep).map((k) => k.step);
  if (backends.includes('wasm')) row.wasmThreads = wasmThreads();
  const ref = row.steps.find((s) => s.name === 'native' && s.loss !== undefined)?.loss;
  for (const s of row.steps) {
    if (s.medianUs === undefined && s.skipped === undefined) s.skipped = 'not measured';
    if (s.medianUs !== undefined && row.c.medianUs !== undefined && row.c.minUs !== undefined) {
      s.vsC = { median: s.medianUs / row.c.medianUs, min: s.minUs! / row.c.minUs };
    }
    if (ref !== undefined && s.loss !== undefined && !(Math.abs(s.loss - ref) <= LOSS_RTOL * Math.abs(ref))) {
      s.warning = `loss ${s.loss} differs from native's ${ref} by more than ${LOSS_RTOL} relative`;
    }
  }
  return row;
}
