// What a checkpoint holds besides the parameters, so Trainer.load continues exactly where save
// was called: the counters (steps, epochs), the position inside the epoch in progress (how many of
// its examples were trained on, over how many, its shuffle seed and its loss and accuracy sums),
// and, in handgrad's layout, the optimizer state (PyTorch's layout keeps it in a file of its own:
// ./optimizer-file.ts). Everything read back is checked before use: a file is data, not a
// promise (ERR_FILE naming the key).
import { HandgradError } from '../errors';
import { type SafetensorsFile, tensorOf } from '../io/safetensors';
import type { FloatArray } from '../types';
import * as v from '../validate';
import { type OptimizerName, type OptimizerOptions, optimizerConfig } from './optimizer';
import { savedSettings } from './settings';
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
      // Rows whose label the loss ignores (not in the accuracy); absent: none.
      ...(c[COUNTER.ignored] > 0 ? { ignored: c[COUNTER.ignored] } : {}),
      // What lossSum is divided by (Σ w[y] of the rows counted); absent: their number (no class weight).
      ...(c[COUNTER.weightSum] !== c[COUNTER.done] - c[COUNTER.ignored] ? { weightSum: c[COUNTER.weightSum] } : {}),
      // The data-parallel world size the epoch's rows were sharded for; absent: a single process.
      ...(c[COUNTER.ranks] > 1 ? { ranks: c[COUNTER.ranks] } : {}),
      // Only for an epoch in data order: a file without it (as before shuffle: false) was shuffled.
      ...(c[COUNTER.shuffled] === 0 ? { shuffled: false } : {}),
    });
  }
  return meta;
}

/** ERR_FILE in the library's wording: Expected {what} for {key} but received {got} ({path}). */
export function fileError(path: string, what: string, key: string, got: unknown): never {
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
  c[COUNTER.ignored] = position?.ignored ?? 0;
  c[COUNTER.weightSum] = position ? position.weightSum ?? position.done - (position.ignored ?? 0) : 0;
  c[COUNTER.ranks] = position?.ranks ?? (position ? 1 : 0);
  c[COUNTER.shuffled] = position?.shuffled === false ? 0 : 1;
}

type Position = Record<'epoch' | 'done' | 'examples' | 'shuffleSeed' | 'lossSum' | 'correct', number> & { shuffled?: boolean; ignored?: number; ranks?: number; weightSum?: number };

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
  const keys = ['epoch', 'done', 'examples', 'shuffleSeed', 'lossSum', 'correct', 'shuffled', 'ignored', 'ranks', 'weightSum'];
  const extra = Object.keys(o).find((k) => !keys.includes(k));
  if (extra !== undefined) fileError(path, `only the keys ${keys.join(', ')}`, name, new v.Received(`'${extra}'`));
  // An epoch in progress is the one after the last completed; its examples fit an Int32 index.
  if (o.epoch !== epochs + 1) fileError(path, `the epoch after __metadata__.epochs (${epochs + 1})`, `${name}.epoch`, o.epoch);
  if (!isInteger(o.examples, 1, 0x7fffffff)) fileError(path, 'a positive 32-bit integer', `${name}.examples`, o.examples);
  const n = o.examples as number;
  if (!isInteger(o.done, 1, n - 1)) fileError(path, `a whole number in [1, ${n - 1}] (examples trained on, of ${n})`, `${name}.done`, o.done);
  if (!isInteger(o.shuffleSeed, 0, 2 ** 32 - 1)) fileError(path, 'a 32-bit unsigned integer', `${name}.shuffleSeed`, o.shuffleSeed);
  if (!(typeof o.lossSum === 'number' && Number.isFinite(o.lossSum) && o.lossSum >= 0)) fileError(path, 'a finite number ≥ 0 (a sum of cross-entropies)', `${name}.lossSum`, o.lossSum);
  if (o.weightSum !== undefined && !(typeof o.weightSum === 'number' && Number.isFinite(o.weightSum) && o.weightSum >= 0)) {
    fileError(path, 'a finite number ≥ 0 (the class weights of the rows counted)', `${name}.weightSum`, o.weightSum);
  }
  if (o.ranks !== undefined && !isInteger(o.ranks, 2, 0x7fffffff)) fileError(path, 'a whole number ≥ 2 (the data-parallel world size)', `${name}.ranks`, o.ranks);
  if (o.ignored !== undefined && !isInteger(o.ignored, 1, o.done as number)) fileError(path, `a whole number in [1, ${o.done}] (ignored rows of done)`, `${name}.ignored`, o.ignored);
  const counted = (o.done as number) - ((o.ignored as number | undefined) ?? 0);
  if (!isInteger(o.correct, 0, counted)) fileError(path, `a whole number in [0, ${counted}] (correct of the rows counted)`, `${name}.correct`, o.correct);
  if (o.shuffled !== undefined && typeof o.shuffled !== 'boolean') fileError(path, 'a boolean (false: the epoch runs in data order)', `${name}.shuffled`, o.shuffled);
  return o as Position;
}

