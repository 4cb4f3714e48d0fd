// Sequential.evaluate's per-class precision, recall, support and confusion matrix (class-metrics.ts).
// The truth is a net whose logits are its input (W = I, b = 0), so every prediction and every
// count is written down by hand here; a random net is checked against predict() counted naively;
// the loss and accuracy stay what they were (test/15 holds them bit for bit).
import { describe, expect, it } from 'vitest';
import { Linear, MAX_CONFUSION_CLASSES, Sequential, SoftmaxCrossEntropy } from '../lib/layers';
import { randomArray, randomLabels } from './helpers';

// Logits = X. Row: [logits], true class → predicted class (the argmax).
const ROWS: [number[], number][] = [
  [[3, 1, 0], 0], // → 0
  [[0, 2, 1], 0], // → 1
  [[0, 5, 1], 1], // → 1
  [[1, 0, 4], 1], // → 2
  [[0, 0, 9], 2], // → 2
  [[2, 0, 1], 2], // → 0
  [[0, 1, 0], 1], // → 1
];
// true × predicted
const CONFUSION = [
  [1, 1, 0],
  [0, 2, 1],
  [1, 0, 1],
];

function identityNet(C: number, loss?: SoftmaxCrossEntropy): Sequential<Float64Array> {
  const W = new Float64Array(3 * C); // [in=3, out=C]
  for (let i = 0; i < 3; i++) W[i * C + i] = 1;
  const b = new Float64Array(C);
  for (let c = 3; c < C; c++) b[c] = -100; // classes past the third are never predicted
  return new Sequential<Float64Array>([new Linear(3, C, { W, b })], loss ? { loss } : {});
}

const X = Float64Array.from(ROWS.flatMap(([x]) => x));
const y = Int32Array.from(ROWS.map(([, t]) => t));

describe('evaluate: per-class precision, recall, support and the confusion matrix', () => {
  it('match the counts written by hand, in one batch or many', () => {
    for (const batchSize of [256, 2, 1]) {
      const e = identityNet(3).evaluate(X, y, { batchSize, backend: 'ts' });
      expect(Array.from(e.confusion!)).toEqual(CONFUSION.flat());
      expect(e.precision).toEqual([1 / 2, 2 / 3, 1 / 2]); // column sums 2, 3, 2
      expect(e.recall).toEqual([1 / 2, 2 / 3, 1 / 2]); // row sums 2, 3, 2
      expect(e.support).toEqual([2, 3, 2]);
      expect(e.accuracy).toBe(4 / 7);
    }
  });

  it('a class never predicted and never present has precision and recall 0 (never NaN)', () => {
    const e = identityNet(4).evaluate(X, y, { backend: 'ts' });
    expect(e.precision).toEqual([1 / 2, 2 / 3, 1 / 2, 0]);
    expect(e.recall).toEqual([1 / 2, 2 / 3, 1 / 2, 0]);
    expect(e.support).toEqual([2, 3, 2, 0]);
    expect(Array.from(e.confusion!)).toEqual([1, 1, 0, 0, 0, 2, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0]);
  });

  it('rows labelled ignore_index are left out, as from the accuracy', () => {
    const net = identityNet(3, new SoftmaxCrossEntropy({ ignoreIndex: -1 }));
    const yi = Int32Array.from(y);
    yi[1] = -1; // the row (true 0, predicted 1) is gone
    const e = net.evaluate(X, yi, { backend: 'ts' });
    expect(Array.from(e.confusion!)).toEqual([1, 0, 0, 0, 2, 1, 1, 0, 1]);
    expect(e.support).toEqual([1, 3, 2]);
    expect(e.precision).toEqual([1 / 2, 1, 1 / 2]);
    expect(e.recall).toEqual([1, 2 / 3, 1 / 2]);
    expect(e.accuracy).toBe(4 / 6);
  });

  it('a random net: the counts of predict() against y', () => {
    const [D, C, n] = [5, 6, 500];
    const net = Sequential.mlp([D, 16, C], { seed: 7 });
    const Xr = randomArray(n * D, 11, 2);
    const yr = randomLabels(n, C, 13);
    const pred = net.predict(Xr, { backend: 'ts' });
    const M = Array.from({ length: C }, () => new Array<number>(C).fill(0));
    for (let i = 0; i < n; i++) M[yr[i]][pred[i]]++;
    const e = net.evaluate(Xr, yr, { backend: 'ts', batchSize: 64 });
    expect(Array.from(e.confusion!)).toEqual(M.flat());
    for (let c = 0; c < C; c++) {
      const col = M.reduce((s, row) => s + row[c], 0);
      const row = M[c].reduce((s, x) => s + x, 0);
      expect(e.precision[c]).toBe(col === 0 ? 0 : M[c][c] / col);
      expect(e.recall[c]).toBe(row === 0 ? 0 : M[c][c] / row);
      expect(e.support[c]).toBe(row);
    }
  });

  it(`past ${MAX_CONFUSION_CLASSES} classes the matrix is null, precision and recall still come`, () => {
    const C = MAX_CONFUSION_CLASSES + 1;
    const net = Sequential.mlp([2, 3, C], { seed: 1 });
    const e = net.evaluate(new Float64Array([0.5, -1, 2, 0.25]), new Int32Array([0, C - 1]), { backend: 'ts' });
    expect(e.confusion).toBeNull();
    expect(e.precision).toHaveLength(C);
    expect(e.support[0] + e.support[C - 1]).toBe(2);
    expect(Sequential.mlp([2, 3, MAX_CONFUSION_CLASSES], { seed: 1 }).evaluate(new Float64Array([0.5, -1]), new Int32Array([0]), { backend: 'ts' }).confusion).toHaveLength(MAX_CONFUSION_CLASSES ** 2);
  });
});
