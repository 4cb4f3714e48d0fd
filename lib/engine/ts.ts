// The pure-TypeScript engine, and the math of each layer as the Layer classes run it: the same
// kernels in the same order as native/core/stack.h, so native, wasm and ts agree to the bit where
// their kernels do. The Layer classes (lib/layers) call linearForward/…Backward with their own
// context's kernels; the engine calls them with the ts kernels over its own per-batch buffers.
import type { Kernels } from '../kernels/kernels';
import { crossEntropyGeneral, tsKernels } from '../kernels/ts';
import type { Activation, FloatArray, LossReduction } from '../types';
import { fail, memoryOf } from '../validate';
import {
  checkLengths, copyLabels, emptyMeanError, IGNORE_INDEX, type LossArgs, paramCounts, type Engine, LAYER_CODE, type PreparedNet,
  type StackDescription, type StepArgs, type StepFailure, type StepOutcome, perBatch,
} from './engine';

const ACTIVATION_OF: readonly Activation[] = ['relu', 'relu', 'sigmoid', 'tanh']; // by LAYER_CODE (0 is Linear)

/** Z [B,out] = A [B,in]·W [in,out] + b: the bias rows first, then the GEMM adds into them (beta = 1). */
export function linearForward(k: Kernels, B: number, inF: number, outF: number, A: FloatArray, W: FloatArray, b: FloatArray, Z: FloatArray): void {
  k.broadcastRows(b, Z, B);
  k.gemm(false, false, B, outF, inF, 1, A, W, 1, Z);
}

/**
 * Z = A·W + b  ⇒  dW = Aᵀ·dZ [in,out], db = Σ_b dZ [out], dA = dZ·Wᵀ [B,in] (when dA is wanted).
 * accumulate adds into dW and db, accumulateInput into dA (PyTorch's .grad semantics).
 */
export function linearBackward(
  k: Kernels, B: number, inF: number, outF: number, A: FloatArray, W: FloatArray, dZ: FloatArray,
  dW: FloatArray, db: FloatArray, accumulate: boolean, dA: FloatArray | null, accumulateInput: boolean,
): void {
  k.gemm(true, false, inF, outF, B, 1, A, dZ, accumulate ? 1 : 0, dW);
  k.sumRows(dZ, db, B, accumulate);
  if (dA !== null) k.gemm(false, true, B, inF, outF, 1, dZ, W, accumulateInput ? 1 : 0, dA);
}

/**
 * A = act(Z)  ⇒  dZ = dA ⊙ act'(Z) into dZ (ReLU from Z; sigmoid, tanh from A, as PyTorch). The
 * kernel works in place, so dA is copied first and left as it was; with accumulate the result goes
 * through `scratch` and is added into dZ.
 */
export function activationBackward(
  k: Kernels, act: Activation, Z: FloatArray, A: FloatArray, dA: FloatArray, dZ: FloatArray, accumulate: boolean, scratch: FloatArray | null,
): void {
  const into = accumulate ? scratch! : dZ;
  into.set(dA);
  k.activationBackward(act, Z, A, into);
  if (accumulate) for (let i = 0; i < into.length; i++) dZ[i] += into[i];
}

/** The loss in the logits' dtype (a float32 net reports a float32 loss, as PyTorch). */
export function reduceLoss(total: number, B: number, reduction: LossReduction, f32: boolean): number {
  const reduced = reduction === 'mean' ? total / B : total;
  return f32 ? Math.fround(reduced) : reduced;
}

