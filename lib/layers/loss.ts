// SoftmaxCrossEntropy on raw logits, as F.cross_entropy: loss = reduce_b (log Σ_c e^{z_bc} − z_{b,y_b}),
// computed by log-sum-exp (never log of a probability). Backward: dZ = (softmax(Z) − onehot(y))·s,
// s = 1/B for 'mean', 1 for 'sum'. With F.cross_entropy's other options (weight, ignoreIndex,
// labelSmoothing, 'none', probability targets) every row's loss is Σ_c t_bc·(lse_b − z_bc) and
// dZ_b = g_b·(p_b·S_b − t_b): the derivation is next to native/core/kernels.h crossEntropyGeneral,
// which lib/kernels/ts.ts mirrors loop for loop.
import { reduceLoss } from '../engine/ts';
import type { Kernels } from '../kernels/kernels';
import type { Dtype, FloatArray, LossReduction, Reduction } from '../types';
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

/**
 * A LossSpec's weight (plain numbers) in the net's dtype, as a spec or a params record holds it:
 * an array of numbers, or undefined (no weight). Its length and finiteness are the loss's checks.
 * @throws {TypeError} anything but an array of numbers, naming it
 */
export function specWeight(name: string, w: unknown, dtype: Dtype): FloatArray | undefined {
  if (w === undefined) return undefined;
  if (!(Array.isArray(w) && w.every((x) => typeof x === 'number'))) v.fail(TypeError, 'an array of numbers', name, w);
  return (dtype === 'float64' ? Float64Array : Float32Array).from(w as number[]);
}

/**
 * The loss a LossSpec describes (plain data: loadParams' `loss`, a two-layer params record's, a
 * Trainer's live params'), checked as strictly as the loss's options and a Sequential's spec are,
 * naming each key under `name` (params.loss.weight, …): a plain object of reduction, weight,
 * ignoreIndex and labelSmoothing only (reduction by default 'mean', as in a spec), weight an array
 * of C finite numbers taken in the net's dtype.
 * @throws {TypeError|RangeError} a non-object, an unknown key, an unknown reduction, a weight of other length than C or not finite, …
 */
export function lossOfSpec(name: string, spec: unknown, dtype: Dtype, C: number): SoftmaxCrossEntropy {
  v.plainObject(name, spec, 'an object { reduction, weight?, ignoreIndex?, labelSmoothing? }');
  const o = v.options(name, spec, ['reduction', 'weight', 'ignoreIndex', 'labelSmoothing'] as const);
  const reduction = v.oneOf(`${name}.reduction`, o.reduction, v.LOSS_REDUCTIONS, 'mean');
  const w = specWeight(`${name}.weight`, o.weight, dtype);
  // The length in the spec's own terms (numbers, one per class), before it is a typed array.
  if (w !== undefined && w.length !== C) v.fail(RangeError, `${C} numbers (one weight per class)`, `${name}.weight`, o.weight);
  const weight = v.lossWeight(`${name}.weight`, w, dtype, C) ?? undefined;
  const ignoreIndex = v.ignoreIndex(`${name}.ignoreIndex`, o.ignoreIndex);
  const labelSmoothing = v.labelSmoothing(`${name}.labelSmoothing`, o.labelSmoothing);
  return new SoftmaxCrossEntropy({ reduction, weight, ignoreIndex, labelSmoothing });
}

/** Whether two losses are the same objective: reduction, options and every class weight. */
export function sameLoss(a: SoftmaxCrossEntropy, b: SoftmaxCrossEntropy): boolean {
  if (a.reduction !== b.reduction || a.ignoreIndex !== b.ignoreIndex || a.labelSmoothing !== b.labelSmoothing) return false;
  if (a.weight === null || b.weight === null) return a.weight === b.weight;
  return a.weight.length === b.weight.length && a.weight.every((x, i) => x === b.weight![i]);
}

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

const LOSS_DEFAULTS = new SoftmaxCrossEntropy();
const SPEC_KEYS: readonly string[] = ['reduction', 'weight', 'ignoreIndex', 'labelSmoothing'];

/**
 * Whether `spec` (a params record's loss) reads as `loss` exactly, as lossOfSpec would read it in
 * `dtype`: a plain object of the four keys at most, each value `loss`'s own (bit for bit; a weight
 * rounded to the dtype), a missing one the default. Lets a call on the same record reuse the loss it
 * checked before instead of building and checking it again (2.5 µs of a 3 µs toy step with a
 * weight). Anything else is false, and lossOfSpec then checks it.
 */
export function specIs(loss: SoftmaxCrossEntropy, spec: unknown, dtype: Dtype): boolean {
  if (spec === null || typeof spec !== 'object' || Object.getPrototypeOf(spec) !== Object.prototype) return false;
  if (Object.getOwnPropertyNames(spec).some((k) => !SPEC_KEYS.includes(k))) return false;
  const { reduction, weight, ignoreIndex, labelSmoothing } = spec as Record<string, unknown>;
  const or = (x: unknown, d: unknown) => (x === undefined ? d : x);
  if (or(reduction, LOSS_DEFAULTS.reduction) !== loss.reduction) return false;
  if (!Object.is(or(ignoreIndex, LOSS_DEFAULTS.ignoreIndex), loss.ignoreIndex) || !Object.is(or(labelSmoothing, LOSS_DEFAULTS.labelSmoothing), loss.labelSmoothing)) return false;
  const w = loss.weight;
  if (weight === undefined || w === null) return weight === undefined && w === null;
  if (!Array.isArray(weight) || weight.length !== w.length) return false;
  const f32 = dtype === 'float32';
  for (let i = 0; i < w.length; i++) {
    const x = weight[i];
    if (typeof x !== 'number' || !Object.is(f32 ? Math.fround(x) : x, w[i])) return false;
  }
  return true;
}

