// Sequential: the network. Layers chained input to logits, then SoftmaxCrossEntropy. Every argument
// is checked here, once; then one engine call (lib/engine) runs the whole forward, loss and
// backward: native/core/stack.h through the core addon or in wasm32, the TS loops, or one LibTorch
// autograd graph on 'torch' (the independent reference). A non-finite result is put into words
// here, in one place (explain), whichever engine met it.
//
// Parameters and gradients are named from the math, Linear layers numbered from 1: W1, b1, W2, b2,
// … and dW1, db1, …; so Sequential([Linear(D,H), ReLU, Linear(H,C)]) has exactly the tensors of
// the two-layer path, and gives the same numbers as forwardBackward(params, …).
import { engine } from '../engine';
import { emptyMeanError, LAYER_CODE, type LossArgs, type PreparedNet, type StackDescription, type StepArgs, type StepFailure } from '../engine/engine';
import { checkLinearSizes, drawLinears, drawOptions, type Init } from '../params';
import { Rng } from '../rng';
import type { Activation, BackendName, Dtype, FloatArray, LossReduction } from '../types';
import { allFinite } from '../kernels/ts';
import * as v from '../validate';
import { ClassCounts, type Evaluation } from './class-metrics';
import { ReLU, Sigmoid, Tanh } from './activation';
import type { Layer, LayerKind, LayerSpec } from './layer';
import { Linear } from './linear';
import { type LossSpec, SoftmaxCrossEntropy, specWeight } from './loss';

export interface SequentialOptions {
  /** The loss on the last layer's output (default SoftmaxCrossEntropy({ reduction: 'mean' })). */
  loss?: SoftmaxCrossEntropy;
}

export interface SequentialSpec {
  dtype: Dtype; layers: LayerSpec[]; reduction: LossReduction;
  /** The loss's other options (weight, ignoreIndex, labelSmoothing), when not PyTorch's defaults. */
  loss?: Omit<LossSpec, 'reduction'>;
}

export interface SequentialForwardBackwardOptions<T extends FloatArray = FloatArray> {
  /** 'native' (default), 'ts', 'wasm', or 'torch' (the LibTorch autograd reference). */
  backend?: BackendName;
  /** Overrides the loss's reduction for this call: 'mean', 'sum', or 'none' (loss is then the typed array [B] of each row's loss). */
  reduction?: LossReduction;
  /** Overrides the loss's weight [C] for this call (F.cross_entropy's weight). */
  weight?: T;
  /** Overrides the loss's ignoreIndex for this call (F.cross_entropy's ignore_index, default −100). */
  ignoreIndex?: number;
  /** Overrides the loss's labelSmoothing for this call (F.cross_entropy's label_smoothing, in [0, 1]). */
  labelSmoothing?: number;
  /**
   * With reduction 'none' (and only then, required): ∂L/∂loss [B], the upstream gradient that
   * loss.backward(gradient) takes in PyTorch; the gradients are those of Σ_b gradOutput[b]·loss[b].
   */
  gradOutput?: T;
  /** Compute dX [B,D] as well (default: false, unless out.dX is given). */
  inputGrad?: boolean;
  /** Return a copy of every layer's output and the softmax probabilities. */
  cache?: boolean;
  /** Preallocated gradient buffers (dX, dW1, db1, …), written in place and returned. */
  out?: Partial<Record<string, T>>;
  /** Add into the out buffers, as PyTorch accumulates .grad (default: overwrite). */
  accumulate?: boolean;
  /**
   * The exact mode: the loss, every gradient and the logits bit for bit those of PyTorch's
   * nn.Sequential(nn.Linear, act, …) + F.cross_entropy + backward() on this machine (native; 'torch'
   * is LibTorch itself). Slower (1.2–1.4×), with per-thread scratch buffers for the transposed weights; see the README.
   */
  exact?: boolean;
}

/** forward, probs and predict's options. */
export interface SequentialForwardOptions {
  /** 'native' (default), 'ts', 'wasm', or 'torch'. */
  backend?: BackendName;
  /** The logits PyTorch's nn.Sequential computes, bit for bit (native; see SequentialForwardBackwardOptions.exact). */
  exact?: boolean;
}

export interface SequentialResult<T extends FloatArray = FloatArray, L = number> {
  /** The loss (in the net's dtype); for reduction 'none' each row's, a typed array [B] (a copy). */
  loss: L;
  /** dW1, db1, … for every Linear, and dX when asked for. */
  grads: Record<string, T>;
  /** outputs[i] is layers[i]'s output [B, width]; the last one is the logits. */
  cache?: { outputs: T[]; probs: T };
  /**
   * The logits [B,C], NOT a copy: a view into this net's workspace, overwritten by its next call
   * with the same B (a training loop reads it for accuracy without allocating). Absent on 'torch',
   * whose result stays what test/golden recorded (forwardBackwardInto has it on every backend).
   */
  logits?: T;
}

export interface MlpOptions {
  /** The activation between Linear layers (default 'relu'). */
  activation?: Activation;
  dtype?: Dtype;
  /** How each W, b is drawn (default 'he'); one seeded stream for the whole net, layer by layer. */
  init?: Init;
  seed?: number;
  loss?: SoftmaxCrossEntropy;
}

const LAYER_CLASSES = [Linear, ReLU, Sigmoid, Tanh];

/**
 * The most layers (Linear and activation alike) a Sequential holds, built in code or read from a
 * file. MLPs trained in practice have tens to a few hundred; tens of thousands overflow the stack
 * of calls that take one argument per tensor (the native engine, finite differences), and a list of
 * 200,000 in a file cost seconds to build. 4096 keeps a file's header under half a MB, well within
 * the safetensors reader's default 1 MiB cap.
 */
