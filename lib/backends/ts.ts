// The pure-TypeScript backend: the same math as native/core/mlp.h, step for step, on the TS
// kernels (lib/kernels/ts.ts) that the layer stack uses too. No native code needed.
import {
  activationBackward, activationForward, broadcastRows, gemm, softmaxCrossEntropy, softmaxCrossEntropyBackward, sumRows,
} from '../kernels/ts';
import type { Dims, FloatArray } from '../types';
import { allFinite, explainNonFinite } from '../validate';
import { carveWorkspace } from '../workspace';
import type { Backend, ForwardJob, StepJob } from './backend';

// Finiteness is checked on Z1 (before the activation) and the logits, as in native/core/mlp.h.
function forwardInto(j: ForwardJob, Z1: FloatArray, A1: FloatArray, logits: FloatArray): void {
  const { B, D, H, C } = j.dims;
  broadcastRows(j.b1, Z1, B);
  gemm(false, false, B, H, D, 1, j.X, j.W1, 1, Z1);
  if (!allFinite(Z1)) explainNonFinite('Z1', j);
  activationForward(j.activation, Z1, A1);
  broadcastRows(j.b2, logits, B);
  gemm(false, false, B, C, H, 1, A1, j.W2, 1, logits);
  if (!allFinite(logits)) explainNonFinite('logits', j);
}

export const tsBackend: Backend = {
  name: 'ts',
  forward(j: ForwardJob): void {
    const w = carveWorkspace(j.ws, j.dims);
    forwardInto(j, w.Z1, w.A1, w.logits);
  },
  forwardBackward(j: StepJob): number {
    const d: Dims = j.dims;
    const { B, D, H, C } = d;
    const w = carveWorkspace(j.ws, d);
    forwardInto(j, w.Z1, w.A1, w.logits);
    const total = softmaxCrossEntropy(w.logits, j.y, w.probs, B, C);
    const f32 = j.X instanceof Float32Array;
    const reduced = j.reduction === 'mean' ? total / B : total;
    const loss = f32 ? Math.fround(reduced) : reduced;
    if (!Number.isFinite(loss)) explainNonFinite('loss', j); // before any gradient is written
    softmaxCrossEntropyBackward(w.probs, j.y, w.dZ2, B, C, j.reduction); // dZ2 = (softmax(Z2) − onehot(y)) · scale
    const beta = j.accumulate ? 1 : 0;
    gemm(true, false, H, C, B, 1, w.A1, w.dZ2, beta, j.dW2); // dW2 = A1ᵀ·dZ2
    sumRows(w.dZ2, j.db2, B, j.accumulate); // db2 = Σ_b dZ2
    gemm(false, true, B, H, C, 1, w.dZ2, j.W2, 0, w.dZ1); // dA1 = dZ2·W2ᵀ
    activationBackward(j.activation, w.Z1, w.A1, w.dZ1); // dZ1 = dA1 ⊙ act'(Z1)
    gemm(true, false, D, H, B, 1, j.X, w.dZ1, beta, j.dW1); // dW1 = Xᵀ·dZ1
    sumRows(w.dZ1, j.db1, B, j.accumulate); // db1 = Σ_b dZ1
    if (j.dX) gemm(false, true, B, D, H, 1, w.dZ1, j.W1, beta, j.dX); // dX = dZ1·W1ᵀ
    for (const g of [j.dX, j.dW1, j.db1, j.dW2, j.db2]) if (g && !allFinite(g)) explainNonFinite('grads', j);
    return loss;
  },
};
