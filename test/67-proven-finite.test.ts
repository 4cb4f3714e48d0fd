// A weight gradient proven finite instead of read back (native/core/overflow.h): the backward skips
// its scan of dW = Aᵀ·dZ when K·max|A|·max|dZ| (with rounding's growth) is below the dtype's
// largest value, max|A| from the forward's check of the layer's input (a scan of X for the first
// layer) and max|dZ| from the activation's backward. The skip may never let an overflow through,
// which these tests hold to arithmetic done here, in float64, on nets built so that one row of
// one dW is a known multiple of a bias gradient the step also returns:
// 1. the first layer: X's rows alike except column 0, which no weight reads in the forward
//    (W1's row 0 is zero), so dW1[0, :] = x · db1 (a sum of B equal terms). With x set so that
//    this is f·MAX, f < 1 must come back finite and right (the skip's path), f > 1 must be the
//    overflow error — a proof without its factor K = B, which would pass f·MAX/B, fails here;
// 2. a hidden layer behind ReLU, whose input bound is the forward's max|Z| (dW2[0, :] = z · db2);
// 3. accumulate, where the old dW is part of the sum and nothing is proven;
// 4. X on a SharedArrayBuffer that a Worker rewrites during the steps: a scan of X proves nothing
//    about what the product reads later, so every step either fails or returns finite gradients.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { forwardBackward, Sequential } from '../lib/index';
import type { FloatArray } from '../lib/types';
import { describeBackends, randomArray, sameBits, typed } from './helpers';

type Dtype = 'float32' | 'float64';
const MAX = { float32: 3.4028234663852886e38, float64: Number.MAX_VALUE };
const EPS = { float32: 2 ** -23, float64: 2 ** -52 };
const overflowed = (name: string) => new RangeError(`Expected finite gradients but ${name} overflowed (inputs or weights too large for the dtype)`);
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** got ≈ x·want entry by entry, within a sum of B terms' rounding (2·B·eps relative). */
function expectScaled(got: FloatArray, want: ArrayLike<number>, x: number, B: number, dtype: Dtype) {
  for (let j = 0; j < want.length; j++) {
    const w = x * want[j];
    expect(Math.abs(got[j] - w), `entry ${j}: ${got[j]} against ${w}`).toBeLessThanOrEqual(2 * B * EPS[dtype] * Math.abs(w) + 1e-300);
  }
}

// B ≤ H: the first layer's proof scans X only when that is shorter than dW1; D·H and the hidden
// layer's 64·64 reach stack.h's kProofMinWeights (4096), below which dW is scanned anyway.
const [B, D, H, C] = [8, 16, 256, 3];
const HIDDEN = 64;

/** The two-layer net of case 1: row 0 of W1 zero, every row of X alike but for column 0 = x. */
function firstLayerNet(dtype: Dtype) {
  const W1 = typed(dtype, randomArray(D * H, 3, 0.5));
  W1.fill(0, 0, H);
  const params = { W1, b1: typed(dtype, randomArray(H, 4, 0.1)), W2: typed(dtype, randomArray(H * C, 5, 4)), b2: typed(dtype, randomArray(C, 6, 0.1)) };
  const X = (x: number) => {
    const a = typed(dtype, Array.from({ length: B * D }, (_, i) => [0.5, -0.75, 0.25, 0.125][(i % D) % 4]));
    for (let b = 0; b < B; b++) a[b * D] = x;
    return a;
  };
  return { params, X, y: new Int32Array(B).fill(1) };
}

const FACTORS = [0.25, 0.5, 0.9, 1.1, 2];

