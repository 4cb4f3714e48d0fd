// The LibTorch reference as an engine: the whole stack is one autograd graph in the torch addon
// (native/torch/sequential.cc), built from the same description and tensors as the hand-derived
// engines. Each batch size gets a workspace laid out by the addon as the core lays out its own
// (sequentialLayout is native/core/stack.h's stackLayout), where a step leaves every layer's output
// and softmax(logits); a failure comes back as the core's do, NaN (or false) and [stage, layer].
import { torchBinding } from '../backends/torch';
import type { FloatArray } from '../types';
import { type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription } from './engine';
import { failureOf, workspace } from './native';
import { MAX_BATCH_SIZES } from './ts';

function prepare(net: StackDescription): PreparedNet {
  const b = torchBinding(); // ERR_TORCH_UNAVAILABLE here, before any work
  const { kinds, widths, params } = net;
  const byB = new Map<number, ReturnType<typeof workspace>>();
  const batch = (X: FloatArray, B: number) => {
    let w = byB.get(B);
    if (w) return w;
    if (byB.size >= MAX_BATCH_SIZES) byB.clear();
    byB.set(B, (w = workspace(net, b.sequentialLayout(X, B, kinds, widths), B)));
    return w;
  };
  return {
    forwardBackward({ X, y, B, grads, dX, reduction, accumulate }) {
      const w = batch(X, B);
      const loss = b.sequentialForwardBackward(X, y, B, kinds, widths, params, grads, dX, REDUCTION_CODE[reduction], accumulate, w.ws);
      return loss === loss ? { loss, logits: w.logits } : failureOf(b.sequentialStatus()); // NaN: a failure
    },
    forward(X, B) {
      const w = batch(X, B);
      return b.sequentialForward(X, B, kinds, widths, params, w.logits) ? { logits: w.logits } : failureOf(b.sequentialStatus());
    },
    tensors(B) {
      const w = byB.get(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

export const torchEngine: Engine = { name: 'torch', prepare };
