// One model file: what it takes to use a trained net on raw data, in one safetensors file (the
// Keras-format idea: a file that says how to rebuild and use the model). It holds the Linear
// tensors and checkpoint.ts's metadata (layers, activations, dtype, loss: sequentialMetadata, the
// one format), and beside them:
//   tensors  preprocess.mean [D], preprocess.std [D]  (F64: x ↦ (x − mean) / std, by column)
//   metadata preprocess "standardize", classes (JSON [C] names, class id order), features (JSON
//            [D] column names), label (the label column's name), and the user's own string keys.
// A Trainer checkpoint is this file plus the optimizer state and counters (loadModel reads one and
// ignores them); Trainer.load reads a model file as a fresh Trainer. Everything read back is checked
// (ERR_FILE naming the key): a file is data, not a promise.
import { fileFail } from './data/files';
import type { Standardizer } from './data/standardize';
import { metadataOption, RESERVED_KEYS, sequentialFromFile, sequentialMetadata, sequentialTensors } from './checkpoint';
import { type ArchitectureOptions, architecture } from './io/layers';
import { loadSafetensors, readSafetensors, saveSafetensors, type SafetensorsFile, type TensorInput, tensorOf, writeSafetensors } from './io/safetensors';
import { Sequential } from './layers/sequential';
import { activationOf, twoLayerNet } from './model';
import type { Activation, BackendName, FloatArray } from './types';
import * as v from './validate';

/** Per-column standardization: x ↦ (x − mean) / std. */
export interface Preprocess {
  mean: Float64Array;
  std: Float64Array;
}

/** What a model file holds besides the net (saveModel's and Trainer.save's options). */
export interface ModelFileOptions {
  /** The standardizer fitted on the training data: fitStandardizer's result, or { mean, std } ([D] each, finite, std > 0). */
  preprocess?: Preprocess | Standardizer | { mean: ArrayLike<number>; std: ArrayLike<number> };
  /** The class names, in class id order (C distinct non-empty strings). */
  classes?: readonly string[];
  /** The feature (column) names, in the order of X's columns (D distinct strings). */
  features?: readonly string[];
  /** The label column's name (what `handgrad predict` scores against when a CSV has it). */
  label?: string;
  /** The user's own string metadata (keys the format uses are refused). */
  metadata?: Record<string, string>;
}

/** The checked fields of a model file besides the net. */
export interface ModelInfo {
  preprocess?: Readonly<Preprocess>;
  classes?: readonly string[];
  features?: readonly string[];
  label?: string;
  metadata: Readonly<Record<string, string>>;
}

export const MODEL_FILE_OPTIONS = ['preprocess', 'classes', 'features', 'label', 'metadata'] as const;

/** Metadata keys the format writes (checkpoint.ts holds the list and the rule, for every writer). */
export { RESERVED_KEYS };
/** What a std must be besides > 0: one whose reciprocal is finite (no subnormal below 2^-1024). */
const TINY_STD = 'values whose reciprocal is finite (a std ≥ 5.6e-309)';
const MEAN = 'preprocess.mean';
const STD = 'preprocess.std';

/** A list of distinct, non-empty strings of length n. @throws {TypeError|RangeError} */
function names(name: string, x: unknown, n: number, what: string): string[] {
  if (!Array.isArray(x)) v.fail(TypeError, `an array of ${n} ${what}`, name, x);
  if (x.length !== n) v.fail(RangeError, `${n} ${what}`, name, new v.Received(`${x.length}`));
  const seen = new Set<string>();
  x.forEach((s, i) => {
    if (typeof s !== 'string' || s === '') v.fail(TypeError, 'a non-empty string', `${name}[${i}]`, s);
    if (seen.has(s)) v.fail(RangeError, 'distinct names', `${name}[${i}]`, new v.Received(`${JSON.stringify(s)} a second time`));
    seen.add(s);
  });
  return x.slice();
}