export const MAX_LAYERS = 4096;

/** Each Sequential's params record → the Sequential (model.ts: predict(seq.params, X) runs that net, activations and all). */
export const PARAMS_OWNER = new WeakMap<object, Sequential>();

export class Sequential<T extends FloatArray = FloatArray> {
  readonly layers: readonly Layer[];
  readonly loss: SoftmaxCrossEntropy;
  readonly dtype: Dtype;
  /** D: the input width (that of the first Linear, activations before it keep it). */
  readonly inFeatures: number;
  /** C: the width of the logits. */
  readonly classes: number;
  /** widths[i] is the input width of layers[i]; widths[layers.length] = C. */
  readonly widths: readonly number[];
  /** W1, b1, W2, b2, …: the Linear layers' own tensors (not copies). */
  readonly params: Readonly<Record<string, T>>;
  /** For each layer, its Linear number (1-based), or 0 for an activation. */
  readonly linearNumber: readonly number[];
  private readonly description: StackDescription;
  /** dW1, db1, dW2, …: the gradients' names, in the order of params. */
  private readonly gradNames: readonly string[];
  /** out.dW1, out.db1, …: each gradient's name in messages, built once rather than on every step. */
  private readonly outGradNames: readonly string[];
  /** This net prepared for each engine it has run on (per thread: a worker rebuilds the net). */
  private readonly prepared = new Map<BackendName, PreparedNet>();
  /** { dtype, D, C } as the batch checks take it, built once (not on every step). */
  private readonly batchShape: { readonly dtype: Dtype; readonly D: number; readonly C: number };
  /** The engine of the last step and its prepared net (prepared's entry, never removed from it). */
  private lastBackend: BackendName | null = null;
  private lastPrepared: PreparedNet | null = null;
  /** The two-layer API's nets (lib/model.ts) word a failure as the fused step always did: Z1, logits. */
  twoLayerWords = false;
  /** Each gradient's element count (its parameter's, from the layer widths; a parameter's own length can change if its buffer is). */
  private readonly gradLengths: readonly number[];
  /** { dX?, dW1, db1, … } with these tensors (no dX when null), built in key order by a literal (one allocation, one shape). */
  private readonly gradsRecord: (dX: FloatArray | null, list: readonly FloatArray[]) => Record<string, T>;
  /** list[j] = record[gradNames[j]] for each j, by named loads (a keyed load of varying names is megamorphic). */
  private readonly gradsList: (record: Readonly<Partial<Record<string, FloatArray>>>, list: (FloatArray | undefined)[]) => void;
  /** A step's scratch: forwardBackwardInto's gradient list and run's engine arguments, refilled on every call. */
  private readonly list: T[] = [];
  private readonly stepArgs: StepArgs = {
    X: new Float64Array(0), y: new Int32Array(0), B: 0, grads: [], dX: null, reduction: 'mean', accumulate: false, loss: null, exact: false,
  };

  /**
   * @throws {TypeError} a layer that is not a Linear, ReLU, Sigmoid or Tanh; Linear layers of two dtypes
   * @throws {RangeError} no layers, more than MAX_LAYERS, no Linear, a width mismatch between neighbours, a layer used twice
   */
  constructor(layers: readonly Layer[], opts: SequentialOptions = {}) {
    if (!Array.isArray(layers)) v.fail(TypeError, 'an array of layers', 'layers', layers);
    if (layers.length > MAX_LAYERS) v.fail(RangeError, `at most ${MAX_LAYERS} layers`, 'layers', new v.Received(`${layers.length} layers`));
    const loss = v.options('opts', opts, ['loss'] as const).loss ?? new SoftmaxCrossEntropy();
    if (!(loss instanceof SoftmaxCrossEntropy)) v.fail(TypeError, 'a SoftmaxCrossEntropy', 'opts.loss', loss);
    this.loss = loss;
    // A Set, not indexOf: a layer list read from a file may be long, and this must stay linear in it.
    const seen = new Set<Layer>();
    layers.forEach((l, i) => {
      if (!LAYER_CLASSES.some((K) => l instanceof K)) v.fail(TypeError, 'a Linear, ReLU, Sigmoid or Tanh', `layers[${i}]`, l);
      if (seen.has(l)) {
        v.fail(RangeError, 'each layer object once (build a new one to repeat a layer)', `layers[${i}]`, new v.Received(`layers[${layers.indexOf(l)}] again`));
      }
      seen.add(l);
    });
    const linears = layers.filter((l): l is Linear => l instanceof Linear);
    if (linears.length === 0) v.fail(RangeError, 'at least one Linear layer', 'layers', layers);
    this.layers = Object.freeze([...layers]);
    this.dtype = v.dtypeOf('layers W', linears[0].params.W);
    this.inFeatures = linears[0].inFeatures;
    const widths = [this.inFeatures];
    const numbers: number[] = [];
    const params: Record<string, T> = {};
    let k = 0;
    layers.forEach((l, i) => {
      const width = widths[i];
      if (l instanceof Linear) linearFields(l, i);
      if (l.inFeatures !== null && l.inFeatures !== width) {
        const from = i === 0 ? 'X' : `layers[${i - 1}] (${layers[i - 1]})`;
        v.fail(RangeError, `an input of ${l.inFeatures} features (the width of ${from})`, `layers[${i}] (${l})`, new v.Received(`${width}`));
      }
      widths.push(l.outputWidth(width));
      if (l instanceof Linear) {
        k++;
        if (v.dtypeOf(`W${k}`, l.params.W) !== this.dtype) {
          v.fail(TypeError, `Linear layers of one dtype (W1 is ${this.dtype})`, `layers[${i}] (${l}) W`, l.params.W);
        }
        v.floatArray(`layers[${i}] (${l}) W`, l.params.W, this.dtype, l.inFeatures * l.outFeatures);
        v.floatArray(`layers[${i}] (${l}) b`, l.params.b, this.dtype, l.outFeatures);
        params[`W${k}`] = l.params.W as T;
        params[`b${k}`] = l.params.b as T;
      }
      numbers.push(l instanceof Linear ? k : 0);
    });
    this.widths = Object.freeze(widths);
    this.classes = widths[widths.length - 1];
    this.batchShape = Object.freeze({ dtype: this.dtype, D: this.inFeatures, C: this.classes });
    if (loss.weight !== null) v.lossWeight('opts.loss.weight', loss.weight, this.dtype, this.classes);
    this.linearNumber = Object.freeze(numbers);
    this.params = Object.freeze(params);
    PARAMS_OWNER.set(this.params, this as Sequential);
    // Internalized (as property keys are): out's keys, from Object.keys, then compare by identity,
    // not character by character, on every step.
    this.gradNames = Object.keys(Object.fromEntries(Object.keys(params).map((n) => [`d${n}`, 0])));
    this.outGradNames = this.gradNames.map((n) => `out.${n}`);
    this.gradLengths = Object.values(params).map((t) => t.length);
    const fields = this.gradNames.map((n, j) => `${JSON.stringify(n)}: l[${j}]`).join(', ');
    this.gradsRecord = new Function('dX', 'l', `return dX === null ? { ${fields} } : { dX, ${fields} };`) as typeof this.gradsRecord;
    const loads = this.gradNames.map((n, j) => `l[${j}] = r[${JSON.stringify(n)}];`).join(' ');
    this.gradsList = new Function('r', 'l', loads) as typeof this.gradsList;
    this.description = {
      dtype: this.dtype,
      kinds: Int32Array.from(layers, (l) => LAYER_CODE[l.kind as LayerKind]),
      widths: Int32Array.from(widths),
      params: Object.values(params),
    };
  }

