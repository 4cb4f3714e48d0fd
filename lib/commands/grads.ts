// `handgrad grads CASE.safetensors -o OUT.safetensors [--backend …]`: a batch and weights dumped
// from PyTorch (X, y, W1, b1, W2, b2; __metadata__ activation and reduction) in, the loss and every
// gradient out, in X's dtype, so they can be compared with autograd's on the Python side.
import { fileFail } from '../data/files';
import { loadSafetensors, saveSafetensors, shapeText, tensorOf, type SafetensorsDtype } from '../io/safetensors';
import { forwardBackward } from '../model';
import * as v from '../validate';
import { type Command, flags, STRING } from './command';

const HELP = `usage: handgrad grads CASE.safetensors -o OUT.safetensors [options]

Reads X [B,D] (F64 or F32), y [B] (I32 or I64), W1 [D,H], b1 [H], W2 [H,C], b2 [C] and the
__metadata__ keys activation and reduction (default relu, mean); writes loss [1], dX, dW1, db1, dW2,
db2 in X's dtype.

  -o, --out FILE                       where to write (required)
  --backend native|torch|ts|wasm       (default native)
  --activation relu|sigmoid|tanh       overrides the file's metadata
  --reduction mean|sum                 overrides the file's metadata
`;

export const gradsCommand: Command = {
  summary: 'read X, y and weights from a safetensors file, write the loss and gradients to another',
  help: HELP,
  run(argv) {
    const { values, positionals } = flags('grads', argv, {
      out: { type: 'string', short: 'o' },
      backend: { type: 'string', default: 'native' },
      activation: STRING,
      reduction: STRING,
    }, true);
    if (positionals.length !== 1) v.fail(TypeError, 'one input file (handgrad grads CASE.safetensors -o OUT.safetensors)', 'the arguments', new v.Received(`${positionals.length} files`));
    if (values.out === undefined) v.fail(TypeError, 'an output file', '-o/--out', new v.Received('none'));
    const [path, out] = [positionals[0], values.out];
    const backend = v.oneOf('--backend', values.backend, v.BACKENDS, 'native');

    const file = loadSafetensors(path);
    const X = tensorOf(file, 'X', ['F64', 'F32'], path);
    const dtype: SafetensorsDtype = X.dtype;
    const y = tensorOf(file, 'y', ['I32', 'I64'], path);
    const [W1, b1, W2, b2] = (['W1', 'b1', 'W2', 'b2'] as const).map((n) => {
      const t = tensorOf(file, n, ['F64', 'F32'], path);
      if (t.dtype !== dtype) fileFail(`dtype ${dtype} (the dtype of X)`, `tensor "${n}"`, t.dtype, path);
      return t;
    });
    if (X.shape.length !== 2) fileFail('shape [B,D]', 'tensor "X"', shapeText(X.shape), path);
    const [B, D] = X.shape;
    if (b1.shape.length !== 1) fileFail('shape [H]', 'tensor "b1"', shapeText(b1.shape), path);
    if (b2.shape.length !== 1) fileFail('shape [C]', 'tensor "b2"', shapeText(b2.shape), path);
    const [H, C] = [b1.shape[0], b2.shape[0]];
    const want = (name: string, shape: number[], got: number[], letters: string) => {
      if (got.length === shape.length && got.every((s, i) => s === shape[i])) return;
      // nn.Linear stores its weight as [out, in]: the most likely reason for a transposed W.
      const hint = got.length === 2 && got[0] === shape[1] && got[1] === shape[0] ? ` (nn.Linear's weight is [out,in]: save ${name} = linear.weight.T)` : '';
      fileFail(`shape ${letters} = ${shapeText(shape)}`, `tensor "${name}"`, `${shapeText(got)}${hint}`, path);
    };
    want('y', [B], y.shape, '[B]');
    want('W1', [D, H], W1.shape, '[D,H]');
    want('W2', [H, C], W2.shape, '[H,C]');

    const activation = v.oneOf(values.activation ? '--activation' : '__metadata__.activation', values.activation ?? file.metadata.activation, v.ACTIVATIONS, 'relu');
    const reduction = v.oneOf(values.reduction ? '--reduction' : '__metadata__.reduction', values.reduction ?? file.metadata.reduction, v.REDUCTIONS, 'mean');
    const params = { W1: W1.data as Float64Array, b1: b1.data as Float64Array, W2: W2.data as Float64Array, b2: b2.data as Float64Array };
    const r = forwardBackward(params, X.data as Float64Array, y.data as unknown as ArrayLike<number>, { backend, activation, reduction, inputGrad: true });
    const shapes = { dX: [B, D], dW1: [D, H], db1: [H], dW2: [H, C], db2: [C] };
    const grads = Object.entries(shapes).map(([k, shape]) => [k, { shape, data: r.grads[k as keyof typeof shapes]! }]);
    const loss = { shape: [1], data: dtype === 'F64' ? new Float64Array([r.loss]) : new Float32Array([r.loss]) };
    saveSafetensors(out, { loss, ...Object.fromEntries(grads) }, { activation, reduction, backend, producer: 'handgrad grads' });
    const written = Object.entries(shapes).map(([k, shape]) => `${k} ${shapeText(shape)}`).join(', ');
    process.stdout.write(`${out}: loss ${r.loss} and ${written} (${dtype}, ${activation}, ${reduction}, backend ${backend})\n`);
    return 0;
  },
};
