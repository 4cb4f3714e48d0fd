// The whole of F.cross_entropy (issue 13, item 2): weight, ignoreIndex, labelSmoothing, reduction
// 'none' with gradOutput (loss.backward(gradient)), probability targets — on every backend, through
// Sequential.forwardBackward, the two-layer forwardBackward and SoftmaxCrossEntropy, held to PyTorch
// Python 1.13's own F.cross_entropy + backward() within 8 eps (errEps, norm-wise). The goldens are
// test/fixtures/loss-options/cases.json, written by make.py there (run by /usr/bin/python3 with
// torch), so CI checks them without torch. B = 1, all-ignored batches, C = 1 and C = 2, depths 1–3,
// each activation, logits offset by 1000 and 1e5.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forwardBackward, gradcheck, Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, verify } from '../lib';
import type { Layer } from '../lib/layers/layer';
import type { BackendName, Dtype, FloatArray, LossReduction } from '../lib/types';
import { describeBackends, errEps, FIXTURES, skipReason, thrown, typed } from './helpers';

interface GoldenCase {
  name: string; dtype: Dtype; activation: 'relu' | 'sigmoid' | 'tanh'; widths: number[]; B: number;
  options: { reduction: LossReduction; ignoreIndex?: number; labelSmoothing?: number };
  X: number[]; params: number[][]; y: number[]; targets: boolean; weight: number[] | null; gradOutput: number[] | null;
  loss: number[]; grads: number[][]; dX: number[];
  /** PyTorch's logits [B,C] and ∂L/∂logits: the loss alone. */
  logits: number[]; dLogits: number[];
}
interface Golden {
  torch: string; cases: GoldenCase[];
  emptyMean: Record<Dtype, { allIgnored: string; zeroWeight: string }>;
  refused: Record<string, string | null>;
}

const golden = JSON.parse(readFileSync(join(FIXTURES, 'loss-options', 'cases.json'), 'utf8')) as Golden;
const TOL = 8;

function activation(kind: GoldenCase['activation']): Layer {
  return kind === 'relu' ? new ReLU() : kind === 'sigmoid' ? new Sigmoid() : new Tanh();
}

/** The case's net over copies of its parameters (W [in,out], as the goldens). */
function netOf(c: GoldenCase, loss?: SoftmaxCrossEntropy): Sequential {
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < c.widths.length; i++) {
    if (i > 0) layers.push(activation(c.activation));
    layers.push(new Linear(c.widths[i], c.widths[i + 1], { W: typed(c.dtype, c.params[2 * i]), b: typed(c.dtype, c.params[2 * i + 1]) }));
  }
  return new Sequential(layers, loss ? { loss } : {});
}

/** y as the call takes it: class ids, or the probability targets [B,C] in the net's dtype. */
const yOf = (c: GoldenCase): ArrayLike<number> => (c.targets ? typed(c.dtype, c.y) : Int32Array.from(c.y));

/** The call's options, per call (opts) — the loss's own (SoftmaxCrossEntropy) are held in their own test. */
function callOptions(c: GoldenCase, backend: BackendName) {
  return {
    backend, inputGrad: true, reduction: c.options.reduction,
    ...(c.weight ? { weight: typed(c.dtype, c.weight) } : {}),
    ...(c.options.ignoreIndex !== undefined ? { ignoreIndex: c.options.ignoreIndex } : {}),
    ...(c.options.labelSmoothing !== undefined ? { labelSmoothing: c.options.labelSmoothing } : {}),
    ...(c.gradOutput ? { gradOutput: typed(c.dtype, c.gradOutput) } : {}),
  };
}

/** Each tensor's distance from PyTorch in eps of the dtype: loss, every dWk/dbk, dX. */
function distances(c: GoldenCase, r: { loss: number | FloatArray; grads: Record<string, FloatArray> }): Record<string, number> {
  const out: Record<string, number> = { loss: errEps(typeof r.loss === 'number' ? [r.loss] : r.loss, c.loss, c.dtype) };
  c.grads.forEach((g, j) => {
    const name = `d${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1}`;
    out[name] = errEps(r.grads[name], g, c.dtype);
  });
  out.dX = errEps(r.grads.dX, c.dX, c.dtype);
  return out;
}

const worst = (d: Record<string, number>) => Math.max(...Object.values(d));

