// The layer stack (lib/layers) against independent truths: the fused two-layer path (bit for bit:
// same kernels, same order), LibTorch autograd of the same stack in float64 (depth 1–5, widths
// including 1, every activation, both reductions, both dtypes, on native, ts and wasm), and central
// finite differences in float64. Then the Layer contract (shapes checked, workspaces reused, errors
// that name the layer), the Trainer on a Sequential, and checkpoints.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadParams, loadSequential, saveParams, saveSequential } from '../lib/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import { getKernels } from '../lib/kernels';
import { loadDigits, trainValSplit } from '../lib/data';
import { forwardBackward, initParams, Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, Trainer } from '../lib/index';
import type { Layer, LayerSpec } from '../lib/layers';
import type { Activation, BackendName, Dtype, Reduction } from '../lib/types';
import { backendCases, backendTitle, EPS, randomArray, randomLabels, sameBits, skipReason, typed } from './helpers';

// Every backend, each with null or why it is skipped here (test/helpers.ts); CANDIDATES are those
// checked against the LibTorch reference (torch itself is the reference).
const CASES = backendCases();
const CANDIDATES = backendCases(['native', 'ts', 'wasm']);
const RUNS: BackendName[] = CASES.filter(([, skip]) => skip === null).map(([b]) => b);
const torchSkip = skipReason('torch');
const ACTS: Activation[] = ['relu', 'sigmoid', 'tanh'];
const REDS: Reduction[] = ['mean', 'sum'];
const DTYPES: Dtype[] = ['float64', 'float32'];

const act = (a: Activation): Layer => (a === 'relu' ? new ReLU() : a === 'sigmoid' ? new Sigmoid() : new Tanh());

/** A seeded stack: Linear layers of the given widths with activations between (cycling through `acts`). */
function stack(widths: number[], acts: Activation[], dtype: Dtype, seed: number): Sequential {
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    if (i > 0) layers.push(act(acts[(i - 1) % acts.length]));
    const scale = 2 / Math.sqrt(widths[i]);
    layers.push(new Linear(widths[i], widths[i + 1], {
      W: typed(dtype, randomArray(widths[i] * widths[i + 1], seed + 17 * i, scale)),
      b: typed(dtype, randomArray(widths[i + 1], seed + 17 * i + 7, 0.5)),
    }));
  }
  return new Sequential(layers);
}

/** The same net in float64 (a copy), for the reference. */
function to64(seq: Sequential): Sequential {
  const p: Record<string, Float64Array> = {};
  for (const [k, t] of Object.entries(seq.params)) p[k] = Float64Array.from(t);
  return Sequential.fromSpec({ ...seq.spec(), dtype: 'float64' }, p);
}

/** ‖a − b‖₂ / ‖b‖₂ in units of eps (0 when both are 0). */
function normEps(a: ArrayLike<number>, b: ArrayLike<number>, dtype: Dtype): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den) / EPS[dtype];
}

describe('the two-layer functions are Sequential([Linear, act, Linear]): the same bits through either API (grads, cache, accumulate)', () => {
  for (const [backend, skip] of CASES) for (const dtype of DTYPES) for (const activation of ACTS) for (const reduction of REDS) {
    it.skipIf(skip)(backendTitle(`${dtype} ${activation} ${reduction}`, backend, skip), () => {
      for (const [B, D, H, C] of [[4, 5, 10, 3], [7, 1, 1, 2], [33, 20, 70, 5]]) {
        const p = initParams({ D, H, C }, { seed: B, dtype, init: 'torch' });
        const seq = new Sequential([new Linear(D, H, { W: p.W1, b: p.b1 }), act(activation), new Linear(H, C, { W: p.W2, b: p.b2 })]);
        const X = typed(dtype, randomArray(B * D, B + 1, 2));
        const y = randomLabels(B, C, B + 2);
        for (const accumulate of [false, true]) {
          const start = (n: number, s: number) => typed(dtype, randomArray(n, s));
          const mk = () => ({ dX: start(B * D, 1), dW1: start(D * H, 2), db1: start(H, 3), dW2: start(H * C, 4), db2: start(C, 5) });
          const a = forwardBackward(p, X, y, { backend, activation, reduction, accumulate, out: mk(), cache: true });
          const s = seq.forwardBackward(X, y, { backend, reduction, accumulate, out: mk(), cache: true });
          expect(s.loss).toBe(a.loss);
          for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) expect(sameBits(s.grads[k], a.grads[k]!), k).toBe(true);
          expect(sameBits(s.cache!.outputs[0], a.cache!.Z1)).toBe(true);
          expect(sameBits(s.cache!.outputs[1], a.cache!.A1)).toBe(true);
          expect(sameBits(s.cache!.outputs[2], a.cache!.logits)).toBe(true);
          expect(sameBits(s.cache!.probs, a.cache!.probs)).toBe(true);
        }
      }
    });
  }
});

