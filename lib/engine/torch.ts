// The LibTorch reference as an engine: the whole stack is one autograd graph in the torch addon
// (native/torch/sequential.cc), built from the same description and tensors as the hand-derived
// engines. Each batch size gets a workspace laid out by the addon as the core lays out its own
// (sequentialLayout is native/core/stack.h's stackLayout), where a step leaves every layer's output
// and softmax(logits); a failure comes back as the core's do, NaN (or false) and [stage, layer].
import { torchBinding } from '../backends/torch';
import type { FloatArray } from '../types';
import { type Engine, LAYER_CODE, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepFailure } from './engine';
import { STAGES } from './native';
import { MAX_BATCH_SIZES } from './ts';

interface Batch {
  ws: FloatArray;
  outputs: FloatArray[];
  probs: FloatArray;
  logits: FloatArray;
}

function prepare(net: StackDescription): PreparedNet {
  const b = torchBinding(); // ERR_TORCH_UNAVAILABLE here, before any work
  const { kinds, widths, params } = net;
  const sizes = Int32Array.from(Array.from(kinds).flatMap((k, i) => (k === LAYER_CODE.linear ? [widths[i], widths[i + 1]] : [])));
  const F = net.dtype === 'float64' ? Float64Array : Float32Array;
  const L = kinds.length;
  const byB = new Map<number, Batch>();
  const batch = (X: FloatArray, B: number): Batch => {
    let w = byB.get(B);
    if (w) return w;
    const at = b.sequentialLayout(X, B, kinds, sizes);
    const ws = new F(at[L + 1]);
    const outputs = Array.from(kinds, (_, i) => ws.subarray(at[i], at[i] + B * widths[i + 1]));
    w = { ws, outputs, logits: outputs[L - 1], probs: ws.subarray(at[L], at[L] + B * widths[L]) };
    if (byB.size >= MAX_BATCH_SIZES) byB.clear();
    byB.set(B, w);
    return w;
  };
  const failure = (): { failure: StepFailure } => {
    const [stage, layer] = b.sequentialStatus();
    return { failure: { stage: STAGES[stage] ?? 'grads', layer } };
  };
  return {
    forwardBackward({ X, y, B, grads, dX, reduction, accumulate }) {
      const w = batch(X, B);
      const loss = b.sequentialForwardBackward(X, y, B, kinds, sizes, params, grads, dX, REDUCTION_CODE[reduction], accumulate, w.ws);
      return loss === loss ? { loss, logits: w.logits } : failure(); // NaN: a failure
    },
    forward(X, B) {
      const w = batch(X, B);
      return b.sequentialForward(X, B, kinds, sizes, params, w.logits) ? { logits: w.logits } : failure();
    },
    tensors(B) {
      const w = byB.get(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

export const torchEngine: Engine = { name: 'torch', prepare };
