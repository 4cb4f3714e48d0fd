// A Sequential on the LibTorch reference: the whole stack as one autograd graph in the torch addon
// (native/torch/sequential.cc), with the same tensors, names and layout as the hand-derived path.
import { torchBinding } from '../backends/torch';
import { REDUCTION_CODE } from '../backends/backend';
import type { FloatArray, Reduction } from '../types';
import type { LayerKind } from './layer';

const KIND_CODE: Record<LayerKind, number> = { linear: 0, relu: 1, sigmoid: 2, tanh: 3 };

interface Stack {
  readonly layers: readonly { readonly kind: LayerKind; spec(): { kind: string; in?: number; out?: number } }[];
  readonly params: Readonly<Record<string, FloatArray>>;
}

type Described = { kinds: Int32Array; sizes: Int32Array; params: FloatArray[] };
// A Sequential's layers and tensors never change after construction: describe each one once.
const described = new WeakMap<Stack, Described>();

/** kinds (one code per layer), sizes ([in, out] per Linear) and params [W1, b1, W2, b2, …]. */
function describeStack(s: Stack): Described {
  let d = described.get(s);
  if (!d) {
    d = describe(s);
    described.set(s, d);
  }
  return d;
}

function describe(s: Stack): Described {
  const kinds = Int32Array.from(s.layers, (l) => KIND_CODE[l.kind]);
  const sizes: number[] = [];
  const params: FloatArray[] = [];
  let k = 0;
  for (const l of s.layers) {
    if (l.kind !== 'linear') continue;
    const spec = l.spec();
    sizes.push(spec.in!, spec.out!);
    k++;
    params.push(s.params[`W${k}`], s.params[`b${k}`]);
  }
  return { kinds, sizes: Int32Array.from(sizes), params };
}

/** Loss by autograd; gradients written into grads (dW1, db1, …, dX when present). */
export function torchSequentialForwardBackward(
  s: Stack, X: FloatArray, y: Int32Array, B: number, grads: Record<string, FloatArray>, reduction: Reduction, accumulate: boolean,
): number {
  const { kinds, sizes, params } = describeStack(s);
  const g = params.map((_, i) => grads[`d${i % 2 === 0 ? 'W' : 'b'}${(i >> 1) + 1}`]);
  return torchBinding().sequentialForwardBackward(X, y, B, kinds, sizes, params, g, grads.dX ?? null, REDUCTION_CODE[reduction], accumulate);
}

/** Logits [B,C] into `logits`, without a graph. */
export function torchSequentialForward(s: Stack, X: FloatArray, B: number, logits: FloatArray): void {
  const { kinds, sizes, params } = describeStack(s);
  torchBinding().sequentialForward(X, B, kinds, sizes, params, logits);
}