  /**
   * Linear(widths[0], widths[1]), act, Linear(widths[1], widths[2]), act, …, Linear(·, C): the
   * usual MLP. Parameters are drawn from one seeded stream in layer order, so mlp([D, H, C]) has
   * the very numbers of initParams({ D, H, C }) with the same seed and init.
   * @throws {TypeError|RangeError} fewer than 2 widths, a width that is not a positive integer, bad options
   */
  static mlp(widths: readonly number[], opts: MlpOptions = {}): Sequential {
    if (!Array.isArray(widths)) v.fail(TypeError, 'an array of layer widths [D, …, C]', 'widths', widths);
    if (widths.length < 2) v.fail(RangeError, 'at least 2 widths (inputs and classes)', 'widths', widths);
    const o = v.options('opts', opts, ['activation', 'dtype', 'init', 'seed', 'loss'] as const, v.NOT_YET_SUPPORTED);
    widths.forEach((w, i) => v.dim(`widths[${i}]`, w));
    const activation = v.oneOf('opts.activation', o.activation, v.ACTIVATIONS, 'relu');
    const { dtype, init, seed } = drawOptions(o);
    const count = 2 * widths.length - 3; // Linear layers and the activations between them
    if (count > MAX_LAYERS) v.fail(RangeError, `at most ${MAX_LAYERS} layers`, 'widths', new v.Received(`${widths.length} widths (${count} layers)`));
    // Every layer's size checked before any is drawn (drawLinears).
    const shapes = widths.slice(1).map((w, i) => [widths[i], w] as const);
    const names = shapes.map((_, i) => `W${i + 1}`);
    checkLinearSizes(shapes, names);
    shapes.forEach(([fanIn, fanOut]) => v.sizes({ B: 1, D: fanIn, H: fanOut, C: 1 })); // as each Linear checks itself
    const drawn = drawLinears(shapes, dtype, init, new Rng(seed), names);
    const layers: Layer[] = [];
    drawn.forEach((p, i) => {
      if (i > 0) layers.push(activationLayer(activation));
      layers.push(new Linear(widths[i], widths[i + 1], p));
    });
    return new Sequential(layers, { loss: o.loss as SoftmaxCrossEntropy | undefined });
  }

  /** The architecture as plain data (for a worker thread or a checkpoint). */
  spec(): SequentialSpec {
    const { reduction, ...loss } = this.loss.spec();
    const s: SequentialSpec = { dtype: this.dtype, layers: this.layers.map((l) => l.spec()), reduction };
    if (Object.keys(loss).length > 0) s.loss = loss;
    return s;
  }

