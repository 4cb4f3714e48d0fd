// The WebAssembly kernels: thin calls into build-wasm/handgrad.wasm, whose exports run the very
// functions of native/core/kernels.h and the SIMD128 hg::gemm of native/wasm/gemm.h that the wasm
// backend's fused step runs (native/wasm/handgrad.cc). The module sees only its own linear memory,
// so each call copies its inputs into a scratch region there (lib/backends/wasm.ts: scratch(),
// shared with wasmGemm, reused by every call, grown when a call needs more), runs, and copies its
// outputs back into the caller's arrays. Outputs the kernel reads before writing (gemm's C when
// beta ≠ 0, sumRows' db when accumulating, activationBackward's dA) are copied in first.
// Every length, dtype and label is checked here, as the native addon checks them: a wrong call is
// an error, never a silent read or write past a tensor in the module's memory.
import { load, scratch, wasmGemm, type Ptr, type WasmExports } from '../backends/wasm';
import type { Activation, FloatArray, Reduction } from '../types';
import { ACTIVATION_CODE, type Kernels, REDUCTION_CODE } from './kernels';

type Tensor = FloatArray | Int32Array;
type TensorClass<T extends Tensor> = new (buffer: ArrayBuffer, byteOffset: number, length: number) => T;

/** A view of t's type and length at byte offset p of the module's memory, as it is now. */
function at<T extends Tensor>(w: WasmExports, t: T, p: Ptr): T {
  return new (t.constructor as TensorClass<T>)(w.memory.buffer, p, t.length);
}

/**
 * Places `tensors` in scratch and copies in those whose `copyIn` flag is set; returns their
 * offsets. Views are made after scratch() (growing the memory detaches the old ones).
 */
function stage(w: WasmExports, what: string, tensors: readonly Tensor[], copyIn: readonly boolean[]): Ptr[] {
  const ptrs = scratch(w, tensors.map((t) => t.byteLength), what);
  for (let i = 0; i < tensors.length; i++) if (copyIn[i]) at(w, tensors[i], ptrs[i]).set(tensors[i]);
  return ptrs;
}

/** Copies the result at p back into the caller's t (honouring t's byteOffset, as set() does). */
function unstage(w: WasmExports, t: Tensor, p: Ptr): void {
  t.set(at(w, t, p));
}

// ---- argument checks, worded as the native glue's (native/addon/args.h) ----

function dim(v: number, name: string): number {
  if (!(Number.isInteger(v) && v >= 1 && v <= 0x7fffffff)) {
    throw new RangeError(`Expected a positive 32-bit integer for ${name} but received ${v}`);
  }
  return v;
}

/** Whether the float tensors are float32; each must be a Float64Array or Float32Array like the first. */
function dtypeOf(tensors: Record<string, FloatArray>): boolean {
  let f32: boolean | undefined;
  for (const [name, t] of Object.entries(tensors)) {
    const is32 = t instanceof Float32Array;
    if (!is32 && !(t instanceof Float64Array)) {
      throw new TypeError(`Expected Float64Array or Float32Array for ${name} but received ${describe(t)}`);
    }
    if (f32 === undefined) f32 = is32;
    else if (is32 !== f32) {
      throw new TypeError(`Expected ${f32 ? 'Float32Array' : 'Float64Array'} for ${name} but received ${describe(t)}`);
    }
  }
  return f32 === true;
}

function describe(t: unknown): string {
  return (t as object | null)?.constructor?.name ?? String(t);
}

function length(t: Tensor, n: number, name: string): void {
  if (t.length !== n) throw new RangeError(`Expected ${n} elements for ${name} but received ${t.length}`);
}

/** y is an Int32Array of B labels in [0, C): one outside would read or write past a row of probs. */
function labels(y: Int32Array, B: number, C: number): void {
  if (!(y instanceof Int32Array)) throw new TypeError(`Expected Int32Array for y but received ${describe(y)}`);
  length(y, B, 'y');
  for (let b = 0; b < B; b++) {
    if (!(y[b] >= 0 && y[b] < C)) throw new RangeError(`Expected labels in [0, ${C}) for y but received ${y[b]} at index ${b}`);
  }
}

function activationCode(act: Activation): number {
  const code = ACTIVATION_CODE[act];
  if (code === undefined) throw new RangeError(`Expected 'relu', 'sigmoid' or 'tanh' for activation but received ${String(act)}`);
  return code;
}

