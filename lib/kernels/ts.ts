// The pure-TypeScript kernels: the same math as native/core/{blas,kernels}.h, loop for loop where
// rounding depends on it, used by the ts engine (lib/engine/ts.ts) and the Layer classes. GEMMs are
// plain loops ordered so the inner loop walks rows contiguously.
import type { LossArgs } from '../engine/engine';
import type { Activation, FloatArray, Reduction } from '../types';
import type { Kernels } from './kernels';

/**
 * C[M,N] = alpha·op(A)·op(B) + beta·C, row-major (see Kernels.gemm). Each entry's product is formed
 * from zero and then added to beta·C, as BLAS (and LibTorch's addmm with the bias in C) do: adding
 * each term into a large bias would round it into every partial sum. beta = 0 ignores what C held.
 */
export function gemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: FloatArray, B: FloatArray, beta: number, C: FloatArray,
): void {
  const store = (c: number, sum: number) => { C[c] = (beta === 0 ? 0 : beta * C[c]) + alpha * sum; };
  if (!transB) {
    // Row i accumulates op(A)[i,k]·B[k,:] (i-k-j: B walked contiguously) into a row of C's own type,
    // so a float32 product rounds at every step as it would in C.
    const acc = C instanceof Float32Array ? new Float32Array(N) : new Float64Array(N);
    for (let i = 0; i < M; i++) {
      acc.fill(0);
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + i] : A[i * K + k];
        const bk = k * N;
        for (let j = 0; j < N; j++) acc[j] += a * B[bk + j];
      }
      for (let j = 0; j < N; j++) store(i * N + j, acc[j]);
    }
    return;
  }
  // B stored [N,K]: each C entry is a dot product of rows.
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const bj = j * K;
      let s = 0;
      if (transA) for (let k = 0; k < K; k++) s += A[k * M + i] * B[bj + k];
      else for (let k = 0; k < K; k++) s += A[i * K + k] * B[bj + k];
      store(i * N + j, s);
    }
  }
}

export function broadcastRows(bias: FloatArray, out: FloatArray, rows: number): void {
  for (let b = 0; b < rows; b++) out.set(bias, b * bias.length);
}

export function sumRows(dZ: FloatArray, db: FloatArray, rows: number, accumulate: boolean): void {
  const cols = db.length;
  if (!accumulate) db.fill(0);
  for (let b = 0; b < rows; b++) for (let j = 0; j < cols; j++) db[j] += dZ[b * cols + j];
}

export function activationForward(act: Activation, Z: FloatArray, A: FloatArray): void {
  const n = Z.length;
  if (act === 'relu') for (let i = 0; i < n; i++) A[i] = Z[i] > 0 ? Z[i] : 0;
  else if (act === 'sigmoid') for (let i = 0; i < n; i++) A[i] = 1 / (1 + Math.exp(-Z[i]));
  else for (let i = 0; i < n; i++) A[i] = Math.tanh(Z[i]);
}

// dZ = dA ⊙ act'(Z) in place; derivatives from the output for sigmoid/tanh, as PyTorch.
export function activationBackward(act: Activation, Z: FloatArray, A: FloatArray, dA: FloatArray): void {
  const n = dA.length;
  if (act === 'relu') for (let i = 0; i < n; i++) dA[i] = Z[i] > 0 ? dA[i] : 0;
  else if (act === 'sigmoid') for (let i = 0; i < n; i++) dA[i] = dA[i] * ((1 - A[i]) * A[i]);
  else for (let i = 0; i < n; i++) dA[i] = dA[i] * (1 - A[i] * A[i]);
}

// Softmax and Σ_b loss_b by log-sum-exp on the logits (see kernels.h).
export function softmaxCrossEntropy(logits: FloatArray, y: Int32Array, probs: FloatArray, B: number, C: number): number {
  let total = 0;
  for (let b = 0; b < B; b++) {
    const o = b * C;
    let m = logits[o];
    for (let c = 1; c < C; c++) if (logits[o + c] > m) m = logits[o + c];
    let s = 0;
    for (let c = 0; c < C; c++) {
      probs[o + c] = Math.exp(logits[o + c] - m);
      s += probs[o + c];
    }
    const inv = 1 / s;
    for (let c = 0; c < C; c++) probs[o + c] *= inv;
    total += m - logits[o + y[b]] + Math.log(s); // (m − z_y) first, as kernels.h
  }
  return total;
}

export function softmaxCrossEntropyBackward(
  probs: FloatArray, y: Int32Array, dZ: FloatArray, B: number, C: number, reduction: Reduction,
): void {
  // 1/B rounded in the dtype for mean, 1 for sum (kernels.h lossScale).
  const scale = reduction === 'mean' ? (probs instanceof Float32Array ? Math.fround(1 / B) : 1 / B) : 1;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) dZ[b * C + c] = probs[b * C + c] * scale;
    dZ[b * C + y[b]] -= scale;
  }
}

