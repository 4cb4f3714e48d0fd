// The exact mode through the public API (issue 13, item 4): `{ exact: true }` on the two-layer
// forwardBackward/forward, Sequential.forwardBackward/forward/predict and `new Trainer(model, {
// exact: true })` gives PyTorch 1.13's bits — the same goldens as test/39 (recorded from PyTorch
// Python by test/exact/cases.py), compared entry by entry where this machine's LibTorch CPU kernels
// and OpenBLAS core are the recording's. A backend that cannot be exact refuses the option.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Dtype, type FloatArray, forward, forwardBackward, getNumThreads, HandgradError, type Layer, Linear, ReLU, Sequential, setNumThreads, Sigmoid, Tanh, Trainer,
} from '../lib';
import { coreBinding } from '../lib/binding';
import { differingEntries, FIXTURES, fromBits, thrown, transposeRows } from './helpers';

interface ExactCase {
  name: string; dtype: Dtype; kinds: string[]; widths: number[]; B: number;
  reduction: 'mean' | 'sum' | 'none'; ignoreIndex: number; labelSmoothing: number; y2: number[] | null;
  X: string[]; y: number[]; weight: string[] | null; targets: string[] | null; gradOutput: string[] | null;
  params: string[][]; loss: string; losses: string[] | null; logits: string[]; dX: string[]; grads: string[][];
}
interface Trajectory {
  name: string; dtype: Dtype; optimizer: 'sgd' | 'momentum' | 'adam' | 'adamw';
  settings: { lr: number; momentum?: number; weight_decay?: number }; steps: number; batch: number;
  kinds: string[]; widths: number[]; X: string[]; y: number[]; params: string[][]; lastLoss: string; final: string[][];
}
const goldens = JSON.parse(readFileSync(join(FIXTURES, 'exact', 'sequential.json'), 'utf8')) as { capability: string; openblasCore: string; cases: ExactCase[] };
const trajectories = (JSON.parse(readFileSync(join(FIXTURES, 'exact', 'trajectories.json'), 'utf8')) as { runs: Trajectory[] }).runs;

const scalar = (dtype: Dtype, x: number) => (dtype === 'float32' ? Float32Array.of(x) : Float64Array.of(x));

/** The golden's net as a Sequential over its parameters in this package's layout (W [in,out]). */
function netOf(kinds: string[], widths: number[], dtype: Dtype, params: string[][]): Sequential {
  let j = 0;
  const layers = kinds.map((k, i): Layer => {
    if (k === 'relu') return new ReLU();
    if (k === 'sigmoid') return new Sigmoid();
    if (k === 'tanh') return new Tanh();
    const [inW, outW] = [widths[i], widths[i + 1]];
    const W = transposeRows(fromBits(dtype, params[j]), outW, inW);
    const b = fromBits(dtype, params[j + 1]);
    j += 2;
    return new Linear(inW, outW, { W, b });
  });
  return new Sequential(layers);
}

function machine(): [string, string] | null {
  try {
    const b = coreBinding();
    return b.stackExact(b.stackPrepare(new Int32Array([0]), new Int32Array([2, 2]), false), true);
  } catch {
    return null;
  }
}
const here = machine();
const skip = here === null
  ? "the exact mode refuses this machine's ATen CPU capability or the core addon is not built"
  : here[0] !== goldens.capability || here[1] !== goldens.openblasCore
    ? `recorded on ATen ${goldens.capability} + OpenBLAS ${goldens.openblasCore}, this machine runs ${here[0]} + ${here[1]}`
    : null;