  /**
   * Rebuilds a Sequential from spec(); the Linear layers adopt `params[Wk]`, `params[bk]` (not
   * copied) when given, else start at zero.
   * @throws {TypeError|RangeError} a malformed spec or params (it may come from a file)
   */
  static fromSpec<T extends FloatArray>(spec: SequentialSpec, params?: Readonly<Record<string, T>>): Sequential<T> {
    if (spec === null || typeof spec !== 'object') v.fail(TypeError, 'an object { dtype, layers, reduction }', 'spec', spec);
    // Every key checked, the layers' too: { kind: 'linear', in, out, activation: 'tanh' } would
    // otherwise build a net without the tanh its writer meant.
    v.options('spec', spec, ['dtype', 'layers', 'reduction', 'loss'] as const);
    const dtype = v.oneOf('spec.dtype', spec.dtype, ['float64', 'float32'] as const, 'float64');
    const reduction = v.oneOf('spec.reduction', spec.reduction, v.LOSS_REDUCTIONS, 'mean');
    const lossOpts = v.options('spec.loss', spec.loss, ['weight', 'ignoreIndex', 'labelSmoothing'] as const);
    if (!Array.isArray(spec.layers)) v.fail(TypeError, 'an array', 'spec.layers', spec.layers);
    const F = dtype === 'float64' ? Float64Array : Float32Array;
    let k = 0;
    const layers = spec.layers.map((s: LayerSpec, i: number): Layer => {
      if (s === null || typeof s !== 'object') v.fail(TypeError, 'a layer spec { kind, … }', `spec.layers[${i}]`, s);
      // undefined is no kind at all here (oneOf would take its fallback for it).
      const kind = v.oneOf(`spec.layers[${i}].kind`, s.kind === undefined ? null : s.kind, ['linear', ...v.ACTIVATIONS], 'linear');
      v.options(`spec.layers[${i}]`, s, kind === 'linear' ? ['kind', 'in', 'out'] as const : ['kind'] as const);
      if (kind !== 'linear') return activationLayer(kind);
      k++;
      const lin = s as { in?: unknown; out?: unknown };
      const din = v.dim(`spec.layers[${i}].in`, lin.in);
      const dout = v.dim(`spec.layers[${i}].out`, lin.out);
      v.sizes({ B: 1, D: din, H: dout, C: 1 });
      const W = params ? params[`W${k}`] : new F(din * dout);
      const b = params ? params[`b${k}`] : new F(dout);
      if (params) {
        v.floatArray(`params.W${k}`, W, dtype, din * dout);
        v.floatArray(`params.b${k}`, b, dtype, dout);
      }
      return new Linear(din, dout, { W, b });
    });
    const loss = new SoftmaxCrossEntropy({
      reduction,
      weight: specWeight('spec.loss.weight', lossOpts.weight, dtype),
      ignoreIndex: lossOpts.ignoreIndex as number | undefined,
      labelSmoothing: lossOpts.labelSmoothing as number | undefined,
    });
    return new Sequential<T>(layers, { loss });
  }

  /** Where a layer sits, for messages: 'layers[2] (Linear 128→64)'. */
  where(i: number): string {
    return `layers[${i}] (${this.layers[i]})`;
  }

  /** Names of the parameters of layers[i] ('W2', 'b2'), empty for an activation. */
  paramNames(i: number): string[] {
    const k = this.linearNumber[i];
    return k === 0 ? [] : [`W${k}`, `b${k}`];
  }

  toString(): string {
    return `Sequential(${this.layers.join(', ')}; ${this.loss})`;
  }

  /**
   * Prepares this net for `backend` now (loads its module, registers the description), so that an
   * unavailable backend fails here rather than at the first step.
   * @throws {HandgradError} the backend is unavailable
   */
  prepare(backend: BackendName): this {
    this.on(v.oneOf('backend', backend, v.BACKENDS, 'native'));
    return this;
  }

  /** This net on `backend`'s engine, prepared on first use. @throws {HandgradError} the backend is unavailable */
  private on(backend: BackendName): PreparedNet {
    if (backend === this.lastBackend) return this.lastPrepared!; // a Map lookup per step otherwise
    let p = this.prepared.get(backend);
    if (!p) {
      // logitsView trusts its caller's backend: an unknown one is still named, not a TypeError from undefined.
      if (!v.BACKENDS.includes(backend)) unknownBackend(backend);
      this.prepared.set(backend, (p = engine(backend).prepare(this.description)));
    }
    this.lastBackend = backend;
    this.lastPrepared = p;
    return p;
  }

