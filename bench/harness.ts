// Timing through mitata's measure(): it warms the function up, batches calls that are too short
// for the clock (4096 per sample under ~65 µs), keeps sampling until a minimum CPU time and sample
// count, trims outliers and gives percentiles. This file only chooses its options and converts ns.
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { measure } from 'mitata';

/** Percentiles of one measured function, in µs per call. */
export interface Timing {
  medianUs: number;
  p25Us: number;
  p75Us: number;
  minUs: number;
  /** Samples mitata kept (each one call, or the mean of a batch of calls). */
  samples: number;
  /** Calls timed, warm-up excluded. */
  calls: number;
}

/** How much time and how many samples to spend on one function. */
export interface Budget {
  /** Keep sampling until this much time is spent (ms)… */
  minTimeMs: number;
  /** …and at least this many samples are taken. */
  minSamples: number;
}

// mitata runs a full GC before sampling. Without --expose-gc its fallback allocates 1 GiB to
// force one, so expose the real gc() at run time instead (node dist/bench/run.js, no flags).
function exposedGc(): (() => void) | false {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : false;
  } catch {
    return false;
  }
}
const gc = exposedGc();

/** Calls fn `times` times (at least once) and returns the wall time of the last call in ms. */
export function warmUp(fn: () => unknown, times: number): number {
  let last = 0;
  for (let i = 0; i < Math.max(1, times); i++) {
    const t0 = performance.now();
    fn();
    last = performance.now() - t0;
  }
  return last;
}

/** Median (and spread) of fn's wall time per call, from mitata. */
export async function time(fn: () => unknown, budget: Budget): Promise<Timing> {
  const s = await measure(fn, {
    gc,
    min_samples: budget.minSamples,
    min_cpu_time: budget.minTimeMs * 1e6,
    // mitata's own warm-up: skipped for calls over 0.5 ms, which the caller has warmed up itself.
    warmup_samples: 2,
  });
  const us = (ns: number) => ns / 1e3;
  return {
    medianUs: us(s.p50),
    p25Us: us(s.p25),
    p75Us: us(s.p75),
    minUs: us(s.min),
    samples: s.samples.length,
    calls: s.ticks,
  };
}