// Depth = number of Linear layers. Widths include 1 (a one-unit bottleneck, a single input, two
// classes from one unit); activations cycle so every depth ≥ 2 mixes them.
const NETS: { name: string; widths: number[]; acts: Activation[] }[] = [
  { name: 'depth 1 (logistic regression)', widths: [6, 4], acts: [] },
  { name: 'depth 1, D = 1', widths: [1, 3], acts: [] },
  { name: 'depth 2, relu, H = 1', widths: [5, 1, 3], acts: ['relu'] },
  { name: 'depth 3, tanh/relu', widths: [8, 16, 12, 5], acts: ['tanh', 'relu'] },
  { name: 'depth 3, sigmoid, width 1 inside', widths: [4, 1, 6, 3], acts: ['sigmoid'] },
  { name: 'depth 4, relu', widths: [10, 32, 24, 16, 7], acts: ['relu'] },
  { name: 'depth 5, relu/sigmoid/tanh', widths: [9, 20, 15, 10, 8, 4], acts: ['relu', 'sigmoid', 'tanh'] },
  { name: 'depth 5, one input, one-unit layers', widths: [1, 1, 4, 1, 3, 2], acts: ['tanh', 'relu'] },
];

// Normwise error against LibTorch autograd in float64, in eps of the candidate's dtype. Measured
// worst over this file's nets: float64 5.0 eps (native, ts) and 4.6 (wasm); float32 4.2 (native,
// wasm), 2.8 (ts), and 2.8 for LibTorch's own float32. 8 leaves a margin without hiding a wrong term
// (a missing 1/B, a transposed W or a wrong activation derivative is off by 10^6 eps or more).
const TORCH_TOL_EPS = 8;

describe.skipIf(torchSkip)(backendTitle('any depth equals LibTorch autograd (float64 reference) within a few eps normwise', 'torch', torchSkip), () => {
  for (const net of NETS) for (const [backend, skip] of CANDIDATES) for (const dtype of DTYPES) for (const reduction of REDS) {
    it.skipIf(skip)(backendTitle(`${net.name}, ${dtype}, ${reduction}`, backend, skip), () => {
      const B = 11;
      const seq = stack(net.widths, net.acts, dtype, net.widths.length * 31 + net.widths[0]);
      const X = typed(dtype, randomArray(B * seq.inFeatures, 5, 1.5));
      const y = randomLabels(B, seq.classes, 6);
      const ref = to64(seq).forwardBackward(Float64Array.from(X), y, { backend: 'torch', reduction, inputGrad: true });
      const r = seq.forwardBackward(X, y, { backend, reduction, inputGrad: true });
      expect(Math.abs(r.loss - ref.loss) / Math.max(Math.abs(ref.loss), 1e-300) / EPS[dtype], `${backend} loss`).toBeLessThanOrEqual(TORCH_TOL_EPS);
      expect(Object.keys(r.grads).sort()).toEqual(Object.keys(ref.grads).sort());
      for (const [k, g] of Object.entries(ref.grads)) {
        expect(normEps(r.grads[k], g, dtype), `${backend} ${k}`).toBeLessThanOrEqual(TORCH_TOL_EPS);
      }
    });
  }
  // The float32 reference itself (LibTorch in the net's dtype) agrees as closely.
  for (const net of NETS) for (const reduction of REDS) {
    it(`${net.name}, float32, ${reduction}: LibTorch's own float32 [torch]`, () => {
      const B = 11;
      const seq = stack(net.widths, net.acts, 'float32', net.widths.length * 31 + net.widths[0]);
      const X = typed('float32', randomArray(B * seq.inFeatures, 5, 1.5));
      const y = randomLabels(B, seq.classes, 6);
      const ref = to64(seq).forwardBackward(Float64Array.from(X), y, { backend: 'torch', reduction, inputGrad: true });
      const t32 = seq.forwardBackward(X, y, { backend: 'torch', reduction, inputGrad: true });
      for (const [k, g] of Object.entries(ref.grads)) expect(normEps(t32.grads[k], g, 'float32'), `torch f32 ${k}`).toBeLessThanOrEqual(TORCH_TOL_EPS);
    });
  }
});