/**
 * t_bc, each row's effective target weight of crossEntropyGeneral (the reduction's scale folded in),
 * in float64 [B,C]: the verifier's float64 stack and finite differences (lib/verify) read it.
 */
export function targetWeights(y: Int32Array, s: LossArgs, B: number, C: number): Float64Array {
  const t = new Float64Array(B * C);
  const { weight, targets, ignoreIndex } = s;
  const labels = targets === null;
  const eps = s.labelSmoothing;
  let D = 1;
  if (s.reduction === 'mean' && labels) {
    D = 0;
    for (let b = 0; b < B; b++) if (y[b] !== ignoreIndex) D += weight ? weight[y[b]] : 1;
  } else if (s.reduction === 'mean') D = B;
  for (let b = 0; b < B; b++) {
    if (labels && y[b] === ignoreIndex) continue;
    for (let c = 0; c < C; c++) {
      const w = weight ? weight[c] : 1;
      t[b * C + c] = labels
        ? (c === y[b] ? ((1 - eps) / D) * w : 0) + ((eps / C) / D) * w
        : (w * (eps > 0 ? targets![b * C + c] * (1 - eps) + eps / C : targets![b * C + c])) / D;
    }
  }
  return t;
}

/**
 * F.cross_entropy with every option: native/core/kernels.h crossEntropyGeneral loop for loop (the
 * derivation is there). Row b's loss is Σ_c t_bc·(lse_b − z_bc) and dZ_b = g_b·(p_b·S_b − t_b), the
 * reduction's scale folded into t; y is unused with probability targets. Returns Σ_b loss_b; the
 * rows' losses (rounded to the dtype) go to `losses` when given. The caller has refused a 'mean'
 * with nothing to divide by.
 */
export function crossEntropyGeneral(
  logits: FloatArray, y: Int32Array, s: LossArgs, B: number, C: number, probs: FloatArray, dZ: FloatArray, losses: FloatArray | null,
): number {
  const labels = s.targets === null;
  const mean = s.reduction === 'mean';
  const eps = s.labelSmoothing;
  const invC = 1 / C;
  const { weight, targets, gradOutput, ignoreIndex } = s;
  let Dn = 1;
  let Ds = 1;
  if (mean && labels) {
    Dn = 0;
    for (let b = 0; b < B; b++) if (y[b] !== ignoreIndex) Dn += weight ? weight[y[b]] : 1;
    Ds = Dn;
  } else if (mean) {
    Dn = Ds = B;
  }
  const nllScale = (1 - eps) / Dn;
  const smoothScale = (eps * invC) / Ds;
  // T(x): a value rounded to the dtype, as the C++ computes each of these in T.
  const T = probs instanceof Float32Array ? Math.fround : (x: number) => x;
  let total = 0;
  for (let b = 0; b < B; b++) {
    const o = b * C;
    let m = logits[o];
    for (let c = 1; c < C; c++) if (logits[o + c] > m) m = logits[o + c];
    let sum = 0;
    for (let c = 0; c < C; c++) {
      probs[o + c] = Math.exp(T(logits[o + c] - m));
      sum = T(sum + probs[o + c]);
    }
    const inv = T(1 / sum);
    for (let c = 0; c < C; c++) probs[o + c] *= inv;
    const logS = T(Math.log(sum));
    const skip = labels && y[b] === ignoreIndex;
    const yb = labels && !skip ? y[b] : -1;
    const nll = skip ? 0 : nllScale * (weight && labels ? weight[yb] : 1);
    const t = (c: number): number => {
      if (skip) return 0;
      const w = weight ? weight[c] : 1;
      if (!labels) {
        const q = targets![o + c];
        return (w * (eps > 0 ? q * (1 - eps) + eps * invC : q)) / Dn;
      }
      return (c === yb ? nll : 0) + smoothScale * w;
    };
    let row = 0;
    let S = 0;
    for (let c = 0; c < C; c++) {
      const tc = t(c);
      if (tc === 0) continue;
      row += tc * ((m - logits[o + c]) + logS);
      S += tc;
    }
    total += row;
    if (losses) losses[b] = row;
    const g = gradOutput ? gradOutput[b] : 1;
    for (let c = 0; c < C; c++) dZ[o + c] = g * (probs[o + c] * S - t(c));
  }
  return total;
}

/** True when every entry is finite: x − x is 0 for finite x and NaN otherwise, no branch per entry. */
export function allFinite(a: FloatArray): boolean {
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc += a[i] - a[i];
  return acc === 0;
}

export const tsKernels: Kernels = {
  name: 'ts', gemm, broadcastRows, sumRows, activationForward, activationBackward,
  softmaxCrossEntropy, softmaxCrossEntropyBackward, allFinite,
};
