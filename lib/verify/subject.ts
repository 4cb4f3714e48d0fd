// What verify and gradcheck check, for either kind of network they take: the two-layer params
// { W1, b1, W2, b2 } or a Sequential of any depth. Both are validated the same way as their own
// forwardBackward, copied to float64 for the references, and described as a stack of layers for
// the finite differences (stack64.ts, fd.ts); the rest of the verifier does not tell them apart.
import { torchBinding } from '../backends/torch';
import { Sequential } from '../layers/sequential';
import { forwardBackward } from '../model';
import type { Activation, BackendName, Dims, Dtype, FloatArray, Reduction } from '../types';
import * as v from '../validate';
import { SHAPES, TWO_LAYER_CHAIN, type Chain } from './diagnose';
import { asStackForward, checkedProblem, stackOf, type Forward64, type Problem64 } from './model64';
import { f64, sequentialCopy, stackForward64, stackLayersOf, type Stack64, type StackForward64 } from './stack64';

/** Loss and gradients as a backend or a reference returns them. */
export interface LossAndGrads {
  loss: number;
  grads: Record<string, FloatArray>;
}

/** How a report describes the Sequential it checked. */
export interface SequentialDescription {
  /** 'Sequential(Linear 5→7, ReLU, Linear 7→4; SoftmaxCrossEntropy(mean))'. */
  network: string;
  /** B, the input width D and the classes C. */
  dims: { B: number; D: number; C: number };
  /** seq.widths: the input width of each layer, then C. */
  widths: number[];
}

/** How a report describes the network it checked. */
export type NetworkInfo = { kind: 'params'; dims: Dims; activation: Activation } | ({ kind: 'sequential' } & SequentialDescription);

export interface Subject {
  info: NetworkInfo;
  dtype: Dtype;
  B: number;
  reduction: Reduction;
  /** The float64 stack and its forward pass: what the finite differences perturb. */
  stack: Stack64;
  forward: StackForward64;
  /** The gradients of the weights, in forward order: dW1, db1, dW2, db2, … (dX not included). */
  weightGrads: string[];
  /** The shape of loss, dX and every weight gradient. */
  shapes: Record<string, number[]>;
  chain: Chain;
  /** Which layer each tensor belongs to ('layers[2] (Linear 7→9)'); empty for the two-layer params. */
  layerOf: Record<string, string>;
  /** The hand-derived forward and backward on a backend. */
  run(backend: BackendName, inputGrad: boolean): LossAndGrads;
  /** A user's gradient function, handed copies of the network and the batch (so it cannot change them). */
  call(fn: (...args: never[]) => unknown): unknown;
  /** LibTorch autograd on the float64 copy. @throws {HandgradError} ERR_TORCH_UNAVAILABLE */
  torch(): LossAndGrads;
  /** The two-layer problem, for the diagnoses only it has (twoLayerContext). */
  twoLayer?: { problem: Problem64; forward: Forward64 };
}

/** The two-layer params, validated as forwardBackward validates them. @throws {TypeError|RangeError} */
export function paramsSubject(params: unknown, X: unknown, y: unknown, activation: Activation, reduction: Reduction): Subject {
  const { p, b, problem, forward } = checkedProblem(params, X, y, activation, reduction);
  const call = (fn: (...args: never[]) => unknown) =>
    (fn as (...args: unknown[]) => unknown)({ W1: p.W1.slice(), b1: p.b1.slice(), W2: p.W2.slice(), b2: p.b2.slice() }, b.X.slice(), b.y.slice(), {
      activation, reduction, inputGrad: true,
    });
  return {
    info: { kind: 'params', dims: problem.dims, activation },
    dtype: p.dtype, B: b.B, reduction,
    stack: stackOf(problem), forward: asStackForward(forward),
    weightGrads: ['dW1', 'db1', 'dW2', 'db2'],
    shapes: SHAPES(problem.dims), chain: TWO_LAYER_CHAIN, layerOf: {},
    run: (backend, inputGrad) => {
      const r = forwardBackward(p, b.X, b.y, { backend, activation, reduction, inputGrad });
      return { loss: r.loss, grads: { ...r.grads } };
    },
    call,
    torch: () => {
      torchBinding(); // throws ERR_TORCH_UNAVAILABLE when this build has none
      const r = forwardBackward({ W1: problem.W1, b1: problem.b1, W2: problem.W2, b2: problem.b2 }, problem.X, problem.y, {
        backend: 'torch', activation, reduction, inputGrad: true,
      });
      return { loss: r.loss, grads: { ...r.grads } };
    },
    twoLayer: { problem, forward },
  };
}

