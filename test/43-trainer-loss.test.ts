// The model's loss options reach training and files (issue 13, item 2): a Trainer steps on the
// model's F.cross_entropy (weight, ignoreIndex, labelSmoothing, reduction 'mean' or 'sum'), its
// epoch accuracy leaves ignored rows out, and saveSequential/Trainer.save keep the options so the
// loaded model computes the same loss. Held to PyTorch 1.13's gradients (test/fixtures/loss-options,
// written by make.py): one SGD step must land on W − lr·∂L/∂W with PyTorch's ∂L/∂W.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Dtype, type FloatArray, type Layer, Linear, loadSequential, ReLU, saveSequential, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, Trainer,
} from '../lib';
import { errEps, FIXTURES, thrown, typed } from './helpers';

interface GoldenCase {
  name: string; dtype: Dtype; activation: 'relu' | 'sigmoid' | 'tanh'; widths: number[]; B: number;
  options: { reduction: 'mean' | 'sum' | 'none'; ignoreIndex?: number; labelSmoothing?: number };
  X: number[]; params: number[][]; y: number[]; targets: boolean; weight: number[] | null;
  loss: number[]; grads: number[][]; logits: number[];
}
const golden = JSON.parse(readFileSync(join(FIXTURES, 'loss-options', 'cases.json'), 'utf8')) as { cases: GoldenCase[] };
const TOL = 8;
const LR = 0.5;
const dir = mkdtempSync(join(tmpdir(), 'handgrad-43-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The case's net with its loss options on the model (not per call). */
function netOf(c: GoldenCase): Sequential {
  const act = (): Layer => (c.activation === 'relu' ? new ReLU() : c.activation === 'sigmoid' ? new Sigmoid() : new Tanh());
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < c.widths.length; i++) {
    if (i > 0) layers.push(act());
    layers.push(new Linear(c.widths[i], c.widths[i + 1], { W: typed(c.dtype, c.params[2 * i]), b: typed(c.dtype, c.params[2 * i + 1]) }));
  }
  const loss = new SoftmaxCrossEntropy({
    reduction: c.options.reduction, ignoreIndex: c.options.ignoreIndex, labelSmoothing: c.options.labelSmoothing,
    ...(c.weight ? { weight: typed(c.dtype, c.weight) } : {}),
  });
  return new Sequential(layers, { loss });
}

/** Class-label cases with a scalar loss and no logit offset (where the forward is PyTorch's to rounding). */
const stepCases = golden.cases.filter((c) => !c.targets && c.options.reduction !== 'none' && c.name.endsWith('offset=0'));

/** max over the parameters of the eps distance between the trained weights and W − lr·g with PyTorch's g (in float64, then rounded to the dtype). */
function stepDistance(c: GoldenCase, params: Readonly<Record<string, FloatArray>>): number {
  let worst = 0;
  for (let j = 0; j < c.params.length; j++) {
    const name = `${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1}`;
    const want = typed(c.dtype, c.params[j].map((w, i) => w - LR * c.grads[j][i]));
    worst = Math.max(worst, errEps(params[name], want, c.dtype));
  }
  return worst;
}

describe("a Trainer steps on the model's loss, as loss.backward() + torch.optim.SGD", () => {
  it(`one SGD step lands on W − lr·∂L/∂W with PyTorch's gradients, for every option and 'mean'/'sum' (${stepCases.length} cases)`, () => {
    expect(stepCases.length).toBeGreaterThan(40);
    expect(new Set(stepCases.map((c) => c.options.reduction))).toEqual(new Set(['mean', 'sum']));
    const bad: string[] = [];
    for (const c of stepCases) {
      const t = new Trainer(netOf(c), { optimizer: 'sgd', lr: LR, batchSize: c.B });
      const loss = t.step(typed(c.dtype, c.X), Int32Array.from(c.y));
      const d = stepDistance(c, t.model.params as Record<string, FloatArray>);
      const dl = errEps([loss], c.loss, c.dtype);
      if (d > TOL || dl > TOL) bad.push(`${c.name}: weights ${d.toFixed(2)} eps, loss ${dl.toFixed(2)} eps`);
    }
    expect(bad).toEqual([]);
  });

  it("the epoch's loss is F.cross_entropy's mean over the counted rows' weights for 'mean' and 'sum' nets alike (PyTorch's loss ÷ Σ w[y] for 'sum')", () => {
    // One full-batch epoch in data order: its record holds the loss at the initial weights. PyTorch's
    // 'mean' over class labels is its 'sum' over Σ w[y] of the rows not ignored (B without weight or ignored rows).
    const bad: string[] = [];
    for (const c of stepCases) {
      const ignore = c.options.ignoreIndex ?? -100;
      const counted = c.y.reduce((s, k) => (k === ignore ? s : s + (c.weight ? c.weight[k] : 1)), 0);
      // An epoch whose every row is ignored (a 'sum' net trains on it: a zero loss) reports 0, as its accuracy.
      const want = counted === 0 ? 0 : c.options.reduction === 'sum' ? c.loss[0] / counted : c.loss[0];
      const t = new Trainer(netOf(c), { optimizer: 'sgd', lr: LR, batchSize: c.B });
      const { history } = t.fitSync(typed(c.dtype, c.X), Int32Array.from(c.y), { epochs: 1, shuffle: false });
      const d = errEps([history[0].loss], [want], c.dtype);
      if (d > TOL) bad.push(`${c.name}: ${history[0].loss} vs ${want} (${d.toFixed(1)} eps)`);
    }
    expect(stepCases.some((c) => c.options.reduction === 'sum' && (c.weight !== null || c.y.includes(c.options.ignoreIndex ?? -100)))).toBe(true);
    expect(bad).toEqual([]);
  });

  it("a model whose loss is 'none' is refused (no scalar to step on), naming the option", () => {
    const c = golden.cases.find((k) => k.options.reduction === 'none')!;
    const e = thrown(() => new Trainer(netOf(c)));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/loss\.reduction/);
    expect(e.message).toMatch(/'mean' or 'sum'/);
  });

  it("labels equal to the model's ignoreIndex are accepted by fit and left out of the epoch's accuracy; others outside [0, C) are refused", () => {
    const X = new Float64Array(6 * 2).map((_, i) => Math.sin(i + 1));
    const y = Int32Array.from([0, -1, 1, -1, 1, 0]);
    const seq = Sequential.mlp([2, 4, 2], { seed: 3, loss: new SoftmaxCrossEntropy({ ignoreIndex: -1 }) });
    // The accuracy the epoch should report: before the (negligible) update, over the 4 counted rows.
    const logits = seq.forward(X);
    let correct = 0;
    for (let b = 0; b < 6; b++) if (y[b] !== -1 && (logits[2 * b + 1] > logits[2 * b] ? 1 : 0) === y[b]) correct++;
    const t = new Trainer(seq, { optimizer: 'sgd', lr: 1e-300, batchSize: 6 });
    const { history } = t.fitSync(X, y, { epochs: 1, shuffle: false });
    expect(history[0].accuracy).toBe(correct / 4);
    expect(thrown(() => t.fitSync(X, Int32Array.from([0, -100, 1, 0, 1, 0]), { epochs: 1 }))).toBeInstanceOf(RangeError);
  });
});

