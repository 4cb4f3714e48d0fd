// The optimizer file of a checkpoint in PyTorch's layout. Trainer.save(path, { layout: 'torch' })
// writes two files, so that `path` is exactly what model.load_state_dict(load_file(path),
// strict=True) takes (a tensor more is an "Unexpected key" there):
//   path                     the state_dict ("{i}.weight" [out,in], "{i}.bias") and, in its
//                            metadata (which PyTorch ignores), handgrad's settings, counters and
//                            "optimizer_state": the optimizer file's name relative to path's folder,
//                            "optimizer_state_sha256": the digest of the bytes that file was written with;
//   optimizerFilePath(path)  model.safetensors → model.optim.safetensors (a path not ending in
//                            .safetensors gets .optim.safetensors appended): optimizer.state_dict()
//                            split into what safetensors holds and what it cannot:
//     tensors  state.{i}.{key}: parameter i (model.parameters() order: 0.weight, 0.bias, 2.weight,
//              …), its buffer in the parameter's own shape (a weight's [out,in]): SGD's
//              momentum_buffer; Adam's and AdamW's exp_avg, exp_avg_sq (max_exp_avg_sq with
//              AMSGrad) and step (a 0-d float32 tensor, as torch 1.13 keeps it);
//     metadata "state": JSON { "{i}": { the entries that are not tensors, e.g. "momentum_buffer":
//              null for SGD without momentum } }; "param_groups": JSON [ the one group, as
//              optimizer.state_dict() has it, "params": [0, 1, …] ]; "class": "SGD" | "Adam" |
//              "AdamW" (torch.optim's, to build the optimizer); "steps": handgrad's step count.
// Before the first step the state is empty ({}, no tensors), as PyTorch's is.
//
// Order and pairing: the optimizer file is written first, then the model file, each atomically
// (lib/io/atomic.ts). A crash between the two leaves the old model file beside the new optimizer
// file; the model file's digest tells them apart, and Trainer.load refuses such a pair (ERR_FILE
// naming both files) rather than resuming old weights with newer moments. Its way out is
// { optimizerState: false }: the weights, with a fresh optimizer and counters from zero.
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { transpose } from '../checkpoint';
import { writeFileAtomic } from '../io/atomic';
import { readRegularFile } from '../io/regular-file';
import { readSafetensors, type SafetensorsFile, type TensorInput, tensorOf, writeSafetensors } from '../io/safetensors';
import type { FloatArray } from '../types';
import * as v from '../validate';
import { type OptimizerName, type OptimizerOptions, optimizerConfig } from './optimizer';
import { asFileError, checkSlot, fileError } from './resume';
import { learningRate } from './schedule';
import { settings } from './settings';
import { COUNTER, type TrainState } from './state';

/** The model file's metadata keys that name its optimizer file and the digest of its bytes. */
export const OPTIMIZER_STATE = 'optimizer_state';
export const OPTIMIZER_SHA256 = 'optimizer_state_sha256';

/** The optimizer file beside a checkpoint: model.safetensors → model.optim.safetensors; ckpt → ckpt.optim.safetensors. */
export function optimizerFilePath(modelPath: string): string {
  return `${modelPath.replace(/\.safetensors$/, '')}.optim.safetensors`;
}

/** PyTorch's name for each slot of a rule: m, v, vmax. */
function torchSlotNames(name: OptimizerName): { m?: string; v?: string; vmax?: string } {
  if (name === 'momentum' || name === 'nesterov') return { m: 'momentum_buffer' };
  if (name === 'adam' || name === 'adamw') return { m: 'exp_avg', v: 'exp_avg_sq', vmax: 'max_exp_avg_sq' };
  return {};
}

/** Each parameter's PyTorch shape: a weight [out,in] (handgrad keeps [in,out]), a bias [out]. */
function torchShapes(s: TrainState): { name: string; shape: number[]; transposed: boolean }[] {
  const linears = s.config.layers.filter((l): l is Extract<typeof l, { kind: 'linear' }> => l.kind === 'linear');
  return s.names.map((name) => {
    const k = Number(name.slice(1)) - 1;
    const l = linears[k];
    return name[0] === 'W' ? { name, shape: [l.out, l.in], transposed: true } : { name, shape: [l.out], transposed: false };
  });
}

