// Linear(in, out): Z = A·W + b with W [in,out] and b [out] — the layout of W1/W2 in the two-layer
// path (PyTorch's nn.Linear stores Wᵀ); the math is lib/engine/ts.ts's, as native/core/stack.h:
//   dW = Aᵀ·dZ [in,out],  db = Σ_b dZ [out],  dA = dZ·Wᵀ [B,in].
import { linearBackward, linearForward } from '../engine/ts';
import { drawLinear, drawOptions, type Init } from '../params';
import { Rng } from '../rng';
import type { Dtype, FloatArray } from '../types';
import * as v from '../validate';
import type { Layer, LayerContext, LayerSpec } from './layer';

export interface LinearOptions<T extends FloatArray = FloatArray> {
  /** 'float64' (default) or 'float32'; taken from W when W is given (another one is then an error). */
  dtype?: Dtype;
  /** How W and b are drawn when not given (default 'he', as initParams). */
  init?: Init;
  /** Seed of the draw (default 0). */
  seed?: number;
  /** Use these tensors (not copied) instead of drawing: W [in,out], b [out]. */
  W?: T; b?: T;
}

export class Linear<T extends FloatArray = FloatArray> implements Layer {
  readonly kind = 'linear' as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly params: Readonly<{ W: T; b: T }>;

  /** @throws {TypeError|RangeError} sizes that are not positive integers, W/b of the wrong dtype or length, a bad dtype, init or seed (checked with W given too) */
  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions<T> = {}) {
    this.inFeatures = v.dim('inFeatures', inFeatures);
    this.outFeatures = v.dim('outFeatures', outFeatures);
    const o = v.options('opts', opts, ['dtype', 'init', 'seed', 'W', 'b'] as const);
    v.sizes({ B: 1, D: this.inFeatures, H: this.outFeatures, C: 1 });
    // Checked whether or not W is given: an option is never accepted unread because of another.
    const { dtype: drawDtype, init, seed } = drawOptions(o);
    if (o.W !== undefined || o.b !== undefined) {
      const dtype = v.dtypeOf('W', o.W);
      if (o.dtype !== undefined && drawDtype !== dtype) v.fail(TypeError, `'${dtype}' (the dtype of the W given) or no dtype`, 'opts.dtype', drawDtype);
      const W = v.floatArray('W', o.W, dtype, this.inFeatures * this.outFeatures) as T;
      const b = v.floatArray('b', o.b, dtype, this.outFeatures) as T;
      this.params = { W, b };
      return;
    }
    this.params = drawLinear(this.inFeatures, this.outFeatures, drawDtype, init, new Rng(seed)) as { W: T; b: T };
  }

  outputWidth(inputWidth: number): number {
    if (inputWidth !== this.inFeatures) {
      throw new RangeError(`Expected an input of ${this.inFeatures} features for ${this} but received ${inputWidth}`);
    }
    return this.outFeatures;
  }

  forward(input: FloatArray, ctx: LayerContext): FloatArray {
    ctx.input = input;
    linearForward(ctx.kernels, ctx.B, this.inFeatures, this.outFeatures, input, this.params.W, this.params.b, ctx.output);
    return ctx.output;
  }

  backward(dZ: FloatArray, ctx: LayerContext): FloatArray | null {
    const A = ctx.input;
    if (A === null) throw new Error(`${this}: backward before forward`);
    linearBackward(
      ctx.kernels, ctx.B, this.inFeatures, this.outFeatures, A, this.params.W, dZ, ctx.grads.W, ctx.grads.b, ctx.accumulate, ctx.gradInput, ctx.accumulateInput,
    );
    return ctx.gradInput;
  }

  spec(): LayerSpec {
    return { kind: 'linear', in: this.inFeatures, out: this.outFeatures };
  }

  toString(): string {
    return `Linear ${this.inFeatures}→${this.outFeatures}`;
  }
}
