// The exact mode (issue 13, item 4): on the native backend, a step's loss and every gradient are
// PyTorch 1.13's bits for nn.Sequential(nn.Linear, act, …) + F.cross_entropy + backward() with one
// intra-op thread — every entry, no tolerance; the forward alone (stackForward: predictions) gives
// nn.Sequential's logits to the bit too. Held to two independent truths:
//  - goldens recorded from PyTorch Python by test/exact/cases.py (test/fixtures/exact), f32 and f64,
//    depths 1–4, ReLU/Sigmoid/Tanh, 'mean' and 'sum', an activation first, and every option of
//    F.cross_entropy (weight, ignore_index, label_smoothing, 'none' with a gradient, probability
//    targets, alone and together; C = 1, 2, 10; B = 1), and a second step accumulating into the
//    gradients and dX (PyTorch's second backward into .grad); and 200-step trainings by SGD, momentum,
//    Adam and AdamW (the exact step + the core's torch.optim rules) ending on PyTorch's bits. Bits
//    depend on LibTorch's CPU kernels (its CPU capability) and OpenBLAS's GEMM kernels, so they are
//    compared where both match the recording machine's (the title says why when not);
//  - PyTorch Python live on this machine (/usr/bin/python3 with torch), the same cases regenerated.
//  - LibTorch itself: the torch backend (native/torch/sequential.cc, nn.Linear's form: weight [out, in],
//    F.linear, F.cross_entropy, backward()) in this process, on a sweep of generated cases (raw
//    exports and the public API); and the torch backend alone against the goldens, so LibTorch,
//    PyTorch Python and the exact mode are each checked against both others.
// Every CPU capability LibTorch 1.13 can run (DEFAULT, AVX2, AVX512 through ATEN_CPU_CAPABILITY) is
// reproduced and checked live; one this CPU cannot run is an error naming it, never other numbers.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { torchBinding } from '../lib/backends/torch';
import { coreBinding, type CoreBinding, type StackHandle } from '../lib/binding';
import { type Layer, Linear, ReLU, Sequential, setTorchThreads, Sigmoid, Tanh } from '../lib/index';
import type { FloatArray } from '../lib/types';
import { atenKernelSetsHere, differingEntries, FIXTURES, fromBits, skipReason, thrown, TORCH_PYTHON, torchPythonSkip, transposeRows, withCapability } from './helpers';

interface ExactCase {
  name: string; dtype: 'float32' | 'float64'; kinds: string[]; widths: number[]; B: number;
  reduction: 'mean' | 'sum' | 'none'; ignoreIndex: number; labelSmoothing: number;
  /** Set: a second step on the same X with these labels, accumulating into every gradient and dX. */
  y2: number[] | null;
  X: string[]; y: number[]; weight: string[] | null; targets: string[] | null; gradOutput: string[] | null;
  params: string[][]; loss: string; losses: string[] | null; logits: string[]; dX: string[]; grads: string[][];
}
interface ExactGoldens { capability: string; openblasCore: string; cases: ExactCase[] }

const KIND = { linear: 0, relu: 1, sigmoid: 2, tanh: 3 } as const;
// stackExact is the core addon's switch (native/addon/stack.cc): [ATen capability, OpenBLAS core].
type ExactBinding = CoreBinding & { stackExact(handle: StackHandle, on: boolean): [string, string] };
const binding = () => coreBinding() as ExactBinding;


