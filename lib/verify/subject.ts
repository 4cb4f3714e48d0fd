// What verify and gradcheck check: one network, in either form the caller gives it. The two-layer
// params { W1, b1, W2, b2 } are the Sequential [Linear(D,H), act, Linear(H,C)] over those very
// arrays, validated as their forwardBackward validates them; from there on everything is one path.
// Only a gradient function (handed the network in the form given) and the report's description
// of the network see which form it was.
import { emptyMeanError } from '../engine/engine';
import { SoftmaxCrossEntropy } from '../layers/loss';
import { Sequential, sequentialCopy } from '../layers/sequential';
import { activationOf, ownerOf, twoLayerNet } from '../model';
import type { Activation, BackendName, Dims, FloatArray, Params, Reduction } from '../types';
import { allFinite } from '../kernels/ts';
import * as v from '../validate';
import { coerceTensor, splitResult, type Coerced, type GradsLike } from './coerce';
import { outputNames, stackForward64, stackLayersOf, type Stack64 } from './stack64';

/** What verify and gradcheck take: the two-layer params (initParams' result, or any { W1, b1, W2, b2 }) or a Sequential. */
export type Network = Params | Sequential;

/** `S` for a Sequential, `P` for the two-layer params (and for an N that is never). */
type ByForm<N, S, P> = [N] extends [never] ? P : N extends Sequential ? S : P;

/** The options of verify and gradcheck that say what the network is. */
export interface NetworkOptions<N extends Network = Params> {
  /** The two-layer params' activation (default: the params' own `activation`, else 'relu'); a Sequential's layers hold theirs. */
  activation?: N extends Sequential ? never : Activation;
  /** 'mean' or 'sum'; the default is the loss's: a Sequential's, the params' own `loss` (loadParams', a Trainer's), else 'mean'. */
  reduction?: Reduction;
  /** F.cross_entropy's weight [C] (in the network's dtype; the default is the loss's, as for reduction). */
  weight?: FloatArray;
  /** F.cross_entropy's ignore_index (the loss's, as for reduction; else −100). */
  ignoreIndex?: number;
  /** F.cross_entropy's label_smoothing in [0, 1] (the loss's, as for reduction; else 0). */
  labelSmoothing?: number;
}

/** The loss options a gradient function is handed, when not PyTorch's defaults. */
export interface LossGradOptions { weight?: FloatArray; ignoreIndex?: number; labelSmoothing?: number }

/** What a gradient function is handed as its options (a Sequential's layers hold their activations). */
export type GradOptions<N extends Network = Params> = ByForm<N, { reduction: Reduction; inputGrad: true } & LossGradOptions, { activation: Activation; reduction: Reduction; inputGrad: true } & LossGradOptions>;

/**
 * A user's gradient function: handed a copy of the network in the form the caller gave it (the
 * two-layer params object with every field it had, D, H, C included; or a Sequential) and of the
 * batch; returns dX?, dW1, db1, dW2, db2, … (one pair per Linear layer, numbered from 1, as plain,
 * nested or typed arrays), optionally with the loss.
 */
export type GradFunction<N extends Network = Params> = (net: N, X: FloatArray, y: Int32Array, opts: GradOptions<N>) => GradsLike | { loss?: number; grads: GradsLike };

/** How a report describes the Sequential it checked. */
export interface SequentialDescription {
  /** 'Sequential(Linear 5→7, ReLU, Linear 7→4; SoftmaxCrossEntropy(mean))'. */
  network: string;
  /** B, the input width D and the classes C. */
  dims: { B: number; D: number; C: number };
  /** seq.widths: the input width of each layer, then C. */
  widths: number[];
}

/** How a report describes the network it checked, in the form it was given. */
export type NetworkInfo<N extends Network = Params> = ByForm<N, SequentialDescription, { dims: Dims; activation: Activation }>;

/** A candidate's loss and gradients, read (coerce.ts); `error` when a function threw (`thrown`) or returned no object of gradients. */
export interface CandidateGrads { name: string; loss?: Coerced; grads: Record<string, Coerced>; error?: string; thrown?: unknown }

/** An option that is a finite number ≥ 0 (> 0 when `positive`), or its default. */
export function num(name: string, x: unknown, fallback: number, positive: boolean): number {
  if (x === undefined) return fallback;
  if (typeof x !== 'number') v.fail(TypeError, 'a number', name, x);
  if (!Number.isFinite(x) || x < 0 || (positive && x === 0)) v.fail(RangeError, positive ? 'a positive finite number' : 'a non-negative finite number', name, x);
  return x;
}

/**
 * The subject of a verify or gradcheck call, validated as forwardBackward validates (X in the
 * network's dtype, labels in [0, C), every input finite; opts.activation for the params only, a
 * Sequential's layers hold theirs; opts.reduction and the loss options, by default the loss's: a
 * Sequential's, or the params' own `loss`, checked as forwardBackward checks it), with its
 * float64 copy and that copy's forward pass, which must stay finite.
 * @throws {TypeError|RangeError}
 */
