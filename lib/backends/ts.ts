// The pure-TypeScript backend: the same math as native/core/mlp.h, step for step, with plain loops
// for the GEMMs (i-k-j order so the inner loop walks rows contiguously). No native code needed.
import type { Activation, Dims, FloatArray } from '../types';
import { allFinite, explainNonFinite } from '../validate';
import { carveWorkspace } from '../workspace';
import type { Backend, ForwardJob, StepJob } from './backend';

/** C[M,N] = beta·C + A[M,K]·B[K,N] (beta is 0 or 1). */
function gemmNN(A: FloatArray, B: FloatArray, C: FloatArray, M: number, N: number, K: number, beta: number): void {
  if (beta === 0) C.fill(0);
  for (let i = 0; i < M; i++) {
    const ci = i * N;
    for (let k = 0; k < K; k++) {
      const a = A[i * K + k];
      const bk = k * N;
      for (let j = 0; j < N; j++) C[ci + j] += a * B[bk + j];
    }
  }
}

/** C[M,N] = beta·C + Aᵀ·B with A stored [K,M] and B [K,N]. */
function gemmTN(A: FloatArray, B: FloatArray, C: FloatArray, M: number, N: number, K: number, beta: number): void {
  if (beta === 0) C.fill(0);
  for (let k = 0; k < K; k++) {
    const ak = k * M;
    const bk = k * N;
    for (let i = 0; i < M; i++) {
      const a = A[ak + i];
      const ci = i * N;
      for (let j = 0; j < N; j++) C[ci + j] += a * B[bk + j];
    }
  }
}

/** C[M,N] = beta·C + A·Bᵀ with A stored [M,K] and B [N,K]: dot products of rows. */
function gemmNT(A: FloatArray, B: FloatArray, C: FloatArray, M: number, N: number, K: number, beta: number): void {
  for (let i = 0; i < M; i++) {
    const ai = i * K;
    for (let j = 0; j < N; j++) {
      const bj = j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += A[ai + k] * B[bj + k];
      C[i * N + j] = beta === 0 ? s : C[i * N + j] + s;
    }
  }
}

function broadcastRows(bias: FloatArray, out: FloatArray, rows: number): void {
  for (let b = 0; b < rows; b++) out.set(bias, b * bias.length);
}

function sumRows(dZ: FloatArray, db: FloatArray, rows: number, accumulate: boolean): void {
  const cols = db.length;
  if (!accumulate) db.fill(0);
  for (let b = 0; b < rows; b++) for (let j = 0; j < cols; j++) db[j] += dZ[b * cols + j];
}

function activationForward(act: Activation, Z: FloatArray, A: FloatArray): void {
  const n = Z.length;
  if (act === 'relu') for (let i = 0; i < n; i++) A[i] = Z[i] > 0 ? Z[i] : 0;
  else if (act === 'sigmoid') for (let i = 0; i < n; i++) A[i] = 1 / (1 + Math.exp(-Z[i]));
  else for (let i = 0; i < n; i++) A[i] = Math.tanh(Z[i]);
}

// dZ = dA ⊙ act'(Z) in place; derivatives from the output for sigmoid/tanh, as PyTorch.
function activationBackward(act: Activation, Z: FloatArray, A: FloatArray, dA: FloatArray): void {
  const n = dA.length;
  if (act === 'relu') for (let i = 0; i < n; i++) dA[i] = Z[i] > 0 ? dA[i] : 0;
  else if (act === 'sigmoid') for (let i = 0; i < n; i++) dA[i] = dA[i] * ((1 - A[i]) * A[i]);
  else for (let i = 0; i < n; i++) dA[i] = dA[i] * (1 - A[i] * A[i]);
}

// Softmax and Σ_b loss_b by log-sum-exp on the logits (see kernels.h).
function softmaxCrossEntropy(logits: FloatArray, y: Int32Array, probs: FloatArray, B: number, C: number): number {
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

// Finiteness is checked on Z1 (before the activation) and the logits, as in native/core/mlp.h.
function forwardInto(j: ForwardJob, Z1: FloatArray, A1: FloatArray, logits: FloatArray): void {
  const { B, D, H, C } = j.dims;
  broadcastRows(j.b1, Z1, B);
  gemmNN(j.X, j.W1, Z1, B, H, D, 1);
  if (!allFinite(Z1)) explainNonFinite('Z1', j);
  activationForward(j.activation, Z1, A1);
  broadcastRows(j.b2, logits, B);
  gemmNN(A1, j.W2, logits, B, C, H, 1);
  if (!allFinite(logits)) explainNonFinite('logits', j);
}

export const tsBackend: Backend = {
  name: 'ts',
  forward(j: ForwardJob): void {
    const w = carveWorkspace(j.ws, j.dims);
    forwardInto(j, w.Z1, w.A1, w.logits);
  },
  forwardBackward(j: StepJob): number {
    const d: Dims = j.dims;
    const { B, D, H, C } = d;
    const w = carveWorkspace(j.ws, d);
    forwardInto(j, w.Z1, w.A1, w.logits);
    const total = softmaxCrossEntropy(w.logits, j.y, w.probs, B, C);
    const f32 = j.X instanceof Float32Array;
    const reduced = j.reduction === 'mean' ? total / B : total;
    const loss = f32 ? Math.fround(reduced) : reduced;
    if (!Number.isFinite(loss)) explainNonFinite('loss', j); // before any gradient is written
    const scale = j.reduction === 'mean' ? (f32 ? Math.fround(1 / B) : 1 / B) : 1;
    // dZ2 = (softmax(Z2) − onehot(y)) · scale
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) w.dZ2[b * C + c] = w.probs[b * C + c] * scale;
      w.dZ2[b * C + j.y[b]] -= scale;
    }
    const beta = j.accumulate ? 1 : 0;
    gemmTN(w.A1, w.dZ2, j.dW2, H, C, B, beta); // dW2 = A1ᵀ·dZ2
    sumRows(w.dZ2, j.db2, B, j.accumulate); // db2 = Σ_b dZ2
    gemmNT(w.dZ2, j.W2, w.dZ1, B, H, C, 0); // dA1 = dZ2·W2ᵀ
    activationBackward(j.activation, w.Z1, w.A1, w.dZ1); // dZ1 = dA1 ⊙ act'(Z1)
    gemmTN(j.X, w.dZ1, j.dW1, D, H, B, beta); // dW1 = Xᵀ·dZ1
    sumRows(w.dZ1, j.db1, B, j.accumulate); // db1 = Σ_b dZ1
    if (j.dX) gemmNT(w.dZ1, j.W1, j.dX, B, D, H, beta); // dX = dZ1·W1ᵀ
    for (const g of [j.dX, j.dW1, j.db1, j.dW2, j.db2]) if (g && !allFinite(g)) explainNonFinite('grads', j);
    return loss;
  },
};
