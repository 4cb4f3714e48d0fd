// Command-line flags and environment for `npm run bench [-- flags]`.
import type { Budget } from './harness';

export interface BenchOptions {
  /** A smoke run: tiny budgets, a smaller peak GEMM, the slow TS cases at the largest size skipped. */
  quick: boolean;
  /** OpenBLAS threads to set before measuring (default: leave OpenBLAS's own choice). */
  threads?: number;
  /** Where to write the JSON (default bench/results/<YYYY-MM-DD>[.quick].json). */
  out?: string;
  /** Another built handgrad checkout whose step is measured alternately with this one's (bench/before.ts). */
  before?: string;
  /** Budget per forwardBackward case. */
  step: Budget;
  /** A case whose single call takes longer than budget/minSamples gets fewer samples, down to this. */
  slowMinSamples: number;
  /** Time allowed for one slow case (s); it is skipped with a note if it would take longer. */
  slowBudgetS: number;
  /**
   * The slow-case bounds of the deep-net section (bench/sequential.ts), tighter than the two-layer
   * ones: a ts step of the 4-layer net takes seconds, and the section must add under a minute.
   */
  deep: { slowBudgetS: number; slowMinSamples: number };
  /** Square sizes for the GEMM peak, and timed repetitions at each. */
  peakSizes: number[];
  peakReps: number;
}

export const USAGE = `usage: node dist/bench/run.js [--quick] [--threads=N] [--out=FILE] [--before=DIR]
  --quick        smoke run (also HANDGRAD_BENCH_QUICK=1): small budgets, a 1024³ peak GEMM
  --threads=N    set OpenBLAS threads first (default: OpenBLAS's own, OPENBLAS_NUM_THREADS or one per core)
  --out=FILE     write the JSON here instead of bench/results/<YYYY-MM-DD>.json
  --before=DIR   another handgrad checkout, built (e.g. a git worktree at an earlier commit): its
                 native step is measured alternately with this one's and the C program's`;

function positiveInt(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a positive integer for ${flag} but received ${JSON.stringify(s)}`);
  return n;
}

/**
 * Parses argv (without node and the script) and HANDGRAD_BENCH_QUICK.
 * @throws {RangeError} an unknown flag or a bad value
 */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): BenchOptions | 'help' {
  let quick = env.HANDGRAD_BENCH_QUICK !== undefined && env.HANDGRAD_BENCH_QUICK !== '' && env.HANDGRAD_BENCH_QUICK !== '0';
  let threads: number | undefined;
  let out: string | undefined;
  let before: string | undefined;
  for (const arg of argv) {
    const [flag, value] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag === '--help' || flag === '-h') return 'help';
    else if (flag === '--quick' && value === undefined) quick = true;
    else if (flag === '--threads' && value !== undefined) threads = positiveInt('--threads', value);
    else if (flag === '--out' && value !== undefined && value !== '') out = value;
    else if (flag === '--before' && value !== undefined && value !== '') before = value;
    else throw new RangeError(`Unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
  }
  return quick
    ? { quick, threads, out, before, step: { minTimeMs: 40, minSamples: 5 }, slowMinSamples: 2, slowBudgetS: 2, deep: { slowBudgetS: 2, slowMinSamples: 2 }, peakSizes: [1024], peakReps: 3 }
    : { quick, threads, out, before, step: { minTimeMs: 700, minSamples: 12 }, slowMinSamples: 3, slowBudgetS: 20, deep: { slowBudgetS: 12, slowMinSamples: 3 }, peakSizes: [2048, 3000], peakReps: 5 };
}