function reductionCode(red: Reduction): number {
  const code = REDUCTION_CODE[red];
  if (code === undefined) throw new RangeError(`Expected 'mean' or 'sum' for reduction but received ${String(red)}`);
  return code;
}

export const wasmKernels: Kernels = {
  name: 'wasm',

  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    dtypeOf({ A, B, C });
    length(A, dim(M, 'M') * dim(K, 'K'), 'A');
    length(B, K * dim(N, 'N'), 'B');
    length(C, M * N, 'C');
    wasmGemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },

  broadcastRows(bias, out, rows) {
    const f32 = dtypeOf({ bias, out });
    const cols = dim(bias.length, 'cols');
    length(out, dim(rows, 'rows') * cols, 'out');
    const w = load();
    const [pBias, pOut] = stage(w, `broadcastRows rows=${rows}, cols=${cols}`, [bias, out], [true, false]);
    (f32 ? w.broadcastRowsF32 : w.broadcastRowsF64)(pBias, pOut, rows, cols);
    unstage(w, out, pOut);
  },

  sumRows(dZ, db, rows, accumulate) {
    const f32 = dtypeOf({ dZ, db });
    const cols = dim(db.length, 'cols');
    length(dZ, dim(rows, 'rows') * cols, 'dZ');
    const w = load();
    const [pdZ, pdb] = stage(w, `sumRows rows=${rows}, cols=${cols}`, [dZ, db], [true, accumulate]);
    (f32 ? w.sumRowsF32 : w.sumRowsF64)(pdZ, pdb, rows, cols, accumulate ? 1 : 0);
    unstage(w, db, pdb);
  },

  activationForward(act, Z, A) {
    const f32 = dtypeOf({ Z, A });
    const code = activationCode(act);
    length(A, Z.length, 'A');
    const w = load();
    const [pZ, pA] = stage(w, `activationForward n=${Z.length}`, [Z, A], [true, false]);
    (f32 ? w.activationForwardF32 : w.activationForwardF64)(code, pZ, pA, Z.length);
    unstage(w, A, pA);
  },

  activationBackward(act, Z, A, dA) {
    const f32 = dtypeOf({ Z, A, dA });
    const code = activationCode(act);
    length(A, Z.length, 'A');
    length(dA, Z.length, 'dA');
    const w = load();
    // kernels.h reads Z for ReLU and A for sigmoid and tanh (the interface says which): the other
    // one is given room but not copied.
    const relu = act === 'relu';
    const [pZ, pA, pdA] = stage(w, `activationBackward n=${Z.length}`, [Z, A, dA], [relu, !relu, true]);
    (f32 ? w.activationBackwardF32 : w.activationBackwardF64)(code, pZ, pA, pdA, Z.length);
    unstage(w, dA, pdA);
  },

  softmaxCrossEntropy(logits, y, probs, B, C) {
    const f32 = dtypeOf({ logits, probs });
    length(logits, dim(B, 'B') * dim(C, 'C'), 'logits');
    length(probs, B * C, 'probs');
    labels(y, B, C);
    const w = load();
    const [pLogits, pY, pProbs] = stage(w, `softmaxCrossEntropy B=${B}, C=${C}`, [logits, y, probs], [true, true, false]);
    const total = (f32 ? w.softmaxCrossEntropyF32 : w.softmaxCrossEntropyF64)(pLogits, pY, pProbs, B, C);
    unstage(w, probs, pProbs);
    return total;
  },

  softmaxCrossEntropyBackward(probs, y, dZ, B, C, reduction) {
    const f32 = dtypeOf({ probs, dZ });
    const code = reductionCode(reduction);
    length(probs, dim(B, 'B') * dim(C, 'C'), 'probs');
    length(dZ, B * C, 'dZ');
    labels(y, B, C);
    const w = load();
    const [pProbs, pY, pdZ] = stage(w, `softmaxCrossEntropyBackward B=${B}, C=${C}`, [probs, y, dZ], [true, true, false]);
    (f32 ? w.softmaxCrossEntropyBackwardF32 : w.softmaxCrossEntropyBackwardF64)(pProbs, pY, pdZ, B, C, code);
    unstage(w, dZ, pdZ);
  },

  allFinite(x) {
    const f32 = dtypeOf({ x });
    const w = load();
    const [p] = stage(w, `allFinite n=${x.length}`, [x], [true]);
    return (f32 ? w.allFiniteF32 : w.allFiniteF64)(p, x.length) !== 0;
  },
};