/** optimizer.state_dict()'s param group of this Trainer's settings, at the learning rate of the epoch it is in. */
function paramGroup(s: TrainState): Record<string, unknown> {
  const o = s.config.optimizer;
  const lr = learningRate(s.config.schedule, s.config.lr, s.counters[COUNTER.epochs]);
  const params = s.names.map((_, i) => i);
  const scheduled = s.config.schedule === 'constant' ? {} : { initial_lr: s.config.lr };
  // torch 1.13's keys in its order (AdamW's group has no differentiable or fused yet).
  if (o.name === 'adamw') {
    return { lr, betas: [o.beta1, o.beta2], eps: o.epsilon, weight_decay: o.weightDecay, amsgrad: o.amsgrad, foreach: null, maximize: false, capturable: false, ...scheduled, params };
  }
  if (o.name === 'adam') {
    return {
      lr, betas: [o.beta1, o.beta2], eps: o.epsilon, weight_decay: o.weightDecay, amsgrad: o.amsgrad, maximize: false,
      foreach: null, capturable: false, differentiable: false, fused: false, ...scheduled, params,
    };
  }
  return {
    lr, momentum: o.momentum, dampening: o.dampening, weight_decay: o.weightDecay, nesterov: o.nesterov, maximize: false,
    foreach: null, differentiable: false, ...scheduled, params,
  };
}

/** The optimizer file's tensors and metadata (see above). */
function optimizerFile(s: TrainState): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const o = s.config.optimizer;
  const steps = s.counters[COUNTER.steps];
  const tensors: Record<string, TensorInput> = {};
  const state: Record<string, Record<string, null>> = {};
  const slotNames = torchSlotNames(o.name);
  torchShapes(s).forEach(({ name, shape, transposed }, i) => {
    if (steps === 0) return; // PyTorch's state is empty until the first step
    state[i] = {};
    if (o.name === 'sgd') state[i].momentum_buffer = null;
    for (const part of ['m', 'v', 'vmax'] as const) {
      const buf = s.slots[name][part];
      const key = slotNames[part];
      if (!buf || key === undefined) continue;
      tensors[`state.${i}.${key}`] = { shape, data: transposed ? transpose(buf, shape[1], shape[0]) : buf };
    }
    if (o.name === 'adam' || o.name === 'adamw') tensors[`state.${i}.step`] = { dtype: 'F32', shape: [], data: Float32Array.of(steps) };
  });
  const cls = o.name === 'adam' ? 'Adam' : o.name === 'adamw' ? 'AdamW' : 'SGD';
  const metadata = { class: cls, state: JSON.stringify(state), param_groups: JSON.stringify([paramGroup(s)]), steps: String(steps) };
  return { tensors, metadata };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Writes the optimizer file (atomically) and returns the model file's metadata entries that pair
 * it: its name relative to the model file's folder ('/'-separated) and the digest of its bytes.
 * @throws {HandgradError} ERR_FILE when it cannot be written (nothing else has been written then)
 */
export function saveOptimizerFile(s: TrainState, modelPath: string, path: string): Record<string, string> {
  const { tensors, metadata } = optimizerFile(s);
  const bytes = writeSafetensors(tensors, metadata);
  writeFileAtomic(path, bytes);
  const name = relative(dirname(resolve(modelPath)), resolve(path)).split(sep).join('/');
  return { [OPTIMIZER_STATE]: name, [OPTIMIZER_SHA256]: sha256(bytes) };
}

/** An optimizer file read for a model file, with where it came from. */
export interface OptimizerSource { path: string; file: SafetensorsFile }

/**
 * The optimizer file of a torch-layout model file: `given` (the caller's opts.optimizerState), else
 * the one its metadata names (relative to its folder). When the model file records a digest, the
 * bytes read must have it. The file is read once: the bytes hashed are the bytes parsed.
 * @throws {HandgradError} ERR_FILE: a named file missing or unreadable (naming it, and the way out),
 *   a mismatched pair (naming both files), a malformed name or digest in the model file
 */
