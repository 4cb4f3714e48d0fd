// The Trainer's passes over memory on the core addon's thread pool (native/core/pool.h's chunks):
// the optimizer update (native/core/optimizer.h), the minibatch gather and fit's check that X is
// finite (native/core/data.h). Each element is computed alone, so the results may not depend on
// how the pass is cut between threads. Held to truths outside that code:
// 1. the update of a tensor long enough to be cut (≥ 2^15 elements: several parts and an unaligned
//    tail), at 1 and 2 threads, ends every rule of the golden trajectories with LibTorch's
//    torch::optim bits; an update that overflows in one part only is undone in every part;
// 2. the gather copies the very rows a JS loop picks, in chunks of indices each checked before use;
// 3. the scan finds a NaN or ±Infinity wherever it lies, as Number.isFinite does element by
//    element, and fit names its index.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { getNumThreads, initParams, setNumThreads, Trainer } from '../lib/index';
import { coreBinding } from '../lib/binding';
import { optimizerConfig, type OptimizerOptions, torchOptimizerRun } from '../lib/train/optimizer';
import { allocateState } from '../lib/train/state';
import { applyUpdate } from '../lib/train/update';
import type { Dtype, FloatArray } from '../lib/types';
import { backendTitle, randomArray, randomLabels, sameBits, skipReason, thrown, typed } from './helpers';

const THREADS = getNumThreads();
afterEach(() => setNumThreads(THREADS));

// fit's scan goes through the addon's allFinite (lib/train/loop.ts, which takes it once, on first
// use): wrapped before any use, so a test can make it report what a scan racing another thread's
// write would (a NaN that is gone by the JS scan's turn).
const realAllFinite = coreBinding().allFinite;
let racing = false;
coreBinding().allFinite = (a) => (racing ? false : realAllFinite(a));

/** Longer than kParallelUpdate (2^15) three times over, and not a multiple of the 64-element cut. */
const N = 3 * 2 ** 15 + 5;

interface Run { name: string; dtype: Dtype; options: OptimizerOptions; lr: number }
const runs = (JSON.parse(readFileSync(join(__dirname, 'fixtures', 'optim', 'trajectories.json'), 'utf8')) as { kernels: { AVX2: Run[] } }).kernels.AVX2;

/** The Trainer's update (lib/train/update.ts over a TrainState, the native rule), once per gradient. */
function nativeRun(opts: OptimizerOptions, W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const dtype: Dtype = W0 instanceof Float32Array ? 'float32' : 'float64';
  const s = allocateState({ dtype, D: 1, C: 1, batchSize: 1, lr, seed: 0, backend: 'native', optimizer: optimizerConfig(opts), schedule: 'constant', layers: [] }, { W: W0 });
  for (const g of grads) {
    s.grads.W.set(g);
    applyUpdate(s, lr);
  }
  return s.params.W.slice();
}

const torchSkip = skipReason('torch');
describe.skipIf(torchSkip)(backendTitle(`the update cut between threads (N = ${N}) ends with LibTorch's torch::optim bits`, 'torch', torchSkip), () => {
  for (const r of runs) {
    it(`${r.dtype} ${r.name}: 1 and 2 threads, 12 steps`, () => {
      const W0 = typed(r.dtype, randomArray(N, 11));
      const grads = Array.from({ length: 12 }, (_, s) => typed(r.dtype, randomArray(N, 100 + s, 10 ** (s % 4 - 2))));
      const want = W0.slice();
      torchOptimizerRun(r.options, want, grads, r.lr);
      expect(sameBits(want, W0)).toBe(false); // the run moved W
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        expect(sameBits(nativeRun(r.options, W0, grads, r.lr), want), `${threads} thread(s)`).toBe(true);
      }
    });
  }
});

describe('an update that overflows in one part only is undone in every part', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const at of [0, 2 ** 15 + 17, N - 1]) {
      it(`${dtype}, momentum, the overflow at index ${at} of ${N}, 2 threads`, () => {
        setNumThreads(2);
        const s = allocateState({ dtype, D: 1, C: 1, batchSize: 1, lr: 0.1, seed: 0, backend: 'native', optimizer: optimizerConfig({ optimizer: 'sgd', momentum: 0.9 }), schedule: 'constant', layers: [] },
          { W: typed(dtype, randomArray(N, 5)) });
        s.grads.W.set(typed(dtype, randomArray(N, 6)));
        applyUpdate(s, 0.1);
        const W = s.params.W.slice();
        const m = s.slots.W.m!.slice();
        const g = typed(dtype, randomArray(N, 7));
        g[at] = dtype === 'float32' ? 3e38 : 1.7e308;
        s.grads.W.set(g);
        const e = thrown(() => applyUpdate(s, 1e10));
        expect(e).toBeInstanceOf(RangeError);
        expect(e.message).toContain(`Infinity at index ${at} `);
        expect(sameBits(s.params.W, W) && sameBits(s.slots.W.m!, m)).toBe(true);
      });
    }
  }
});

