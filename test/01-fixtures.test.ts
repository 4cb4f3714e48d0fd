// Every golden case from PyTorch autograd (test/fixtures: the JSON cases and the two at the seed's
// realistic size), through every backend, every tensor; and the fixture details the seed documents
// call out (the loss at initialisation, the ReLU kink, probabilities that underflow).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forwardBackward } from '../lib';
import type { Activation, Dtype, FloatArray, Reduction } from '../lib/types';
import { caseParams, describeBackends, errEps, FIXTURES, jsonCases, readSafetensorsFile, REALISTIC, typed } from './helpers';

// A few units of epsilon relative to the tensor's largest entry (test/fixtures/README.md).
const TOL_EPS = 8;
const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;

describeBackends('PyTorch autograd fixtures', (backend) => {
  for (const c of jsonCases()) {
    it(`${c.name} (${c.dtype}, ${c.activation}, ${c.reduction})`, () => {
      const X = typed(c.dtype, c.inputs.X);
      const r = forwardBackward(caseParams(c), X, c.inputs.y, {
        backend,
        activation: c.activation,
        reduction: c.reduction,
        inputGrad: true,
      });
      expect(r.grads.dW1).toBeInstanceOf(c.dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps([r.loss], c.expected.loss, c.dtype)).toBeLessThanOrEqual(TOL_EPS);
      for (const k of GRADS) {
        expect(r.grads[k]!.length, k).toBe(c.expected[k].length);
        expect(errEps(r.grads[k]!, c.expected[k], c.dtype), k).toBeLessThanOrEqual(TOL_EPS);
      }
    });
  }

  for (const name of REALISTIC) {
    it(`${name} (safetensors, B=64 D=128 H=256 C=10)`, () => {
      const { tensors: t, metadata } = readSafetensorsFile(join(FIXTURES, `${name}.case.safetensors`));
      const { tensors: want } = readSafetensorsFile(join(FIXTURES, `${name}.expected.safetensors`));
      const dtype: Dtype = t.X instanceof Float64Array ? 'float64' : 'float32';
      const p = { W1: t.W1 as FloatArray, b1: t.b1 as FloatArray, W2: t.W2 as FloatArray, b2: t.b2 as FloatArray };
      const r = forwardBackward(p, t.X as FloatArray, t.y as Int32Array, {
        backend, activation: metadata.activation as Activation, reduction: metadata.reduction as Reduction, inputGrad: true,
      });
      expect(r.grads.dW1).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps([r.loss], want.loss, dtype)).toBeLessThanOrEqual(TOL_EPS);
      for (const k of GRADS) {
        expect(r.grads[k]!.length, k).toBe(want[k].length);
        expect(errEps(r.grads[k]!, want[k], dtype), k).toBeLessThanOrEqual(TOL_EPS);
      }
    });
  }

  describe('fixture details the seed documents call out', () => {
    const cases = jsonCases();
    it('the gradcheck example starts at loss ≈ log 3', () => {
      const c = cases.find((k) => k.name.startsWith('seed-gradcheck'))!;
      const r = forwardBackward(caseParams(c), typed(c.dtype, c.inputs.X), c.inputs.y, { backend });
      expect(Math.abs(r.loss - Math.log(3))).toBeLessThan(1e-3);
    });

    it('ReLU gradient is 0 where Z1 is exactly 0', () => {
      const c = cases.find((k) => k.name.startsWith('relu-exact-zero'))!;
      const r = forwardBackward(caseParams(c), typed(c.dtype, c.inputs.X), c.inputs.y, { backend, cache: true, inputGrad: true });
      const zeros = [...r.cache!.Z1].filter((z) => z === 0).length;
      expect(zeros).toBeGreaterThan(0); // the case really exercises the kink
      expect(errEps(r.grads.dW1, c.expected.dW1, c.dtype)).toBeLessThanOrEqual(TOL_EPS);
    });

    it('large logits: some probabilities underflow to 0, the loss stays finite and exact', () => {
      const c = cases.find((k) => k.name.startsWith('large-logits'))!;
      const r = forwardBackward(caseParams(c), typed(c.dtype, c.inputs.X), c.inputs.y, { backend, cache: true });
      expect([...r.cache!.probs].some((p) => p === 0)).toBe(true);
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(errEps([r.loss], c.expected.loss, c.dtype)).toBeLessThanOrEqual(TOL_EPS);
    });
  });
});
