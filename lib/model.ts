// The seed's two-layer API: forwardBackward, forward, predict, probs over params
// { W1[D,H], b1[H], W2[H,C], b2[C], activation?, loss? }. Each call runs the equivalent Sequential
// [Linear(D,H), act, Linear(H,C)] with the params' loss over the caller's own tensors (not
// copies), built once per params object and activation and kept while those tensors and that loss
// are the ones the object holds.
import { Linear } from './layers/linear';
import { lossOfSpec, sameLoss, SoftmaxCrossEntropy, specIs } from './layers/loss';
import { activationLayer, PARAMS_OWNER, Sequential, type SequentialForwardBackwardOptions, softmaxRows } from './layers/sequential';
import type { TrainerParams, TwoLayerParams } from './train/trainer';
import type { Activation, BackendName, Cache, FloatArray, Grads, LossReduction, Params } from './types';
import * as v from './validate';

export interface ForwardBackwardOptions<T extends FloatArray = FloatArray>
  extends Omit<SequentialForwardBackwardOptions<T>, 'reduction' | 'cache' | 'out'> {
  activation?: Activation;
  /** 'mean', 'sum', or 'none' (loss is each row's, a typed array [B]; needs gradOutput). Default: the params' loss's, else 'mean' (as F.cross_entropy). */
  reduction?: LossReduction;
  /** Return Z1, A1, logits and probs. */
  cache?: boolean;
  /** Preallocated gradient buffers, written in place (and returned). */
  out?: Partial<Grads<T>>;
}

export interface ForwardBackwardResult<T extends FloatArray = FloatArray, L = number> {
  /** The loss; for reduction 'none' each row's, a typed array [B]. */
  loss: L; grads: Grads<T>; cache?: Cache<T>;
}

export interface ForwardOptions { backend?: BackendName; activation?: Activation; /** LibTorch's bits (native; see forwardBackward's exact). */ exact?: boolean }

/**
 * The params of a Trainer.load: the two-layer tensors with their activation, or (a file of another
 * depth, or with a layers list) a Sequential's W1, b1, …; the file says which and its dtype, so only
 * the run time knows. forward, probs and predict take either and run the net the file holds.
 */
export type LoadedParams = TrainerParams<TwoLayerParams | Sequential>;

/** The X that params take: their own dtype's array (Float32Array for float32 tensors), either where only the run time knows. */
export type InputOf<P> = [P] extends [never] ? FloatArray : P extends { W1: infer W } ? (W extends Float32Array ? Float32Array : W extends Float64Array ? Float64Array : FloatArray) : FloatArray;

const nets = new WeakMap<object, Partial<Record<Activation, Sequential>>>();

/** F.cross_entropy's defaults: the loss of params without `loss`. */
const DEFAULT_LOSS = new SoftmaxCrossEntropy();

/**
 * The Sequential [Linear(D,H), act, Linear(H,C)] over params' own tensors (checked here), with the
 * params' `loss` (a LossSpec, as loadParams and a Trainer's live params carry the loss they were
 * saved or trained with; checked here as strictly as a spec's; F.cross_entropy's defaults without
 * one): like the activation, the loss is part of the network a file or a Trainer holds, and every
 * two-layer entry point that builds the net from params (forwardBackward, the Trainer, verify,
 * saveParams, saveModel) gets it from here. Cached per params object and activation while the
 * object holds the same tensors and the same loss.
 * @throws {TypeError|RangeError} bad params, as forwardBackward; a malformed params.loss, naming its key
 */
export function twoLayerNet(params: unknown, activation: Activation): Sequential {
  const p = v.params(params);
  let byAct = nets.get(p.source);
  const seq = byAct?.[activation];
  // The record's loss is read on every call (it may be replaced or changed in place), but built and
  // checked again only when it is not the cached net's.
  const sameTensors = seq !== undefined && seq.params.W1 === p.W1 && seq.params.b1 === p.b1 && seq.params.W2 === p.W2 && seq.params.b2 === p.b2;
  if (sameTensors && (p.loss === undefined ? sameLoss(seq.loss, DEFAULT_LOSS) : specIs(seq.loss, p.loss, p.dtype))) return seq;
  const loss = p.loss === undefined ? DEFAULT_LOSS : lossOfSpec('params.loss', p.loss, p.dtype, p.C);
  v.sizes({ B: 1, D: p.D, H: p.H, C: p.C });
  const linears = [new Linear(p.D, p.H, { W: p.W1, b: p.b1 }), new Linear(p.H, p.C, { W: p.W2, b: p.b2 })];
  const net = new Sequential([linears[0], activationLayer(activation), linears[1]], { loss: loss === DEFAULT_LOSS ? undefined : loss });
  net.twoLayerWords = true;
  if (!byAct) nets.set(p.source, (byAct = {}));
  byAct[activation] = net;
  return net;
}

