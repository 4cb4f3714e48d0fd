// `handgrad tour` (what `npm start` runs): the seed's worked example with every tensor's shape,
// then the seed's full-batch train_step on XOR with the loss printed as it falls.
import { parseArgs } from 'node:util';
import { xor } from '../data/xor';
import { forwardBackward, predict } from '../model';
import { initParams } from '../params';
import type { BackendName } from '../types';
import type { Command } from './command';

function shape(name: string, dims: number[], note = ''): string {
  return `  ${name.padEnd(7)} ${`[${dims.join(',')}]`.padEnd(8)}${note ? ` ${note}` : ''}`;
}

function workedExample(backend: BackendName, out: (s: string) => void): void {
  const [B, D, H, C] = [4, 5, 10, 3];
  const params = initParams({ D, H, C }, { seed: 0, init: 'small' });
  const X = new Float64Array(B * D).map((_, i) => Math.sin(i + 1));
  const y = new Int32Array([0, 2, 1, 2]);
  const r = forwardBackward(params, X, y, { backend, inputGrad: true, cache: true });
  out(`Worked example (B=${B}, D=${D}, H=${H}, C=${C}; W = 0.01·N(0,1), b = 0; backend ${backend})`);
  out('forward');
  out(shape('X', [B, D]));
  out(shape('W1', [D, H]) + '\n' + shape('b1', [H]));
  out(shape('Z1', [B, H], 'Z1 = X·W1 + b1'));
  out(shape('A1', [B, H], 'A1 = relu(Z1)'));
  out(shape('W2', [H, C]) + '\n' + shape('b2', [C]));
  out(shape('logits', [B, C], 'Z2 = A1·W2 + b2'));
  out(shape('probs', [B, C], 'softmax(Z2) by rows'));
  out(`  loss    []     mean_b −log probs[b, y_b] = ${r.loss.toFixed(6)} (≈ log C = ${Math.log(C).toFixed(6)} for tiny weights)`);
  out('backward');
  out(shape('dZ2', [B, C], '(probs − onehot(y)) / B'));
  out(shape('dW2', [H, C], 'A1ᵀ·dZ2') + `  |dW2|max = ${maxAbs(r.grads.dW2).toExponential(3)}`);
  out(shape('db2', [C], 'Σ_b dZ2') + `        |db2|max = ${maxAbs(r.grads.db2).toExponential(3)}`);
  out(shape('dA1', [B, H], 'dZ2·W2ᵀ'));
  out(shape('dZ1', [B, H], 'dA1 ⊙ (Z1 > 0)'));
  out(shape('dW1', [D, H], 'Xᵀ·dZ1') + `  |dW1|max = ${maxAbs(r.grads.dW1).toExponential(3)}`);
  out(shape('db1', [H], 'Σ_b dZ1') + `        |db1|max = ${maxAbs(r.grads.db1).toExponential(3)}`);
  out(shape('dX', [B, D], 'dZ1·W1ᵀ') + `  |dX|max  = ${maxAbs(r.grads.dX!).toExponential(3)}`);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** The seed's train_step: forward, backward, W −= lr·dW, full batch. */
function trainXor(backend: BackendName, iterations: number, lr: number, out: (s: string) => void): number {
  const { X, y } = xor({ seed: 0 });
  const params = initParams({ D: 2, H: 8, C: 2 }, { seed: 0 });
  const grads = { dW1: new Float64Array(16), db1: new Float64Array(8), dW2: new Float64Array(16), db2: new Float64Array(2) };
  out(`\nXOR: ${y.length} points, 2 → 8 → 2, ReLU, full batch, SGD lr ${lr}, ${iterations} iterations`);
  for (let it = 0; it <= iterations; it++) {
    const { loss } = forwardBackward(params, X, y, { backend, out: grads });
    if (it % (iterations / 10) === 0) out(`  iteration ${String(it).padStart(5)}  loss ${loss.toFixed(6)}`);
    if (it === iterations) break;
    for (const k of ['W1', 'b1', 'W2', 'b2'] as const) {
      const p = params[k];
      const g = grads[`d${k}` as const];
      for (let i = 0; i < p.length; i++) p[i] -= lr * g[i];
    }
  }
  const pred = predict(params, X, { backend });
  const acc = pred.reduce((s, p, i) => s + (p === y[i] ? 1 : 0), 0) / y.length;
  out(`  training accuracy ${(100 * acc).toFixed(1)}%`);
  return acc;
}

export const tour: Command = {
  summary: 'the worked example with every shape, then XOR training (what npm start runs)',
  run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        backend: { type: 'string', default: 'native' },
        iterations: { type: 'string', default: '3000' },
        lr: { type: 'string', default: '0.5' },
      },
    });
    const out = (s: string) => process.stdout.write(`${s}\n`);
    const backend = values.backend as BackendName;
    workedExample(backend, out);
    const acc = trainXor(backend, Number(values.iterations), Number(values.lr), out);
    return acc >= 0.9 ? 0 : 1;
  },
};