export function readOptimizerFile(modelPath: string, meta: Record<string, string>, given: string | undefined): OptimizerSource | undefined {
  const named = meta[OPTIMIZER_STATE];
  if (named !== undefined && (named === '' || isAbsolute(named))) fileError(modelPath, "the optimizer file's name relative to this file's folder", `__metadata__.${OPTIMIZER_STATE}`, named);
  const want = meta[OPTIMIZER_SHA256];
  if (want !== undefined && !/^[0-9a-f]{64}$/.test(want)) fileError(modelPath, 'a SHA-256 digest (64 hex digits)', `__metadata__.${OPTIMIZER_SHA256}`, want);
  if (named !== undefined && want === undefined) fileError(modelPath, `the digest of ${named} beside its name`, `__metadata__.${OPTIMIZER_SHA256}`, new v.Received('nothing'));
  const path = given ?? (named === undefined ? undefined : join(dirname(modelPath), named));
  if (path === undefined) return undefined;
  const way = given === undefined
    ? ` (the optimizer state saved with ${modelPath}; to start a fresh optimizer from its weights, pass { optimizerState: false })`
    : '';
  // A regular file only, read once by size: a name read from a file is data, and /dev/zero or a
  // FIFO would never end (the check and the read on one descriptor: lib/io/regular-file.ts).
  const bytes = readRegularFile(path, 'optimizer state file', way);
  if (want !== undefined) {
    const got = sha256(bytes);
    if (got !== want) {
      const modelSteps = meta.steps === undefined ? '' : `, step ${meta.steps}`;
      let theirs = '';
      try {
        const steps = readSafetensors(bytes, { source: path }).metadata.steps;
        if (steps !== undefined) theirs = `, step ${steps}`;
      } catch {
        // Unreadable: the digest alone says it is not the one.
      }
      fileError(
        modelPath,
        `the optimizer file saved with this model file (sha256 ${want.slice(0, 12)}…${modelSteps}) at ${path}`,
        `__metadata__.${OPTIMIZER_SHA256}`,
        new v.Received(`another save's (sha256 ${got.slice(0, 12)}…${theirs}): the pair ${modelPath} + ${path} does not belong together, as a crash between Trainer.save's two writes leaves it; resume from a matched pair, or load the weights with { optimizerState: false } (a fresh optimizer, counters from zero)`),
      );
    }
  }
  return { path, file: readSafetensors(bytes, { source: path }) };
}

/** The tensor names a rule's optimizer file may hold for this net (Adam's step included). */
function expectedNames(s: TrainState): Set<string> {
  const slotNames = torchSlotNames(s.config.optimizer.name);
  const out = new Set<string>();
  s.names.forEach((k, i) => {
    for (const part of ['m', 'v', 'vmax'] as const) if (s.slots[k][part]) out.add(`state.${i}.${slotNames[part]}`);
    if (slotNames.v !== undefined) out.add(`state.${i}.step`);
  });
  return out;
}

/**
 * Fills the optimizer state from an optimizer file: state.{i}.{momentum_buffer|exp_avg|…}, a
 * weight's buffer [out,in] transposed back, each of the parameter's dtype and shape, finite;
 * Adam's step tensors checked against the steps counter. `required`: the file is this rule's and
 * has stepped, so a missing buffer would silently restart its moments, and a tensor this net has
 * no place for says it is another net's.
 * @throws {HandgradError} ERR_FILE naming the tensor and the file
 */