/** One golden case (no second accumulating step) through Sequential.forwardBackward({ exact: true }): what differs. */
function publicStep(c: ExactCase): string[] {
  const net = netOf(c.kinds, c.widths, c.dtype, c.params);
  const X = fromBits(c.dtype, c.X);
  const y = c.targets ? fromBits(c.dtype, c.targets) : Int32Array.from(c.y);
  const opts = {
    exact: true, inputGrad: true, reduction: c.reduction, ignoreIndex: c.ignoreIndex, labelSmoothing: c.labelSmoothing,
    ...(c.weight ? { weight: fromBits(c.dtype, c.weight) } : {}), ...(c.gradOutput ? { gradOutput: fromBits(c.dtype, c.gradOutput) } : {}),
  };
  const r = net.forwardBackward(X, y as never, opts as never) as { loss: number | FloatArray; grads: Record<string, FloatArray> };
  const diffs: string[] = [];
  const check = (name: string, got: FloatArray, want: FloatArray) => {
    const d = differingEntries(got, want);
    if (d > 0) diffs.push(`${name} ${d}/${got.length}`);
  };
  if (c.losses) check('losses', r.loss as FloatArray, fromBits(c.dtype, c.losses));
  else check('loss', scalar(c.dtype, r.loss as number), fromBits(c.dtype, [c.loss]));
  check('dX', r.grads.dX, fromBits(c.dtype, c.dX));
  let k = 0;
  c.kinds.forEach((kind, i) => {
    if (kind !== 'linear') return;
    check(`dW${k + 1}`, transposeRows(r.grads[`dW${k + 1}`], c.widths[i], c.widths[i + 1]), fromBits(c.dtype, c.grads[2 * k]));
    check(`db${k + 1}`, r.grads[`db${k + 1}`], fromBits(c.dtype, c.grads[2 * k + 1]));
    k++;
  });
  check('logits (forward)', net.forward(X, { exact: true }), fromBits(c.dtype, c.logits));
  return diffs;
}

