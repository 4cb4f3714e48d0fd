// The WebAssembly backend: native/core's forward/backward and kernels with a SIMD128 GEMM
// (native/wasm), compiled by scripts/build-wasm.mjs to build-wasm/handgrad.wasm. Needs neither the
// native addon nor a compiler at run time, only that file.
//
// The module has one linear memory. Each call lays its tensors out there (the layout is cached per
// shape and dtype), grows the memory when a call needs more, copies the inputs in, runs, and copies
// the gradients and the workspace out. Inputs are copied on every call: JS may have changed a
// weight in place since the last one, and comparing would cost as much as copying.
//
// The kernels alone (wasmGemm here, lib/kernels/wasm.ts) stage their tensors in scratch(): regions
// laid out from __heap_base afresh on every call, over the same bytes as the cached layouts. That
// is safe because no fused call relies on what linear memory held before it: forwardBackward and
// forward copy every input in (X, y, W1, b1, W2, b2, and the gradients when accumulating) on every
// call, and write every other tensor they read (the workspace, the loss, gradients overwritten
// with beta = 0 or a zeroing sumRows) before reading it. Keep it so when changing either.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../binding';
import { HandgradError } from '../errors';
import type { FloatArray } from '../types';

// The few WebAssembly JS-API members used here (this project's TypeScript libs declare none).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: unknown };
}

/** Byte offsets into the linear memory. */
export type Ptr = number;
type StepFn = (
  X: Ptr, y: Ptr, W1: Ptr, b1: Ptr, W2: Ptr, b2: Ptr, ws: Ptr, dX: Ptr, dW1: Ptr, db1: Ptr, dW2: Ptr, db2: Ptr,
  B: number, D: number, H: number, C: number, activation: number, reduction: number, accumulate: number, loss: Ptr,
) => number;
type ForwardFn = (X: Ptr, W1: Ptr, b1: Ptr, W2: Ptr, b2: Ptr, ws: Ptr, B: number, D: number, H: number, C: number, activation: number) => number;
type GemmFn = (
  transA: number, transB: number, M: number, N: number, K: number, alpha: number, A: Ptr, lda: number,
  B: Ptr, ldb: number, beta: number, C: Ptr, ldc: number,
) => void;

/** The exports of native/wasm/handgrad.cc. Status codes are hg::Status: 0 ok, 1 Z1, 2 logits non-finite. */
export interface WasmExports {
  memory: WasmMemory;
  __heap_base: { value: number };
  forwardBackwardF64: StepFn;
  forwardBackwardF32: StepFn;
  forwardF64: ForwardFn;
  forwardF32: ForwardFn;
  gemmF64: GemmFn;
  gemmF32: GemmFn;
  // The kernels of native/core/kernels.h, for lib/kernels/wasm.ts; element counts, not bytes.
  broadcastRowsF64: (bias: Ptr, out: Ptr, rows: number, cols: number) => void;
  broadcastRowsF32: (bias: Ptr, out: Ptr, rows: number, cols: number) => void;
  sumRowsF64: (dZ: Ptr, db: Ptr, rows: number, cols: number, accumulate: number) => void;
  sumRowsF32: (dZ: Ptr, db: Ptr, rows: number, cols: number, accumulate: number) => void;
  activationForwardF64: (act: number, Z: Ptr, A: Ptr, n: number) => void;
  activationForwardF32: (act: number, Z: Ptr, A: Ptr, n: number) => void;
  activationBackwardF64: (act: number, Z: Ptr, A: Ptr, dA: Ptr, n: number) => void;
  activationBackwardF32: (act: number, Z: Ptr, A: Ptr, dA: Ptr, n: number) => void;
  /** Returns Σ_b loss_b. */
  softmaxCrossEntropyF64: (logits: Ptr, y: Ptr, probs: Ptr, B: number, C: number) => number;
  softmaxCrossEntropyF32: (logits: Ptr, y: Ptr, probs: Ptr, B: number, C: number) => number;
  softmaxCrossEntropyBackwardF64: (probs: Ptr, y: Ptr, dZ: Ptr, B: number, C: number, reduction: number) => void;
  softmaxCrossEntropyBackwardF32: (probs: Ptr, y: Ptr, dZ: Ptr, B: number, C: number, reduction: number) => void;
  /** 1 when no entry is NaN or ±Infinity, else 0. */
  allFiniteF64: (p: Ptr, n: number) => number;
  allFiniteF32: (p: Ptr, n: number) => number;
}

const PAGE = 65536;
/** wasm32 addresses 4 GiB at most. */
const MAX_BYTES = 2 ** 32;
/** Cache-line alignment for every tensor (also keeps Float64Array views legal). */
const ALIGN = 64;

const BUILD_HINT =
  'Build it with `npm run setup` or `node scripts/build-wasm.mjs` (needs clang and lld: ' +
  "`apt-get install -y clang lld`), or use { backend: 'native' } or { backend: 'ts' }.";