/** A [D] vector of finite numbers (positive for a std) as a new Float64Array. @throws {TypeError|RangeError} */
function vector(name: string, x: unknown, D: number, positive: boolean): Float64Array {
  if (!(x instanceof Float64Array || x instanceof Float32Array || Array.isArray(x))) v.fail(TypeError, `a Float64Array (or an array) of ${D} numbers`, name, x);
  const a = x as ArrayLike<unknown>;
  if (a.length !== D) v.fail(RangeError, `${D} numbers (D, the net's inputs)`, name, new v.Received(`${a.length}`));
  const out = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    const e = a[j];
    // A std whose reciprocal overflows (a subnormal, 5e-324) makes (x − mean) / std infinite for any x ≠ mean.
    if (typeof e !== 'number' || !Number.isFinite(e) || (positive && !(e > 0))) v.fail(RangeError, positive ? 'finite numbers > 0' : 'finite numbers', `${name}[${j}]`, e);
    if (positive && !Number.isFinite(1 / e)) v.fail(RangeError, TINY_STD, `${name}[${j}]`, e);
    out[j] = e;
  }
  return out;
}

/**
 * The options of saveModel / Trainer.save that describe the model, checked against the net's D and C.
 * @throws {TypeError|RangeError} naming the option
 */
export function modelInfoOption(o: { readonly [K in (typeof MODEL_FILE_OPTIONS)[number]]?: unknown }, D: number, C: number): ModelInfo {
  const info: { -readonly [K in keyof ModelInfo]: ModelInfo[K] } = { metadata: {} };
  if (o.preprocess !== undefined) {
    const p = o.preprocess;
    if (p === null || typeof p !== 'object') v.fail(TypeError, 'a standardizer { mean, std } (fitStandardizer\'s result)', 'opts.preprocess', p);
    // fitStandardizer's result carries D and apply besides mean and std: they say nothing more.
    const keys = typeof (p as Standardizer).apply === 'function' ? ['mean', 'std', 'D', 'apply'] as const : ['mean', 'std'] as const;
    const q = v.options('opts.preprocess', p, keys as readonly string[]) as { mean?: unknown; std?: unknown; D?: unknown };
    if (q.D !== undefined && q.D !== D) v.fail(RangeError, `a standardizer of D = ${D} columns (the net's inputs)`, 'opts.preprocess.D', q.D);
    info.preprocess = { mean: vector('opts.preprocess.mean', q.mean, D, false), std: vector('opts.preprocess.std', q.std, D, true) };
  }
  if (o.classes !== undefined) info.classes = names('opts.classes', o.classes, C, `class names (C, the net's outputs)`);
  if (o.features !== undefined) info.features = names('opts.features', o.features, D, `feature names (D, the net's inputs)`);
  if (o.label !== undefined) {
    if (typeof o.label !== 'string' || o.label === '') v.fail(TypeError, 'a non-empty string', 'opts.label', o.label);
    if (info.features?.includes(o.label)) v.fail(RangeError, 'a column other than the features', 'opts.label', o.label);
    info.label = o.label;
  }
  const meta = metadataOption(o.metadata); // reserved keys refused there
  info.metadata = { ...meta };
  return info;
}

/** The tensors and metadata entries of a model file's fields besides the net. */
export function modelInfoEntries(info: ModelInfo): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const tensors: Record<string, TensorInput> = {};
  const metadata: Record<string, string> = { ...info.metadata };
  if (info.preprocess) {
    tensors[MEAN] = { dtype: 'F64', shape: [info.preprocess.mean.length], data: info.preprocess.mean };
    tensors[STD] = { dtype: 'F64', shape: [info.preprocess.std.length], data: info.preprocess.std };
    metadata.preprocess = 'standardize';
  }
  if (info.classes) metadata.classes = JSON.stringify(info.classes);
  if (info.features) metadata.features = JSON.stringify(info.features);
  if (info.label !== undefined) metadata.label = info.label;
  return { tensors, metadata };
}

