// One engine per backend runs a whole layer stack's forward and backward in one call. The
// Sequential (lib/layers/sequential.ts) checks every argument first, once; an engine then trusts
// shapes and dtypes, and reports a NaN/±Infinity as a StepFailure for the Sequential to put into
// words (one wording, Sequential's explain), never as its own message.
//
//   native → the core addon's stack executor (native/core/stack.h), one Node-API call per step
//   wasm   → the same C++ compiled to wasm32, one module call per step
//   ts     → the layers' own forward/backward on the TypeScript kernels (lib/kernels/ts.ts)
//   torch  → one LibTorch autograd graph (native/torch/sequential.cc): the reference
import type { BackendName, Dtype, FloatArray, LossReduction } from '../types';
import { fail, lengthOf, Received } from '../validate';

/** Layer codes shared with native/core/stack.h (LayerKind) and native/torch/sequential.cc. */
export const LAYER_CODE = { linear: 0, relu: 1, sigmoid: 2, tanh: 3 } as const;
/** Reduction codes shared with native/core/kernels.h (Reduction). */
export const REDUCTION_CODE: Record<LossReduction, number> = { mean: 0, sum: 1, none: 2 };
/** F.cross_entropy's ignore_index default. */
export const IGNORE_INDEX = -100;
/** Batch sizes whose buffers a net keeps (a training run uses its batch size and a last partial one). */
export const MAX_BATCH_SIZES = 4;

/** A stack as plain data, described once per Sequential. */
export interface StackDescription {
  readonly dtype: Dtype;
  /** LAYER_CODE of each layer, input to logits. */
  readonly kinds: Int32Array;
  /** widths[i] is the input width of layer i; widths[L] = C. */
  readonly widths: Int32Array;
  /** The live tensors W1, b1, W2, b2, … (not copies): an engine reads them on every call. */
  readonly params: readonly FloatArray[];
}

/**
 * Where a step stopped on a NaN or ±Infinity (nothing is reported as a message here):
 * - 'input': X holds one (checked when an activation comes before the first Linear);
 * - 'forward': the output of layers[layer] (a Linear) is not finite;
 * - 'loss': the loss overflowed; nothing was written to the gradients;
 * - 'grads': a gradient overflowed (the Sequential scans them to name it).
 */
export interface StepFailure { stage: 'input' | 'forward' | 'loss' | 'grads'; layer: number }

/**
 * F.cross_entropy's options beyond the default (native/core/kernels.h LossSpec), checked by the
 * caller: weight [C], targets [B,C] (probability targets; y then holds B zeros, unused), gradOutput
 * [B] (∂L/∂loss for reduction 'none', required there and only there).
 */
export interface LossArgs {
  reduction: LossReduction; weight: FloatArray | null; ignoreIndex: number; labelSmoothing: number;
  targets: FloatArray | null; gradOutput: FloatArray | null;
}

/** One forward+backward, every tensor checked by the caller. */
export interface StepArgs {
  X: FloatArray; y: Int32Array; B: number; reduction: LossReduction;
  /** null or absent: the default loss (reduction mean or sum, ignore_index −100, nothing else): today's kernels. */
  loss?: LossArgs | null;
  /** dW1, db1, dW2, … in the order of StackDescription.params. */
  grads: readonly FloatArray[];
  /** [B, D], or null when the input gradient is not wanted. */
  dX: FloatArray | null;
  /** Add into grads and dX (PyTorch's .grad semantics) instead of overwriting them. */
  accumulate: boolean;
  /** LibTorch's bits (native/core/exact.h); only the native engine is asked (the Sequential refuses it elsewhere; torch is LibTorch). */
  exact?: boolean;
}

/** The loss and the logits [B,C] as a view into the net's buffers; or where it failed. */
export type StepOutcome = { loss: number; logits: FloatArray; losses?: FloatArray; failure?: undefined } | { failure: StepFailure };
/** The logits [B,C] (a view into the net's buffers); or where it failed. */
export type ForwardOutcome = { logits: FloatArray; failure?: undefined } | { failure: StepFailure };

/** A net prepared for one engine (per thread): its description and its per-batch-size buffers. */
export interface PreparedNet {
  forwardBackward(a: StepArgs): StepOutcome;
  /** The logits of X [B, D] (with exact: LibTorch's bits, native only); a failure is 'input' or 'forward' only. */
  forward(X: FloatArray, B: number, exact?: boolean): ForwardOutcome;
  /**
   * The last call's tensors for batch size B, as views into this net's buffers (overwritten by
   * the next call with that B): every layer's output (outputs[L-1] = logits) and, after a
   * forwardBackward, softmax(logits). null before the first call with B.
   */
  tensors(B: number): { outputs: FloatArray[]; probs: FloatArray } | null;
  /**
   * Whether `view` shares memory with the buffers a call with B rows writes besides the caller's
   * outputs (the engine's own: the logits view it returned, its per-layer buffers, …), which the
   * Sequential then refuses. Asked of the engines that run in JS (wasm, ts); the addons (native,
   * torch) refuse such a view themselves, in C++, and leave this out.
   */
  sharesWorkspace?(B: number, view: ArrayBufferView): boolean;
}

