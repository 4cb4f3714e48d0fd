// Issue 13, item 5: verify reports bits. Each tensor row gives the fraction of its entries that are
// bit-identical to LibTorch autograd in the candidate's own dtype, and verify(..., { exact: true })
// fails on any differing bit. The truth here is a count the test controls: a candidate that returns
// LibTorch's own gradients with exactly k entries moved by one ulp.
import { describe, expect, it } from 'vitest';
import { forwardBackward, initParams, verify } from '../lib';
import type { Dtype, FloatArray, Params } from '../lib/types';
import { randomArray, randomLabels, skipReason, thrown, typed } from './helpers';

const [B, D, H, C] = [6, 5, 7, 4];

/** The next representable value after x in dtype (one ulp up). */
function ulpUp(x: number, dtype: Dtype): number {
  if (dtype === 'float32') {
    const f = new Float32Array([x]);
    const i = new Int32Array(f.buffer);
    i[0] += x >= 0 ? 1 : -1;
    return f[0];
  }
  const f = new Float64Array([x]);
  const i = new BigInt64Array(f.buffer);
  i[0] += x >= 0 ? 1n : -1n;
  return f[0];
}

describe.skipIf(skipReason('torch') !== null)(`verify's bits against LibTorch in the candidate's dtype${skipReason('torch') ? ` (skipped: ${skipReason('torch')})` : ''}`, () => {
  for (const dtype of ['float64', 'float32'] as const) {
    const params = initParams({ D, H, C }, { seed: 3, dtype });
    const X = typed(dtype, randomArray(B * D, 11));
    const y = randomLabels(B, C, 12);
    /** LibTorch's own gradients with the first `moved` entries of dW1 one ulp up. */
    const nudged = (moved: number) => (p: Params, X2: FloatArray, y2: Int32Array, o: object) => {
      const g = forwardBackward(p, X2, y2, { ...o, backend: 'torch', inputGrad: true }).grads;
      for (let i = 0; i < moved; i++) g.dW1[i] = ulpUp(g.dW1[i], dtype);
      return g;
    };

    it(`${dtype}: LibTorch's own gradients are 100% bit-identical, and pass exact: true`, () => {
      const r = verify(params, X, y, { candidate: nudged(0), exact: true });
      expect(r.ok, r.summary).toBe(true);
      for (const t of r.tensors.filter((x) => x.name !== 'loss')) expect(t.bitIdentical, t.name).toBe(1);
    });

    it(`${dtype}: k entries one ulp off give exactly 1 − k/n, pass the tolerance, and fail exact: true naming k`, () => {
      const n = D * H;
      const loose = verify(params, X, y, { candidate: nudged(3) });
      expect(loose.ok, loose.summary).toBe(true);
      expect(loose.tensors.find((t) => t.name === 'dW1')!.bitIdentical).toBe(1 - 3 / n);
      expect(loose.tensors.find((t) => t.name === 'db1')!.bitIdentical).toBe(1);
      const strict = verify(params, X, y, { candidate: nudged(3), exact: true });
      expect(strict.ok).toBe(false);
      expect(strict.firstFailure).toBe('dW1');
      const dW1 = strict.tensors.find((t) => t.name === 'dW1')!;
      expect(dW1.diagnosis).toEqual([{ kind: 'bits', message: `3 of ${n} entries differ in their bits from LibTorch autograd in ${dtype} (exact: true)` }]);
      expect(strict.summary).toMatch(/^Every tensor is within the tolerance, but not bit for bit \(exact: true\)/);
    });
  }
});

describe('exact needs LibTorch', () => {
  it("exact with reference 'fd' is a TypeError; without exact, fd reports no bits", () => {
    const params = initParams({ D, H, C }, { seed: 3 });
    const X = randomArray(B * D, 11);
    const y = randomLabels(B, C, 12);
    const e = thrown(() => verify(params, X, y, { reference: 'fd', exact: true }));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe(`Expected reference 'torch' or 'auto' with exact: true (bits are compared with LibTorch) for opts.reference but received "fd"`);
    const r = verify(params, X, y, { reference: 'fd' });
    expect(r.tensors.every((t) => t.bitIdentical === null)).toBe(true);
  });
});
