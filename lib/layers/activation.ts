// ReLU, Sigmoid, Tanh: A = act(Z) elementwise; backward dZ = dA ⊙ act'(Z). ReLU's derivative needs
// the pre-activation Z (1 where Z > 0, strictly, as PyTorch); sigmoid's and tanh's are taken from
// the output A (σ' = A(1 − A), tanh' = 1 − A²), as PyTorch's own backward does, so roundings match.
import type { Activation, FloatArray } from '../types';
import type { Layer, LayerContext, LayerSpec } from './layer';

abstract class ActivationLayer implements Layer {
  abstract readonly kind: Activation;
  readonly params = {};
  readonly inFeatures = null;

  outputWidth(inputWidth: number): number {
    return inputWidth;
  }

  forward(Z: FloatArray, ctx: LayerContext): FloatArray {
    ctx.input = Z;
    ctx.kernels.activationForward(this.kind, Z, ctx.output);
    return ctx.output;
  }

  backward(dA: FloatArray, ctx: LayerContext): FloatArray | null {
    const Z = ctx.input;
    if (Z === null) throw new Error(`${this}: backward before forward`);
    if (ctx.gradInput === null) return null;
    // The kernel works in place; a copy keeps the caller's dA as it was.
    const into = ctx.accumulateInput ? ctx.scratch! : ctx.gradInput;
    into.set(dA);
    ctx.kernels.activationBackward(this.kind, Z, ctx.output, into);
    if (ctx.accumulateInput) for (let i = 0; i < into.length; i++) ctx.gradInput[i] += into[i];
    return ctx.gradInput;
  }

  spec(): LayerSpec {
    return { kind: this.kind };
  }

  toString(): string {
    return NAMES[this.kind];
  }
}

const NAMES: Record<Activation, string> = { relu: 'ReLU', sigmoid: 'Sigmoid', tanh: 'Tanh' };

export class ReLU extends ActivationLayer {
  readonly kind = 'relu' as const;
}

export class Sigmoid extends ActivationLayer {
  readonly kind = 'sigmoid' as const;
}

export class Tanh extends ActivationLayer {
  readonly kind = 'tanh' as const;
}
