// The native engine: the core addon's stack executor (native/core/stack.h), one Node-API call per
// step. A net is prepared once (stackPrepare checks and keeps its description); each batch size
// gets one workspace, laid out by the addon (stackLayout). A step whose gradient buffers come
// again (a training loop's, a caller's `out`) runs on a bound step (stackBind: workspace, params,
// grads and dX checked and pinned once), so each call passes X, y and four scalars (stackRun);
// other calls pass everything (stackForwardBackward). The torch engine runs on the same frame
// (preparedStack).
import { type BoundStep, coreBinding } from '../binding';
import { HandgradError } from '../errors';
import type { FloatArray } from '../types';
import { type Engine, failureOf, perBatch, type PreparedNet, REDUCTION_CODE } from './engine';
import type { StackDescription, StepArgs } from './engine';

/** A workspace for B rows at stackLayout's offsets `at` ([each layer's output …, probs, length, losses]), with its views. */
export function workspace(net: StackDescription, at: Float64Array, B: number) {
  const { kinds, widths } = net;
  const L = kinds.length;
  const ws = new (net.dtype === 'float64' ? Float64Array : Float32Array)(at[L + 1]);
  const outputs: FloatArray[] = Array.from(kinds, (_, i) => ws.subarray(at[i], at[i] + B * widths[i + 1]));
  return { ws, outputs, logits: outputs[L - 1], probs: ws.subarray(at[L], at[L] + B * widths[L]), losses: ws.subarray(at[L + 2], at[L + 2] + B) };
}

/** A batch size's workspace with its two calls: step returns the loss or NaN, forward true or false. */
export interface Batch extends ReturnType<typeof workspace> {
  step(a: StepArgs): number;
  forward(X: FloatArray, exact: boolean): boolean;
}

/**
 * The addon's refusal of the exact mode (an Error with code ERR_EXACT_UNAVAILABLE: this CPU or
 * OpenBLAS's thread count, native/core/exact.h) as the HandgradError of that code; anything else as it came.
 */
function exactRefusal(e: unknown): unknown {
  if (e instanceof Error && !(e instanceof HandgradError) && (e as { code?: unknown }).code === 'ERR_EXACT_UNAVAILABLE') {
    return new HandgradError('ERR_EXACT_UNAVAILABLE', e.message);
  }
  return e;
}

