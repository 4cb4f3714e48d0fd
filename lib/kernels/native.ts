// The kernels a Layer runs on with backend 'native': OpenBLAS's GEMM through the core addon (the
// same hg::gemm the stack executor calls), and the elementwise kernels of lib/kernels/ts.ts, which
// are the loops of native/core/kernels.h. The Sequential itself never calls these: its native
// engine runs the whole stack in C++ (lib/engine/native.ts); they serve a Layer used on its own.
import { coreBinding } from '../binding';
import type { Kernels } from './kernels';
import { tsKernels } from './ts';

export const nativeKernels: Kernels = {
  ...tsKernels,
  name: 'native',
  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    coreBinding().gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },
};