describe('the goldens (test/fixtures/loss-options, PyTorch Python)', () => {
  it(`come from PyTorch 1.13 and cover every option, B = 1, C = 1 and 2, all-ignored rows, offsets 1000 and 1e5 (${golden.cases.length} cases)`, () => {
    expect(golden.torch).toMatch(/^1\.13/);
    const names = golden.cases.map((c) => c.name).join('\n');
    for (const want of ['weight-mean', 'ignored-mean', 'smoothing-weight-ignored-mean', 'none-weight', 'all-ignored-sum', 'all-ignored-none', 'targets-weight-smoothing', 'float32']) {
      expect(names).toContain(want);
    }
    expect(golden.cases.some((c) => c.B === 1)).toBe(true);
    expect(golden.cases.some((c) => c.widths.at(-1) === 1)).toBe(true);
    expect(golden.cases.some((c) => c.widths.at(-1) === 2)).toBe(true);
    expect(names).toMatch(/offset=1000\b/);
    expect(names).toMatch(/offset=100000\b/);
    expect(new Set(golden.cases.map((c) => c.widths.length - 1))).toEqual(new Set([1, 2, 3]));
  });
});

/** Linear(C, C) with W = I, b = 0: its output is its input to the bit (x·1 + Σ 0 + 0), so the loss sees PyTorch's own logits. */
function identityNet(c: GoldenCase): Sequential {
  const C = c.widths.at(-1)!;
  const W = typed(c.dtype, Array.from({ length: C * C }, (_, i) => (i % (C + 1) === 0 ? 1 : 0)));
  return new Sequential([new Linear(C, C, { W, b: typed(c.dtype, new Array(C).fill(0)) })]);
}

/** Whether the backend's logits equal PyTorch's to the bit (the forward is not this file's subject). */
function sameLogits(c: GoldenCase, net: Sequential, backend: BackendName): boolean {
  if (/offset=0\b/.test(c.name)) return true; // no offset: an ulp of a logit moves no gradient past 8 eps (make.py's draws)
  const l = net.forward(typed(c.dtype, c.X), { backend: backend === 'torch' ? 'torch' : backend });
  return l.every((v, i) => Object.is(v, typed(c.dtype, c.logits)[i]));
}