describe('any depth equals central finite differences in float64', () => {
  // Central differences at h = 1e-6: truncation ~h²·|f'''| and rounding ~eps·|loss|/h, both far
  // below 1e-7 of these gradients (whose norms are ~1e-2 to 1); measured worst 1.7e-8 (depth 5,
  // dW1). Every entry of every tensor.
  for (const net of NETS.filter((n) => n.widths.reduce((a, b) => a * b, 1) < 1e6)) {
    it(net.name, () => {
      const B = 5;
      const seq = stack(net.widths, net.acts.map((a) => (a === 'relu' ? 'tanh' : a)), 'float64', 3); // smooth: no kinks
      const X = randomArray(B * seq.inFeatures, 9, 1);
      const y = randomLabels(B, seq.classes, 10);
      const r = seq.forwardBackward(X, y, { inputGrad: true });
      const h = 1e-6;
      const lossAt = () => seq.forwardBackward(X, y, { backend: 'ts' }).loss;
      const tensors: [string, Float64Array][] = [['dX', X], ...Object.entries(seq.params).map(([k, t]) => [`d${k}`, t as Float64Array] as [string, Float64Array])];
      for (const [name, t] of tensors) {
        const fd = new Float64Array(t.length);
        for (let i = 0; i < t.length; i++) {
          const keep = t[i];
          t[i] = keep + h;
          const up = lossAt();
          t[i] = keep - h;
          const down = lossAt();
          t[i] = keep;
          fd[i] = (up - down) / (2 * h);
        }
        expect(normEps(r.grads[name], fd, 'float64') * EPS.float64, name).toBeLessThan(1e-7);
      }
    });
  }
});

