// The pure-TypeScript engine, and the math of each layer as the Layer classes run it: the same
// kernels in the same order as native/core/stack.h, so native, wasm and ts agree to the bit where
// their kernels do. The Layer classes (lib/layers) call linearForward/…Backward with their own
// context's kernels; the engine calls them with the ts kernels over its own per-batch buffers.
import type { Kernels } from '../kernels/kernels';
import { tsKernels } from '../kernels/ts';
import type { Activation, FloatArray, Reduction } from '../types';
import { checkLengths, copyLabels, paramCounts, type Engine, LAYER_CODE, type PreparedNet, type StackDescription, type StepArgs, type StepFailure, type StepOutcome, perBatch } from './engine';

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
export function reduceLoss(total: number, B: number, reduction: Reduction, f32: boolean): number {
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
  const buffers = perBatch((B: number) => ({
    outputs: Array.from(kinds, (_, i): FloatArray => new F(B * widths[i + 1])),
    gradInputs: Array.from(kinds, (_, i) => (i === 0 ? null : new F(B * widths[i]))),
    probs: new F(B * C),
    dLogits: new F(B * C),
    scratch: new F(kinds[0] === LAYER_CODE.linear ? 0 : B * widths[0]),
    labels: new Int32Array(B),
  }));

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
      const y = copyLabels(a.y, w.labels, C);
      const failure = runForward(X, B, w);
      if (failure) return { failure };
      const logits = w.outputs[L - 1];
      const loss = reduceLoss(k.softmaxCrossEntropy(logits, y, w.probs, B, C), B, a.reduction, f32);
      if (!Number.isFinite(loss)) return { failure: { stage: 'loss', layer: L - 1 } };
      k.softmaxCrossEntropyBackward(w.probs, y, w.dLogits, B, C, a.reduction);
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
      return bad ? { failure: { stage: 'grads', layer: 0 } } : { loss, logits };
    },
    tensors(B) {
      const w = buffers.peek(B);
      return w ? { outputs: w.outputs, probs: w.probs } : null;
    },
  };
}

export const tsEngine: Engine = { name: 'ts', prepare };
