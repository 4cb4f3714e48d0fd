// A network as the verifier's own float64 arithmetic sees it: Linear layers and elementwise
// activations in any order, then softmax cross-entropy. The two-layer network (model64.ts) is the
// stack [Linear(W1,b1), act, Linear(W2,b2)]; a Sequential is its layers. The forward pass here is
// the one finite differences (fd.ts) start from, with compensated sums so it carries as little
// rounding as float64 allows. Nothing here is the truth a candidate is judged by: that is torch,
// or the finite differences built on this forward.
import { Sequential } from '../layers/sequential';
import type { Activation, Dtype, FloatArray, Reduction } from '../types';

export type Layer64 =
  | { kind: 'linear'; /** Linear number, from 1. */ k: number; in: number; out: number; W: Float64Array; b: Float64Array }
  | { kind: Activation };

export interface Stack64 {
  /** X [B, widths[0]]. */
  X: Float64Array;
  y: Int32Array;
  B: number;
  layers: Layer64[];
  /** widths[i] is the input width of layers[i]; the last one is C. */
  widths: number[];
  reduction: Reduction;
}

export interface StackForward64 {
  /** outputs[i] is layers[i]'s output [B, widths[i+1]]; the last one is the logits. */
  outputs: Float64Array[];
  probs: Float64Array; // [B,C]
  /** log Σ_c exp(logits[b,c]) − logits[b,y_b], per row [B]. */
  rowLoss: Float64Array;
  loss: number;
}

/** Copies any float array into a Float64Array (float32 values are exact in float64). */
export function f64(a: ArrayLike<number>): Float64Array {
  return a instanceof Float64Array ? a.slice() : Float64Array.from(a);
}

export function act(activation: Activation, z: number): number {
  if (activation === 'relu') return z > 0 ? z : 0;
  if (activation === 'sigmoid') return 1 / (1 + Math.exp(-z));
  return Math.tanh(z);
}

/**
 * C[M,N] = A[M,K]·B[K,N] (+ a bias row broadcast over M), each sum compensated (Neumaier), so the
 * forward pass that finite differences start from carries as little rounding as float64 allows.
 */
export function matmul(A: Float64Array, Bm: Float64Array, M: number, K: number, N: number, bias?: Float64Array): Float64Array {
  const C = new Float64Array(M * N);
  matmulInto(A, Bm, M, K, N, C, new Float64Array(N), bias);
  return C;
}

/** matmul into C [M,N], with comp (at least N long) as the compensation scratch; zero rows of A are skipped. */
export function matmulInto(A: Float64Array, Bm: Float64Array, M: number, K: number, N: number, C: Float64Array, comp: Float64Array, bias?: Float64Array): void {
  for (let i = 0; i < M; i++) {
    const ci = i * N;
    if (bias) C.set(bias, ci);
    else C.fill(0, ci, ci + N);
    comp.fill(0, 0, N);
    for (let k = 0; k < K; k++) {
      const a = A[i * K + k];
      if (a === 0) continue;
      const bk = k * N;
      for (let j = 0; j < N; j++) {
        const x = a * Bm[bk + j];
        const s = C[ci + j];
        const t = s + x;
        comp[j] += Math.abs(s) >= Math.abs(x) ? s - t + x : x - t + s;
        C[ci + j] = t;
      }
    }
    for (let j = 0; j < N; j++) C[ci + j] += comp[j];
  }
}

/** Every layer forward, then softmax and the per-row cross-entropy (log-sum-exp on the logits). */
export function stackForward64(s: Stack64): StackForward64 {
  const { B, widths } = s;
  const outputs: Float64Array[] = [];
  let a = s.X;
  for (const l of s.layers) {
    a = l.kind === 'linear' ? matmul(a, l.W, B, l.in, l.out, l.b) : a.map((z) => act(l.kind, z));
    outputs.push(a);
  }
  const C = widths[widths.length - 1];
  const logits = a;
  const probs = new Float64Array(B * C);
  const rowLoss = new Float64Array(B);
  let total = 0;
  for (let b = 0; b < B; b++) {
    const o = b * C;
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[o + c]);
    let sum = 0;
    for (let c = 0; c < C; c++) sum += probs[o + c] = Math.exp(logits[o + c] - m);
    for (let c = 0; c < C; c++) probs[o + c] /= sum;
    rowLoss[b] = Math.log(sum) + m - logits[o + s.y[b]];
    total += rowLoss[b];
  }
  return { outputs, probs, rowLoss, loss: s.reduction === 'mean' ? total / B : total };
}

/** The layers of a Sequential as float64 data (copies of its parameters). */
export function stackLayersOf(seq: Sequential): Layer64[] {
  return seq.layers.map((l, i): Layer64 => {
    const spec = l.spec();
    if (spec.kind !== 'linear') return { kind: spec.kind };
    const k = seq.linearNumber[i];
    return { kind: 'linear', k, in: spec.in, out: spec.out, W: f64(seq.params[`W${k}`]), b: f64(seq.params[`b${k}`]) };
  });
}

/**
 * A fresh Sequential with copies of seq's parameters: in float64 (the references' copy), or in seq's
 * own dtype (what a candidate function is handed, so it cannot write into the caller's network).
 */
export function sequentialCopy(seq: Sequential, dtype: Dtype = seq.dtype): Sequential {
  const params: Record<string, FloatArray> = {};
  for (const [name, t] of Object.entries(seq.params)) params[name] = dtype === 'float64' ? f64(t) : t.slice();
  return Sequential.fromSpec({ ...seq.spec(), dtype }, params);
}
