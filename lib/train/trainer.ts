// Trainer: owns a training run's buffers (allocated once), trains synchronously (fitSync, step)
// or in a worker thread (fit) so a server's event loop stays free.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../binding';
import { metadataOption, paramsFromFile, type SavedParams, sequentialFromFile, sequentialMetadata, sequentialTensors, holdsSequential, torchModulesOption } from '../checkpoint';
import { Sequential, sequentialCopy } from '../layers/sequential';
import { activationOf, twoLayerNet } from '../model';
import { HandgradError } from '../errors';
import { architecture, type ArchitectureOptions, fileNet, type Layout, layoutOf, type ModuleKind } from '../io/layers';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import type { Activation, BackendName, FloatArray, Params } from '../types';
import * as v from '../validate';
import { type Data, type EpochRecord, type FitPlan, type FitResult, fitLoop, sequentialOf, type StepEvent, trainStep } from './loop';
import type { OptimizerOptions } from './optimizer';
import { asFileError, counterMetadata, restoreCounters, restoreOptimizerState, torchOptimizerState, torchSettings, torchSteps } from './resume';
import type { Schedule } from './schedule';
import { savedSettings, savedUnder, settings } from './settings';
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
}

/** The two-layer net's parameters as a Trainer takes them. */
export type TwoLayerParams = Params;

/** The live two-layer tensors of a Trainer (shared memory), with the activation they were trained with. */
export type LiveParams = SavedParams & { activation: Activation };

/** What trainer.params is: the two-layer tensors, or a Sequential's W1, b1, …, WL, bL. */
export type TrainerParams<M> = M extends Sequential ? Readonly<Record<string, FloatArray>> : LiveParams;

export type ProgressEvent = ({ type: 'step' } & StepEvent) | ({ type: 'epoch' } & EpochRecord);

type Labelled = { X: FloatArray; y: ArrayLike<number> };

