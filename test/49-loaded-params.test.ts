// predict/probs/forward(Trainer.load(f).params, X) — what the types now accept without a cast — run
// the network the file holds: a Sequential's params record (a file of other depth, or of two
// Linear layers saved with its layers list) carries no activations, and was read as a ReLU
// two-layer net before (a deep net's W2 taken as the output layer; tanh read as ReLU). The truth
// here is the same net in plain float64 loops over the saved tensors.
// loadParams(f) of a two-layer file saved with a loss (reduction 'sum', class weights) carries it
// as `loss`, and forwardBackward, the Trainer, verify and gradcheck of those params computed
// F.cross_entropy's default (the unweighted mean) instead: the truth there is the weighted
// cross-entropy and its gradients through the net, by hand in float64 loops.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forward, forwardBackward, gradcheck, initParams, loadParams, loadSafetensors, predict, probs, saveSequential, Sequential, SoftmaxCrossEntropy, Trainer, verify } from '../lib';

const dir = mkdtempSync(join(tmpdir(), 'handgrad-loaded-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Logits of Linear, tanh, …, Linear over handgrad-layout tensors W_k [in,out], in float64 loops. */
function loopLogits(t: Record<string, { data: unknown; shape: number[] }>, X: Float64Array, D: number): Float64Array {
  let A = Array.from({ length: X.length / D }, (_, b) => Array.from(X.slice(b * D, b * D + D)));
  for (let k = 1; `W${k}` in t; k++) {
    const W = t[`W${k}`].data as Float64Array;
    const bias = t[`b${k}`].data as Float64Array;
    const [n, m] = t[`W${k}`].shape;
    const last = !(`W${k + 1}` in t);
    A = A.map((row) => Array.from({ length: m }, (_, j) => {
      let z = bias[j];
      for (let i = 0; i < n; i++) z += row[i] * W[i * m + j];
      return last ? z : Math.tanh(z);
    }));
  }
  return Float64Array.from(A.flat());
}

const argmaxRows = (z: Float64Array, C: number) => Int32Array.from({ length: z.length / C }, (_, b) => {
  const row = Array.from(z.slice(b * C, b * C + C));
  return row.indexOf(Math.max(...row));
});

describe("a loaded Trainer's params into the two-layer functions", () => {
  for (const widths of [[4, 6, 5, 3], [4, 6, 3]]) {
    it(`a tanh Sequential ${widths.join('→')} saved and loaded: predict, probs, forward of its params are that net's`, () => {
      const seq = Sequential.mlp(widths, { activation: 'tanh', seed: 3 });
      const f = join(dir, `seq-${widths.join('-')}.safetensors`);
      new Trainer(seq, { lr: 0.1 }).save(f);
      const loaded = Trainer.load(f);
      const X = Float64Array.from({ length: 8 * 4 }, (_, i) => 2 * Math.sin(1.7 * i));
      const C = widths[widths.length - 1];
      const want = loopLogits(loadSafetensors(f).tensors, X, 4);
      const logits = forward(loaded.params, X);
      expect(logits.length).toBe(want.length);
      const scale = Math.max(...want.map(Math.abs));
      for (let i = 0; i < want.length; i++) expect(Math.abs(logits[i] - want[i]) / scale, `logit ${i}`).toBeLessThan(64 * 2 ** -52);
      expect(Array.from(predict(loaded.params, X))).toEqual(Array.from(argmaxRows(want, C)));
      const p = probs(loaded.params, X);
      for (let b = 0; b < 8; b++) {
        const row = Array.from(want.slice(b * C, b * C + C));
        const m = Math.max(...row);
        const sum = row.reduce((s, z) => s + Math.exp(z - m), 0);
        for (let c = 0; c < C; c++) expect(Math.abs(p[b * C + c] - Math.exp(row[c] - m) / sum)).toBeLessThan(64 * 2 ** -52);
      }
      // Its layers say the activation: another one is refused, not silently used.
      expect(() => predict(loaded.params, X, { activation: 'relu' })).toThrow(/Expected no opts.activation with a Sequential's params \(its layers say it\) for opts.activation but received "relu"/);
    });
  }

  it('two-layer params (a file without a layers list) still run as the two-layer net with their saved activation', () => {
    const params = initParams({ D: 4, H: 6, C: 3 }, { seed: 5 });
    const f = join(dir, 'two.safetensors');
    new Trainer(params, { activation: 'tanh' }).save(f);
    const loaded = Trainer.load(f);
    const X = Float64Array.from({ length: 5 * 4 }, (_, i) => Math.cos(i));
    const want = loopLogits(loadSafetensors(f).tensors, X, 4);
    expect(Array.from(predict(loaded.params, X))).toEqual(Array.from(argmaxRows(want, 3)));
  });
});

/**
 * Loss and gradients of Σ_b w[y_b]·(lse(z_b) − z_{b,y_b}) (÷ Σ_b w[y_b] for the mean) through
 * Linear, ReLU, Linear, in plain float64 loops over handgrad-layout W1 [D,H], W2 [H,C].
 */
function weightedStep(p: { W1: ArrayLike<number>; b1: ArrayLike<number>; W2: ArrayLike<number>; b2: ArrayLike<number> }, X: ArrayLike<number>, y: ArrayLike<number>, D: number, H: number, C: number, w: number[], reduction: 'sum' | 'mean') {
  const B = y.length;
  const dW1 = new Float64Array(D * H), db1 = new Float64Array(H), dW2 = new Float64Array(H * C), db2 = new Float64Array(C);
  const denominator = reduction === 'mean' ? Array.from(y, (c) => w[c]).reduce((a, b) => a + b, 0) : 1;
  let loss = 0;
  for (let b = 0; b < B; b++) {
    const x = Array.from({ length: D }, (_, d) => X[b * D + d]);
    const a = Array.from({ length: H }, (_, j) => Math.max(0, p.b1[j] + x.reduce((s, xd, d) => s + xd * p.W1[d * H + j], 0)));
    const z = Array.from({ length: C }, (_, c) => p.b2[c] + a.reduce((s, aj, j) => s + aj * p.W2[j * C + c], 0));
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((s, zc) => s + Math.exp(zc - m), 0));
    const s = w[y[b]] / denominator;
    loss += s * (lse - z[y[b]]);
    const dz = z.map((zc, c) => s * (Math.exp(zc - lse) - (c === y[b] ? 1 : 0)));
    for (let c = 0; c < C; c++) db2[c] += dz[c];
    for (let j = 0; j < H; j++) {
      let da = 0;
      for (let c = 0; c < C; c++) {
        dW2[j * C + c] += a[j] * dz[c];
        da += dz[c] * p.W2[j * C + c];
      }
      const dzj = a[j] > 0 ? da : 0;
      db1[j] += dzj;
      for (let d = 0; d < D; d++) dW1[d * H + j] += x[d] * dzj;
    }
  }
  return { loss, grads: { dW1, db1, dW2, db2 } };
}

/** |a − b| over the largest |b|, entry by entry. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const scale = Math.max(1e-300, ...Array.from(b, Math.abs));
  return Math.max(...Array.from(b, (x, i) => Math.abs(a[i] - x) / scale));
}

describe("loadParams' params carry the file's loss into the two-layer entry points", () => {
  const [D, H, C] = [4, 6, 3];
  const X = Float64Array.from({ length: 7 * D }, (_, i) => 1.5 * Math.sin(1.3 * i + 0.4));
  const y = Int32Array.of(0, 1, 2, 1, 1, 0, 2);
  for (const [reduction, weight] of [['sum', [1, 5, 1]], ['mean', [2, 0.5, 1]]] as const) {
    /** A ReLU two-layer net saved by saveSequential with its loss, and the file's own tensors. */
    const saved = () => {
      const loss = new SoftmaxCrossEntropy({ reduction, weight: Float64Array.from(weight) });
      const f = join(dir, `loss-${reduction}.safetensors`);
      saveSequential(f, Sequential.mlp([D, H, C], { seed: 11, loss }));
      const t = loadSafetensors(f).tensors;
      return { f, file: { W1: t.W1.data as Float64Array, b1: t.b1.data as Float64Array, W2: t.W2.data as Float64Array, b2: t.b2.data as Float64Array } };
    };

    it(`forwardBackward(loadParams(f), X, y) is the file's ${reduction} loss with weight [${weight}] and its gradients`, () => {
      const { f, file } = saved();
      const p = loadParams(f);
      expect(p.loss).toEqual({ reduction, weight: [...weight] });
      const want = weightedStep(file, X, y, D, H, C, [...weight], reduction);
      const r = forwardBackward(p, X, y);
      expect(Math.abs(r.loss - want.loss) / Math.abs(want.loss)).toBeLessThan(64 * 2 ** -52);
      for (const k of ['dW1', 'db1', 'dW2', 'db2'] as const) expect(relErr(r.grads[k], want.grads[k]), k).toBeLessThan(64 * 2 ** -52);
    });

    it(`a Trainer of loadParams(f) steps on the file's ${reduction} loss: one SGD step is W − lr·∂loss/∂W by hand`, () => {
      const { f, file } = saved();
      const want = weightedStep(file, X, y, D, H, C, [...weight], reduction);
      const lr = 0.05;
      const t = new Trainer(loadParams(f), { lr, optimizer: 'sgd', batchSize: 8 });
      // Its live params carry the loss they train on, as they carry the activation.
      expect(t.params.loss).toEqual({ reduction, weight: [...weight] });
      const loss = t.step(X, y);
      expect(Math.abs(loss - want.loss) / Math.abs(want.loss)).toBeLessThan(64 * 2 ** -52);
      for (const k of ['W1', 'b1', 'W2', 'b2'] as const) {
        const stepped = Float64Array.from(file[k], (x, i) => x - lr * want.grads[`d${k}`][i]);
        expect(relErr(t.params[k], stepped), k).toBeLessThan(64 * 2 ** -52);
      }
    });

    it(`verify and gradcheck of loadParams(f) check the file's ${reduction} loss`, () => {
      const { f, file } = saved();
      const p = loadParams(f);
      const want = weightedStep(file, X, y, D, H, C, [...weight], reduction);
      const report = verify(p, X, y, { reference: 'fd' });
      expect(report.reduction).toBe(reduction);
      const lossRow = report.tensors.find((r) => r.name === 'loss')!;
      expect(Math.abs(lossRow.worst!.reference - want.loss) / Math.abs(want.loss)).toBeLessThan(64 * 2 ** -52);
      expect(report.ok).toBe(true);
      // A candidate computing the file's loss by hand passes gradcheck's finite differences of it.
      const fn = () => weightedStep(file, X, y, D, H, C, [...weight], reduction);
      expect(gradcheck(fn, X, y, { params: p }).ok).toBe(true);
    });
  }
});