describe('the Layer contract', () => {
  it('a Linear caches its input and a ReLU its pre-activation: backward reads only what forward saved', () => {
    // Z = A·W + b with A [2,3], W [3,2]; then ReLU; backward of a known upstream gradient, by hand.
    const lin = new Linear(3, 2, { W: Float64Array.of(1, -1, 2, 0, -3, 1), b: Float64Array.of(0.5, -0.5) });
    const relu = new ReLU();
    const kernels = getKernels('native');
    const A = Float64Array.of(1, 2, 3, -1, 0, 1);
    const ctx1 = { B: 2, kernels, output: new Float64Array(4), gradInput: new Float64Array(6), accumulateInput: false, grads: { W: new Float64Array(6), b: new Float64Array(2) }, accumulate: false, input: null, scratch: null };
    const ctx2 = { B: 2, kernels, output: new Float64Array(4), gradInput: new Float64Array(4), accumulateInput: false, grads: {}, accumulate: false, input: null, scratch: null };
    const Z = lin.forward(A, ctx1);
    expect([...Z]).toEqual([1 + 4 - 9 + 0.5, -1 + 0 + 3 - 0.5, -1 + 0 - 3 + 0.5, 1 + 0 + 1 - 0.5]); // [-3.5, 1.5, -3.5, 1.5]
    const out = relu.forward(Z, ctx2);
    expect([...out]).toEqual([0, 1.5, 0, 1.5]);
    expect(ctx2.input).toBe(Z); // the pre-activation, not the activation
    const dOut = Float64Array.of(1, 2, 3, 4);
    const dZ = relu.backward(dOut, ctx2)!;
    expect([...dZ]).toEqual([0, 2, 0, 4]);
    expect([...dOut]).toEqual([1, 2, 3, 4]); // the caller's gradient is left as it was
    const dA = lin.backward(dZ, ctx1)!;
    // dW = Aᵀ·dZ, db = Σ_b dZ, dA = dZ·Wᵀ
    expect([...ctx1.grads.W]).toEqual([0 * 1 + 0 * -1, 2 * 1 + 4 * -1, 0, 2 * 2 + 4 * 0, 0, 2 * 3 + 4 * 1]);
    expect([...ctx1.grads.b]).toEqual([0, 6]);
    expect([...dA]).toEqual([-2, 0, 2, -4, 0, 4]);
  });

  it('shapes are checked when the stack is built, naming the layer', () => {
    expect(() => new Sequential([new Linear(4, 8), new ReLU(), new Linear(6, 3)])).toThrow(
      /Expected an input of 6 features \(the width of layers\[1\] \(ReLU\)\) for layers\[2\] \(Linear 6→3\) but received 8/,
    );
    expect(() => new Sequential([])).toThrow(RangeError);
    expect(() => new Sequential([new ReLU()])).toThrow(/at least one Linear layer/);
    const l = new Linear(3, 3);
    expect(() => new Sequential([l, new ReLU(), l])).toThrow(/each layer object once .* layers\[2\] but received layers\[0\] again/);
    expect(() => new Sequential([new Linear(2, 2), new Linear(2, 2, { dtype: 'float32' })])).toThrow(TypeError);
    expect(() => new Sequential([new Linear(2, 2), { kind: 'linear' } as unknown as Layer])).toThrow(/Expected a Linear, ReLU, Sigmoid or Tanh for layers\[1\]/);
    expect(() => new Linear(0, 2)).toThrow(RangeError);
    expect(() => new Linear(2, 2, { W: new Float64Array(3), b: new Float64Array(2) })).toThrow(/Expected 4 elements for W/);
    expect(() => new Sequential([new Linear(2, 2)], { loss: {} as SoftmaxCrossEntropy })).toThrow(TypeError);
    // A spec may come from a file: a missing or unknown kind, or missing sizes, are errors, never a default.
    const spec = (layers: unknown[]) => ({ dtype: 'float64' as const, layers: layers as LayerSpec[], reduction: 'mean' as const });
    expect(() => Sequential.fromSpec(spec([{}]))).toThrow(/Expected one of 'linear', 'relu', 'sigmoid', 'tanh' for spec.layers\[0\].kind but received null/);
    expect(() => Sequential.fromSpec(spec([{ kind: 'conv' }]))).toThrow(RangeError);
    expect(() => Sequential.fromSpec(spec([{ kind: 'linear', in: 2 }]))).toThrow(/spec.layers\[0\].out/);
    expect(() => Sequential.fromSpec(spec([{ kind: 'linear', in: 2, out: 3 }]), { W1: new Float64Array(5), b1: new Float64Array(3) })).toThrow(/Expected 6 elements for params.W1/);
  });

  it('bad batches are RangeError/TypeError naming the tensor or the layer; the process survives', () => {
    const seq = Sequential.mlp([3, 4, 4, 2], { seed: 1 });
    const X = randomArray(6, 1);
    expect(() => seq.forwardBackward(randomArray(7, 1), [0, 1])).toThrow(/for X but received Float64Array of length 7/);
    expect(() => seq.forwardBackward(X, [0, 2])).toThrow(/labels in \[0, 2\) for y but received 2 at index 1/);
    expect(() => seq.forwardBackward(Float32Array.from(X), [0, 1])).toThrow(TypeError);
    expect(() => seq.forwardBackward(X, [0, 1], { out: { dW2: new Float64Array(3) } })).toThrow(/Expected 16 elements for out.dW2/);
    expect(() => seq.forwardBackward(X, [0, 1], { out: { dW9: new Float64Array(3) } })).toThrow(/opts.out key/);
    expect(() => seq.forwardBackward(X, [0, 1], { out: { dW1: seq.params.W1 } })).toThrow(/out.dW1 not to share memory with W1/);
    const bad = X.slice();
    bad[4] = NaN;
    expect(() => seq.forwardBackward(bad, [0, 1])).toThrow(/finite values in X but received NaN at index 4/);
    const nan = Sequential.mlp([3, 4, 4, 2], { seed: 1 });
    nan.params.W2[5] = Infinity;
    expect(() => nan.forwardBackward(X, [0, 1])).toThrow(/finite values in W2 but received Infinity at index 5/);
    const big = Sequential.mlp([3, 4, 4, 2], { seed: 1 });
    big.params.W2.fill(1e200); // finite outputs at layers[2] (~1e200), then ~1e400 at layers[4]
    big.params.W3.fill(1e200);
    expect(() => big.forwardBackward(X, [0, 1])).toThrow(/layers\[4\] \(Linear 4→2\) = the output of layers\[3\]·W3 \+ b3 overflowed/);
    // ReLU first would map −Infinity to 0: X is checked before it.
    const reluFirst = new Sequential([new ReLU(), new Linear(3, 2)]);
    const negInf = X.slice();
    negInf[0] = -Infinity;
    expect(() => reluFirst.forwardBackward(negInf, [0, 1])).toThrow(/finite values in X but received -Infinity at index 0/);
    for (const backend of RUNS) expect(seq.forwardBackward(X, [0, 1], { backend }).loss).toBeGreaterThan(0);
  });

  it('workspaces are allocated once per batch size and reused', () => {
    const seq = Sequential.mlp([5, 8, 3], { seed: 2 });
    const X = randomArray(20, 3);
    const y = randomLabels(4, 3, 4);
    const out = { dW1: new Float64Array(40), db1: new Float64Array(8), dW2: new Float64Array(24), db2: new Float64Array(3) };
    const first = seq.forwardBackward(X, y, { out });
    const second = seq.forwardBackward(X, y, { out });
    expect(second.logits).toBe(first.logits); // the same buffer: nothing allocated for the step
    expect(second.grads.dW1).toBe(out.dW1);
    const other = seq.forwardBackward(X.subarray(0, 10), y.subarray(0, 2));
    expect(other.logits).not.toBe(first.logits);
    expect(seq.forwardBackward(X, y, { out }).logits).toBe(first.logits);
  });

  it('accumulate adds into the out buffers (.grad semantics), dX included, with an activation first', () => {
    const seq = new Sequential([new Tanh(), new Linear(3, 4, { seed: 1, init: 'torch' }), new Sigmoid(), new Linear(4, 2, { seed: 2, init: 'torch' })]);
    const X = randomArray(9, 5);
    const y = [0, 1, 1];
    const once = seq.forwardBackward(X, y, { inputGrad: true });
    const out = Object.fromEntries(Object.entries(once.grads).map(([k, g]) => [k, g.slice()]));
    seq.forwardBackward(X, y, { out, accumulate: true });
    // Parameter gradients go through a beta = 1 GEMM or sumRows into the held value, whose
    // rounding may differ from 2·g by an ulp or two of the longest sum; 16 eps of the tensor's max.
    for (const [k, g] of Object.entries(once.grads)) {
      const max = Math.max(...Array.from(g, Math.abs));
      for (let i = 0; i < g.length; i++) expect(Math.abs(out[k][i] - 2 * g[i]), k).toBeLessThanOrEqual(16 * EPS.float64 * max);
    }
  });

  it('mlp() draws the numbers of initParams for [D, H, C]', () => {
    const p = initParams({ D: 7, H: 9, C: 4 }, { seed: 5, init: 'xavier', dtype: 'float32' });
    const seq = Sequential.mlp([7, 9, 4], { seed: 5, init: 'xavier', dtype: 'float32' });
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(seq.params[k], p[k])).toBe(true);
  });
});