export interface FitOptions {
  /** Epochs to run (default 10); an epoch left in progress by an earlier stop is finished first and counts as one. */
  epochs?: number;
  /** A data set { X, y }: a loader's or trainValSplit's, whose other fields are ignored. */
  validation?: Labelled | (Labelled & Record<string, unknown>);
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
  'optimizer', 'lr', 'momentum', 'dampening', 'nesterov', 'beta1', 'beta2', 'epsilon', 'weightDecay', 'amsgrad', 'batchSize', 'seed', 'backend', 'activation', 'schedule',
] as const;
/** Trainer.load's: the constructor's, and opts.layers for a file that does not say its layers. */
const LOAD_OPTIONS = [...TRAINER_OPTIONS, 'layers'] as const;

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

  /** @throws {TypeError|RangeError} bad params or options, in the wording of every handgrad error */
  constructor(params: M, opts: TrainerOptions = {}) {
    const o = v.options('opts', opts, TRAINER_OPTIONS, v.NOT_YET_SUPPORTED);
    const given = params instanceof Sequential;
    this.twoLayer = !given;
    if (given && o.activation !== undefined) v.fail(TypeError, 'no opts.activation with a Sequential (its layers say it)', 'opts.activation', o.activation);
    const activation = activationOf(params, o.activation);
    const net = given ? params : twoLayerNet(params, activation);
    // Every number checked finite and in range here: a bad one is an error now, not NaN weights later.
    const { optimizer, lr, seed, backend, batchSize, schedule } = settings(o);
    const layers = net.spec().layers;
    const config = { dtype: net.dtype, D: net.inFeatures, C: net.classes, layers, batchSize, lr, seed, backend, optimizer, schedule };
    this.state = allocateState(config, net.params);
    // An unavailable backend fails here, not mid-fit.
    this.model = sequentialOf(this.state).prepare(backend);
    const s = this.state.params;
    this.params = (given
      ? this.model.params
      : { D: net.inFeatures, H: net.widths[1], C: net.classes, activation, W1: s.W1, b1: s.b1, W2: s.W2, b2: s.b2 }) as TrainerParams<M>;
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

  /** True while an async fit runs; every other call then throws ERR_BUSY. */
  get busy(): boolean {
    return this.running;
  }

  private enter(): void {
    if (this.running) throw new HandgradError('ERR_BUSY', 'This Trainer is running fit(); wait for it (or abort it) before calling it again');
  }

  private data(X: unknown, y: unknown, name = ''): Data {
    const c = this.state.config;
    const b = v.batch(X, y, { dtype: c.dtype, D: c.D, C: c.C }, name);
    v.assertFinite(`${name}X`, b.X);
    return { X: b.X, y: b.y };
  }

  /** Training data, which must be the size the epoch in progress (if any) was shuffled over. */
  private trainingData(X: unknown, y: unknown): Data {
    const d = this.data(X, y);
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
  private plan(given: FitOptions): [FitPlan, FitOptions] {
    const opts = v.options('opts', given, ['epochs', 'validation', 'onProgress', 'progressEvery', 'signal', 'earlyStop', 'shuffle'] as const, v.NOT_YET_SUPPORTED) as FitOptions;
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') v.fail(TypeError, 'a function', 'opts.onProgress', opts.onProgress);
    if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) v.fail(TypeError, 'an AbortSignal', 'opts.signal', opts.signal);
    // validation is a data set (a loader's or trainValSplit's, with fields of its own): X and y are
    // checked as the training data are; its keys only when X or y is missing (a misspelt key).
    const dataset = opts.validation as Partial<Data> | undefined;
    if (dataset !== undefined && (dataset === null || typeof dataset !== 'object')) v.fail(TypeError, 'a data set { X, y }', 'opts.validation', dataset);
    const val = dataset === undefined ? undefined : { X: dataset.X, y: dataset.y };
    if (val !== undefined && (val.X === undefined || val.y === undefined)) v.options('opts.validation', dataset, ['X', 'y'] as const);
    const es = opts.earlyStop === undefined ? undefined : (v.options('opts.earlyStop', opts.earlyStop, ['patience', 'minDelta'] as const) as { patience: number; minDelta?: number });
    if (es !== undefined) {
      v.dim('opts.earlyStop.patience', es.patience);
      if (es.minDelta !== undefined && !(typeof es.minDelta === 'number' && es.minDelta >= 0 && Number.isFinite(es.minDelta))) {
        v.fail(RangeError, 'a finite number ≥ 0', 'opts.earlyStop.minDelta', es.minDelta);
      }
    }
    const epochs = v.dim('opts.epochs', opts.epochs ?? 10);
    const progressEvery = opts.progressEvery === undefined ? 0 : v.dim('opts.progressEvery', opts.progressEvery);
    const shuffle = v.bool('opts.shuffle', opts.shuffle, true);
    return [{ epochs, progressEvery, shuffle, patience: es?.patience, minDelta: es?.minDelta ?? 0 }, { ...opts, validation: val as FitOptions['validation'] }];
  }

  /**
   * Trains on this thread; returns the per-epoch history.
   * @throws {TypeError|RangeError|HandgradError} bad arguments; a RangeError for a non-finite step (the weights are those after the last finite one); what onProgress threw
   */
  fitSync(X: FloatArray, y: ArrayLike<number>, given: FitOptions = {}): FitResult {
    this.enter();
    const [plan, opts] = this.plan(given);
    const data = this.trainingData(X, y);
    const validation = opts.validation ? this.data(opts.validation.X, opts.validation.y, 'validation.') : undefined;
    if (opts.signal?.aborted) return { history: [], stopped: 'aborted' };
    const onAbort = () => Atomics.store(this.state.control, STOP, 1);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return fitLoop(this.state, data, validation, plan, {
        step: opts.onProgress && ((e) => opts.onProgress!({ type: 'step', ...e })),
        epoch: opts.onProgress && ((r) => opts.onProgress!({ type: 'epoch', ...r })),
      });
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      Atomics.store(this.state.control, STOP, 0);
    }
  }

  /**
   * Trains in a worker thread, so the event loop stays free. X and y are copied on entry: changing
   * them afterwards does not affect this fit. The Trainer is busy (ERR_BUSY) until it settles.
   * Rejects with a RangeError for a non-finite step (the weights are those after the last finite
   * one), or with what onProgress threw.
   * @throws {TypeError|RangeError} synchronously, for bad arguments
   */
  fit(X: FloatArray, y: ArrayLike<number>, given: FitOptions = {}): Promise<FitResult> {
    this.enter();
    const [plan, opts] = this.plan(given);
    const copy = (d: Data): Data => {
      const Xc = sharedFloat(this.state.config.dtype, d.X.length);
      Xc.set(d.X);
      const yc = new Int32Array(new SharedArrayBuffer(4 * d.y.length));
      yc.set(d.y);
      return { X: Xc, y: yc };
    };
    const data = copy(this.trainingData(X, y));
    const validation = opts.validation ? copy(this.data(opts.validation.X, opts.validation.y, 'validation.')) : undefined;
    if (!existsSync(WORKER)) {
      throw new HandgradError('ERR_NOT_BUILT', `The training worker ${WORKER} is missing; run \`npm run setup\` to build dist/`);
    }
    if (opts.signal?.aborted) return Promise.resolve({ history: [], stopped: 'aborted' });
    this.running = true;
    return new Promise<FitResult>((resolve, reject) => {
      const worker = new Worker(WORKER, { workerData: { state: this.state, data, validation, plan } });
      let settled = false;
      // A throwing onProgress stops the run like an abort, and fit rejects with what it threw
      // (whatever the worker says after: its 'done' is the stop this caused). No event after it.
      let thrown: { value: unknown } | undefined;
      const progress = (e: ProgressEvent) => {
        if (thrown || !opts.onProgress) return;
        try {
          opts.onProgress(e);
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
        Atomics.store(this.state.control, STOP, 0);
        this.running = false;
        if (thrown) reject(thrown.value);
        else if (err) reject(err);
        else resolve(result!);
      };
      worker.on('message', (m: { type: string; event?: StepEvent; record?: EpochRecord; result?: FitResult; name?: string; message?: string; code?: string }) => {
        if (m.type === 'step') progress({ type: 'step', ...m.event! });
        else if (m.type === 'epoch') progress({ type: 'epoch', ...m.record! });
        else if (m.type === 'done') finish(null, m.result);
        else if (m.type === 'error') {
          const Kind = m.name === 'TypeError' ? TypeError : m.name === 'RangeError' ? RangeError : Error;
          finish(m.code ? new HandgradError(m.code as never, m.message!) : new Kind(m.message));
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

  /** Mean loss and accuracy on a data set (forward only). @throws {TypeError|RangeError|HandgradError} */
  evaluate(X: FloatArray, y: ArrayLike<number>, opts: { batchSize?: number } = {}): { loss: number; accuracy: number } {
    const o = v.options('opts', opts, ['batchSize'] as const);
    this.enter();
    const d = this.data(X, y);
    return this.model.score(d.X, d.y, o.batchSize === undefined ? this.state.config.batchSize : v.dim('opts.batchSize', o.batchSize), this.state.config.backend);
  }

  /**
   * Writes the parameters, the optimizer state, the counters and (stopped inside an epoch) the
   * position in it to a safetensors file, so a later Trainer.load continues exactly where this one
   * is: its fit on the same data gives the weights of a run never interrupted, bit for bit.
   * `layout: 'torch'` writes the parameters as the matching nn.Sequential's state_dict ("0.weight"
   * [out,in], …) and the optimizer state as optimizer.state_dict() has it ("optimizer.state.0.exp_avg",
   * …, the rest in the "optimizer" metadata: lib/train/resume.ts); Trainer.load resumes from either.
   * There `layers` names every module of the nn.Sequential, Dropout and Identity included, so the
   * indices are its own (a Trainer loaded from such a state_dict keeps them without it).
   * @throws {TypeError|RangeError} bad options
   * @throws {HandgradError} ERR_BUSY during fit; ERR_FILE when the file cannot be written
   */
  save(path: string, opts: { metadata?: Record<string, string>; layout?: Layout; layers?: readonly ModuleKind[] } = {}): void {
    const o = v.options('opts', opts, ['metadata', 'layout', 'layers'] as const);
    const layout = v.oneOf('opts.layout', o.layout, ['handgrad', 'torch'] as const, 'handgrad');
    const modules = torchModulesOption(o.layers, layout) ?? (layout === 'torch' ? this.modules : undefined);
    this.enter();
    const c = this.state.config;
    const tensors = sequentialTensors(this.model, layout, modules);
    let optimizer: Record<string, string> = {};
    if (layout === 'torch') {
      const t = torchOptimizerState(this.state);
      Object.assign(tensors, t.tensors);
      optimizer = t.metadata;
    } else {
      for (const k of this.state.names) {
        const slot = this.state.slots[k];
        if (slot.m) tensors[`optimizer.${k}.m`] = { shape: [slot.m.length], data: slot.m };
        if (slot.v) tensors[`optimizer.${k}.v`] = { shape: [slot.v.length], data: slot.v };
        if (slot.vmax) tensors[`optimizer.${k}.vmax`] = { shape: [slot.vmax.length], data: slot.vmax };
      }
    }
    saveSafetensors(path, tensors, {
      ...metadataOption(o.metadata),
      ...sequentialMetadata(this.model, layout, this.twoLayer ? (this.params as LiveParams).activation : undefined, modules),
      trainer: JSON.stringify({ optimizer: c.optimizer, lr: c.lr, batchSize: c.batchSize, seed: c.seed, backend: c.backend, schedule: c.schedule }),
      ...counterMetadata(this.state),
      ...optimizer,
    });
  }

  /**
   * A Trainer from a file written by save() (either layout: optimizer state and counters
   * restored), or from parameters alone (saveParams, saveSequential, a PyTorch state_dict) with
   * fresh optimizer state. A PyTorch state_dict records no activations: name them with
   * `layers` or `activation` as for loadSequential (options that contradict the file are an error).
   * The other `opts` override the saved settings. Every value read from the file is checked before use.
   * @throws {TypeError|RangeError} bad options
   * @throws {HandgradError} ERR_FILE for a missing or malformed file, a state_dict without its activations, or a setting, counter, position or optimizer state out of range (naming its key)
   */
  static load(path: string, opts: TrainerOptions & ArchitectureOptions = {}): Trainer<TwoLayerParams | Sequential> {
    const o = v.options('opts', opts, LOAD_OPTIONS, v.NOT_YET_SUPPORTED);
    const { layers, activation, ...rest } = o;
    const arch = architecture({ layers, activation });
    const file = loadSafetensors(path);
    const meta = file.metadata;
    // A file with a layers list (a Sequential's, even of two Linear layers) comes back as one; so
    // does any net but Linear, act, Linear.
    const p = meta.layers !== undefined || holdsSequential(file, path, arch, 'Trainer.load') ? sequentialFromFile(file, path, arch, 'Trainer.load') : paramsFromFile(file, path, arch, 'Trainer.load');
    // The saved settings and counters are checked before use (ERR_FILE naming the key); opts,
    // the caller's, override the settings and are checked as the constructor checks them.
    // (A file PyTorch wrote in the torch layout has no "trainer", but its "optimizer" says the settings.)
    const layout = layoutOf(file);
    const parameters = 2 * (p instanceof Sequential ? p.layers.filter((l) => l.kind === 'linear').length : 2);
    const saved = meta.trainer !== undefined ? asFileError(path, () => savedSettings(meta.trainer))
      : layout === 'torch' && meta.optimizer !== undefined ? torchSettings(meta.optimizer, path, parameters) : {};
    const act = p instanceof Sequential ? undefined : p.activation;
    const t = new Trainer<TwoLayerParams | Sequential>(p instanceof Sequential ? p : { D: p.D, H: p.H, C: p.C, W1: p.W1, b1: p.b1, W2: p.W2, b2: p.b2 }, { ...savedUnder(saved, rest), activation: act, ...rest } as TrainerOptions);
    // A state_dict with Dropout or Identity: saved in the torch layout, it keeps its indices.
    t.modules = fileNet(file, path, arch, 'Trainer.load').modules;
    restoreCounters(t.state, meta, path);
    if (layout === 'torch' && meta.steps === undefined) t.state.counters[COUNTER.steps] = torchSteps(file, path);
    // (AMSGrad switched on for a file saved without it starts its largest v afresh.)
    const opt = t.state.config.optimizer;
    const sameOptimizer = meta.trainer !== undefined && saved.optimizer === opt.name && (saved.amsgrad ?? false) === opt.amsgrad;
    restoreOptimizerState(t.state, file, path, sameOptimizer && t.state.counters[COUNTER.steps] > 0, layout);
    return t;
  }

  /** A copy of the parameters after a whole step (a new Sequential for a Sequential's), safe to keep while training goes on. */
  snapshot(): M extends Sequential ? Sequential : LiveParams {
    // Taken holding the parameters, which a step's update holds too: never half a step (during fit).
    return holdingParams(this.state, () => {
      if (!this.twoLayer) return sequentialCopy(this.model) as never;
      const p = this.params as LiveParams;
      return { D: p.D, H: p.H, C: p.C, activation: p.activation, W1: p.W1.slice(), b1: p.b1.slice(), W2: p.W2.slice(), b2: p.b2.slice() } as never;
    });
  }
}

