// `handgrad grads CASE.safetensors -o OUT.safetensors [--backend …]`: a batch and weights dumped
// from PyTorch (X, y, and either handgrad's W1, b1, W2, b2 or an nn.Sequential's state_dict
// "0.weight" [out,in], …; __metadata__ activation and reduction) in, the loss and every gradient
// out, in X's dtype and handgrad's layout, so they can be compared with autograd's on the Python side.
import { paramsFromFile, sequentialFromFile } from '../checkpoint';
import { fileFail } from '../data/files';
import { HandgradError } from '../errors';
import { architecture, layoutOf } from '../io/layers';
import { loadSafetensors, saveSafetensors, shapeText, tensorOf, type SafetensorsDtype, type SafetensorsFile, type SafetensorsTensor } from '../io/safetensors';
import { forwardBackward } from '../model';
import type { LossSpec } from '../layers/loss';
import type { Sequential } from '../layers/sequential';
import type { Activation, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { type Command, flags, STRING } from './command';

const HELP = `usage: handgrad grads CASE.safetensors -o OUT.safetensors [options]

Reads X [B,D] (F64 or F32), y [B] (I32 or I64), the weights in either layout — handgrad's W1 [D,H],
b1 [H], W2 [H,C], b2 [C], or the state_dict of nn.Sequential(Linear(D,H), act, Linear(H,C)):
0.weight [H,D], 0.bias [H], 2.weight [C,H], 2.bias [C] — and the __metadata__ keys activation and
reduction (default relu, mean); writes loss [1], dX, dW1, db1, dW2, db2 in X's dtype, in handgrad's
layout (dW1 [D,H]: the transpose of 0.weight.grad). A file holding a deeper net (W3, b3, …, or a
"layers" list of more layers) is refused, never cut down to its first two layers.

  -o, --out FILE                       where to write (required)
  --backend native|torch|ts|wasm       (default native)
  --activation relu|sigmoid|tanh       overrides the file's metadata; a state_dict records none, so
                                       it needs this or --layers
  --layers M1,M2,…                     every module of the nn.Sequential in order, e.g.
                                       linear,tanh,dropout,linear (not with --activation)
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
      layers: STRING,
      reduction: STRING,
    }, true);
    if (values.activation !== undefined && values.layers !== undefined) v.fail(TypeError, 'either --activation or --layers, not both', '--layers', values.layers);
    if (positionals.length !== 1) v.fail(TypeError, 'one input file (handgrad grads CASE.safetensors -o OUT.safetensors)', 'the arguments', new v.Received(`${positionals.length} files`));
    if (values.out === undefined) v.fail(TypeError, 'an output file', '-o/--out', new v.Received('none'));
    const [path, out] = [positionals[0], values.out];
    const backend = v.oneOf('--backend', values.backend, v.BACKENDS, 'native');

    const file = loadSafetensors(path);
    const X = tensorOf(file, 'X', ['F64', 'F32'], path);
    const dtype: SafetensorsDtype = X.dtype;
    const y = tensorOf(file, 'y', ['I32', 'I64'], path);
    if (X.shape.length !== 2) fileFail('shape [B,D]', 'tensor "X"', shapeText(X.shape), path);
    const [B, D] = X.shape;
    const layers = values.layers?.split(',').map((m) => m.trim());
    const torchLayout = layoutOf(file) === 'torch';
    const weights = torchLayout ? stateDictWeights(file, path, values.activation, layers) : handgradWeights(file, path, layers);
    const [W1, b1, W2, b2] = weights.tensors;
    (['W1', 'b1', 'W2', 'b2'] as const).forEach((n, i) => {
      const t = weights.tensors[i];
      if (t.dtype !== dtype) fileFail(`dtype ${dtype} (the dtype of X)`, `tensor "${weights.names[i]}"`, t.dtype, path);
      if (n[0] === 'b' && t.shape.length !== 1) fileFail(`shape [${n === 'b1' ? 'H' : 'C'}]`, `tensor "${weights.names[i]}"`, shapeText(t.shape), path);
    });
    const [H, C] = [b1.shape[0], b2.shape[0]];
    const want = (name: string, shape: number[], got: number[], letters: string) => {
      if (got.length === shape.length && got.every((s, i) => s === shape[i])) return;
      // nn.Linear stores its weight as [out, in]: the most likely reason for a transposed W.
      const hint = got.length === 2 && got[0] === shape[1] && got[1] === shape[0] ? ` (nn.Linear's weight is [out,in]: save ${name} = linear.weight.T)` : '';
      fileFail(`shape ${letters} = ${shapeText(shape)}`, `tensor "${name}"`, `${shapeText(got)}${hint}`, path);
    };
    want('y', [B], y.shape, '[B]');
    if (torchLayout) {
      // Transposed to [in,out] already; D is the one size the state_dict cannot have checked against X.
      if (W1.shape[0] !== D) fileFail(`shape [H,D] = ${shapeText([H, D])} (D from X)`, `tensor "${weights.names[0]}"`, shapeText([W1.shape[1], W1.shape[0]]), path);
    } else {
      want('W1', [D, H], W1.shape, '[D,H]');
      want('W2', [H, C], W2.shape, '[H,C]');
    }

    let activation = weights.activation ?? v.oneOf(values.activation ? '--activation' : '__metadata__.activation', values.activation ?? file.metadata.activation, v.ACTIVATIONS, 'relu');
    let saved = weights.loss;
    if (!torchLayout) ({ activation, loss: saved } = twoLayerNet(file, path, values.activation, layers));
    const reduction = caseReduction(values.reduction, file.metadata.reduction, saved, path);
    // The file's loss options (a model file's weight, ignoreIndex, labelSmoothing) travel with the
    // params, as loadParams' do; --reduction (or the case's own "reduction") overrides its reduction.
    const params = { W1: W1.data as Float64Array, b1: b1.data as Float64Array, W2: W2.data as Float64Array, b2: b2.data as Float64Array, loss: saved };
    const r = forwardBackward(params, X.data as Float64Array, y.data as unknown as ArrayLike<number>, { backend, activation, reduction, inputGrad: true });
    const shapes = { dX: [B, D], dW1: [D, H], db1: [H], dW2: [H, C], db2: [C] };
    const grads = Object.entries(shapes).map(([k, shape]) => [k, { shape, data: r.grads[k as keyof typeof shapes]! }]);
    const loss = { shape: [1], data: dtype === 'F64' ? new Float64Array([r.loss]) : new Float32Array([r.loss]) };
    const { reduction: _r, ...options } = saved;
    const lossMeta: Record<string, string> = Object.keys(options).length > 0 ? { loss: JSON.stringify({ reduction, ...options }) } : {};
    saveSafetensors(out, { loss, ...Object.fromEntries(grads) }, { activation, reduction, ...lossMeta, backend, producer: 'handgrad grads' });
    const written = Object.entries(shapes).map(([k, shape]) => `${k} ${shapeText(shape)}`).join(', ');
    const from = torchLayout ? `, from PyTorch's layout (${weights.names.join(', ')})` : '';
    process.stdout.write(`${out}: loss ${r.loss} and ${written} (${dtype}, ${activation}, ${reduction}, backend ${backend}${from})\n`);
    return 0;
  },
};

