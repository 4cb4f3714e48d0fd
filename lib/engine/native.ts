// The native engine: the core addon's stack executor (native/core/stack.h), one Node-API call per
// step. A net is prepared once (stackPrepare checks and keeps its description); each batch size
// gets one workspace, laid out by the addon (stackLayout), and a call with the net's handle,
// workspace and parameters bound, so a step passes only what changes. The torch engine runs on
// the same frame (preparedStack).
import { coreBinding, type CoreBinding, type StackHandle } from '../binding';
import type { FloatArray } from '../types';
import { type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepArgs, type StepFailure } from './engine';
import { MAX_BATCH_SIZES } from './engine';

/** Stage codes of native/core/stack.h, by code (0 is ok). */
export const STAGES = [undefined, 'input', 'forward', 'loss', 'grads'] as const;

/**
 * stackForwardBackward with handle, ws and the P params bound, called with its arguments written
 * out: at the toy size apply() or a spread costs 0.1 µs more per step (a tenth of the step).
 */
function boundStep(P: number): (fb: CoreBinding['stackForwardBackward'], h: StackHandle, ws: FloatArray, p: readonly FloatArray[]) => Batch['step'] {
  const list = (a: string) => Array.from({ length: P }, (_, j) => `${a}[${j}]`).join(', ');
  const args = `h, ws, a.X, a.y, a.B, a.dX, R[a.reduction], a.accumulate, ${list('p')}, ${list('a.grads')}`;
  return new Function('R', `return (fb, h, ws, p) => (a) => fb(${args});`)(REDUCTION_CODE);
}

/** A [stage, layer] status (stackStatus; the torch addon's sequentialStatus) as a StepFailure. */
export function failureOf([stage, layer]: [number, number]): { failure: StepFailure } {
  return { failure: { stage: STAGES[stage] ?? 'grads', layer } };
}

/** A workspace for B rows at stackLayout's offsets `at` ([each layer's output …, probs, length]), with its views. */
export function workspace(net: StackDescription, at: Float64Array, B: number) {
  const { kinds, widths } = net;
  const L = kinds.length;
  const ws = new (net.dtype === 'float64' ? Float64Array : Float32Array)(at[L + 1]);
  const outputs: FloatArray[] = Array.from(kinds, (_, i) => ws.subarray(at[i], at[i] + B * widths[i + 1]));
  return { ws, outputs, logits: outputs[L - 1], probs: ws.subarray(at[L], at[L] + B * widths[L]) };
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

/** A batch size's workspace with its two calls: step returns the loss or NaN, forward true or false. */
export interface Batch extends ReturnType<typeof workspace> {
  step(a: StepArgs): number;
  forward(X: FloatArray): boolean;
}

/** A PreparedNet over an addon's stack calls (make: one Batch per batch size); NaN or false is status() as a StepFailure. */
export function preparedStack(make: (B: number) => Batch, status: () => [number, number]): PreparedNet {
  const batch = perBatch(make);
  return {
    forwardBackward(a) {
      const w = batch.get(a.B);
      const loss = w.step(a);
      return loss === loss ? { loss, logits: w.logits } : failureOf(status()); // NaN: a failure
    },
    forward(X, B) {
      const w = batch.get(B);
      return w.forward(X) ? { logits: w.logits } : failureOf(status());
    },
    tensors(B) {
      const w = batch.peek(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

function prepare(net: StackDescription): PreparedNet {
  const b = coreBinding(); // ERR_NATIVE_UNAVAILABLE here, before any work
  const handle = b.stackPrepare(net.kinds, net.widths, net.dtype === 'float32');
  const { params } = net;
  const bind = boundStep(params.length);
  const forward = b.stackForward as (...args: unknown[]) => boolean;
  const make = (B: number): Batch => {
    const w = workspace(net, b.stackLayout(handle, B), B);
    const args: unknown[] = [handle, w.ws, null, B, ...params]; // stackForward's, X at 2
    const fwd = (X: FloatArray) => {
      args[2] = X;
      return forward.apply(undefined, args);
    };
    return { ...w, step: bind(b.stackForwardBackward, handle, w.ws, params), forward: fwd };
  };
  return preparedStack(make, () => b.stackStatus(handle));
}

export const nativeEngine: Engine = { name: 'native', prepare };