/**
 * A Sequential, validated as its forwardBackward validates (X in its dtype, labels in [0, C), every
 * input finite), with its float64 copy and that copy's forward pass, which must stay finite.
 * @throws {TypeError|RangeError}
 */
export function sequentialSubject(seq: Sequential, X: unknown, y: unknown, reduction: Reduction): Subject {
  const b = v.batch(X, y, { dtype: seq.dtype, D: seq.inFeatures, C: seq.classes });
  v.assertFinite('X', b.X);
  for (const [name, t] of Object.entries(seq.params)) v.assertFinite(name, t);
  const seq64 = sequentialCopy(seq, 'float64');
  const X64 = f64(b.X);
  const stack: Stack64 = { X: X64, y: b.y, B: b.B, layers: stackLayersOf(seq64), widths: [...seq.widths], reduction };
  const forward = stackForward64(stack);
  if (!forward.outputs.every(v.allFinite)) {
    seq64.forward(X64, { backend: 'ts' }); // names the layer that overflowed
    throw new RangeError('Expected a finite forward pass but it overflowed (inputs or weights too large for the dtype)');
  }
  if (!Number.isFinite(forward.loss)) throw new RangeError('Expected a finite loss but it overflowed (logits too far apart for the dtype)');

  const shapes: Record<string, number[]> = { loss: [], dX: [b.B, seq.inFeatures] };
  const layerOf: Record<string, string> = { loss: `SoftmaxCrossEntropy(${reduction})`, dX: seq.where(0) };
  const weightGrads: string[] = [];
  seq.layers.forEach((_, i) => {
    for (const name of seq.paramNames(i)) {
      const g = `d${name}`;
      weightGrads.push(g);
      shapes[g] = name[0] === 'W' ? [seq.widths[i], seq.widths[i + 1]] : [seq.widths[i + 1]];
      layerOf[g] = seq.where(i);
    }
  });
  const L = weightGrads.length / 2;
  const at = (k: number) => seq.linearNumber.indexOf(k);
  const chain: Chain = {
    linears: L,
    input: (k) => (at(k) === 0 ? 'X' : k === 1 ? 'act(X)' : seq.linearNumber[at(k) - 1] === 0 ? `A${k - 1}` : `Z${k - 1}`),
    activationAfter: (k) => k < L && at(k + 1) - at(k) > 1,
    dxFromLinear1: at(1) === 0,
  };
  return {
    info: { kind: 'sequential', dims: { B: b.B, D: seq.inFeatures, C: seq.classes }, network: seq.toString(), widths: [...seq.widths] },
    dtype: seq.dtype, B: b.B, reduction, stack, forward, weightGrads, shapes, chain, layerOf,
    run: (backend, inputGrad) => seq.forwardBackward(b.X, b.y, { backend, inputGrad, reduction }),
    call: (fn) => (fn as (...args: unknown[]) => unknown)(sequentialCopy(seq), b.X.slice(), b.y.slice(), { reduction, inputGrad: true }),
    torch: () => seq64.forwardBackward(X64, b.y, { backend: 'torch', inputGrad: true, reduction }),
  };
}

/** opts.activation and opts.reduction for this target (a Sequential has its activations in its layers, and its own default reduction). */
export function networkOptions(target: unknown, opts: { activation?: unknown; reduction?: unknown }): { activation: Activation | null; reduction: Reduction } {
  if (target instanceof Sequential) {
    if (opts.activation !== undefined) v.fail(TypeError, 'no opts.activation with a Sequential (its layers hold the activations)', 'opts.activation', opts.activation);
    return { activation: null, reduction: v.oneOf('opts.reduction', opts.reduction, v.REDUCTIONS, target.loss.reduction) };
  }
  return {
    activation: v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu'),
    reduction: v.oneOf('opts.reduction', opts.reduction, v.REDUCTIONS, 'mean'),
  };
}

/** The subject of a verify or gradcheck call (a Sequential, or the two-layer params), with networkOptions' result. */
export function subjectOf(target: unknown, X: unknown, y: unknown, net: { activation: Activation | null; reduction: Reduction }): Subject {
  return target instanceof Sequential ? sequentialSubject(target, X, y, net.reduction) : paramsSubject(target, X, y, net.activation ?? 'relu', net.reduction);
}