type Weights = { tensors: [SafetensorsTensor, SafetensorsTensor, SafetensorsTensor, SafetensorsTensor]; names: string[]; activation?: Activation; loss: LossSpec };

/**
 * The reduction: --reduction, else the case's "reduction", else the loss the file was saved with
 * (a model file's "loss"); a case whose "reduction" and "loss" disagree is refused, never one of them taken.
 * @throws {HandgradError} ERR_FILE
 */
function caseReduction(flag: string | undefined, own: string | undefined, loss: LossSpec, path: string): Reduction {
  if (flag === undefined && own !== undefined && own !== loss.reduction && loss.reduction !== 'mean') {
    fileFail(`the reduction of __metadata__.loss (${loss.reduction}), or no "reduction"`, '__metadata__.reduction', own, path);
  }
  return v.oneOf(flag ? '--reduction' : own !== undefined ? '__metadata__.reduction' : '__metadata__.loss.reduction', flag ?? own ?? loss.reduction, v.REDUCTIONS, 'mean');
}

/** W1, b1, W2, b2 as the file holds them; --layers, if given, must be Linear, act, Linear. */
function handgradWeights(file: SafetensorsFile, path: string, layers: string[] | undefined): Weights {
  const names = ['W1', 'b1', 'W2', 'b2'];
  const tensors = names.map((n) => tensorOf(file, n, ['F64', 'F32'], path)) as Weights['tensors'];
  if (layers === undefined) return { tensors, names, loss: { reduction: 'mean' } };
  const arch = architecture({ layers });
  const act = arch.layers!.filter((k) => k !== 'linear');
  if (arch.layers!.length !== 3 || arch.layers![0] !== 'linear' || arch.layers![2] !== 'linear' || act.length !== 1 || !(v.ACTIVATIONS as readonly string[]).includes(act[0])) {
    v.fail(RangeError, 'linear,<activation>,linear for a file in handgrad\'s layout (W1, b1, W2, b2)', '--layers', new v.Received(layers.join(',')));
  }
  return { tensors, names, activation: act[0] as Activation, loss: { reduction: 'mean' } };
}

