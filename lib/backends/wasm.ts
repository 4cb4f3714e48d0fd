// The WebAssembly module (build-wasm/handgrad.wasm, built by scripts/build-wasm.mjs from
// native/wasm and native/core): loading, once per thread, and its one linear memory. Every call
// lays its tensors out from __heap_base afresh and copies its inputs in, so no call relies on what
// the memory held before it; `lastWriter` says whose tensors the memory holds now.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { available, packageRoot } from '../binding';
import { HandgradError } from '../errors';
import type { FloatArray } from '../types';
import { loadPreferringThreads } from '../engine/wasm-threads';

// The few WebAssembly JS-API members used here (this project's TypeScript libs declare none).
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: unknown };
}

/** Byte offsets into the linear memory. */
export type Ptr = number;
type StackStep = (
  net: Ptr, layers: number, ws: Ptr, X: Ptr, y: Ptr, B: number, dX: Ptr, reduction: number, accumulate: number,
  tensors: Ptr, params: number, status: Ptr,
) => number;
/** stackForwardBackwardLoss: every option of F.cross_entropy; weight, targets, gradOutput are pointers (0: not given). */
type StackStepLoss = (
  net: Ptr, layers: number, ws: Ptr, X: Ptr, y: Ptr, B: number, dX: Ptr, accumulate: number, tensors: Ptr, params: number, status: Ptr,
  reduction: number, weight: Ptr, ignoreIndex: number, labelSmoothing: number, targets: Ptr, gradOutput: Ptr,
) => number;
type StackForward = (net: Ptr, layers: number, ws: Ptr, X: Ptr, B: number, params: Ptr, status: Ptr) => number;
type Gemm = (
  transA: number, transB: number, M: number, N: number, K: number, alpha: number, A: Ptr, lda: number,
  B: Ptr, ldb: number, beta: number, C: Ptr, ldc: number,
) => void;

/** The exports of native/wasm/handgrad.cc used by lib/engine. */
export interface WasmExports {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  __heap_base: { value: number };
  /** Writes [each output's offset …, probs', workspace length, the rows' losses'] (doubles) at out; 0 when too large. */
  stackLayout(net: Ptr, layers: number, B: number, f32: number, out: Ptr): number;
  /** The loss, or NaN with [stage, layer] at status. */
  stackForwardBackwardF64: StackStep;
  stackForwardBackwardF32: StackStep;
  stackForwardBackwardLossF64: StackStepLoss;
  stackForwardBackwardLossF32: StackStepLoss;
  /** 1, or 0 with [stage, layer] at status. */
  stackForwardF64: StackForward;
  stackForwardF32: StackForward;
  gemmF64: Gemm;
  gemmF32: Gemm;
}

const PAGE = 65536;
/** wasm32 addresses 4 GiB at most. */
const MAX_BYTES = 2 ** 32;
/** Cache-line alignment for every region (also keeps Float64Array views legal). */
const ALIGN = 64;
export const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

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
    throw new HandgradError('ERR_WASM_UNAVAILABLE', `The WebAssembly module at ${path} could not be loaded (${(cause as Error).message}). ${BUILD_HINT}`, { cause });
  }
}

// One instance per thread (module state is per JS realm), so one linear memory, reused by every call.
let wasm: WasmExports | undefined;

/**
 * The module of wasmModulePath(), loaded once per thread: its threaded build (lib/engine/
 * wasm-threads.ts) when more than one thread is wanted, SharedArrayBuffer exists and that build
 * loads, else the single-threaded one (the same bits either way).
 * @throws {HandgradError} ERR_WASM_UNAVAILABLE: not built, or it does not load
 */
export function load(): WasmExports {
  wasm ??= loadPreferringThreads(wasmModulePath());
  return wasm;
}

/** Whether the module loads (builds nothing). */
export function wasmAvailable(): boolean {
  return available(load);
}

/** Bytes of linear memory the instance holds now (it grows and never shrinks); 0 before the first call. */
export function wasmMemoryBytes(): number {
  return wasm ? wasm.memory.buffer.byteLength : 0;
}

/** Whose tensors the linear memory holds since the last call (an engine's batch), or null. */
export const lastWriter: { by: object | null } = { by: null };

/**
 * Grows the memory to at least `end` bytes (it never shrinks). Growing detaches every view onto
 * the old buffer: callers make their views after this.
 * @throws {RangeError} past 4 GiB (`what` names the sizes that need it), or when the engine refuses
 */
export function ensureMemory(w: WasmExports, end: number, what: string): void {
  const have = w.memory.buffer.byteLength;
  if (end <= have) return;
  if (end > MAX_BYTES) {
    throw new RangeError(`Expected at most 4 GiB of WebAssembly memory for backend 'wasm' but ${what} needs ${end} bytes; use { backend: 'native' }`);
  }
  try {
    w.memory.grow(Math.ceil((end - have) / PAGE));
  } catch (cause) {
    const why = `but the engine refused (${(cause as Error).message}); use { backend: 'native' }`;
    throw new RangeError(`Expected WebAssembly memory to grow to ${end} bytes for backend 'wasm' ${why}`, { cause });
  }
}

/**
 * C = alpha·op(A)·op(B) + beta·C on the SIMD128 GEMM of native/wasm/gemm.h alone (row-major), for
 * tests and benchmarks: A is [M,K] ([K,M] when transA), B is [K,N] ([N,K] when transB), C is
 * [M,N], all of C's dtype, lengths checked by the caller. C is copied in only when beta ≠ 0.
 */
export function wasmGemm<T extends FloatArray>(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: T, B: T, beta: number, C: T,
): void {
  const w = load();
  const F = C instanceof Float32Array ? Float32Array : Float64Array;
  const pA = align(w.__heap_base.value);
  const pB = align(pA + A.byteLength);
  const pC = align(pB + B.byteLength);
  ensureMemory(w, pC + C.byteLength, `gemm M=${M}, N=${N}, K=${K}`);
  lastWriter.by = null;
  const buf = w.memory.buffer; // after ensureMemory, which may have grown it
  new F(buf, pA, M * K).set(A);
  new F(buf, pB, K * N).set(B);
  if (beta !== 0) new F(buf, pC, M * N).set(C);
  (F === Float32Array ? w.gemmF32 : w.gemmF64)(+transA, +transB, M, N, K, alpha, pA, transA ? M : K, pB, transB ? K : N, beta, pC, N);
  C.set(new F(w.memory.buffer, pC, M * N));
}
