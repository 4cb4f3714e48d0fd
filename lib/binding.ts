// The typed surface of the core addon (native/addon/addon.cc), declared once; the .node is cast to
// it here and nowhere else. Loaded lazily so the pure-TS and WASM backends work without it.
import { join, sep } from 'node:path';
import { HandgradError } from './errors';
import type { FloatArray } from './types';

/** A stack prepared by stackPrepare: an opaque handle the addon owns (freed by the GC). */
export type StackHandle = { readonly __stack: unique symbol };
/** A step bound by stackBind: its workspace, dX, params and grads registered (freed by the GC, which then unpins them). */
export type BoundStep = { readonly __bound: unique symbol };

export interface CoreBinding {
  /** The C++ enum codes (native/core), the one source lib's LAYER_CODE, REDUCTION_CODE, OPTIMIZER_CODE are tested against. */
  readonly codes: {
    layer: { linear: number; relu: number; sigmoid: number; tanh: number };
    reduction: { mean: number; sum: number; none: number };
    optimizer: { sgd: number; momentum: number; nesterov: number; adam: number; adamw: number };
    stage: { ok: number; input: number; forward: number; loss: number; grads: number };
  };
  /** Checks a stack description once (kinds: layer codes; widths: L + 1 positive widths) and keeps it. */
  stackPrepare(kinds: Int32Array, widths: Int32Array, float32: boolean): StackHandle;
  /** Element offsets into the workspace for B rows: [each layer's output …, probs, workspace length, the rows' losses]. */
  stackLayout(handle: StackHandle, B: number): Float64Array;
  /**
   * Forward, loss and backward in one call: writes the layer outputs and probs into ws, the gradients
   * into grads (2 per Linear, after the 2 params per Linear) and dX. The loss, or NaN with stackStatus set.
   */
  stackForwardBackward(
    handle: StackHandle, ws: FloatArray, X: FloatArray, y: Int32Array, B: number, dX: FloatArray | null,
    reduction: number, accumulate: boolean, ...paramsThenGrads: FloatArray[]
  ): number;
  /**
   * stackForwardBackward with every option of F.cross_entropy (native/core/kernels.h LossSpec):
   * reduction 0 mean, 1 sum, 2 none (then gradOutput [B] is ∂L/∂loss and the rows' losses land in
   * ws at stackLayout's last offset); weight [C], targets [B,C] (probability targets, y null) or null.
   */
  stackForwardBackwardLoss(
    handle: StackHandle, ws: FloatArray, X: FloatArray, y: Int32Array | null, B: number, dX: FloatArray | null,
    accumulate: boolean, reduction: number, weight: FloatArray | null, ignoreIndex: number, labelSmoothing: number,
    targets: FloatArray | null, gradOutput: FloatArray | null, ...paramsThenGrads: FloatArray[]
  ): number;
  /** The layer outputs into ws; true, or false with stackStatus set. */
  stackForward(handle: StackHandle, ws: FloatArray, X: FloatArray, B: number, ...params: FloatArray[]): boolean;
  /**
   * The prepared step: checks the tensors that stay the same from step to step once (dtypes, element
   * counts, dX [B, D] for some B, outputs disjoint from the params and from each other) and keeps a
   * strong reference to each, so that stackRun reads only X and y. The bound pointers are valid
   * while each view keeps its byteLength: a caller compares them before every stackRun (a detached
   * or shrunk buffer reports 0) and binds again.
   */
  stackBind(handle: StackHandle, ws: FloatArray, dX: FloatArray | null, ...paramsThenGrads: FloatArray[]): BoundStep;
  /**
   * stackForwardBackward on a bound step: X [B, D] and y [B] checked (lengths, and no overlap with
   * ws, dX or the grads), B's workspace layout checked against the bound ws (and B against dX's rows).
   * The loss, or NaN with stackStatus(handle) set.
   */
  stackRun(bound: BoundStep, X: FloatArray, y: Int32Array, B: number, reduction: number, accumulate: boolean): number;
  /** [stage, layer] of the handle's last step (codes.stage). */
  stackStatus(handle: StackHandle): [number, number];
  /**
   * The handle's steps and forwards run the exact mode (native/core/exact.h: LibTorch's bits) from
   * now on, or no longer. Returns what the bits depend on: [LibTorch's CPU kernel set as ATen
   * picks it ('DEFAULT', 'AVX2', 'AVX512'), OpenBLAS's kernel family]. An Error saying why when this
   * machine's LibTorch cannot be reproduced (a kernel set this CPU lacks; OpenBLAS's thread count changed).
   */
  stackExact(handle: StackHandle, on: boolean): [string, string];
  /** C = alpha·op(A)·op(B) + beta·C, row-major, through the same OpenBLAS. */
  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    alpha: number, A: FloatArray, B: FloatArray, beta: number, C: FloatArray,
  ): void;
  /**
   * One optimizer step on one tensor in place (kind: 0 sgd, 1 momentum, 2 nesterov, 3 adam, 4 adamw); whether every value written is finite.
   * With savedW, the values before the step are copied into savedW/savedM/savedV/savedVmax (one for each slot the step has) as they are overwritten.
   */
  optimizerUpdate(
    W: FloatArray, g: FloatArray, m: FloatArray | null, v: FloatArray | null, kind: number,
    lr: number, t: number, momentum: number, beta1: number, beta2: number, epsilon: number, weightDecay: number,
    dampening?: number, vmax?: FloatArray | null,
    savedW?: FloatArray | null, savedM?: FloatArray | null, savedV?: FloatArray | null, savedVmax?: FloatArray | null,
  ): boolean;
  /** LibTorch's CPU kernel set as ATen picks it here (ATEN_CPU_CAPABILITY, else AVX2 where the CPU has AVX2 and FMA): whether its add(alpha)/addcmul fuse. */
  atenCapability(): 'DEFAULT' | 'AVX2' | 'AVX512';
  /** [OpenBLAS's kernel family (openblas_get_corename), whether this CPU runs AVX-512 F/BW/DQ/VL (the SkylakeX family's)]. */
  blasKernels(): [string, boolean];
  getNumThreads(): number;
  setNumThreads(n: number): void;
  /** Empty where BLAS lanes (native/core/lanes.h) load here, else why not. */
  blasLanes(): string;
  /** Whether products run on BLAS lanes. */
  getBlasLanes(): boolean;
  setBlasLanes(on: boolean): void;
  /** Whether a mostly-zero X takes the sparse first layer (native/core/sparse.h). */
  getSparseInput(): boolean;
  setSparseInput(on: boolean): void;
  /** The instruction set the loops over a layer's values run (scans, activations, the sparse products): the CPU's widest unless narrowed (tests). */
  getKernelSet(): 'portable' | 'avx2' | 'avx512';
  /** At most the CPU's widest: every set gives the same bits. */
  setKernelSet(name: 'portable' | 'avx2' | 'avx512'): void;
  /** Rows order[start … start + B) of X [N, D] into Xb and their labels from y into yb: the Trainer's minibatch gather. */
  gatherRows(X: FloatArray, D: number, order: Int32Array, start: number, B: number, Xb: FloatArray, y: Int32Array, yb: Int32Array): void;
  /** Whether every entry of a is finite, scanned on the pool's threads: fit's check of its X. */
  allFinite(a: FloatArray): boolean;
}