/** The Sequential whose params record `params` is (seq.params, a Sequential Trainer's params), or undefined. */
export function ownerOf(params: unknown): Sequential | undefined {
  return params !== null && typeof params === 'object' ? PARAMS_OWNER.get(params) : undefined;
}

/**
 * The activation of a two-layer call: the option, else the params' own `activation` (a Trainer's
 * live params and loadParams carry the one they were trained or saved with), else ReLU. A
 * Sequential's params record holds no activation, but its layers do: that of a Sequential
 * [Linear, act, Linear] is its act (read as ReLU, a tanh net would be run as another network);
 * any other Sequential's params are refused, as is an opts.activation beside them.
 * @throws {TypeError} an activation that is not a string; the params of a Sequential of another shape
 * @throws {RangeError} an unknown activation
 */
export function activationOf(params: unknown, option: unknown): Activation {
  const owner = ownerOf(params);
  if (owner !== undefined) return twoLayerActivation(owner, option);
  const own = option === undefined && params !== null && typeof params === 'object' ? (params as { activation?: unknown }).activation : undefined;
  return option !== undefined ? v.oneOf('opts.activation', option, v.ACTIVATIONS, 'relu') : v.oneOf('params.activation', own, v.ACTIVATIONS, 'relu');
}

/** The act of a Sequential [Linear, act, Linear] (the two-layer net's shape), or null for any other. */
function twoLayerAct(seq: Sequential): Activation | null {
  const [first, act, last] = seq.layers;
  return seq.layers.length === 3 && first instanceof Linear && last instanceof Linear && !(act instanceof Linear) ? (act.kind as Activation) : null;
}

/** The act of a Sequential [Linear, act, Linear], whose params a two-layer entry point was given. @throws {TypeError} as activationOf */
function twoLayerActivation(owner: Sequential, option: unknown): Activation {
  if (option !== undefined) v.fail(TypeError, "no opts.activation with a Sequential's params (its layers say it)", 'opts.activation', option);
  const act = twoLayerAct(owner);
  if (act !== null) return act;
  return v.fail(TypeError, `the params of a two-layer net [Linear, activation, Linear] (these are run by their own Sequential: seq.forwardBackward, seq.predict)`,
    'params', new v.Received(`the params of ${owner}`));
}

/**
 * Loss and hand-derived gradients of softmax cross-entropy through the two-layer network. The
 * loss is the params' `loss` (loadParams', a Trainer's live params'; F.cross_entropy's defaults
 * without one), each of its options overridden by the call's own (reduction, weight, ignoreIndex,
 * labelSmoothing), as the activation is by opts.activation.
 * @throws {TypeError} a wrong kind of argument (dtype, labels, options), naming the tensor
 * @throws {RangeError} a wrong size or value (shapes, labels out of [0, C), NaN/Infinity, aliasing)
 * @throws {HandgradError} the backend is unavailable (code ERR_NATIVE_UNAVAILABLE, …)
 */
