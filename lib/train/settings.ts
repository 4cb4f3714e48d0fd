// The Trainer's settings, checked in one place: from the caller's options (named opts.lr, …) and
// from a checkpoint's metadata (named __metadata__.trainer.lr, …), so a file can hold nothing a
// caller could not pass.
import type { BackendName } from '../types';
import * as v from '../validate';
import { familyOptions, type OptimizerConfig, type OptimizerOptions, optimizerConfig } from './optimizer';
import { checkSchedule, type Schedule } from './schedule';
import type { DataParallel } from './data-parallel';
import { DEFAULT_BUCKET_BYTES } from '../distributed/group';

export interface Settings {
  optimizer: OptimizerConfig; lr: number; batchSize: number; seed: number; backend: BackendName; schedule: Schedule;
  /** Every step in the exact mode (LibTorch's bits; native or torch). */
  exact: boolean;
  /** Data-parallel training across the process group's ranks (opts.distributed), or null. Never saved: a checkpoint is the model's, not the job's. */
  distributed: DataParallel | null;
}

/**
 * opts.distributed: true, false, or { verify, bucketBytes, peers, sampler }. verify: true (every
 * step) or N (every N steps) compares a hash of the weights across ranks (a debug check: one small
 * all-reduce and a pass over the weights); bucketBytes: the gradients' all-reduce buckets (DDP's
 * bucket_cap_mb; 25 MiB). peers: 'handgrad' (every rank a handgrad Trainer: the job's epoch
 * records, evaluate and checks) or 'ddp' (ranks may be PyTorch DistributedDataParallel ranks: the
 * Trainer makes exactly DDP's collectives and no others, ./ddp.ts). sampler: the epoch's shuffled
 * order, 'handgrad' (the Trainer's seeded shuffle) or 'torch' (DistributedSampler's randperm, so
 * Node ranks take the rows PyTorch ranks would; the default with peers 'ddp').
 * @throws {TypeError|RangeError}
 */
export function distributedOption(x: unknown, name: string): DataParallel | null {
  if (x === undefined || x === false) return null;
  // true: every default, as {}.
  if (x !== true && (x === null || typeof x !== 'object' || Array.isArray(x))) v.fail(TypeError, 'true, false or { verify, bucketBytes, peers, sampler }', name, x);
  const o = v.options(name, x === true ? {} : x, ['verify', 'bucketBytes', 'peers', 'sampler'] as const);
  const verify = o.verify ?? false;
  let verifyEvery = 0;
  if (verify === true) verifyEvery = 1;
  else if (verify !== false) verifyEvery = v.dim(`${name}.verify`, verify);
  const bucketBytes = o.bucketBytes === undefined ? DEFAULT_BUCKET_BYTES : v.dim(`${name}.bucketBytes`, o.bucketBytes);
  const peers = v.oneOf(`${name}.peers`, o.peers, ['handgrad', 'ddp'] as const, 'handgrad');
  const sampler = v.oneOf(`${name}.sampler`, o.sampler, ['handgrad', 'torch'] as const, peers === 'ddp' ? 'torch' : 'handgrad');
  // The weight check is a collective of its own, which a PyTorch rank would never join.
  if (peers === 'ddp' && verifyEvery > 0) v.fail(TypeError, "no verify with peers 'ddp' (PyTorch ranks make no such collective: compare the weights after training)", `${name}.verify`, verify);
  return { verifyEvery, bucketBytes, peers, sampler };
}

/** The settings save() writes, as its JSON holds them (optimizer as { name, momentum, … }). */
export const SAVED_KEYS = ['optimizer', 'lr', 'batchSize', 'seed', 'backend', 'schedule', 'exact'] as const;
const OPTIMIZER_KEYS = ['name', 'momentum', 'dampening', 'nesterov', 'beta1', 'beta2', 'epsilon', 'weightDecay', 'amsgrad'] as const;

/**
 * The settings from options (undefined ones take their defaults); `prefix` names them in errors.
 * lr > 0 and finite (torch allows 0, a run that trains nothing: here a mistake); the seed an
 * integer that a double holds exactly (a larger one would be another seed).
 * @throws {TypeError|RangeError}
 */