describe('the minibatch gather on the pool: the rows a JS loop picks', () => {
  const D = 100;
  const rowsOf = (n: number) => Int32Array.from(randomArray(n, 3), (v) => Math.floor(((v + 1) / 2) * 5000) % 5000);
  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: 1,300 rows of ${D} (three chunks of indices, each cut between threads) at 1 and 2 threads`, () => {
      const X = typed(dtype, randomArray(5000 * D, 1));
      const y = Int32Array.from({ length: 5000 }, (_, i) => i % 7);
      const order = rowsOf(1400);
      const want = typed(dtype, new Float64Array(1300 * D));
      for (let b = 0; b < 1300; b++) want.set(X.subarray(order[b + 50] * D, order[b + 50] * D + D), b * D);
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        const Xb = typed(dtype, new Float64Array(1300 * D));
        const yb = new Int32Array(1300);
        coreBinding().gatherRows(X, D, order, 50, 1300, Xb, y, yb);
        expect(sameBits(Xb, want)).toBe(true);
        expect(Array.from(yb)).toEqual(Array.from(order.subarray(50, 1350), (r) => r % 7));
      }
    });
  }
  it('an index outside X in a later chunk is a RangeError naming it', () => {
    setNumThreads(2);
    const X = new Float32Array(5000 * D);
    const order = rowsOf(1300);
    order[1100] = 5000;
    const e = thrown(() => coreBinding().gatherRows(X, D, order, 0, 1300, new Float32Array(1300 * D), new Int32Array(5000), new Int32Array(1300)));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected a row index in [0, 5000) but received 5000');
  });
});

describe("fit's check of X on the pool finds a NaN or ±Infinity wherever it lies", () => {
  it('allFinite agrees with Number.isFinite at every size to 3 parts and at each part boundary, both dtypes, 1 and 2 threads', () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const sizes = dtype === 'float32' ? [1, 15, 16384, 16385, 65536 + 3, 200003] : [1, 7, 8192, 8193, 32768 + 3, 100003];
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        for (const n of sizes) {
          const a = typed(dtype, randomArray(n, n));
          expect(coreBinding().allFinite(a)).toBe(true);
          for (const at of new Set([0, 1, n >> 1, (n >> 2) * 3, n - 2, n - 1].filter((i) => i >= 0 && i < n))) {
            for (const bad of [NaN, Infinity, -Infinity]) {
              const b = a.slice();
              b[at] = bad;
              expect(b.every((x) => Number.isFinite(x))).toBe(false);
              expect(coreBinding().allFinite(b), `${dtype} n ${n} at ${at} ${bad}`).toBe(false);
            }
          }
        }
      }
    }
  });

  it('a NaN the native scan saw and the JS scan did not (another thread rewrote X): a RangeError saying so, no step taken', () => {
    const X = typed('float32', randomArray(4000 * 64, 9));
    const t = new Trainer(initParams({ D: 64, H: 8, C: 3 }, { seed: 1, dtype: 'float32' }), { batchSize: 100 });
    racing = true;
    try {
      const e = thrown(() => t.fitSync(X, randomLabels(4000, 3, 4), { epochs: 1 }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe('Expected finite values in X but received a non-finite value that another thread rewrote while it was being checked');
    } finally {
      racing = false;
    }
    expect(t.steps).toBe(0);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: fitSync names the index of a NaN in the last rows of 4,000 × 64 (past 64 KB: cut between threads)`, () => {
      setNumThreads(2);
      const X = typed(dtype, randomArray(4000 * 64, 9));
      const y = randomLabels(4000, 3, 4);
      X[4000 * 64 - 70] = NaN;
      const t = new Trainer(initParams({ D: 64, H: 8, C: 3 }, { seed: 1, dtype }), { batchSize: 100 });
      const e = thrown(() => t.fitSync(X, y, { epochs: 1 }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe(`Expected finite values in X but received NaN at index ${4000 * 64 - 70}`);
      expect(t.steps).toBe(0);
      X[4000 * 64 - 70] = 0.5;
      t.fitSync(X, y, { epochs: 1 });
      expect(t.steps).toBe(40);
    });
  }
});
