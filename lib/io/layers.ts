// Which layers a parameter file holds, and under which tensor names.
//
// A handgrad file says it: "layers" (a JSON list) or, for the two-layer net, "activation" in its
// metadata. A PyTorch state_dict does not: nn.Sequential(Linear, Tanh, Linear) and
// nn.Sequential(Linear, ReLU, Linear) have the very same tensors ("0.weight" [out,in], "0.bias",
// "2.weight", "2.bias"), and parameter-free modules (Dropout, Identity) only leave gaps in the
// indices ("0.*", "3.*" for Linear, ReLU, Dropout, Linear). So such a file is read only when the
// caller names what the tensors cannot say:
//   { layers: ['linear', 'relu', 'dropout', 'linear'] }  every module of the nn.Sequential, in order;
//   { activation: 'tanh' }  the one activation between Linear layers. The rule for gaps: the Linear
//     layers are at the indices that hold tensors, the first at 0; between two of them, one index
//     is the activation and each further index a parameter-free module that is the identity at
//     inference (Dropout, Identity). Adjacent Linear layers and modules before the first Linear
//     cannot be read this way (refused: name them with layers).
// 'dropout' and 'identity' are the identity at inference and are left out of the net (training it
// trains without dropout); the module list is kept (seq.modules, a Trainer's), and a save in
// PyTorch's layout writes the tensors back at the same indices with the list in "modules", so the
// nn.Sequential with its Dropout load_state_dict()s it strictly. Options that contradict a file's
// own metadata are an error.
import { fileFail } from '../data/files';
import { HandgradError } from '../errors';
import type { LayerSpec } from '../layers/layer';
import { MAX_LAYERS } from '../layers/sequential';
import type { Activation } from '../types';
import * as v from '../validate';
import { type SafetensorsFile, type SafetensorsTensor, tensorOf } from './safetensors';

export type Layout = 'handgrad' | 'torch';

/** A module of an nn.Sequential, as named in opts.layers. */
export type ModuleKind = 'linear' | Activation | 'dropout' | 'identity';
export const MODULE_KINDS: readonly ModuleKind[] = ['linear', ...v.ACTIVATIONS, 'dropout', 'identity'];
/** Modules that hold no tensors and are the identity at inference. */
const PASS_THROUGH: readonly string[] = ['dropout', 'identity'];

/** What a caller may say about a file's layers (loadSequential, loadParams, Trainer.load). */
export interface ArchitectureOptions {
  /** Every module of the nn.Sequential in order: 'linear', 'relu', 'sigmoid', 'tanh', 'dropout', 'identity'. */
  layers?: readonly ModuleKind[];
  /** The activation between Linear layers (each further gap index: a Dropout or Identity). */
  activation?: Activation;
}

/** The checked options (TypeError/RangeError as every handgrad option). */
export function architecture(o: { layers?: unknown; activation?: unknown }): ArchitectureOptions {
  if (o.layers !== undefined && o.activation !== undefined) {
    v.fail(TypeError, 'either opts.layers or opts.activation, not both', 'opts', new v.Received('both'));
  }
  if (o.activation !== undefined) return { activation: v.oneOf('opts.activation', o.activation, v.ACTIVATIONS, 'relu') };
  if (o.layers === undefined) return {};
  if (!Array.isArray(o.layers)) v.fail(TypeError, "an array of module names (['linear', 'relu', 'linear'])", 'opts.layers', o.layers);
  const list = o.layers as unknown[];
  if (list.length === 0 || list.length > MAX_LAYERS) v.fail(RangeError, `1 to ${MAX_LAYERS} module names`, 'opts.layers', new v.Received(`${list.length}`));
  return { layers: list.map((k, i) => v.oneOf(`opts.layers[${i}]`, k, MODULE_KINDS, 'linear')) };
}

/** The net a file holds: its layers (Dropout and Identity left out) and where each Linear's tensors are. */
export interface FileNet {
  layout: Layout;
  specs: LayerSpec[];
  /** For each Linear in order: its weight's and bias's tensor names. */
  tensors: { W: string; b: string }[];
  dtype: 'F64' | 'F32';
  /** PyTorch's layout with Dropout or Identity: every module in order (to save it back at the same indices). */
  modules?: ModuleKind[];
}

type Fail = (what: string, name: string, got: string) => never;

const LAYER_KINDS: readonly string[] = ['linear', ...v.ACTIVATIONS];

