// ReLU, Sigmoid, Tanh: A = act(Z) elementwise; backward dZ = dA ⊙ act'(Z). ReLU's derivative needs
// the pre-activation Z (1 where Z > 0, strictly, as PyTorch); sigmoid's and tanh's are taken from
// the output A (σ' = A(1 − A), tanh' = 1 − A²), as PyTorch's own backward does, so roundings match.
import { activationBackward } from '../engine/ts';
import type { Activation, FloatArray } from '../types';
import * as v from '../validate';
import type { Layer, LayerContext, LayerSpec } from './layer';

abstract class ActivationLayer implements Layer {
  abstract readonly kind: Activation;
  readonly params = {};
  readonly inFeatures = null;

  /** @throws {TypeError} any option (PyTorch's inplace included: the output is always its own buffer) */
  constructor(opts: Record<string, never> = {}) {
    v.options('opts', opts, []);
  }

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
    activationBackward(ctx.kernels, this.kind, Z, ctx.output, dA, ctx.gradInput, ctx.accumulateInput, ctx.scratch);
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
