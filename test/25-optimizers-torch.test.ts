// The Trainer's update rules (lib/train/optimizer.ts) against LibTorch's own optimizers
// (torch::optim through the torch addon's optimizerRun): the same W, the same gradient sequence,
// fresh state on both sides, compared normwise in units of the dtype's epsilon. Also optimizerRun's
// argument checks. Skipped only where the LibTorch addon is not built and cannot be (test/helpers.ts skipReason).
import { afterAll, describe, expect, it } from 'vitest';
import { coreBinding } from '../lib/binding';
import { torchBinding } from '../lib/backends/torch';
import { torchOptimizerRun } from '../lib/train/optimizer';
import { OPTIMIZER_CODE, OPTIMIZERS, optimizerConfig, type OptimizerName, type OptimizerOptions, slotLengths, update } from '../lib/train/optimizer';
import type { Dtype, FloatArray } from '../lib/types';
import { backendTitle, errEps, randomArray, skipReason, typed } from './helpers';

// max|W_ts − W_torch| / max|W_torch| in eps of the dtype. Both sides apply the same operations in
// the same order with the same constants, rounded to the dtype after every op; what is left is
// ATen's fused multiply-add on doubles and an ulp here and there in Adam (test/36 counts the
// bit-identical entries), well under a unit over ten steps.
const TOL_EPS = 8;

const N = 50;
const STEPS = 10;
const SEEDS = [1, 2, 3];
const DTYPES: Dtype[] = ['float64', 'float32'];
const DECAYS = [0, 0.01];
const LR: Record<OptimizerName, number> = { sgd: 0.1, momentum: 0.1, nesterov: 0.1, adam: 0.01, adamw: 0.01 };
// Gradients of varied size from step to step, so momentum and Adam's moments do not settle.
const SCALES = [1, 0.1, 2, 0.01, 0.5, 1, 3, 0.05, 1, 0.2];

/** W0 and the gradient sequence, in the dtype (float32 values are exact float32 on both sides). */
function problem(dtype: Dtype, seed: number, gradScale = 1): { W0: FloatArray; grads: FloatArray[] } {
  const W0 = typed(dtype, randomArray(N, seed));
  const grads = Array.from({ length: STEPS }, (_, s) => typed(dtype, randomArray(N, 1000 * seed + s + 1, SCALES[s] * gradScale)));
  return { W0, grads };
}

/** lib/train/optimizer.ts as the Trainer calls it: slots in W's dtype, t = 1..n. */
function runTs(opts: OptimizerOptions, W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const cfg = optimizerConfig(opts);
  const W = W0.slice();
  const len = slotLengths(cfg.name, W.length);
  const make = (k: number) => (k ? (W instanceof Float32Array ? new Float32Array(k) : new Float64Array(k)) : null);
  const slot = { m: make(len.m), v: make(len.v) };
  grads.forEach((g, i) => update(cfg, W, g, slot, lr, i + 1));
  return W;
}

/** native/core/optimizer.h through the core addon, as the Trainer calls it on the native backend. */
function runNative(opts: OptimizerOptions, W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const cfg = optimizerConfig(opts);
  const W = W0.slice();
  const len = slotLengths(cfg.name, W.length);
  const make = (k: number) => (k ? (W instanceof Float32Array ? new Float32Array(k) : new Float64Array(k)) : null);
  const m = make(len.m);
  const v = make(len.v);
  grads.forEach((g, i) =>
    coreBinding().optimizerUpdate(W, g, m, v, OPTIMIZER_CODE[cfg.name], lr, i + 1, cfg.momentum, cfg.beta1, cfg.beta2, cfg.epsilon, cfg.weightDecay),
  );
  return W;
}
const IMPLEMENTATIONS = { ts: runTs, native: runNative } as const;

function runTorch(opts: OptimizerOptions, W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const W = W0.slice();
  torchOptimizerRun(opts, W, grads, lr);
  return W;
}

// Worst error seen per optimizer × dtype, printed at the end (the numbers the report quotes).
const worst = new Map<string, number>();
function record(key: string, e: number): void {
  worst.set(key, Math.max(worst.get(key) ?? 0, e));
}

const skip = skipReason('torch');

