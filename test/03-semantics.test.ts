// Contract details: reductions, accumulation, caches, dtypes, inference helpers, init, threads.
import { describe, expect, it } from 'vitest';
import { forward, forwardBackward, getNumThreads, initParams, predict, probs, setNumThreads } from '../lib';
import { errEps, randomArray, randomLabels, referenceLoss } from './helpers';

const dims = { D: 6, H: 7, C: 4 };
const B = 5;
const X = randomArray(B * dims.D, 11);
const y = randomLabels(B, dims.C, 12);
const backends = ['native', 'ts'] as const;

describe.each(backends)('%s backend', (backend) => {
  const params = initParams(dims, { seed: 3 });

  it('sum reduction is B × mean, loss and every gradient', () => {
    const mean = forwardBackward(params, X, y, { backend, inputGrad: true });
    const sum = forwardBackward(params, X, y, { backend, reduction: 'sum', inputGrad: true });
    expect(errEps([sum.loss], [B * mean.loss], 'float64')).toBeLessThanOrEqual(4);
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) {
      expect(errEps(sum.grads[k]!, mean.grads[k]!.map((g) => g * B), 'float64'), k).toBeLessThanOrEqual(4);
    }
  });

  it('calling twice with the same out buffers overwrites (never doubles)', () => {
    const once = forwardBackward(params, X, y, { backend, inputGrad: true });
    const out = { dX: new Float64Array(B * dims.D), dW1: new Float64Array(42), db1: new Float64Array(7), dW2: new Float64Array(28), db2: new Float64Array(4) };
    forwardBackward(params, X, y, { backend, out });
    const twice = forwardBackward(params, X, y, { backend, out });
    expect(twice.grads.dW1).toBe(out.dW1); // written in place
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) expect(out[k], k).toEqual(once.grads[k]);
  });

  it('accumulate adds into the out buffers like PyTorch .grad', () => {
    const once = forwardBackward(params, X, y, { backend, inputGrad: true });
    const out = { dX: new Float64Array(B * dims.D).fill(0.25), dW1: new Float64Array(42).fill(0.25), db1: new Float64Array(7).fill(0.25), dW2: new Float64Array(28).fill(0.25), db2: new Float64Array(4).fill(0.25) };
    forwardBackward(params, X, y, { backend, out, accumulate: true });
    forwardBackward(params, X, y, { backend, out, accumulate: true });
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) {
      const want = once.grads[k]!.map((g) => 0.25 + 2 * g);
      expect(errEps(out[k], want, 'float64'), k).toBeLessThanOrEqual(4);
    }
  });

  it('returns the cache untouched by backward: probs are softmax(logits) and sum to 1', () => {
    const r = forwardBackward(params, X, y, { backend, cache: true });
    const { Z1, A1, logits, probs: P } = r.cache!;
    expect([Z1.length, A1.length, logits.length, P.length]).toEqual([B * 7, B * 7, B * 4, B * 4]);
    for (let i = 0; i < Z1.length; i++) expect(A1[i]).toBe(Math.max(Z1[i], 0));
    for (let b = 0; b < B; b++) {
      const row = P.subarray(b * 4, b * 4 + 4);
      expect(Math.abs(Array.from(row).reduce((s, p) => s + p, 0) - 1)).toBeLessThan(1e-15);
      const m = Math.max(...logits.subarray(b * 4, b * 4 + 4));
      const e = [...logits.subarray(b * 4, b * 4 + 4)].map((z) => Math.exp(z - m));
      const s = e.reduce((a, v) => a + v, 0);
      e.forEach((v, c) => expect(Math.abs(row[c] - v / s)).toBeLessThan(1e-15));
    }
    // A later call must not reuse the memory of a returned cache.
    const before = Float64Array.from(r.cache!.probs);
    forwardBackward(params, X.map((v) => -v), y, { backend, cache: true });
    forwardBackward(params, X.map((v) => -v), y, { backend });
    expect(r.cache!.probs).toEqual(before);
  });

  it('float32 end to end (sgemm): float32 results close to the float64 definition', () => {
    const p32 = initParams(dims, { seed: 3, dtype: 'float32' });
    const X32 = Float32Array.from(X);
    const r = forwardBackward(p32, X32, y, { backend, inputGrad: true });
    expect(r.grads.dW1).toBeInstanceOf(Float32Array);
    expect(r.grads.dX).toBeInstanceOf(Float32Array);
    expect(r.loss).toBe(Math.fround(r.loss));
    const ref = referenceLoss(p32, X32, y, 'relu', 'mean');
    expect(errEps([r.loss], [ref], 'float32')).toBeLessThanOrEqual(8);
  });

  it('forward, probs and predict agree with the cache of forwardBackward', () => {
    const r = forwardBackward(params, X, y, { backend, cache: true });
    const logits = forward(params, X, { backend });
    expect(errEps(logits, r.cache!.logits, 'float64')).toBe(0);
    expect(errEps(probs(params, X, { backend }), r.cache!.probs, 'float64')).toBeLessThanOrEqual(4);
    const pred = predict(params, X, { backend });
    for (let b = 0; b < B; b++) {
      const row = [...logits.subarray(b * 4, b * 4 + 4)];
      expect(pred[b]).toBe(row.indexOf(Math.max(...row)));
    }
  });

  it('labels as a plain integer array equal labels as an Int32Array', () => {
    const a = forwardBackward(params, X, Array.from(y), { backend });
    const b = forwardBackward(params, X, y, { backend });
    expect(a.loss).toBe(b.loss);
    expect(a.grads.dW1).toEqual(b.grads.dW1);
  });

  it('byteOffset is honoured: views into a larger buffer give the same numbers', () => {
    const big = new Float64Array(3 + X.length);
    big.set(X, 3);
    const view = big.subarray(3);
    const a = forwardBackward(params, view, y, { backend });
    const b = forwardBackward(params, X, y, { backend });
    expect(a.loss).toBe(b.loss);
    expect(a.grads.dW2).toEqual(b.grads.dW2);
  });
});