/**
 * The "layers" metadata as a checked list: JSON, an array of at most MAX_LAYERS entries, each
 * { kind } of a known kind, a Linear's in and out positive 32-bit integers, and no other key (as
 * Sequential.fromSpec: { kind: 'linear', in, out, activation: 'tanh' } would otherwise be read as a
 * plain Linear, without the tanh its writer meant). Every value is checked before anything formats
 * or compares it, so nothing deep in the JSON is ever walked.
 */
export function layerList(text: string, fail: Fail): LayerSpec[] {
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
    const keys = kind === 'linear' ? ['kind', 'in', 'out'] : ['kind'];
    const other = Object.keys(s as object).find((k) => !keys.includes(k));
    if (other !== undefined) fail(`a ${kind === 'linear' ? "Linear layer's" : 'layer\'s'} keys ${keys.join(', ')} only`, `${key}[${i}]`, `the key ${JSON.stringify(other.slice(0, 40))}`);
    if (kind !== 'linear') return;
    for (const side of ['in', 'out'] as const) {
      const n = (s as Record<string, unknown>)[side];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 0x7fffffff) fail('a positive 32-bit integer', `${key}[${i}].${side}`, v.describe(n));
    }
  });
  return list as LayerSpec[];
}

/** The "modules" metadata: a JSON list of module names (checked as opts.layers is). */
function moduleList(text: string, fail: Fail): ModuleKind[] {
  const key = '__metadata__.modules';
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch {
    return fail('a JSON list of module names', key, JSON.stringify(text.slice(0, 40)));
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_LAYERS) return fail(`a JSON list of 1 to ${MAX_LAYERS} module names`, key, v.describe(list));
  list.forEach((k, i) => {
    if (typeof k !== 'string' || !(MODULE_KINDS as readonly string[]).includes(k)) fail(`one of ${quote(MODULE_KINDS)}`, `${key}[${i}]`, v.describe(k));
  });
  return list as ModuleKind[];
}

/**
 * Each layer's index in PyTorch's layout: its position, or, given `modules` (the nn.Sequential's
 * modules with Dropout and Identity among the layers), its position there.
 * @throws {RangeError} modules that are not the layers with 'dropout'/'identity' between (named `name`)
 */
export function moduleIndices(kinds: readonly string[], modules: readonly ModuleKind[] | undefined, name: string): number[] {
  if (modules === undefined) return kinds.map((_, i) => i);
  const out: number[] = [];
  let same = true;
  modules.forEach((m, i) => {
    if (PASS_THROUGH.includes(m)) return;
    same &&= kinds[out.length] === m;
    out.push(i);
  });
  if (!same || out.length !== kinds.length) {
    v.fail(RangeError, `the net's layers ${quote(kinds)} in order, with 'dropout' or 'identity' anywhere between`, name, new v.Received(quote(modules)));
  }
  return out;
}

/** Tensor names of PyTorch's layout ("{index}.{what}"); "optimizer.*" is a Trainer's state, not the net's. */
const TORCH_NAME = /^(\d+)\.(.+)$/;

/** Tensor names of handgrad's layout: W{k}, b{k}. */
const HANDGRAD_NAME = /^[Wb]\d+$/;

/**
 * The metadata's D, H, C and dtype (sequentialMetadata writes them) against the tensors: a file
 * whose metadata says another net than its tensors was edited or assembled wrongly, and which of
 * the two is right cannot be told.
 */
function checkDims(meta: Record<string, string>, specs: readonly LayerSpec[], dtype: 'F64' | 'F32', fail: Fail): void {
  const linears = specs.filter((s): s is Extract<LayerSpec, { kind: 'linear' }> => s.kind === 'linear');
  const want: [string, string][] = [['D', String(linears[0].in)], ['H', String(linears[0].out)], ['C', String(linears[linears.length - 1].out)], ['dtype', dtype === 'F64' ? 'float64' : 'float32']];
  const what: Record<string, string> = { D: "the first Linear's inputs", H: "the first Linear's outputs", C: "the last Linear's outputs", dtype: "the tensors' dtype" };
  for (const [key, value] of want) {
    if (meta[key] !== undefined && meta[key] !== value) fail(`${JSON.stringify(value)} (${what[key]})`, `__metadata__.${key}`, JSON.stringify(meta[key].slice(0, 40)));
  }
}

/** The file's layout: PyTorch's when any tensor is named "{index}.…", else handgrad's (W1, b1, …). */
export function layoutOf(file: SafetensorsFile): Layout {
  return Object.keys(file.tensors).some((n) => TORCH_NAME.test(n)) ? 'torch' : 'handgrad';
}

