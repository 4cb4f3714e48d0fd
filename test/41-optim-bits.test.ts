// torch.optim to the bit (issue 13, item 4's optimizer steps): 200 steps of every rule, fed the same
// gradients, end with the very bits of PyTorch Python's torch.optim (goldens recorded by
// test/fixtures/optim/make.py, so this runs without Python torch) and of LibTorch's torch::optim
// (live, through the torch addon). The update runs as the Trainer runs it (lib/train/update.ts
// over a TrainState): native/core/optimizer.h on the native backend, lib/train/optimizer.ts on ts.
//
// What makes the bits the same (native/core/optimizer.h says why): torch.optim's constants in
// double rounded once to the dtype, and ATen's roundings: add(alpha) and addcmul are fused
// multiply-adds in its AVX2 and AVX512 kernels and not in its DEFAULT ones (ATEN_CPU_CAPABILITY=
// default, or a CPU without AVX2), addcdiv never. Each kernel set is held to its own goldens, and
// live to PyTorch Python run under each ATEN_CPU_CAPABILITY where /usr/bin/python3 has torch.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initParams, Trainer } from '../lib';
import { torchBinding } from '../lib/backends/torch';
import { coreBinding } from '../lib/binding';
import { fma32, fma64 } from '../lib/train/fma';
import { assumedCapability, type AtenCapability, atenCapability, type OptimizerOptions, torchOptimizerRun } from '../lib/train/optimizer';
import type { Dtype, FloatArray } from '../lib/types';
import { atenKernelSetsHere, backendTitle, errEps, skipReason, TORCH_PYTHON, torchPythonSkip, trainerUpdateRun, withCapability } from './helpers';

interface Run { name: string; dtype: Dtype; options: OptimizerOptions; lr: number; W: string }
interface Goldens {
  torch: string; N: number; steps: number; scales: number[]; seed: Record<Dtype, number>;
  /** The runs under each of LibTorch's kernel sets (recorded: DEFAULT and AVX2). */
  kernels: Partial<Record<AtenCapability, Run[]>>;
  /** Whether the recording machine ran the AVX512 kernels too and they gave AVX2's bits (make.py checks). */
  avx512SameAsAvx2?: boolean;
}
const golden = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'optim', 'trajectories.json'), 'utf8')) as Goldens;

/** ATEN_CPU_CAPABILITY's value for each kernel set. */
const SETTING: Record<AtenCapability, string> = { DEFAULT: 'default', AVX2: 'avx2', AVX512: 'avx512' };


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

/** n values of f(i) in the dtype (each rounded once to it). */
function filled(dtype: Dtype, n: number, f: (i: number) => number): FloatArray {
  const a = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

/** W0 and the gradients of make.py's inputs(seed, dtype), for any N. */
function inputs(seed: number, dtype: Dtype, N: number, steps: number): { W0: FloatArray; grads: FloatArray[] } {
  const value = stream(seed);
  const W0 = filled(dtype, N, value);
  const grads = Array.from({ length: steps }, (_, s) => {
    const scale = golden.scales[s % golden.scales.length];
    return filled(dtype, N, () => value() * scale);
  });
  return { W0, grads };
}

function decode(dtype: Dtype, b64: string): FloatArray {
  const bytes = Buffer.from(b64, 'base64');
  const copy = new Uint8Array(bytes); // aligned
  return dtype === 'float64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
}


/** The fraction of entries with the very same bits. */
function identical(a: FloatArray, b: FloatArray): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (Object.is(a[i], b[i])) same++;
  return same / a.length;
}

/**
 * What each implementation reaches after 200 steps (the fraction of W bit-identical): every bit,
 * on both, under every kernel set. Before the FMAs (ATen's add(alpha) and addcmul), native float64
 * had 19–59% of W identical after 200 steps on AVX2, float32 Adam 88%; ts float64 20–60%, float32
 * Adam 87–92%. Fused under DEFAULT too (before the rules asked for the kernel set): 20–34% of W
 * identical for SGD and momentum, 60–82% for Adam and AdamW, both dtypes and both rules (≤ 2.7 eps).
 */
const bound = (_backend: 'native' | 'ts', _dtype: Dtype, _options: OptimizerOptions): number => 1;

