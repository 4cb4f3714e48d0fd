// The LibTorch reference as an engine: the whole stack is one autograd graph in the torch addon
// (native/torch/sequential.cc), built from the same description and tensors as the hand-derived
// engines. The addon checks X and the parameters for NaN/±Infinity and every gradient before it
// writes the first, and throws its own RangeError: it is the reference, not a hand-derived path.
import { torchBinding } from '../backends/torch';
import type { Engine, PreparedNet, StackDescription } from './engine';
import { REDUCTION_CODE } from './engine';

function prepare(net: StackDescription): PreparedNet {
  const binding = torchBinding(); // ERR_TORCH_UNAVAILABLE here, before any work
  const { kinds, widths, params } = net;
  const sizes: number[] = [];
  kinds.forEach((kind, i) => {
    if (kind === 0) sizes.push(widths[i], widths[i + 1]);
  });
  const sizesArray = Int32Array.from(sizes);
  const F = net.dtype === 'float64' ? Float64Array : Float32Array;
  const C = widths[kinds.length];
  return {
    forwardBackward(a) {
      const loss = binding.sequentialForwardBackward(a.X, a.y, a.B, kinds, sizesArray, params, a.grads, a.dX, REDUCTION_CODE[a.reduction], a.accumulate);
      return { loss, logits: null };
    },
    forward(X, B) {
      const logits = new F(B * C);
      binding.sequentialForward(X, B, kinds, sizesArray, params, logits);
      return { logits };
    },
    tensors: () => null,
  };
}

export const torchEngine: Engine = { name: 'torch', prepare };
