// Sequential: layers chained input to logits, then SoftmaxCrossEntropy. forwardBackward runs each
// layer's forward, the loss, and each layer's backward in reverse, every one on the chosen
// backend's kernels (lib/kernels), in buffers preallocated once per batch size. On the 'torch'
// backend the whole stack is instead one LibTorch autograd graph: the independent reference.
//
// Parameters and gradients are named from the math, Linear layers numbered from 1: W1, b1, W2, b2,
// … and dW1, db1, …; so Sequential([Linear(D,H), ReLU, Linear(H,C)]) has exactly the tensors of
// the two-layer path, and gives the same numbers as forwardBackward(params, …).
import { getKernels } from '../kernels';
import { argmaxRows } from '../model';
import type { Kernels } from '../kernels/kernels';
import { fillLinear, type Init, INITS } from '../params';
import { Rng } from '../rng';
import type { Activation, BackendName, Dtype, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { ReLU, Sigmoid, Tanh } from './activation';
import type { Layer, LayerContext, LayerSpec } from './layer';
import { Linear } from './linear';
import { type LossContext, SoftmaxCrossEntropy } from './loss';
import { torchSequentialForward, torchSequentialForwardBackward } from './torch';

export interface SequentialOptions {
  /** The loss on the last layer's output (default SoftmaxCrossEntropy({ reduction: 'mean' })). */
  loss?: SoftmaxCrossEntropy;
}

export interface SequentialSpec {
  dtype: Dtype;
  layers: LayerSpec[];
  reduction: Reduction;
}

export interface SequentialForwardBackwardOptions<T extends FloatArray = FloatArray> {
  /** 'native' (default), 'ts', 'wasm', or 'torch' (the LibTorch autograd reference). */
  backend?: BackendName;
  /** Overrides the loss's reduction for this call. */
  reduction?: Reduction;
  /** Compute dX [B,D] as well (default: false, unless out.dX is given). */
  inputGrad?: boolean;
  /** Return a copy of every layer's output and the softmax probabilities. */
  cache?: boolean;
  /** Preallocated gradient buffers (dX, dW1, db1, …), written in place and returned. */
  out?: Partial<Record<string, T>>;
  /** Add into the out buffers, as PyTorch accumulates .grad (default: overwrite). */
  accumulate?: boolean;
}

export interface SequentialResult<T extends FloatArray = FloatArray> {
  loss: number;
  /** dW1, db1, … for every Linear, and dX when asked for. */
  grads: Record<string, T>;
  /** outputs[i] is layers[i]'s output [B, width]; the last one is the logits. */
  cache?: { outputs: T[]; probs: T };
  /**
   * The logits [B,C], NOT a copy: a view into this net's workspace, overwritten by its next call
   * with the same B (a training loop reads it for accuracy without allocating). Absent on 'torch'.
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

/** The buffers of one batch size: a context per layer and the loss's. */
interface Workspace {
  layers: LayerContext[];
  /** gradInputs[i]: layers[i]'s input gradient [B, widths[i]] (i ≥ 1; layers[0]'s is dX). */
  gradInputs: (FloatArray | null)[];
  loss: LossContext;
}

/** Batch sizes whose workspaces are kept (a training run uses its batch size and a last partial one). */
const MAX_WORKSPACES = 4;

const LAYER_CLASSES = [Linear, ReLU, Sigmoid, Tanh];

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
  private readonly workspaces = new Map<number, Workspace>();

  /**
   * @throws {TypeError} a layer that is not a Linear, ReLU, Sigmoid or Tanh; Linear layers of two dtypes
   * @throws {RangeError} no layers, no Linear, a width mismatch between neighbours, a layer used twice
   */
  constructor(layers: readonly Layer[], opts: SequentialOptions = {}) {
    if (!Array.isArray(layers)) v.fail(TypeError, 'an array of layers', 'layers', layers);
    if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
    const loss = opts.loss ?? new SoftmaxCrossEntropy();
    if (!(loss instanceof SoftmaxCrossEntropy)) v.fail(TypeError, 'a SoftmaxCrossEntropy', 'opts.loss', loss);
    this.loss = loss;
    layers.forEach((l, i) => {
      if (!LAYER_CLASSES.some((K) => l instanceof K)) v.fail(TypeError, 'a Linear, ReLU, Sigmoid or Tanh', `layers[${i}]`, l);
      const first = layers.indexOf(l);
      if (first !== i) v.fail(RangeError, 'each layer object once (build a new one to repeat a layer)', `layers[${i}]`, new v.Received(`layers[${first}] again`));
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
        params[`W${k}`] = l.params.W as T;
        params[`b${k}`] = l.params.b as T;
      }
      numbers.push(l instanceof Linear ? k : 0);
    });
    this.widths = Object.freeze(widths);
    this.classes = widths[widths.length - 1];
    this.linearNumber = Object.freeze(numbers);
    this.params = Object.freeze(params);
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
    if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
    widths.forEach((w, i) => v.dim(`widths[${i}]`, w));
    const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');
    const dtype = v.oneOf('opts.dtype', opts.dtype, ['float64', 'float32'] as const, 'float64');
    const init = v.oneOf('opts.init', opts.init, INITS, 'he');
    const seed = opts.seed ?? 0;
    if (!Number.isInteger(seed)) v.fail(TypeError, 'an integer', 'opts.seed', seed);
    const rng = new Rng(seed);
    const F = dtype === 'float64' ? Float64Array : Float32Array;
    const layers: Layer[] = [];
    for (let i = 0; i + 1 < widths.length; i++) {
      if (i > 0) layers.push(activationLayer(activation));
      const W = new F(widths[i] * widths[i + 1]);
      const b = new F(widths[i + 1]);
      fillLinear(W, b, widths[i], widths[i + 1], init, rng);
      layers.push(new Linear(widths[i], widths[i + 1], { W, b }));
    }
    return new Sequential(layers, { loss: opts.loss });
  }

  /** The architecture as plain data (for a worker thread or a checkpoint). */
  spec(): SequentialSpec {
    return { dtype: this.dtype, layers: this.layers.map((l) => l.spec()), reduction: this.loss.reduction };
  }

  /**
   * Rebuilds a Sequential from spec(); the Linear layers adopt `params[Wk]`, `params[bk]` (not
   * copied) when given, else start at zero.
   * @throws {TypeError|RangeError} a malformed spec or params (it may come from a file)
   */
  static fromSpec<T extends FloatArray>(spec: SequentialSpec, params?: Readonly<Record<string, T>>): Sequential<T> {
    if (spec === null || typeof spec !== 'object') v.fail(TypeError, 'an object { dtype, layers, reduction }', 'spec', spec);
    const dtype = v.oneOf('spec.dtype', spec.dtype, ['float64', 'float32'] as const, 'float64');
    const reduction = v.oneOf('spec.reduction', spec.reduction, v.REDUCTIONS, 'mean');
    if (!Array.isArray(spec.layers)) v.fail(TypeError, 'an array', 'spec.layers', spec.layers);
    const F = dtype === 'float64' ? Float64Array : Float32Array;
    let k = 0;
    const layers = spec.layers.map((s: LayerSpec, i: number): Layer => {
      if (s === null || typeof s !== 'object') v.fail(TypeError, 'a layer spec { kind, … }', `spec.layers[${i}]`, s);
      // undefined is no kind at all here (oneOf would take its fallback for it).
      const kind = v.oneOf(`spec.layers[${i}].kind`, s.kind === undefined ? null : s.kind, ['linear', ...v.ACTIVATIONS], 'linear');
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
    return new Sequential<T>(layers, { loss: new SoftmaxCrossEntropy({ reduction }) });
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

  /** The buffers for a batch of B rows, allocated on first use and kept (a few sizes at most). */
  private workspace(B: number): Workspace {
    let w = this.workspaces.get(B);
    if (w) return w;
    const F = this.dtype === 'float64' ? Float64Array : Float32Array;
    const { widths } = this;
    v.sizes({ B, D: Math.max(...widths), H: 1, C: 1 });
    const gradInputs = this.layers.map((_, i) => (i === 0 ? null : new F(B * widths[i])));
    const layers = this.layers.map((_, i): LayerContext => ({
      B,
      kernels: getKernels('ts'),
      output: new F(B * widths[i + 1]),
      gradInput: gradInputs[i],
      accumulateInput: false,
      grads: {},
      accumulate: false,
      input: null,
      scratch: i === 0 && this.linearNumber[0] === 0 ? new F(B * widths[0]) : null,
    }));
    const C = this.classes;
    const loss: LossContext = { B, C, kernels: getKernels('ts'), probs: new F(B * C), dLogits: new F(B * C), y: null };
    w = { layers, gradInputs, loss };
    if (this.workspaces.size >= MAX_WORKSPACES) this.workspaces.clear();
    this.workspaces.set(B, w);
    return w;
  }

  /**
   * Runs every layer forward on `kernels`, checking each Linear's output for NaN/±Infinity (and X
   * first when an activation comes before any Linear, since ReLU would hide −Infinity). Returns the
   * logits, a view into the workspace.
   */
  private runForward(X: T, ws: Workspace, kernels: Kernels): T {
    if (this.linearNumber[0] === 0 && !kernels.allFinite(X)) v.assertFinite('X', X);
    let a: FloatArray = X;
    this.layers.forEach((layer, i) => {
      const ctx = ws.layers[i];
      ctx.kernels = kernels;
      const input = a;
      a = layer.forward(input, ctx);
      if (this.linearNumber[i] !== 0 && !kernels.allFinite(a)) this.explainForward(i, X, input);
    });
    return a as T;
  }

  /** A non-finite output of layers[i] (a Linear): name the input responsible, or say what overflowed. */
  private explainForward(i: number, X: T, input: FloatArray): never {
    const k = this.linearNumber[i];
    const fromX = input === X;
    if (fromX) v.assertFinite('X', X);
    v.assertFinite(`W${k}`, this.params[`W${k}`]);
    v.assertFinite(`b${k}`, this.params[`b${k}`]);
    const inName = fromX ? 'X' : `the output of layers[${i - 1}]`;
    throw new RangeError(
      `Expected a finite forward pass but ${this.where(i)} = ${inName}·W${k} + b${k} overflowed (inputs or weights too large for the dtype)`,
    );
  }

  /**
   * Logits [B,C] for X [B,D] (a new array).
   * @throws {TypeError|RangeError|HandgradError} as forwardBackward
   */
  forward(X: T, opts: { backend?: BackendName } = {}): T {
    if (opts === null || typeof opts !== 'object') v.fail(TypeError, 'an options object', 'opts', opts);
    const backend = v.oneOf('opts.backend', opts.backend, v.BACKENDS, 'native');
    const { X: Xc, B } = v.inputRows(X, { dtype: this.dtype, D: this.inFeatures }) as { X: T; B: number };
    if (backend === 'torch') {
      const logits = (this.dtype === 'float64' ? new Float64Array(B * this.classes) : new Float32Array(B * this.classes)) as T;
      torchSequentialForward(this, Xc, B, logits);
      return logits;
    }
    return this.logitsView(Xc, B, backend).slice() as T;
  }

  /**
   * The logits of X [B,D] on a backend other than 'torch', for callers that have checked X (the
   * Trainer's evaluation): a view into the workspace, overwritten by the next call with this B.
   */
  logitsView(X: T, B: number, backend: Exclude<BackendName, 'torch'>): T {
    return this.runForward(X, this.workspace(B), getKernels(backend));
  }

  /**
   * Predicted class ids (argmax of the logits) for each row of X.
   * @throws {TypeError|RangeError|HandgradError} as forward
   */
  predict(X: T, opts: { backend?: BackendName } = {}): Int32Array {
    return argmaxRows(this.forward(X, opts), this.classes);
  }

  /**
   * Loss and hand-derived gradients of the loss through every layer.
   * @throws {TypeError} a wrong kind of argument (dtype, labels, options), naming the tensor
   * @throws {RangeError} a wrong size or value (shapes, labels out of [0, C), NaN/Infinity, aliasing)
   * @throws {HandgradError} the backend is unavailable
   */
  forwardBackward(X: T, y: ArrayLike<number>, opts: SequentialForwardBackwardOptions<T> = {}): SequentialResult<T> {
    const { backend, reduction, cache: wantCache, accumulate, inputGrad, out } = v.stepOptions<Partial<Record<string, T>>>(opts, this.loss.reduction);
    if (backend === 'torch' && wantCache) v.fail(TypeError, "no cache with backend 'torch' (it returns gradients only)", 'opts.cache', true);

    const b = v.batch(X, y, { dtype: this.dtype, D: this.inFeatures, C: this.classes });
    const B = b.B;
    const Xc = b.X as T;
    const F = this.dtype === 'float64' ? Float64Array : Float32Array;
    const buffer = (name: string, n: number): T =>
      (out?.[name] === undefined ? new F(n) : v.outBuffer(name, out[name], this.dtype, n)) as T;
    const grads: Record<string, T> = {};
    if (inputGrad) grads.dX = buffer('dX', B * this.inFeatures);
    for (const [name, t] of Object.entries(this.params)) grads[`d${name}`] = buffer(`d${name}`, t.length);
    if (out !== undefined) {
      for (const name of Object.keys(out)) if (!(name in grads)) v.fail(TypeError, `one of ${Object.keys(grads).join(', ')}`, `opts.out key`, name);
      const gradNames = Object.keys(grads);
      v.disjoint(gradNames, gradNames.map((n) => grads[n]), ['X', 'y', ...Object.keys(this.params)], [Xc, b.y, ...Object.values(this.params)]);
    }

    const { loss, logits } = this.forwardBackwardInto(Xc, b.y, grads, { backend, reduction, accumulate });
    const result: SequentialResult<T> = { loss, grads, logits };
    if (wantCache) {
      const ws = this.workspace(B);
      result.cache = { outputs: ws.layers.map((c) => c.output.slice() as T), probs: ws.loss.probs.slice() as T };
    }
    return result;
  }

  /**
   * forwardBackward for callers that have checked everything it checks (the Trainer, whose data
   * and buffers were checked once, at fit): X [B,D] and y [B] of this net's dtype and classes,
   * grads holding every dWk/dbk (and dX for the input gradient) disjoint from the inputs. Nothing
   * is validated or allocated here; the loss and, except on 'torch', the logits view are returned.
   */
  forwardBackwardInto(
    X: T, y: Int32Array, grads: Readonly<Record<string, T>>, opts: { backend: BackendName; reduction: Reduction; accumulate: boolean },
  ): { loss: number; logits?: T } {
    const { backend, reduction, accumulate } = opts;
    const B = y.length;
    if (backend === 'torch') {
      // The torch addon checks X and the parameters for NaN/±Infinity, and every gradient before
      // it writes the first, in the words used here.
      return { loss: torchSequentialForwardBackward(this, X, y, B, grads, reduction, accumulate) };
    }
    const kernels = getKernels(backend);
    const ws = this.workspace(B);
    const logits = this.runForward(X, ws, kernels);
    ws.loss.kernels = kernels;
    const loss = this.loss.forward(logits, y, ws.loss, reduction);
    if (!Number.isFinite(loss)) throw new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)');
    let g: FloatArray | null = this.loss.backward(ws.loss, reduction);
    const inputGrad = grads.dX !== undefined;
    // Layers before the first Linear need a backward only for dX.
    const firstLinear = this.linearNumber.findIndex((k) => k !== 0);
    for (let i = this.layers.length - 1; i >= 0 && g !== null; i--) {
      const ctx = ws.layers[i];
      const k = this.linearNumber[i];
      ctx.kernels = kernels;
      ctx.accumulate = accumulate;
      ctx.grads = k === 0 ? {} : { W: grads[`dW${k}`], b: grads[`db${k}`] };
      if (i === 0) {
        ctx.gradInput = grads.dX ?? null;
        ctx.accumulateInput = accumulate;
      } else if (!inputGrad && i <= firstLinear) {
        ctx.gradInput = null;
      } else {
        ctx.gradInput = ws.gradInputs[i];
      }
      g = this.layers[i].backward(g, ctx);
    }
    this.checkGrads(grads, kernels);
    return { loss, logits };
  }

  /** A gradient that overflowed from finite inputs is an error, not a silent Infinity. */
  private checkGrads(grads: Readonly<Record<string, T>>, kernels: Kernels): void {
    for (const [name, t] of Object.entries(grads)) {
      if (!kernels.allFinite(t)) throw new RangeError(`Expected finite gradients but ${name} overflowed (inputs or weights too large for the dtype)`);
    }
  }
}

function activationLayer(kind: Activation): Layer {
  return kind === 'relu' ? new ReLU() : kind === 'sigmoid' ? new Sigmoid() : new Tanh();
}