const figures: string[] = [];
afterAll(() => console.log(`the fraction of W bit-identical after ${golden.steps} steps:\n${figures.join('\n')}`));
const fig = (who: string, r: { name: string; dtype: Dtype }, same: number, e: number) =>
  figures.push(`  ${who.padEnd(22)} ${r.dtype} ${r.name.padEnd(52)} ${(100 * same).toFixed(2).padStart(6)}% (${e.toFixed(3)} eps)`);

/** The kernel sets the goldens hold, with the runs each is held to (AVX512 to AVX2's, where the recording checked them equal). */
const recorded: [AtenCapability, Run[]][] = [
  ...(Object.entries(golden.kernels) as [AtenCapability, Run[]][]),
  ...(golden.avx512SameAsAvx2 && golden.kernels.AVX2 ? [['AVX512', golden.kernels.AVX2] as [AtenCapability, Run[]]] : []),
];

/** Each run replayed under the kernel set its goldens were recorded with: the failures, with the fraction identical. */
function replay(capability: AtenCapability, runs: Run[], backend: 'native' | 'ts', who: string): string[] {
  return withCapability(SETTING[capability], () => {
    expect(atenCapability()).toBe(capability); // the rules see the kernel set the goldens ran
    const failures: string[] = [];
    for (const r of runs) {
      const { W0, grads } = inputs(golden.seed[r.dtype], r.dtype, golden.N, golden.steps);
      const torch = decode(r.dtype, r.W);
      expect(errEps(torch, W0, r.dtype)).toBeGreaterThan(1e3); // the run moved W far
      const got = trainerUpdateRun(r.options, backend, W0, grads, r.lr);
      const same = identical(got, torch);
      fig(`${backend} vs ${who} ${capability}`, r, same, errEps(got, torch, r.dtype));
      if (same < bound(backend, r.dtype, r.options)) failures.push(`${r.dtype} ${r.name}: ${(100 * same).toFixed(2)}%`);
    }
    return failures;
  });
}

describe(`${golden.steps} steps against PyTorch Python ${golden.torch}'s torch.optim (test/fixtures/optim/trajectories.json), N = ${golden.N}`, () => {
  it('the goldens hold DEFAULT and AVX2, and the two kernel sets end on other bits in every run', () => {
    const { DEFAULT, AVX2 } = golden.kernels;
    expect(DEFAULT?.length).toBeGreaterThan(0);
    expect(AVX2?.map((r) => `${r.dtype} ${r.name}`)).toEqual(DEFAULT!.map((r) => `${r.dtype} ${r.name}`));
    DEFAULT!.forEach((r, i) => expect(r.W, `${r.dtype} ${r.name}`).not.toBe(AVX2![i].W));
  });
  for (const [capability, runs] of recorded) {
    for (const backend of ['native', 'ts'] as const) {
      it(`${backend}, ATEN_CPU_CAPABILITY=${SETTING[capability]}: every run's W bit-identical (${runs.length} runs)`, () => {
        expect(replay(capability, runs, backend, 'python')).toEqual([]);
      });
    }
  }
});

describe('the kernel set the rules assume', () => {
  it("without the core addon (the pure-TS package): ATEN_CPU_CAPABILITY's, else AVX2 — the addon's answer on a CPU with AVX2 and FMA", () => {
    const hasAvx2 = withCapability(null, () => coreBinding().atenCapability()) === 'AVX2';
    for (const v of [null, 'default', 'avx2', 'avx512', 'sse9', 'AVX2']) {
      const addon = withCapability(v, () => coreBinding().atenCapability());
      if (hasAvx2 || v === 'default') expect(assumedCapability(v ?? undefined), String(v)).toBe(addon);
    }
  });
});

// PyTorch Python live: the goldens regenerated now, each kernel set in a process of its own (ATen
// reads ATEN_CPU_CAPABILITY once), where /usr/bin/python3 has torch and this CPU runs the set.
const python = TORCH_PYTHON;
const pythonSkip = torchPythonSkip();
const runsHere: Record<string, boolean> = atenKernelSetsHere;

