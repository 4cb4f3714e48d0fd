// What a checkpoint holds besides the parameters, so Trainer.load continues exactly where save
// was called: the counters (steps, epochs), the position inside the epoch in progress (how many of
// its examples were trained on, over how many, its shuffle seed and its loss and accuracy sums),
// and the optimizer state. Everything read back is checked before use: a file is data, not a
// promise (ERR_FILE naming the key).
import { HandgradError } from '../errors';
import { transpose } from '../checkpoint';
import type { Layout } from '../io/layers';
import { type SafetensorsFile, type TensorInput, tensorOf } from '../io/safetensors';
import type { FloatArray } from '../types';
import * as v from '../validate';
import { type OptimizerName, type OptimizerOptions, optimizerConfig } from './optimizer';
import { settings } from './settings';
import { learningRate } from './schedule';
import { COUNTER, type TrainState } from './state';

/** The metadata entries for the counters and, mid-epoch, the position. */
export function counterMetadata(s: TrainState): Record<string, string> {
  const c = s.counters;
  const meta: Record<string, string> = { steps: String(c[COUNTER.steps]), epochs: String(c[COUNTER.epochs]) };
  if (c[COUNTER.done] > 0) {
    // JSON numbers round-trip doubles exactly, so the resumed epoch's sums are the very same.
    meta.position = JSON.stringify({
      epoch: c[COUNTER.epochs] + 1, done: c[COUNTER.done], examples: c[COUNTER.examples],
      shuffleSeed: c[COUNTER.shuffleSeed], lossSum: c[COUNTER.lossSum], correct: c[COUNTER.correct],
      // Only for an epoch in data order: a file without it (as before shuffle: false) was shuffled.
      ...(c[COUNTER.shuffled] === 0 ? { shuffled: false } : {}),
    });
  }
  return meta;
}

function fileError(path: string, what: string, key: string, got: unknown): never {
  throw new HandgradError('ERR_FILE', `Expected ${what} for ${key} but received ${got instanceof v.Received ? got.text : v.describe(got)} (${path})`);
}

