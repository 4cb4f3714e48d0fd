// `handgrad train`: trains on a built-in or CSV data set off the event loop (Trainer.fit), with a
// progress bar on a terminal, then writes the model as safetensors, the curves (and, for 2-D data,
// the decision boundary) as SVG and the history as JSON to --out. A trained model is never lost:
// --out is proven writable before training, the model is saved before anything else is written,
// and SIGINT/SIGTERM stop training between two steps and save it (exit 130/143).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { fileFail, fileTry } from '../data/files';
import { HandgradError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { blobs, fitStandardizer, loadDigits, loadMnist, readCsv, spirals, trainValSplit, xor } from '../data';
import type { Dataset } from '../data/dataset';
import { predict } from '../model';
import { modelInfoOption, type ModelFileOptions } from '../model-file';
import { initParams } from '../params';
import { decisionBoundarySvg, plotsUnavailable, trainingCurvesSvg } from '../plot';
import { Sequential } from '../layers/sequential';
import { type LiveParams, Trainer, type TwoLayerParams } from '../train/trainer';
import type { Dtype, FloatArray } from '../types';
import * as v from '../validate';
import { type Command, flags, Interrupted, numberFlag, seedFlag, STRING } from './command';
import { columnList, columnsNamed, firstRow, headerFlag, shownHeader } from './csv-columns';
import { optimizerConfig, type OptimizerName, type OptimizerOptions, OPTIMIZERS } from '../train/optimizer';

interface Prepared {
  name: string;
  train: { X: FloatArray; y: Int32Array };
  val?: { X: FloatArray; y: Int32Array };
  D: number;
  C: number;
  /** What the model file keeps to use the net on raw rows: the standardizer fitted here, class and column names. */
  file: ModelFileOptions;
  /** Settings that suit the set, used where the command line says nothing. */
  defaults: { hidden: number; epochs: number; lr: number; batch: number; optimizer: OptimizerName };
}

const BUILT_IN = ['xor', 'spirals', 'blobs', 'digits', 'mnist'] as const;

/** X in the --dtype the network is made in (the generated sets and CSV are float64). */
const inDtype = (X: FloatArray, dtype: Dtype): FloatArray => (dtype === 'float32' && !(X instanceof Float32Array) ? Float32Array.from(X) : X);

function split(name: string, d: Dataset<FloatArray>, seed: number, standardize: boolean, dtype: Dtype, defaults: Prepared['defaults'], names: Omit<ModelFileOptions, 'preprocess'> = {}): Prepared {
  const { train, val } = trainValSplit(inDtype(d.X, dtype), d.y, d.D, { fraction: 0.2, seed });
  const z = standardize ? fitted(train.X, d.D, name, names.features) : null; // fitted on train only, applied to both
  const part = ({ X, y }: { X: FloatArray; y: Int32Array }) => ({ X: z ? z.apply(X) : X, y });
  // The model file keeps the statistics, so `handgrad predict` and loadModel take raw rows.
  const file = { ...names, ...(z ? { preprocess: { mean: z.mean, std: z.std } } : {}) };
  savable(file, d.D, d.C, name);
  return { name, train: part(train), val: part(val), D: d.D, C: d.C, file, defaults };
}

/**
 * fitStandardizer on the training rows; its refusals (which name its argument X and "column j of
 * X") name --data and the CSV's column: a column whose standard deviation has no finite reciprocal
 * (values such as 0 and 2e-310), which the model file would refuse, is refused here, before training.
 */
function fitted(X: FloatArray, D: number, data: string, features: readonly string[] | undefined) {
  try {
    return fitStandardizer(X, D);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    const message = features ? err.message.replace(/\bcolumn (\d+) of X\b/, (_, j: string) => `column ${JSON.stringify(features[Number(j)])} of --data`) : err.message;
    throw new HandgradError('ERR_FILE', `${message} (the standardizer fitted on the training rows of --data ${data})`, { cause: err });
  }
}

/**
 * A CSV's header names, as the model file will keep them: each non-empty (predict finds columns
 * by name) and each spelled once, the label's too (the file refuses a label named like a
 * feature). Checked before training: the save refusing them would lose the run.
 * @throws {HandgradError} ERR_FILE naming --data and the column
 */
function headerNames(data: string): void {
  const first = firstRow(data)!; // a header was read, so there is a first row
  first.cells.forEach((f, j) => {
    if (f === '') fileFail('a name for every column of the header (predict finds the columns by name)', `--data ${data}`, `an empty name for column ${j + 1} of ${shownHeader(first)}`, undefined);
    if (first.cells.indexOf(f) !== j) {
      fileFail('distinct column names (predict finds the columns by name)', `--data ${data}`, `${JSON.stringify(f)} for columns ${columnList(columnsNamed(first.cells, f))} of ${shownHeader(first)}`, undefined);
    }
  });
}

/**
 * The save's own checks of what the model file will hold (modelInfoOption, as Trainer.save runs
 * it), run on the planned fields before training: whatever else the file format refuses is then
 * refused now, never after the run (the cases a CSV can cause are said in its terms above).
 * @throws {HandgradError} ERR_FILE naming --data
 */
function savable(file: ModelFileOptions, D: number, C: number, data: string): void {
  try {
    modelInfoOption(file, D, C);
  } catch (err) {
    if (!(err instanceof TypeError || err instanceof RangeError)) throw err;
    throw new HandgradError('ERR_FILE', `${err.message}: the model file of --data ${data} could not be saved (refused before training)`, { cause: err });
  }
}

const INTEGER = /^[+-]?\d+$/;

/**
 * The label column of a CSV as --label, --label-index and --header choose it, checked against the
 * file's first row so that every error names the flag the user typed (readCsv's name opts.label).
 *
 * --label COL is a column name when the first row spells a cell so (that row is then the header);
 * otherwise an integer is a 0-based index (negative from the end), as before names could be
 * numbers. An integer that is both a cell of the first row and an index in range is ambiguous
 * (a header "2019,2020,…" or a first row of data?) and refused unless --header says which:
 * --header true reads it as the name, --header false (or --label-index N) as the index.
 * @throws {RangeError|TypeError} naming --label, --label-index or --header
 * @throws {HandgradError} ERR_FILE: the file cannot be read
 */
export function labelColumn(data: string, name: string | undefined, index: string | undefined, header: 'auto' | boolean): { label?: string | number; header: 'auto' | boolean } {
  if (name !== undefined && index !== undefined) v.fail(TypeError, 'either --label or --label-index, not both', '--label-index', index);
  if (name === '') v.fail(RangeError, 'a column name or a 0-based column index', '--label', name);
  if (name === undefined && index === undefined) return { header };
  const first = firstRow(data);
  if (first === undefined) return { header }; // no records: readCsv's own error (an empty file) follows
  const ncols = first.cells.length;
  const inRange = (k: number) => k >= -ncols && k < ncols;
  const range = `[${-ncols}, ${ncols}) (the file has ${ncols} columns on line ${first.line})`;
  if (index !== undefined) {
    const k = numberFlag('--label-index', index, `a 0-based column index in ${range}`, (n, t) => INTEGER.test(t.trim()) && inRange(n));
    return { label: k, header };
  }
  const label = name!;
  const at = header === false ? [] : columnsNamed(first.cells, label);
  const asIndex = INTEGER.test(label) ? Number(label) : undefined;
  if (at.length > 1) v.fail(RangeError, `one column named ${JSON.stringify(label)}`, '--label', new v.Received(`columns ${columnList(at)} of ${shownHeader(first)} (${data})`));
  if (at.length === 1) {
    if (asIndex !== undefined && header === 'auto' && inRange(asIndex)) {
      v.fail(RangeError, `one reading of --label ${label}`, '--label', new v.Received(
        `both the name of column ${at[0] + 1} of the first row (line ${first.line}) and a 0-based index (column ${(asIndex < 0 ? ncols + asIndex : asIndex) + 1}): ` +
        `add --header true to mean the name, or use --label-index ${label} for the index`));
    }
    return { label, header: header === 'auto' ? true : header };
  }
  if (asIndex !== undefined) {
    if (!inRange(asIndex)) {
      v.fail(RangeError, `a column name or a 0-based column index in ${range}`, '--label', new v.Received(`${label} (no column of the first row is named so, ${data})`));
    }
    return { label: asIndex, header };
  }
  if (header === false) v.fail(RangeError, `a 0-based column index in ${range} (with --header false the columns have no names)`, '--label', label);
  return v.fail(RangeError, `a column named ${JSON.stringify(label)} or a 0-based column index`, '--label', new v.Received(`${shownHeader(first)} (${data})`));
}

/** The data set named on the command line, split and scaled, with its default settings. */
export function prepare(data: string, opts: { seed: number; label?: string; labelIndex?: string; header?: 'auto' | boolean; dtype: Dtype }): Prepared {
  const seed = opts.seed;
  switch (data) {
    case 'xor': {
      // The seed's setting: full batch, evaluated on the training points.
      const d = xor({ seed });
      return { name: 'xor', train: { X: inDtype(d.X, opts.dtype), y: d.y }, D: 2, C: 2, file: {}, defaults: { hidden: 8, epochs: 3000, lr: 0.5, batch: d.y.length, optimizer: 'sgd' } };
    }
    case 'spirals':
      return split('spirals', spirals({ n: 600, seed }), seed, false, opts.dtype, { hidden: 64, epochs: 400, lr: 0.01, batch: 32, optimizer: 'adam' });
    case 'blobs':
      return split('blobs', blobs({ n: 600, classes: 4, seed }), seed, true, opts.dtype, { hidden: 16, epochs: 30, lr: 0.1, batch: 32, optimizer: 'sgd' });
    case 'digits':
      // The data set's README: 64→64→10, ReLU, SGD lr 0.1, batch 32, 60 epochs reached 99%.
      return split('digits', loadDigits({ dtype: opts.dtype }), seed, false, opts.dtype, { hidden: 64, epochs: 60, lr: 0.1, batch: 32, optimizer: 'sgd' });
    case 'mnist': {
      const m = loadMnist({ dtype: opts.dtype });
      return { name: 'mnist', train: m.train, val: m.test, D: m.train.D, C: m.train.C, file: {}, defaults: { hidden: 256, epochs: 5, lr: 0.05, batch: 128, optimizer: 'momentum' } };
    }
    default: {
      const { label, header } = labelColumn(data, opts.label, opts.labelIndex, opts.header ?? 'auto');
      const d = readCsv(data, { ...(label !== undefined ? { label } : {}), header });
      if (d.header) headerNames(data);
      // trainValSplit's own error would name its argument y.
      if (d.y.length < 2) fileFail('at least 2 data rows (a CSV is split 80/20 into training and validation rows)', `--data ${data}`, `${d.y.length} row`, undefined);
      // Class names in id order (the ids themselves when the labels are numbers), the columns by name.
      const classes = d.classNames ?? Array.from({ length: d.C }, (_, c) => String(c));
      return split(data, d, seed, true, opts.dtype, { hidden: 64, epochs: 50, lr: 1e-3, batch: 32, optimizer: 'adam' }, { classes, features: d.featureNames, label: d.labelName });
    }
  }
}

// The numeric flags are checked here, before any data are loaded, so that an error names the flag
// rather than the Trainer option it becomes. Number('') is 0: a blank value is refused by name.
const count = (name: string, s: string | undefined) =>
  s === undefined ? undefined : numberFlag(`--${name}`, s, 'a positive integer', (n, t) => t.trim() !== '' && Number.isInteger(n) && n >= 1 && n <= 0x7fffffff);

/**
 * Creates the --out folder and writes and removes a probe file in it, before any training: a path
 * under a regular file, a read-only disk or a full one then costs a second, not the run.
 * @throws {HandgradError} ERR_FILE naming the folder
 */
function writableFolder(dir: string): void {
  const probe = join(dir, `.handgrad-probe-${process.pid}`);
  fileTry(() => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(probe, '');
    rmSync(probe);
  }, 'a folder that can be created and written', `--out ${dir}`);
}

