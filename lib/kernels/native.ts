// The native kernels: thin calls into the core addon, which runs the very functions of
// native/core/{blas,kernels}.h that its fused step runs (and checks every length again).
import { coreBinding } from '../binding';
import { ACTIVATION_CODE, type Kernels, REDUCTION_CODE } from './kernels';

export const nativeKernels: Kernels = {
  name: 'native',
  gemm(transA, transB, M, N, K, alpha, A, B, beta, C) {
    coreBinding().gemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  },
  broadcastRows(bias, out, rows) {
    coreBinding().broadcastRows(bias, out, rows, bias.length);
  },
  sumRows(dZ, db, rows, accumulate) {
    coreBinding().sumRows(dZ, db, rows, db.length, accumulate);
  },
  activationForward(act, Z, A) {
    coreBinding().activationForward(ACTIVATION_CODE[act], Z, A);
  },
  activationBackward(act, Z, A, dA) {
    coreBinding().activationBackward(ACTIVATION_CODE[act], Z, A, dA);
  },
  softmaxCrossEntropy(logits, y, probs, B, C) {
    return coreBinding().softmaxCrossEntropy(logits, y, probs, B, C);
  },
  softmaxCrossEntropyBackward(probs, y, dZ, B, C, reduction) {
    coreBinding().softmaxCrossEntropyBackward(probs, y, dZ, B, C, REDUCTION_CODE[reduction]);
  },
  allFinite(x) {
    return coreBinding().allFinite(x);
  },
};