describe.skipIf(pythonSkip !== null)(`${golden.steps} steps against PyTorch Python live${pythonSkip ? ` (skipped: ${pythonSkip})` : ''}`, () => {
  const settings = [null, 'default', 'avx2', 'avx512'] as const;
  it.each(settings.map((v) => [v ?? 'unset', v] as const))('ATEN_CPU_CAPABILITY %s: native and ts end on the bits regenerated now', (_, v) => {
    if (v !== null && !runsHere[v]) return; // this CPU cannot run those kernels
    const dir = mkdtempSync(join(tmpdir(), 'hg41-live-'));
    try {
      const env = { ...process.env };
      if (v === null) delete env.ATEN_CPU_CAPABILITY;
      else env.ATEN_CPU_CAPABILITY = v;
      const r = spawnSync(python, [join(__dirname, 'fixtures', 'optim', 'make.py'), dir], { encoding: 'utf8', env });
      expect(r.status, r.stderr).toBe(0);
      const live = JSON.parse(readFileSync(join(dir, 'trajectories.json'), 'utf8')) as Goldens;
      const [[capability, runs]] = Object.entries(live.kernels) as [AtenCapability, Run[]][];
      expect(withCapability(v, atenCapability)).toBe(capability); // the rules' detection is ATen's
      for (const backend of ['native', 'ts'] as const) expect(replay(capability, runs, backend, 'live'), backend).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

const skip = skipReason('torch');
describe.skipIf(skip)(backendTitle(`${golden.steps} steps against LibTorch's torch::optim`, 'torch', skip), () => {
  // LibTorch in this process runs the kernel set ATEN_CPU_CAPABILITY named when it loaded, which
  // the rules read at every step: the same while nothing changes the variable in between.
  const here = atenCapability();
  it("LibTorch's torch::optim (C++) ends with PyTorch Python's bits on the goldens' inputs: the two references agree", () => {
    const runs = golden.kernels[here === 'AVX512' && golden.avx512SameAsAvx2 ? 'AVX2' : here];
    if (!runs) return; // no goldens for this kernel set
    for (const r of runs) {
      const { W0, grads } = inputs(golden.seed[r.dtype], r.dtype, golden.N, golden.steps);
      const W = W0.slice();
      torchOptimizerRun(r.options, W, grads, r.lr);
      expect(identical(W, decode(r.dtype, r.W)), `${r.dtype} ${r.name}`).toBe(1);
    }
  });

  // A larger W (4099 = 256·16 + 3: long vectorized runs and a tail) and other inputs.
  const N = 4099;
  for (const r of golden.kernels.AVX2!) {
    for (const backend of ['native', 'ts'] as const) {
      const want = bound(backend, r.dtype, r.options);
      it(`${backend} ${r.dtype} ${r.name}, N = ${N}, ${here}: ≥ ${100 * want}% of W bit-identical`, () => {
        const { W0, grads } = inputs(golden.seed[r.dtype] + 10, r.dtype, N, golden.steps);
        const W = W0.slice();
        torchOptimizerRun(r.options, W, grads, r.lr);
        const got = trainerUpdateRun(r.options, backend, W0, grads, r.lr);
        const same = identical(got, W);
        fig(`${backend} vs libtorch ${here}`, r, same, errEps(got, W, r.dtype));
        expect(same).toBeGreaterThanOrEqual(want);
      });
    }
  }

  it('the addon is the one the package loads', () => {
    expect(typeof torchBinding().optimizerRun).toBe('function');
  });
});

describe('the FMA in JavaScript (lib/train/fma.ts) is the hardware FMA, bit for bit', () => {
  /**
   * The truth: the C++ rule's SGD step W ← fma(−lr, g, W) (std::fma, one vfmadd on this machine),
   * with lr = −a, over whole arrays at once.
   */
  function hardware(dtype: Dtype, a: number, b: FloatArray, c: FloatArray): FloatArray {
    const W = c.slice();
    // The rule as LibTorch's AVX2 kernels round it (fused), whatever ATEN_CPU_CAPABILITY says here.
    withCapability('avx2', () => coreBinding().optimizerUpdate(W, b, null, null, 0, -a, 1, 0, 0.9, 0.999, 1e-8, 0));
    return W;
  }
  const value = stream(7);
  /** Values over 40 binades, so products and sums round at every scale. */
  const wide = () => value() * 2 ** Math.floor((value() + 1) * 20 - 20);

  for (const dtype of ['float64', 'float32'] as Dtype[]) {
    it(`${dtype}: random, cancelling (c ≈ −a·b) and near-halfway sums, 400,000 cases`, () => {
      const A = dtype === 'float64' ? Float64Array : Float32Array;
      const emulated = dtype === 'float64' ? fma64 : (x: number, y: number, z: number) => Math.fround(fma32(x, y, z));
      const unfused = (x: number, y: number, z: number) => (dtype === 'float64' ? x * y + z : Math.fround(x * y + z));
      let wrong = 0;
      let unfusedWrong = 0;
      for (let round = 0; round < 100; round++) {
        const a = A.of(wide())[0];
        const b = filled(dtype, 4000, wide);
        const c = filled(dtype, b.length, (i) => {
          const p = a * b[i];
          switch (i % 4) {
            case 0: return wide();
            case 1: return -p * (1 + (value() * 2 ** -40)); // cancellation: the product's low bits decide
            case 2: return p * 2 ** (Math.floor(value() * 30) + 1) + value() * p * 2 ** -50; // the product near half an ulp of c
            default: return p * (value() * 2 ** -20);
          }
        });
        const want = hardware(dtype, a, b, c);
        for (let i = 0; i < b.length; i++) {
          if (!Object.is(A.of(emulated(a, b[i], c[i]))[0], want[i])) wrong++;
          if (!Object.is(A.of(unfused(a, b[i], c[i]))[0], want[i])) unfusedWrong++;
        }
      }
      expect(wrong).toBe(0);
      if (dtype === 'float64') expect(unfusedWrong).toBeGreaterThan(10_000); // the cases do tell fused from unfused
    });
  }

  it('float32: a double rounding (the double sum lands halfway between two floats) is undone', () => {
    // a·b + c = 1 + 2^-23 + 2^-24 − 2^-70: just below halfway, so the FMA keeps 1 + 2^-23; the
    // double sum rounds to the halfway point, which float32 rounds to even, 1 + 2^-22.
    const a = 1 + 2 ** -23, b = (1 - 2 ** -23) * 2 ** -24, c = 1 + 2 ** -23;
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22);
    expect(Math.fround(fma32(a, b, c))).toBe(1 + 2 ** -23);
    expect(Math.fround(fma32(-a, b, -c))).toBe(-(1 + 2 ** -23));
    expect(hardware('float32', a, Float32Array.of(b), Float32Array.of(c))[0]).toBe(1 + 2 ** -23);
  });
  it('float64: a sum whose last rounding is halfway once the product\'s error is rounded (round-to-odd decides)', () => {
    // (2^27 + 1)(2^27 − 1) = 2^54 − 1; with c = 2^107 + 2^55 the exact result is just below the
    // halfway point c + 2^54, so the FMA is c. Rounding the −1 away (no round-to-odd) lands on
    // that halfway point, which rounds to even: 2^107 + 2^56.
    const a = 2 ** 27 + 1, b = 2 ** 27 - 1, c = 2 ** 107 + 2 ** 55;
    expect(a * b + c).toBe(2 ** 107 + 2 ** 56);
    expect(fma64(a, b, c)).toBe(c);
    expect(fma64(-a, b, -c)).toBe(-c);
    expect(hardware('float64', a, Float64Array.of(b), Float64Array.of(c))[0]).toBe(c);
  });
});

describe("an option of the other optimizer family is a TypeError, as torch.optim's unexpected keyword argument", () => {
  const params = () => initParams({ D: 3, H: 4, C: 2 }, { seed: 1 });
  /** The settings a Trainer resolved (its state is private to the class). */
  const optimizerOf = (t: Trainer<never>) => (t as unknown as { state: { config: { optimizer: unknown } } }).state.config.optimizer;
  it('new Trainer: momentum, dampening, nesterov with adam/adamw; beta1, beta2, epsilon, amsgrad with sgd/momentum/nesterov', () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ optimizer: 'adam', momentum: 0.9 }, 'momentum', 'adam'],
      [{ optimizer: 'adamw', dampening: 0 }, 'dampening', 'adamw'],
      [{ optimizer: 'adam', nesterov: false }, 'nesterov', 'adam'],
      [{ optimizer: 'sgd', beta1: 0.9 }, 'beta1', 'sgd'],
      [{ beta2: 0.99 }, 'beta2', 'sgd'],
      [{ optimizer: 'momentum', epsilon: 1e-8 }, 'epsilon', 'momentum'],
      [{ optimizer: 'nesterov', amsgrad: false }, 'amsgrad', 'nesterov'],
    ];
    for (const [opts, key, kind] of cases) {
      expect(() => new Trainer(params(), opts), JSON.stringify(opts)).toThrow(TypeError);
      expect(() => new Trainer(params(), opts)).toThrow(new RegExp(`^Expected nothing with optimizer '${kind}' \\(${key} is .*\\) for opts\\.${key} but received`));
    }
    // Each family's own options, and weightDecay with either.
    expect(() => new Trainer(params(), { optimizer: 'sgd', momentum: 0.9, dampening: 0.1, weightDecay: 0.1 })).not.toThrow();
    expect(() => new Trainer(params(), { optimizer: 'adamw', beta1: 0.8, beta2: 0.99, epsilon: 1e-6, amsgrad: true, weightDecay: 0.1 })).not.toThrow();
  });

  it("Trainer.load(path, { optimizer }) naming another optimizer drops the file's optimizer options (the caller passed none)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg41-'));
    try {
      const file = join(dir, 'sgd.safetensors');
      new Trainer(params(), { optimizer: 'sgd', momentum: 0.9, dampening: 0.2, weightDecay: 0.1 }).save(file);
      expect(optimizerOf(Trainer.load(file) as never)).toMatchObject({ name: 'momentum', momentum: 0.9, dampening: 0.2, weightDecay: 0.1 });
      const adam = optimizerOf(Trainer.load(file, { optimizer: 'adam' }) as never);
      expect(adam).toMatchObject({ name: 'adam', beta1: 0.9, beta2: 0.999, weightDecay: 0 });
      // Any other optimizer starts from its own defaults and the caller's options; the same one keeps the file's.
      expect(optimizerOf(Trainer.load(file, { optimizer: 'nesterov' }) as never)).toMatchObject({ name: 'nesterov', momentum: 0.9, dampening: 0, weightDecay: 0 });
      expect(optimizerOf(Trainer.load(file, { optimizer: 'momentum', lr: 0.5 }) as never)).toMatchObject({ name: 'momentum', momentum: 0.9, dampening: 0.2, weightDecay: 0.1 });
      // A caller's option of the wrong family is still refused.
      expect(() => Trainer.load(file, { optimizer: 'adam', momentum: 0.5 })).toThrow(/for opts\.momentum/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the core addon's optimizerUpdate takes dampening and AMSGrad's vmax (every rule in C++)", () => {
  const b = () => coreBinding();
  const f = (n = 4) => new Float64Array(n);
  it('checks them as the other arguments', () => {
    expect(() => b().optimizerUpdate(f(), f(), f(), null, 1, 0.1, 2, 0.9, 0.9, 0.999, 1e-8, 0, 1.5)).toThrow(/Expected a number in \[0, 1\] for dampening/);
    expect(() => b().optimizerUpdate(f(), f(), f(), null, 1, 0.1, 2, 0.9, 0.9, 0.999, 1e-8, 0, NaN)).toThrow(RangeError);
    const v = f();
    expect(() => b().optimizerUpdate(f(), f(), f(), v, 3, 0.1, 1, 0, 0.9, 0.999, 1e-8, 0, 0, v)).toThrow(/Expected vmax not to share memory with v/);
    expect(() => b().optimizerUpdate(f(), f(), f(), f(), 3, 0.1, 1, 0, 0.9, 0.999, 1e-8, 0, 0, f(3))).toThrow(RangeError);
    expect(() => b().optimizerUpdate(f(), f(), f(), f(), 3, 0.1, 1, 0, 0.9, 0.999, 1e-8, 0, 0, new Float32Array(4))).toThrow(TypeError);
  });
  it('vmax keeps the largest v (AMSGrad), whose square root then stands for v\'s', () => {
    const W = Float64Array.of(1, 1), m = f(2), v = f(2), vmax = Float64Array.of(5, 0);
    b().optimizerUpdate(W, Float64Array.of(1, 1), m, v, 3, 0.1, 1, 0, 0.9, 0.999, 1e-8, 0, 0, vmax);
    expect(vmax[0]).toBe(5);
    expect(vmax[1]).toBe(v[1]);
    expect(W[0]).toBeGreaterThan(W[1]); // the larger vmax made the first step smaller
  });
});