/** fn(), with a failed ArrayBuffer allocation or a weight past 2^32 − 1 elements (RangeErrors that name no flag) put in terms of the flags that sized it. */
function sizedByFlags<T>(fn: () => T, sizes: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError && /allocation failed|Invalid typed array length|^Expected at most \d+ elements for W\d+ /.test(err.message)) {
      v.fail(RangeError, 'a network and batch that fit in memory', '--hidden/--layers and --batch', new v.Received(`${sizes} (${err.message})`));
    }
    throw err;
  }
}

type StopSignal = 'SIGINT' | 'SIGTERM';

/**
 * SIGINT/SIGTERM abort the fit (which stops between two steps) instead of ending the process, so
 * the model can be saved. The handlers stay until release(), after the save: a second signal is
 * only acknowledged, since the save is synchronous (no handler runs during it) and atomic, and
 * leaving before it ends would lose the run.
 */
function stopOnSignals(tell: (line: string) => void) {
  const controller = new AbortController();
  let received: StopSignal | undefined;
  const on = (signal: StopSignal) => {
    if (received) return tell(`${signal} again: still stopping and saving the model, a moment`);
    received = signal;
    tell(`${signal}: stopping after the current step to save the model`);
    controller.abort();
  };
  const onInt = () => on('SIGINT');
  const onTerm = () => on('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return {
    signal: controller.signal,
    received: () => received,
    release: () => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    },
  };
}