export function restoreFromOptimizerFile(s: TrainState, { file, path }: OptimizerSource, required: boolean): void {
  savedState({ file, path }, s.names.length); // checked whatever the rule: the file says it is one
  const dtype = s.config.dtype === 'float64' ? 'F64' : 'F32';
  const slotNames = torchSlotNames(s.config.optimizer.name);
  const shapes = torchShapes(s);
  if (required) {
    const known = expectedNames(s);
    const stray = Object.keys(file.tensors).find((n) => !known.has(n));
    if (stray !== undefined) fileError(path, `only the optimizer state of this net's ${s.names.length} parameters (state.0 … state.${s.names.length - 1})`, stray, new v.Received('a tensor it has no place for'));
  }
  s.names.forEach((k, i) => {
    for (const part of ['m', 'v', 'vmax'] as const) {
      const buf = s.slots[k][part];
      if (!buf) continue;
      const name = `state.${i}.${slotNames[part]}`;
      if (!(name in file.tensors)) {
        if (required) fileError(path, `the optimizer state ${name} (the file's optimizer took steps)`, name, new v.Received('no such tensor'));
        continue;
      }
      const t = tensorOf(file, name, [dtype], path);
      const want = shapes[i].shape;
      if (t.shape.join() !== want.join()) fileError(path, `shape [${want}] (that of parameter ${i}, ${k})`, name, new v.Received(`[${t.shape}]`));
      const data = t.data as FloatArray;
      checkSlot(path, name, data, part === 'v' || part === 'vmax'); // exp_avg_sq, max_exp_avg_sq ≥ 0
      buf.set(shapes[i].transposed ? transpose(data, want[0], want[1]) : data);
    }
    const step = `state.${i}.step`;
    if (slotNames.v !== undefined && step in file.tensors) {
      const t = tensorOf(file, step, ['F32', 'F64'], path);
      const steps = s.counters[COUNTER.steps];
      if (t.shape.length !== 0 || t.data[0] !== steps) fileError(path, `a 0-d tensor of the steps taken (${steps})`, step, new v.Received(`shape [${t.shape}], ${t.data[0]}`));
    }
  });
}

/**
 * The steps an optimizer file took: handgrad's "steps" where it wrote one; else (PyTorch wrote it)
 * Adam's and AdamW's 0-d step tensors, all the same whole number; else, when SGD's state is not
 * empty (it has stepped), 1 (SGD does not count its steps: what the update needs is that the
 * momentum buffer continues rather than restarts); else 0.
 * @throws {HandgradError} ERR_FILE naming a step that is not a whole number, or that differs from the first
 */
export function optimizerFileSteps({ file, path }: OptimizerSource): number {
  const own = file.metadata.steps;
  if (own !== undefined) {
    const n = Number(own);
    if (!/^(0|[1-9][0-9]*)$/.test(own) || !Number.isSafeInteger(n)) fileError(path, 'a whole number below 2^53', '__metadata__.steps', own);
    return n;
  }
  let steps: number | undefined;
  let first = '';
  let momentum = false;
  for (const [name, t] of Object.entries(file.tensors)) {
    if (/^state\.\d+\.momentum_buffer$/.test(name)) momentum = true;
    if (!/^state\.\d+\.step$/.test(name)) continue;
    const x = t.shape.length === 0 && (t.dtype === 'F32' || t.dtype === 'F64') ? Number(t.data[0]) : NaN;
    if (!(Number.isSafeInteger(x) && x >= 0)) fileError(path, 'a 0-d float tensor holding a whole number of steps', name, new v.Received(`shape [${t.shape}] of ${t.dtype}`));
    if (steps !== undefined && x !== steps) fileError(path, `the steps of ${first} (${steps})`, name, x);
    if (steps === undefined) [steps, first] = [x, name];
  }
  // SGD without momentum keeps { momentum_buffer: None } per parameter once it has stepped.
  const stepped = momentum || Object.keys(savedState({ file, path })).length > 0;
  return steps ?? (stepped ? 1 : 0);
}

/**
 * The "state" metadata, checked: JSON { "{i}": { … } } with i a parameter index written as
 * optimizer.state_dict() writes it (absent: {}, no state yet).
 * @throws {HandgradError} ERR_FILE naming __metadata__.state
 */