describeBackends('the first layer: dW1 proven finite only when it is', (backend) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const inputGrad of [false, true]) {
      it(`${dtype}, ${inputGrad ? 'with' : 'without'} dX: dW1[0, :] = f·MAX for f in ${FACTORS.join(', ')}`, () => {
        const { params, X, y } = firstLayerNet(dtype);
        const step = (x: number) => forwardBackward(params, X(x), y, { backend, reduction: 'sum', inputGrad });
        const probe = step(1);
        const db1 = probe.grads.db1;
        expect(maxAbs(db1)).toBeGreaterThan(2); // so that x = f·MAX/max|db1| is finite for every f
        for (const f of FACTORS) {
          const x = f * (MAX[dtype] / maxAbs(db1)); // f·MAX alone overflows float64 for f > 1
          if (f > 1) {
            expect(() => step(x), `f = ${f}`).toThrow(overflowed('dW1'));
            continue;
          }
          const r = step(x);
          expectScaled(r.grads.dW1.subarray(0, H), db1, x, B, dtype);
          // Column 0 of X reaches nothing else: every other number is the probe's, bit for bit.
          expect(sameBits(r.grads.dW1.subarray(H), probe.grads.dW1.subarray(H)), `f = ${f}: dW1 past row 0`).toBe(true);
          for (const k of (inputGrad ? ['db1', 'dW2', 'db2', 'dX'] : ['db1', 'dW2', 'db2']) as ('db1' | 'dW2' | 'db2' | 'dX')[]) {
            expect(sameBits(r.grads[k]!, probe.grads[k]!), `f = ${f}: ${k}`).toBe(true);
          }
          expect(r.loss).toBe(probe.loss);
        }
      });
    }

    it(`${dtype}: the prepared step (forwardBackwardInto) likewise`, () => {
      const { params, X, y } = firstLayerNet(dtype);
      const seq = Sequential.mlp([D, H, C], { dtype });
      seq.params.W1.set(params.W1);
      seq.params.b1.set(params.b1);
      seq.params.W2.set(params.W2);
      seq.params.b2.set(params.b2);
      const F = dtype === 'float32' ? Float32Array : Float64Array;
      const grads = { dW1: new F(D * H), db1: new F(H), dW2: new F(H * C), db2: new F(C) };
      const step = (x: number) => seq.forwardBackwardInto(X(x), y, grads, { backend, reduction: 'sum', accumulate: false });
      step(1);
      const db1 = grads.db1.slice();
      for (const f of [0.9, 1.1]) {
        const x = f * (MAX[dtype] / maxAbs(db1)); // f·MAX alone overflows float64 for f > 1
        if (f > 1) expect(() => step(x)).toThrow(/dW1/);
        else {
          step(x);
          expectScaled(grads.dW1.subarray(0, H), db1, x, B, dtype);
        }
      }
    });

    it(`${dtype}: accumulate adds into an old dW1, which no bound covers`, () => {
      const { params, X, y } = firstLayerNet(dtype);
      const probe = forwardBackward(params, X(1), y, { backend, reduction: 'sum' });
      const x = 0.6 * (MAX[dtype] / maxAbs(probe.grads.db1));
      const out = { dW1: probe.grads.dW1.slice(), db1: probe.grads.db1.slice(), dW2: probe.grads.dW2.slice(), db2: probe.grads.db2.slice() };
      // Each step's dW1[0, :] alone is 0.6·MAX at most (finite, and provably so); the second sum is 1.2·MAX.
      const seq = Sequential.mlp([D, H, C], { dtype });
      for (const [k, t] of Object.entries(params)) seq.params[k].set(t);
      out.dW1.fill(0);
      const into = () => seq.forwardBackwardInto(X(x), y, out, { backend, reduction: 'sum', accumulate: true });
      into();
      expect(out.dW1.subarray(0, H).every(Number.isFinite)).toBe(true);
      expect(into).toThrow(/dW1/);
    });
  }
}, ['native', 'wasm']);

