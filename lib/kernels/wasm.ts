// The kernels a Layer runs on with backend 'wasm': the SIMD128 GEMM of native/wasm/gemm.h (the
// one the wasm stack executor calls), and the elementwise kernels of lib/kernels/ts.ts. As with
// 'native' (lib/kernels/index.ts), the Sequential's own wasm engine runs the whole stack in one call.
import { wasmGemm } from '../backends/wasm';
import * as v from '../validate';
import type { Kernels } from './kernels';
import { tsKernels } from './ts';

export const wasmKernels: Kernels = {
  ...tsKernels,
  name: 'wasm',
  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    // The module trusts its pointers: a wrong length would read past a tensor in linear memory.
    for (const [name, t, n] of [['A', A, M * K], ['B', B, K * N], ['C', C, M * N]] as const) {
      if (t.constructor !== C.constructor) v.fail(TypeError, `a ${C.constructor.name} (the dtype of C)`, name, t);
      if (t.length !== n || !(n > 0)) v.fail(RangeError, `${n} elements`, name, t);
    }
    wasmGemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },
};
