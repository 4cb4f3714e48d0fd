// Parameters (and, for a Trainer, its optimizer state) to and from safetensors files.
//
// handgrad layout: W1 [D,H], b1 [H], W2 [H,C], b2 [C], as the math is written (X·W1).
// PyTorch layout: nn.Linear(D, H) stores weight as [H, D] — that is W1ᵀ — because it computes
// x·weightᵀ. A state_dict of nn.Sequential(Linear(D,H), ReLU(), Linear(H,C)) saved with
// safetensors.torch.save_file holds "0.weight" [H,D], "0.bias" [H], "2.weight" [C,H], "2.bias" [C],
// and no record of the ReLU: such a file is read only with the activations named by the caller
// (lib/io/layers.ts has the rules, Dropout and Identity gaps included).
import { fileFail } from './data/files';
import { HandgradError } from './errors';
import { loadSafetensors, saveSafetensors, type SafetensorsFile, type TensorInput, tensorOf } from './io/safetensors';
import { architecture, type ArchitectureOptions, fileNet, type FileNet, type Layout, moduleIndices, type ModuleKind } from './io/layers';
import type { LayerSpec } from './layers/layer';
import { Linear } from './layers/linear';
import type { LossSpec } from './layers/loss';
import { MAX_LAYERS, Sequential, type SequentialSpec } from './layers/sequential';

export { MAX_LAYERS };
import type { Activation, FloatArray, Params } from './types';
import { activationOf, twoLayerNet } from './model';
import * as v from './validate';

export type { ArchitectureOptions, Layout, ModuleKind } from './io/layers';
type LinearSpec = Extract<LayerSpec, { kind: 'linear' }>;
const LAYOUTS: readonly Layout[] = ['handgrad', 'torch'];

/** W1, b1, W2, b2 with D, H, C, as loadParams reads them. */
export type SavedParams = Required<Params>;

