// This machine's own GEMM peak: large square C = A·B through coreBinding().gemm, the same OpenBLAS
// (and thread count) the native backend calls, in float64 (dgemm) and float32 (sgemm).
import { coreBinding } from '../lib/binding';
import { Rng } from '../lib/rng';
import type { Dtype, FloatArray } from '../lib/types';
import { time, warmUp } from './harness';

export interface GemmTiming {
  dtype: Dtype;
  /** Measured before or after the forwardBackward cases. */
  pass: 'before' | 'after';
  n: number;
  medianGflops: number;
  bestGflops: number;
  medianMs: number;
  samples: number;
}

export interface Peak {
  dtype: Dtype;
  routine: 'dgemm' | 'sgemm';
  /** The best GFLOP/s over every size, repetition and pass: the figure "% peak" divides by. */
  gflops: number;
  sizes: GemmTiming[];
}

function randomMatrix(dtype: Dtype, n: number, rng: Rng): FloatArray {
  const a = dtype === 'float64' ? new Float64Array(n * n) : new Float32Array(n * n);
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform() - 0.5;
  return a;
}

/** Times `reps` GEMMs of each size n×n×n (after one untimed call) for one dtype. */
export async function timeGemms(dtype: Dtype, sizes: readonly number[], reps: number, pass: GemmTiming['pass']): Promise<GemmTiming[]> {
  const core = coreBinding();
  const rng = new Rng(2048);
  const timings: GemmTiming[] = [];
  for (const n of sizes) {
    const A = randomMatrix(dtype, n, rng);
    const B = randomMatrix(dtype, n, rng);
    const C = dtype === 'float64' ? new Float64Array(n * n) : new Float32Array(n * n);
    const gemm = () => core.gemm(false, false, n, n, n, 1, A, B, 0, C);
    warmUp(gemm, 1);
    const t = await time(gemm, { minTimeMs: 0, minSamples: reps });
    const flop = 2 * n * n * n;
    timings.push({
      dtype,
      pass,
      n,
      medianGflops: flop / (t.medianUs * 1e3),
      bestGflops: flop / (t.minUs * 1e3),
      medianMs: t.medianUs / 1e3,
      samples: t.samples,
    });
  }
  return timings;
}

/**
 * The peak of one dtype from every GEMM timed for it. Taken before and after the cases, because a
 * burst of other work on the machine during one pass would otherwise set the bar too low.
 */
export function peakOf(dtype: Dtype, timings: readonly GemmTiming[]): Peak {
  return {
    dtype,
    routine: dtype === 'float64' ? 'dgemm' : 'sgemm',
    gflops: Math.max(...timings.map((t) => t.bestGflops)),
    sizes: [...timings],
  };
}