  /**
   * A NaN or ±Infinity met by an engine, in words: the input responsible (X, Wk, bk, with the
   * index), or what overflowed. One wording for every engine; the two-layer API keeps its names.
   */
  private explain(f: StepFailure, X: FloatArray, grads: Readonly<Record<string, FloatArray>>): never {
    if (f.stage === 'input') v.assertFinite('X', X);
    if (f.stage === 'forward') {
      const k = this.linearNumber[f.layer];
      const fromX = f.layer === 0;
      if (fromX) v.assertFinite('X', X);
      v.assertFinite(`W${k}`, this.params[`W${k}`]);
      v.assertFinite(`b${k}`, this.params[`b${k}`]);
      const what = this.twoLayerWords
        ? k === 1 ? 'Z1 = X·W1 + b1' : 'logits = A1·W2 + b2'
        : `${this.where(f.layer)} = ${fromX ? 'X' : `the output of layers[${f.layer - 1}]`}·W${k} + b${k}`;
      const why = this.twoLayerWords && k === 2 ? 'weights too large for the dtype' : 'inputs or weights too large for the dtype';
      throw new RangeError(`Expected a finite forward pass but ${what} overflowed (${why})`);
    }
    if (f.stage === 'loss') throw new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)');
    const name = Object.keys(grads).find((n) => !allFinite(grads[n])) ?? 'the gradients';
    throw new RangeError(`Expected finite gradients but ${name} overflowed (inputs or weights too large for the dtype)`);
  }

  /**
   * Logits [B,C] for X [B,D] (a new array); `exact`: LibTorch's bits for nn.Sequential's forward
   * (native; 'torch' is LibTorch). @throws {TypeError|RangeError|HandgradError} as forwardBackward
   */
  forward(X: T, opts: SequentialForwardOptions = {}): T {
    const o = v.options('opts', opts, ['backend', 'exact'] as const);
    const backend = v.oneOf('opts.backend', o.backend, v.BACKENDS, 'native');
    const exact = v.exactOption('opts.exact', o.exact, backend);
    const { X: Xc, B } = v.inputRows(X, { dtype: this.dtype, D: this.inFeatures });
    if (backend === 'wasm' || backend === 'ts') this.refuseWorkspace(backend, B, [Xc], ['X'], [], [], null);
    return this.logitsView(Xc as T, B, backend, exact).slice() as T;
  }

  /**
   * The logits of X [B,D] for callers that have checked X (the Trainer's evaluation): a view into
   * this net's buffers, overwritten by the next call with this B.
   */
  logitsView(X: T, B: number, backend: BackendName, exact = false): T {
    const r = this.on(backend).forward(X, B, exact);
    if (r.failure) this.explain(r.failure, X, {});
    return r.logits as T;
  }

  /** Class probabilities [B,C] = softmax(forward(X)). @throws {TypeError|RangeError|HandgradError} as forward */
  probs(X: T, opts: SequentialForwardOptions = {}): T {
    return softmaxRows(this.forward(X, opts), this.classes);
  }

  /** Predicted class ids (argmax of the logits) for each row of X. @throws {TypeError|RangeError|HandgradError} as forward */
  predict(X: T, opts: SequentialForwardOptions = {}): Int32Array {
    return argmaxRows(this.forward(X, opts), this.classes);
  }

  /**
   * Mean loss (F.cross_entropy's, by log-sum-exp on the logits) and accuracy over X [N,D] and
   * y [N], a forward pass per `batchSize` rows (default 256) so memory stays bounded; with them,
   * per-class precision, recall and support, and the confusion matrix [C,C] (true class × predicted
   * class; null past 1024 classes), counted in the same pass (class-metrics.ts).
   * @throws {TypeError|RangeError|HandgradError} as forwardBackward
   */
  evaluate(X: T, y: ArrayLike<number>, opts: { backend?: BackendName; batchSize?: number } = {}): Evaluation {
    const o = v.options('opts', opts, ['backend', 'batchSize'] as const);
    const backend = v.oneOf('opts.backend', o.backend, v.BACKENDS, 'native');
    const batchSize = v.dim('opts.batchSize', o.batchSize ?? 256);
    const b = v.batch(X, y, { dtype: this.dtype, D: this.inFeatures, C: this.classes }, '', this.loss.ignoreIndex);
    if (backend === 'wasm' || backend === 'ts') {
      // X against the workspaces its batches run in: the full one and the last, partial one.
      for (const B of new Set([Math.min(batchSize, b.B), b.B % batchSize || batchSize])) this.refuseWorkspace(backend, B, [b.X], ['X'], [], [], null);
    }
    return this.score(b.X as T, b.y, batchSize, backend);
  }

  /** evaluate() for callers that have checked X and y (the Trainer). */
  score(X: T, y: Int32Array, batchSize: number, backend: BackendName): Evaluation {
    const { inFeatures: D, classes: C } = this;
    const n = y.length;
    if (this.loss.weight !== null || this.loss.labelSmoothing !== 0 || y.includes(this.loss.ignoreIndex)) return this.scoreWithOptions(X, y, batchSize, backend);
    let lossSum = 0;
    let correct = 0;
    const counts = new ClassCounts(C);
    for (let start = 0; start < n; start += batchSize) {
      const B = Math.min(batchSize, n - start);
      const logits = this.logitsView(X.subarray(start * D, (start + B) * D) as T, B, backend);
      for (let b = 0; b < B; b++) {
        const o = b * C;
        let best = 0;
        for (let c = 1; c < C; c++) if (logits[o + c] > logits[o + best]) best = c;
        const m = logits[o + best];
        let sum = 0;
        for (let c = 0; c < C; c++) sum += Math.exp(logits[o + c] - m);
        const label = y[start + b];
        lossSum += m - logits[o + label] + Math.log(sum);
        if (best === label) correct++;
        counts.add(label, best);
      }
    }
    return { loss: this.finiteLoss(lossSum / n), accuracy: correct / n, ...counts.metrics() };
  }

  /**
   * score() with the loss's options, as F.cross_entropy's 'mean' over the whole of X: Σ over the
   * non-ignored rows of (1−ε)·w[y]·(lse − z_y) + (ε/C)·Σ_c w_c·(lse − z_c), divided by Σ w[y] over
   * them; the accuracy over the non-ignored rows. Nothing to divide by is emptyMeanError, as a step.
   */
  private scoreWithOptions(X: T, y: Int32Array, batchSize: number, backend: BackendName): Evaluation {
    const { inFeatures: D, classes: C } = this;
    const { weight, ignoreIndex, labelSmoothing: eps } = this.loss;
    const n = y.length;
    let num = 0;
    let den = 0;
    let correct = 0;
    let valid = 0;
    const counts = new ClassCounts(C);
    for (let start = 0; start < n; start += batchSize) {
      const B = Math.min(batchSize, n - start);
      const logits = this.logitsView(X.subarray(start * D, (start + B) * D) as T, B, backend);
      for (let b = 0; b < B; b++) {
        const label = y[start + b];
        if (label === ignoreIndex) continue;
        const o = b * C;
        let best = 0;
        for (let c = 1; c < C; c++) if (logits[o + c] > logits[o + best]) best = c;
        const m = logits[o + best];
        let sum = 0;
        for (let c = 0; c < C; c++) sum += Math.exp(logits[o + c] - m);
        const logS = Math.log(sum);
        const wy = weight === null ? 1 : weight[label];
        let smooth = 0;
        if (eps !== 0) for (let c = 0; c < C; c++) smooth += (weight === null ? 1 : weight[c]) * (m - logits[o + c] + logS);
        num += (1 - eps) * wy * (m - logits[o + label] + logS) + (eps / C) * smooth;
        den += wy;
        valid++;
        if (best === label) correct++;
        counts.add(label, best);
      }
    }
    if (den === 0) throw emptyMeanError(valid, ignoreIndex);
    return { loss: this.finiteLoss(num / den), accuracy: correct / valid, ...counts.metrics() };
  }

  /**
   * evaluate's mean loss (summed in double over the batches), refused where a step's is: beyond
   * the dtype's range (Infinity in float64; in float32 a "loss" above its largest value, which no
   * float32 computation holds), with forwardBackward's words.
   */
  private finiteLoss(loss: number): number {
    const max = this.dtype === 'float32' ? 3.4028234663852886e38 : Number.MAX_VALUE;
    if (!(Math.abs(loss) <= max)) throw new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)');
    return loss;
  }

  /**
   * Loss and hand-derived gradients of the loss through every layer.
   * @throws {TypeError} a wrong kind of argument (dtype, labels, options), naming the tensor
   * @throws {RangeError} a wrong size or value (shapes, labels out of [0, C), NaN/Infinity, aliasing)
   * @throws {HandgradError} the backend is unavailable
   */
  forwardBackward<O extends SequentialForwardBackwardOptions<T>>(
    X: T, y: ArrayLike<number>, opts?: O,
  ): SequentialResult<T, O extends { reduction: 'none' } ? T : number> {
    return this.checkedStep(X, y, v.stepOptions(opts, this.loss.reduction)) as never;
  }

  /**
   * The call's loss options over the loss's own, checked against this net, and the batch: class
   * labels (ignoreIndex allowed) or probability targets (y a float array [B,C] of this dtype).
   * null loss: F.cross_entropy's default with no row ignored (the engines' fast path).
   */
  private lossCall(X: unknown, y: unknown, o: v.StepOptions): { X: T; y: Int32Array; B: number; loss: LossArgs | null } {
    const { dtype, classes: C } = this;
    const own = this.loss;
    const weight = o.weight !== undefined ? v.lossWeight('opts.weight', o.weight, dtype, C) : own.weight && v.lossWeight('loss.weight', own.weight, dtype, C);
    const ignoreIndex = v.ignoreIndex('opts.ignoreIndex', o.ignoreIndex, own.ignoreIndex);
    const labelSmoothing = v.labelSmoothing('opts.labelSmoothing', o.labelSmoothing, own.labelSmoothing);
    const { reduction } = o;
    const p = this.batchShape;
    const t = v.probabilityTargets(X, y, p);
    if (t !== null && ignoreIndex >= 0) {
      v.fail(RangeError, 'a negative ignoreIndex with probability targets (PyTorch: ignore_index is not supported for floating point target)', 'ignoreIndex', ignoreIndex);
    }
    const b = t !== null ? { X: t.X, y: new Int32Array(t.B), B: t.B } : v.batch(X, y, p, '', ignoreIndex);
    let gradOutput: FloatArray | null = null;
    if (reduction === 'none') {
      if (o.gradOutput === undefined) {
        v.fail(TypeError, "a gradOutput [B] (∂L/∂loss) with reduction 'none': like PyTorch, which refuses backward() of a non-scalar loss without a gradient", 'opts.gradOutput', undefined);
      }
      gradOutput = v.ownCopy(v.floatArray('opts.gradOutput', o.gradOutput, dtype, b.B));
      v.assertFinite('opts.gradOutput', gradOutput);
    } else if (o.gradOutput !== undefined) {
      v.fail(TypeError, `no gradOutput with reduction '${reduction}' (a scalar loss: its gradient is 1)`, 'opts.gradOutput', o.gradOutput);
    }
    let ignored = 0;
    let denominator = 0;
    if (t === null) {
      for (let i = 0; i < b.B; i++) {
        const label = b.y[i];
        if (label === ignoreIndex) ignored++;
        else denominator += weight === null ? 1 : weight[label];
      }
      // PyTorch's 0/0: refused with the rule, as every engine refuses it (emptyMeanError).
      if (reduction === 'mean' && denominator === 0) throw emptyMeanError(b.B - ignored, ignoreIndex);
    }
    const general = weight !== null || labelSmoothing !== 0 || t !== null || reduction === 'none' || ignored > 0;
    const loss = general ? { reduction, weight, ignoreIndex, labelSmoothing, targets: t?.targets ?? null, gradOutput } : null;
    return { X: b.X as T, y: b.y, B: b.B, loss };
  }

  /** forwardBackward with its options already parsed (the two-layer API parses them once, for both). */
  checkedStep(X: T, y: ArrayLike<number>, o: v.StepOptions): SequentialResult<T, number | T> {
    const { backend, reduction, cache: wantCache, accumulate, inputGrad, outNames, outBuffers, exact } = o;

    const b = this.lossCall(X, y, o);
    const Xc = b.X;
    const { gradNames, outGradNames, gradLengths, dtype } = this;
    const F = dtype === 'float64' ? Float64Array : Float32Array;
    const list: T[] = []; // not the scratch: a getter on a buffer's length may run a step of this net
    // out's buffers by name (as read by stepOptions); a key that names none is refused below,
    // after the buffers are checked, as before.
    let givenDX: unknown;
    let unknown = false;
    for (let i = 0; i < outNames.length; i++) {
      const name = outNames[i];
      let j = -1; // a loop, not indexOf: with internalized names it is pointer compares, ~4× faster
      if (name !== 'dX') for (let k = 0; k < gradNames.length; k++) if (gradNames[k] === name) j = k;
      if (j >= 0) list[j] = outBuffers[i] as T;
      else if (name === 'dX' && inputGrad) givenDX = outBuffers[i];
      else unknown = true;
    }
    const n = b.B * this.inFeatures;
    const dX = inputGrad ? ((givenDX === undefined ? new F(n) : v.floatArray('out.dX', givenDX, dtype, n)) as T) : null;
    for (let j = 0; j < gradNames.length; j++) {
      const g = list[j];
      list[j] = (g === undefined ? new F(gradLengths[j]) : v.floatArray(outGradNames[j], g, dtype, gradLengths[j])) as T;
    }
    if (unknown) {
      for (const name of outNames) {
        if (!(name === 'dX' ? inputGrad : gradNames.includes(name))) {
          v.fail(TypeError, `one of ${[...(inputGrad ? ['dX'] : []), ...gradNames].join(', ')}`, `opts.out key`, name);
        }
      }
    }
    const grads = this.gradsRecord(dX, list);
    // The native and torch addons refuse aliasing themselves, in C++ (reading .buffer from JS
    // costs more than the whole toy-size step); wasm and ts copy or read in JS, so check here.
    if (outNames.length > 0 && (backend === 'wasm' || backend === 'ts')) {
      const names = Object.keys(grads);
      // The loss's arrays too, as the native addon refuses them (they are inputs, read before any output is written).
      const l = b.loss;
      const lossIn = l === null ? [] : ([['weight', l.weight], ['y', l.targets], ['opts.gradOutput', l.gradOutput]] as const).filter(([, t]) => t !== null) as [string, FloatArray][];
      v.disjoint(names, names.map((n) => grads[n]), ['X', 'y', ...Object.keys(this.params), ...lossIn.map(([n]) => n)], [Xc, b.y, ...this.description.params, ...lossIn.map(([, t]) => t)]);
    }
    if (backend === 'wasm' || backend === 'ts') {
      const l = b.loss;
      this.refuseWorkspace(backend, b.B, [Xc, b.y, l?.weight, l?.targets, l?.gradOutput], ['X', 'y', 'weight', 'y', 'opts.gradOutput'], list, outGradNames, dX);
    }

    const r = this.run(Xc, b.y, list, dX, backend, reduction, accumulate, grads, b.loss, exact);
    const loss = r.losses ? (r.losses.slice() as T) : r.loss;
    const result: SequentialResult<T, number | T> = backend === 'torch' ? { loss, grads } : { loss, grads, logits: r.logits };
    if (wantCache) {
      const t = this.on(backend).tensors(b.B)!;
      result.cache = { outputs: t.outputs.map((o) => o.slice() as T), probs: t.probs.slice() as T };
    }
    return result;
  }

  /**
   * forwardBackward for callers that have checked everything it checks (the Trainer, whose data
   * and buffers were checked once, at fit): X [B,D] and y [B] of this net's dtype and classes,
   * grads holding every dWk/dbk (and dX for the input gradient) disjoint from the inputs. Nothing
   * is validated or allocated here; the loss and the logits view are returned.
   */
  forwardBackwardInto(
    X: T, y: Int32Array, grads: Readonly<Record<string, T>>,
    opts: { backend: BackendName; reduction: LossReduction; accumulate: boolean; loss?: LossArgs | null; exact?: boolean },
  ): { loss: number; logits: T } {
    this.gradsList(grads, this.list);
    const { backend, reduction: r } = opts;
    if (r !== 'mean' && r !== 'sum' && r !== 'none') v.oneOf('opts.reduction', r ?? null, v.LOSS_REDUCTIONS, 'mean');
    if (backend !== 'native' && backend !== 'wasm' && backend !== 'ts' && backend !== 'torch') unknownBackend(backend);
    // As forwardBackward: LibTorch's bits on native (torch is LibTorch), refused elsewhere, never quietly approximate.
    const exact = opts.exact === undefined || opts.exact === false ? false : v.exactOption('opts.exact', opts.exact, backend);
    // The loss the engines compute is opts.loss's when given: 'none' needs its gradOutput, as PyTorch's
    // backward() of a non-scalar loss needs a gradient (the engines would otherwise differ: a sum, or an internal refusal).
    const loss = opts.loss ?? null;
    if ((loss === null ? r : loss.reduction) === 'none' && (loss === null || loss.gradOutput == null)) {
      v.fail(TypeError, "a gradOutput [B] (∂L/∂loss) with reduction 'none': like PyTorch, which refuses backward() of a non-scalar loss without a gradient", 'opts.loss.gradOutput', undefined);
    }
    // The native addon checks every buffer in C++ on each call (dtype, length, aliasing); wasm and
    // ts would compute on whatever they were given, and the torch addon names a wrong X after W1,
    // so they are checked here, alike.
    if (backend !== 'native') this.checkInto(X, y, grads, opts.accumulate, backend);
    return this.run(X, y, this.list, grads.dX ?? null, backend, r, opts.accumulate, grads, loss, exact);
  }

  /** forwardBackwardInto's arguments as the addons check them, for the engines in JS (this.list holds the gradients). */
  private checkInto(X: T, y: Int32Array, grads: Readonly<Record<string, T>>, accumulate: unknown, backend: BackendName): void {
    if (typeof accumulate !== 'boolean') v.fail(TypeError, 'a boolean', 'opts.accumulate', accumulate);
    if (!(y instanceof Int32Array && ArrayBuffer.isView(y))) v.fail(TypeError, 'an Int32Array', 'y', y);
    const { dtype, gradLengths, outGradNames, gradNames, list } = this;
    const n = v.lengthOf(y) * this.inFeatures;
    v.floatArray('X', X, dtype, n);
    for (let j = 0; j < gradNames.length; j++) v.floatArray(outGradNames[j], list[j], dtype, gradLengths[j]);
    const dX = grads.dX;
    if (dX !== undefined) v.floatArray('out.dX', dX, dtype, n);
    v.disjoint([...gradNames, 'dX'], [...list, dX], ['X', 'y', ...Object.keys(this.params)], [X, y, ...this.description.params]);
    this.refuseWorkspace(backend, v.lengthOf(y), [X, y], ['X', 'y'], list, outGradNames, dX ?? null);
  }

  /**
   * A tensor of a call with B rows that shares memory with the buffers the engine itself writes
   * (a logits view of an earlier call given back as X, or as an out buffer) is refused, in the
   * native addon's words: the engine would overwrite an input while reading it, or an output with
   * its own. Asked of the engines that run in JS (the addons refuse it in C++); the parameters
   * cannot be such a buffer (a net's workspace is made after its parameters are fixed).
   */
  private refuseWorkspace(
    backend: BackendName, B: number, ins: readonly (FloatArray | Int32Array | null | undefined)[], inNames: readonly string[],
    outs: readonly FloatArray[], outNames: readonly string[], dX: FloatArray | null,
  ): void {
    const net = this.on(backend);
    if (net.sharesWorkspace === undefined) return;
    for (let i = 0; i < ins.length; i++) {
      const t = ins[i];
      if (t != null && net.sharesWorkspace(B, t)) throw new RangeError(`Expected workspace not to share memory with ${inNames[i]}`);
    }
    for (let j = 0; j < outs.length; j++) {
      if (net.sharesWorkspace(B, outs[j])) throw new RangeError(`Expected ${outNames[j]} not to share memory with workspace`);
    }
    if (dX !== null && net.sharesWorkspace(B, dX)) throw new RangeError('Expected out.dX not to share memory with workspace');
  }

  /**
   * One engine call; a failure is put into words here. The arguments' record (and forwardBackwardInto's
   * `grads`) are this net's scratch, refilled on every call: engines read them during the call and keep no reference.
   */
  private run(
    X: T, y: Int32Array, grads: T[], dX: T | null, backend: BackendName, reduction: LossReduction, accumulate: boolean, named: Readonly<Record<string, T>>,
    loss: LossArgs | null, exact: boolean,
  ): { loss: number; logits: T; losses?: T } {
    const a = this.stepArgs;
    a.X = X;
    a.y = y;
    a.B = y.length;
    a.grads = grads;
    a.dX = dX;
    a.reduction = reduction;
    a.accumulate = accumulate;
    a.loss = loss;
    a.exact = exact;
    const r = this.on(backend).forwardBackward(a);
    if (r.failure) this.explain(r.failure, X, named);
    return r as { loss: number; logits: T; losses?: T };
  }
}