/**
 * The activation and loss of the net a handgrad-layout file holds, read by the reader every loader
 * uses (sequentialFromFile: the "layers" metadata, D, H, C, every W/b tensor, finite weights, the
 * "loss"), which must be Linear, act, Linear: a deeper net (W3, b3, or layers that say so) is
 * refused, never cut down to W1, b1, W2, b2. --activation overrides the file's "activation" (not a
 * "layers" list that disagrees).
 * @throws {HandgradError} ERR_FILE
 */
function twoLayerNet(file: SafetensorsFile, path: string, activation: string | undefined, layers: string[] | undefined): { activation: Activation; loss: LossSpec } {
  const { activation: _saved, ...rest } = file.metadata;
  const view = activation === undefined ? file : { ...file, metadata: rest };
  let net: Sequential;
  try {
    net = sequentialFromFile(view, path, architecture(layers !== undefined ? { layers } : { activation }), 'handgrad grads');
  } catch (err) {
    // The reader names its options; here they are the flags.
    if (err instanceof HandgradError) err.message = err.message.replace(/\bopts\.(layers|activation)\b/g, '--$1');
    throw err;
  }
  const kinds = net.layers.map((l) => l.kind);
  if (kinds.length !== 3 || kinds[0] !== 'linear' || kinds[1] === 'linear' || kinds[2] !== 'linear') {
    const linears = kinds.filter((k) => k === 'linear').length;
    fileFail("the two-layer net W1, b1, W2, b2 (handgrad grads computes that net's gradients)", 'the file', `a net of ${linears} Linear layers: ${kinds.join(', ')}`, path);
  }
  return { activation: kinds[1] as Activation, loss: net.loss.spec() };
}

/**
 * The two-layer net of an nn.Sequential's state_dict (checkpoint.ts's reader: the activation
 * named by --activation, --layers or the file's metadata; Dropout and Identity may fill gaps), as
 * handgrad's W [in,out]. A state_dict that says nothing of its activation is refused in the CLI's
 * words (the reader's would name the API).
 * @throws {HandgradError} ERR_FILE
 */
function stateDictWeights(file: SafetensorsFile, path: string, activation: string | undefined, layers: string[] | undefined): Weights {
  const meta = file.metadata;
  if (activation === undefined && layers === undefined && meta.activation === undefined && meta.layers === undefined && meta.modules === undefined) {
    const held = Object.keys(file.tensors).filter((n) => /^\d+\./.test(n));
    throw new HandgradError('ERR_FILE', `${path} holds a PyTorch state_dict (${held.join(', ')}) that does not record its activation: name it with --activation relu|sigmoid|tanh, or every module with --layers (e.g. --layers linear,tanh,linear)`);
  }
  // --activation overrides the file's own metadata (as for handgrad's layout): read without it.
  const { activation: _saved, ...rest } = meta;
  const view = activation === undefined ? file : { ...file, metadata: rest };
  const arch = architecture(layers !== undefined ? { layers } : { activation });
  const p = paramsFromFile(view, path, arch, 'handgrad grads');
  const [l1, l2] = linearIndices(file);
  const t = (data: FloatArray, shape: number[]): SafetensorsTensor => ({ dtype: data instanceof Float64Array ? 'F64' : 'F32', shape, data } as SafetensorsTensor);
  return {
    tensors: [t(p.W1, [p.D, p.H]), t(p.b1, [p.H]), t(p.W2, [p.H, p.C]), t(p.b2, [p.C])],
    names: [`${l1}.weight`, `${l1}.bias`, `${l2}.weight`, `${l2}.bias`],
    activation: p.activation,
    loss: p.loss,
  };
}

/** The module indices of the state_dict's two Linear layers ("0", "2", or "0", "3" with a Dropout between). */
function linearIndices(file: SafetensorsFile): [string, string] {
  const idx = [...new Set(Object.keys(file.tensors).flatMap((n) => /^(\d+)\.weight$/.exec(n)?.[1] ?? []))].map(Number).sort((a, b) => a - b);
  return [String(idx[0]), String(idx[1])];
}
