// The seed's two-layer API: forwardBackward, forward, predict, probs over params
// { W1[D,H], b1[H], W2[H,C], b2[C] }. Each call runs the equivalent Sequential
// [Linear(D,H), act, Linear(H,C)] over the caller's own tensors (not copies), built once per params
// object and activation and kept while those tensors are the ones the object holds.
import { Linear } from './layers/linear';
import { ReLU, Sigmoid, Tanh } from './layers/activation';
import { argmaxRows, Sequential, softmaxRows } from './layers/sequential';
import type { Activation, BackendName, Cache, FloatArray, Grads, Reduction } from './types';
import * as v from './validate';

export interface ForwardBackwardOptions<T extends FloatArray = FloatArray> {
  /** 'native' (OpenBLAS, default) or 'ts'; 'torch' and 'wasm' when available. */
  backend?: BackendName;
  activation?: Activation;
  /** 'mean' (default, as F.cross_entropy) or 'sum'. */
  reduction?: Reduction;
  /** Compute dX [B,D] as well (default: false, unless out.dX is given). */
  inputGrad?: boolean;
  /** Return Z1, A1, logits and probs. */
  cache?: boolean;
  /** Preallocated gradient buffers, written in place (and returned). */
  out?: Partial<Grads<T>>;
  /** Add into the out buffers, as PyTorch accumulates .grad (default: overwrite). */
  accumulate?: boolean;
}

export interface ForwardBackwardResult<T extends FloatArray = FloatArray> {
  loss: number;
  grads: Grads<T>;
  cache?: Cache<T>;
}

export interface ForwardOptions {
  backend?: BackendName;
  activation?: Activation;
}

type TwoLayer<T extends FloatArray = FloatArray> = { W1: T; b1: T; W2: T; b2: T; D?: number; H?: number; C?: number };

const nets = new WeakMap<object, Partial<Record<Activation, Sequential>>>();

/**
 * The Sequential [Linear(D,H), act, Linear(H,C)] over params' own tensors (checked here), cached
 * per params object and activation while the object holds the same tensors.
 * @throws {TypeError|RangeError} bad params, as forwardBackward
 */
export function twoLayerNet(params: unknown, activation: Activation): Sequential {
  const p = v.params(params);
  let byAct = nets.get(p.source);
  const seq = byAct?.[activation];
  if (seq && seq.params.W1 === p.W1 && seq.params.b1 === p.b1 && seq.params.W2 === p.W2 && seq.params.b2 === p.b2) return seq;
  v.sizes({ B: 1, D: p.D, H: p.H, C: p.C });
  const act = activation === 'relu' ? new ReLU() : activation === 'sigmoid' ? new Sigmoid() : new Tanh();
  const net = new Sequential([new Linear(p.D, p.H, { W: p.W1, b: p.b1 }), act, new Linear(p.H, p.C, { W: p.W2, b: p.b2 })]);
  net.twoLayerWords = true;
  if (!byAct) nets.set(p.source, (byAct = {}));
  byAct[activation] = net;
  return net;
}

/**
 * The activation of a two-layer call: the option, else the params' own `activation` (a Trainer's
 * live params and loadParams carry the one they were trained or saved with), else ReLU.
 */
export function activationOf(params: unknown, option: unknown): Activation {
  const own = option === undefined && params !== null && typeof params === 'object' ? (params as { activation?: unknown }).activation : undefined;
  return option !== undefined ? v.oneOf('opts.activation', option, v.ACTIVATIONS, 'relu') : v.oneOf('params.activation', own, v.ACTIVATIONS, 'relu');
}

/**
 * Loss and hand-derived gradients of softmax cross-entropy through the two-layer network.
 * @throws {TypeError} a wrong kind of argument (dtype, labels, options), naming the tensor
 * @throws {RangeError} a wrong size or value (shapes, labels out of [0, C), NaN/Infinity, aliasing)
 * @throws {HandgradError} the backend is unavailable (code ERR_NATIVE_UNAVAILABLE, …)
 */
export function forwardBackward<T extends FloatArray>(params: TwoLayer<T>, X: T, y: ArrayLike<number>, opts: ForwardBackwardOptions<T> = {}): ForwardBackwardResult<T> {
  const o = v.stepOptions<Partial<Grads<T>>>(opts, 'mean', v.STEP_OPTIONS.twoLayer);
  const net = twoLayerNet(params, activationOf(params, opts.activation));
  const r = net.checkedStep(X, y, o as never);
  const result: ForwardBackwardResult = { loss: r.loss, grads: r.grads as unknown as Grads };
  if (r.cache) {
    const [Z1, A1, logits] = r.cache.outputs;
    result.cache = { Z1, A1, logits, probs: r.cache.probs };
  }
  return result as ForwardBackwardResult<T>;
}

function twoLayerForward<T extends FloatArray>(params: TwoLayer<T>, X: T, opts: ForwardOptions): { net: Sequential; logits: T } {
  const o = v.options('opts', opts, ['backend', 'activation'] as const);
  const net = twoLayerNet(params, activationOf(params, o.activation));
  return { net, logits: net.forward(X, { backend: o.backend as BackendName | undefined }) as T };
}

/**
 * Logits [B,C] for X [B,D] (B = X.length / D).
 * @throws {TypeError|RangeError|HandgradError} as forwardBackward
 */
export function forward<T extends FloatArray>(params: TwoLayer<T>, X: T, opts: ForwardOptions = {}): T {
  return twoLayerForward(params, X, opts).logits;
}

/** Row-wise softmax of logits [B,C], computed stably (max subtracted). */
export function softmax<T extends FloatArray>(logits: T, C: number): T {
  v.dim('C', C);
  if (logits.length % C !== 0) v.fail(RangeError, `a multiple of C = ${C} elements`, 'logits', logits);
  return softmaxRows(logits, C);
}

/**
 * Class probabilities [B,C] = softmax(forward(params, X)).
 * @throws {TypeError|RangeError|HandgradError} as forward
 */
export function probs<T extends FloatArray>(params: TwoLayer<T>, X: T, opts: ForwardOptions = {}): T {
  const { net, logits } = twoLayerForward(params, X, opts);
  return softmaxRows(logits, net.classes);
}

/**
 * Predicted class ids (argmax of the logits) for each row of X.
 * @throws {TypeError|RangeError|HandgradError} as forward
 */
export function predict<T extends FloatArray>(params: TwoLayer<T>, X: T, opts: ForwardOptions = {}): Int32Array {
  const { net, logits } = twoLayerForward(params, X, opts);
  return argmaxRows(logits, net.classes);
}
