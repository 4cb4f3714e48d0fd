// The kernels of a backend by name. 'torch' has none: LibTorch is the reference, and the layer
// stack runs on it as one autograd graph (lib/layers/torch.ts).
import type { Kernels } from './kernels';
import { nativeKernels } from './native';
import { tsKernels } from './ts';
import { wasmKernels } from './wasm';

export type { Kernels } from './kernels';

const byName = { native: nativeKernels, ts: tsKernels, wasm: wasmKernels } as const;

export function getKernels(name: 'native' | 'ts' | 'wasm'): Kernels {
  return byName[name];
}
