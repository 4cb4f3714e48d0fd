// One network: the two-layer API is a Linear–act–Linear Sequential. What users saw at the seams:
// a tanh model predicting with ReLU, a two-layer checkpoint without a model, a stale cached net.
// The truths: a float64 forward written out here (referenceLoss's loops), and the Trainer's own
// evaluate over the same data.
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blobs, forward, forwardBackward, initParams, loadParams, predict, probs, saveParams, Sequential, Trainer } from '../lib';
import type { Activation } from '../lib/types';

const dir = mkdtempSync(join(tmpdir(), 'handgrad-one-'));

/** Logits of the two-layer net in plain float64 loops (the independent forward). */
function logits64(p: { W1: ArrayLike<number>; b1: ArrayLike<number>; W2: ArrayLike<number>; b2: ArrayLike<number> }, X: ArrayLike<number>, D: number, H: number, C: number, act: Activation): number[] {
  const f = act === 'relu' ? (z: number) => Math.max(z, 0) : act === 'tanh' ? Math.tanh : (z: number) => 1 / (1 + Math.exp(-z));
  const out: number[] = [];
  for (let b = 0; b < X.length / D; b++) {
    const a: number[] = [];
    for (let h = 0; h < H; h++) {
      let z = p.b1[h];
      for (let d = 0; d < D; d++) z += X[b * D + d] * p.W1[d * H + h];
      a.push(f(z));
    }
    for (let c = 0; c < C; c++) {
      let z = p.b2[c];
      for (let h = 0; h < H; h++) z += a[h] * p.W2[h * C + c];
      out.push(z);
    }
  }
  return out;
}

const argmax = (l: number[], C: number) => Array.from({ length: l.length / C }, (_, b) => l.slice(b * C, b * C + C).reduce((best, v, c, r) => (v > r[best] ? c : best), 0));

describe('a two-layer Trainer predicts with the activation it trained with', () => {
  const { X, y } = blobs({ n: 300, classes: 3, dim: 4, spread: 3, seed: 1 });
  const D = X.length / y.length;

  for (const activation of ['tanh', 'sigmoid'] as const) {
    it(`${activation}: predict(trainer.params), trainer.model and evaluate agree with a float64 forward`, () => {
      const t = new Trainer(initParams({ D, H: 8, C: 3 }, { seed: 2 }), { activation, lr: 0.3, batchSize: 30 });
      t.fitSync(X, y, { epochs: 5 });
      const truth = argmax(logits64(t.params, X, D, 8, 3, activation), 3);
      expect([...predict(t.params, X)]).toEqual(truth);
      expect([...t.model.predict(X)]).toEqual(truth);
      const accuracy = truth.filter((c, i) => c === y[i]).length / y.length;
      expect(t.evaluate(X, y).accuracy).toBe(accuracy);
      expect(t.model.evaluate(X, y).accuracy).toBe(accuracy);
      // probs are the softmax of the float64 logits, to rounding
      const P = t.model.probs(X);
      const l = logits64(t.params, X, D, 8, 3, activation).slice(0, 3);
      const e = l.map((z) => Math.exp(z - Math.max(...l)));
      e.forEach((v, c) => expect(P[c]).toBeCloseTo(v / e.reduce((s, q) => s + q), 12));
    });
  }

  it('a two-layer checkpoint loads with a model in a fresh process, and the file keeps the activation', () => {
    const t = new Trainer(initParams({ D, H: 8, C: 3 }, { seed: 2 }), { activation: 'tanh', lr: 0.3, batchSize: 30 });
    t.fitSync(X, y, { epochs: 3 });
    const file = join(dir, 'tanh.safetensors');
    t.save(file);
    const truth = argmax(logits64(t.params, X, D, 8, 3, 'tanh'), 3);
    expect(loadParams(file).activation).toBe('tanh');
    expect([...predict(loadParams(file), X)]).toEqual(truth);
    const script = `
      const { Trainer } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'lib', 'index.js'))});
      const t = Trainer.load(${JSON.stringify(file)});
      const X = Float64Array.from(${JSON.stringify([...X])});
      process.stdout.write(JSON.stringify({ kinds: t.model.layers.map((l) => l.kind), classes: [...t.model.predict(X)] }));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.kinds).toEqual(['linear', 'tanh', 'linear']);
    expect(out.classes).toEqual(truth);
  });
});

describe('the two-layer functions run over the caller\'s own tensors', () => {
  const p = initParams({ D: 5, H: 10, C: 3 }, { seed: 3 });
  const X = Float64Array.from({ length: 20 }, (_, i) => Math.sin(i));

  it('a weight changed in place, or a tensor replaced on the same object, is what the next call uses', () => {
    for (const backend of ['native', 'ts'] as const) {
      const q = { ...p, W1: p.W1.slice() };
      expect(forward(q, X, { backend })[0]).toBeCloseTo(logits64(q, X, 5, 10, 3, 'relu')[0], 12);
      q.W1[0] += 1;
      expect(forward(q, X, { backend })[0]).toBeCloseTo(logits64(q, X, 5, 10, 3, 'relu')[0], 12);
      q.W1 = q.W1.map((w) => -w);
      expect(forward(q, X, { backend })[0]).toBeCloseTo(logits64(q, X, 5, 10, 3, 'relu')[0], 12);
      q.b2 = new Float64Array(3).fill(7);
      expect(forward(q, X, { backend })[2]).toBeCloseTo(logits64(q, X, 5, 10, 3, 'relu')[2], 12);
    }
  });

  it('one params object under two activations gives each its own net', () => {
    const relu = forward(p, X, { activation: 'relu' });
    const tanh = forward(p, X, { activation: 'tanh' });
    relu.forEach((v, i) => expect(v).toBeCloseTo(logits64(p, X, 5, 10, 3, 'relu')[i], 12));
    tanh.forEach((v, i) => expect(v).toBeCloseTo(logits64(p, X, 5, 10, 3, 'tanh')[i], 12));
    expect(probs(p, X, { activation: 'tanh' }).length).toBe(12);
  });

  it('saveParams writes the activation the params carry; Sequential.mlp and initParams draw the same numbers', () => {
    const file = join(dir, 'p.safetensors');
    saveParams(file, { ...p, activation: 'sigmoid' } as never);
    expect(loadParams(file).activation).toBe('sigmoid');
    const seq = Sequential.mlp([5, 10, 3], { seed: 3 });
    expect([...seq.params.W1]).toEqual([...p.W1]);
    const a = forwardBackward(p, X, [0, 1, 2, 0], { inputGrad: true });
    const b = seq.forwardBackward(X, [0, 1, 2, 0], { inputGrad: true });
    expect(Object.is(a.loss, b.loss)).toBe(true);
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) expect([...a.grads[k]!]).toEqual([...b.grads[k]]);
  });
});