function prepare(net: StackDescription): PreparedNet {
  const k = tsKernels;
  const { kinds, widths, params } = net;
  const L = kinds.length;
  const C = widths[L];
  const F = net.dtype === 'float64' ? Float64Array : Float32Array;
  const f32 = net.dtype === 'float32';
  const firstLinear = kinds.indexOf(LAYER_CODE.linear);
  // Parameter index of each Linear's W (b follows it), -1 for an activation.
  const paramAt: number[] = [];
  let n = 0;
  for (const kind of kinds) paramAt.push(kind === LAYER_CODE.linear ? 2 * n++ : -1);
  const counts = paramCounts(net);
  // Per batch size: each layer's output (the last is the logits), ∂loss/∂(layer i's input) for i ≥ 1
  // (layer 0's is dX), softmax and its gradient, and layer 0's accumulated input gradient when it is an activation.
  const buffers = perBatch((B: number) => {
    const w = {
      outputs: Array.from(kinds, (_, i): FloatArray => new F(B * widths[i + 1])),
      gradInputs: Array.from(kinds, (_, i) => (i === 0 ? null : new F(B * widths[i]))),
      probs: new F(B * C),
      dLogits: new F(B * C),
      scratch: new F(kinds[0] === LAYER_CODE.linear ? 0 : B * widths[0]),
      labels: new Int32Array(B),
      // The loss options' own copies (read once, as the labels), and the rows' losses for 'none'.
      weight: new F(C), targets: new F(B * C), gradOutput: new F(B), losses: new F(B),
    };
    // Each of these arrays is its buffer's only view: a caller's view shares memory with one iff it is on that buffer.
    const memory = new Set([...w.outputs, ...w.gradInputs, w.probs, w.dLogits, w.scratch, w.labels, w.weight, w.targets, w.gradOutput, w.losses]
      .flatMap((a) => (a === null ? [] : [a.buffer])));
    return { ...w, memory };
  });

  /** a.loss (or the default loss when rows are ignored) with its arrays copied into w's buffers. */
  const ownLoss = (a: StepArgs, w: { weight: FloatArray; targets: FloatArray; gradOutput: FloatArray }): LossArgs => {
    const o = a.loss ?? { reduction: a.reduction, weight: null, ignoreIndex: IGNORE_INDEX, labelSmoothing: 0, targets: null, gradOutput: null };
    const copy = (from: FloatArray | null, into: FloatArray, name: string): FloatArray | null => {
      if (from === null) return null;
      if (from.length !== into.length) fail(RangeError, `${into.length} elements`, name, from);
      into.set(from);
      return into;
    };
    return { ...o, weight: copy(o.weight, w.weight, 'weight'), targets: copy(o.targets, w.targets, 'targets'), gradOutput: copy(o.gradOutput, w.gradOutput, 'gradOutput') };
  };

  const runForward = (X: FloatArray, B: number, w: { outputs: FloatArray[] }): StepFailure | undefined => {
    // ReLU would hide −Infinity in X: check it when an activation comes first.
    if (firstLinear !== 0 && !k.allFinite(X)) return { stage: 'input', layer: 0 };
    let a = X;
    for (let i = 0; i < L; i++) {
      const out = w.outputs[i];
      const p = paramAt[i];
      if (p < 0) k.activationForward(ACTIVATION_OF[kinds[i]], a, out);
      else {
        linearForward(k, B, widths[i], widths[i + 1], a, params[p], params[p + 1], out);
        if (!k.allFinite(out)) return { stage: 'forward', layer: i };
      }
      a = out;
    }
    return undefined;
  };

  return {
    forward(X, B) {
      checkLengths(X, B, widths[0], params, counts, null);
      const w = buffers.get(B);
      const failure = runForward(X, B, w);
      return failure ? { failure } : { logits: w.outputs[L - 1] };
    },
    forwardBackward(a: StepArgs): StepOutcome {
      const { X, B, grads, dX, accumulate } = a;
      checkLengths(a.X, a.B, widths[0], params, counts, a);
      const w = buffers.get(B);
      const targets = a.loss?.targets ?? null;
      const ignoreIndex = a.loss?.ignoreIndex ?? IGNORE_INDEX;
      const ignored = targets === null ? copyLabels(a.y, w.labels, C, ignoreIndex) : 0;
      const y = w.labels;
      const general = a.loss != null || ignored > 0 ? ownLoss(a, w) : null;
      if (general !== null && targets === null && general.reduction === 'mean') {
        let d = 0;
        for (let i = 0; i < B; i++) if (y[i] !== ignoreIndex) d += general.weight ? general.weight[y[i]] : 1;
        if (d === 0) throw emptyMeanError(B - ignored, ignoreIndex);
      }
      const failure = runForward(X, B, w);
      if (failure) return { failure };
      const logits = w.outputs[L - 1];
      let loss: number;
      const none = general?.reduction === 'none';
      if (general === null) {
        loss = reduceLoss(k.softmaxCrossEntropy(logits, y, w.probs, B, C), B, a.reduction, f32);
        if (!Number.isFinite(loss)) return { failure: { stage: 'loss', layer: L - 1 } };
        k.softmaxCrossEntropyBackward(w.probs, y, w.dLogits, B, C, a.reduction as 'mean' | 'sum');
      } else {
        const total = crossEntropyGeneral(logits, y, general, B, C, w.probs, w.dLogits, none ? w.losses : null);
        loss = none ? total : f32 ? Math.fround(total) : total;
        if (!Number.isFinite(loss)) return { failure: { stage: 'loss', layer: L - 1 } };
      }
      let g: FloatArray = w.dLogits;
      for (let i = L - 1; i >= 0; i--) {
        // Layers at or before the first Linear need a backward only for dX.
        const gradIn = i === 0 ? dX : i <= firstLinear && dX === null ? null : w.gradInputs[i];
        const accIn = i === 0 && accumulate;
        const input = i === 0 ? X : w.outputs[i - 1];
        const p = paramAt[i];
        if (p >= 0) linearBackward(k, B, widths[i], widths[i + 1], input, params[p], g, grads[p], grads[p + 1], accumulate, gradIn, accIn);
        else if (gradIn !== null) activationBackward(k, ACTIVATION_OF[kinds[i]], input, w.outputs[i], g, gradIn, accIn, w.scratch);
        if (gradIn === null) break;
        g = gradIn;
      }
      const bad = (dX !== null && !k.allFinite(dX)) || grads.some((t) => !k.allFinite(t));
      if (bad) return { failure: { stage: 'grads', layer: 0 } };
      return none ? { loss, logits, losses: w.losses } : { loss, logits };
    },
    tensors(B) {
      const w = buffers.peek(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
    sharesWorkspace(B, view) {
      const w = buffers.peek(B); // none yet: a fresh one, which no caller can hold
      const m = memoryOf(view);
      return w !== undefined && m !== null && w.memory.has(m);
    },
  };
}

export const tsEngine: Engine = { name: 'ts', prepare };