describe('files keep the loss options', () => {
  const cases = stepCases.filter((c) => c.weight !== null || c.options.labelSmoothing !== undefined || c.options.ignoreIndex !== undefined).slice(0, 12);

  it("saveSequential → loadSequential: the loaded model's loss and gradients are PyTorch's (within 8 eps)", () => {
    expect(cases.length).toBeGreaterThan(5);
    const bad: string[] = [];
    for (const [i, c] of cases.entries()) {
      const path = join(dir, `seq-${i}.safetensors`);
      saveSequential(path, netOf(c));
      const loaded = loadSequential(path);
      expect(loaded.loss.spec()).toEqual(netOf(c).loss.spec());
      const r = loaded.forwardBackward(typed(c.dtype, c.X), Int32Array.from(c.y));
      const d = Math.max(errEps([r.loss as number], c.loss, c.dtype), ...c.grads.map((g, j) => errEps(r.grads[`d${j % 2 === 0 ? 'W' : 'b'}${(j >> 1) + 1}`], g, c.dtype)));
      if (d > TOL) bad.push(`${c.name}: ${d.toFixed(2)} eps`);
    }
    expect(bad).toEqual([]);
  });

  it('Trainer.save → Trainer.load: the loaded Trainer steps on the same loss', () => {
    for (const [i, c] of cases.slice(0, 4).entries()) {
      const path = join(dir, `trainer-${i}.safetensors`);
      new Trainer(netOf(c), { optimizer: 'sgd', lr: LR, batchSize: c.B }).save(path);
      const t = Trainer.load(path);
      expect(t.model.loss.spec()).toEqual(netOf(c).loss.spec());
      t.step(typed(c.dtype, c.X), Int32Array.from(c.y));
      expect(stepDistance(c, t.model.params as Record<string, FloatArray>)).toBeLessThanOrEqual(TOL);
    }
  });

  it('a malformed loss entry in a file is ERR_FILE naming __metadata__.loss', () => {
    const path = join(dir, 'loss.safetensors');
    saveSequential(path, netOf(cases[0]));
    // The file's header rewritten with the loss JSON cut short (the tensors' offsets are relative to the header's end).
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    expect(header.__metadata__.loss).toBeDefined();
    header.__metadata__.loss = '{"reduction":';
    const text = Buffer.from(JSON.stringify(header));
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(text.length));
    const bad = join(dir, 'loss-bad.safetensors');
    writeFileSync(bad, Buffer.concat([size, text, bytes.subarray(8 + n)]));
    const e = thrown(() => loadSequential(bad));
    expect((e as { code?: string }).code).toBe('ERR_FILE');
    expect(e.message).toMatch(/__metadata__\.loss/);
  });
});
