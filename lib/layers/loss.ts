// SoftmaxCrossEntropy on raw logits, as F.cross_entropy: loss = reduce_b (log Σ_c e^{z_bc} − z_{b,y_b}),
// computed by log-sum-exp (never log of a probability). Backward: dZ = (softmax(Z) − onehot(y))·s,
// s = 1/B for 'mean', 1 for 'sum'. With F.cross_entropy's other options (weight, ignoreIndex,
// labelSmoothing, 'none', probability targets) every row's loss is Σ_c t_bc·(lse_b − z_bc) and
// dZ_b = g_b·(p_b·S_b − t_b): the derivation is next to native/core/kernels.h crossEntropyGeneral,
// which lib/kernels/ts.ts mirrors loop for loop.
import { reduceLoss } from '../engine/ts';
import type { Kernels } from '../kernels/kernels';
import type { FloatArray, LossReduction, Reduction } from '../types';
import * as v from '../validate';

export interface SoftmaxCrossEntropyOptions {
  /** 'mean' (default, as F.cross_entropy), 'sum', or 'none' (the loss of each row, a typed array [B]). */
  reduction?: LossReduction;
  /** F.cross_entropy's weight: a rescaling of each class, a typed array [C] of the net's dtype. */
  weight?: FloatArray;
  /** F.cross_entropy's ignore_index (default −100): rows with this label contribute nothing, nor count in the mean. */
  ignoreIndex?: number;
  /** F.cross_entropy's label_smoothing in [0, 1] (default 0). */
  labelSmoothing?: number;
}

/** The loss's options as plain data (Sequential.spec()): weight as numbers (a float32 value is exact in a double). */
export interface LossSpec { reduction: LossReduction; weight?: number[]; ignoreIndex?: number; labelSmoothing?: number }

/** Per-batch buffers of the loss: softmax(logits) is kept for backward. */
export interface LossContext<T extends FloatArray = FloatArray> {
  readonly B: number; readonly C: number; kernels: Kernels; y: Int32Array | null;
  readonly probs: T; // [B,C]
  readonly dLogits: T; // [B,C]
}

export class SoftmaxCrossEntropy {
  readonly reduction: LossReduction;
  /** The per-class weight as given (one in a SharedArrayBuffer copied), or null. */
  readonly weight: FloatArray | null;
  readonly ignoreIndex: number;
  readonly labelSmoothing: number;

  /** @throws {TypeError|RangeError} an unknown option or reduction, a weight that is not a finite float array, a labelSmoothing outside [0, 1] */
  constructor(opts: SoftmaxCrossEntropyOptions = {}) {
    const o = v.options('opts', opts, ['reduction', 'weight', 'ignoreIndex', 'labelSmoothing'] as const, v.NOT_YET_SUPPORTED);
    this.reduction = v.oneOf('opts.reduction', o.reduction, v.LOSS_REDUCTIONS, 'mean');
    this.weight = v.lossWeight('opts.weight', o.weight, null, null);
    this.ignoreIndex = v.ignoreIndex('opts.ignoreIndex', o.ignoreIndex);
    this.labelSmoothing = v.labelSmoothing('opts.labelSmoothing', o.labelSmoothing);
  }

  /** Whether this is F.cross_entropy's default: no weight, no smoothing, ignore_index −100, a scalar reduction. */
  get isDefault(): boolean {
    return this.weight === null && this.labelSmoothing === 0 && this.ignoreIndex === -100 && this.reduction !== 'none';
  }

  /** The options as plain data, for a spec or a checkpoint (only those not at PyTorch's default). */
  spec(): LossSpec {
    const s: LossSpec = { reduction: this.reduction };
    if (this.weight !== null) s.weight = Array.from(this.weight);
    if (this.ignoreIndex !== -100) s.ignoreIndex = this.ignoreIndex;
    if (this.labelSmoothing !== 0) s.labelSmoothing = this.labelSmoothing;
    return s;
  }

  /** The loss in the logits' dtype (a float32 net reports a float32 loss, as PyTorch). Layer-level use: the default options only. */
  forward(logits: FloatArray, y: Int32Array, ctx: LossContext, reduction: Reduction = this.reduction as Reduction): number {
    this.defaultOnly(reduction);
    ctx.y = y;
    return reduceLoss(ctx.kernels.softmaxCrossEntropy(logits, y, ctx.probs, ctx.B, ctx.C), ctx.B, reduction, logits instanceof Float32Array);
  }

  /** ∂loss/∂logits into ctx.dLogits. */
  backward(ctx: LossContext, reduction: Reduction = this.reduction as Reduction): FloatArray {
    this.defaultOnly(reduction);
    if (ctx.y === null) throw new Error('SoftmaxCrossEntropy: backward before forward');
    ctx.kernels.softmaxCrossEntropyBackward(ctx.probs, ctx.y, ctx.dLogits, ctx.B, ctx.C, reduction);
    return ctx.dLogits;
  }

  /** The layer-level forward/backward run the default loss; the options run through Sequential.forwardBackward. */
  private defaultOnly(reduction: LossReduction): void {
    if (reduction === 'none' || this.weight !== null || this.labelSmoothing !== 0 || this.ignoreIndex !== -100) {
      throw new TypeError("Expected the default options (no weight, ignoreIndex or labelSmoothing, reduction 'mean' or 'sum') for SoftmaxCrossEntropy.forward/backward on their own but received others: run them through Sequential.forwardBackward");
    }
  }

  toString(): string {
    const extra = [
      this.weight !== null ? `weight[${this.weight.length}]` : '',
      this.ignoreIndex !== -100 ? `ignoreIndex=${this.ignoreIndex}` : '',
      this.labelSmoothing !== 0 ? `labelSmoothing=${this.labelSmoothing}` : '',
    ].filter((s) => s !== '');
    return `SoftmaxCrossEntropy(${[this.reduction, ...extra].join(', ')})`;
  }
}
