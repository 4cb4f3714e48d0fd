// The native engine: the core addon's stack executor (native/core/stack.h), one Node-API call per
// step. A net is prepared once (stackPrepare checks and keeps its description); each batch size
// gets one workspace, laid out by the addon (stackLayout), and a call with the net's handle,
// workspace and parameters bound, so a step passes only what changes.
import { coreBinding, type CoreBinding, type StackHandle } from '../binding';
import type { FloatArray } from '../types';
import { type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepFailure } from './engine';
import { MAX_BATCH_SIZES } from './ts';

/** Stage codes of native/core/stack.h, by code (0 is ok). */
export const STAGES = [undefined, 'input', 'forward', 'loss', 'grads'] as const;

type Step = (X: FloatArray, y: Int32Array, B: number, dX: FloatArray | null, reduction: number, accumulate: boolean, grads: readonly FloatArray[]) => number;

/**
 * stackForwardBackward with handle, ws and the P params bound, called with its arguments written
 * out: at the toy size apply() or a spread costs 0.1 µs more per step (a tenth of the step).
 */
function boundStep(P: number): (fb: CoreBinding['stackForwardBackward'], h: StackHandle, ws: FloatArray, p: readonly FloatArray[]) => Step {
  const list = (a: string) => Array.from({ length: P }, (_, j) => `${a}[${j}]`).join(', ');
  return new Function('fb', 'h', 'ws', 'p', `return (X, y, B, dX, r, acc, g) => fb(h, ws, X, y, B, dX, r, acc, ${list('p')}, ${list('g')});`) as never;
}

interface Batch {
  B: number;
  step: Step;
  outputs: FloatArray[];
  probs: FloatArray;
  logits: FloatArray;
  /** stackForward's arguments: handle, ws, X, B, ...params. */
  fwd: unknown[];
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

function prepare(net: StackDescription): PreparedNet {
  const b = coreBinding(); // ERR_NATIVE_UNAVAILABLE here, before any work
  const handle = b.stackPrepare(net.kinds, net.widths, net.dtype === 'float32');
  const { params } = net;
  const bind = boundStep(params.length);
  const byB = new Map<number, Batch>();
  let last: Batch | undefined;
  const batch = (B: number): Batch => {
    if (last?.B === B) return last;
    last = byB.get(B);
    if (last) return last;
    const { ws, outputs, logits, probs } = workspace(net, b.stackLayout(handle, B), B);
    last = { B, step: bind(b.stackForwardBackward, handle, ws, params), outputs, logits, probs, fwd: [handle, ws, null, B, ...params] };
    if (byB.size >= MAX_BATCH_SIZES) byB.clear();
    byB.set(B, last);
    return last;
  };
  const forward = b.stackForward as (...args: unknown[]) => boolean;
  return {
    forwardBackward(a) {
      const w = batch(a.B);
      const loss = w.step(a.X, a.y, a.B, a.dX, REDUCTION_CODE[a.reduction], a.accumulate, a.grads);
      return loss === loss ? { loss, logits: w.logits } : failureOf(b.stackStatus(handle)); // NaN: a failure
    },
    forward(X, B) {
      const w = batch(B);
      w.fwd[2] = X;
      return forward.apply(undefined, w.fwd) ? { logits: w.logits } : failureOf(b.stackStatus(handle));
    },
    tensors(B) {
      const w = byB.get(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

export const nativeEngine: Engine = { name: 'native', prepare };