/** A JSON list of n distinct non-empty strings from the metadata. @throws {HandgradError} ERR_FILE */
function savedNames(file: SafetensorsFile, key: string, n: number, what: string, source: string): string[] | undefined {
  const text = file.metadata[key];
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const name = `__metadata__.${key}`;
  if (!Array.isArray(parsed)) fileFail(`a JSON array of ${n} ${what}`, name, JSON.stringify(text.slice(0, 80)), source);
  if (parsed.length !== n) fileFail(`${n} ${what}`, name, `${parsed.length}`, source);
  const seen = new Set<string>();
  parsed.forEach((s, i) => {
    if (typeof s !== 'string' || s === '') fileFail('a non-empty string', `${name}[${i}]`, v.describe(s), source);
    if (seen.has(s)) fileFail('distinct names', `${name}[${i}]`, `${JSON.stringify(s)} a second time`, source);
    seen.add(s);
  });
  return parsed as string[];
}

/** A saved [D] F64 vector, finite (and > 0 for a std). @throws {HandgradError} ERR_FILE naming the tensor */
function savedVector(file: SafetensorsFile, name: string, D: number, positive: boolean, source: string): Float64Array {
  const t = tensorOf(file, name, ['F64'], source);
  if (t.shape.length !== 1 || t.shape[0] !== D) fileFail(`shape [${D}] (D, the net's inputs)`, `tensor ${JSON.stringify(name)}`, `[${t.shape}]`, source);
  const data = t.data as Float64Array;
  for (let j = 0; j < D; j++) {
    // A std whose reciprocal overflows (a subnormal, 5e-324) makes every standardized value
    // infinite, which predict would then blame on the caller's X.
    if (!Number.isFinite(data[j]) || (positive && !(data[j] > 0))) fileFail(positive ? 'finite values > 0' : 'finite values', `tensor ${JSON.stringify(name)}`, `${data[j]} at index ${j}`, source);
    if (positive && !Number.isFinite(1 / data[j])) fileFail(TINY_STD, `tensor ${JSON.stringify(name)}`, `${data[j]} at index ${j}`, source);
  }
  return Float64Array.from(data);
}

/**
 * The fields of a model file besides the net, each checked against the net's D and C.
 * @throws {HandgradError} ERR_FILE naming the key or tensor
 */
export function readModelInfo(file: SafetensorsFile, source: string, D: number, C: number): ModelInfo {
  const meta = file.metadata;
  const info: { -readonly [K in keyof ModelInfo]: ModelInfo[K] } = { metadata: {} };
  const has = (n: string) => Object.prototype.hasOwnProperty.call(file.tensors, n);
  if (meta.preprocess !== undefined && meta.preprocess !== 'standardize') fileFail('"standardize" (the one preprocessing this version writes)', '__metadata__.preprocess', JSON.stringify(meta.preprocess.slice(0, 80)), source);
  if (meta.preprocess === undefined && (has(MEAN) || has(STD))) fileFail(`"standardize" beside the tensors ${MEAN} and ${STD}`, '__metadata__.preprocess', 'nothing', source);
  if (meta.preprocess !== undefined) info.preprocess = Object.freeze({ mean: savedVector(file, MEAN, D, false, source), std: savedVector(file, STD, D, true, source) });
  const classes = savedNames(file, 'classes', C, "class names (C, the net's outputs)", source);
  const features = savedNames(file, 'features', D, "feature names (D, the net's inputs)", source);
  if (classes) info.classes = Object.freeze(classes);
  if (features) info.features = Object.freeze(features);
  if (meta.label !== undefined) {
    if (meta.label === '' || features?.includes(meta.label)) fileFail('a column name other than the features', '__metadata__.label', JSON.stringify(meta.label.slice(0, 80)), source);
    info.label = meta.label;
  }
  info.metadata = Object.freeze(Object.fromEntries(Object.entries(meta).filter(([k]) => !RESERVED_KEYS.includes(k))));
  return info;
}