const isInteger = (x: unknown, lo: number, hi: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi;

/** A count written by save: decimal digits only (no sign, point, exponent or spaces), below 2^53. */
function count(path: string, meta: Record<string, string>, key: 'steps' | 'epochs'): number {
  const text = meta[key];
  if (text === undefined) return 0;
  const n = Number(text);
  if (!/^(0|[1-9][0-9]*)$/.test(text) || !Number.isSafeInteger(n)) fileError(path, 'a whole number below 2^53', `__metadata__.${key}`, text);
  return n;
}

/**
 * Sets the counters and the position from a file's metadata (absent: a fresh run).
 * @throws {HandgradError} ERR_FILE naming the key of a malformed or inconsistent value
 */
export function restoreCounters(s: TrainState, meta: Record<string, string>, path: string): void {
  const steps = count(path, meta, 'steps');
  const epochs = count(path, meta, 'epochs');
  const position = meta.position === undefined ? undefined : readPosition(path, meta.position, epochs);
  const c = s.counters;
  c.fill(0);
  c[COUNTER.steps] = steps;
  c[COUNTER.epochs] = epochs;
  if (position) for (const k of ['done', 'examples', 'shuffleSeed', 'lossSum', 'correct'] as const) c[COUNTER[k]] = position[k];
  c[COUNTER.shuffled] = position?.shuffled === false ? 0 : 1;
}

type Position = Record<'epoch' | 'done' | 'examples' | 'shuffleSeed' | 'lossSum' | 'correct', number> & { shuffled?: boolean };

function readPosition(path: string, json: string, epochs: number): Position {
  const name = '__metadata__.position';
  let p: unknown;
  try {
    p = JSON.parse(json);
  } catch {
    return fileError(path, 'a JSON object { epoch, done, examples, shuffleSeed, lossSum, correct }', name, json);
  }
  if (p === null || typeof p !== 'object' || Array.isArray(p)) fileError(path, 'a JSON object { epoch, done, examples, shuffleSeed, lossSum, correct }', name, p);
  const o = p as Record<string, unknown>;
  const keys = ['epoch', 'done', 'examples', 'shuffleSeed', 'lossSum', 'correct', 'shuffled'];
  const extra = Object.keys(o).find((k) => !keys.includes(k));
  if (extra !== undefined) fileError(path, `only the keys ${keys.join(', ')}`, name, new v.Received(`'${extra}'`));
  // An epoch in progress is the one after the last completed; its examples fit an Int32 index.
  if (o.epoch !== epochs + 1) fileError(path, `the epoch after __metadata__.epochs (${epochs + 1})`, `${name}.epoch`, o.epoch);
  if (!isInteger(o.examples, 1, 0x7fffffff)) fileError(path, 'a positive 32-bit integer', `${name}.examples`, o.examples);
  const n = o.examples as number;
  if (!isInteger(o.done, 1, n - 1)) fileError(path, `a whole number in [1, ${n - 1}] (examples trained on, of ${n})`, `${name}.done`, o.done);
  if (!isInteger(o.shuffleSeed, 0, 2 ** 32 - 1)) fileError(path, 'a 32-bit unsigned integer', `${name}.shuffleSeed`, o.shuffleSeed);
  if (!(typeof o.lossSum === 'number' && Number.isFinite(o.lossSum) && o.lossSum >= 0)) fileError(path, 'a finite number ≥ 0 (a sum of cross-entropies)', `${name}.lossSum`, o.lossSum);
  if (!isInteger(o.correct, 0, o.done as number)) fileError(path, `a whole number in [0, ${o.done}] (correct of done)`, `${name}.correct`, o.correct);
  if (o.shuffled !== undefined && typeof o.shuffled !== 'boolean') fileError(path, 'a boolean (false: the epoch runs in data order)', `${name}.shuffled`, o.shuffled);
  return o as Position;
}

// The optimizer state in PyTorch's layout: what optimizer.state_dict() holds, split into what
// safetensors can hold (tensors) and what it cannot (numbers, None, lists: metadata JSON).
//   tensors  optimizer.state.{i}.{key}: parameter i (in model.parameters() order: 0.weight,
//            0.bias, 2.weight, …) and its buffer in the parameter's own shape (a weight's [out,in]):
//            SGD's momentum_buffer; Adam's and AdamW's exp_avg, exp_avg_sq (max_exp_avg_sq with
//            AMSGrad) and step (a 0-d float32 tensor, as torch 1.13 keeps it);
//   metadata "optimizer": JSON { "class": "SGD" | "Adam" | "AdamW", "state": { "{i}": { the
//            entries that are not tensors, e.g. "momentum_buffer": null for SGD without momentum } },
//            "param_groups": [ the one group, as optimizer.state_dict() has it, "params": [0, 1, …] ] }.
// Before the first step the state is empty ({}), as PyTorch's is. PyTorch reads it back with
// optimizer.load_state_dict({ 'state': …, 'param_groups': … }) (README), and Trainer.load reads
// it from the tensors (handgrad's own settings stay in "trainer").

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

/** The optimizer state in PyTorch's layout (see above): tensors to add to the file, and the "optimizer" metadata. */
export function torchOptimizerState(s: TrainState): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
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
      tensors[`optimizer.state.${i}.${key}`] = { shape, data: transposed ? transpose(buf, shape[1], shape[0]) : buf };
    }
    if (o.name === 'adam' || o.name === 'adamw') tensors[`optimizer.state.${i}.step`] = { dtype: 'F32', shape: [], data: Float32Array.of(steps) };
  });
  const cls = o.name === 'adam' ? 'Adam' : o.name === 'adamw' ? 'AdamW' : 'SGD';
  return { tensors, metadata: { optimizer: JSON.stringify({ class: cls, state, param_groups: [paramGroup(s)] }) } };
}

/**
 * Fills the optimizer state from the file's tensors: handgrad's optimizer.{name}.m/v/vmax, or in
 * PyTorch's layout optimizer.state.{i}.{momentum_buffer|exp_avg|…} (a weight's buffer [out,in],
 * transposed back; Adam's step checked against the steps counter). Each of the parameter's dtype
 * and shape, finite. `required`: the file was saved by this optimizer after at least one step, so
 * a missing buffer would silently restart its moments.
 * @throws {HandgradError} ERR_FILE naming the tensor
 */
export function restoreOptimizerState(s: TrainState, file: SafetensorsFile, path: string, required: boolean, layout: Layout = 'handgrad'): void {
  const dtype = s.config.dtype === 'float64' ? 'F64' : 'F32';
  const slotNames = torchSlotNames(s.config.optimizer.name);
  const shapes = torchShapes(s);
  s.names.forEach((k, i) => {
    for (const part of ['m', 'v', 'vmax'] as const) {
      const buf = s.slots[k][part];
      if (!buf) continue;
      const torch = layout === 'torch';
      const name = torch ? `optimizer.state.${i}.${slotNames[part]}` : `optimizer.${k}.${part}`;
      if (!(name in file.tensors)) {
        if (required) fileError(path, `the optimizer state ${name} (the file's optimizer took steps)`, name, new v.Received('no such tensor'));
        continue;
      }
      const t = tensorOf(file, name, [dtype], path);
      const want = torch ? shapes[i].shape : [buf.length];
      if (t.shape.join() !== want.join()) fileError(path, `shape [${want}] (that of ${torch ? `parameter ${i}, ${k}` : k})`, name, new v.Received(`[${t.shape}]`));
      const data = t.data as FloatArray;
      for (let j = 0; j < data.length; j++) {
        if (!Number.isFinite(data[j])) fileError(path, 'finite values', name, new v.Received(`${data[j]} at index ${j}`));
      }
      buf.set(torch && shapes[i].transposed ? transpose(data, want[0], want[1]) : data);
    }
    const step = `optimizer.state.${i}.step`;
    if (layout === 'torch' && slotNames.v !== undefined && step in file.tensors) {
      const t = tensorOf(file, step, ['F32', 'F64'], path);
      const steps = s.counters[COUNTER.steps];
      if (t.shape.length !== 0 || t.data[0] !== steps) fileError(path, `a 0-d tensor of the steps taken (${steps}, __metadata__.steps)`, step, new v.Received(`shape [${t.shape}], ${t.data[0]}`));
    }
  });
}

