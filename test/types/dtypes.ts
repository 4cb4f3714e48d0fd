// Compile-time checks (test/47 runs tsc on this file): each `@ts-expect-error` line must be an
// error, so a signature that lets a mixed-dtype call or a gradcheck without its point through
// fails the type test; the other lines must compile.
import { forward, forwardBackward, gradcheck, initParams, predict, probs, Sequential, Trainer, type Dtype, type FloatArray, type GradFunction } from '../../lib';

const X64 = new Float64Array(12);
const X32 = new Float32Array(12);
const y = [0, 1, 2];

// initParams' tensors follow opts.dtype.
const p64 = initParams({ D: 4, H: 5, C: 3 });
const p64b = initParams({ D: 4, H: 5, C: 3 }, { dtype: 'float64', seed: 1 });
const p32 = initParams({ D: 4, H: 5, C: 3 }, { dtype: 'float32' });
const w64: Float64Array = p64.W1;
const w64b: Float64Array = p64b.b2;
const w32: Float32Array = p32.W2;
// @ts-expect-error float32 params hold Float32Array, not Float64Array
const wrong: Float64Array = p32.W1;

// Same dtype compiles; mixed dtypes do not.
forwardBackward(p64, X64, y);
forwardBackward(p32, X32, y, { inputGrad: true });
// @ts-expect-error float64 params with a float32 batch
forwardBackward(p64, X32, y);
// @ts-expect-error float32 params with a float64 batch
forwardBackward(p32, X64, y);
const logits64: Float64Array = forward(p64, X64);
// @ts-expect-error
forward(p32, X64);
const probs32: Float32Array = probs(p32, X32);
// @ts-expect-error
probs(p64, X32);
const classes: Int32Array = predict(p64, X64);
// @ts-expect-error
predict(p32, X64);
// Params written out by hand (a type alias, so also a Record<string, FloatArray>): the same rule.
const lit32 = { W1: new Float32Array(20), b1: new Float32Array(5), W2: new Float32Array(15), b2: new Float32Array(3) };
predict(lit32, X32);
// @ts-expect-error
predict(lit32, X64);
// @ts-expect-error
forward(lit32, X64);
// @ts-expect-error
forwardBackward(lit32, X64, y);
// Preallocated gradient buffers of the other dtype.
// @ts-expect-error
forwardBackward(p64, X64, y, { out: { dW1: new Float32Array(20) } });

// A dtype known only at run time: FloatArray, either batch compiles (checked at run time).
declare const dt: Dtype;
const pAny = initParams({ D: 4, H: 5, C: 3 }, { dtype: dt });
const wAny: FloatArray = pAny.W1;
forwardBackward(pAny, X64 as FloatArray, y);

// gradcheck: a network checks its own backward; a gradient function needs the point (opts.params).
gradcheck(p64, X64, y);
gradcheck(Sequential.mlp([4, 5, 3]), X64, y, { mode: 'fast' });
const fn: GradFunction = (net, X, labels, o) => forwardBackward(net, X as Float64Array, labels, o as never).grads;
gradcheck(fn, X64, y, { params: p64 });
// @ts-expect-error a gradient function without opts.params
gradcheck(fn, X64, y);
// @ts-expect-error a gradient function with options but still no params
gradcheck(fn, X64, y, { mode: 'fast' });
// @ts-expect-error float32 params with a float64 batch
gradcheck(p32, X64, y);
// @ts-expect-error opts.params is for a gradient function, not beside a network
gradcheck(p64, X64, y, { params: p64 });

// A loaded Trainer: its params go straight to the two-layer functions, its model predicts.
const t = Trainer.load('model.safetensors');
const fromFile: Int32Array = predict(t.params, X64);
probs(t.params, X32);
const viaModel: Int32Array = t.model.predict(X64);

export { classes, fromFile, logits64, probs32, viaModel, w32, w64, w64b, wAny, wrong };