const quote = (xs: readonly string[]) => `[${xs.map((x) => `'${x}'`).join(', ')}]`;

/**
 * The layers of a parameter file and the names of their tensors, from the file's metadata or the
 * caller's options (see the rules above). `caller` names the function in the message that says
 * what to pass. Linear tensors' shapes and dtypes are checked by the reader that copies them.
 * @throws {HandgradError} ERR_FILE: a state_dict without metadata and no options, options that
 *   contradict the metadata or the tensors, modules this package cannot read, malformed metadata
 */
export function fileNet(file: SafetensorsFile, source: string, arch: ArchitectureOptions, caller: string): FileNet {
  const fail: Fail = (what, name, got) => fileFail(what, name, got, source);
  const layout = layoutOf(file);
  const meta = file.metadata;
  // The activation changes what the net computes: a value that is not one (a misspelling, 'gelu')
  // is refused, never read as the ReLU a file without one gets.
  if (meta.activation !== undefined && !(v.ACTIVATIONS as readonly string[]).includes(meta.activation)) {
    fail(`one of ${quote(v.ACTIVATIONS)}`, '__metadata__.activation', JSON.stringify(meta.activation.slice(0, 40)));
  }
  if (meta.layout !== undefined && meta.layout !== layout) {
    fail(`'${layout}' (the layout of the file's tensors)`, '__metadata__.layout', JSON.stringify(meta.layout.slice(0, 40)));
  }
  const metaActivation = meta.activation as Activation | undefined;
  let kinds: string[] | undefined; // every module, in order (in handgrad's layout: Linear layers numbered W1, W2, …)
  const saved = meta.layers === undefined ? undefined : layerList(meta.layers, fail);
  // "modules": the nn.Sequential's modules (Dropout, Identity included) where the file's indices
  // follow them rather than the layers list (saved with opts.layers: see moduleIndices).
  const modules = layout === 'torch' && meta.modules !== undefined ? moduleList(meta.modules, fail) : undefined;
  if (modules !== undefined) {
    kinds = modulesOf(file, layout, { layers: modules }, fail, source, caller);
    const core = kinds.filter((k) => !PASS_THROUGH.includes(k));
    if (saved !== undefined && saved.map((l) => l.kind).join() !== core.join()) {
      fail(`the layers of __metadata__.modules ${quote(core)}`, '__metadata__.layers', quote(saved.map((l) => l.kind)));
    }
  } else if (saved !== undefined) {
    kinds = saved.map((l) => l.kind);
  }
  if (modules !== undefined || saved !== undefined) {
    // The "activation" written beside a layers list is its first activation (sequentialMetadata).
    const first = kinds!.find((k) => k !== 'linear' && !PASS_THROUGH.includes(k));
    if (metaActivation !== undefined && metaActivation !== first) {
      fail(`${first === undefined ? 'no activation' : `'${first}'`} (the first activation of the file's own layers ${quote(kinds!)})`, '__metadata__.activation', `'${metaActivation}'`);
    }
    if (arch.layers !== undefined && arch.layers.join() !== kinds!.join()) {
      fail(`opts.layers to agree with the file's own layers ${quote(kinds!)} (or no opts.layers)`, 'opts.layers', quote(arch.layers));
    }
    const other = kinds!.find((k) => k !== 'linear' && !PASS_THROUGH.includes(k) && k !== arch.activation);
    if (arch.activation !== undefined && other !== undefined) {
      fail(`opts.activation to agree with the file's own layers ${quote(kinds!)} (or no opts.activation)`, 'opts.activation', `'${arch.activation}'`);
    }
  } else if (metaActivation !== undefined) {
    if (arch.activation !== undefined && arch.activation !== metaActivation) {
      fail(`opts.activation to agree with the file's own __metadata__.activation '${metaActivation}' (or no opts.activation)`, 'opts.activation', `'${arch.activation}'`);
    }
    kinds = modulesOf(file, layout, { ...arch, activation: arch.layers ? undefined : metaActivation }, fail, source, caller);
    if (arch.layers !== undefined && arch.layers.some((k) => k !== 'linear' && !PASS_THROUGH.includes(k) && k !== metaActivation)) {
      fail(`opts.layers to agree with the file's own __metadata__.activation '${metaActivation}' (or no opts.layers)`, 'opts.layers', quote(arch.layers));
    }
  } else {
    kinds = modulesOf(file, layout, arch, fail, source, caller);
  }

  // The Linear tensors' names by module position (PyTorch) or Linear number (handgrad).
  const names = Object.keys(file.tensors);
  const specs: LayerSpec[] = [];
  const tensors: FileNet['tensors'] = [];
  let dtype: 'F64' | 'F32' | undefined;
  // The saved list's position of each Linear, by Linear number (the list holds no Dropout).
  const savedLinear = saved?.flatMap((l, j) => (l.kind === 'linear' ? [j] : []));
  kinds!.forEach((kind, i) => {
    if (PASS_THROUGH.includes(kind)) return;
    if (kind !== 'linear') {
      specs.push({ kind: kind as Activation });
      return;
    }
    const k = tensors.length + 1;
    const [W, b] = layout === 'torch' ? [`${i}.weight`, `${i}.bias`] : [`W${k}`, `b${k}`];
    const w = tensorOf(file, W, dtype ? [dtype] : ['F64', 'F32'], source);
    dtype ??= w.dtype as 'F64' | 'F32';
    if (w.shape.length !== 2) fail(`a 2-D tensor (a Linear's weight${layout === 'torch' ? '; LayerNorm and other modules are not read' : ''})`, W, `shape [${w.shape}]`);
    const [inF, outF] = layout === 'torch' ? [w.shape[1], w.shape[0]] : w.shape;
    // A Linear of no inputs or no outputs is no net (loadParams read it as D = 0).
    if (inF < 1 || outF < 1) fail("a Linear's weight of positive dimensions", W, `shape [${w.shape}]`);
    const j = savedLinear?.[k - 1];
    const s = j === undefined ? undefined : (saved![j] as Extract<LayerSpec, { kind: 'linear' }>);
    if (s !== undefined && (s.in !== inF || s.out !== outF)) {
      const want = layout === 'torch' ? [s.out, s.in] : [s.in, s.out];
      fail(`shape [${want}] (__metadata__.layers[${j}])`, W, `[${w.shape}]`);
    }
    specs.push({ kind: 'linear', in: inF, out: outF });
    tensors.push({ W, b });
  });
  if (tensors.length === 0) fail('at least one Linear layer (W1 or 0.weight)', 'the file', `tensors ${names.join(', ') || '(none)'}`);
  // Every "{index}.…" (or, in handgrad's layout, W{k}/b{k}) tensor belongs to a Linear read
  // above: a stray one is a module this does not read, or a layer the metadata leaves out.
  const used = new Set(tensors.flatMap((t) => [t.W, t.b]));
  const linearName = layout === 'torch' ? TORCH_NAME : HANDGRAD_NAME;
  const stray = names.find((n) => linearName.test(n) && !used.has(n));
  if (stray !== undefined) fail(`only the tensors of the Linear layers ${quote([...used])}`, 'the file', `also ${JSON.stringify(stray)}`);
  checkDims(meta, specs, dtype!, fail);
  return { layout, specs, tensors, dtype: dtype!, modules: layout === 'torch' && kinds!.some((k) => PASS_THROUGH.includes(k)) ? (kinds as ModuleKind[]) : undefined };
}

