import type { CoreBinding } from '../binding';
import type { Activation, Dims, FloatArray, Reduction } from '../types';

/** One forward+backward, every buffer allocated and checked by the caller (lib/model.ts). */
export interface StepJob<T extends FloatArray = FloatArray> {
  dims: Dims;
  X: T;
  y: Int32Array;
  W1: T;
  b1: T;
  W2: T;
  b2: T;
  /** [Z1 | A1 | dZ1 | logits | probs | dZ2], see lib/workspace.ts. */
  ws: T;
  dX: T | null;
  dW1: T;
  db1: T;
  dW2: T;
  db2: T;
  activation: Activation;
  reduction: Reduction;
  accumulate: boolean;
}

export type ForwardJob<T extends FloatArray = FloatArray> = Pick<
  StepJob<T>,
  'dims' | 'X' | 'W1' | 'b1' | 'W2' | 'b2' | 'ws' | 'activation'
>;

/**
 * What every backend implements: the same math, the same buffers, the same results. Shapes and
 * dtypes are checked before these are called; each backend checks finiteness where it reads data.
 */
export interface Backend {
  readonly name: string;
  /** Writes gradients and the workspace; returns the loss (in the dtype's precision). */
  forwardBackward(job: StepJob): number;
  /** Writes Z1, A1 and logits into job.ws. */
  forward(job: ForwardJob): void;
}

export const ACTIVATION_CODE: Record<Activation, number> = { relu: 0, sigmoid: 1, tanh: 2 };
export const REDUCTION_CODE: Record<Reduction, number> = { mean: 0, sum: 1 };

/**
 * A backend over an addon that exports forwardBackward/forward with the core addon's positional
 * signature (the OpenBLAS core and the LibTorch reference both do). `binding` is called per use so
 * an addon can load lazily.
 */
export function addonBackend(name: string, binding: () => Pick<CoreBinding, 'forwardBackward' | 'forward'>): Backend {
  return {
    name,
    forwardBackward(j: StepJob): number {
      const { B, D, H, C } = j.dims;
      return binding().forwardBackward(
        j.X, j.y, j.W1, j.b1, j.W2, j.b2, j.ws, j.dX, j.dW1, j.db1, j.dW2, j.db2,
        B, D, H, C, ACTIVATION_CODE[j.activation], REDUCTION_CODE[j.reduction], j.accumulate,
      );
    },
    forward(j: ForwardJob): void {
      const { B, D, H, C } = j.dims;
      binding().forward(j.X, j.W1, j.b1, j.W2, j.b2, j.ws, B, D, H, C, ACTIVATION_CODE[j.activation]);
    },
  };
}
