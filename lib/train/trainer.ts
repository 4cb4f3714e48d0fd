// Trainer: owns a training run's buffers (allocated once), trains synchronously (fitSync, step)
// or in a worker thread (fit) so a server's event loop stays free.
import { accessSync, constants as fsConstants, existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../binding';
import { isDefaultLoss, paramsFromFile, type SavedParams, sequentialFromFile, sequentialMetadata, sequentialTensors, holdsSequential, torchModulesOption } from '../checkpoint';
import type { Evaluation } from '../layers/class-metrics';
import type { LossSpec } from '../layers/loss';
import { Sequential, sequentialCopy } from '../layers/sequential';
import { activationOf, twoLayerNet } from '../model';
import { HandgradError } from '../errors';
import { architecture, type ArchitectureOptions, fileNet, type Layout, layoutOf, type ModuleKind } from '../io/layers';
import { writeFileAtomic } from '../io/atomic';
import { writeSafetensors } from '../io/safetensors';
import { asBuffer, fileFrom, Model, MODEL_FILE_OPTIONS, type ModelFileOptions, type ModelInfo, modelInfoEntries, modelInfoOption, readModelInfo } from '../model-file';
import type { Activation, BackendName, FloatArray, Params } from '../types';
import * as v from '../validate';
import { assertFiniteData, type Data, type EpochRecord, type FitPlan, type FitResult, fitLoop, restoreBestWeights, sequentialOf, type StepEvent, trainStep } from './loop';
import type { OptimizerOptions } from './optimizer';
import { fileError, asFileError, counterMetadata, restoreCounters, restoreOptimizerState } from './resume';
import { OPTIMIZER_STATE, optimizerFilePath, optimizerFileSettings, optimizerFileSteps, type OptimizerSource, readOptimizerFile, restoreFromOptimizerFile, saveOptimizerFile } from './optimizer-file';
import { optimizerConfig, type OptimizerOptions as RuleOptions } from './optimizer';
import type { Schedule } from './schedule';
import { savedSettings, savedUnder, settings } from './settings';
import { fromRankZero, joinJob, requireGroup, scoreAcross } from './data-parallel';
import { allocateState, COUNTER, holdingParams, rollBackAbandonedStep, sharedFloat, STOP, type TrainState } from './state';

export interface TrainerOptions extends OptimizerOptions {
  /** Base learning rate (default 0.1 for SGD variants, 0.001 for Adam/AdamW). */
  lr?: number;
  /** Minibatch size (default 32; the last batch of an epoch may be smaller). */
  batchSize?: number;
  /** Seeds the shuffling (default 0). */
  seed?: number;
  backend?: BackendName;
  /** The two-layer net's activation (a Sequential carries its own). */
  activation?: Activation;
  schedule?: Schedule;
  /**
   * Every step in the exact mode (native; see forwardBackward's exact): with the update rules'
   * torch.optim bits, a run ends on PyTorch's weights bit for bit. Default false.
   */
  exact?: boolean;
  /**
   * Data-parallel training across the process group this process joined (distributed.init, on
   * every rank first): true, or { verify, bucketBytes }. Every rank builds the same Trainer, which
   * takes rank 0's weights; each epoch each rank trains on its shard of the rows it is given
   * (torch's DistributedSampler: one seeded order, padded to a multiple of the world size, rank r
   * takes rows r, r+W, …); the gradients are averaged across ranks after each backward (DDP's
   * rule), so every rank holds the same bits after every step. evaluate and the epoch records are
   * the whole job's; only rank 0 writes files from save. verify: true or N compares a hash of the
   * weights across ranks after every (N-th) step (a debug check). Default false.
   * peers: 'ddp' lets PyTorch DistributedDataParallel ranks (gloo) share the job: the Trainer then
   * makes exactly DDP's collectives and no others (the epoch records and evaluate are the rank's
   * own; no verify, early stopping or restoreBest), and sampler 'torch' (its default there) takes
   * DistributedSampler(shuffle=True, seed=opts.seed)'s rows, epoch e being set_epoch(e − 1).
   */
  distributed?: boolean | { verify?: boolean | number; bucketBytes?: number; peers?: 'handgrad' | 'ddp'; sampler?: 'handgrad' | 'torch' };
}

/** The two-layer net's parameters as a Trainer takes them. */
export type TwoLayerParams = Params;

/**
 * The keys of a data set fit takes as validation: X and y, and what the package's own sets carry
 * besides (D, C; trainValSplit's index; readCsv's featureNames, labelName, classNames, header;
 * loadMnist's rows, cols; blobs' centers), so that any of them can be passed as it came.
 */
const DATASET_KEYS = ['X', 'y', 'D', 'C', 'index', 'featureNames', 'labelName', 'classNames', 'header', 'rows', 'cols', 'centers'] as const;

/**
 * The live two-layer tensors of a Trainer (shared memory), with the activation and the loss they
 * are trained with (frozen; forwardBackward, saveParams and saveModel of them use both).
 */
export type LiveParams = SavedParams & { activation: Activation; loss: LossSpec };

/** What trainer.params is: the two-layer tensors, or a Sequential's W1, b1, …, WL, bL. */
export type TrainerParams<M> = M extends Sequential ? Readonly<Record<string, FloatArray>> : LiveParams;

export type ProgressEvent = ({ type: 'step' } & StepEvent) | ({ type: 'epoch' } & EpochRecord);

type Labelled = { X: FloatArray; y: ArrayLike<number> };

/** fit's callbacks, under tfjs's names. */
export interface FitCallbacks {
  onEpochEnd?: (record: EpochRecord) => void;
  onStep?: (event: StepEvent) => void;
}

/** Where a fit's events go: onProgress first, then the callback (a throw in either stops the fit). */
interface Listeners { step?: (e: StepEvent) => void; epoch?: (r: EpochRecord) => void }

/** opts.callbacks checked: an object of functions under tfjs's names (onBatchEnd → onStep: did-you-mean). */
function fitCallbacks(x: unknown): FitCallbacks {
  if (x === undefined) return {};
  if (x === null || typeof x !== 'object' || Array.isArray(x)) v.fail(TypeError, 'an object { onEpochEnd, onStep } of functions', 'opts.callbacks', x);
  const cb = v.options('opts.callbacks', x, ['onEpochEnd', 'onStep'] as const);
  for (const k of ['onEpochEnd', 'onStep'] as const) if (cb[k] !== undefined && typeof cb[k] !== 'function') v.fail(TypeError, 'a function', `opts.callbacks.${k}`, cb[k]);
  return cb as FitCallbacks;
}

export interface FitOptions {
  /** Epochs to run (default 10); an epoch left in progress by an earlier stop is finished first and counts as one. */
  epochs?: number;
  /** A data set { X, y }: a loader's or trainValSplit's, whose other fields are ignored. */
  validation?: Labelled | (Labelled & Record<string, unknown>);
  /**
   * A fraction f in (0, 1) of the rows held out as the validation set, as tfjs's and Keras's
   * validationSplit: the last n − floor(n·(1 − f)) rows, taken from the end before any shuffling
   * (split a sorted file with trainValSplit instead). They never train; the history reports their
   * loss and accuracy as with `validation`, which cannot be given too.
   */
  validationSplit?: number;
  /**
   * tfjs's callback names: onEpochEnd gets each epoch's record, onStep each step event (every
   * progressEvery steps; every step when progressEvery is not given) — the very records onProgress
   * gets, without `type`, after it. A throwing callback stops the fit as a throwing onProgress does.
   */
  callbacks?: FitCallbacks;
  /**
   * Keras's restore_best_weights (needs earlyStop or a validation set): when the fit ends — all its
   * epochs run or stopped by earlyStop — the weights are put back to those of the epoch with the
   * lowest monitored loss (validation loss, else training loss; an improvement is by more than
   * earlyStop.minDelta), and the result names it (bestEpoch). The optimizer state and the counters
   * stay the last epoch's. An aborted fit (signal, a throwing callback, an error) is not restored:
   * it keeps the last whole step's weights and its place, ready to resume.
   */
  restoreBest?: boolean;
  /**
   * Saves the Trainer to `path` during the fit (Keras's ModelCheckpoint, torchrun's checkpoint
   * pattern): after every `every` optimizer steps (counted as trainer.steps, across fits), or after
   * each epoch ('epoch', the default), each file written atomically (the old one stays whole until
   * the new one replaces it) and holding a whole step, as save() writes it. Data-parallel, only rank 0
   * writes, and once more when the fit fails on the process group (a peer died or hung:
   * ERR_DISTRIBUTED), so that a restarted job that loads it (Trainer.load(path, { distributed: true }))
   * loses no step and ends on the bits of a job never interrupted. fitSync saves exactly after
   * those steps; fit saves when the worker's step event reaches this thread, a step or so later
   * (the file says which). The layout is handgrad's (save(path) with no options).
   */
  checkpoint?: { path: string; every?: number | 'epoch' };
  /**
   * Called with an 'epoch' event after each epoch, and a 'step' event every progressEvery steps.
   * If it throws, training stops after the step it reported and fit rejects (fitSync throws) with
   * what it threw; the Trainer keeps its place and stays usable.
   */
  onProgress?: (e: ProgressEvent) => void;
  progressEvery?: number;
  /** Stops between two steps; the parameters are those after the last completed step. */
  signal?: AbortSignal;
  /** Stop when the validation loss (train loss without validation) has not improved for `patience` epochs. */
  earlyStop?: { patience: number; minDelta?: number };
  /**
   * Each epoch in a new seeded order (default true), or every epoch in the data's order (false, as
   * a DataLoader with shuffle=False). An epoch stopped midway finishes in the order it began with.
   */
  shuffle?: boolean;
}

const WORKER = join(packageRoot, 'dist', 'lib', 'train', 'worker.js');

const TRAINER_OPTIONS = [
  'optimizer', 'lr', 'momentum', 'dampening', 'nesterov', 'beta1', 'beta2', 'epsilon', 'weightDecay', 'amsgrad', 'batchSize', 'seed', 'backend', 'activation', 'schedule', 'exact', 'distributed',
] as const;
/** Trainer.load's: the constructor's, opts.layers for a file that does not say its layers, and where its optimizer state is. */
const LOAD_OPTIONS = [...TRAINER_OPTIONS, 'layers', 'optimizerState'] as const;

/** Where a torch-layout checkpoint's optimizer state goes or comes from: a path, or false (none). */
export interface OptimizerStateOption {
  /**
   * save: false writes the weights alone (no optimizer state, no counters: the file loads as a
   * fresh run from them); a path writes PyTorch's layout's optimizer file there instead of beside
   * the model file (model.optim.safetensors). load: false starts a fresh optimizer (and counters
   * from zero) from the file's weights whatever it names; a path reads the optimizer file there
   * (a pair PyTorch wrote, or one moved apart) instead of the one the model file names.
   */
  optimizerState?: boolean | string;
}

/** Trainer.save's options: the model file's fields (saveModel's), the layout, and the optimizer state's place. */
export type TrainerSaveOptions = ModelFileOptions & { layout?: Layout; layers?: readonly ModuleKind[] } & OptimizerStateOption;

/** opts.optimizerState checked: true (the default), false, or a non-empty path. */
function optimizerStateOption(x: unknown): boolean | string {
  if (x === undefined) return true;
  if (typeof x === 'boolean') return x;
  if (typeof x !== 'string') v.fail(TypeError, 'false or the path of the optimizer file', 'opts.optimizerState', x);
  if (x === '') v.fail(RangeError, 'a non-empty path', 'opts.optimizerState', x);
  return x;
}

/**
 * A collective's failure during a data-parallel fit (a peer died, hung, or left), as an
 * ERR_DISTRIBUTED that also says where the fit stopped: the Trainer holds the weights, optimizer
 * state and position after that step (a failed all-reduce leaves them as they were), so a
 * checkpoint saved then, or the last one saved before, resumes the job. Anything else unchanged.
 */
function placed(e: unknown, s: TrainState): unknown {
  if (!(e instanceof HandgradError) || e.code !== 'ERR_DISTRIBUTED' || !s.config.distributed) return e;
  // Only a collective that failed (native/torch/distributed's words); the agreement and verify
  // checks say what differs themselves.
  if (!/^\w+ failed on rank \d+ of \d+ |^the process group failed earlier /.test(e.message)) return e;
  const c = s.counters;
  const where = `step ${c[COUNTER.steps]} (epoch ${c[COUNTER.epochs] + (c[COUNTER.done] > 0 ? 1 : 0)}${c[COUNTER.done] > 0 ? `, ${c[COUNTER.done]} of this rank's rows done` : ' complete'})`;
  return new HandgradError('ERR_DISTRIBUTED', `fit stopped after ${where}, the Trainer holding that step's weights: ${e.message}`, { cause: e });
}

/** opts.checkpoint checked: { path, every } with a non-empty path and every a positive integer or 'epoch' (the default). */
function checkpointOption(x: unknown): { path: string; every: number | 'epoch' } | undefined {
  if (x === undefined) return undefined;
  if (x === null || typeof x !== 'object' || Array.isArray(x)) v.fail(TypeError, "an object { path, every } (every: a number of steps or 'epoch')", 'opts.checkpoint', x);
  const o = v.options('opts.checkpoint', x, ['path', 'every'] as const);
  if (typeof o.path !== 'string') v.fail(TypeError, 'a file path', 'opts.checkpoint.path', o.path);
  if (o.path === '') v.fail(RangeError, 'a non-empty file path', 'opts.checkpoint.path', o.path);
  const every = o.every ?? 'epoch';
  if (every !== 'epoch') {
    if (typeof every !== 'number') v.fail(TypeError, "a number of steps or 'epoch'", 'opts.checkpoint.every', every);
    if (!Number.isInteger(every) || every < 1) v.fail(RangeError, "a positive integer number of steps (or 'epoch')", 'opts.checkpoint.every', every);
  }
  return { path: o.path, every };
}

/**
 * A checkpoint path that save() could not write (its folder missing or read-only, a folder itself)
 * is ERR_FILE before the first step, not at the first save, `every` steps or an epoch later, with a
 * job's other ranks still training. Checked where the file is written (rank 0 in a job).
 */
function checkCheckpointPath(path: string): void {
  let target = path;
  try {
    target = realpathSync(path);
  } catch {
    // No file there yet: written where it is.
  }
  try {
    if (statSync(target, { throwIfNoEntry: false })?.isDirectory()) throw new Error('a folder');
    accessSync(dirname(resolve(target)), fsConstants.W_OK);
  } catch (cause) {
    const e = cause as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? `no folder ${dirname(resolve(target))}` : e.code !== undefined ? `${e.code} on its folder ${dirname(resolve(target))}` : e.message;
    throw new HandgradError('ERR_FILE', `Expected a writable path for opts.checkpoint.path but received ${JSON.stringify(path)}: ${why}`, { cause });
  }
}

/**
 * The net's loss as the live params carry it, frozen with its weight: the objective the run trains
 * on, which a caller changing it in place would otherwise make another for forwardBackward and
 * saveParams of those params than for fit and save.
 */
function frozenLoss(net: Sequential): LossSpec {
  const spec = net.loss.spec();
  if (spec.weight !== undefined) Object.freeze(spec.weight);
  return Object.freeze(spec);
}

export class Trainer<M extends TwoLayerParams | Sequential = TwoLayerParams> {
  /**
   * The live parameters (shared memory: an async fit updates them as it goes): the two-layer
   * tensors with D, H, C and the activation, or a Sequential's W1, b1, …, WL, bL.
   */
  readonly params: TrainerParams<M>;
  /**
   * The network over the live parameters, with its activations (use it to predict, or read
   * probabilities, between fits). The Sequential or params passed in are not modified.
   */
  readonly model: Sequential;
  private readonly state: TrainState;
  /** Built from two-layer params (not a Sequential): params, save and snapshot keep that form. */
  private readonly twoLayer: boolean;
  private running = false;
  /** Read from a state_dict with Dropout or Identity: its nn.Sequential's modules (save writes the same indices). */
  private modules?: readonly ModuleKind[];
  /** The model file's fields (preprocessing, class and feature names, metadata) read by Trainer.load: save writes them back. */
  private info: ModelInfo = { metadata: {} };

  /** @throws {TypeError|RangeError} bad params or options, in the wording of every handgrad error */
  constructor(params: M, opts: TrainerOptions = {}) {
    const o = v.options('opts', opts, TRAINER_OPTIONS, v.NOT_YET_SUPPORTED);
    const given = params instanceof Sequential;
    this.twoLayer = !given;
    if (given && o.activation !== undefined) v.fail(TypeError, 'no opts.activation with a Sequential (its layers say it)', 'opts.activation', o.activation);
    const activation = activationOf(params, o.activation);
    const net = given ? params : twoLayerNet(params, activation);
    // Every number checked finite and in range here: a bad one is an error now, not NaN weights later.
    const { optimizer, lr, seed, backend, batchSize, schedule, exact, distributed } = settings(o);
    if (distributed) requireGroup('new Trainer(model, { distributed: true })');
    const { layers, reduction, loss } = net.spec();
    // A step is loss.backward() on a scalar: the model's 'mean' or 'sum', with its weight,
    // ignoreIndex and labelSmoothing; 'none' has no scalar to step on.
    if (reduction === 'none') v.fail(TypeError, "a model whose loss reduces to a scalar (reduction 'mean' or 'sum'): a step is loss.backward()", 'params.loss.reduction', 'none');
    const config = {
      dtype: net.dtype, D: net.inFeatures, C: net.classes, layers, batchSize, lr, seed, backend, optimizer, schedule, exact,
      ...(reduction === 'sum' ? { reduction } : {}), ...(loss ? { loss } : {}), ...(distributed ? { distributed } : {}),
    };
    this.state = allocateState(config, net.params);
    // An unavailable backend fails here, not mid-fit.
    this.model = sequentialOf(this.state).prepare(backend);
    const s = this.state.params;
    // Frozen: the record's tensors are live (the run's own buffers), its fields are not the caller's
    // to replace (a W1 swapped in would show in params while fit trained and saved the real one).
    this.params = Object.freeze(given
      ? this.model.params
      : { D: net.inFeatures, H: net.widths[1], C: net.classes, activation, loss: frozenLoss(net), W1: s.W1, b1: s.b1, W2: s.W2, b2: s.b2 }) as TrainerParams<M>;
    if (distributed) {
      // Every rank must build the same model and train it alike; then rank 0's weights everywhere.
      joinJob(this.state, distributed, {
        'the model': `${net.dtype} ${net.layers.map(String).join(', ')}; loss ${reduction}${loss ? ` ${JSON.stringify(loss)}` : ''}`,
        'the training settings': JSON.stringify({ optimizer, lr, batchSize, seed, schedule, exact }),
      });
    }
  }

  /** Optimizer steps taken so far. */
  get steps(): number {
    return this.state.counters[COUNTER.steps];
  }

  /**
   * Epochs completed so far (schedules and shuffles continue from here). A fit stopped inside an
   * epoch (abort, a thrown callback or error) keeps its place: the next fit, or a save and
   * Trainer.load, finishes that epoch from the next batch, on the same data.
   */
  get epochs(): number {
    return this.state.counters[COUNTER.epochs];
  }

  /** True while fit or fitSync runs; step, evaluate, fit and fitSync then throw ERR_BUSY (a callback's too). */
  get busy(): boolean {
    return this.running;
  }

  private enter(): void {
    if (this.running) throw new HandgradError('ERR_BUSY', 'This Trainer is running fit() or fitSync(); wait for it (or abort it) before calling it again');
  }

  /**
   * The training rows and the validation set of a fit: opts.validation, or with validationSplit
   * the last rows of X and y (floor(n·(1 − f)) train, as tfjs and Keras split).
   */
  private fitData(X: unknown, y: unknown, opts: FitOptions): { data: Data; validation?: Data } {
    const f = opts.validationSplit;
    if (f === undefined) {
      const data = this.trainingData(X, y);
      return { data, validation: opts.validation ? this.data(opts.validation.X, opts.validation.y, 'validation.') : undefined };
    }
    const all = this.data(X, y);
    const n = all.y.length;
    const at = Math.floor(n * (1 - f));
    if (at < 1 || at >= n) v.fail(RangeError, `a fraction that leaves rows on both sides of the ${n} rows (floor(${n}·(1 − f)) = ${at} to train on)`, 'opts.validationSplit', f);
    const D = this.state.config.D;
    const data = { X: all.X.subarray(0, at * D), y: all.y.subarray(0, at) };
    this.checkPosition(data);
    return { data, validation: { X: all.X.subarray(at * D), y: all.y.subarray(at) } };
  }

  private data(X: unknown, y: unknown, name = ''): Data {
    const c = this.state.config;
    const b = v.batch(X, y, { dtype: c.dtype, D: c.D, C: c.C }, name, c.loss?.ignoreIndex ?? -100);
    assertFiniteData(`${name}X`, b.X);
    return { X: b.X, y: b.y };
  }

  /** Training data, which must be the size the epoch in progress (if any) was shuffled over. */
  private trainingData(X: unknown, y: unknown): Data {
    return this.checkPosition(this.data(X, y));
  }

  private checkPosition(d: Data): Data {
    const c = this.state.counters;
    if (c[COUNTER.done] > 0 && d.y.length !== c[COUNTER.examples]) {
      const what = `the ${c[COUNTER.examples]} examples that epoch ${c[COUNTER.epochs] + 1} (stopped after ${c[COUNTER.done]} of them) was shuffled over`;
      v.fail(RangeError, what, 'y', d.y);
    }
    return d;
  }

  /**
   * One optimizer step on a minibatch (B ≤ batchSize); its loss before the update.
   * @throws {TypeError|RangeError|HandgradError} bad arguments; a RangeError for a non-finite update, which is then undone
   */
  step(X: FloatArray, y: ArrayLike<number>, opts: Record<string, never> = {}): number {
    v.options('opts', opts, []);
    this.enter();
    const d = this.data(X, y);
    const B = d.y.length;
    if (B > this.state.config.batchSize) v.fail(RangeError, `at most batchSize = ${this.state.config.batchSize} labels`, 'y', d.y);
    this.state.Xb.set(d.X);
    this.state.yb.set(d.y);
    return trainStep(this.state, B, this.state.config.lr).loss;
  }

  /** The plan, and the options read once (a getter cannot answer one thing to the check and another to the use). */
  private plan(given: FitOptions, onPromise: (p: PromiseLike<unknown>, name: string) => void): [FitPlan, FitOptions, Listeners] {
    const opts = v.options('opts', given, ['epochs', 'validation', 'validationSplit', 'onProgress', 'callbacks', 'progressEvery', 'signal', 'earlyStop', 'restoreBest', 'shuffle', 'checkpoint'] as const, v.NOT_YET_SUPPORTED) as FitOptions;
    const checkpoint = checkpointOption(opts.checkpoint);
    if (checkpoint && !(this.state.config.distributed && requireGroup('a checkpoint option on a distributed Trainer').rank !== 0)) checkCheckpointPath(checkpoint.path);
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') v.fail(TypeError, 'a function', 'opts.onProgress', opts.onProgress);
    const cb = fitCallbacks(opts.callbacks);
    if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) v.fail(TypeError, 'an AbortSignal', 'opts.signal', opts.signal);
    // validation is a data set: X and y, checked as the training data are, and the fields this
    // package's loaders and trainValSplit give a set (read by none here); any other key is refused
    // by name: { X, y, weight } or { X, y, batchSize } would otherwise be an option silently ignored.
    if (opts.validation !== undefined && (opts.validation === null || typeof opts.validation !== 'object')) v.fail(TypeError, 'a data set { X, y }', 'opts.validation', opts.validation);
    const dataset = opts.validation === undefined ? undefined : (v.options('opts.validation', opts.validation, DATASET_KEYS) as Partial<Data>);
    const val = dataset === undefined ? undefined : { X: dataset.X, y: dataset.y };
    if (val !== undefined && (val.X === undefined || val.y === undefined)) v.fail(TypeError, 'a data set { X, y }', `opts.validation.${val.X === undefined ? 'X' : 'y'}`, undefined);
    const split = opts.validationSplit;
    if (split !== undefined) {
      if (dataset !== undefined) v.fail(TypeError, 'either opts.validation or opts.validationSplit, not both', 'opts.validationSplit alongside opts.validation', split);
      if (typeof split !== 'number') v.fail(TypeError, 'a fraction in (0, 1)', 'opts.validationSplit', split);
      if (!(split > 0 && split < 1)) v.fail(RangeError, 'a fraction in (0, 1)', 'opts.validationSplit', split);
    }
    const es = opts.earlyStop === undefined ? undefined : (v.options('opts.earlyStop', opts.earlyStop, ['patience', 'minDelta'] as const) as { patience: number; minDelta?: number });
    if (es !== undefined) {
      v.dim('opts.earlyStop.patience', es.patience);
      if (es.minDelta !== undefined && !(typeof es.minDelta === 'number' && es.minDelta >= 0 && Number.isFinite(es.minDelta))) {
        v.fail(RangeError, 'a finite number ≥ 0', 'opts.earlyStop.minDelta', es.minDelta);
      }
    }
    const epochs = v.dim('opts.epochs', opts.epochs ?? 10);
    // tfjs calls onBatchEnd after every batch: onStep without progressEvery does too.
    const progressEvery = opts.progressEvery === undefined ? (cb.onStep ? 1 : 0) : v.dim('opts.progressEvery', opts.progressEvery);
    const shuffle = v.bool('opts.shuffle', opts.shuffle, true);
    const restoreBest = v.bool('opts.restoreBest', opts.restoreBest, false);
    if (restoreBest && es === undefined && val === undefined && split === undefined) {
      v.fail(TypeError, 'earlyStop or a validation set (validation, validationSplit) with restoreBest', 'opts.restoreBest', restoreBest);
    }
    // onProgress's records, then the callback's (a copy each: the history's records stay the fit's).
    const { onProgress } = opts;
    // A callback may be async: what it returns, when a promise, goes to onPromise (fit waits for it
    // and rejects with its rejection; fitSync cannot wait and refuses it), never dropped — an
    // ignored rejected promise is an unhandled rejection, which ends the process.
    const settle = (r: unknown, name: string) => {
      if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof (r as PromiseLike<unknown>).then === 'function') onPromise(r as PromiseLike<unknown>, name);
    };
    const step = onProgress || cb.onStep ? (e: StepEvent) => {
      settle(onProgress?.({ type: 'step', ...e }), 'opts.onProgress');
      settle(cb.onStep?.({ ...e }), 'opts.callbacks.onStep');
    } : undefined;
    const epoch = onProgress || cb.onEpochEnd ? (r: EpochRecord) => {
      settle(onProgress?.({ type: 'epoch', ...r }), 'opts.onProgress');
      settle(cb.onEpochEnd?.({ ...r }), 'opts.callbacks.onEpochEnd');
    } : undefined;
    const listen: Listeners = { step, epoch };
    // A checkpoint every k steps listens to every step (the caller's events keep their own rhythm:
    // every progressEvery-th step and each epoch's last), saved before the events of that step.
    let eventEvery = progressEvery;
    if (checkpoint) {
      const { path, every } = checkpoint;
      const c = this.state.counters;
      if (typeof every === 'number') {
        eventEvery = 1;
        let next = (Math.floor(c[COUNTER.steps] / every) + 1) * every;
        listen.step = (e) => {
          const at = c[COUNTER.steps];
          if (at >= next) {
            this.save(path);
            // From the count before the save: fit's worker goes on stepping while it writes.
            next = (Math.floor(at / every) + 1) * every;
          }
          if (step && progressEvery > 0 && (e.step % progressEvery === 0 || e.step === e.steps)) step(e);
        };
      } else {
        listen.epoch = (r) => {
          this.save(path);
          epoch?.(r);
        };
      }
    }
    return [
      { epochs, progressEvery: eventEvery, shuffle, patience: es?.patience, minDelta: es?.minDelta ?? 0, ...(restoreBest ? { restoreBest } : {}) },
      { ...opts, validation: val as FitOptions['validation'] },
      listen,
    ];
  }

  /**
   * Trains on this thread; returns the per-epoch history.
   * @throws {TypeError|RangeError|HandgradError} bad arguments; a RangeError for a non-finite step (the weights are those after the last finite one); what onProgress or a callback threw
   */
  fitSync(X: FloatArray, y: ArrayLike<number>, given: FitOptions = {}): FitResult {
    this.enter();
    if (this.state.config.distributed) requireGroup('fitSync on a distributed Trainer');
    // This thread runs the callbacks between steps and cannot wait for a promise: an async one is
    // refused (its promise handled, so a later rejection cannot end the process), stopping the run
    // as a throwing callback does.
    const [plan, opts, listen] = this.plan(given, (p, name) => {
      Promise.resolve(p).catch(() => undefined);
      v.fail(TypeError, 'a callback that returns no promise (fitSync runs it between steps and cannot wait for one: use fit)', name, p);
    });
    const { data, validation } = this.fitData(X, y, opts);
    if (opts.signal?.aborted) return { history: [], stopped: 'aborted' };
    const onAbort = () => Atomics.store(this.state.control, STOP, 1);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    // Busy while it trains, as fit is: a callback that called step, fit, fitSync or evaluate would
    // train on the buffers this run is using (another fit's worker, or this loop's own batch).
    this.running = true;
    try {
      return fitLoop(this.state, data, validation, plan, listen);
    } catch (e) {
      throw this.lastCheckpoint(placed(e, this.state), e, opts.checkpoint);
    } finally {
      this.running = false;
      opts.signal?.removeEventListener('abort', onAbort);
      Atomics.store(this.state.control, STOP, 0);
    }
  }

  /**
   * Trains in a worker thread, so the event loop stays free. X and y are copied on entry: changing
   * them afterwards does not affect this fit. The Trainer is busy (ERR_BUSY) until it settles.
   * Rejects with a RangeError for a non-finite step (the weights are those after the last finite
   * one), or with what onProgress or a callback threw.
   * @throws {TypeError|RangeError} synchronously, for bad arguments
   */
  fit(X: FloatArray, y: ArrayLike<number>, given: FitOptions = {}): Promise<FitResult> {
    this.enter();
    if (this.state.config.distributed) requireGroup('fit on a distributed Trainer');
    // What async callbacks returned: fit settles once they have, and rejects with the first rejection.
    const pending: Promise<unknown>[] = [];
    let rejected: { value: unknown } | undefined;
    const [planned, opts, listen] = this.plan(given, (p) => {
      pending.push(Promise.resolve(p).then(undefined, (err: unknown) => {
        if (rejected) return;
        rejected = { value: err };
        Atomics.store(this.state.control, STOP, 1); // stops the run as a throwing callback does
      }));
    });
    // restoreBest: the worker keeps the best epoch's weights in shared tensors and this thread puts
    // them back once every event (and the checkpoint it writes) has been delivered (FitPlan.bestOnCaller).
    const best = planned.restoreBest ? Object.fromEntries(this.state.names.map((k) => [k, sharedFloat(this.state.config.dtype, this.state.params[k].length)])) : undefined;
    const plan: FitPlan = best ? { ...planned, bestOnCaller: best } : planned;
    const copy = (d: Data): Data => {
      const Xc = sharedFloat(this.state.config.dtype, d.X.length);
      Xc.set(d.X);
      const yc = new Int32Array(new SharedArrayBuffer(4 * d.y.length));
      yc.set(d.y);
      return { X: Xc, y: yc };
    };
    const split = this.fitData(X, y, opts);
    const data = copy(split.data);
    const validation = split.validation && copy(split.validation);
    if (!existsSync(WORKER)) {
      throw new HandgradError('ERR_NOT_BUILT', `The training worker ${WORKER} is missing; run \`npm run setup\` to build dist/`);
    }
    if (opts.signal?.aborted) return Promise.resolve({ history: [], stopped: 'aborted' });
    this.running = true;
    return new Promise<FitResult>((resolve, reject) => {
      const worker = new Worker(WORKER, { workerData: { state: this.state, data, validation, plan } });
      let settled = false;
      // A throwing onProgress or callback stops the run like an abort, and fit rejects with what it
      // threw (whatever the worker says after: its 'done' is the stop this caused). No event after it.
      let thrown: { value: unknown } | undefined;
      const deliver = (send: () => void) => {
        if (thrown) return;
        try {
          send();
        } catch (err) {
          thrown = { value: err };
          Atomics.store(this.state.control, STOP, 1);
        }
      };
      const onAbort = () => Atomics.store(this.state.control, STOP, 1);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (err: Error | null, result?: FitResult) => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        // The callbacks' promises first (the worker has stopped): the Trainer stays busy until they settle.
        void Promise.all(pending).then(() => {
          Atomics.store(this.state.control, STOP, 0);
          // Not after a throwing or rejecting callback: an aborted fit keeps its last step (as fitSync's).
          if (best && result?.bestEpoch !== undefined && !err && !thrown && !rejected) restoreBestWeights(this.state, best);
          this.running = false;
          if (thrown) reject(thrown.value);
          else if (rejected) reject(rejected.value);
          else if (err) reject(err);
          else resolve(result!);
        });
      };
      worker.on('message', (m: { type: string; event?: StepEvent; record?: EpochRecord; result?: FitResult; name?: string; message?: string; code?: string }) => {
        if (m.type === 'step') deliver(() => listen.step?.(m.event!));
        else if (m.type === 'epoch') deliver(() => listen.epoch?.(m.record!));
        else if (m.type === 'done') finish(null, m.result);
        else if (m.type === 'error') {
          const Kind = m.name === 'TypeError' ? TypeError : m.name === 'RangeError' ? RangeError : Error;
          const raw = m.code ? new HandgradError(m.code as never, m.message!) : new Kind(m.message);
          finish(this.lastCheckpoint(placed(raw, this.state), raw, opts.checkpoint) as Error);
        }
      });
      // A worker that dies (terminated, or an error it could not report) may die inside a step:
      // once it has exited, that step is rolled back and its hold on the parameters freed.
      let died: Error | undefined;
      worker.on('error', (err) => (died = err));
      worker.on('exit', (code) => {
        if (settled) return; // it reported: nothing left half done (and a later fit may hold the lock now)
        rollBackAbandonedStep(this.state);
        finish(died ?? new HandgradError('ERR_WORKER', `The training worker exited (code ${code}) before finishing`));
      });
    });
  }

  /**
   * A fit that failed on the process group (`placed` rewrote the error) with a checkpoint option:
   * rank 0 saves the whole step it holds (a failed collective changes nothing), so a restart loses
   * no step. A save that fails too is added to the error's message, never swallowed.
   */
  private lastCheckpoint(err: unknown, raw: unknown, checkpoint: FitOptions['checkpoint']): unknown {
    if (err === raw || checkpoint === undefined) return err;
    try {
      this.save(checkpoint.path);
      return err;
    } catch (e) {
      return new HandgradError('ERR_DISTRIBUTED', `${(err as Error).message}; the checkpoint could not be saved either: ${(e as Error).message}`, { cause: err });
    }
  }

  /**
   * The trained network as a Model over the live weights: `predict`, `predictClasses` and `probs`
   * take raw rows and apply the preprocessing, with the class and feature names, this Trainer was
   * loaded with (Trainer.load of a model file), each replaced by `opts`' (saveModel's options).
   * `trainer.model` is the bare Sequential, on already preprocessed rows.
   * @throws {TypeError|RangeError} options as saveModel's
   */
  asModel(opts: ModelFileOptions = {}): Model {
    const o = v.options('opts', opts, MODEL_FILE_OPTIONS);
    const kept = this.info;
    return new Model(this.model, {
      preprocess: o.preprocess ?? kept.preprocess, classes: o.classes ?? kept.classes, features: o.features ?? kept.features,
      label: o.label ?? kept.label, metadata: o.metadata ?? kept.metadata,
    } as ModelFileOptions);
  }

  /** Mean loss, accuracy, per-class precision/recall/support and the confusion matrix on a data set (forward only). @throws {TypeError|RangeError|HandgradError} */
  evaluate(X: FloatArray, y: ArrayLike<number>, opts: { batchSize?: number } = {}): Evaluation {
    const o = v.options('opts', opts, ['batchSize'] as const);
    this.enter();
    const d = this.data(X, y);
    const batchSize = o.batchSize === undefined ? this.state.config.batchSize : v.dim('opts.batchSize', o.batchSize);
    // With DDP peers a rank's evaluation is its own, as a PyTorch rank's is (no collective).
    if (this.state.config.distributed?.peers === 'handgrad') {
      requireGroup('evaluate on a distributed Trainer');
      return scoreAcross(this.model, d.X, d.y, batchSize, this.state.config.backend);
    }
    return this.model.score(d.X, d.y, batchSize, this.state.config.backend);
  }

  /**
   * Writes the parameters, the optimizer state, the counters and (stopped inside an epoch) the
   * position in it, so a later Trainer.load continues exactly where this one is: its fit on the
   * same data gives the weights of a run never interrupted, bit for bit. It is a model file
   * (lib/model-file.ts: loadModel reads it) with the optimizer state beside the weights: `preprocess`,
   * `classes`, `features`, `label` and `metadata` are saveModel's (checked against D and C), and
   * default to those of the file this Trainer was loaded from. With no path, returns the file's
   * bytes (a Buffer). During fit it is taken holding the parameters, as a step's update holds
   * them: the checkpoint of a whole step, the same kind of file as one saved between fits.
   *
   * handgrad's layout: one safetensors file. `layout: 'torch'`: `path` holds the matching
   * nn.Sequential's state_dict and nothing else ("0.weight" [out,in], "0.bias", …: what
   * model.load_state_dict(load_file(path), strict=True) takes), handgrad's settings and counters
   * in its metadata; the optimizer state goes to a file of its own, optimizer.state_dict()'s
   * layout ("state.0.exp_avg", …, "param_groups" in its metadata: lib/train/optimizer-file.ts),
   * beside it (model.safetensors → model.optim.safetensors) or at `optimizerState` (a path). It is
   * written first, then the model file, which records its name and digest: Trainer.load refuses a
   * pair that does not belong together (a crash between the two writes). There `layers` names
   * every module of the nn.Sequential, Dropout and Identity included, so the indices are its own
   * (a Trainer loaded from such a state_dict keeps them without it).
   *
   * `optimizerState: false` writes the weights alone, in either layout: no optimizer state and no
   * counters (Trainer.load starts a fresh run from them; no optimizer file is written or removed).
   * @throws {TypeError|RangeError} bad options
   * @throws {HandgradError} ERR_FILE when a file cannot be written (a failed optimizer file leaves the model file as it was)
   */
  save(path?: undefined, opts?: TrainerSaveOptions): Buffer;
  save(path: string, opts?: TrainerSaveOptions): void;
  save(path?: string, opts: TrainerSaveOptions = {}): Buffer | void {
    const o = v.options('opts', opts, ['layout', 'layers', 'optimizerState', ...MODEL_FILE_OPTIONS] as const);
    const layout = v.oneOf('opts.layout', o.layout, ['handgrad', 'torch'] as const, 'handgrad');
    const modules = torchModulesOption(o.layers, layout) ?? (layout === 'torch' ? this.modules : undefined);
    const withOptimizer = optimizerStateOption(o.optimizerState);
    if (typeof withOptimizer === 'string' && layout !== 'torch') {
      v.fail(TypeError, "no path without layout: 'torch' (handgrad's layout keeps the optimizer state inside the file)", 'opts.optimizerState', withOptimizer);
    }
    if (path !== undefined && (typeof path !== 'string' || path === '')) v.fail(TypeError, 'a file path (or none, for the bytes)', 'path', path);
    // PyTorch's layout: the file is the state_dict alone (strict load_state_dict), the optimizer
    // state a file beside it; neither the standardizer's tensors nor a file beside bytes fit.
    if (layout === 'torch' && o.preprocess !== undefined) v.fail(TypeError, "no opts.preprocess with layout: 'torch' (the file holds the state_dict alone)", 'opts.preprocess', o.preprocess);
    if (layout === 'torch' && path === undefined && withOptimizer !== false) {
      v.fail(TypeError, "a path for layout: 'torch' (the model file names its optimizer file relative to itself), or optimizerState: false", 'path', path);
    }
    const optimizerPath = layout !== 'torch' || withOptimizer === false ? undefined : withOptimizer === true ? optimizerFilePath(path!) : withOptimizer;
    if (optimizerPath !== undefined && path !== undefined && resolve(optimizerPath) === resolve(path)) v.fail(RangeError, 'another path than the model file\'s', 'opts.optimizerState', optimizerPath);
    const c = this.state.config;
    // The model file's fields: the caller's, else those this Trainer was loaded with.
    const given = modelInfoOption(o, c.D, c.C);
    const kept = this.info;
    const info: ModelInfo = {
      preprocess: o.preprocess !== undefined ? given.preprocess : layout === 'torch' ? undefined : kept.preprocess,
      classes: o.classes !== undefined ? given.classes : kept.classes,
      features: o.features !== undefined ? given.features : kept.features,
      label: o.label !== undefined ? given.label : kept.label,
      metadata: o.metadata !== undefined ? given.metadata : kept.metadata,
    };
    const extra = modelInfoEntries(info);
    // Data-parallel: every rank holds the same bits, and rank 0's file is the job's; another rank
    // writes nothing (with no path, every rank returns the bytes).
    if (path !== undefined && this.state.config.distributed && requireGroup('save on a distributed Trainer').rank !== 0) return;
    // During a fit (the worker steps on the shared buffers), the weights, the optimizer state and
    // the counters are read holding the parameters, as a step's update holds them: the file is
    // that of a whole step, the same kind of file as one saved between fits.
    const bytes = holdingParams(this.state, () => {
      const tensors = { ...sequentialTensors(this.model, layout, modules), ...extra.tensors };
      const metadata: Record<string, string> = {
        ...extra.metadata,
        ...sequentialMetadata(this.model, layout, this.twoLayer ? (this.params as LiveParams).activation : undefined, modules),
        trainer: JSON.stringify({ optimizer: c.optimizer, lr: c.lr, batchSize: c.batchSize, seed: c.seed, backend: c.backend, schedule: c.schedule, ...(c.exact ? { exact: true } : {}) }),
      };
      if (withOptimizer !== false) {
        Object.assign(metadata, counterMetadata(this.state));
        // The optimizer file first: a crash before the model file's rename leaves the old model
        // file, whose digest no longer matches, and Trainer.load refuses the pair.
        if (optimizerPath !== undefined) Object.assign(metadata, saveOptimizerFile(this.state, path!, optimizerPath));
        else {
          for (const k of this.state.names) {
            const slot = this.state.slots[k];
            if (slot.m) tensors[`optimizer.${k}.m`] = { shape: [slot.m.length], data: slot.m };
            if (slot.v) tensors[`optimizer.${k}.v`] = { shape: [slot.v.length], data: slot.v };
            if (slot.vmax) tensors[`optimizer.${k}.vmax`] = { shape: [slot.vmax.length], data: slot.vmax };
          }
        }
      }
      return writeSafetensors(tensors, metadata); // copied out under the hold
    });
    if (path === undefined) return asBuffer(bytes);
    writeFileAtomic(path, bytes);
  }

  /**
   * A Trainer from a checkpoint written by save() (optimizer state and counters restored), or
   * from parameters alone (saveParams, saveSequential, saveModel, a PyTorch state_dict) with a
   * fresh optimizer; from a path or the file's bytes (a Buffer or Uint8Array: a torch-layout pair
   * then needs optimizerState, since bytes have no folder). A model file's preprocessing, class and
   * feature names and metadata are kept (checked: ERR_FILE naming the key) and written back by save.
   * A PyTorch state_dict records no activations: name them with `layers` or `activation` as for
   * loadSequential (options that contradict the file are an error). The other `opts` override the
   * saved settings. Every value read from the files is checked before use.
   *
   * In PyTorch's layout the optimizer state is in its own file: the one the model file names
   * (its digest must match: a pair from two saves is refused), or `optimizerState` (a path: a pair
   * PyTorch wrote, whose model file names none, or a file moved apart). A model file that records
   * steps but names no optimizer file is refused rather than resumed with zeroed moments.
   * `optimizerState: false` (either layout) takes the weights and settings alone: a fresh
   * optimizer, counters from zero (steps, epochs, the position in an epoch), as a new run.
   * @throws {TypeError|RangeError} bad options
   * @throws {HandgradError} ERR_FILE for a missing or malformed file, a missing or mismatched optimizer file (naming both files), a state_dict without its activations, or a setting, counter, position or optimizer state out of range (naming its key)
   */
  static load(source: string | Uint8Array, opts: TrainerOptions & ArchitectureOptions & OptimizerStateOption = {}): Trainer<TwoLayerParams | Sequential> {
    const o = v.options('opts', opts, LOAD_OPTIONS, v.NOT_YET_SUPPORTED);
    const { layers, activation, optimizerState, ...rest } = o;
    const arch = architecture({ layers, activation });
    const withOptimizer = optimizerStateOption(optimizerState);
    // `path` names the source in errors: the file's path, or "the checkpoint bytes".
    const { file, name: path, path: filePath } = fileFrom(source, 'checkpoint');
    const meta = file.metadata;
    // A file with a layers list (a Sequential's, even of two Linear layers) comes back as one; so
    // does any net but Linear, act, Linear, and a two-layer file whose loss is not
    // F.cross_entropy's default (as before two-layer params carried their loss: such a Trainer's
    // params and save stay a Sequential's).
    const read = meta.layers !== undefined || holdsSequential(file, path, arch, 'Trainer.load') ? sequentialFromFile(file, path, arch, 'Trainer.load') : paramsFromFile(file, path, arch, 'Trainer.load');
    const p = read instanceof Sequential || isDefaultLoss(read.loss) ? read : sequentialFromFile(file, path, arch, 'Trainer.load');
    // A model file may hold reduction 'none' (a net to predict with), which has no scalar to step
    // on: the file's loss is refused as the file's, not as a TypeError about the caller's params.
    if (p instanceof Sequential && p.loss.spec().reduction === 'none') {
      fileError(path, "a loss that reduces to a scalar (reduction 'mean' or 'sum'): a Trainer's step is loss.backward()", '__metadata__.loss.reduction', 'none');
    }
    const layout = layoutOf(file);
    const parameters = 2 * (p instanceof Sequential ? p.layers.filter((l) => l.kind === 'linear').length : 2);
    // Where the optimizer state is: none (false), the file itself (handgrad's layout), or the
    // optimizer file (PyTorch's layout: named by the caller or by the model file, digest checked).
    if (typeof withOptimizer === 'string' && layout !== 'torch') {
      fileError(path, `a checkpoint in PyTorch's layout for opts.optimizerState (${withOptimizer})`, 'the file', new v.Received("one in handgrad's layout, which keeps its optimizer state inside"));
    }
    // Bytes have no folder: the optimizer file a torch-layout model file names is found only by a path.
    if (filePath === undefined && layout === 'torch' && withOptimizer === true && meta[OPTIMIZER_STATE] !== undefined) {
      fileError(path, `a path (opts.optimizerState) for the optimizer file that __metadata__.${OPTIMIZER_STATE} names relative to the model file's folder`, `__metadata__.${OPTIMIZER_STATE}`, new v.Received(`${JSON.stringify(meta[OPTIMIZER_STATE])} (read from bytes); or { optimizerState: false } for the weights alone`));
    }
    const optimizerSource: OptimizerSource | undefined = layout === 'torch' && withOptimizer !== false
      ? readOptimizerFile(path, meta, typeof withOptimizer === 'string' ? withOptimizer : undefined) : undefined;
    if (layout === 'torch' && withOptimizer !== false && optimizerSource === undefined && meta.steps !== undefined && meta.steps !== '0') {
      fileError(path, `the optimizer file of a checkpoint that took steps, named in __metadata__.${OPTIMIZER_STATE}`, `__metadata__.${OPTIMIZER_STATE}`, new v.Received(`nothing (__metadata__.steps is ${meta.steps}); name it with { optimizerState: path }, or start a fresh optimizer from the weights with { optimizerState: false }`));
    }
    // The saved settings and counters are checked before use (ERR_FILE naming the key); opts,
    // the caller's, override the settings and are checked as the constructor checks them.
    // (A pair PyTorch wrote has no "trainer": its optimizer file's class and param_groups say the settings.)
    const saved = meta.trainer !== undefined ? asFileError(path, () => savedSettings(meta.trainer))
      : optimizerSource !== undefined ? optimizerFileSettings(optimizerSource, parameters) : {};
    const act = p instanceof Sequential ? undefined : p.activation;
    const t = new Trainer<TwoLayerParams | Sequential>(p instanceof Sequential ? p : { D: p.D, H: p.H, C: p.C, W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2 }, { ...savedUnder(saved, rest), activation: act, ...rest } as TrainerOptions);
    // A state_dict with Dropout or Identity: saved in the torch layout, it keeps its indices.
    t.modules = fileNet(file, path, arch, 'Trainer.load').modules;
    // The model file's fields, checked against the net (ERR_FILE naming the key): save writes them back.
    t.info = readModelInfo(file, path, t.state.config.D, t.state.config.C);
    if (withOptimizer === false) return t; // a fresh run from the weights: counters and moments from zero
    restoreCounters(t.state, meta, path);
    if (optimizerSource !== undefined && meta.steps === undefined) t.state.counters[COUNTER.steps] = optimizerFileSteps(optimizerSource);
    // The buffers must all be there when the file's rule is the Trainer's and it has stepped.
    // (AMSGrad switched on for a file saved without it starts its largest v afresh.)
    const opt = t.state.config.optimizer;
    const rule = saved.optimizer === undefined ? undefined : asFileError(path, () => optimizerConfig(saved as RuleOptions, 'the saved settings'));
    const required = rule !== undefined && rule.name === opt.name && rule.amsgrad === opt.amsgrad && t.state.counters[COUNTER.steps] > 0;
    if (optimizerSource !== undefined) restoreFromOptimizerFile(t.state, optimizerSource, required);
    else if (layout === 'handgrad') restoreOptimizerState(t.state, file, path, required);
    // Data-parallel: rank 0's optimizer state and counters too (the constructor sent its weights).
    if (t.state.config.distributed) fromRankZero(t.state);
    return t;
  }

  /** A copy of the parameters after a whole step (a new Sequential for a Sequential's), safe to keep while training goes on. */
  snapshot(): M extends Sequential ? Sequential : LiveParams {
    // Taken holding the parameters, which a step's update holds too: never half a step (during fit).
    return holdingParams(this.state, () => {
      if (!this.twoLayer) return sequentialCopy(this.model) as never;
      const p = this.params as LiveParams;
      const t = this.state.params; // the buffers that train and save, whatever a caller did to params
      return { D: p.D, H: p.H, C: p.C, activation: p.activation, loss: p.loss, W1: t.W1.slice(), b1: t.b1.slice(), W2: t.W2.slice(), b2: t.b2.slice() } as never;
    });
  }
}