export function settings(o: Readonly<Record<string, unknown>>, prefix = 'opts', optimizer = optimizerConfig(o as OptimizerOptions, prefix)): Settings {
  const adam = optimizer.name === 'adam' || optimizer.name === 'adamw';
  const lr = o.lr ?? (adam ? 1e-3 : 0.1);
  if (typeof lr !== 'number') v.fail(TypeError, 'a number', `${prefix}.lr`, lr);
  if (!(lr > 0 && Number.isFinite(lr))) v.fail(RangeError, 'a positive finite number', `${prefix}.lr`, lr);
  // The shuffle's seed: any integer a double holds exactly (its generator takes it mod 2^32, as
  // PyTorch's sampler takes its seed mod 2^64), not the draws' [0, 2^32) rule (validate.ts seed).
  const seed = o.seed ?? 0;
  if (typeof seed !== 'number' || !Number.isInteger(seed)) v.fail(TypeError, 'an integer', `${prefix}.seed`, seed);
  if (!Number.isSafeInteger(seed)) v.fail(RangeError, 'a safe integer (|seed| ≤ 2^53 − 1)', `${prefix}.seed`, seed);
  const backend = v.oneOf(`${prefix}.backend`, o.backend, v.BACKENDS, 'native');
  return {
    optimizer, lr, seed, backend,
    exact: v.exactOption(`${prefix}.exact`, o.exact, backend),
    batchSize: v.dim(`${prefix}.batchSize`, o.batchSize ?? 32),
    schedule: checkSchedule(o.schedule, `${prefix}.schedule`),
    distributed: distributedOption(o.distributed, `${prefix}.distributed`),
  };
}

/**
 * The settings a checkpoint holds (__metadata__.trainer, JSON), checked as a caller's options are,
 * as options for the Trainer (only the keys the file has).
 * @throws {TypeError|RangeError} naming __metadata__.trainer.*; the caller makes it ERR_FILE
 */
export function savedSettings(json: string): Record<string, unknown> {
  const name = '__metadata__.trainer';
  let saved: unknown;
  try {
    saved = JSON.parse(json);
  } catch {
    return v.fail(TypeError, 'a JSON object of settings', name, json);
  }
  if (saved === null || typeof saved !== 'object' || Array.isArray(saved)) v.fail(TypeError, 'a JSON object of settings', name, saved);
  const s = v.options(name, saved, SAVED_KEYS);
  const out: Record<string, unknown> = {};
  for (const k of SAVED_KEYS) if (s[k] !== undefined && k !== 'optimizer') out[k] = s[k];
  let optimizer: OptimizerConfig | undefined;
  if (s.optimizer !== undefined) {
    const o = v.options(`${name}.optimizer`, s.optimizer, OPTIMIZER_KEYS);
    // A file from before torch.optim's names (no 'nesterov' key) saved momentum 0.9 with plain
    // 'sgd', which ignored it: read it as it ran.
    const legacySgd = o.name === 'sgd' && o.nesterov === undefined;
    // A file holds every setting, the other family's defaults too (a resolved config): those are
    // inert, and are read only for the optimizer that takes them.
    const adam = o.name === 'adam' || o.name === 'adamw';
    const opts = adam
      ? { optimizer: o.name, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon, weightDecay: o.weightDecay, amsgrad: o.amsgrad }
      : { optimizer: o.name, momentum: legacySgd ? 0 : o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.weightDecay };
    optimizer = optimizerConfig(opts as OptimizerOptions, `${name}.optimizer`, `${name}.optimizer.name`);
    Object.assign(out, familyOptions(optimizer));
  }
  settings(out, name, optimizer ?? optimizerConfig({}, name));
  return out;
}

/**
 * The saved settings a caller's options apply over: when the caller names another optimizer than
 * the file's, the file's optimizer options were the old optimizer's and are dropped (the new one
 * starts from its defaults and the caller's options; an option of the other family would otherwise
 * be refused, and a saved nesterov: false contradict optimizer 'nesterov', though the caller gave
 * neither).
 */
export function savedUnder(saved: Record<string, unknown>, opts: { optimizer?: unknown }): Record<string, unknown> {
  if (opts.optimizer === undefined || saved.optimizer === undefined || opts.optimizer === saved.optimizer) return saved;
  const out = { ...saved };
  for (const k of ['optimizer', ...OPTIMIZER_KEYS]) delete out[k];
  return out;
}
