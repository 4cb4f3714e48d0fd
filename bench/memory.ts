// Memory: RSS over a long loop of training steps at the toy size, per backend, to show that a step
// leaks nothing (a leak of even a few bytes per step adds up over 10,000 steps; a one-off cache
// or JIT allocation does not grow with the step count).
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { forwardBackward, type ForwardBackwardOptions } from '../lib/model';
import type { BackendName, Dims, Dtype, FloatArray } from '../lib/types';
import { makePeerStep, type PeerName } from './peers';
import { makeProblem, sizeLabel } from './sizes';

export const MEMORY_DIMS: Dims = { B: 4, D: 5, H: 10, C: 3 };
export const MEMORY_STEPS = 10_000;
/** Untimed steps before the "before" reading, so one-off allocations (JIT, caches) are not counted as growth. */
const WARMUP_STEPS = 500;
/** RSS is sampled every this many steps for the peak. */
const SAMPLE_EVERY = 250;

export interface MemoryRow {
  size: string;
  backend: BackendName | PeerName;
  dtype: Dtype;
  steps: number;
  /** Bytes, after a full GC (when gc is available) before and after the loop. */
  rssBefore: number;
  rssAfter: number;
  /** Highest RSS sampled during the loop. */
  rssPeak: number;
  /** rssAfter − rssBefore. */
  growth: number;
  /** tfjs only: live tensors before and after (equal when tf.tidy frees every step's tensors). */
  tensorsBefore?: number;
  tensorsAfter?: number;
  skipped?: string;
}

function exposedGc(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}
const gc = exposedGc();
export const gcAvailable = gc !== undefined;

function settledRss(): number {
  gc?.();
  gc?.();
  return process.memoryUsage.rss();
}

function loop(step: () => unknown, steps: number): { before: number; after: number; peak: number } {
  for (let i = 0; i < WARMUP_STEPS; i++) step();
  const before = settledRss();
  let peak = before;
  for (let i = 0; i < steps; i++) {
    step();
    if (i % SAMPLE_EVERY === 0) peak = Math.max(peak, process.memoryUsage.rss());
  }
  peak = Math.max(peak, process.memoryUsage.rss());
  const after = settledRss();
  return { before, after, peak: Math.max(peak, after) };
}

/** One handgrad backend: forwardBackward with inputGrad and the same out buffers, MEMORY_STEPS times. */
export function memoryOfBackend(backend: BackendName, dtype: Dtype, steps = MEMORY_STEPS): MemoryRow {
  const p = makeProblem(MEMORY_DIMS, dtype);
  const fbOpts: ForwardBackwardOptions<FloatArray> = { backend, inputGrad: true, out: p.out };
  const r = loop(() => forwardBackward(p.params, p.X, p.y, fbOpts), steps);
  return { size: sizeLabel(MEMORY_DIMS), backend, dtype, steps, rssBefore: r.before, rssAfter: r.after, rssPeak: r.peak, growth: r.after - r.before };
}

/** One peer: its tidy()'d step, MEMORY_STEPS times. */
export async function memoryOfPeer(peer: PeerName, steps = MEMORY_STEPS): Promise<MemoryRow> {
  const s = await makePeerStep(peer, MEMORY_DIMS);
  try {
    for (let i = 0; i < 10; i++) s.step();
    const tensorsBefore = s.numTensors();
    const r = loop(s.step, steps);
    return {
      size: sizeLabel(MEMORY_DIMS), backend: peer, dtype: 'float32', steps,
      rssBefore: r.before, rssAfter: r.after, rssPeak: r.peak, growth: r.after - r.before,
      tensorsBefore, tensorsAfter: s.numTensors(),
    };
  } finally {
    s.dispose();
  }
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const short = (d: Dtype) => (d === 'float64' ? 'f64' : 'f32');

export function memoryLines(rows: readonly MemoryRow[]): string[] {
  if (rows.length === 0) return [];
  const head = `${'backend'.padEnd(10)}  ${'dtype'.padEnd(5)}  ${'RSS before'.padStart(10)}  ${'peak'.padStart(8)}  ${'after'.padStart(8)}  ${'growth KiB'.padStart(10)}  ${'B/step'.padStart(7)}  tensors`;
  const lines = [
    `memory: RSS over ${MEMORY_STEPS.toLocaleString('en-US')} steps at ${sizeLabel(MEMORY_DIMS)} per backend (MiB; after ${WARMUP_STEPS} warm-up steps${gcAvailable ? ', before/after read after a full GC' : ', no gc() available'})`,
    head,
    '-'.repeat(head.length),
  ];
  for (const r of rows) {
    const first = `${r.backend.padEnd(10)}  ${short(r.dtype).padEnd(5)}`;
    if (r.skipped) {
      lines.push(`${first}  skipped: ${r.skipped}`);
      continue;
    }
    const tensors = r.tensorsBefore === undefined ? '' : `${r.tensorsBefore} → ${r.tensorsAfter}`;
    const sign = r.growth >= 0 ? '+' : '';
    lines.push(
      `${first}  ${mib(r.rssBefore).padStart(10)}  ${mib(r.rssPeak).padStart(8)}  ${mib(r.rssAfter).padStart(8)}  ${(sign + (r.growth / 1024).toFixed(0)).padStart(10)}  ${(r.growth / r.steps).toFixed(1).padStart(7)}  ${tensors}`.trimEnd(),
    );
  }
  return lines;
}
