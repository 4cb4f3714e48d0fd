import { dtype as dtypeOf } from './data/options';
import { Rng } from './rng';
import type { Dtype, FloatArray, Params } from './types';
import * as v from './validate';

/**
 * Weight initialisations:
 * - 'he' (default): W ~ N(0, 2/fan_in), b = 0 — keeps ReLU activations' variance through a layer.
 * - 'small': W = 0.01·N(0, 1), b = 0 — the seed documents' init.
 * - 'xavier': W ~ N(0, 2/(fan_in + fan_out)), b = 0 — for sigmoid/tanh.
 * - 'torch': W, b ~ U(−1/√fan_in, 1/√fan_in) — what nn.Linear does by default.
 */
export type Init = 'he' | 'small' | 'xavier' | 'torch';
export const INITS: readonly Init[] = ['he', 'small', 'xavier', 'torch'];

/**
 * One Linear layer's W [fanIn, fanOut] and b [fanOut], drawn from rng, W first, row-major: the
 * same numbers whether the layer belongs to initParams' two-layer net, a Linear or a Sequential.
 */
export function drawLinear(fanIn: number, fanOut: number, dtype: Dtype, init: Init, rng: Rng, name = 'W'): { W: FloatArray; b: FloatArray } {
  return drawLinears([[fanIn, fanOut]], dtype, init, rng, [name])[0];
}

/**
 * Every Linear layer of a net, [fanIn, fanOut] each, named W1, W2, … (`names`), drawn from one rng
 * in layer order as drawLinear draws one. Every size is checked, and every tensor allocated, before
 * anything is drawn: a net whose last layer cannot exist is refused at once, not after minutes of
 * drawing the first one's billions of numbers.
 */
export function drawLinears(shapes: readonly (readonly [number, number])[], dtype: Dtype, init: Init, rng: Rng, names: readonly string[]): { W: FloatArray; b: FloatArray }[] {
  checkLinearSizes(shapes, names);
  const F = dtype === 'float64' ? Float64Array : Float32Array;
  const layers = shapes.map(([fanIn, fanOut], i) => ({
    W: v.allocate<FloatArray>(F, fanIn * fanOut, names[i]),
    b: v.allocate<FloatArray>(F, fanOut, names[i] === 'W' ? 'b' : names[i].replace(/^W/, 'b')),
  }));
  layers.forEach(({ W, b }, i) => fill(W, b, shapes[i][0], shapes[i][1], init, rng));
  return layers;
}

/** Each weight [fanIn, fanOut] (named by `names`) that a 32-bit BLAS index cannot address, refused in the package's words, before V8's allocation error. */
export function checkLinearSizes(shapes: readonly (readonly [number, number])[], names: readonly string[]): void {
  shapes.forEach(([fanIn, fanOut], i) => {
    if (fanIn * fanOut > 2 ** 32 - 1) v.fail(RangeError, `at most ${2 ** 32 - 1} elements`, names[i], new v.Received(`${fanIn * fanOut} elements`));
  });
}

/** W and b drawn by `init` (see Init) for a layer of fanIn inputs and fanOut outputs. */
function fill(W: FloatArray, b: FloatArray, fanIn: number, fanOut: number, init: Init, rng: Rng): void {
  if (init === 'torch') {
    const bound = 1 / Math.sqrt(fanIn);
    for (let i = 0; i < W.length; i++) W[i] = (2 * rng.uniform() - 1) * bound;
    for (let i = 0; i < b.length; i++) b[i] = (2 * rng.uniform() - 1) * bound;
  } else {
    const std = init === 'he' ? Math.sqrt(2 / fanIn) : init === 'xavier' ? Math.sqrt(2 / (fanIn + fanOut)) : 0.01;
    for (let i = 0; i < W.length; i++) W[i] = std * rng.normal();
  }
}

/** dtype, init and seed of a draw (initParams, Linear, Sequential.mlp), checked, with their defaults (the seed by v.seed: [0, 2^32)). */
export function drawOptions(o: { dtype?: unknown; init?: unknown; seed?: unknown }): { dtype: Dtype; init: Init; seed: number } {
  return { dtype: dtypeOf('opts.dtype', o.dtype), init: v.oneOf('opts.init', o.init, INITS, 'he'), seed: v.seed('opts.seed', o.seed) };
}

export interface InitOptions { seed?: number; dtype?: Dtype; init?: Init }

export interface InitializedParams<T extends FloatArray = FloatArray> extends Required<Params<T>> {}

/** The typed array of a dtype: Float64Array for 'float64', Float32Array for 'float32', either for a Dtype not known until run time. */
export type ArrayOf<D extends Dtype> = D extends 'float32' ? Float32Array : D extends 'float64' ? Float64Array : FloatArray;

// Overloads by dtype: the tensors' type follows opts.dtype, so that X of the other dtype in
// forwardBackward(params, X, …) is a compile error, not only a run-time TypeError. A dtype known
// only at run time (a Dtype variable) gives FloatArray, as before.
/**
 * Seeded parameters { D, H, C, W1[D,H], b1[H], W2[H,C], b2[C] }, identical for a seed on every
 * backend and platform (numbers are drawn in float64, then rounded once for float32).
 * @throws {TypeError|RangeError} for dims that are not positive integers or unknown options
 */
export function initParams(dims: { D: number; H: number; C: number }, opts: InitOptions & { dtype: 'float32' }): InitializedParams<Float32Array>;
export function initParams(dims: { D: number; H: number; C: number }, opts?: InitOptions & { dtype?: 'float64' }): InitializedParams<Float64Array>;
export function initParams<D extends Dtype>(dims: { D: number; H: number; C: number }, opts: InitOptions & { dtype: D }): InitializedParams<ArrayOf<D>>;
export function initParams(dims: { D: number; H: number; C: number }, opts?: InitOptions): InitializedParams;
export function initParams(dims: { D: number; H: number; C: number }, opts: InitOptions = {}): InitializedParams {
  // dims is checked as an options object is: a misspelt or extra key ({ D, H, C, h: 8 }) is refused, not ignored.
  if (dims === null || typeof dims !== 'object') v.fail(TypeError, 'an object { D, H, C }', 'dims', dims);
  const d = v.options('dims', dims, ['D', 'H', 'C'] as const);
  const D = v.dim('dims.D', d.D);
  const H = v.dim('dims.H', d.H);
  const C = v.dim('dims.C', d.C);
  const { dtype, init, seed } = drawOptions(v.options('opts', opts, ['dtype', 'init', 'seed'] as const));
  v.sizes({ B: 1, D, H, C }); // a net no step could run is refused before anything is drawn
  const [{ W: W1, b: b1 }, { W: W2, b: b2 }] = drawLinears([[D, H], [H, C]], dtype, init, new Rng(seed), ['W1', 'W2']);
  return { D, H, C, W1, b1, W2, b2 };
}
