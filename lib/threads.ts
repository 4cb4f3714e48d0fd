import { coreBinding } from './binding';
import * as v from './validate';

/** Threads OpenBLAS uses for each GEMM in the native backend. */
export function getNumThreads(): number {
  return coreBinding().getNumThreads();
}

/**
 * Sets OpenBLAS's thread count for the whole process. OpenBLAS starts with one thread per core
 * (or OPENBLAS_NUM_THREADS); a server that runs several trainings at once may want 1 per training.
 * @throws {TypeError|RangeError} unless n is a positive integer that OpenBLAS can run (not past its build's maximum)
 */
export function setNumThreads(n: number): void {
  const threads = v.dim('threads', n); // a bad count is a RangeError whether or not the addon loads
  const b = coreBinding();
  const before = b.getNumThreads();
  b.setNumThreads(threads);
  // OpenBLAS clamps a count past the most its build runs (MAX_CPU_NUMBER) without a word: refuse
  // that count instead, and leave the threads as they were.
  const got = b.getNumThreads();
  if (got !== threads) {
    b.setNumThreads(before);
    v.fail(RangeError, `at most ${got} threads (the most this OpenBLAS build runs)`, 'threads', threads);
  }
}