/**
 * The modules of a file without a layers list: from opts.layers, checked against the tensors, or
 * from the one activation by the gap rule. A PyTorch state_dict with neither is refused with what
 * to pass; a handgrad-layout file (W1, b1, …) without metadata reads as ReLU, as it always has.
 */
function modulesOf(file: SafetensorsFile, layout: Layout, arch: ArchitectureOptions, fail: Fail, source: string, caller: string): string[] {
  if (layout === 'handgrad') {
    let count = 0;
    while (`W${count + 1}` in file.tensors && count < MAX_LAYERS) count++;
    if (count === 0) {
      const names = Object.keys(file.tensors);
      // "net.0.weight": the state_dict of a module holding the nn.Sequential, not of the Sequential.
      const nested = names.find((n) => /^[^.]+(\.[^.]+)*\.\d+\.weight$/.test(n) && !n.startsWith('optimizer.'));
      const hint = nested ? ` (${JSON.stringify(nested)} has a prefix: save the nn.Sequential's own state_dict, e.g. model.${nested.slice(0, nested.search(/\.\d+\.weight$/))}.state_dict())` : '';
      fail("a net's tensors: W1, b1, … (handgrad) or 0.weight, 0.bias, … (an nn.Sequential's state_dict)", 'the file', `tensors ${names.slice(0, 8).map((n) => JSON.stringify(n)).join(', ') || '(none)'}${names.length > 8 ? ', …' : ''}${hint}`);
    }
    if (arch.layers !== undefined) {
      const linears = arch.layers.filter((k) => k === 'linear').length;
      if (linears !== count) fail(`opts.layers with as many 'linear' as the file's W1…W${count} (${count})`, 'opts.layers', quote(arch.layers));
      return arch.layers.slice();
    }
    if (2 * count - 1 > MAX_LAYERS) fail(`at most ${MAX_LAYERS} layers`, 'the file', `${count} Linear layers (${2 * count - 1} with the activations between)`);
    const act = arch.activation ?? 'relu';
    return Array.from({ length: Math.max(2 * count - 1, 1) }, (_, i) => (i % 2 === 0 ? 'linear' : act));
  }
  // PyTorch's layout: which indices hold tensors, and that they are a Linear's weight and bias.
  const held = new Map<number, Set<string>>();
  for (const n of Object.keys(file.tensors)) {
    const m = TORCH_NAME.exec(n);
    if (!m) continue;
    const i = Number(m[1]);
    if (String(i) !== m[1] || i >= MAX_LAYERS) fail(`a module index below ${MAX_LAYERS}, written without leading zeros`, `tensor ${JSON.stringify(n)}`, m[1]);
    if (m[2] !== 'weight' && m[2] !== 'bias') {
      fail("only Linear modules' weight and bias (a module with other tensors — BatchNorm, a nested container — is not read)", `tensor ${JSON.stringify(n)}`, `'${m[2]}'`);
    }
    if (!held.has(i)) held.set(i, new Set());
    held.get(i)!.add(m[2]);
  }
  const linear = [...held.keys()].sort((a, b) => a - b);
  for (const i of linear) {
    for (const part of ['weight', 'bias']) {
      if (!held.get(i)!.has(part)) fail(`both ${i}.weight and ${i}.bias (a Linear without bias is not supported)`, 'the file', `no ${i}.${part}`);
    }
  }
  const last = linear[linear.length - 1];
  if (arch.layers !== undefined) {
    const L = arch.layers;
    if (L.length <= last) fail(`every module up to index ${last} (the file's last Linear): at least ${last + 1} names`, 'opts.layers', `${L.length} ${quote(L)}`);
    L.forEach((k, i) => {
      const has = held.has(i);
      if (has !== (k === 'linear')) {
        const why = has ? `'linear' (the file holds ${i}.weight and ${i}.bias)` : `a module without tensors (the file holds none at index ${i})`;
        fail(why, `opts.layers[${i}]`, `'${k}'`);
      }
    });
    return L.slice();
  }
  if (arch.activation === undefined) {
    const example: string[] = [];
    for (let i = 0; i <= last; i++) example.push(held.has(i) ? 'linear' : held.has(i - 1) && i > 0 ? 'tanh' : 'dropout');
    const tensorList = linear.flatMap((i) => [`${i}.weight`, `${i}.bias`]).join(', ');
    throw new HandgradError(
      'ERR_FILE',
      `${source} is a PyTorch state_dict (${tensorList}) without handgrad's layer metadata: it does not record its activations, and reading it as ReLU would be a guess. ` +
        `Name every module of your nn.Sequential in order, e.g. ${caller}(path, { layers: ${quote(example)} }) ` +
        `(modules: ${MODULE_KINDS.map((k) => `'${k}'`).join(', ')}), or the one activation between Linear layers, e.g. ${caller}(path, { activation: 'tanh' })`,
    );
  }
  const act = arch.activation;
  if (linear[0] !== 0) {
    fail(`the first Linear at index 0 with opts.activation (${linear[0] === 1 ? 'module 0 holds' : `modules 0…${linear[0] - 1} hold`} no tensors, and what it is cannot be told: name every module with opts.layers)`, 'the file', `the first Linear at index ${linear[0]}`);
  }
  const kinds: string[] = ['linear'];
  for (let j = 1; j < linear.length; j++) {
    const gap = linear[j] - linear[j - 1] - 1;
    if (gap === 0) {
      fail(`an activation between Linear layers with opts.activation (${linear[j - 1]} and ${linear[j]} are adjacent: name every module with opts.layers)`, 'the file', `Linear layers at ${linear[j - 1]} and ${linear[j]}`);
    }
    kinds.push(act, ...Array<string>(gap - 1).fill('dropout'), 'linear');
  }
  return kinds;
}

export type { SafetensorsTensor };