export function subjectOf(
  source: unknown, X: unknown, y: unknown, opts: { activation?: unknown; reduction?: unknown; weight?: unknown; ignoreIndex?: unknown; labelSmoothing?: unknown },
) {
  // A Sequential's own params record (seq.params) is that Sequential, as for forward and
  // forwardBackward: a copy of it would be read as a two-layer ReLU net, another network.
  source = ownerOf(source) ?? source;
  const given = source instanceof Sequential;
  // The params' fields read once, here: a getter cannot answer one thing to the check and another to the use.
  const target = given || source === null || typeof source !== 'object' ? source : { ...source };
  if (given && opts.activation !== undefined) v.fail(TypeError, 'no opts.activation with a Sequential (its layers hold the activations)', 'opts.activation', opts.activation);
  // As forwardBackward: the option, else the params' own activation (a Trainer's, loadParams'), else ReLU.
  const activation = given ? 'relu' : activationOf(target, opts.activation);
  // The loss whose options the call's override: the Sequential's, or (as forwardBackward) the
  // params' own `loss` (a Trainer's, loadParams'), else F.cross_entropy's defaults.
  // twoLayerNet checks the params (and their loss) here, before the call's loss options use it.
  const net = given ? (target as Sequential) : twoLayerNet(target, activation);
  const own = net.loss;
  if (own.reduction === 'none' && opts.reduction === undefined) {
    if (given) v.fail(TypeError, "a Sequential whose loss reduces to a number ('mean' or 'sum': verify and gradcheck check a scalar loss), or opts.reduction", 'net.loss', new v.Received(String(own)));
    v.fail(TypeError, "a loss that reduces to a number ('mean' or 'sum': verify and gradcheck check a scalar loss), or opts.reduction", 'params.loss.reduction', 'none');
  }
  const reduction = v.oneOf('opts.reduction', opts.reduction, v.REDUCTIONS, own.reduction as Reduction);
  const ignoreIndex = v.ignoreIndex('opts.ignoreIndex', opts.ignoreIndex, own.ignoreIndex);
  const labelSmoothing = v.labelSmoothing('opts.labelSmoothing', opts.labelSmoothing, own.labelSmoothing);
  let seq: Sequential;
  let b: { X: FloatArray; y: Int32Array; B: number };
  let info: NetworkInfo<Network>;
  if (given) {
    seq = net;
    b = v.batch(X, y, { dtype: seq.dtype, D: seq.inFeatures, C: seq.classes }, '', ignoreIndex);
    info = { network: seq.toString(), dims: { B: b.B, D: seq.inFeatures, C: seq.classes }, widths: [...seq.widths] };
  } else {
    const p = v.params(target);
    b = v.batch(X, y, p, '', ignoreIndex);
    const dims = { B: b.B, D: p.D, H: p.H, C: p.C };
    v.sizes(dims);
    seq = net; // forwardBackward's own net: its errors name Z1 and the logits
    info = { dims, activation };
  }
  // What a gradient function is handed: a copy of the Sequential, or the caller's params object with
  // every field it has (D, H, C, anything else), its tensors copied.
  const copy = () =>
    given ? sequentialCopy(seq) : { ...(target as object), ...Object.fromEntries(Object.entries(seq.params).map(([k, t]) => [k, t.slice()])) };
  // F.cross_entropy's options, resolved as forwardBackward resolves them (the call's, else the loss's).
  const weight = opts.weight !== undefined ? v.lossWeight('opts.weight', opts.weight, seq.dtype, seq.classes) : own.weight;
  let ignored = 0;
  let denominator = 0;
  for (let i = 0; i < b.B; i++) {
    if (b.y[i] === ignoreIndex) ignored++;
    else denominator += weight === null ? 1 : weight[b.y[i]];
  }
  if (reduction === 'mean' && denominator === 0) throw emptyMeanError(b.B - ignored, ignoreIndex);
  const general = weight !== null || labelSmoothing !== 0 || ignored > 0;
  const lossOpts: LossGradOptions = {
    ...(weight !== null ? { weight } : {}), ...(ignoreIndex !== -100 ? { ignoreIndex } : {}), ...(labelSmoothing !== 0 ? { labelSmoothing } : {}),
  };
  const lossOpts64 = weight !== null ? { ...lossOpts, weight: Float64Array.from(weight) } : lossOpts;
  const fnOpts = given ? { reduction, inputGrad: true, ...lossOpts } : { activation, reduction, inputGrad: true, ...lossOpts };
  v.assertFinite('X', b.X);
  for (const [name, t] of Object.entries(seq.params)) v.assertFinite(given ? name : `params.${name}`, t);
  const seq64 = sequentialCopy(seq, 'float64');
  seq64.twoLayerWords = seq.twoLayerWords;
  const X64 = Float64Array.from(b.X); // float32 values are exact in float64
  // The float64 stack and its forward pass: what the finite differences perturb and the diagnoses recompute.
  const stack: Stack64 = {
    X: X64, y: b.y, B: b.B, layers: stackLayersOf(seq64), widths: [...seq.widths], reduction,
    loss: general ? { reduction, weight: weight && Float64Array.from(weight), ignoreIndex, labelSmoothing, targets: null, gradOutput: null } : null,
  };
  const forward = stackForward64(stack);
  if (!forward.outputs.every(allFinite)) {
    seq64.forward(X64, { backend: 'ts' }); // names the layer that overflowed
    throw new RangeError('Expected a finite forward pass but it overflowed (inputs or weights too large for the dtype)');
  }
  if (!Number.isFinite(forward.loss)) throw new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)');

  // The shape of the loss, dX, every weight gradient and every intermediate one (dZ1, dA1, …); the
  // layer of each tensor (empty for the params); the weights' gradients in forward order, dW1, db1, ….
  const shapes: Record<string, number[]> = { loss: [], dX: [b.B, seq.inFeatures] };
  const layerOf: Record<string, string> = given ? { loss: String(new SoftmaxCrossEntropy({ reduction, ...lossOpts })), dX: seq.where(0) } : {};
  const weightGrads: string[] = [];
  const names = outputNames(stack);
  stack.layers.forEach((l, i) => {
    shapes[`d${names[i]}`] ??= [b.B, seq.widths[i + 1]];
    if (l.kind !== 'linear') return;
    weightGrads.push(`dW${l.k}`, `db${l.k}`);
    shapes[`dW${l.k}`] = [l.in, l.out];
    shapes[`db${l.k}`] = [l.out];
    if (given) layerOf[`dW${l.k}`] = layerOf[`db${l.k}`] = seq.where(i);
  });
  return {
    info, dtype: seq.dtype, stack, forward, weightGrads, shapes, layerOf,
    /**
     * A backend's hand-derived loss and gradients, or a gradient function's (`name` in messages), handed
     * copies of the network in the caller's form and of the batch, so it cannot change either.
     * @throws {TypeError} a function that returns a Promise
     */
    grads: (candidate: BackendName | ((...args: never[]) => unknown), inputGrad: boolean, name: string, exact = false): CandidateGrads => {
      const grads: Record<string, Coerced> = {};
      if (typeof candidate === 'string') {
        // verify's exact: the native candidate runs the exact mode (LibTorch's bits), torch is LibTorch;
        // wasm and ts run as they are, and their bits are reported.
        const mode = exact && (candidate === 'native' || candidate === 'torch') ? { exact: true } : {};
        const r = seq.forwardBackward(b.X, b.y, { backend: candidate, inputGrad, reduction, ...lossOpts, ...mode });
        for (const [k, g] of Object.entries(r.grads)) grads[k] = coerceTensor(g);
        return { name: candidate, loss: coerceTensor(r.loss), grads };
      }
      let result: unknown;
      try {
        // Copies of everything it is handed, the class weights too: a candidate writing into them
        // must change neither the caller's arrays nor the references' inputs.
        const o = 'weight' in fnOpts && fnOpts.weight ? { ...fnOpts, weight: (fnOpts.weight as FloatArray).slice() } : fnOpts;
        result = (candidate as (...args: unknown[]) => unknown)(copy(), b.X.slice(), b.y.slice(), o);
      } catch (thrown) {
        return { name: 'function', grads, thrown, error: `the candidate threw: ${(thrown as Error)?.message ?? String(thrown)}` };
      }
      const split = splitResult(result, name);
      if (split === null) return { name: 'function', grads, error: `the candidate returned ${v.describe(result)}, not an object of gradients { ${weightGrads.join(', ')}, dX? }` };
      for (const k of ['dX', ...weightGrads]) if (split.grads[k] !== undefined) grads[k] = coerceTensor(split.grads[k]);
      return { name: 'function', loss: split.loss === undefined ? undefined : coerceTensor(split.loss), grads };
    },
    /**
     * LibTorch autograd in the network's own dtype (PyTorch's numbers for this very net, what a
     * bit-for-bit comparison needs): the loss ([1]) and every gradient, as float64 holding those values.
     * @throws {HandgradError} ERR_TORCH_UNAVAILABLE
     */
    torchInDtype: (): Record<string, Float64Array> => {
      const r = seq.forwardBackward(b.X, b.y, { backend: 'torch', inputGrad: true, reduction, ...lossOpts });
      return { loss: new Float64Array([r.loss]), ...Object.fromEntries(Object.entries(r.grads).map(([k, g]) => [k, Float64Array.from(g!)])) };
    },
    /** LibTorch autograd on the float64 copy: the loss ([1]) and every gradient. @throws {HandgradError} ERR_TORCH_UNAVAILABLE */
    torch: (): Record<string, Float64Array> => {
      const r = seq64.forwardBackward(X64, b.y, { backend: 'torch', inputGrad: true, reduction, ...lossOpts64 });
      return { loss: new Float64Array([r.loss]), ...(r.grads as Record<string, Float64Array>) };
    },
  };
}