/**
 * Saves the trainer to DIR/model.safetensors; when that fails, to the temporary folder, so a file
 * error never costs the run. Returns the path. @throws {HandgradError} ERR_FILE saying where it went
 */
function saveModel(trainer: Trainer<TwoLayerParams | Sequential>, dir: string, file: ModelFileOptions): string {
  const path = join(dir, 'model.safetensors');
  try {
    trainer.save(path, file);
    return path;
  } catch (err) {
    const rescue = join(tmpdir(), `handgrad-model-${process.pid}-${Date.now()}.safetensors`);
    try {
      trainer.save(rescue, file);
    } catch {
      throw err;
    }
    throw new HandgradError('ERR_FILE', `${(err as Error).message}; the model was saved to ${rescue} instead`, { cause: err });
  }
}

/** The flag that sets each optimizer option (errors name the flag, not the option). */
const OPTIMIZER_FLAG: Record<string, string> = {
  momentum: '--momentum', dampening: '--dampening', nesterov: '--nesterov',
  beta1: '--betas[0]', beta2: '--betas[1]', epsilon: '--eps', amsgrad: '--amsgrad', weightDecay: '--weight-decay',
};

/**
 * The optimizer options given on the command line (torch.optim's: --momentum, --dampening,
 * --nesterov; --betas B1,B2, --eps, --amsgrad; --weight-decay), each a finite number or a switch;
 * their ranges and their optimizer are checked once the optimizer is known (optimizerFlags).
 */
