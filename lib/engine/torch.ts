// The LibTorch reference as an engine: the whole stack is one autograd graph in the torch addon
// (native/torch/sequential.cc), built from the same description and tensors as the hand-derived
// engines. Each batch size gets a workspace laid out by the addon as the core lays out its own
// (sequentialLayout is native/core/stack.h's stackLayout), where a step leaves every layer's output
// and softmax(logits); a failure comes back as the core's do, NaN (or false) and [stage, layer].
import { torchBinding } from '../backends/torch';
import type { FloatArray } from '../types';
import { type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription, type StepArgs } from './engine';
import { preparedStack, workspace } from './native';

function prepare(net: StackDescription): PreparedNet {
  const b = torchBinding(); // ERR_TORCH_UNAVAILABLE here, before any work
  const { kinds, widths, params } = net;
  const dtype = new (net.dtype === 'float64' ? Float64Array : Float32Array)(0); // sequentialLayout reads only its dtype
  const make = (B: number) => {
    const w = workspace(net, b.sequentialLayout(dtype, B, kinds, widths), B);
    return {
      ...w,
      step: ({ X, y, grads, dX, reduction, accumulate, loss: o }: StepArgs) =>
        o == null
          ? b.sequentialForwardBackward(X, y, B, kinds, widths, params, grads, dX, REDUCTION_CODE[reduction], accumulate, w.ws)
          : b.sequentialForwardBackward(X, o.targets ? null : y, B, kinds, widths, params, grads, dX, REDUCTION_CODE[o.reduction], accumulate, w.ws,
            o.weight, o.ignoreIndex, o.labelSmoothing, o.targets, o.gradOutput),
      forward: (X: FloatArray) => b.sequentialForward(X, B, kinds, widths, params, w.logits),
    };
  };
  return preparedStack(make, () => b.sequentialStatus());
}

export const torchEngine: Engine = { name: 'torch', prepare };