/** A new Sequential over copies of seq's parameters, in seq's dtype or in float64 (float32 values are exact there). */
export function sequentialCopy(seq: Sequential, dtype: Dtype = seq.dtype): Sequential {
  const copy = (t: FloatArray): FloatArray => (dtype === 'float64' ? Float64Array.from(t) : Float32Array.from(t));
  return Sequential.fromSpec({ ...seq.spec(), dtype }, Object.fromEntries(Object.entries(seq.params).map(([k, t]) => [k, copy(t)])));
}

/** The error of a backend given to a call that trusts its caller's (forwardBackwardInto, logitsView): opts.backend's, as forwardBackward's. */
function unknownBackend(backend: unknown): never {
  return v.fail(typeof backend === 'string' ? RangeError : TypeError, `one of ${v.BACKENDS.map((n) => `'${n}'`).join(', ')}`, 'opts.backend', backend);
}

/**
 * A Linear's inFeatures and outFeatures, which are readonly only to TypeScript: reassigned to
 * another number or to none, the layer would fail at the first step blaming X or W (their lengths
 * are then checked against W and b by the constructor).
 */
function linearFields(l: Linear, i: number): void {
  v.dim(`layers[${i}].inFeatures`, l.inFeatures);
  v.dim(`layers[${i}].outFeatures`, l.outFeatures);
}

export function activationLayer(kind: Activation): Layer {
  return kind === 'relu' ? new ReLU() : kind === 'sigmoid' ? new Sigmoid() : new Tanh();
}

/** The index of the largest entry of each row of logits [B,C] (the first one on a tie). */
export function argmaxRows(logits: ArrayLike<number>, C: number): Int32Array {
  const out = new Int32Array(logits.length / C);
  for (let b = 0; b < out.length; b++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[b * C + c] > logits[b * C + best]) best = c;
    out[b] = best;
  }
  return out;
}

/** Row-wise softmax of logits [B,C] into a new array, computed stably (max subtracted). */
export function softmaxRows<T extends FloatArray>(logits: T, C: number): T {
  const out = logits.slice() as T;
  for (let o = 0; o < out.length; o += C) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, out[o + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += out[o + c] = Math.exp(out[o + c] - m);
    for (let c = 0; c < C; c++) out[o + c] /= s;
  }
  return out;
}