/** A PreparedNet over an addon's stack calls (make: one Batch per batch size); NaN or false is status() as a StepFailure. */
export function preparedStack(make: (B: number) => Batch, status: () => [number, number]): PreparedNet {
  const batch = perBatch(make);
  return {
    forwardBackward(a) {
      const w = batch.get(a.B);
      let loss: number;
      try {
        loss = w.step(a);
      } catch (e) {
        throw exactRefusal(e);
      }
      if (loss !== loss) return failureOf(status()); // NaN: a failure
      return a.loss?.reduction === 'none' ? { loss, logits: w.logits, losses: w.losses } : { loss, logits: w.logits };
    },
    forward(X, B, exact = false) {
      const w = batch.get(B);
      let ok: boolean;
      try {
        ok = w.forward(X, exact);
      } catch (e) {
        throw exactRefusal(e);
      }
      return ok ? { logits: w.logits } : failureOf(status());
    },
    tensors(B) {
      const w = batch.peek(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

// The intrinsic getters, captured once: a view's own `byteLength` property could be redefined to
// hide a detached buffer, and reading through the getter is also the fastest way in V8 (~3 ns).
const typedArrayProto = Object.getPrototypeOf(Int8Array.prototype) as object;
const byteLengthOf = Object.getOwnPropertyDescriptor(typedArrayProto, 'byteLength')!.get as (this: ArrayBufferView) => number;
const bufferOf = Object.getOwnPropertyDescriptor(typedArrayProto, 'buffer')!.get as (this: ArrayBufferView) => ArrayBufferLike;
const sharedByteLength = Object.getOwnPropertyDescriptor(SharedArrayBuffer.prototype, 'byteLength')!.get as (this: ArrayBufferLike) => number;

/** Whether a view's buffer is a SharedArrayBuffer (never detached, never shrunk), by the brand check of its own getter. */
function onShared(v: ArrayBufferView): boolean {
  try {
    sharedByteLength.call(bufferOf.call(v));
    return true;
  } catch {
    return false;
  }
}

/** Bound steps kept per batch size, the last used first: one more set of gradient buffers drops the oldest. */
export const MAX_BINDINGS = 4;

/** A caller's gradient buffers, as a step receives them. */
interface Buffers { grads: readonly FloatArray[]; dX: FloatArray | null }

/** A bound step (stackBind), the buffers it was bound for, and every view it pins with its byteLength then. */
interface Binding extends Buffers {
  bound: BoundStep;
  /** The bound params, grads and dX that a transfer or a resize could take away (not on a SharedArrayBuffer). */
  pinned: { view: FloatArray; bytes: number; name: string }[];
}

function sameBuffers(k: Buffers, grads: readonly FloatArray[], dX: FloatArray | null): boolean {
  if (k.dX !== dX || k.grads.length !== grads.length) return false;
  for (let j = 0; j < grads.length; j++) if (k.grads[j] !== grads[j]) return false;
  return true;
}

function prepare(net: StackDescription): PreparedNet {
  const b = coreBinding(); // ERR_NATIVE_UNAVAILABLE here, before any work
  const handle = b.stackPrepare(net.kinds, net.widths, net.dtype === 'float32');
  const { params } = net;
  const paramNames = params.map((_, j) => `${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1}`);
  const viewNames = [...paramNames, ...paramNames.map((n) => `d${n}`), 'dX'];
  const { stackBind, stackRun } = b;
  // The exact mode (native/core/exact.h) is a switch on the handle, flipped only when a step asks
  // for the other mode; stackExact throws when this machine's LibTorch runs kernels it does not reproduce.
  let exact = false;
  const mode = (want: boolean) => {
    if (want === exact) return;
    b.stackExact(handle, want);
    exact = want;
  };
  const make = (B: number): Batch => {
    const at = b.stackLayout(handle, B);
    let wsBytes = 0;
    let bindings: Binding[] = [];
    // The buffers of the last few calls that ran unbound: bound when they come again, so that a
    // caller allocating fresh gradients on every call (forwardBackward without `out`) binds nothing.
    let seen: Buffers[] = [];
    // A new workspace when the caller transferred the old one's buffer (through a logits view).
    const current = (): FloatArray => {
      if (byteLengthOf.call(w.ws) !== wsBytes) {
        Object.assign(w, workspace(net, at, B));
        wsBytes = byteLengthOf.call(w.ws);
        bindings = [];
        seen = [];
      }
      return w.ws;
    };
    const binding = (grads: readonly FloatArray[], dX: FloatArray | null): Binding | undefined => {
      for (let i = 0; i < bindings.length; i++) {
        const k = bindings[i];
        if (!sameBuffers(k, grads, dX)) continue;
        if (i > 0) bindings.unshift(...bindings.splice(i, 1));
        return k;
      }
      const again = seen.findIndex((u) => sameBuffers(u, grads, dX));
      if (again < 0) {
        if (seen.unshift({ grads: grads.slice(), dX }) > MAX_BINDINGS) seen.pop();
        return undefined;
      }
      seen.splice(again, 1);
      const bound = stackBind(handle, w.ws, dX, ...params, ...grads); // checks them all, or throws
      const pinned = [...params, ...grads, dX].flatMap((view, i) =>
        view === null || onShared(view) ? [] : [{ view, bytes: byteLengthOf.call(view), name: viewNames[i] }]);
      const k: Binding = { bound, grads: grads.slice(), dX, pinned };
      if (bindings.unshift(k) > MAX_BINDINGS) bindings.pop();
      return k;
    };
    const w: Batch = {
      ...workspace(net, at, B),
      step(a) {
        const ws = current();
        mode(a.exact === true);
        const R = REDUCTION_CODE[a.reduction];
        const o = a.loss;
        if (o != null) {
          return b.stackForwardBackwardLoss(handle, ws, a.X, o.targets ? null : a.y, B, a.dX, a.accumulate, REDUCTION_CODE[o.reduction],
            o.weight, o.ignoreIndex, o.labelSmoothing, o.targets, o.gradOutput, ...params, ...a.grads);
        }
        const k = binding(a.grads, a.dX);
        if (k === undefined) return b.stackForwardBackward(handle, ws, a.X, a.y, B, a.dX, R, a.accumulate, ...params, ...a.grads);
        // The bound pointers hold while every view keeps its bytes; no JS runs between this check
        // and the native call, so nothing can detach or shrink a buffer in between.
        const { pinned } = k;
        for (let i = 0; i < pinned.length; i++) { // an indexed loop: an iterator here costs ~0.2 µs a step
          const { view, bytes, name } = pinned[i];
          if (byteLengthOf.call(view) !== bytes) {
            throw new TypeError(
              `Expected ${name} to keep its ${bytes} bytes but it has ${byteLengthOf.call(view)}: its ArrayBuffer was detached ` +
                '(transferred, e.g. by postMessage or structuredClone) or resized since it was last used',
            );
          }
        }
        return stackRun(k.bound, a.X, a.y, B, R, a.accumulate);
      },
      forward: (X, wantExact) => {
        mode(wantExact);
        return b.stackForward(handle, current(), X, B, ...params);
      },
    };
    wsBytes = byteLengthOf.call(w.ws);
    return w;
  };
  return preparedStack(make, () => b.stackStatus(handle));
}

export const nativeEngine: Engine = { name: 'native', prepare };