describeBackends('a hidden layer: dW2 proven finite from the forward ReLU bound only when it is', (backend) => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: dW2[0, :] = f·MAX for f in ${FACTORS.join(', ')}`, () => {
      // Z1[:, 0] = z in every row (X all ones, W1[:, 0] = z/D, b1[0] = 0); W2's row 0 is zero, so
      // the forward goes on as if unit 0 were not there, and dW2[0, :] = Σ_b relu(z)·dZ2[b, :] = z·db2.
      const widths = [D, HIDDEN, HIDDEN, C];
      const seq = Sequential.mlp(widths, { dtype, seed: 7 });
      const W3 = seq.params.W3;
      for (let i = 0; i < W3.length; i++) W3[i] *= 16;
      seq.params.W2.fill(0, 0, HIDDEN);
      seq.params.b1[0] = 0;
      const X = typed(dtype, new Array(B * D).fill(1));
      const y = new Int32Array(B).fill(2);
      const step = (z: number) => {
        for (let i = 0; i < D; i++) seq.params.W1[i * HIDDEN] = z / D;
        return seq.forwardBackward(X, y, { backend, reduction: 'sum' });
      };
      const probe = step(1);
      const db2 = probe.grads.db2;
      expect(maxAbs(db2)).toBeGreaterThan(2);
      for (const f of FACTORS) {
        const z = f * (MAX[dtype] / maxAbs(db2));
        if (f > 1) {
          expect(() => step(z), `f = ${f}`).toThrow(overflowed('dW2'));
          continue;
        }
        const r = step(z);
        expectScaled(r.grads.dW2.subarray(0, HIDDEN), db2, z, B, dtype);
        // Unit 0 reaches nothing else (dZ1[:, 0] = dA1[:, 0] = dZ2·W2[0, :]ᵀ = 0): the rest is the probe's, bit for bit.
        for (const k of ['dW1', 'db1', 'db2', 'dW3', 'db3'] as const) {
          expect(sameBits(r.grads[k], probe.grads[k]), `f = ${f}: ${k}`).toBe(true);
        }
        expect(sameBits(r.grads.dW2.subarray(HIDDEN), probe.grads.dW2.subarray(HIDDEN)), `f = ${f}: dW2 past row 0`).toBe(true);
      }
    });
  }
}, ['native', 'wasm']);

// The writer: X[0] (column 0 of the first row, which no weight reads in the forward) flips between
// 1 and `big` until told to stop, holding each value a few microseconds.
const FLIPPER = `
const { workerData, parentPort } = require('node:worker_threads');
const { sab, big, dtype } = workerData;
const X = dtype === 'float32' ? new Float32Array(sab) : new Float64Array(sab);
const flag = new Int32Array(workerData.flag);
parentPort.postMessage('ready');
let n = 0;
while (Atomics.load(flag, 0) === 0) {
  X[0] = (n++ & 1) ? big : 1;
  const until = performance.now() + 0.005;
  while (performance.now() < until);
}
`;

describe('X on a SharedArrayBuffer that another thread rewrites: no proof from a scan of it [native]', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: every step fails or returns finite gradients`, async () => {
      const { params, X: makeX, y } = firstLayerNet(dtype);
      const size = dtype === 'float32' ? 4 : 8;
      const sab = new SharedArrayBuffer(B * D * size);
      const X = dtype === 'float32' ? new Float32Array(sab) : new Float64Array(sab);
      X.set(makeX(0));
      // One row only: dW1[0, :] = x·dZ1[0, :], twice MAX at x = big; a product that read `big`
      // after a scan that saw 1 would overflow unseen.
      for (let b = 1; b < B; b++) X[b * D] = 0;
      const probe = forwardBackward(params, X, y, { backend: 'native', reduction: 'sum' });
      const big = Math.min(MAX[dtype], 2 * B * (MAX[dtype] / maxAbs(probe.grads.db1)));
      expect(big * (maxAbs(probe.grads.db1) / B) / MAX[dtype]).toBeGreaterThan(1.5);
      const flag = new SharedArrayBuffer(4);
      const w = new Worker(FLIPPER, { eval: true, workerData: { sab, flag, big, dtype } });
      await new Promise((r) => w.once('message', r));
      let failed = 0, finite = 0;
      try {
        for (let i = 0; i < 3000; i++) {
          let r;
          try {
            r = forwardBackward(params, X, y, { backend: 'native', reduction: 'sum' });
          } catch (e) {
            expect((e as Error).message).toMatch(/dW1 overflowed/);
            failed++;
            continue;
          }
          expect(r.grads.dW1.every(Number.isFinite), `step ${i}: dW1 returned with a value that is not finite`).toBe(true);
          finite++;
        }
      } finally {
        Atomics.store(new Int32Array(flag), 0, 1);
        await w.terminate();
      }
      // Both outcomes happened: the writer really raced the steps.
      expect(failed).toBeGreaterThan(0);
      expect(finite).toBeGreaterThan(0);
    });
  }
});

describeBackends('a proven dW is written over whatever out held (beta 0 reads none of it)', (backend) => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: out filled with NaN and ±Infinity before a step the proof covers`, () => {
      const { params, X, y } = firstLayerNet(dtype);
      const fresh = forwardBackward(params, X(0.5), y, { backend, reduction: 'sum', inputGrad: true });
      const F = dtype === 'float32' ? Float32Array : Float64Array;
      const stale = (n: number) => {
        const a = new F(n);
        for (let i = 0; i < n; i++) a[i] = [NaN, Infinity, -Infinity][i % 3];
        return a;
      };
      const out = { dX: stale(B * D), dW1: stale(D * H), db1: stale(H), dW2: stale(H * C), db2: stale(C) };
      const r = forwardBackward(params, X(0.5), y, { backend, reduction: 'sum', inputGrad: true, out });
      for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) expect(sameBits(r.grads[k]!, fresh.grads[k]!), k).toBe(true);
    });
  }
}, ['native', 'wasm']);