describe('Trainer on a Sequential', () => {
  const d = loadDigits();
  const s = trainValSplit(d.X, d.y, d.D, { fraction: 0.2, seed: 0 });

  it('a 64→128→64→10 net trains digits to ≥ 97% held-out accuracy, in a worker as on the caller thread', async () => {
    const opts = { lr: 0.1, batchSize: 32, optimizer: 'momentum' as const };
    const sync = new Trainer(Sequential.mlp([64, 128, 64, 10], { seed: 0 }), opts);
    const r1 = sync.fitSync(s.train.X, s.train.y, { epochs: 30 });
    const worker = new Trainer(Sequential.mlp([64, 128, 64, 10], { seed: 0 }), opts);
    const r2 = await worker.fit(s.train.X, s.train.y, { epochs: 30 });
    expect(r2.history).toEqual(r1.history);
    for (const k of Object.keys(sync.params)) expect(sameBits(worker.params[k], sync.params[k]), k).toBe(true);
    expect(sync.evaluate(s.val.X, s.val.y).accuracy).toBeGreaterThanOrEqual(0.97);
    // model is the live net: it predicts with the trained parameters.
    const pred = sync.model!.predict(s.val.X);
    let hits = 0;
    for (let i = 0; i < pred.length; i++) hits += pred[i] === s.val.y[i] ? 1 : 0;
    expect(hits / pred.length).toBe(sync.evaluate(s.val.X, s.val.y).accuracy);
  });

  for (const [backend, skip] of CASES) {
    it.skipIf(skip)(backendTitle('a Sequential of Linear, ReLU, Linear trains exactly as the two-layer params', backend, skip), () => {
      const a = new Trainer(initParams({ D: 64, H: 32, C: 10 }, { seed: 1 }), { lr: 0.1, optimizer: 'adam', backend });
      const b = new Trainer(Sequential.mlp([64, 32, 10], { seed: 1 }), { lr: 0.1, optimizer: 'adam', backend });
      const X = s.train.X.subarray(0, 64 * 300);
      const y = s.train.y.subarray(0, 300);
      expect(b.fitSync(X, y, { epochs: 2 }).history).toEqual(a.fitSync(X, y, { epochs: 2 }).history);
      for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(b.params[k], a.params[k]), `${backend} ${k}`).toBe(true);
    });
  }

  it('refuses a two-layer activation option (the layers say it)', () => {
    expect(() => new Trainer(Sequential.mlp([4, 3, 2]), { activation: 'tanh' })).toThrow(/no opts.activation with a Sequential/);
  });

  it('save and load resume bit for bit (optimizer state included)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg-seq-'));
    const X = s.train.X.subarray(0, 64 * 200);
    const y = s.train.y.subarray(0, 200);
    const mk = () => new Trainer(Sequential.mlp([64, 20, 16, 10], { seed: 3, activation: 'tanh' }), { optimizer: 'adamw', lr: 0.01, batchSize: 16 });
    const straight = mk();
    straight.fitSync(X, y, { epochs: 4 });
    const first = mk();
    first.fitSync(X, y, { epochs: 2 });
    first.save(join(dir, 'm.safetensors'));
    const resumed = Trainer.load(join(dir, 'm.safetensors'));
    expect(resumed.model!.toString()).toBe(first.model!.toString());
    expect(resumed.epochs).toBe(2);
    resumed.fitSync(X, y, { epochs: 2 });
    for (const k of Object.keys(straight.params)) expect(sameBits(resumed.model!.params[k], straight.params[k]), k).toBe(true);
  });
});

