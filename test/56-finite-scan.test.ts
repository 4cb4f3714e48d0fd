// fit's finite check of X (lib/validate.ts assertFinite) scans in blocks of 4096 and searches
// only a block whose x·0 sums are not 0: a NaN or ±Infinity anywhere — in the first or a later
// block, on a block's edge, in the tail past the last multiple of 4 — is still the RangeError
// naming the first one's index, and finite extremes (±max, denormals, −0) pass. test/04 covers
// every index of tensors shorter than one block.
import { describe, expect, it } from 'vitest';
import * as hg from '../lib';

const [D, H, C, N] = [3, 4, 2, 4099]; // X has 12297 values: three whole blocks and a tail of 9 (not a multiple of 4)

function data(dtype: 'float32' | 'float64') {
  const X = dtype === 'float64' ? new Float64Array(N * D) : new Float32Array(N * D);
  for (let i = 0; i < X.length; i++) X[i] = Math.sin(i * 0.37);
  const y = Int32Array.from({ length: N }, (_, i) => i % C);
  return { X, y, trainer: () => new hg.Trainer(hg.initParams({ D, H, C }, { seed: 0, dtype }), { batchSize: 64 }) };
}

describe('fit checks every value of X for NaN and ±Infinity, block by block', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: the first bad value's index, wherever it lies`, () => {
      const { X, y, trainer } = data(dtype);
      const t = trainer();
      const at = [0, 1, 4095, 4096, 4097, 8191, 8192, 12287, 12288, 12291, 12292, 12295, 12296];
      for (const i of at) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const x = X.slice();
          x[i] = bad;
          if (i + 5 < x.length) x[x.length - 1] = NaN; // a later one in another block is not the one named
          expect(() => t.fitSync(x, y, { epochs: 1 }), `${bad} at ${i}`).toThrow(new RangeError(`Expected finite values in X but received ${bad} at index ${i}`));
        }
      }
      expect(t.steps).toBe(0); // refused before any step
    });

    it(`${dtype}: finite extremes pass (the largest finite values, denormals, −0)`, () => {
      const { X, y, trainer } = data(dtype);
      const max = dtype === 'float64' ? Number.MAX_VALUE : 3.4028234663852886e38;
      const tiny = dtype === 'float64' ? 5e-324 : 1.401298464324817e-45;
      const x = X.slice();
      for (const [i, v] of [[5, max], [4096, -max], [8000, tiny], [12296, -0], [12295, max]] as const) x[i] = v;
      // The values are finite, so fit gets past the check; the huge inputs overflow the forward pass, a different error.
      expect(() => trainer().fitSync(x, y, { epochs: 1 })).toThrow(/overflow|finite values in Z|Z1/);
      expect(() => trainer().fitSync(x, y, { epochs: 1 })).not.toThrow(/finite values in X/);
    });
  }
});