describeBackends('F.cross_entropy options against PyTorch Python', (backend) => {
  it("the loss alone: on PyTorch's own logits, the loss and ∂L/∂logits within 8 eps of PyTorch on every case (offsets included)", () => {
    const bad: string[] = [];
    let max = 0;
    for (const c of golden.cases) {
      const r = identityNet(c).forwardBackward(typed(c.dtype, c.logits), yOf(c), callOptions(c, backend) as never) as { loss: number | FloatArray; grads: Record<string, FloatArray> };
      const d = {
        loss: errEps(typeof r.loss === 'number' ? [r.loss] : r.loss, c.loss, c.dtype),
        dLogits: errEps(r.grads.dX, c.dLogits, c.dtype),
      };
      max = Math.max(max, worst(d));
      if (worst(d) > TOL) bad.push(`${c.name}: ${JSON.stringify(d)}`);
    }
    expect(bad, `worst ${max.toFixed(2)} eps`).toEqual([]);
  });

  it('Sequential.forwardBackward: loss, every gradient and dX within 8 eps of PyTorch on every case (with an offset: where the logits are PyTorch\'s to the bit)', () => {
    // With a logit offset of 1000 or 1e5, a logit the forward rounds differently (a GEMM summing in
    // another order than OpenBLAS, then + 1000) moves by an ulp of the offset, far more than any
    // loss could undo: that is the forward's agreement with PyTorch (issue 13, items 1 and 4), not
    // the loss's. Those cases are left to the loss-alone test above (on PyTorch's own logits); the
    // next test counts them.
    const bad: string[] = [];
    let max = 0;
    for (const c of golden.cases) {
      const net = netOf(c);
      if (!sameLogits(c, net, backend)) continue;
      const r = net.forwardBackward(typed(c.dtype, c.X), yOf(c), callOptions(c, backend) as never) as { loss: number | FloatArray; grads: Record<string, FloatArray> };
      if (c.options.reduction === 'none') {
        expect(r.loss, c.name).toBeInstanceOf(c.dtype === 'float64' ? Float64Array : Float32Array);
      } else expect(typeof r.loss, c.name).toBe('number');
      const d = distances(c, r);
      max = Math.max(max, worst(d));
      if (worst(d) > TOL) bad.push(`${c.name}: ${JSON.stringify(d)}`);
    }
    expect(bad, `worst ${max.toFixed(2)} eps`).toEqual([]);
  });

  it('with a logit offset of 1000 or 1e5 the logits are PyTorch\'s to the bit on at least 95% of the cases (the product first, then the bias)', () => {
    // An ulp of 1e5 is 0.0078 in float32. Measured here: 75 of 76 on native, ts and wasm (one
    // float64 case with offset 1000 rounds a logit to the neighbouring double).
    const offsets = golden.cases.filter((c) => !/offset=0\b/.test(c.name));
    expect(offsets.length).toBeGreaterThan(50);
    const differ = offsets.filter((c) => !sameLogits(c, netOf(c), backend)).length;
    expect(differ, `${differ} of ${offsets.length} differ`).toBeLessThanOrEqual(Math.floor(offsets.length * 0.05));
  });

  it('the loss\'s own options (new SoftmaxCrossEntropy({ weight, ignoreIndex, labelSmoothing, reduction })) give the same as per call', () => {
    const bad: string[] = [];
    for (const c of golden.cases) {
      const loss = new SoftmaxCrossEntropy({
        reduction: c.options.reduction, ignoreIndex: c.options.ignoreIndex, labelSmoothing: c.options.labelSmoothing,
        ...(c.weight ? { weight: typed(c.dtype, c.weight) } : {}),
      });
      const net = netOf(c, loss);
      if (!sameLogits(c, net, backend)) continue;
      const opts = { backend, inputGrad: true, ...(c.gradOutput ? { gradOutput: typed(c.dtype, c.gradOutput) } : {}) };
      const r = net.forwardBackward(typed(c.dtype, c.X), yOf(c), opts as never) as { loss: number | FloatArray; grads: Record<string, FloatArray> };
      const d = distances(c, r);
      if (worst(d) > TOL) bad.push(`${c.name}: ${JSON.stringify(d)}`);
    }
    expect(bad).toEqual([]);
  });

  it('the two-layer forwardBackward(params, X, y, opts) takes the same options', () => {
    const bad: string[] = [];
    for (const c of golden.cases.filter((k) => k.widths.length === 3)) {
      if (!sameLogits(c, netOf(c), backend)) continue;
      const params = { W1: typed(c.dtype, c.params[0]), b1: typed(c.dtype, c.params[1]), W2: typed(c.dtype, c.params[2]), b2: typed(c.dtype, c.params[3]) };
      const r = forwardBackward(params, typed(c.dtype, c.X), yOf(c), { ...callOptions(c, backend), activation: c.activation } as never) as unknown as {
        loss: number | FloatArray; grads: Record<string, FloatArray>;
      };
      const d = distances(c, r);
      if (worst(d) > TOL) bad.push(`${c.name}: ${JSON.stringify(d)}`);
    }
    expect(bad).toEqual([]);
  });

  it('an output sharing memory with the weight or gradOutput is a RangeError, as for any input', () => {
    const net = Sequential.mlp([2, 3, 3], { seed: 2 });
    const X = Float64Array.of(0.1, 0.2, 0.3, 0.4);
    const buf = new Float64Array(6);
    const e = thrown(() => net.forwardBackward(X, [0, 1], { backend, weight: buf.subarray(0, 3).fill(1), out: { db2: buf.subarray(2, 5) } }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/not to share memory with .*weight/);
    const g = thrown(() => net.forwardBackward(X, [0, 1], { backend, reduction: 'none', gradOutput: buf.subarray(0, 2).fill(1), out: { db2: buf.subarray(1, 4) } }));
    expect(g.message).toMatch(/not to share memory with .*gradOutput/);
  });

  it("evaluate() on a net whose loss has the options gives PyTorch's 'mean' loss (within 8 eps)", () => {
    const bad: string[] = [];
    let n = 0;
    for (const c of golden.cases.filter((k) => k.options.reduction === 'mean' && !k.targets)) {
      const loss = new SoftmaxCrossEntropy({
        ignoreIndex: c.options.ignoreIndex, labelSmoothing: c.options.labelSmoothing, ...(c.weight ? { weight: typed(c.dtype, c.weight) } : {}),
      });
      const net = netOf(c, loss);
      if (!sameLogits(c, net, backend)) continue;
      n++;
      const e = net.evaluate(typed(c.dtype, c.X), Int32Array.from(c.y), { backend, batchSize: 2 });
      const d = errEps([e.loss], c.loss, c.dtype);
      if (d > TOL) bad.push(`${c.name}: ${d}`);
    }
    expect(bad).toEqual([]);
    expect(n).toBeGreaterThan(10);
  });

  it("'mean' with every row ignored or a zero total weight is a RangeError naming the cause (PyTorch: NaN)", () => {
    for (const dtype of ['float64', 'float32'] as const) {
      expect(golden.emptyMean[dtype]).toEqual({ allIgnored: 'nan', zeroWeight: 'nan' });
      const net = Sequential.mlp([2, 3, 2], { dtype, seed: 3 });
      const X = typed(dtype, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
      const e1 = thrown(() => net.forwardBackward(X, [-100, -100, -100], { backend }));
      expect(e1).toBeInstanceOf(RangeError);
      expect(e1.message).toMatch(/every row is ignored.*NaN/);
      const e2 = thrown(() => net.forwardBackward(X, [7, 7, 7], { backend, ignoreIndex: 7, labelSmoothing: 0.1 }));
      expect(e2.message).toMatch(/ignoreIndex \(7\).*every row is ignored/);
      const e3 = thrown(() => net.forwardBackward(X, [0, 0, 1], { backend, weight: typed(dtype, [0, 0]) }));
      expect(e3).toBeInstanceOf(RangeError);
      expect(e3.message).toMatch(/nonzero total weight.*is 0/);
      // 'sum' of nothing is 0, as PyTorch: not an error.
      const r = net.forwardBackward(X, [-100, -100, -100], { backend, reduction: 'sum' });
      expect(r.loss).toBe(0);
      expect(Array.from(r.grads.db2)).toEqual([0, 0]);
    }
  });
});

describe('F.cross_entropy options: the rules PyTorch enforces, and ours', () => {
  const net = Sequential.mlp([2, 3, 3], { seed: 5 });
  const X = Float64Array.of(0.1, -0.2, 0.3, 0.4);
  it('labelSmoothing outside [0, 1] is a RangeError (PyTorch: "label_smoothing must be between 0.0 and 1.0")', () => {
    expect(golden.refused.labelSmoothingAboveOne).toMatch(/label_smoothing must be between 0.0 and 1.0/);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { labelSmoothing: 1.5 }))).toBeInstanceOf(RangeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { labelSmoothing: -0.1 }))).toBeInstanceOf(RangeError);
    expect(thrown(() => new SoftmaxCrossEntropy({ labelSmoothing: 2 }))).toBeInstanceOf(RangeError);
    expect(thrown(() => new SoftmaxCrossEntropy({ labelSmoothing: '0.1' as never }))).toBeInstanceOf(TypeError);
  });
  it("reduction 'none' without gradOutput is a TypeError (PyTorch: grad can be implicitly created only for scalar outputs); gradOutput with 'mean' too", () => {
    expect(golden.refused.noneBackwardWithoutGradient).toMatch(/grad can be implicitly created only for scalar outputs/);
    const e = thrown(() => net.forwardBackward(X, [0, 1], { reduction: 'none' }));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/gradOutput/);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { gradOutput: Float64Array.of(1, 1) }))).toBeInstanceOf(TypeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { reduction: 'none', gradOutput: Float64Array.of(1) }))).toBeInstanceOf(RangeError);
  });
  it('ignoreIndex ≥ 0 with probability targets is a RangeError (PyTorch: "ignore_index is not supported for floating point target"); a negative one is ignored, as there', () => {
    expect(golden.refused.ignoreIndexWithTargets).toMatch(/ignore_index is not supported for floating point target/);
    const q = Float64Array.of(0.5, 0.25, 0.25, 0, 1, 0);
    const e = thrown(() => net.forwardBackward(X, q, { ignoreIndex: 0 }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/ignore_index is not supported for floating point target/);
    expect(Number.isFinite(net.forwardBackward(X, q, { ignoreIndex: -1 }).loss)).toBe(true);
  });
  it('labels outside [0, C) that are not ignoreIndex stay a RangeError; the weight is checked (dtype, length, finite)', () => {
    expect(thrown(() => net.forwardBackward(X, [0, 3]))).toBeInstanceOf(RangeError);
    expect(thrown(() => net.forwardBackward(X, [0, -1]))).toBeInstanceOf(RangeError);
    expect(thrown(() => net.forwardBackward(X, [0, -1], { ignoreIndex: -2 }))).toBeInstanceOf(RangeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { weight: Float32Array.of(1, 1, 1) }))).toBeInstanceOf(TypeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { weight: [1, 5, 1] as never }))).toBeInstanceOf(TypeError);
    expect(thrown(() => new SoftmaxCrossEntropy({ weight: [1, 5] as never }))).toBeInstanceOf(TypeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { weight: Float64Array.of(1, 1) }))).toBeInstanceOf(RangeError);
    expect(thrown(() => net.forwardBackward(X, [0, 1], { weight: Float64Array.of(1, NaN, 1) }))).toBeInstanceOf(RangeError);
    expect(thrown(() => new Sequential([new Linear(2, 3, { W: new Float64Array(6), b: new Float64Array(3) })], { loss: new SoftmaxCrossEntropy({ weight: Float64Array.of(1, 2) }) }))).toBeInstanceOf(RangeError);
  });
  it("PyTorch's snake_case names are answered with this package's (did you mean)", () => {
    expect(thrown(() => net.forwardBackward(X, [0, 1], { ignore_index: 1 } as never)).message).toMatch(/did you mean 'ignoreIndex'/);
    expect(thrown(() => new SoftmaxCrossEntropy({ label_smoothing: 0.1 } as never)).message).toMatch(/did you mean 'labelSmoothing'/);
  });
  it('a shared weight is copied: another thread writing it cannot change a call; the loss keeps it', () => {
    const w = new Float64Array(new SharedArrayBuffer(24));
    w.set([1, 2, 3]);
    const loss = new SoftmaxCrossEntropy({ weight: w });
    expect(loss.weight).not.toBe(w);
    w[0] = 100;
    expect(Array.from(loss.weight!)).toEqual([1, 2, 3]);
  });
  it('spec()/fromSpec carry the loss options, so a rebuilt model computes the same loss', () => {
    const seq = Sequential.mlp([2, 3, 3], { seed: 5, loss: new SoftmaxCrossEntropy({ weight: Float64Array.of(1, 2, 0.5), ignoreIndex: 2, labelSmoothing: 0.1 }) });
    const spec = seq.spec();
    expect(spec.loss).toEqual({ weight: [1, 2, 0.5], ignoreIndex: 2, labelSmoothing: 0.1 });
    const again = Sequential.fromSpec(JSON.parse(JSON.stringify(spec)), seq.params);
    const a = seq.forwardBackward(X, [0, 2]);
    const b = again.forwardBackward(X, [0, 2]);
    expect(b.loss).toBe(a.loss);
    expect(Sequential.mlp([2, 3, 3]).spec().loss).toBeUndefined();
  });
});