/**
 * The steps a file in PyTorch's layout took, where it has no __metadata__.steps (PyTorch wrote
 * it): Adam's and AdamW's 0-d step tensors, all the same whole number; else, when SGD's state is
 * not empty (it has stepped), 1 (SGD does not count its steps: what the update needs is that the
 * momentum buffer continues rather than restarts); else 0.
 * @throws {HandgradError} ERR_FILE naming a step tensor that is not a whole number, or that differs from the first
 */
export function torchSteps(file: SafetensorsFile, path: string): number {
  let steps: number | undefined;
  let first = '';
  let momentum = false;
  for (const [name, t] of Object.entries(file.tensors)) {
    if (/^optimizer\.state\.\d+\.momentum_buffer$/.test(name)) momentum = true;
    if (!/^optimizer\.state\.\d+\.step$/.test(name)) continue;
    const x = t.shape.length === 0 && (t.dtype === 'F32' || t.dtype === 'F64') ? Number(t.data[0]) : NaN;
    if (!(Number.isSafeInteger(x) && x >= 0)) fileError(path, 'a 0-d float tensor holding a whole number of steps', name, new v.Received(`shape [${t.shape}] of ${t.dtype}`));
    if (steps !== undefined && x !== steps) fileError(path, `the steps of ${first} (${steps})`, name, x);
    if (steps === undefined) [steps, first] = [x, name];
  }
  // SGD without momentum keeps { momentum_buffer: None } per parameter once it has stepped.
  let stepped = momentum;
  try {
    const state = (JSON.parse(file.metadata.optimizer ?? '{}') as { state?: unknown }).state;
    stepped ||= state !== null && typeof state === 'object' && Object.keys(state).length > 0;
  } catch {
    // torchSettings names a malformed "optimizer"
  }
  return steps ?? (stepped ? 1 : 0);
}

/** torch.optim's class names, and this package's. */
const TORCH_CLASSES: Record<string, OptimizerName> = { SGD: 'sgd', Adam: 'adam', AdamW: 'adamw' };

/**
 * The optimizer settings of a file PyTorch wrote in this layout (its "optimizer" metadata, no
 * "trainer"), as the Trainer's options: class and the one param group's lr, momentum, dampening,
 * nesterov, betas, eps, weight_decay, amsgrad, checked as a caller's are. lr is the group's
 * current one (a scheduler's is not recorded). Execution details (foreach, capturable, fused,
 * differentiable) do not change the numbers and are not read; maximize: true is refused.
 * @throws {HandgradError} ERR_FILE naming the key
 */
export function torchSettings(json: string, path: string, parameters: number): Record<string, unknown> {
  const name = '__metadata__.optimizer';
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    return fileError(path, 'JSON { class, state, param_groups }', name, json);
  }
  const saved = o as { class?: unknown; param_groups?: unknown };
  if (saved === null || typeof saved !== 'object' || Array.isArray(saved)) fileError(path, 'a JSON object { class, state, param_groups }', name, o);
  const optimizer = TORCH_CLASSES[saved.class as string];
  if (typeof saved.class !== 'string' || optimizer === undefined) fileError(path, `one of ${Object.keys(TORCH_CLASSES).join(', ')}`, `${name}.class`, saved.class);
  const groups = saved.param_groups;
  if (!Array.isArray(groups) || groups.length !== 1) fileError(path, 'one param group', `${name}.param_groups`, groups);
  const g = groups[0] as Record<string, unknown>;
  const gname = `${name}.param_groups[0]`;
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
  asFileError(path, () => settings(opts, gname, optimizerConfig(opts as OptimizerOptions, gname, `${name}.class`)));
  return Object.fromEntries(Object.entries(opts).filter(([, x]) => x !== undefined));
}

/** A check of a file's value that throws TypeError/RangeError, as ERR_FILE (the key is in its words). */
export function asFileError<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new HandgradError('ERR_FILE', `${e.message} (${path})`, { cause: e });
    throw e;
  }
}