/** Reads a file from a path or from its bytes (a Buffer or Uint8Array). @throws {TypeError|HandgradError} */
export function fileFrom(source: unknown, what = 'model'): { file: SafetensorsFile; name: string; path?: string } {
  if (typeof source === 'string') return { file: loadSafetensors(source), name: source, path: source };
  if (source instanceof Uint8Array) {
    const name = `the ${what} bytes`;
    return { file: readSafetensors(source, { source: name }), name };
  }
  return v.fail(TypeError, 'a file path or the bytes of a file (a Buffer or Uint8Array)', 'source', source);
}

/** The bytes of a safetensors file as a Buffer (over the same memory). */
export const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * X as an array: numbers only, checked by index (a row as a nested array included: rows are
 * flattened by the caller, so that [n,D] is never guessed).
 * @throws {TypeError}
 */
function numbersOnly(X: readonly unknown[]): void {
  for (let i = 0; i < X.length; i++) {
    const x = X[i];
    if (typeof x === 'number') continue;
    v.fail(TypeError, Array.isArray(x) ? 'a number (X is a flat array [n·D]: pass rows.flat())' : 'a number', `X[${i}]`, x);
  }
}

/**
 * X converted to a float32 net's dtype: a finite value past float32's range (|x| > 3.4028235e38)
 * became ±Infinity there, and is named as the caller's value it was.
 * @throws {RangeError}
 */
function withinDtype(X: ArrayLike<number>, x: FloatArray): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) v.fail(RangeError, "values within float32's range (|x| ≤ 3.4028235e38; the model is float32)", 'X', new v.Received(`${X[i]} at index ${i}`));
  }
}

/** What a model's forward takes: X [n,D] as a Float64Array or Float32Array, or an array of numbers. */
export type Rows = Float64Array | Float32Array | readonly number[];

/**
 * A trained classifier with its preprocessing and class names, as loadModel returns it: raw rows
 * in (the features as the training data had them), classes out.
 */
export class Model {
  /** The network (the saved layers and weights; `net.predict` takes preprocessed rows). */
  readonly net: Sequential;
  /**
   * The standardizer, as a fresh copy on each read: typed arrays cannot be frozen, so the model
   * keeps its own (#preprocess), which predict and save use, and a change to what this returns
   * changes nothing.
   */
  get preprocess(): Readonly<Preprocess> | undefined {
    const p = this.#preprocess;
    return p && Object.freeze({ mean: p.mean.slice(), std: p.std.slice() });
  }
  readonly #preprocess?: Readonly<Preprocess>;
  /** Class names in class id order; absent when the file has none (predictClasses then gives the ids as strings). */
  readonly classes?: readonly string[];
  readonly features?: readonly string[];
  readonly label?: string;
  /** The user's metadata (the format's own keys left out). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The two-layer net's activation when the file is a two-layer one (saved back in that form). */
  private readonly twoLayer?: Activation;

  /** @throws {TypeError|RangeError} a net that is not a Sequential, options as saveModel's */
  constructor(net: Sequential, opts: ModelFileOptions = {}, twoLayer?: Activation) {
    if (!(net instanceof Sequential)) v.fail(TypeError, 'a Sequential', 'net', net);
    const info = modelInfoOption(v.options('opts', opts, MODEL_FILE_OPTIONS), net.inFeatures, net.classes);
    this.net = net;
    // Copied: modelInfoOption's arrays are fresh, but a caller's ModelInfo (loadModel's) may be shared.
    this.#preprocess = info.preprocess && Object.freeze({ mean: info.preprocess.mean.slice(), std: info.preprocess.std.slice() });
    this.classes = info.classes && Object.freeze(info.classes.slice());
    this.features = info.features && Object.freeze(info.features.slice());
    this.label = info.label;
    this.metadata = Object.freeze({ ...info.metadata });
    this.twoLayer = twoLayer;
  }

  /** Inputs per row (D). */
  get inFeatures(): number {
    return this.net.inFeatures;
  }

  /** Classes (C). */
  get numClasses(): number {
    return this.net.classes;
  }