export interface Engine {
  readonly name: BackendName;
  /** @throws {HandgradError} the backend is not available (ERR_NATIVE_UNAVAILABLE, ERR_WASM_UNAVAILABLE, ERR_TORCH_UNAVAILABLE) */
  prepare(net: StackDescription): PreparedNet;
}

/** Stage codes of native/core/stack.h, by code (0 is ok). */
export const STAGES = [undefined, 'input', 'forward', 'loss', 'grads'] as const;

/** A [stage, layer] status (stackStatus; the torch addon's sequentialStatus) as a StepFailure. */
export function failureOf([stage, layer]: [number, number]): { failure: StepFailure } {
  return { failure: { stage: STAGES[stage] ?? 'grads', layer } };
}

/** What make(B) built for each batch size, the last one first; at most MAX_BATCH_SIZES kept. */
export function perBatch<W>(make: (B: number) => W) {
  const byB = new Map<number, W>();
  let last: { B: number; w: W } | undefined;
  return {
    get(B: number): W {
      if (last?.B === B) return last.w;
      let w = byB.get(B);
      if (w === undefined) {
        if (byB.size >= MAX_BATCH_SIZES) byB.clear();
        byB.set(B, (w = make(B)));
      }
      last = { B, w };
      return w;
    },
    /** The batch of size B if made (and still kept), else undefined. */
    peek: (B: number): W | undefined => byB.get(B),
  };
}

/** Each parameter's element count, from the widths (never from a tensor's own, overridable, length): W [in·out], b [out] per Linear. */
export function paramCounts({ kinds, widths }: Pick<StackDescription, 'kinds' | 'widths'>): number[] {
  return Array.from(kinds).flatMap((k, i) => (k === LAYER_CODE.linear ? [widths[i] * widths[i + 1], widths[i + 1]] : []));
}

/** The name of StackDescription.params[j]: W1, b1, W2, b2, … (Linear layers numbered from 1). */
export const paramName = (j: number): string => `${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1}`;

/** A RangeError unless t holds n elements as the array itself counts them (lengthOf). */
function sameLength(t: FloatArray | Int32Array, n: number, name: string): void {
  if (lengthOf(t) !== n) fail(RangeError, `${n} elements (as when it was checked: its buffer was resized or transferred since)`, name, new Received(`${lengthOf(t)}`));
}

/**
 * The engines that copy or read tensors in JS (wasm, ts) check, on every call, each tensor's length
 * as the array holds it (lengthOf) against the count it was checked with: a buffer resized or
 * transferred since — by another call, or by a getter during this one — is a RangeError, never a
 * computation on stale or missing memory. (The native addon checks the same in C++.) `a` is a
 * step's arguments, or null for a forward pass (X and the parameters only).
 */
export function checkLengths(X: FloatArray, B: number, D: number, params: readonly FloatArray[], counts: readonly number[], a: StepArgs | null): void {
  sameLength(X, B * D, 'X');
  if (a?.dX) sameLength(a.dX, B * D, 'dX');
  if (a) sameLength(a.y, B, 'y');
  for (let j = 0; j < params.length; j++) {
    sameLength(params[j], counts[j], paramName(j));
    if (a) sameLength(a.grads[j], counts[j], `d${paramName(j)}`);
  }
}

/**
 * The labels copied into `into` (an engine's own buffer) and range-checked there: another thread
 * writing a SharedArrayBuffer y can no longer change what is checked and then used. A label equal
 * to ignoreIndex is allowed (its row is ignored); returns how many are.
 */
export function copyLabels(y: Int32Array, into: Int32Array, C: number, ignoreIndex = IGNORE_INDEX): number {
  into.set(y);
  let ignored = 0;
  for (let i = 0; i < into.length; i++) {
    const v = into[i];
    if (v === ignoreIndex) ignored++;
    else if (v < 0 || v >= C) fail(RangeError, `labels in [0, ${C})`, 'y', new Received(`${v} at index ${i}`));
  }
  return ignored;
}

/**
 * Reduction 'mean' over class labels with nothing to divide by: PyTorch's NaN (0/0) as a RangeError,
 * in the words of native/common/checks.h throwEmptyMean (every engine says the same).
 */
export function emptyMeanError(validRows: number, ignoreIndex: number): RangeError {
  return new RangeError(validRows === 0
    ? `Expected at least one row whose label is not ignoreIndex (${ignoreIndex}) for reduction 'mean' but every row is ignored (PyTorch returns NaN, 0/0)`
    : "Expected a nonzero total weight Σ weight[y] over the non-ignored rows for reduction 'mean' but it is 0 (PyTorch returns NaN, 0/0)");
}
