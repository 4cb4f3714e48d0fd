// The public two-layer API: forwardBackward, forward, predict, probs. Validation happens here,
// once, through lib/validate.ts; then one backend call writes into buffers allocated here.
import { getBackend } from './backends';
import type { Activation, BackendName, Cache, Dims, Dtype, FloatArray, Grads, Reduction } from './types';
import * as v from './validate';
import { carveWorkspace, workspaceLength } from './workspace';

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

// A scratch workspace per dtype, grown as needed and reused by calls that return no cache: the
// API is synchronous, so no two calls use it at once.
const scratch: Record<Dtype, FloatArray> = { float64: new Float64Array(0), float32: new Float32Array(0) };

function newArray(dtype: Dtype, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

function workspace(dtype: Dtype, d: Dims, fresh: boolean): FloatArray {
  const n = workspaceLength(d);
  if (fresh) return newArray(dtype, n);
  if (scratch[dtype].length < n) scratch[dtype] = newArray(dtype, n);
  return scratch[dtype].subarray(0, n);
}

function gradBuffer(name: keyof Grads, out: Partial<Grads> | undefined, dtype: Dtype, n: number): FloatArray {
  const given = out?.[name];
  return given === undefined ? newArray(dtype, n) : v.outBuffer(name, given, dtype, n);
}

const GRAD_NAMES = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
const INPUT_NAMES = ['X', 'y', 'W1', 'b1', 'W2', 'b2'] as const;

/**
 * Loss and hand-derived gradients of softmax cross-entropy through the two-layer network.
 * @throws {TypeError} a wrong kind of argument (dtype, labels, options), naming the tensor
 * @throws {RangeError} a wrong size or value (shapes, labels out of [0, C), NaN/Infinity, aliasing)
 * @throws {HandgradError} the backend is unavailable (code ERR_NATIVE_UNAVAILABLE, …)
 */
export function forwardBackward<T extends FloatArray>(
  params: { W1: T; b1: T; W2: T; b2: T; D?: number; H?: number; C?: number },
  X: T,
  y: ArrayLike<number>,
  opts: ForwardBackwardOptions<T> = {},
): ForwardBackwardResult<T> {
  const { backend, reduction, cache: wantCache, accumulate, inputGrad, out } = v.stepOptions<Partial<Grads<T>>>(opts, 'mean');
  const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');

  const p = v.params(params);
  const b = v.batch(X, y, p);
  const dims: Dims = { B: b.B, D: p.D, H: p.H, C: p.C };
  v.sizes(dims);
  const grads: Grads = {
    dW1: gradBuffer('dW1', out, p.dtype, p.D * p.H),
    db1: gradBuffer('db1', out, p.dtype, p.H),
    dW2: gradBuffer('dW2', out, p.dtype, p.H * p.C),
    db2: gradBuffer('db2', out, p.dtype, p.C),
  };
  if (inputGrad) grads.dX = gradBuffer('dX', out, p.dtype, b.B * p.D);
  // The native addon makes this check itself in C++ (reading .buffer from JS costs more than the
  // whole toy-size step), so it is done here only for the other backends.
  if (out !== undefined && backend !== 'native') {
    v.disjoint(GRAD_NAMES, [grads.dX, grads.dW1, grads.db1, grads.dW2, grads.db2], INPUT_NAMES, [b.X, b.y, p.W1, p.b1, p.W2, p.b2]);
  }
  const ws = workspace(p.dtype, dims, wantCache);
  const loss = getBackend(backend).forwardBackward({
    dims, X: b.X, y: b.y, W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2, ws,
    dX: grads.dX ?? null, dW1: grads.dW1, db1: grads.db1, dW2: grads.dW2, db2: grads.db2,
    activation, reduction, accumulate,
  });
  const result: ForwardBackwardResult = { loss, grads };
  if (wantCache) {
    const w = carveWorkspace(ws, dims);
    result.cache = { Z1: w.Z1, A1: w.A1, logits: w.logits, probs: w.probs };
  }
  return result as ForwardBackwardResult<T>;
}

export interface ForwardOptions {
  backend?: BackendName;
  activation?: Activation;
}

/**
 * Logits [B,C] for X [B,D] (B = X.length / D).
 * @throws {TypeError|RangeError|HandgradError} as forwardBackward
 */
export function forward<T extends FloatArray>(params: { W1: T; b1: T; W2: T; b2: T }, X: T, opts: ForwardOptions = {}): T {
  if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
  const backend = v.oneOf('opts.backend', opts.backend, v.BACKENDS, 'native');
  const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');
  const p = v.params(params);
  const { X: Xc, B } = v.inputRows(X, p);
  const dims: Dims = { B, D: p.D, H: p.H, C: p.C };
  v.sizes(dims);
  const ws = workspace(p.dtype, dims, false);
  getBackend(backend).forward({ dims, X: Xc, W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2, ws, activation });
  return carveWorkspace(ws, dims).logits.slice() as T;
}

/** Row-wise softmax of logits [B,C], computed stably (max subtracted). */
export function softmax<T extends FloatArray>(logits: T, C: number): T {
  v.dim('C', C);
  if (logits.length % C !== 0) v.fail(RangeError, `a multiple of C = ${C} elements`, 'logits', logits);
  const out = logits.slice() as T;
  for (let o = 0; o < out.length; o += C) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, out[o + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += out[o + c] = Math.exp(out[o + c] - m);
    for (let c = 0; c < C; c++) out[o + c] /= s;
  }
  return out;
}

/**
 * Class probabilities [B,C] = softmax(forward(params, X)).
 * @throws {TypeError|RangeError|HandgradError} as forward
 */
export function probs<T extends FloatArray>(params: { W1: T; b1: T; W2: T; b2: T }, X: T, opts: ForwardOptions = {}): T {
  const logits = forward(params, X, opts);
  return softmax(logits, params.b2.length);
}

/**
 * Predicted class ids (argmax of the logits) for each row of X.
 * @throws {TypeError|RangeError|HandgradError} as forward
 */
export function predict<T extends FloatArray>(params: { W1: T; b1: T; W2: T; b2: T }, X: T, opts: ForwardOptions = {}): Int32Array {
  return argmaxRows(forward(params, X, opts), params.b2.length);
}

/** The index of the largest entry of each row of logits [B,C] (the first one on a tie). */
export function argmaxRows(logits: ArrayLike<number>, C: number): Int32Array {
  const out = new Int32Array(logits.length / C);
  for (let b = 0; b < out.length; b++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[b * C + c] > logits[b * C + best]) best = c;
    out[b] = best;
  }
  return out;
}