describe('Sequential checkpoints', () => {
  it('round-trip in both layouts; the PyTorch layout is nn.Sequential\'s state_dict ({i}.weight = Wᵀ)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg-seqck-'));
    const seq = new Sequential([new Linear(3, 5, { seed: 1 }), new Tanh(), new Linear(5, 4, { seed: 2 }), new Sigmoid(), new Linear(4, 2, { seed: 3, dtype: 'float64' })]);
    for (const layout of ['handgrad', 'torch'] as const) {
      const path = join(dir, `${layout}.safetensors`);
      saveSequential(path, seq, { layout });
      const back = loadSequential(path);
      expect(back.toString()).toBe(seq.toString());
      for (const [k, t] of Object.entries(seq.params)) expect(sameBits(back.params[k], t), `${layout} ${k}`).toBe(true);
      expect(() => loadParams(path)).toThrow(/holds a Sequential of other depth: read it with loadSequential/);
    }
    const file = readSafetensors(readFileSync(join(dir, 'torch.safetensors')));
    expect(Object.keys(file.tensors).sort()).toEqual(['0.bias', '0.weight', '2.bias', '2.weight', '4.bias', '4.weight']);
    expect(file.tensors['2.weight'].shape).toEqual([4, 5]);
    expect(file.tensors['2.weight'].data[1 * 5 + 3]).toBe(seq.params.W2[3 * 4 + 1]); // weight[o,i] = W[i,o]
  });

  it('a two-layer parameter file loads as Sequential(Linear, act, Linear) with the same numbers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg-seqck2-'));
    const p = initParams({ D: 4, H: 6, C: 3 }, { seed: 9 });
    saveParams(join(dir, 'p.safetensors'), p, { activation: 'tanh', layout: 'torch' });
    const seq = loadSequential(join(dir, 'p.safetensors'));
    expect(seq.toString()).toBe('Sequential(Linear 4→6, Tanh, Linear 6→3; SoftmaxCrossEntropy(mean))');
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(sameBits(seq.params[k], p[k])).toBe(true);
  });
});

