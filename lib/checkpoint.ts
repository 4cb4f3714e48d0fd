// Parameters (and, for a Trainer, its optimizer state) to and from safetensors files.
//
// handgrad layout: W1 [D,H], b1 [H], W2 [H,C], b2 [C], as the math is written (X·W1).
// PyTorch layout: nn.Linear(D, H) stores weight as [H, D] — that is W1ᵀ — because it computes
// x·weightᵀ. A state_dict of nn.Sequential(Linear(D,H), ReLU(), Linear(H,C)) saved with
// safetensors.torch.save_file holds "0.weight" [H,D], "0.bias" [H], "2.weight" [C,H], "2.bias" [C].
import { fileFail } from './data/files';
import { HandgradError } from './errors';
import { loadSafetensors, saveSafetensors, type SafetensorsFile, type TensorInput, tensorOf } from './io/safetensors';
import type { LayerSpec } from './layers/layer';
import { Linear } from './layers/linear';
import { MAX_LAYERS, Sequential } from './layers/sequential';

export { MAX_LAYERS };
import type { Activation, FloatArray, Params } from './types';
import { activationOf, twoLayerNet } from './model';
import * as v from './validate';

export type Layout = 'handgrad' | 'torch';
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

/** User metadata for a file: string values only (safetensors' __metadata__ is a string map). */
export function metadataOption(m: unknown): Record<string, string> {
  if (m === undefined) return {};
  if (m === null || typeof m !== 'object' || Array.isArray(m)) v.fail(TypeError, 'an object of strings', 'opts.metadata', m);
  for (const [k, x] of Object.entries(m)) if (typeof x !== 'string') v.fail(TypeError, 'a string', `opts.metadata.${k}`, x);
  return m as Record<string, string>;
}

/** Reads W1, b1, W2, b2 from either layout (the names tell which), in the file's float dtype. */
export function paramsFromFile(file: SafetensorsFile, source: string): SavedParams & { layout: Layout } {
  const layout: Layout = '0.weight' in file.tensors ? 'torch' : 'handgrad';
  const names = layout === 'torch' ? ['0.weight', '0.bias', '2.weight', '2.bias'] : ['W1', 'b1', 'W2', 'b2'];
  const [w1, b1, w2, b2] = names.map((n) => tensorOf(file, n, ['F64', 'F32'], source));
  const fail = (what: string, name: string, got: string): never => fileFail(what, name, got, source);
  for (const [t, n] of [[w1, names[0]], [w2, names[2]]] as const) if (t.shape.length !== 2) fail('a 2-D tensor', n, `shape [${t.shape}]`);
  for (const [t, n] of [[b1, names[1]], [b2, names[3]]] as const) if (t.shape.length !== 1) fail('a 1-D tensor', n, `shape [${t.shape}]`);
  if (new Set([w1.dtype, b1.dtype, w2.dtype, b2.dtype]).size !== 1) fail('one float dtype', 'the parameters', [w1, b1, w2, b2].map((t) => t.dtype).join(', '));
  const H = b1.shape[0];
  const C = b2.shape[0];
  const D = layout === 'torch' ? w1.shape[1] : w1.shape[0];
  const wantW1 = layout === 'torch' ? [H, D] : [D, H];
  const wantW2 = layout === 'torch' ? [C, H] : [H, C];
  if (w1.shape.join() !== wantW1.join()) fail(`shape [${wantW1}]`, names[0], `[${w1.shape}]`);
  if (w2.shape.join() !== wantW2.join()) fail(`shape [${wantW2}]`, names[2], `[${w2.shape}]`);
  const data = (t: typeof w1) => (t.data as FloatArray).slice() as FloatArray;
  const weight = (t: typeof w1, out: number, inF: number) => (layout === 'torch' ? transpose(t.data as FloatArray, out, inF) : data(t));
  return { layout, D, H, C, W1: weight(w1, H, D), b1: data(b1), W2: weight(w2, C, H), b2: data(b2) };
}

/**
 * Loads parameters written by saveParams, Trainer.save, or PyTorch (see the layout note above).
 * @throws {HandgradError} ERR_FILE for a missing, malformed or mismatched file
 */
export function loadParams(path: string, opts: Record<string, never> = {}): SavedParams & { layout: Layout; activation?: Activation; metadata: Record<string, string> } {
  v.options('opts', opts, []);
  const file = loadSafetensors(path);
  if (holdsSequential(file)) {
    throw new HandgradError('ERR_FILE', `Expected the two-layer net's W1, b1, W2, b2 for ${path} but it holds a Sequential of other depth: read it with loadSequential`);
  }
  const p = paramsFromFile(file, path);
  const act = file.metadata.activation;
  return { ...p, activation: (v.ACTIVATIONS as readonly string[]).includes(act) ? (act as Activation) : undefined, metadata: file.metadata };
}