  /**
   * Raw rows as the net takes them: in its dtype, standardized with the saved statistics (computed
   * as `handgrad train` did: the row in the net's dtype, (x − mean) / std in float64, rounded once).
   * What is refused is named as the caller's X only when it is X's: a value that is no number, not
   * finite, or past float32's range for a float32 net; a standardization that overflows is named as
   * that, with its column.
   * @throws {TypeError|RangeError} X not a float array or flat array of numbers, a length not a multiple of D, a non-finite value, an overflow
   */
  transform(X: Rows): FloatArray {
    const D = this.net.inFeatures;
    const A = this.net.dtype === 'float32' ? Float32Array : Float64Array;
    if (!(X instanceof Float64Array || X instanceof Float32Array || Array.isArray(X))) v.fail(TypeError, 'a Float64Array, Float32Array or array of numbers [n,D]', 'X', X);
    // Before any conversion, which would read null and '' as 0, true as 1, '7' as 7 and [5] as 5.
    if (Array.isArray(X)) numbersOnly(X as readonly unknown[]);
    if (X.length === 0 || X.length % D !== 0) v.fail(RangeError, `a positive multiple of D = ${D} values ([n,D])`, 'X', new v.Received(`${X.length} values`));
    v.assertFinite('X', X as FloatArray); // the caller's values, as given
    const x = X instanceof A ? X : A.from(X as ArrayLike<number>);
    if (x !== X) withinDtype(X, x);
    const p = this.#preprocess; // the private copy: no caller can have changed it
    if (!p) return x === X ? x.slice() : x;
    const out = new A(x.length);
    for (let i = 0; i < x.length; i += D) for (let j = 0; j < D; j++) out[i + j] = (x[i + j] - p.mean[j]) / p.std[j];
    this.standardizedFinite(x, out);
    return out;
  }

  /**
   * Finite rows can still standardize to ±Infinity ((1e308 − (−1e308)) / 1, or a float64 result
   * past float32's range): that is the saved standardizer's overflow, named with its column.
   * @throws {RangeError}
   */
  private standardizedFinite(x: FloatArray, out: FloatArray): void {
    const D = this.net.inFeatures;
    const p = this.#preprocess!;
    for (let i = 0; i < out.length; i++) {
      if (Number.isFinite(out[i])) continue;
      const j = i % D;
      const column = `column ${j}${this.features ? ` (${JSON.stringify(this.features[j])})` : ''}`;
      throw new RangeError(
        `Expected finite standardized values but (x − mean) / std overflowed the ${this.net.dtype} range in ${column} for X at index ${i}: x = ${x[i]}, mean = ${p.mean[j]}, std = ${p.std[j]}`,
      );
    }
  }

  /** Softmax probabilities [n,C] of raw rows. */
  probs(X: Rows, opts: { backend?: BackendName } = {}): FloatArray {
    const o = v.options('opts', opts, ['backend'] as const);
    return this.net.probs(this.transform(X), o as { backend?: BackendName });
  }

  /** The class id of each raw row. */
  predict(X: Rows, opts: { backend?: BackendName } = {}): Int32Array {
    const o = v.options('opts', opts, ['backend'] as const);
    return this.net.predict(this.transform(X), o as { backend?: BackendName });
  }

  /** The class name of each raw row (the id as a string when the file has no class names). */
  predictClasses(X: Rows, opts: { backend?: BackendName } = {}): string[] {
    const ids = this.predict(X, opts);
    return Array.from(ids, (c) => (this.classes ? this.classes[c] : String(c)));
  }

  /** The model file (saveModel): to `path`, or, with no path, its bytes. */
  save(): Buffer;
  save(path: string): void;
  save(path?: string): Buffer | void {
    return writeModel(this.net, this.info(), path, this.twoLayer);
  }

  /** The fields besides the net (the standardizer copied: see preprocess). */
  info(): ModelInfo {
    return { preprocess: this.preprocess, classes: this.classes, features: this.features, label: this.label, metadata: this.metadata };
  }
}

