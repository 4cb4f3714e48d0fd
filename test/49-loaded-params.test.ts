// predict/probs/forward(Trainer.load(f).params, X) — what the types now accept without a cast — run
// the network the file holds: a Sequential's params record (a file of other depth, or of two
// Linear layers saved with its layers list) carries no activations, and was read as a ReLU
// two-layer net before (a deep net's W2 taken as the output layer; tanh read as ReLU). The truth
// here is the same net in plain float64 loops over the saved tensors.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forward, initParams, loadSafetensors, predict, probs, Sequential, Trainer } from '../lib';

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