describe.skipIf(skip)(backendTitle('lib/train/optimizer.ts against torch::optim', 'torch', skip), () => {
  afterAll(() => {
    const rows = [...worst.entries()].map(([k, e]) => `  ${k.padEnd(34)} ${e.toFixed(3)} eps`);
    console.log(`worst normwise error, TS update vs torch::optim (tolerance ${TOL_EPS} eps):\n${rows.join('\n')}`);
  });

  for (const [impl, run] of Object.entries(IMPLEMENTATIONS)) {
  for (const name of OPTIMIZERS) {
    for (const weightDecay of DECAYS) {
      for (const dtype of DTYPES) {
        it(`${impl}: ${name}, weightDecay ${weightDecay}, ${dtype}: ${STEPS} steps agree within ${TOL_EPS} eps`, () => {
          for (const seed of SEEDS) {
            const { W0, grads } = problem(dtype, seed);
            const opts: OptimizerOptions = { optimizer: name, weightDecay };
            const want = runTorch(opts, W0, grads, LR[name]);
            const got = run(opts, W0, grads, LR[name]);
            // Both really moved W (an optimizer that did nothing would agree with one that did nothing).
            expect(errEps(want, W0, dtype)).toBeGreaterThan(1e3);
            const e = errEps(got, want, dtype);
            record(`${impl} ${name} ${dtype}`, e);
            expect(e, `${name} wd=${weightDecay} ${dtype} seed ${seed}`).toBeLessThanOrEqual(TOL_EPS);
          }
        });
      }
    }
  }

  // Non-default hyperparameters, and gradients small enough (~1e-3) that ε = 1e-4 is a large part of
  // Adam's denominator: the placement of ε relative to the bias correction then shows.
  for (const name of OPTIMIZERS) {
    for (const dtype of DTYPES) {
      const adam = name === 'adam' || name === 'adamw';
      const sgd = name === 'sgd'; // plain SGD: a momentum would make it momentum SGD
      it(`${impl}: ${name}, ${dtype}, ${adam ? 'β (0.8, 0.99), ε 1e-4, ' : sgd ? '' : 'μ 0.5, '}wd 0.1, small gradients`, () => {
        // Each optimizer its own family's options (another family's is a TypeError, as torch.optim's).
        const opts: OptimizerOptions = adam
          ? { optimizer: name, beta1: 0.8, beta2: 0.99, epsilon: 1e-4, weightDecay: 0.1 }
          : sgd ? { optimizer: name, weightDecay: 0.1 } : { optimizer: name, momentum: 0.5, weightDecay: 0.1 };
        const { W0, grads } = problem(dtype, 7, 1e-3);
        const want = runTorch(opts, W0, grads, 0.05);
        const got = run(opts, W0, grads, 0.05);
        expect(errEps(want, W0, dtype)).toBeGreaterThan(1e3);
        const e = errEps(got, want, dtype);
        record(`${impl} ${name} ${dtype} (non-default)`, e);
        expect(e).toBeLessThanOrEqual(TOL_EPS);
      });
    }
  }
  }

  it('each call starts from fresh state, and W is written in place', () => {
    const { W0, grads } = problem('float64', 4);
    const W = W0.slice();
    torchOptimizerRun({ optimizer: 'adam' }, W, grads.slice(0, 5), 0.01);
    torchOptimizerRun({ optimizer: 'adam' }, W, grads.slice(5), 0.01);
    const twice = runTs({ optimizer: 'adam' }, runTs({ optimizer: 'adam' }, W0, grads.slice(0, 5), 0.01), grads.slice(5), 0.01);
    expect(errEps(W, twice, 'float64')).toBeLessThanOrEqual(TOL_EPS);
    // One run of ten steps is different (Adam's step count and moments carry on).
    expect(errEps(W, runTs({ optimizer: 'adam' }, W0, grads, 0.01), 'float64')).toBeGreaterThan(1e3);
  });

  it('no gradients, or an empty W, leaves W as it was', () => {
    const W = new Float64Array([1, 2, 3]);
    torchOptimizerRun({ optimizer: 'adamw', weightDecay: 0.5 }, W, [], 0.1);
    expect([...W]).toEqual([1, 2, 3]);
    expect(() => torchOptimizerRun({ optimizer: 'sgd' }, new Float32Array(0), [new Float32Array(0)], 0.1)).not.toThrow();
  });

  describe('bad input, from the TS helper', () => {
    const W = new Float64Array(4);
    const g = [new Float64Array(4)];
    it('an unknown optimizer is a RangeError', () =>
      expect(() => torchOptimizerRun({ optimizer: 'rmsprop' as OptimizerName }, W, g, 0.1)).toThrow(RangeError));
    it('W of another kind is a TypeError', () =>
      expect(() => torchOptimizerRun({}, [0, 0] as unknown as FloatArray, g, 0.1)).toThrow(/Expected a Float64Array or Float32Array for W but received Array of length 2/));
    it('grads not an array is a TypeError', () =>
      expect(() => torchOptimizerRun({}, W, g[0] as unknown as FloatArray[], 0.1)).toThrow(/Expected an Array of typed arrays for grads/));
    it("a gradient of another dtype is a TypeError naming it", () =>
      expect(() => torchOptimizerRun({}, W, [g[0], new Float32Array(4)], 0.1)).toThrow(/Expected a Float64Array \(the dtype of W\) for grads\[1\] but received Float32Array of length 4/));
    it('a gradient of another length is a RangeError naming it', () =>
      expect(() => torchOptimizerRun({}, W, [new Float64Array(3)], 0.1)).toThrow(/Expected 4 elements \(the length of W\) for grads\[0\] but received Float64Array of length 3/));
    it('a negative or non-finite lr is a RangeError', () => {
      expect(() => torchOptimizerRun({}, W, g, -1)).toThrow(RangeError);
      expect(() => torchOptimizerRun({}, W, g, NaN)).toThrow(RangeError);
    });
  });

  describe('bad input, straight to the addon (its own checks)', () => {
    const raw = () => torchBinding();
    const W = new Float64Array(4);
    const g = [new Float64Array(4)];
    const call = (...args: unknown[]) => () => (raw().optimizerRun as (...a: unknown[]) => void)(...args);
    const hyper = [0.1, 0.9, 0.9, 0.999, 1e-8, 0];
    it('name', () => {
      expect(call(3, W, g, ...hyper)).toThrow(TypeError);
      expect(call('rmsprop', W, g, ...hyper)).toThrow(/Expected one of 'sgd', 'momentum', 'nesterov', 'adam', 'adamw' for name but received "rmsprop"/);
    });
    it('W', () => {
      expect(call('sgd', new Int32Array(4), g, ...hyper)).toThrow(/Expected a Float64Array or Float32Array for W but received Int32Array of length 4/);
      expect(call('sgd')).toThrow(TypeError);
    });
    it('grads', () => {
      expect(call('sgd', W, null, ...hyper)).toThrow(/Expected an Array of typed arrays for grads but received null/);
      expect(call('sgd', W, [new Float32Array(4)], ...hyper)).toThrow(/Expected a Float64Array \(the dtype of W\) for grads\[0\] but received Float32Array of length 4/);
      expect(call('sgd', W, [g[0], 'x'], ...hyper)).toThrow(TypeError);
      expect(call('sgd', W, [new Float64Array(5)], ...hyper)).toThrow(/Expected 4 elements \(the length of W\) for grads\[0\] but received Float64Array of length 5/);
    });
    it('a gradient over W\'s memory is refused (W changes between steps)', () => {
      const buf = new Float64Array(6);
      expect(call('sgd', buf.subarray(0, 4), [buf.subarray(2, 6)], ...hyper)).toThrow(/Expected grads\[0\] not to share memory with W/);
      expect(call('sgd', buf.subarray(0, 3), [buf.subarray(3, 6)], ...hyper)).not.toThrow();
    });
    it('non-finite values', () => {
      expect(call('sgd', new Float64Array([0, NaN, 0, 0]), g, ...hyper)).toThrow(/Expected finite values in W but received NaN at index 1/);
      expect(call('sgd', W, [new Float64Array([0, 0, Infinity, 0])], ...hyper)).toThrow(/Expected finite values in grads\[0\] but received Infinity at index 2/);
    });
    it('hyperparameters', () => {
      expect(call('sgd', W, g, '0.1', 0.9, 0.9, 0.999, 1e-8, 0)).toThrow(/Expected a number for lr but received "0.1"/);
      expect(call('sgd', W, g, -0.1, 0.9, 0.9, 0.999, 1e-8, 0)).toThrow(/Expected a finite number >= 0 for lr but received -0.1/);
      expect(call('adam', W, g, 0.1, 0.9, 1, 0.999, 1e-8, 0)).toThrow(/Expected a number in \[0, 1\) for beta1 but received 1/);
      expect(call('adam', W, g, 0.1, 0.9, 0.9, 0.999, 1e-8, Infinity)).toThrow(/Expected a finite number >= 0 for weightDecay but received Infinity/);
      expect(call('nesterov', W, g, 0.1, 0, 0.9, 0.999, 1e-8, 0)).toThrow(RangeError);
      expect(call('adam', W, g, 0.1, 0.9, 0.9, 0.999)).toThrow(/Expected a number for epsilon but received undefined/);
    });
  });
});