// dist/lib as whole folder names: a checkout in a folder whose name ends in "dist" (…/wt-dist/lib)
// is the source tree, one level down, not the build.
export const packageRoot = join(__dirname, __dirname.endsWith(join(sep, 'dist', 'lib')) ? '../..' : '..');

/** load() on the first call, then its value (or its error) on every call. */
export function once<T>(load: () => T): () => T {
  let value: { ok: true; v: T } | { ok: false; e: unknown } | undefined;
  return () => {
    if (!value) {
      try {
        value = { ok: true, v: load() };
      } catch (e) {
        value = { ok: false, e };
      }
    }
    if (value.ok) return value.v;
    throw value.e;
  };
}

/** Whether get() returns (an optional addon or module loads), building nothing. */
export function available(get: () => unknown): boolean {
  try {
    get();
    return true;
  } catch {
    return false;
  }
}

/**
 * The core addon, loaded on first use.
 * @throws {HandgradError} ERR_NATIVE_UNAVAILABLE, with the command that builds it
 */
export const coreBinding: () => CoreBinding = once(() => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('node-gyp-build')(packageRoot) as CoreBinding;
  } catch (cause) {
    throw new HandgradError(
      'ERR_NATIVE_UNAVAILABLE',
      `The native addon could not be loaded from ${packageRoot} (${(cause as Error).message.split('\n')[0]}). ` +
        // Worded for a consumer's node_modules, where scripts/ is not shipped: npm rebuild runs the
        // package's install script (node-gyp-build: the prebuild for this platform, else node-gyp).
        `No prebuild for ${process.platform}-${process.arch} was found and none was compiled (installed with --ignore-scripts?): ` +
        'build it with `npm rebuild handgrad` (compiling needs g++, make and libopenblas-dev: ' +
        '`apt-get install -y g++ make libopenblas-dev`), or use { backend: \'ts\' }.',
      { cause },
    );
  }
});