/** One case through the native exact mode: each tensor that differs from PyTorch's, with its count. */
function exactStep(c: ExactCase, exact = true): string[] {
  const b = binding();
  const f32 = c.dtype === 'float32';
  const kinds = Int32Array.from(c.kinds, (k) => KIND[k as keyof typeof KIND]);
  const handle = b.stackPrepare(kinds, Int32Array.from(c.widths), f32);
  b.stackExact(handle, exact);
  const ws = new (f32 ? Float32Array : Float64Array)(b.stackLayout(handle, c.B)[c.kinds.length + 1]);
  const X = fromBits(c.dtype, c.X);
  const y = Int32Array.from(c.y);
  const shapes: [number, number][] = []; // [in, out] per Linear
  c.kinds.forEach((k, i) => k === 'linear' && shapes.push([c.widths[i], c.widths[i + 1]]));
  const params = c.params.map((p, j) => {
    const [inW, outW] = shapes[j >> 1];
    return j % 2 === 0 ? transposeRows(fromBits(c.dtype, p), outW, inW) : fromBits(c.dtype, p);
  });
  const grads = params.map((p) => new (f32 ? Float32Array : Float64Array)(p.length).fill(NaN));
  const dX = new (f32 ? Float32Array : Float64Array)(X.length);
  const R = { mean: 0, sum: 1, none: 2 }[c.reduction];
  const array = (h: string[] | null) => (h === null ? null : fromBits(c.dtype, h));
  const plain = c.ignoreIndex === -100 && R !== 2 && !c.weight && !c.targets && c.labelSmoothing === 0;
  const step = (labels: Int32Array, accumulate: boolean) => plain
    ? b.stackForwardBackward(handle, ws, X, labels, c.B, dX, R, accumulate, ...params, ...grads)
    : b.stackForwardBackwardLoss(handle, ws, X, c.targets ? null : labels, c.B, dX, accumulate, R, array(c.weight), c.ignoreIndex,
      c.labelSmoothing, array(c.targets), array(c.gradOutput), ...params, ...grads);
  let loss = step(y, false);
  if (c.y2) loss = step(Int32Array.from(c.y2), true);
  const diffs: string[] = [];
  const check = (name: string, got: FloatArray, want: FloatArray) => {
    const d = differingEntries(got, want);
    if (d > 0) diffs.push(`${name} ${d}/${got.length}`);
  };
  // The logits: the forward alone (stackForward, predictions) into a fresh workspace.
  const at = b.stackLayout(handle, c.B);
  const L = c.kinds.length;
  const fresh = new (f32 ? Float32Array : Float64Array)(ws.length);
  expect(b.stackForward(handle, fresh, X, c.B, ...params)).toBe(true);
  const C = c.widths[L];
  check('logits (forward)', fresh.subarray(at[L - 1], at[L - 1] + c.B * C), fromBits(c.dtype, c.logits));
  check('loss', new (f32 ? Float32Array : Float64Array)([loss]), fromBits(c.dtype, [c.loss]));
  if (c.losses) check('losses', ws.subarray(at[L + 2], at[L + 2] + c.B), fromBits(c.dtype, c.losses)); // 'none': the rows' losses
  if (!c.y2) check('logits (step)', ws.subarray(at[L - 1], at[L - 1] + c.B * C), fromBits(c.dtype, c.logits));
  check('dX', dX, fromBits(c.dtype, c.dX));
  grads.forEach((g, j) => {
    const [inW, outW] = shapes[j >> 1];
    const name = `${j % 2 === 0 ? 'dW' : 'db'}${(j >> 1) + 1}`;
    check(name, j % 2 === 0 ? transposeRows(g, inW, outW) : g, fromBits(c.dtype, c.grads[j]));
  });
  return diffs;
}

const goldens = JSON.parse(readFileSync(join(FIXTURES, 'exact', 'sequential.json'), 'utf8')) as ExactGoldens;

/** This machine's [capability, OpenBLAS core], or null where the exact mode refuses it. */
function machine(): [string, string] | null {
  const b = binding();
  try {
    return b.stackExact(b.stackPrepare(new Int32Array([0]), new Int32Array([2, 2]), false), true);
  } catch {
    return null;
  }
}
const here = machine();
const goldenSkip = here === null
  ? 'the exact mode refuses this machine\'s ATen CPU capability'
  : here[0] !== goldens.capability || here[1] !== goldens.openblasCore
    ? `recorded on ATen ${goldens.capability} + OpenBLAS ${goldens.openblasCore}, this machine runs ${here[0]} + ${here[1]}`
    : null;