/** The tensors and metadata of a model file of `net`: checkpoint.ts's form, plus the model's fields. */
export function modelFileContents(net: Sequential, info: ModelInfo, twoLayer?: Activation): { tensors: Record<string, TensorInput>; metadata: Record<string, string> } {
  const extra = modelInfoEntries(info);
  return {
    tensors: { ...sequentialTensors(net, 'handgrad'), ...extra.tensors },
    metadata: { ...extra.metadata, ...sequentialMetadata(net, 'handgrad', twoLayer) },
  };
}

function writeModel(net: Sequential, info: ModelInfo, path: string | undefined, twoLayer?: Activation): Buffer | void {
  const { tensors, metadata } = modelFileContents(net, info, twoLayer);
  if (path === undefined) return asBuffer(writeSafetensors(tensors, metadata));
  if (typeof path !== 'string' || path === '') v.fail(TypeError, 'a file path (or none, for the bytes)', 'path', path);
  saveSafetensors(path, tensors, metadata);
}

/**
 * Saves a model file: a Sequential, a Model, or two-layer params ({ W1, b1, W2, b2, activation? }),
 * with its preprocessing, class and feature names and metadata (for a Model, what it holds unless
 * opts says otherwise). With no path (or `undefined`), returns the file's bytes. For a Trainer,
 * use trainer.save (the same file plus the optimizer state), or saveModel(trainer.snapshot()).
 * @throws {TypeError|RangeError} a bad model or option (each checked against the net's D and C)
 * @throws {HandgradError} ERR_FILE when the file cannot be written
 */
export function saveModel(model: Sequential | Model | object, path?: string, opts: ModelFileOptions = {}): Buffer | undefined {
  const o = v.options('opts', opts, MODEL_FILE_OPTIONS);
  let net: Sequential;
  let twoLayer: Activation | undefined;
  let base: ModelInfo = { metadata: {} };
  if (model instanceof Model) {
    net = model.net;
    base = model.info();
    twoLayer = (model as unknown as { twoLayer?: Activation }).twoLayer;
  } else if (model instanceof Sequential) {
    net = model;
  } else {
    twoLayer = activationOf(model, undefined);
    net = twoLayerNet(model, twoLayer);
  }
  const given = modelInfoOption(o, net.inFeatures, net.classes);
  const info: ModelInfo = {
    preprocess: o.preprocess !== undefined ? given.preprocess : base.preprocess,
    classes: o.classes !== undefined ? given.classes : base.classes,
    features: o.features !== undefined ? given.features : base.features,
    label: o.label !== undefined ? given.label : base.label,
    metadata: o.metadata !== undefined ? given.metadata : base.metadata,
  };
  return writeModel(net, info, path, twoLayer) ?? undefined;
}

/**
 * Reads a model file (saveModel's, Trainer.save's, `handgrad train`'s; a parameter file or a PyTorch
 * state_dict too, with no preprocessing or names) from a path or its bytes. The optimizer state and
 * counters of a Trainer checkpoint are left aside. A state_dict without metadata needs its
 * activations named ({ layers } or { activation }, as loadSequential).
 * @throws {TypeError|RangeError} bad arguments
 * @throws {HandgradError} ERR_FILE for a missing or malformed file, naming the key or tensor: a
 *   standardizer of another length than D, non-finite or std ≤ 0, class names not C, feature names not D, …
 */
export function loadModel(source: string | Uint8Array, opts: ArchitectureOptions = {}): Model {
  const arch = architecture(v.options('opts', opts, ['layers', 'activation'] as const));
  const { file, name } = fileFrom(source);
  const net = sequentialFromFile(file, name, arch, 'loadModel');
  const info = readModelInfo(file, name, net.inFeatures, net.classes);
  // A two-layer file (no layers list) is saved back as one.
  const twoLayer = file.metadata.layers === undefined && net.layers.length === 3 ? (net.layers[1].kind as Activation) : undefined;
  return new Model(net, { ...info, preprocess: info.preprocess, metadata: { ...info.metadata } } as ModelFileOptions, twoLayer);
}
