import { coreBinding } from './binding';
import { HandgradError } from './errors';
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

/**
 * Whether the native backend multiplies a mostly-zero input by its nonzeros only (true, the
 * default): see setSparseInput.
 */
export function getSparseInput(): boolean {
  return coreBinding().getSparseInput();
}

/**
 * The native backend's sparse first layer, for the whole process: when at most a quarter of a
 * batch's X is nonzero (images with a blank background, one-hot columns) and the first layer is a
 * Linear, Z = X·W + b and dW = Xᵀ·dZ are computed from X's nonzeros only — each output summed in
 * one fixed order (k ascending for Z, rows ascending for dW) instead of OpenBLAS's blocked order,
 * so its bits differ from the dense path's (within rounding), the same at any thread count.
 * setSparseInput(false) multiplies every entry as before. The wasm backend always takes the sparse
 * path where it applies; exact mode never does (it follows LibTorch's kernels).
 * @throws {TypeError} unless on is a boolean
 */
export function setSparseInput(on: boolean): void {
  if (typeof on !== 'boolean') v.fail(TypeError, 'a boolean', 'on', on);
  coreBinding().setSparseInput(on);
}

/**
 * Whether the native backend runs its products on BLAS lanes (true where they load, the default):
 * see setBlasLanes.
 */
export function getBlasLanes(): boolean {
  return coreBinding().getBlasLanes();
}

/**
 * BLAS lanes, for the whole process: private single-threaded copies of OpenBLAS (Debian's
 * libopenblas0-serial, each loaded into its own link-map namespace), on which the native backend
 * cuts each large float64 product between its own threads — getNumThreads() of them — and runs a
 * layer's dW and dX side by side, instead of handing each product to OpenBLAS's thread pool. Their
 * bits are then OpenBLAS's on one thread at any thread count (OpenBLAS's own threads block some
 * products otherwise, within rounding); float32 products stay on OpenBLAS's threads.
 * setBlasLanes(false) returns every product to the process's OpenBLAS. LibTorch (the torch
 * backend, the exact mode) never uses lanes.
 * @throws {TypeError} unless on is a boolean
 * @throws {HandgradError} ERR_LANES_UNAVAILABLE: on = true where lanes do not load (the message says why: libopenblas0-serial not installed, …)
 */
export function setBlasLanes(on: boolean): void {
  if (typeof on !== 'boolean') v.fail(TypeError, 'a boolean', 'on', on);
  const b = coreBinding();
  const why = on ? b.blasLanes() : '';
  if (why) throw new HandgradError('ERR_LANES_UNAVAILABLE', `BLAS lanes are unavailable here: ${why}`);
  b.setBlasLanes(on);
}