describe.skipIf(goldenSkip !== null)(`exact mode: PyTorch's bits from the goldens${goldenSkip ? ` (skipped: ${goldenSkip})` : ''}`, () => {
  it('covers f32 and f64, depths 1–4, every activation, mean and sum, every F.cross_entropy option', () => {
    const seen = new Set(goldens.cases.map((c) => `${c.dtype} ${c.kinds.filter((k) => k === 'linear').length} ${c.kinds.find((k) => k !== 'linear') ?? '-'} ${c.reduction}`));
    for (const dtype of ['float32', 'float64'])
      for (const act of ['relu', 'sigmoid', 'tanh'])
        for (const depth of [2, 3, 4]) for (const red of ['mean', 'sum']) expect(seen).toContain(`${dtype} ${depth} ${act} ${red}`);
    for (const dtype of ['float32', 'float64']) {
      const of = goldens.cases.filter((c) => c.dtype === dtype);
      for (const red of ['mean', 'sum', 'none']) {
        expect(of.some((c) => c.reduction === red && c.weight && !c.targets)).toBe(true);
        expect(of.some((c) => c.reduction === red && c.labelSmoothing > 0 && !c.targets)).toBe(true);
        expect(of.some((c) => c.reduction === red && c.targets && c.weight && c.labelSmoothing > 0)).toBe(true);
        expect(of.some((c) => c.reduction === red && c.ignoreIndex !== -100)).toBe(true);
        expect(of.some((c) => c.reduction === red && c.ignoreIndex !== -100 && c.labelSmoothing > 0 && !c.weight)).toBe(true);
      }
      expect(of.some((c) => c.y2 !== null)).toBe(true);
    }
  });
  it.each(goldens.cases.map((c) => [c.name, c] as const))('%s: every entry bit-identical', (_, c) => {
    expect(exactStep(c)).toEqual([]);
  });
});

interface Trajectory {
  name: string; dtype: 'float32' | 'float64'; optimizer: 'sgd' | 'momentum' | 'adam' | 'adamw';
  settings: { lr: number; momentum?: number; weight_decay?: number }; steps: number; batch: number;
  kinds: string[]; widths: number[]; X: string[]; y: number[]; params: string[][]; lastLoss: string; final: string[][];
}
const trajectories = (JSON.parse(readFileSync(join(FIXTURES, 'exact', 'trajectories.json'), 'utf8')) as { runs: Trajectory[] }).runs;

/**
 * A training run as torch.optim's: the exact step, then the core's optimizer rule on each tensor
 * (native/core/optimizer.h, torch.optim's roundings), every step; the end against PyTorch's.
 */
function train(r: Trajectory, exact = true): string[] {
  const b = binding();
  const f32 = r.dtype === 'float32';
  const F = f32 ? Float32Array : Float64Array;
  const handle = b.stackPrepare(Int32Array.from(r.kinds, (k) => KIND[k as keyof typeof KIND]), Int32Array.from(r.widths), f32);
  b.stackExact(handle, exact);
  const ws = new F(b.stackLayout(handle, r.batch)[r.kinds.length + 1]);
  const shapes: [number, number][] = [];
  r.kinds.forEach((k, i) => k === 'linear' && shapes.push([r.widths[i], r.widths[i + 1]]));
  const params = r.params.map((p, j) => (j % 2 === 0 ? transposeRows(fromBits(r.dtype, p), shapes[j >> 1][1], shapes[j >> 1][0]) : fromBits(r.dtype, p)));
  const grads = params.map((p) => new F(p.length));
  const m = params.map((p) => new F(p.length));
  const v = params.map((p) => new F(p.length));
  const X = fromBits(r.dtype, r.X);
  const y = Int32Array.from(r.y);
  const D = r.widths[0];
  const code = { sgd: 0, momentum: 1, adam: 3, adamw: 4 }[r.optimizer];
  const { lr, momentum = 0, weight_decay: wd = r.optimizer === 'adamw' ? 0.01 : 0 } = r.settings;
  let loss = NaN;
  for (let t = 0; t < r.steps; t++) {
    const rows = (t % 4) * r.batch;
    loss = b.stackForwardBackward(handle, ws, X.subarray(rows * D, (rows + r.batch) * D), y.subarray(rows, rows + r.batch), r.batch,
      null, 0, false, ...params, ...grads);
    params.forEach((p, k) => b.optimizerUpdate(p, grads[k], m[k], v[k], code, lr, t + 1, momentum, 0.9, 0.999, 1e-8, wd, 0, null));
  }
  const diffs: string[] = [];
  const lossDiff = differingEntries(new F([loss]), fromBits(r.dtype, [r.lastLoss]));
  if (lossDiff) diffs.push('last loss');
  params.forEach((p, j) => {
    const [inW, outW] = shapes[j >> 1];
    const d = differingEntries(j % 2 === 0 ? transposeRows(p, inW, outW) : p, fromBits(r.dtype, r.final[j]));
    if (d) diffs.push(`${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1} ${d}/${p.length}`);
  });
  return diffs;
}

