// The OpenBLAS backend: a thin call into the core addon. Finiteness and labels are checked again
// in C++ while the data is hot, so nothing is scanned twice here.
import { coreBinding } from '../binding';
import { ACTIVATION_CODE, REDUCTION_CODE, type Backend, type ForwardJob, type StepJob } from './backend';

export const nativeBackend: Backend = {
  name: 'native',
  forwardBackward(j: StepJob): number {
    const { B, D, H, C } = j.dims;
    return coreBinding().forwardBackward(
      j.X, j.y, j.W1, j.b1, j.W2, j.b2, j.ws, j.dX, j.dW1, j.db1, j.dW2, j.db2,
      B, D, H, C, ACTIVATION_CODE[j.activation], REDUCTION_CODE[j.reduction], j.accumulate,
    );
  },
  forward(j: ForwardJob): void {
    const { B, D, H, C } = j.dims;
    coreBinding().forward(j.X, j.W1, j.b1, j.W2, j.b2, j.ws, B, D, H, C, ACTIVATION_CODE[j.activation]);
  },
};