export function savedState({ file, path }: OptimizerSource, parameters?: number): Record<string, unknown> {
  const name = '__metadata__.state';
  const text = file.metadata.state;
  if (text === undefined) return {};
  let state: unknown;
  try {
    state = JSON.parse(text);
  } catch {
    return fileError(path, "JSON { \"{i}\": { … } } (optimizer.state_dict()['state'] without its tensors)", name, new v.Received(JSON.stringify(text.slice(0, 40))));
  }
  if (state === null || typeof state !== 'object' || Array.isArray(state)) fileError(path, 'a JSON object { "{i}": { … } }', name, state);
  for (const [k, x] of Object.entries(state as Record<string, unknown>)) {
    const i = Number(k);
    if (!/^(0|[1-9][0-9]*)$/.test(k) || (parameters !== undefined && i >= parameters)) fileError(path, `parameter indices${parameters === undefined ? '' : ` 0 … ${parameters - 1}`}`, name, new v.Received(`the key ${JSON.stringify(k.slice(0, 40))}`));
    if (x === null || typeof x !== 'object' || Array.isArray(x)) fileError(path, 'an object per parameter', `${name}.${k}`, x);
  }
  return state as Record<string, unknown>;
}

/** torch.optim's class names, and this package's. */
/** A Map: a class named "constructor" or "__proto__" must not find Object.prototype's. */
const TORCH_CLASSES = new Map<string, OptimizerName>([['SGD', 'sgd'], ['Adam', 'adam'], ['AdamW', 'adamw']]);

/**
 * The optimizer settings an optimizer file holds ("class" and "param_groups"), as the Trainer's
 * options: the one param group's lr, momentum, dampening, nesterov, betas, eps, weight_decay,
 * amsgrad, checked as a caller's are. lr is the group's current one (a scheduler's is not
 * recorded). Execution details (foreach, capturable, fused, differentiable) do not change the
 * numbers and are not read; maximize: true is refused. Read where the model file has no
 * handgrad settings ("trainer"): PyTorch wrote the pair.
 * @throws {HandgradError} ERR_FILE naming the key
 */
export function optimizerFileSettings({ file, path }: OptimizerSource, parameters: number): Record<string, unknown> {
  const meta = file.metadata;
  const cls = meta.class;
  const optimizer = cls === undefined ? undefined : TORCH_CLASSES.get(cls);
  if (cls === undefined || optimizer === undefined) fileError(path, `one of ${[...TORCH_CLASSES.keys()].join(', ')} (torch.optim's class)`, '__metadata__.class', cls === undefined ? new v.Received('nothing') : cls);
  const name = '__metadata__.param_groups';
  let groups: unknown;
  try {
    groups = JSON.parse(meta.param_groups ?? '');
  } catch {
    fileError(path, "JSON [ the param group ] (optimizer.state_dict()['param_groups'])", name, meta.param_groups === undefined ? new v.Received('nothing') : meta.param_groups);
  }
  if (!Array.isArray(groups) || groups.length !== 1) fileError(path, 'one param group', name, groups);
  const g = groups[0] as Record<string, unknown>;
  const gname = `${name}[0]`;
  if (g === null || typeof g !== 'object' || Array.isArray(g)) fileError(path, 'an object', gname, g);
  const params = g.params;
  if (!Array.isArray(params) || params.length !== parameters || params.some((p, i) => p !== i)) {
    fileError(path, `the parameters [0, …, ${parameters - 1}] (model.parameters() in order)`, `${gname}.params`, params);
  }
  if (g.maximize !== undefined && g.maximize !== false) fileError(path, 'false (maximize is not supported)', `${gname}.maximize`, g.maximize);
  const betas = g.betas;
  if (betas !== undefined && !(Array.isArray(betas) && betas.length === 2)) fileError(path, 'two numbers [β1, β2]', `${gname}.betas`, betas);
  const opts: Record<string, unknown> = {
    optimizer, lr: g.lr, weightDecay: g.weight_decay,
    ...(optimizer === 'sgd' ? { momentum: g.momentum, dampening: g.dampening, nesterov: g.nesterov } : { beta1: betas?.[0], beta2: betas?.[1], epsilon: g.eps, amsgrad: g.amsgrad }),
  };
  asFileError(path, () => settings(opts, gname, optimizerConfig(opts as OptimizerOptions, gname, '__metadata__.class')));
  return Object.fromEntries(Object.entries(opts).filter(([, x]) => x !== undefined));
}
