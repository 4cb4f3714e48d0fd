// The kernels of a backend by name, for a Layer used on its own (a Sequential's engine runs the whole
// stack itself). 'native' is the TS kernels, which are the loops of native/core/kernels.h, with
// OpenBLAS's GEMM through the core addon (the hg::gemm the stack executor calls); 'wasm' likewise
// with the module's GEMM (lib/kernels/wasm.ts). 'torch' has none: LibTorch is the reference.
import { coreBinding } from '../binding';
import type { Kernels } from './kernels';
import { tsKernels } from './ts';
import { wasmKernels } from './wasm';

export type { Kernels } from './kernels';

const nativeKernels: Kernels = {
  ...tsKernels,
  name: 'native',
  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    coreBinding().gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },
};

const byName = { native: nativeKernels, ts: tsKernels, wasm: wasmKernels } as const;

export function getKernels(name: 'native' | 'ts' | 'wasm'): Kernels {
  return byName[name];
}
