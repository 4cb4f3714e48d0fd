// The finite checks on the training epoch's hot paths, made faster and held here to finding what
// a plain scan finds:
// - fit's check of X (lib/validate.ts assertFinite) scans in blocks of 4096 and searches only a
//   block whose x·0 sums are not 0: a NaN or ±Infinity anywhere (the first or a later block, a
//   block's edge, the tail past the last multiple of 4) is still the RangeError naming the first
//   one's index, and finite extremes (±max, denormals, −0) pass. test/04 covers every index of
//   tensors shorter than one block.
// - the native optimizer step (native/core/optimizer.h) learns that a value it wrote is not finite
//   from exponent carries ORed in its (now vectorized) loop: one overflowing or NaN element at any
//   position (vector body or tail), in every rule and both dtypes, makes it return false.
import { describe, expect, it } from 'vitest';
import * as hg from '../lib';
import { coreBinding } from '../lib/binding';
import { OPTIMIZER_CODE } from '../lib/train/optimizer';

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

describe('the native optimizer step reports any value it writes that is not finite', () => {
  const n = 1003; // 125 vectors of 8 floats (or 250 of 4 doubles) and a tail of 3
  const at = [0, 1, 3, 4, 7, 8, 15, 16, 500, 995, 996, 999, 1000, 1001, 1002];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const name of ['sgd', 'momentum', 'nesterov', 'adam', 'adamw'] as const) {
      it(`${dtype} ${name}`, () => {
        const make = (f: (k: number) => number) => {
          const a = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
          for (let k = 0; k < n; k++) a[k] = f(k);
          return a;
        };
        const huge = dtype === 'float64' ? 1e308 : 3e38;
        const run = (i: number, bad: number) => {
          const W = make((k) => Math.sin(k) * 0.1);
          const g = make((k) => Math.cos(k) * 0.01);
          if (i >= 0) g[i] = bad;
          const slot = () => (name === 'sgd' ? null : make(() => 0));
          // lr 10 turns g = huge into a W that overflows (SGD, momentum) or v = (1 − β2)·g² (Adam) past the largest finite value.
          return coreBinding().optimizerUpdate(W, g, slot(), name.startsWith('adam') ? make(() => 0) : null, OPTIMIZER_CODE[name], 10, 1, 0.9, 0.9, 0.999, 1e-8, 0, 0, null);
        };
        expect(run(-1, 0), 'all finite').toBe(true);
        for (const i of at) {
          for (const bad of [huge, -huge, NaN, Infinity]) expect(run(i, bad), `g[${i}] = ${bad}`).toBe(false);
        }
      });
    }
  }
});