// A Sequential's tensors. handgrad layout: W1 [in,out], b1, W2, … (Linear layers numbered from 1).
// PyTorch layout: the state_dict of the same layers in nn.Sequential, "{i}.weight" [out,in] and
// "{i}.bias" with i the layer's position (activations hold no tensors, so the indices skip them).
// The layer list itself travels in the metadata ("layers", JSON), since a state_dict has no record
// of the activations.

/** The tensors of a Sequential in the chosen layout, ready for writeSafetensors. */
export function sequentialTensors(seq: Sequential, layout: Layout = 'handgrad'): Record<string, TensorInput> {
  const out: Record<string, TensorInput> = {};
  seq.layers.forEach((l, i) => {
    if (!(l instanceof Linear)) return;
    const k = seq.linearNumber[i];
    const { W, b } = l.params;
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
export function sequentialMetadata(seq: Sequential, layout: Layout, twoLayer?: Activation): Record<string, string> {
  if (twoLayer !== undefined) {
    const [D, H, C] = [seq.inFeatures, seq.widths[1], seq.classes].map(String);
    return { format: 'handgrad', layout, activation: twoLayer, dtype: seq.dtype, D, H, C };
  }
  const act = seq.layers.find((l) => l.kind !== 'linear');
  return {
    format: 'handgrad', layout, dtype: seq.dtype, layers: JSON.stringify(seq.spec().layers), D: String(seq.inFeatures), C: String(seq.classes),
    ...(act ? { activation: act.kind } : {}),
  };
}


const LAYER_KINDS: readonly string[] = ['linear', ...v.ACTIVATIONS];

/**
 * The "layers" metadata as a checked list: JSON, an array of at most MAX_LAYERS entries, each
 * { kind } of a known kind, a Linear's in and out positive 32-bit integers. Every value is checked
 * before anything formats or compares it, so nothing deep in the JSON is ever walked.
 */
function layerList(text: string, fail: (what: string, name: string, got: string) => never): LayerSpec[] {
  const key = '__metadata__.layers';
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return fail('a JSON list of layers', key, JSON.stringify(text.slice(0, 40)));
  }
  if (!Array.isArray(list)) return fail('a JSON list of layers', key, v.describe(list));
  if (list.length > MAX_LAYERS) fail(`at most ${MAX_LAYERS} layers`, key, `${list.length} layers`);
  list.forEach((s: unknown, i) => {
    const kind = (s as { kind?: unknown } | null)?.kind;
    if (s === null || typeof s !== 'object' || Array.isArray(s) || typeof kind !== 'string' || !LAYER_KINDS.includes(kind)) {
      fail(`a layer { kind: ${LAYER_KINDS.map((k) => `'${k}'`).join(' | ')}, … }`, `${key}[${i}]`, v.describe(s));
    }
    if (kind !== 'linear') return;
    for (const side of ['in', 'out'] as const) {
      const n = (s as Record<string, unknown>)[side];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 0x7fffffff) fail('a positive 32-bit integer', `${key}[${i}].${side}`, v.describe(n));
    }
  });
  return list as LayerSpec[];
}

/** Whether a file holds a net other than Linear, act, Linear (W3, "4.weight", or such a layers list). */
export function holdsSequential(file: SafetensorsFile): boolean {
  const layers = file.metadata.layers;
  if (layers !== undefined) {
    try {
      const l = JSON.parse(layers) as LayerSpec[];
      return !(Array.isArray(l) && l.length === 3 && l[0]?.kind === 'linear' && l[1]?.kind !== 'linear' && l[2]?.kind === 'linear');
    } catch {
      return true; // sequentialFromFile names the malformed list
    }
  }
  return Object.keys(file.tensors).some((n) => n === 'W3' || (/^\d+\.weight$/.test(n) && n !== '0.weight' && n !== '2.weight'));
}

/**
 * A Sequential from a file: its "layers" metadata when present; otherwise the layers are inferred
 * from the tensor names (Linear layers with one activation between, the file's "activation"
 * metadata or ReLU), which reads both a two-layer file and PyTorch's nn.Sequential(Linear, ReLU, …).
 * Tensors are copied into the Sequential. The work is linear in the file, and at most MAX_LAYERS layers are read.
 * @throws {HandgradError} ERR_FILE for missing, misshapen or inconsistent tensors or layers, more than MAX_LAYERS layers
 */
export function sequentialFromFile(file: SafetensorsFile, source: string): Sequential {
  const fail = (what: string, name: string, got: string): never => fileFail(what, name, got, source);
  const layout: Layout = '0.weight' in file.tensors ? 'torch' : 'handgrad';
  const act = (v.ACTIVATIONS as readonly string[]).includes(file.metadata.activation) ? (file.metadata.activation as Activation) : 'relu';
  let specs: LayerSpec[];
  if (file.metadata.layers !== undefined) {
    specs = layerList(file.metadata.layers, fail);
  } else {
    // Linear positions: 0, 2, 4, … in PyTorch's layout; W1, W2, … in handgrad's.
    const count = Object.keys(file.tensors).filter((n) => (layout === 'torch' ? /^\d+\.weight$/ : /^W\d+$/).test(n)).length;
    if (2 * count - 1 > MAX_LAYERS) fail(`at most ${MAX_LAYERS} layers`, 'the file', `${count} Linear layers (${2 * count - 1} with the activations between)`);
    specs = [];
    for (let k = 1; k <= count; k++) {
      const name = layout === 'torch' ? `${2 * (k - 1)}.weight` : `W${k}`;
      const W = tensorOf(file, name, ['F64', 'F32'], source);
      if (W.shape.length !== 2) fail('a 2-D tensor', name, `shape [${W.shape}]`);
      if (k > 1) specs.push({ kind: act });
      const [inF, outF] = layout === 'torch' ? [W.shape[1], W.shape[0]] : W.shape;
      specs.push({ kind: 'linear', in: inF, out: outF });
    }
    if (count === 0) fail('at least one Linear layer (W1 or 0.weight)', 'the file', `tensors ${Object.keys(file.tensors).join(', ') || '(none)'}`);
  }
  const first = layout === 'torch' ? file.tensors['0.weight'] : file.tensors.W1;
  if (first === undefined) fail('a tensor named W1 or 0.weight', 'the file', `tensors ${Object.keys(file.tensors).join(', ') || '(none)'}`);
  const dtype = first.dtype === 'F32' ? 'float32' : 'float64';
  const params: Record<string, FloatArray> = {};
  let k = 0;
  try {
    specs.forEach((s, i) => {
      if (s === null || typeof s !== 'object' || s.kind !== 'linear') return;
      k++;
      const [wName, bName] = layout === 'torch' ? [`${i}.weight`, `${i}.bias`] : [`W${k}`, `b${k}`];
      const W = tensorOf(file, wName, [first.dtype as 'F64' | 'F32'], source);
      const b = tensorOf(file, bName, [first.dtype as 'F64' | 'F32'], source);
      const want = layout === 'torch' ? [s.out, s.in] : [s.in, s.out];
      if (W.shape.join() !== want.join()) fail(`shape [${want}]`, wName, `[${W.shape}]`);
      if (b.shape.join() !== String(s.out)) fail(`shape [${s.out}]`, bName, `[${b.shape}]`);
      params[`W${k}`] = layout === 'torch' ? transpose(W.data as FloatArray, s.out, s.in) : (W.data as FloatArray).slice();
      params[`b${k}`] = (b.data as FloatArray).slice();
    });
    return Sequential.fromSpec({ dtype, layers: specs, reduction: 'mean' }, params);
  } catch (e) {
    if (e instanceof HandgradError) throw e;
    throw new HandgradError('ERR_FILE', `${(e as Error).message} (${source})`, { cause: e });
  }
}

/** Saves a Sequential's parameters and its layer list. @throws {HandgradError} ERR_FILE when the file cannot be written */
export function saveSequential(path: string, seq: Sequential, opts: { layout?: Layout; metadata?: Record<string, string> } = {}): void {
  if (!(seq instanceof Sequential)) v.fail(TypeError, 'a Sequential', 'seq', seq);
  const o = v.options('opts', opts, ['layout', 'metadata'] as const);
  const layout = v.oneOf('opts.layout', o.layout, LAYOUTS, 'handgrad');
  saveSafetensors(path, sequentialTensors(seq, layout), { ...metadataOption(o.metadata), ...sequentialMetadata(seq, layout) });
}

/**
 * Loads any handgrad or PyTorch parameter file as a Sequential (a two-layer file gives
 * Linear, act, Linear).
 * @throws {HandgradError} ERR_FILE for a missing, malformed or mismatched file
 */
export function loadSequential(path: string, opts: Record<string, never> = {}): Sequential {
  v.options('opts', opts, []);
  return sequentialFromFile(loadSafetensors(path), path);
}
