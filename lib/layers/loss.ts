// SoftmaxCrossEntropy on raw logits, as F.cross_entropy: loss = reduce_b (log Σ_c e^{z_bc} − z_{b,y_b}),
// computed by log-sum-exp (never log of a probability). Backward: dZ = (softmax(Z) − onehot(y))·s,
// s = 1/B for 'mean', 1 for 'sum'.
import { reduceLoss } from '../engine/ts';
import type { Kernels } from '../kernels/kernels';
import type { FloatArray, Reduction } from '../types';
import * as v from '../validate';

export interface SoftmaxCrossEntropyOptions {
  /** 'mean' (default, as F.cross_entropy) or 'sum'. */
  reduction?: Reduction;
}

/** Per-batch buffers of the loss: softmax(logits) is kept for backward. */
export interface LossContext<T extends FloatArray = FloatArray> {
  readonly B: number; readonly C: number; kernels: Kernels; y: Int32Array | null;
  readonly probs: T; // [B,C]
  readonly dLogits: T; // [B,C]
}

export class SoftmaxCrossEntropy {
  readonly reduction: Reduction;

  /** @throws {TypeError|RangeError} an unknown reduction */
  constructor(opts: SoftmaxCrossEntropyOptions = {}) {
    const o = v.options('opts', opts, ['reduction'] as const, v.NOT_YET_SUPPORTED);
    this.reduction = v.oneOf('opts.reduction', o.reduction, v.REDUCTIONS, 'mean');
  }

  /** The loss in the logits' dtype (a float32 net reports a float32 loss, as PyTorch). */
  forward(logits: FloatArray, y: Int32Array, ctx: LossContext, reduction: Reduction = this.reduction): number {
    ctx.y = y;
    return reduceLoss(ctx.kernels.softmaxCrossEntropy(logits, y, ctx.probs, ctx.B, ctx.C), ctx.B, reduction, logits instanceof Float32Array);
  }

  /** ∂loss/∂logits into ctx.dLogits. */
  backward(ctx: LossContext, reduction: Reduction = this.reduction): FloatArray {
    if (ctx.y === null) throw new Error('SoftmaxCrossEntropy: backward before forward');
    ctx.kernels.softmaxCrossEntropyBackward(ctx.probs, ctx.y, ctx.dLogits, ctx.B, ctx.C, reduction);
    return ctx.dLogits;
  }

  toString(): string {
    return `SoftmaxCrossEntropy(${this.reduction})`;
  }
}