/**
 * What a buffer holds, by rule: SGD's momentum (momentum and nesterov alike), Adam's moments (adam
 * and adamw alike), nothing (plain sgd). A buffer is carried over only between rules of one
 * family, as PyTorch's layout carries momentum_buffer or exp_avg by name.
 */
const family = (name: OptimizerName) => (name === 'momentum' || name === 'nesterov' ? 'momentum' : name === 'adam' || name === 'adamw' ? 'adam' : 'none');
/** The slots a rule keeps (handgrad's names: m, v, vmax). */
const slotsOf = (name: OptimizerName, amsgrad: boolean): readonly ('m' | 'v' | 'vmax')[] =>
  family(name) === 'momentum' ? ['m'] : family(name) === 'adam' ? (amsgrad ? ['m', 'v', 'vmax'] : ['m', 'v']) : [];

/** A second moment (v, vmax; exp_avg_sq, max_exp_avg_sq) is a running mean of squares: never below 0. */
export const NON_NEGATIVE_SLOTS: readonly string[] = ['v', 'vmax'];

/**
 * Fills the optimizer state from a handgrad-layout file's tensors optimizer.{name}.m/v/vmax (a
 * torch-layout checkpoint keeps it in its optimizer file: ./optimizer-file.ts). Each of the
 * parameter's dtype and length, finite. `required`: the file was saved by this optimizer after at
 * least one step, so a missing buffer would silently restart its moments.
 * @throws {HandgradError} ERR_FILE naming the tensor
 */
export function restoreOptimizerState(s: TrainState, file: SafetensorsFile, path: string, required: boolean): void {
  const dtype = s.config.dtype === 'float64' ? 'F64' : 'F32';
  // The file's own rule, from its "trainer" record: its tensors must be that rule's, for this
  // net's parameters, and are carried over only to a rule of the same family (a momentum buffer is
  // not Adam's exp_avg), as the torch layout's names do. State without the record that says whose
  // it is would be guessed: refused.
  const held = Object.keys(file.tensors).filter((n) => n.startsWith('optimizer.'));
  let fileRule: { name: OptimizerName; amsgrad: boolean } | undefined;
  if (file.metadata.trainer !== undefined) {
    const saved = asFileError(path, () => savedSettings(file.metadata.trainer));
    fileRule = asFileError(path, () => optimizerConfig(saved as OptimizerOptions, 'the saved settings'));
  } else if (held.length > 0) {
    fileError(path, 'the optimizer that wrote it, in __metadata__.trainer (without it, whose state this is cannot be told)', held[0], new v.Received('a tensor beside no __metadata__.trainer'));
  }
  if (fileRule !== undefined) {
    const known = new Set(s.names.flatMap((k) => slotsOf(fileRule!.name, fileRule!.amsgrad).map((part) => `optimizer.${k}.${part}`)));
    const stray = held.find((n) => !known.has(n));
    if (stray !== undefined) {
      fileError(path, `only the ${fileRule.name} state of this net's parameters (${[...known].join(', ') || 'none'})`, stray, new v.Received('a tensor it has no place for'));
    }
  }
  const same = fileRule !== undefined && family(fileRule.name) === family(s.config.optimizer.name);
  for (const k of s.names) {
    for (const part of ['m', 'v', 'vmax'] as const) {
      const buf = s.slots[k][part];
      if (!buf || !same) continue; // another family's buffers start at zero
      const name = `optimizer.${k}.${part}`;
      if (!(name in file.tensors)) {
        if (required) fileError(path, `the optimizer state ${name} (the file's optimizer took steps)`, name, new v.Received('no such tensor'));
        continue;
      }
      const t = tensorOf(file, name, [dtype], path);
      if (t.shape.join() !== String(buf.length)) fileError(path, `shape [${buf.length}] (that of ${k})`, name, new v.Received(`[${t.shape}]`));
      const data = t.data as FloatArray;
      checkSlot(path, name, data, NON_NEGATIVE_SLOTS.includes(part));
      buf.set(data);
    }
  }
}

/** A saved buffer's values: finite, and ≥ 0 for a second moment (a negative one makes √v NaN a step later). */
export function checkSlot(path: string, name: string, data: FloatArray, nonNegative: boolean): void {
  for (let j = 0; j < data.length; j++) {
    if (!Number.isFinite(data[j])) fileError(path, 'finite values', name, new v.Received(`${data[j]} at index ${j}`));
    if (nonNegative && !(data[j] >= 0)) fileError(path, 'values ≥ 0 (a second moment: a mean of squares)', name, new v.Received(`${data[j]} at index ${j}`));
  }
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