/** build-wasm/handgrad.wasm in the package, or the file HANDGRAD_WASM names. */
export function wasmModulePath(): string {
  return process.env.HANDGRAD_WASM || join(packageRoot, 'build-wasm', 'handgrad.wasm');
}

/**
 * Compiles and instantiates the module at `path`, uncached (synchronously: it is small).
 * @throws {HandgradError} ERR_WASM_UNAVAILABLE when the file is missing or not a valid module
 */
export function loadWasm(path: string): WasmExports {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    const why = (cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `could not be read (${(cause as Error).message})`;
    throw new HandgradError('ERR_WASM_UNAVAILABLE', `The WebAssembly module is not built: ${path} ${why}. ${BUILD_HINT}`, { cause });
  }
  const api = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  // exp/log/tanh are the host's (native/wasm/include/cmath): no libm inside the module.
  const imports = { env: { exp: Math.exp, log: Math.log, tanh: Math.tanh } };
  try {
    return new api.Instance(new api.Module(bytes), imports).exports as WasmExports;
  } catch (cause) {
    throw new HandgradError(
      'ERR_WASM_UNAVAILABLE',
      `The WebAssembly module at ${path} could not be loaded (${(cause as Error).message}). ${BUILD_HINT}`,
      { cause },
    );
  }
}

// One instance per thread (module state is per JS realm), so one linear memory, reused by every call.
let wasm: WasmExports | undefined;

/**
 * The module of wasmModulePath(), loaded once per thread and shared by the backend and the kernels.
 * @throws {HandgradError} ERR_WASM_UNAVAILABLE when the module is not built or does not load
 */
export function load(): WasmExports {
  wasm ??= loadWasm(wasmModulePath());
  return wasm;
}

/** Bytes of linear memory the instance holds now (it grows and never shrinks); 0 before the first call. */
export function wasmMemoryBytes(): number {
  return wasm ? wasm.memory.buffer.byteLength : 0;
}

/** Whether the module loads (builds nothing). */
export function wasmAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * Grows the memory to at least `end` bytes (it never shrinks). Growing detaches every view onto
 * the old buffer: callers make their views after this.
 * @throws {RangeError} past 4 GiB (`what` names the sizes that need it), or when the engine refuses
 */
function ensureMemory(w: WasmExports, end: number, what: string): void {
  const have = w.memory.buffer.byteLength;
  if (end <= have) return;
  if (end > MAX_BYTES) {
    throw new RangeError(
      `Expected at most 4 GiB of WebAssembly memory for backend 'wasm' but ${what} needs ${end} bytes; use { backend: 'native' }`,
    );
  }
  try {
    w.memory.grow(Math.ceil((end - have) / PAGE));
  } catch (cause) {
    throw new RangeError(
      `Expected WebAssembly memory to grow to ${end} bytes for backend 'wasm' but the engine refused (${(cause as Error).message}); use { backend: 'native' }`,
      { cause },
    );
  }
}

/**
 * Scratch space for one kernel call: a cache-line-aligned region of each of the given byte sizes,
 * laid out from __heap_base on every call (over the fused step's layouts, which keep nothing
 * between calls: see the top of this file), with the memory grown to hold them. Returns their byte
 * offsets; make views onto w.memory.buffer only after this returns (growth detaches old ones).
 * The regions are valid until the next call into the module from JS.
 * @throws {RangeError} past 4 GiB (`what` names the call's sizes) or when the engine refuses to grow
 */
export function scratch(w: WasmExports, bytes: readonly number[], what: string): Ptr[] {
  const ptrs: Ptr[] = [];
  let at = align(w.__heap_base.value);
  for (const n of bytes) {
    ptrs.push(at);
    at = align(at + n);
  }
  ensureMemory(w, at, what);
  return ptrs;
}

/**
 * C = alpha·op(A)·op(B) + beta·C on the SIMD128 GEMM alone (row-major; op = transpose when the flag
 * is set): the gemm of lib/kernels/wasm.ts, and for tests and benchmarks. A is [M,K] (or [K,M]
 * transposed), B is [K,N] (or [N,K]), C is [M,N], all of C's dtype; the caller checks the lengths.
 * C is copied in only when beta ≠ 0 (beta = 0 never reads it).
 */
export function wasmGemm<T extends FloatArray>(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: T, B: T, beta: number, C: T,
): void {
  const w = load();
  const f32 = C instanceof Float32Array;
  const [pA, pB, pC] = scratch(w, [A.byteLength, B.byteLength, C.byteLength], `gemm M=${M}, N=${N}, K=${K}`);
  const F = f32 ? Float32Array : Float64Array;
  const buf = w.memory.buffer; // after scratch(), which may have grown the memory
  new F(buf, pA, A.length).set(A);
  new F(buf, pB, B.length).set(B);
  if (beta !== 0) new F(buf, pC, C.length).set(C);
  (f32 ? w.gemmF32 : w.gemmF64)(+transA, +transB, M, N, K, alpha, pA, transA ? M : K, pB, transB ? K : N, beta, pC, N);
  C.set(new F(w.memory.buffer, pC, C.length));
}