describe.skipIf(goldenSkip !== null)(`exact mode + the core's torch.optim rules: 200-step trajectories${goldenSkip ? ` (skipped: ${goldenSkip})` : ''}`, () => {
  it.each(trajectories.map((r) => [r.name, r] as const))('%s: every weight PyTorch\'s bits after 200 steps', (_, r) => {
    expect(train(r)).toEqual([]);
  });
  it('the default mode ends elsewhere (the trajectories tell the modes apart)', () => {
    expect(trajectories.filter((r) => train(r, false).length > 0).length).toBeGreaterThan(0);
  });
});

// PyTorch Python live: absent in CI without python3-torch (the goldens above stand in there).
const python = TORCH_PYTHON;
const pythonSkip = torchPythonSkip();
const runs = atenKernelSetsHere;

describe.skipIf(pythonSkip !== null)(`exact mode: PyTorch Python live on this machine${pythonSkip ? ` (skipped: ${pythonSkip})` : ''}`, () => {
  // Unset: the capability LibTorch picks by itself; then each one ATEN_CPU_CAPABILITY can choose
  // (1.13 keeps AVX512 opt-in), both sides under the same setting.
  const settings = [null, 'default', 'avx2', 'avx512'] as const;
  it.each(settings.map((v) => [v ?? 'unset', v] as const))('ATEN_CPU_CAPABILITY %s: every case regenerated now is bit-identical', (_, v) => {
    if (v !== null && !runs[v]) return; // this CPU cannot run those kernels (the refusal is tested below)
    const dir = mkdtempSync(join(tmpdir(), 'handgrad-exact-'));
    try {
      const env = { ...process.env };
      if (v === null) delete env.ATEN_CPU_CAPABILITY;
      else env.ATEN_CPU_CAPABILITY = v;
      const r = spawnSync(python, [join(__dirname, 'exact', 'cases.py'), 'fixtures', dir], { encoding: 'utf8', env });
      expect(r.status, r.stderr).toBe(0);
      const live = JSON.parse(readFileSync(join(dir, 'sequential.json'), 'utf8')) as ExactGoldens;
      withCapability(v, () => {
        expect([live.capability, live.openblasCore]).toEqual(machine());
        const failures = live.cases.map((c) => [c.name, exactStep(c)] as const).filter(([, d]) => d.length > 0);
        expect(failures).toEqual([]);
        // The optimizer rules (native/core/optimizer.h) fuse where ATen's kernels do (AVX2, AVX512), not under DEFAULT.
        const runs = (JSON.parse(readFileSync(join(dir, 'trajectories.json'), 'utf8')) as { runs: Trajectory[] }).runs;
        expect(runs.map((r) => [r.name, train(r)] as const).filter(([, d]) => d.length > 0)).toEqual([]);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('exact mode: the modes differ, and kernels this CPU cannot run are refused by name', () => {
  it('the default mode is not these bits (the goldens tell the modes apart)', () => {
    expect(goldens.cases.some((k) => exactStep(k, false).length > 0)).toBe(true);
  });
  const beyond = (['avx512', 'avx2'] as const).find((c) => !runs[c]);
  it.skipIf(beyond === undefined)(`ATEN_CPU_CAPABILITY naming kernels this CPU lacks is an Error naming them, when set and on every step${beyond === undefined ? ' (skipped: this CPU runs all three kernel sets)' : ''}`, () => {
    const b = binding();
    const handle = b.stackPrepare(new Int32Array([0]), new Int32Array([2, 2]), false);
    const name = beyond!.toUpperCase();
    withCapability(beyond!, () => {
      expect(thrown(() => b.stackExact(handle, true)).message).toContain(name);
      expect(b.stackExact(handle, false)).toHaveLength(2); // turning it off always works
    });
    b.stackExact(handle, true);
    const ws = new Float64Array(b.stackLayout(handle, 1)[2]);
    const params = [new Float64Array(4), new Float64Array(2)];
    const e = withCapability(beyond!, () => thrown(() => b.stackForwardBackward(handle, ws, new Float64Array(2), new Int32Array([0]), 1,
      null, 0, false, ...params, new Float64Array(4), new Float64Array(2))));
    expect(e.message).toContain(name);
  });
  it('OpenBLAS away from its default thread count (PyTorch\'s) is an Error naming both counts, at the switch and at every step', () => {
    const b = binding();
    const handle = b.stackPrepare(new Int32Array([0]), new Int32Array([2, 2]), false);
    b.stackExact(handle, true);
    const threads = b.getNumThreads();
    const other = threads === 1 ? 2 : 1;
    try {
      b.setNumThreads(other);
      expect(thrown(() => b.stackExact(handle, true)).message).toContain(`setNumThreads(${threads})`);
      const ws = new Float64Array(b.stackLayout(handle, 1)[2]);
      const params = [new Float64Array(4), new Float64Array(2)];
      const e = thrown(() => b.stackForwardBackward(handle, ws, new Float64Array(2), new Int32Array([0]), 1, null, 0, false,
        ...params, new Float64Array(4), new Float64Array(2)));
      expect(e.message).toMatch(new RegExp(`default ${threads} threads.*set to ${other}`));
    } finally {
      b.setNumThreads(threads);
    }
    expect(b.stackExact(handle, true)).toHaveLength(2);
  });
  it('an ATEN_CPU_CAPABILITY LibTorch ignores (anything but default/avx2/avx512) is ignored here too', () => {
    expect(withCapability('sse9', machine)).toEqual(withCapability(null, machine));
  });
});

// LibTorch in this process: the torch backend's addon computes nn.Sequential(nn.Linear, act, …) +
// F.cross_entropy + backward() by LibTorch's own autograd (native/torch/sequential.cc). The exact
// mode reproduces those kernels, so the two agree in every bit on any case, not only on the recorded
// ones: a sweep of generated stacks, batch sizes, class counts and loss options, both on one thread.
const ACTS = ['relu', 'sigmoid', 'tanh'] as const;
const BATCHES = [1, 3, 8, 17, 64] as const;
const CLASSES = [1, 2, 3, 10] as const;

/** mulberry32: a small seeded generator, so each case's numbers are the same on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** F.cross_entropy's options for one case: the option under test and the reduction. */
interface LossCase {
  option: string; reduction: 'mean' | 'sum' | 'none';
  y: Int32Array; weight: FloatArray | null; ignoreIndex: number; labelSmoothing: number;
  targets: FloatArray | null; gradOutput: FloatArray | null;
}
const OPTIONS = ['plain', 'weight', 'ignoreIndex', 'labelSmoothing', 'targets', 'targets+weight+labelSmoothing',
  'ignoreIndex+labelSmoothing', 'weight+ignoreIndex+labelSmoothing'] as const;

function lossCase(option: (typeof OPTIONS)[number], reduction: LossCase['reduction'], B: number, C: number,
  F: Float32ArrayConstructor | Float64ArrayConstructor, r: () => number): LossCase {
  const y = Int32Array.from({ length: B }, () => Math.floor(r() * C));
  const has = (o: string) => option.split('+').includes(o);
  // An ignored class with C > 1: row 0 keeps a counted label (a 'mean' over no row is refused), row 1
  // is ignored. With C = 1 every label is class 0: ignoring it leaves no row, which 'sum' and 'none'
  // take (a zero loss and zero gradients) and 'mean' refuses, so 'mean' ignores a class nobody has.
  let ignoreIndex = -100;
  if (has('ignoreIndex')) {
    ignoreIndex = C > 1 || reduction !== 'mean' ? 0 : 7;
    if (C > 1) {
      y[0] = 1 + Math.floor(r() * (C - 1));
      if (B > 1) y[1] = 0;
    }
  }
  const targets = option.startsWith('targets') ? new F(B * C) : null;
  if (targets) {
    for (let b = 0; b < B; b++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += targets[b * C + c] = r();
      for (let c = 0; c < C; c++) targets[b * C + c] /= s;
    }
  }
  return {
    option, reduction, y, ignoreIndex, targets,
    weight: has('weight') ? drawn(F, C, () => 0.1 + 2 * r()) : null,
    labelSmoothing: has('labelSmoothing') ? 0.05 + 0.5 * r() : 0,
    gradOutput: reduction === 'none' ? drawn(F, B, () => 2 * r() - 1) : null,
  };
}

/** n values of fn in the dtype's array. */
function drawn(F: Float32ArrayConstructor | Float64ArrayConstructor, n: number, fn: () => number): FloatArray {
  const a = new F(n);
  for (let i = 0; i < n; i++) a[i] = fn();
  return a;
}

/** Entries of got that differ from want in any bit, as `name k/n`, or nothing. */
function bitDiff(name: string, got: FloatArray, want: FloatArray): string[] {
  const d = differingEntries(got, want);
  return d > 0 ? [`${name} ${d}/${got.length}`] : [];
}

/**
 * One stack through every (B, C, option, reduction): a first step, then a second one accumulating
 * into every gradient and dX, on the native exact mode and on the torch backend's addon. Each
 * case's differences, named; the count of cases run.
 */
function sweep(dtype: 'float32' | 'float64', depth: number, act: string | null, seed: number): { failures: string[]; cases: number } {
  const b = binding();
  const t = torchBinding();
  const F = dtype === 'float32' ? Float32Array : Float64Array;
  const failures: string[] = [];
  let cases = 0;
  for (const B of BATCHES) {
    for (const C of CLASSES) {
      const r = random(seed * 1000 + B * 10 + C);
      const D = 1 + Math.floor(r() * 6);
      const widths = [D];
      const kinds: number[] = [];
      for (let l = 0; l < depth; l++) {
        kinds.push(KIND.linear);
        widths.push(l === depth - 1 ? C : 2 + Math.floor(r() * 7));
        if (l < depth - 1 && act) {
          kinds.push(KIND[act as keyof typeof KIND]);
          widths.push(widths[widths.length - 1]);
        }
      }
      const K = Int32Array.from(kinds);
      const Wd = Int32Array.from(widths);
      const handle = b.stackPrepare(K, Wd, dtype === 'float32');
      b.stackExact(handle, true);
      const at = b.stackLayout(handle, B);
      const L = kinds.length;
      const X = drawn(F, B * D, () => 4 * r() - 2);
      const params: FloatArray[] = [];
      kinds.forEach((k, l) => {
        if (k !== KIND.linear) return;
        const [i, o] = [widths[l], widths[l + 1]];
        params.push(drawn(F, i * o, () => (2 * r() - 1) / Math.sqrt(i)));
        // Every third case puts the output far from zero: where the bias enters the GEMM matters.
        const offset = l === L - 1 && (B + C) % 3 === 0 ? 1000 : 0;
        params.push(drawn(F, o, () => offset + 2 * r() - 1));
      });
      // The forward alone: the core's stackForward against sequentialForward (no graph).
      const nativeWs = new F(at[L + 1]);
      const torchLogits = new F(B * C);
      expect(b.stackForward(handle, nativeWs, X, B, ...params)).toBe(true);
      expect(t.sequentialForward(X, B, K, Wd, params, torchLogits)).toBe(true);
      failures.push(...bitDiff(`${B}x${C} forward logits`, nativeWs.subarray(at[L - 1], at[L - 1] + B * C), torchLogits));
      for (const option of OPTIONS) {
        for (const reduction of ['mean', 'sum', 'none'] as const) {
          const first = lossCase(option, reduction, B, C, F, r);
          const second = lossCase(option, reduction, B, C, F, r);
          const R = { mean: 0, sum: 1, none: 2 }[reduction];
          const ws = [new F(at[L + 1]), new F(at[L + 1])];
          const grads = [params.map((p) => new F(p.length)), params.map((p) => new F(p.length))];
          const dX = [new F(X.length), new F(X.length)];
          const name = `${B}x${C} ${option} ${reduction}`;
          for (const [step, o] of [[0, first], [1, second]] as const) {
            const accumulate = step === 1;
            const y = o.targets ? null : o.y;
            const lossN = b.stackForwardBackwardLoss(handle, ws[0], X, y, B, dX[0], accumulate, R, o.weight, o.ignoreIndex,
              o.labelSmoothing, o.targets, o.gradOutput, ...params, ...grads[0]);
            const lossT = t.sequentialForwardBackward(X, y, B, K, Wd, params, grads[1], dX[1], R, accumulate, ws[1],
              o.weight, o.ignoreIndex, o.labelSmoothing, o.targets, o.gradOutput);
            const here = `${name}${accumulate ? ' (accumulating)' : ''}`;
            if (!Object.is(lossN, lossT)) failures.push(`${here} loss ${lossN} vs ${lossT}`);
            if (Number.isNaN(lossT)) failures.push(`${here}: the torch backend failed, status ${t.sequentialStatus()}`);
            failures.push(...bitDiff(`${here} logits`, ws[0].subarray(at[L - 1], at[L - 1] + B * C), ws[1].subarray(at[L - 1], at[L - 1] + B * C)));
            if (reduction === 'none') failures.push(...bitDiff(`${here} losses`, ws[0].subarray(at[L + 2], at[L + 2] + B), ws[1].subarray(at[L + 2], at[L + 2] + B)));
            failures.push(...bitDiff(`${here} dX`, dX[0], dX[1]));
            grads[0].forEach((g, j) => failures.push(...bitDiff(`${here} ${j % 2 === 0 ? 'dW' : 'db'}${(j >> 1) + 1}`, g, grads[1][j])));
            cases++;
          }
        }
      }
    }
  }
  return { failures, cases };
}

const torchSkip = skipReason('torch') ?? (here === null ? 'the exact mode refuses this machine\'s ATen CPU capability' : null);
describe.skipIf(torchSkip !== null)(`exact mode: the torch backend's bits (LibTorch, nn.Linear's form)${torchSkip ? ` (skipped: ${torchSkip})` : ''}`, () => {
  beforeAll(() => setTorchThreads(1)); // the exact mode is LibTorch on one intra-op thread
  const stacks: [string, 'float32' | 'float64', number, string | null][] = [];
  for (const dtype of ['float32', 'float64'] as const) {
    stacks.push([`${dtype} Linear`, dtype, 1, null]);
    for (const depth of [2, 3, 4]) for (const act of ACTS) stacks.push([`${dtype} depth ${depth} ${act}`, dtype, depth, act]);
  }
  it.each(stacks.map((s, i) => [...s, i] as const))(
    '%s: B 1–64, C 1–10, every F.cross_entropy option, mean/sum/none, accumulating: every entry bit-identical',
    (_, dtype, depth, act, seed) => {
      const { failures, cases } = sweep(dtype, depth, act, seed + 1);
      expect(cases).toBe(BATCHES.length * CLASSES.length * OPTIONS.length * 3 * 2);
      expect(failures.slice(0, 20)).toEqual([]);
    }, 60_000);
  it("the public API: Sequential.forwardBackward and forward with { exact: true } (native) give { backend: 'torch' }'s bits, every loss option", () => {
    const failures: string[] = [];
    let cases = 0;
    for (const dtype of ['float32', 'float64'] as const) {
      const F = dtype === 'float32' ? Float32Array : Float64Array;
      for (const act of [null, ...ACTS]) {
        for (const [B, C] of [[1, 3], [17, 10], [8, 1], [64, 2]] as const) {
          const r = random(B * 100 + C + (dtype === 'float32' ? 7 : 0) + (act ? act.length : 0));
          const widths = act ? [5, 7, 6, C] : [5, C];
          const layers: Layer[] = [];
          for (let l = 0; l + 1 < widths.length; l++) {
            if (l > 0) layers.push(act === 'relu' ? new ReLU() : act === 'sigmoid' ? new Sigmoid() : new Tanh());
            const offset = l + 2 === widths.length && B % 2 === 0 ? 1000 : 0;
            layers.push(new Linear(widths[l], widths[l + 1], {
              W: drawn(F, widths[l] * widths[l + 1], () => (2 * r() - 1) / Math.sqrt(widths[l])) as never,
              b: drawn(F, widths[l + 1], () => offset + 2 * r() - 1) as never,
            }));
          }
          const net = new Sequential(layers);
          const X = drawn(F, B * widths[0], () => 4 * r() - 2);
          failures.push(...bitDiff(`${dtype} ${act} ${B}x${C} forward`, net.forward(X, { exact: true }), net.forward(X, { backend: 'torch' })));
          for (const option of OPTIONS) {
            for (const reduction of ['mean', 'sum', 'none'] as const) {
              const o = lossCase(option, reduction, B, C, F, r);
              const opts = {
                inputGrad: true, cache: true, reduction, ignoreIndex: o.ignoreIndex, labelSmoothing: o.labelSmoothing,
                ...(o.weight ? { weight: o.weight } : {}), ...(o.gradOutput ? { gradOutput: o.gradOutput } : {}),
              };
              const y = o.targets ?? o.y;
              type Result = { loss: number | FloatArray; grads: Record<string, FloatArray>; cache?: { outputs: FloatArray[] } };
              const exact = net.forwardBackward(X, y as never, { ...opts, exact: true } as never) as Result;
              const torch = net.forwardBackward(X, y as never, { ...opts, backend: 'torch' } as never) as Result;
              const name = `${dtype} ${act} ${B}x${C} ${option} ${reduction}`;
              if (typeof exact.loss === 'number') {
                if (!Object.is(exact.loss, torch.loss)) failures.push(`${name} loss ${exact.loss} vs ${String(torch.loss)}`);
              } else failures.push(...bitDiff(`${name} losses`, exact.loss, torch.loss as FloatArray));
              for (const key of Object.keys(torch.grads)) failures.push(...bitDiff(`${name} ${key}`, exact.grads[key], torch.grads[key]));
              failures.push(...bitDiff(`${name} logits`, exact.cache!.outputs.at(-1)!, torch.cache!.outputs.at(-1)!));
              cases++;
            }
          }
        }
      }
    }
    expect(cases).toBe(2 * 4 * 4 * OPTIONS.length * 3);
    expect(failures.slice(0, 20)).toEqual([]);
  }, 60_000);
});

/** One golden case through the torch backend's addon (LibTorch in this process): each tensor that differs from PyTorch Python's. */
function torchStep(c: ExactCase): string[] {
  const t = torchBinding();
  const f32 = c.dtype === 'float32';
  const F = f32 ? Float32Array : Float64Array;
  const K = Int32Array.from(c.kinds, (k) => KIND[k as keyof typeof KIND]);
  const Wd = Int32Array.from(c.widths);
  const X = fromBits(c.dtype, c.X);
  const shapes: [number, number][] = [];
  c.kinds.forEach((k, i) => k === 'linear' && shapes.push([c.widths[i], c.widths[i + 1]]));
  const params = c.params.map((p, j) => (j % 2 === 0 ? transposeRows(fromBits(c.dtype, p), shapes[j >> 1][1], shapes[j >> 1][0]) : fromBits(c.dtype, p)));
  const grads = params.map((p) => new F(p.length).fill(NaN));
  const dX = new F(X.length);
  const at = t.sequentialLayout(X, c.B, K, Wd);
  const L = c.kinds.length;
  const ws = new F(at[L + 1]);
  const array = (h: string[] | null) => (h === null ? null : fromBits(c.dtype, h));
  const R = { mean: 0, sum: 1, none: 2 }[c.reduction];
  const step = (labels: Int32Array, accumulate: boolean) => t.sequentialForwardBackward(X, c.targets ? null : labels, c.B, K, Wd, params, grads, dX, R,
    accumulate, ws, array(c.weight), c.ignoreIndex, c.labelSmoothing, array(c.targets), array(c.gradOutput));
  let loss = step(Int32Array.from(c.y), false);
  if (c.y2) loss = step(Int32Array.from(c.y2), true);
  const C = c.widths[L];
  const logits = new F(c.B * C);
  expect(t.sequentialForward(X, c.B, K, Wd, params, logits)).toBe(true);
  const diffs = [
    ...bitDiff('logits (forward)', logits, fromBits(c.dtype, c.logits)),
    ...bitDiff('dX', dX, fromBits(c.dtype, c.dX)),
  ];
  // 'none': the addon returns the rows' sum and leaves each row's loss in ws; otherwise the loss itself.
  if (c.losses) diffs.push(...bitDiff('losses', ws.subarray(at[L + 2], at[L + 2] + c.B), fromBits(c.dtype, c.losses)));
  else diffs.push(...bitDiff('loss', new F([loss]), fromBits(c.dtype, [c.loss])));
  if (!c.y2) diffs.push(...bitDiff('logits (step)', ws.subarray(at[L - 1], at[L - 1] + c.B * C), fromBits(c.dtype, c.logits)));
  grads.forEach((g, j) => {
    const [inW, outW] = shapes[j >> 1];
    diffs.push(...bitDiff(`${j % 2 === 0 ? 'dW' : 'db'}${(j >> 1) + 1}`, j % 2 === 0 ? transposeRows(g, inW, outW) : g, fromBits(c.dtype, c.grads[j])));
  });
  return diffs;
}

// The third side of the triangle: LibTorch in this process against PyTorch Python's recordings, with
// no exact-mode code in between (both run nn.Linear's form on the same kernels).
const torchGoldenSkip = skipReason('torch') ?? goldenSkip;
describe.skipIf(torchGoldenSkip !== null)(`the torch backend: PyTorch Python's bits from the goldens${torchGoldenSkip ? ` (skipped: ${torchGoldenSkip})` : ''}`, () => {
  beforeAll(() => setTorchThreads(1));
  it.each(goldens.cases.map((c) => [c.name, c] as const))('%s: every entry bit-identical', (_, c) => {
    expect(torchStep(c)).toEqual([]);
  });
});