export function forwardBackward<T extends FloatArray, O extends ForwardBackwardOptions<T> = ForwardBackwardOptions<T>>(
  params: Params<T>, X: T, y: ArrayLike<number>, opts?: O,
): ForwardBackwardResult<T, O extends { reduction: 'none' } ? T : number> {
  // A Sequential's own params record is that Sequential, as for forward: its layers and its loss.
  const owner = ownerOf(params);
  const o = v.stepOptions(opts, owner?.loss.reduction ?? 'mean', v.STEP_OPTIONS.twoLayer);
  if (owner !== undefined && o.activation !== undefined) v.fail(TypeError, "no opts.activation with a Sequential's params (its layers say it)", 'opts.activation', o.activation);
  if (owner !== undefined && o.cache && twoLayerAct(owner) === null) {
    v.fail(TypeError, `no opts.cache with the params of ${owner} (its outputs are not Z1, A1, logits): seq.forwardBackward(X, y, { cache: true }) returns them`, 'opts.cache', true);
  }
  const net = owner ?? twoLayerNet(params, activationOf(params, o.activation));
  // The params' loss supplies the defaults, as a Sequential's does: its reduction unless the call
  // gives one (its weight, ignoreIndex and labelSmoothing likewise, in checkedStep).
  if (!o.reductionGiven) o.reduction = net.loss.reduction;
  const r = net.checkedStep(X as never, y, o);
  const result: ForwardBackwardResult<FloatArray, number | FloatArray> = { loss: r.loss, grads: r.grads as unknown as Grads };
  if (r.cache) {
    const [Z1, A1, logits] = r.cache.outputs;
    result.cache = { Z1, A1, logits, probs: r.cache.probs };
  }
  return result as never;
}

/**
 * The net of a forward call, and its options for the Sequential: the two-layer net over params, or,
 * for a Sequential's own params record (seq.params, a Sequential Trainer's params — what
 * Trainer.load gives for a file of other depth or with a layers list), that Sequential: its
 * record holds no activations, and reading W1, b1, W2, b2 of it as a ReLU two-layer net would
 * answer for another network.
 */
function forwardNet(params: unknown, opts: ForwardOptions): [Sequential, { backend?: BackendName; exact?: boolean }] {
  const o = v.options('opts', opts, ['backend', 'activation', 'exact'] as const);
  const run = { backend: o.backend as BackendName | undefined, exact: o.exact as boolean | undefined };
  const owner = ownerOf(params);
  if (owner !== undefined) {
    if (o.activation !== undefined) v.fail(TypeError, "no opts.activation with a Sequential's params (its layers say it)", 'opts.activation', o.activation);
    return [owner, run];
  }
  return [twoLayerNet(params, activationOf(params, o.activation)), run];
}

// params and X of one dtype (a mixed call does not compile); a loaded Trainer's params, whose
// dtype only the file knows, with either. The result has X's type.
/** Logits [B,C] for X [B,D] (B = X.length / D). @throws {TypeError|RangeError|HandgradError} as forwardBackward */
export function forward<P extends Params | LoadedParams, T extends InputOf<P>>(params: P, X: T, opts: ForwardOptions = {}): T {
  const [net, o] = forwardNet(params, opts);
  return net.forward(X, o) as T;
}

/**
 * Row-wise softmax of logits [B,C], computed stably (max subtracted). logits are checked as
 * forward's X is: a Float64Array or Float32Array (the result has its dtype), a multiple of C
 * elements, every value finite (NaN or ±Infinity would give NaN rows).
 * @throws {TypeError} logits not a Float64Array/Float32Array; {RangeError} C, the length, a non-finite value (its index)
 */
export function softmax<T extends FloatArray>(logits: T, C: number): T {
  v.dim('C', C);
  const dtype = v.dtypeOf('logits', logits);
  // A copy made from what the array holds (not its `length` property, nor memory another thread
  // may change): what is checked is what is computed.
  const copy = dtype === 'float64' ? new Float64Array(logits) : new Float32Array(logits);
  if (copy.length % C !== 0) v.fail(RangeError, `a multiple of C = ${C} elements`, 'logits', logits);
  v.assertFinite('logits', copy);
  return softmaxRows(copy, C) as T;
}

/** Class probabilities [B,C] = softmax(forward(params, X)). @throws {TypeError|RangeError|HandgradError} as forward */
export function probs<P extends Params | LoadedParams, T extends InputOf<P>>(params: P, X: T, opts: ForwardOptions = {}): T {
  const [net, o] = forwardNet(params, opts);
  return net.probs(X, o) as T;
}

/** Predicted class ids (argmax of the logits) for each row of X. @throws {TypeError|RangeError|HandgradError} as forward */
export function predict<P extends Params | LoadedParams>(params: P, X: InputOf<P>, opts: ForwardOptions = {}): Int32Array {
  const [net, o] = forwardNet(params, opts);
  return net.predict(X, o);
}