describe('handgrad train --layers', () => {
  it('trains a Sequential of the given hidden widths and writes a model that loads as one', async () => {
    const { runTraining } = await import('../lib/commands/train');
    const dir = mkdtempSync(join(tmpdir(), 'hg-cli-layers-'));
    const lines: string[] = [];
    const r = await runTraining(['--data', 'digits', '--layers', '48,32', '--epochs', '15', '--activation', 'tanh', '--out', dir, '--quiet'], (l) => lines.push(l));
    expect(lines[0]).toMatch(/64 → 48 → 32 → 10, tanh/);
    expect(r.valAccuracy).toBeGreaterThanOrEqual(0.9);
    const seq = loadSequential(join(dir, 'model.safetensors'));
    expect(seq.toString()).toBe('Sequential(Linear 64→48, Tanh, Linear 48→32, Tanh, Linear 32→10; SoftmaxCrossEntropy(mean))');
    for (const [k, t] of Object.entries(r.trainer.model!.params)) expect(sameBits(seq.params[k], t), k).toBe(true);
    await expect(runTraining(['--data', 'xor', '--layers', '8', '--hidden', '8', '--quiet', '--out', dir], () => {})).rejects.toThrow(/either --hidden or --layers/);
    await expect(runTraining(['--data', 'xor', '--layers', '8,,4', '--quiet', '--out', dir], () => {})).rejects.toThrow(/--layers\[1\]/);
    await expect(runTraining(['--data', 'xor', '--layers', '8,0', '--quiet', '--out', dir], () => {})).rejects.toThrow(RangeError);
  });
});
