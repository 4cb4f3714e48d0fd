// The native engine: the core addon's stack executor (native/core/stack.h), one Node-API call per
// step. A net is prepared once (stackPrepare checks and keeps its description); each batch size
// gets one workspace, laid out by the addon (stackLayout), and an argument list built once, so a
// step sets the few arguments that change and makes the call.
import { coreBinding, type CoreBinding, type StackHandle } from '../binding';
import type { FloatArray } from '../types';
import { type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepFailure } from './engine';
import { MAX_BATCH_SIZES } from './ts';

/** Stage codes of native/core/stack.h, by code (0 is ok). */
export const STAGES = [undefined, 'input', 'forward', 'loss', 'grads'] as const;

interface Batch {
  ws: FloatArray;
  outputs: FloatArray[];
  probs: FloatArray;
  logits: FloatArray;
  /** stackForwardBackward's arguments: handle, ws, X, y, B, dX, reduction, accumulate, ...params, ...grads. */
  step: unknown[];
  /** stackForward's arguments: handle, ws, X, B, ...params. */
  fwd: unknown[];
}

function failure(b: CoreBinding, handle: StackHandle): { failure: StepFailure } {
  const [stage, layer] = b.stackStatus(handle);
  return { failure: { stage: STAGES[stage] ?? 'grads', layer } };
}

function prepare(net: StackDescription): PreparedNet {
  const b = coreBinding(); // ERR_NATIVE_UNAVAILABLE here, before any work
  const handle = b.stackPrepare(net.kinds, net.widths, net.dtype === 'float32');
  const F = net.dtype === 'float64' ? Float64Array : Float32Array;
  const { kinds, widths, params } = net;
  const L = kinds.length;
  const P = params.length;
  const byB = new Map<number, Batch>();
  const batch = (B: number): Batch => {
    let w = byB.get(B);
    if (w) return w;
    const at = b.stackLayout(handle, B);
    const ws = new F(at[L + 1]);
    const outputs = Array.from(kinds, (_, i) => ws.subarray(at[i], at[i] + B * widths[i + 1]));
    w = {
      ws, outputs, logits: outputs[L - 1], probs: ws.subarray(at[L], at[L] + B * widths[L]),
      step: [handle, ws, null, null, B, null, 0, false, ...params, ...params],
      fwd: [handle, ws, null, B, ...params],
    };
    if (byB.size >= MAX_BATCH_SIZES) byB.clear();
    byB.set(B, w);
    return w;
  };
  const step = b.stackForwardBackward as (...args: unknown[]) => number;
  const forward = b.stackForward as (...args: unknown[]) => boolean;
  return {
    forwardBackward({ X, y, B, grads, dX, reduction, accumulate }) {
      const w = batch(B);
      const a = w.step;
      a[2] = X;
      a[3] = y;
      a[5] = dX;
      a[6] = REDUCTION_CODE[reduction];
      a[7] = accumulate;
      for (let j = 0; j < P; j++) a[8 + P + j] = grads[j];
      const loss = step.apply(undefined, a);
      return loss === loss ? { loss, logits: w.logits } : failure(b, handle); // NaN: a failure
    },
    forward(X, B) {
      const w = batch(B);
      w.fwd[2] = X;
      return forward.apply(undefined, w.fwd) ? { logits: w.logits } : failure(b, handle);
    },
    tensors(B) {
      const w = byB.get(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

export const nativeEngine: Engine = { name: 'native', prepare };