/** A [rows, cols] row-major matrix transposed into a new array of the same dtype. */
export function transpose<T extends FloatArray>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as { new (n: number): T })(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/**
 * Saves parameters, with dims and activation in the metadata.
 * @throws {TypeError|RangeError} bad params or options; {HandgradError} ERR_FILE when the file cannot be written
 */
export function saveParams(path: string, params: SavedParams | Omit<SavedParams, 'D' | 'H' | 'C'>, opts: { activation?: Activation; layout?: Layout; metadata?: Record<string, string> } = {}): void {
  const o = v.options('opts', opts, ['activation', 'layout', 'metadata'] as const);
  const layout = v.oneOf('opts.layout', o.layout, LAYOUTS, 'handgrad');
  const activation = activationOf(params, o.activation);
  const net = twoLayerNet(params, activation);
  saveSafetensors(path, sequentialTensors(net, layout), { ...metadataOption(o.metadata), ...sequentialMetadata(net, layout, activation) });
}

/**
 * Metadata keys the format writes (this file's, the Trainer's, the optimizer file's link and the
 * model file's own): user metadata may not use them, since one would silently replace the other,
 * or a reader would take the user's value for the format's (Trainer.load resuming from "steps").
 */
export const RESERVED_KEYS: readonly string[] = [
  'format', 'layout', 'activation', 'dtype', 'D', 'H', 'C', 'layers', 'loss', 'modules',
  'trainer', 'steps', 'epochs', 'position', 'optimizer_state', 'optimizer_state_sha256',
  'preprocess', 'classes', 'features', 'label',
];

/**
 * User metadata for a file: string values only (safetensors' __metadata__ is a string map), and
 * none of the format's own keys — the one rule of every writer (saveParams, saveSequential,
 * saveModel, Trainer.save).
 * @throws {TypeError} not an object of strings; {RangeError} a reserved key
 */
export function metadataOption(m: unknown): Record<string, string> {
  if (m === undefined) return {};
  if (m === null || typeof m !== 'object' || Array.isArray(m)) v.fail(TypeError, 'an object of strings', 'opts.metadata', m);
  for (const [k, x] of Object.entries(m)) if (typeof x !== 'string') v.fail(TypeError, 'a string', `opts.metadata.${k}`, x);
  const reserved = Object.keys(m).find((k) => RESERVED_KEYS.includes(k));
  if (reserved !== undefined) v.fail(RangeError, `a key other than the format's own (${RESERVED_KEYS.join(', ')})`, 'opts.metadata', new v.Received(JSON.stringify(reserved)));
  return m as Record<string, string>;
}

/**
 * A weight or bias as the file holds it (before any transpose, so the index is the file's): NaN or
 * ±Infinity is refused on load, naming the file and tensor, rather than found later by predict or
 * fit as a RangeError about "W1" that names no file, or saved back out.
 * @throws {HandgradError} ERR_FILE
 */
function finiteTensor(data: FloatArray, name: string, source: string): void {
  for (let j = 0; j < data.length; j++) {
    const x = data[j];
    if (!Number.isFinite(x)) fileFail('finite values', `tensor ${JSON.stringify(name)}`, `${x} at index ${j}`, source);
  }
}

/** The Linear layers' tensors of a file's net, W1, b1, … in handgrad's form ([in,out]), copied. */
function linearParams(file: SafetensorsFile, net: FileNet, source: string): Record<string, FloatArray> {
  const fail = (what: string, name: string, got: string): never => fileFail(what, name, got, source);
  const params: Record<string, FloatArray> = {};
  let k = 0;
  for (const s of net.specs) {
    if (s.kind !== 'linear') continue;
    const { W: wName, b: bName } = net.tensors[k++];
    const W = tensorOf(file, wName, [net.dtype], source);
    const b = tensorOf(file, bName, [net.dtype], source);
    if (b.shape.length !== 1) fail('a 1-D tensor', bName, `shape [${b.shape}]`);
    if (b.shape[0] !== s.out) fail(`shape [${s.out}]`, bName, `[${b.shape}]`);
    finiteTensor(W.data as FloatArray, wName, source);
    finiteTensor(b.data as FloatArray, bName, source);
    params[`W${k}`] = net.layout === 'torch' ? transpose(W.data as FloatArray, s.out, s.in) : (W.data as FloatArray).slice();
    params[`b${k}`] = (b.data as FloatArray).slice();
  }
  return params;
}

/** Whether a file's net is Linear, act, Linear (what the two-layer API and loadParams take). */
const isTwoLayer = (net: FileNet) => net.specs.length === 3 && net.specs[0].kind === 'linear' && net.specs[1].kind !== 'linear' && net.specs[2].kind === 'linear';

/**
 * Reads the two-layer net's W1, b1, W2, b2, activation and loss (`__metadata__.loss`, or
 * F.cross_entropy's defaults, { reduction: 'mean' }) from either layout, in the file's float
 * dtype; a PyTorch state_dict without metadata needs `arch` (lib/io/layers.ts). Everything is
 * checked as loadSequential and loadModel check it: the same net is built from the file.
 * @throws {HandgradError} ERR_FILE
 */
export function paramsFromFile(file: SafetensorsFile, source: string, arch: ArchitectureOptions = {}, caller = 'loadParams'): SavedParams & { layout: Layout; activation: Activation; loss: LossSpec } {
  const net = fileNet(file, source, arch, caller);
  if (!isTwoLayer(net)) {
    throw new HandgradError('ERR_FILE', `Expected the two-layer net's W1, b1, W2, b2 for ${source} but it holds a Sequential of other depth: read it with loadSequential (its layers: ${net.specs.map((s) => s.kind).join(', ')})`);
  }
  const [l1, act, l2] = net.specs as [LinearSpec, { kind: Activation }, LinearSpec];
  if (l2.in !== l1.out) fileFail(`shape [${net.layout === 'torch' ? [l2.out, l1.out] : [l1.out, l2.out]}]`, net.tensors[1].W, `[${net.layout === 'torch' ? [l2.out, l2.in] : [l2.in, l2.out]}]`, source);
  // The Sequential the other loaders build, so that the loss (and everything else) is read and
  // checked by the one reader: a two-layer file's loss is part of it as a deeper file's is.
  const seq = sequentialOf(file, net, source);
  const p = seq.params;
  return { layout: net.layout, D: l1.in, H: l1.out, C: l2.out, W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2, activation: act.kind, loss: seq.loss.spec() };
}

/** Whether a loss is F.cross_entropy's default (mean, no options): what a file without "loss" means. */
export const isDefaultLoss = (loss: LossSpec): boolean => Object.keys(loss).length === 1 && loss.reduction === 'mean';

/**
 * Loads parameters written by saveParams, Trainer.save, or PyTorch (see the layout note above),
 * with the loss the file was saved with (`loss`: its reduction and options, checked). A
 * PyTorch state_dict records no activation: pass it, `{ activation: 'tanh' }` or
 * `{ layers: ['linear', 'tanh', 'linear'] }` (Dropout and Identity may fill index gaps: lib/io/layers.ts).
 * @throws {TypeError|RangeError} bad options
 * @throws {HandgradError} ERR_FILE for a missing, malformed or mismatched file, a state_dict without its activation, options that contradict the file
 */
export function loadParams(path: string, opts: ArchitectureOptions = {}): SavedParams & { layout: Layout; activation: Activation; loss: LossSpec; metadata: Record<string, string> } {
  const arch = architecture(v.options('opts', opts, ['layers', 'activation'] as const));
  const file = loadSafetensors(path);
  return { ...paramsFromFile(file, path, arch), metadata: file.metadata };
}

// A Sequential's tensors. handgrad layout: W1 [in,out], b1, W2, … (Linear layers numbered from 1).
// PyTorch layout: the state_dict of the same layers in nn.Sequential, "{i}.weight" [out,in] and
// "{i}.bias" with i the layer's position (activations hold no tensors, so the indices skip them).
// The layer list itself travels in the metadata ("layers", JSON), since a state_dict has no record
// of the activations.

/**
 * The tensors of a Sequential in the chosen layout, ready for writeSafetensors.
 * @throws {RangeError} a non-finite weight or bias, naming it (W1, b1, … by Linear number)
 */
export function sequentialTensors(seq: Sequential, layout: Layout = 'handgrad', modules?: readonly ModuleKind[]): Record<string, TensorInput> {
  const out: Record<string, TensorInput> = {};
  const index = moduleIndices(seq.layers.map((l) => l.kind), modules, 'opts.layers');
  seq.layers.forEach((l, j) => {
    const i = index[j];
    if (!(l instanceof Linear)) return;
    const k = seq.linearNumber[j];
    const { W, b } = l.params;
    // Every loader refuses NaN and ±Infinity weights: no writer produces a file that cannot be read.
    v.assertFinite(`W${k}`, W);
    v.assertFinite(`b${k}`, b);
    if (layout === 'torch') {
      out[`${i}.weight`] = { shape: [l.outFeatures, l.inFeatures], data: transpose(W, l.inFeatures, l.outFeatures) };
      out[`${i}.bias`] = { shape: [l.outFeatures], data: b };
    } else {
      out[`W${k}`] = { shape: [l.inFeatures, l.outFeatures], data: W };
      out[`b${k}`] = { shape: [l.outFeatures], data: b };
    }
  });
  return out;
}

/**
 * The metadata that lets a file be read back as the same net: a Sequential's layers, or, given the
 * two-layer net's activation, its D, H, C (no layers list: it loads back as two-layer params).
 */
export function sequentialMetadata(seq: Sequential, layout: Layout, twoLayer?: Activation, modules?: readonly ModuleKind[]): Record<string, string> {
  // The nn.Sequential's modules when the indices follow them (Dropout, Identity among the layers).
  const torchModules: Record<string, string> = layout === 'torch' && modules !== undefined ? { modules: JSON.stringify(modules) } : {};
  // The loss's options (weight, ignoreIndex, labelSmoothing, a reduction other than the mean) are
  // part of the model, a two-layer one's too (a Model loadModel read from such a file): a file
  // without them would load as a different training objective.
  const loss = seq.loss.spec();
  const lossMeta: Record<string, string> = isDefaultLoss(loss) ? {} : { loss: JSON.stringify(loss) };
  if (twoLayer !== undefined) {
    const [D, H, C] = [seq.inFeatures, seq.widths[1], seq.classes].map(String);
    return { format: 'handgrad', layout, activation: twoLayer, dtype: seq.dtype, D, H, C, ...lossMeta, ...torchModules };
  }
  const act = seq.layers.find((l) => l.kind !== 'linear');
  return {
    format: 'handgrad', layout, dtype: seq.dtype, layers: JSON.stringify(seq.spec().layers), D: String(seq.inFeatures), C: String(seq.classes),
    ...(act ? { activation: act.kind } : {}), ...lossMeta, ...torchModules,
  };
}


/** Whether a file holds a net other than Linear, act, Linear (W3, "4.weight", or such a layers list). */
export function holdsSequential(file: SafetensorsFile, source = 'the file', arch: ArchitectureOptions = {}, caller = 'loadSequential'): boolean {
  return !isTwoLayer(fileNet(file, source, arch, caller));
}

/**
 * A Sequential from a file: its "layers" metadata when present; otherwise the layers of the
 * caller's `arch`, or the file's "activation" metadata between its Linear layers (a handgrad
 * two-layer file), or ReLU for a handgrad-layout file without metadata. A PyTorch state_dict
 * without metadata needs `arch` (lib/io/layers.ts). Tensors are copied into the Sequential. The
 * work is linear in the file, and at most MAX_LAYERS layers are read.
 * @throws {HandgradError} ERR_FILE for missing, misshapen or inconsistent tensors or layers, more than MAX_LAYERS layers
 */
export function sequentialFromFile(file: SafetensorsFile, source: string, arch: ArchitectureOptions = {}, caller = 'loadSequential'): Sequential {
  return sequentialOf(file, fileNet(file, source, arch, caller), source);
}

/** The "loss" metadata (sequentialMetadata) as a spec's reduction and loss options; absent: F.cross_entropy's defaults. */
function savedLoss(file: SafetensorsFile, source: string): Pick<SequentialSpec, 'reduction' | 'loss'> {
  const text = file.metadata.loss;
  if (text === undefined) return { reduction: 'mean' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) fileFail('a JSON object { reduction, weight?, ignoreIndex?, labelSmoothing? }', '__metadata__.loss', JSON.stringify(text.slice(0, 80)), source);
  const { reduction, ...loss } = parsed as LossSpec;
  return { reduction, loss };
}

function sequentialOf(file: SafetensorsFile, net: FileNet, source: string): Sequential {
  const params = linearParams(file, net, source);
  try {
    return Sequential.fromSpec({ dtype: net.dtype === 'F32' ? 'float32' : 'float64', layers: net.specs, ...savedLoss(file, source) }, params);
  } catch (e) {
    if (e instanceof HandgradError) throw e;
    throw new HandgradError('ERR_FILE', `${(e as Error).message} (${source})`, { cause: e });
  }
}

/**
 * Saves a Sequential's parameters and its layer list. In PyTorch's layout, `layers` names every
 * module of the nn.Sequential it came from, Dropout and Identity included, so the indices are that
 * nn.Sequential's; a Sequential that loadSequential read from such a state_dict (seq.modules)
 * keeps its indices without it.
 * @throws {TypeError|RangeError} bad options, layers that are not the net's with 'dropout'/'identity' between
 * @throws {HandgradError} ERR_FILE when the file cannot be written
 */
export function saveSequential(path: string, seq: Sequential, opts: { layout?: Layout; metadata?: Record<string, string>; layers?: readonly ModuleKind[] } = {}): void {
  if (!(seq instanceof Sequential)) v.fail(TypeError, 'a Sequential', 'seq', seq);
  const o = v.options('opts', opts, ['layout', 'metadata', 'layers'] as const);
  const layout = v.oneOf('opts.layout', o.layout, LAYOUTS, 'handgrad');
  const modules = torchModulesOption(o.layers, layout) ?? (layout === 'torch' ? (seq as { modules?: readonly ModuleKind[] }).modules : undefined);
  saveSafetensors(path, sequentialTensors(seq, layout, modules), { ...metadataOption(o.metadata), ...sequentialMetadata(seq, layout, undefined, modules) });
}

/**
 * opts.layers of a save: the nn.Sequential's modules, so that a net read from a state_dict with
 * Dropout or Identity is written back at the same indices (PyTorch's layout only).
 * @throws {TypeError|RangeError}
 */
export function torchModulesOption(layers: unknown, layout: Layout): readonly ModuleKind[] | undefined {
  if (layers === undefined) return undefined;
  if (layout !== 'torch') v.fail(TypeError, "no opts.layers without layout: 'torch' (handgrad's layout numbers the Linear layers)", 'opts.layers', layers);
  return architecture({ layers }).layers;
}

/**
 * Loads any handgrad or PyTorch parameter file as a Sequential (a two-layer file gives
 * Linear, act, Linear). A PyTorch state_dict records no activations: name them,
 * `{ layers: ['linear', 'tanh', 'dropout', 'linear'] }` (every module in order) or
 * `{ activation: 'tanh' }` (lib/io/layers.ts has the rule for index gaps). Dropout and Identity
 * are the identity at inference and are left out of the Sequential.
 * @throws {TypeError|RangeError} bad options
 * @throws {HandgradError} ERR_FILE for a missing, malformed or mismatched file, a state_dict without its activations, options that contradict the file
 */
export function loadSequential(path: string, opts: ArchitectureOptions = {}): LoadedSequential {
  const arch = architecture(v.options('opts', opts, ['layers', 'activation'] as const));
  const file = loadSafetensors(path);
  const net = fileNet(file, path, arch, 'loadSequential');
  const seq = sequentialOf(file, net, path);
  // The file's metadata (what saveSequential's opts.metadata wrote: class names, preprocessing, …)
  // comes back with it, as loadParams returns it; and, from a state_dict with Dropout or
  // Identity, its modules (saveSequential writes them back at the same indices). Read-only, and
  // not carried by copies.
  Object.defineProperty(seq, 'metadata', { value: Object.freeze({ ...file.metadata }), enumerable: false });
  Object.defineProperty(seq, 'modules', { value: net.modules && Object.freeze(net.modules.slice()), enumerable: false });
  return seq as LoadedSequential;
}

/**
 * A Sequential read from a file: the file's metadata (string keys and values) and, for a
 * state_dict whose indices have gaps, every module of its nn.Sequential ('dropout', 'identity'
 * included; undefined otherwise).
 */
export type LoadedSequential = Sequential & { readonly metadata: Readonly<Record<string, string>>; readonly modules?: readonly ModuleKind[] };
