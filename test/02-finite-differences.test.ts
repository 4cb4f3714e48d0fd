// Hand-derived gradients against central finite differences of the loss's definition, in float64,
// for every activation and reduction, at the seed example's shapes, on every backend.
import { expect, it } from 'vitest';
import { forwardBackward } from '../lib';
import { describeBackends, numericalGrad, randomArray, randomLabels, referenceLoss } from './helpers';

const [B, D, H, C] = [4, 5, 10, 3];

function setup(seed: number) {
  return {
    X: randomArray(B * D, seed + 1),
    y: randomLabels(B, C, seed + 2),
    W1: randomArray(D * H, seed + 3, 0.8),
    b1: randomArray(H, seed + 4, 0.3),
    W2: randomArray(H * C, seed + 5, 0.8),
    b2: randomArray(C, seed + 6, 0.3),
  };
}

describeBackends('gradients equal finite differences', (backend) => {
  for (const activation of ['relu', 'sigmoid', 'tanh'] as const) {
    for (const reduction of ['mean', 'sum'] as const) {
      it(`${activation}, ${reduction}`, () => {
        const t = setup(activation.length * 7 + reduction.length);
        const r = forwardBackward(t, t.X, t.y, { backend, activation, reduction, inputGrad: true, cache: true });
        // A ±step that flips a ReLU mask makes the difference quotient meaningless: keep clear of 0.
        if (activation === 'relu') expect(Math.min(...[...r.cache!.Z1].map(Math.abs))).toBeGreaterThan(1e-4);
        const loss = () => referenceLoss(t, t.X, t.y, activation, reduction);
        expect(Math.abs(r.loss - loss())).toBeLessThan(1e-12 * Math.max(1, Math.abs(r.loss)));
        const shapes = { dX: [B, D], dW1: [D, H], db1: [H], dW2: [H, C], db2: [C] } as const;
        const tensors = { dX: t.X, dW1: t.W1, db1: t.b1, dW2: t.W2, db2: t.b2 };
        for (const k of Object.keys(shapes) as (keyof typeof shapes)[]) {
          const analytic = r.grads[k]!;
          expect(analytic.length, `${k} has shape ${shapes[k].join('×')}`).toBe(shapes[k].reduce((a, b) => a * b, 1));
          const numeric = numericalGrad(tensors[k], loss);
          for (let i = 0; i < numeric.length; i++) {
            // Central differences with h = 1e-6 are good to ~1e-9 here; a wrong formula is off by far more.
            expect(Math.abs(analytic[i] - numeric[i]), `${k}[${i}]`).toBeLessThan(1e-7 + 1e-6 * Math.abs(numeric[i]));
          }
        }
      });
    }
  }
});