describe('initParams', () => {
  it('is seeded: same seed, same numbers; other seed, other numbers', () => {
    expect(initParams(dims, { seed: 1 }).W1).toEqual(initParams(dims, { seed: 1 }).W1);
    expect(initParams(dims, { seed: 1 }).W1).not.toEqual(initParams(dims, { seed: 2 }).W1);
  });

  it('shapes are W1 [D,H], b1 [H], W2 [H,C], b2 [C] in the requested dtype', () => {
    const p = initParams({ D: 3, H: 4, C: 5 }, { dtype: 'float32' });
    expect([p.W1.length, p.b1.length, p.W2.length, p.b2.length]).toEqual([12, 4, 20, 5]);
    expect(p.W1).toBeInstanceOf(Float32Array);
    expect([p.D, p.H, p.C]).toEqual([3, 4, 5]);
  });

  it("'he' has std √(2/fan_in) and zero biases; 'small' is 0.01·N(0,1)", () => {
    const he = initParams({ D: 400, H: 300, C: 2 }, { seed: 5 });
    const std = (a: Float64Array | Float32Array) => Math.sqrt(Array.from(a).reduce((s, v) => s + v * v, 0) / a.length);
    expect(std(he.W1) / Math.sqrt(2 / 400)).toBeGreaterThan(0.97);
    expect(std(he.W1) / Math.sqrt(2 / 400)).toBeLessThan(1.03);
    expect(he.b1.every((v) => v === 0)).toBe(true);
    const small = initParams({ D: 400, H: 300, C: 2 }, { seed: 5, init: 'small' });
    expect(std(small.W1) / 0.01).toBeGreaterThan(0.97);
    expect(std(small.W1) / 0.01).toBeLessThan(1.03);
  });
});

describe('OpenBLAS threads', () => {
  it('can be read and set; results do not depend on the thread count beyond rounding', () => {
    const start = getNumThreads();
    expect(start).toBeGreaterThanOrEqual(1);
    const p = initParams({ D: 128, H: 256, C: 10 }, { seed: 9 });
    const Xb = randomArray(64 * 128, 4);
    const yb = randomLabels(64, 10, 5);
    setNumThreads(1);
    expect(getNumThreads()).toBe(1);
    const one = forwardBackward(p, Xb, yb, { inputGrad: true });
    setNumThreads(2);
    const two = forwardBackward(p, Xb, yb, { inputGrad: true });
    setNumThreads(start);
    expect(errEps(two.grads.dW1, one.grads.dW1, 'float64')).toBeLessThanOrEqual(8);
  });
});