describe.skipIf(skip !== null)(`{ exact: true } through the public API: PyTorch's bits${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const single = goldens.cases.filter((c) => c.y2 === null);

  it(`Sequential.forwardBackward and forward: every entry of ${single.length} golden cases (every option, f32/f64, depths 1–4)`, () => {
    expect(single.length).toBeGreaterThan(50);
    const bad = single.flatMap((c) => publicStep(c).map((d) => `${c.name}: ${d}`));
    expect(bad).toEqual([]);
  });

  it('the default mode differs somewhere on the same cases (the option does something)', () => {
    const differs = single.some((c) => {
      const net = netOf(c.kinds, c.widths, c.dtype, c.params);
      if (c.targets || c.reduction === 'none') return false;
      const r = net.forwardBackward(fromBits(c.dtype, c.X), Int32Array.from(c.y), { inputGrad: true, reduction: c.reduction, ignoreIndex: c.ignoreIndex, labelSmoothing: c.labelSmoothing });
      return differingEntries(r.grads.dX, fromBits(c.dtype, c.dX)) > 0;
    });
    expect(differs).toBe(true);
  });

  it("the two-layer forwardBackward(params, X, y, { exact: true }) and forward give the goldens' bits", () => {
    const two = single.filter((c) => c.kinds.length === 3 && c.kinds[0] === 'linear' && !c.targets && c.reduction !== 'none' && !c.weight && c.labelSmoothing === 0 && c.ignoreIndex === -100);
    expect(two.length).toBeGreaterThan(5);
    for (const c of two) {
      const [D, H] = c.widths; // widths has an entry per layer: [D, H, H, C]
      const C = c.widths[3];
      const params = {
        D, H, C, activation: c.kinds[1] as 'relu' | 'sigmoid' | 'tanh',
        W1: transposeRows(fromBits(c.dtype, c.params[0]), H, D), b1: fromBits(c.dtype, c.params[1]),
        W2: transposeRows(fromBits(c.dtype, c.params[2]), C, H), b2: fromBits(c.dtype, c.params[3]),
      };
      const X = fromBits(c.dtype, c.X);
      const r = forwardBackward(params as never, X, Int32Array.from(c.y), { exact: true, reduction: c.reduction as 'mean' | 'sum' });
      expect(differingEntries(scalar(c.dtype, r.loss as number), fromBits(c.dtype, [c.loss])), c.name).toBe(0);
      expect(differingEntries(transposeRows(r.grads.dW1, D, H), fromBits(c.dtype, c.grads[0])), c.name).toBe(0);
      expect(differingEntries(r.grads.db2, fromBits(c.dtype, c.grads[3])), c.name).toBe(0);
      expect(differingEntries(forward(params as never, X, { exact: true }), fromBits(c.dtype, c.logits)), c.name).toBe(0);
    }
  });

  it.each(trajectories.map((r) => [r.name, r] as const))("new Trainer(model, { exact: true }) %s: every weight PyTorch's bits after 200 steps", (_, r) => {
    const net = netOf(r.kinds, r.widths, r.dtype, r.params);
    const { lr, momentum, weight_decay: weightDecay } = r.settings;
    const optimizer = r.optimizer === 'momentum' ? 'sgd' : r.optimizer;
    const t = new Trainer(net, {
      exact: true, optimizer, lr, batchSize: r.batch, ...(momentum !== undefined ? { momentum } : {}), ...(weightDecay !== undefined ? { weightDecay } : {}),
    });
    // torch's loop takes rows (t mod 4)·batch each step: 4 batches in order, 50 epochs.
    const rows = 4 * r.batch;
    const X = fromBits(r.dtype, r.X).subarray(0, rows * r.widths[0]);
    const y = Int32Array.from(r.y).subarray(0, rows);
    t.fitSync(X, y, { epochs: r.steps / 4, shuffle: false });
    const diffs: string[] = [];
    let k = 0;
    r.kinds.forEach((kind, i) => {
      if (kind !== 'linear') return;
      const W = transposeRows(t.params[`W${k + 1}` as never] as FloatArray, r.widths[i], r.widths[i + 1]);
      const dW = differingEntries(W, fromBits(r.dtype, r.final[2 * k]));
      const db = differingEntries(t.params[`b${k + 1}` as never] as FloatArray, fromBits(r.dtype, r.final[2 * k + 1]));
      if (dW || db) diffs.push(`W${k + 1} ${dW}, b${k + 1} ${db}`);
      k++;
    });
    expect(diffs).toEqual([]);
  });
});

describe('{ exact: true } where it cannot be exact', () => {
  const net = Sequential.mlp([3, 4, 2], { seed: 1 });
  const X = new Float64Array(6).fill(0.5);
  const y = Int32Array.from([0, 1]);

  it("wasm and ts refuse it by name (they have neither LibTorch's BLAS calls nor Sleef); so does a Trainer on them", () => {
    for (const backend of ['ts', 'wasm'] as const) {
      const e = thrown(() => net.forwardBackward(X, y, { exact: true, backend }));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/exact/);
      expect(thrown(() => net.forward(X, { exact: true, backend }))).toBeInstanceOf(TypeError);
      expect(thrown(() => new Trainer(net, { exact: true, backend }))).toBeInstanceOf(TypeError);
    }
    expect(thrown(() => net.forwardBackward(X, y, { exact: 1 as never }))).toBeInstanceOf(TypeError);
  });

  it.skipIf(here === null)("after setNumThreads changed OpenBLAS's thread count (its kernels split work, and bits, by it), exact refuses naming both counts", () => {
    const before = getNumThreads();
    const other = before === 1 ? 2 : 1;
    // Both ways in: the mode switched on after the change (stackExact), and a step of a net already
    // in the mode meeting the change (the per-step check): a HandgradError with its code, as for
    // the other states of the process a call cannot run in (ERR_TORCH_UNAVAILABLE, …).
    const fresh = () => Sequential.mlp([3, 4, 2], { seed: 2 });
    const already = fresh();
    already.forwardBackward(X, y, { exact: true });
    setNumThreads(other);
    try {
      for (const e of [thrown(() => fresh().forwardBackward(X, y, { exact: true })), thrown(() => already.forwardBackward(X, y, { exact: true })),
        thrown(() => already.forward(X, { exact: true }))]) {
        expect(e).toBeInstanceOf(HandgradError);
        expect((e as HandgradError).code).toBe('ERR_EXACT_UNAVAILABLE');
        expect(e.message).toMatch(/thread/i);
      }
    } finally {
      setNumThreads(before);
    }
    expect(() => net.forwardBackward(X, y, { exact: true })).not.toThrow();
    expect(() => already.forwardBackward(X, y, { exact: true })).not.toThrow();
  });
});