function optimizerFlagValues(values: Record<string, string | boolean | undefined>): OptimizerOptions {
  const num = (flag: string, text: string | boolean | undefined) =>
    text === undefined ? undefined : numberFlag(flag, text as string, 'a finite number', (n, t) => t.trim() !== '' && Number.isFinite(n));
  let betas: [number | undefined, number | undefined] = [undefined, undefined];
  if (values.betas !== undefined) {
    const parts = (values.betas as string).split(',');
    if (parts.length !== 2) v.fail(RangeError, 'two numbers B1,B2 (torch.optim.Adam\'s betas, e.g. 0.9,0.999)', '--betas', values.betas);
    betas = [num('--betas[0]', parts[0]), num('--betas[1]', parts[1])];
  }
  const o: Record<string, unknown> = {
    momentum: num('--momentum', values.momentum), dampening: num('--dampening', values.dampening),
    nesterov: values.nesterov, amsgrad: values.amsgrad, beta1: betas[0], beta2: betas[1],
    epsilon: num('--eps', values.eps), weightDecay: num('--weight-decay', values['weight-decay']),
  };
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o as OptimizerOptions;
}

/** The options given, as the first line prints them: " (momentum 0.9, nesterov)". */
function optimizerSummary(cfg: ReturnType<typeof optimizerConfig>, given: OptimizerOptions): string {
  const parts: string[] = [];
  for (const k of Object.keys(OPTIMIZER_FLAG) as (keyof OptimizerOptions)[]) {
    if (given[k] === undefined || k === 'beta2') continue;
    if (k === 'beta1') parts.push(`betas ${cfg.beta1},${cfg.beta2}`);
    else if (typeof given[k] === 'boolean') parts.push(given[k] ? k : `no ${k}`);
    else parts.push(`${OPTIMIZER_FLAG[k].slice(2)} ${given[k]}`);
  }
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** Runs one training as the command describes; returns the trainer and where the files went. */
export async function runTraining(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`)) {
  const { values } = flags('train', argv, {
    data: { type: 'string', default: 'xor' },
    label: STRING, 'label-index': STRING, header: { type: 'string', default: 'auto' }, hidden: STRING, layers: STRING, epochs: STRING, lr: STRING, batch: STRING, optimizer: STRING,
    activation: { type: 'string', default: 'relu' }, backend: { type: 'string', default: 'native' },
    dtype: { type: 'string', default: 'float64' }, seed: { type: 'string', default: '0' },
    out: STRING, quiet: { type: 'boolean', default: false },
    momentum: STRING, dampening: STRING, nesterov: { type: 'boolean' }, betas: STRING, eps: STRING, amsgrad: { type: 'boolean' },
    'weight-decay': STRING, exact: { type: 'boolean', default: false },
  });
  const dtype = v.oneOf('--dtype', values.dtype, ['float64', 'float32'] as const, 'float64');
  const seed = seedFlag(values.seed);
  const given = { hidden: count('hidden', values.hidden), epochs: count('epochs', values.epochs), batch: count('batch', values.batch) };
  const givenLr = values.lr === undefined ? undefined : numberFlag('--lr', values.lr, 'a positive finite number', (n) => n > 0 && Number.isFinite(n));
  const givenOptimizer = values.optimizer === undefined ? undefined : v.oneOf('--optimizer', values.optimizer, OPTIMIZERS, 'sgd');
  const optimizerOptions = optimizerFlagValues(values);
  // Checked now when --optimizer is given (before any data is read); otherwise once the data set's default is known.
  const checkOptimizer = (optimizer: OptimizerName) => optimizerConfig({ optimizer, ...optimizerOptions }, 'opts', '--optimizer', (k) => OPTIMIZER_FLAG[k]);
  if (givenOptimizer) checkOptimizer(givenOptimizer);
  const activation = v.oneOf('--activation', values.activation, v.ACTIVATIONS, 'relu');
  const backend = v.oneOf('--backend', values.backend, v.BACKENDS, 'native');
  const exact = v.exactOption('--exact', values.exact, backend);
  const builtIn = BUILT_IN.includes(values.data as never);
  if (values.label !== undefined && builtIn) v.fail(TypeError, '--label only with a CSV file', '--data', values.data);
  if (values['label-index'] !== undefined && builtIn) v.fail(TypeError, '--label-index only with a CSV file', '--data', values.data);
  const header = headerFlag(values.header);
  if (header !== 'auto' && builtIn) v.fail(TypeError, '--header only with a CSV file', '--data', values.data);
  if (values.layers !== undefined && values.hidden !== undefined) v.fail(TypeError, 'either --hidden or --layers, not both', '--layers', values.layers);
  // --layers 64,128,64: the hidden widths of a Sequential D → 64 → 128 → 64 → C.
  const layers = values.layers === undefined ? null : values.layers.split(',').map((w, i) => v.dim(`--layers[${i}]`, w.trim() === '' ? NaN : Number(w)));
  if (values.out === '') v.fail(RangeError, 'a folder path', '--out', values.out); // '' would resolve to the working folder
  const outDir = resolve(values.out ?? join('handgrad-out', builtIn ? values.data! : 'csv'));
  writableFolder(outDir);

  const data = prepare(values.data!, { seed, label: values.label, labelIndex: values['label-index'], header, dtype });
  const d = data.defaults;
  const hidden = given.hidden ?? d.hidden;
  const epochs = given.epochs ?? d.epochs;
  const batch = given.batch ?? d.batch;
  const optimizer = givenOptimizer ?? d.optimizer;
  let resolved;
  try {
    resolved = checkOptimizer(optimizer);
  } catch (err) {
    // The user named no optimizer: say whose it is.
    if (err instanceof Error) err.message += ` ('${optimizer}' is the default optimizer for ${data.name}; choose another with --optimizer)`;
    throw err;
  }
  const lr = givenLr ?? d.lr;
  const widths = [data.D, ...(layers ?? [hidden]), data.C];
  const trainer = sizedByFlags(() => {
    const model = layers ? Sequential.mlp(widths, { activation, seed, dtype }) : initParams({ D: data.D, H: hidden, C: data.C }, { seed, dtype });
    return new Trainer<TwoLayerParams | Sequential>(model, {
      optimizer, ...optimizerOptions, lr, batchSize: batch, seed, backend, exact,
      ...(layers ? {} : { activation }), // a Sequential's layers carry it
    });
  }, `${widths.join(' → ')}, batch ${batch}`);
  const n = data.train.y.length;
  const stepsPerEpoch = Math.ceil(n / batch);
  out(`${data.name}: ${n} training examples${data.val ? `, ${data.val.y.length} validation` : ''}, ${widths.join(' → ')}, ` +
    `${activation}, ${optimizer}${optimizerSummary(resolved, optimizerOptions)} lr ${lr}, batch ${batch}, ${epochs} epochs, ${dtype}, backend ${backend}${exact ? ' (exact: PyTorch\'s bits)' : ''}`);

  const tty = process.stdout.isTTY && !values.quiet;
  const bar = tty ? new SingleBar({ format: '  {bar} {percentage}% | epoch {epoch}/{epochs} | loss {loss} | {eta_formatted} left', hideCursor: true }) : null;
  bar?.start(epochs * stepsPerEpoch, 0, { epoch: 0, epochs, loss: '—' });
  const every = Math.max(1, Math.floor((epochs * stepsPerEpoch) / 200));
  const printEvery = Math.max(1, Math.floor(epochs / 10));
  const started = process.hrtime.bigint();
  const stop = stopOnSignals((line) => {
    bar?.stop(); // the bar would redraw over the line
    process.stderr.write(`handgrad train: ${line}\n`);
  });
  let result;
  let modelPath;
  try {
    result = await trainer.fit(data.train.X, data.train.y, {
      epochs, validation: data.val, progressEvery: every, signal: stop.signal,
      onProgress: (e) => {
        if (e.type === 'step') bar?.update((e.epoch - 1) * stepsPerEpoch + e.step, { epoch: e.epoch, loss: e.loss.toFixed(4) });
        else if (!bar && !values.quiet && (e.epoch % printEvery === 0 || e.epoch === epochs)) {
          const val = e.valLoss === undefined ? '' : `  val loss ${e.valLoss.toFixed(4)}  val acc ${(100 * e.valAccuracy!).toFixed(2)}%`;
          out(`  epoch ${String(e.epoch).padStart(5)}  loss ${e.loss.toFixed(4)}  acc ${(100 * e.accuracy).toFixed(2)}%${val}`);
        }
      },
    });
    bar?.stop();
    // The model first: nothing written after it (plots, history) can lose the run.
    const signal = stop.received();
    modelPath = saveModel(trainer, outDir, { ...data.file, ...(signal ? { metadata: { stopped: signal } } : {}) });
    if (signal) {
      throw new Interrupted(signal, `stopped by ${signal} after ${trainer.steps} steps (${trainer.epochs} whole epochs); ` +
        `saved the model so far to ${modelPath} (Trainer.load continues from it)`);
    }
  } finally {
    bar?.stop();
    stop.release();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const trainEval = trainer.evaluate(data.train.X, data.train.y);
  const valEval = data.val ? trainer.evaluate(data.val.X, data.val.y) : undefined;
  out(`  ${result.stopped} after ${result.history.length} epochs (${trainer.steps} steps) in ${seconds.toFixed(2)} s`);
  out(`  train loss ${trainEval.loss.toFixed(4)}, accuracy ${(100 * trainEval.accuracy).toFixed(2)}%` +
    (valEval ? `; validation loss ${valEval.loss.toFixed(4)}, accuracy ${(100 * valEval.accuracy).toFixed(2)}%` : ''));

  const files: string[] = [modelPath];
  const write = (name: string, content: string) => {
    writeFileAtomic(join(outDir, name), content);
    files.push(join(outDir, name));
  };
  try {
    const noPlots = plotsUnavailable(); // vega, vega-lite are optionalDependencies: skipped, said on stderr
    if (noPlots !== null) process.stderr.write(`handgrad train: ${noPlots}\n`);
    else write('curves.svg', await trainingCurvesSvg(result.history, `${data.name}: loss and accuracy per epoch`));
    if (noPlots === null && data.D === 2) {
      const A = dtype === 'float64' ? Float64Array : Float32Array;
      const seq = trainer.model;
      const classify = (grid: Float64Array) => (seq ? seq.predict(A.from(grid)) : predict(trainer.params as LiveParams, A.from(grid), { activation }));
      write('boundary.svg', await decisionBoundarySvg(data.train.X, data.train.y, classify, `${data.name}: decision regions`));
    }
    write('history.json', `${JSON.stringify(result, null, 1)}\n`);
  } catch (err) {
    // The error keeps its kind and code (cli.ts words it); the user learns the model is safe.
    if (err instanceof Error) err.message += ` (the model is saved: ${modelPath})`;
    throw err;
  }
  out(`  wrote ${files.join(', ')}`);
  return { trainer, accuracy: trainEval.accuracy, valAccuracy: valEval?.accuracy, files };
}

export const train: Command = {
  summary: 'train on xor|spirals|blobs|digits|mnist|FILE.csv (--layers 64,128,64 for a deeper net); writes curves, boundary, model to --out',
  help: `usage: handgrad train [options]

Trains off the event loop (a progress bar on a terminal, epoch lines otherwise), then writes
curves.svg, boundary.svg (2-D data), history.json and model.safetensors to --out: one model file
with the standardizer fitted here and, for a CSV, the class and column names, which
\`handgrad predict\` and loadModel use on raw rows. Settings not given take the data set's own
defaults (printed on the first line).

  --data xor|spirals|blobs|digits|mnist|FILE.csv   (default xor; a CSV is split 80/20 and standardized)
  --label COL                  the CSV's label column (default the last): a name when the first row
                               has a cell spelled so, else an integer is a 0-based index (negative
                               from the end); both at once is an error unless --header says which
  --label-index N              the label column by 0-based index only (not with --label)
  --header true|false|auto     whether the first row names the columns (default auto: it does when
                               --label names a column or a feature cell of the first row is not a
                               number); without one, the columns are named col1, col2, …
  --hidden N                   the two-layer net's hidden width
  --layers W1,W2,…             a Sequential D → W1 → W2 → … → C instead (not with --hidden)
  --epochs N, --lr X, --batch N
  --optimizer sgd|momentum|nesterov|adam|adamw
                               the data set's default otherwise; torch.optim's options, each only
                               with its own optimizer (another's is an error, as in PyTorch):
  --momentum X, --dampening X, --nesterov   SGD's (momentum 0, or 0.9 for momentum|nesterov;
                               dampening 0; Nesterov needs momentum > 0 and dampening 0)
  --betas B1,B2, --eps X, --amsgrad         Adam's and AdamW's (0.9,0.999; 1e-8; off)
  --weight-decay X             both (0; 0.01 for adamw): L2 for sgd/adam, decoupled for adamw
  --activation relu|sigmoid|tanh   (default relu)
  --backend native|ts|torch|wasm   (default native)
  --exact                      every step bit for bit PyTorch's (native or torch; 1.2–1.4× slower)
  --dtype float64|float32      (default float64)
  --seed N                     (default 0)
  --out DIR                    (default handgrad-out/<data>)
  --quiet                      no progress output
`,
  async run(argv) {
    await runTraining(argv);
    return 0;
  },
};