describe('verify and gradcheck check the loss options (the float64 stack and the finite differences compute the same loss)', () => {
  const net = Sequential.mlp([3, 5, 4], { seed: 11, activation: 'tanh' });
  const X = Float64Array.from({ length: 15 }, (_, i) => Math.sin(1.7 * i));
  const y = [0, 3, -100, 1, 2];
  const OPTION_SETS = [
    { weight: Float64Array.of(0.5, 1, 2, 1.5) },
    { labelSmoothing: 0.2 },
    { ignoreIndex: 1 },
    { weight: Float64Array.of(0.5, 1, 2, 1.5), labelSmoothing: 0.1, reduction: 'sum' as const },
  ];
  it.each(OPTION_SETS.map((o) => [JSON.stringify(o, (_, x) => (ArrayBuffer.isView(x) ? Array.from(x as Float64Array) : x)), o] as const))(
    'verify against finite differences, and gradcheck, pass with %s (an ignored row in y)', (_, o) => {
      const labels = 'ignoreIndex' in o ? [0, 3, 1, 1, 2] : y;
      const r = verify(net, X, labels, { ...o, reference: 'fd' });
      expect(r.ok, JSON.stringify(r.tensors.map((t) => [t.name, t.relError]))).toBe(true);
      expect(gradcheck(net, X, labels, { ...o, backend: 'ts', inputGrad: true }).ok).toBe(true);
      if (skipReason('torch') === null) expect(verify(net, X, labels, { ...o, reference: 'torch' }).ok).toBe(true);
    });
  it('a gradient function that ignores the weight fails verify and gradcheck with it (and passes without it)', () => {
    const unweighted = (n: Sequential, Xc: Float64Array, yc: Int32Array, opts: { reduction: 'mean' | 'sum' }) =>
      n.forwardBackward(Xc, yc, { reduction: opts.reduction, inputGrad: true, ignoreIndex: -100 }).grads;
    const weight = Float64Array.of(0.5, 1, 2, 1.5);
    expect(verify(net, X, y, { candidate: unweighted as never, reference: 'fd' }).ok).toBe(true);
    expect(verify(net, X, y, { candidate: unweighted as never, reference: 'fd', weight }).ok).toBe(false);
    expect(gradcheck(unweighted as never, X, y, { params: net, weight } as never).ok).toBe(false);
  });
  it("'mean' with every row ignored is refused by verify as by forwardBackward", () => {
    expect(thrown(() => verify(net, X, [-100, -100, -100, -100, -100], { reference: 'fd' })).message).toMatch(/every row is ignored/);
  });
});
