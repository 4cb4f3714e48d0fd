// Linear(in, out): Z = A·W + b with W [in,out] and b [out] — the layout of W1/W2 in the two-layer
// path (PyTorch's nn.Linear stores Wᵀ). Its backward is the one mlp.h does for each layer:
//   dW = Aᵀ·dZ [in,out],  db = Σ_b dZ [out],  dA = dZ·Wᵀ [B,in].
import { fillLinear, type Init, INITS } from '../params';
import { Rng } from '../rng';
import type { Dtype, FloatArray } from '../types';
import * as v from '../validate';
import type { Layer, LayerContext, LayerSpec } from './layer';

export interface LinearOptions<T extends FloatArray = FloatArray> {
  /** 'float64' (default) or 'float32'; taken from W when W is given. */
  dtype?: Dtype;
  /** How W and b are drawn when not given (default 'he', as initParams). */
  init?: Init;
  /** Seed of the draw (default 0). */
  seed?: number;
  /** Use these tensors (not copied) instead of drawing: W [in,out], b [out]. */
  W?: T;
  b?: T;
}

export class Linear<T extends FloatArray = FloatArray> implements Layer {
  readonly kind = 'linear' as const;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly params: Readonly<{ W: T; b: T }>;

  /**
   * @throws {TypeError|RangeError} sizes that are not positive integers, W/b of the wrong dtype or length
   */
  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions<T> = {}) {
    this.inFeatures = v.dim('inFeatures', inFeatures);
    this.outFeatures = v.dim('outFeatures', outFeatures);
    if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
    v.sizes({ B: 1, D: this.inFeatures, H: this.outFeatures, C: 1 });
    if (opts.W !== undefined || opts.b !== undefined) {
      const dtype = v.dtypeOf('W', opts.W);
      const W = v.floatArray('W', opts.W, dtype, this.inFeatures * this.outFeatures) as T;
      const b = v.floatArray('b', opts.b, dtype, this.outFeatures) as T;
      this.params = { W, b };
      return;
    }
    const dtype = v.oneOf('opts.dtype', opts.dtype, ['float64', 'float32'] as const, 'float64');
    const init = v.oneOf('opts.init', opts.init, INITS, 'he');
    const seed = opts.seed ?? 0;
    if (!Number.isInteger(seed)) v.fail(TypeError, 'an integer', 'opts.seed', seed);
    const F = dtype === 'float64' ? Float64Array : Float32Array;
    const W = new F(this.inFeatures * this.outFeatures) as T;
    const b = new F(this.outFeatures) as T;
    fillLinear(W, b, this.inFeatures, this.outFeatures, init, new Rng(seed));
    this.params = { W, b };
  }

  outputWidth(inputWidth: number): number {
    if (inputWidth !== this.inFeatures) {
      throw new RangeError(`Expected an input of ${this.inFeatures} features for ${this} but received ${inputWidth}`);
    }
    return this.outFeatures;
  }

  forward(input: FloatArray, ctx: LayerContext): FloatArray {
    const { W, b } = this.params;
    const k = ctx.kernels;
    ctx.input = input;
    // Bias rows first, then the GEMM adds into them (beta = 1), as mlp.h.
    k.broadcastRows(b, ctx.output, ctx.B);
    k.gemm(false, false, ctx.B, this.outFeatures, this.inFeatures, 1, input, W, 1, ctx.output);
    return ctx.output;
  }

  backward(dZ: FloatArray, ctx: LayerContext): FloatArray | null {
    const A = ctx.input;
    if (A === null) throw new Error(`${this}: backward before forward`);
    const k = ctx.kernels;
    const beta = ctx.accumulate ? 1 : 0;
    k.gemm(true, false, this.inFeatures, this.outFeatures, ctx.B, 1, A, dZ, beta, ctx.grads.W); // dW = Aᵀ·dZ
    k.sumRows(dZ, ctx.grads.b, ctx.B, ctx.accumulate); // db = Σ_b dZ
    if (ctx.gradInput === null) return null;
    // dA = dZ·Wᵀ
    k.gemm(false, true, ctx.B, this.inFeatures, this.outFeatures, 1, dZ, this.params.W, ctx.accumulateInput ? 1 : 0, ctx.gradInput);
    return ctx.gradInput;
  }

  spec(): LayerSpec {
    return { kind: 'linear', in: this.inFeatures, out: this.outFeatures };
  }

  toString(): string {
    return `Linear ${this.inFeatures}→${this.outFeatures}`;
  }
}
