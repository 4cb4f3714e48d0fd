// Shared by the tests: the golden fixtures, an error measure in units of epsilon, and an
// independent float64 loss for finite differences (plain loops, written apart from lib/).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { torchAvailable } from '../lib/backends/torch';
import type { Activation, FloatArray, Reduction } from '../lib/types';

export const FIXTURES = join(__dirname, 'fixtures');

export interface JsonCase {
  name: string;
  dtype: 'float64' | 'float32';
  activation: Activation;
  reduction: Reduction;
  dims: { B: number; D: number; H: number; C: number };
  inputs: { X: number[]; y: number[]; W1: number[]; b1: number[]; W2: number[]; b2: number[] };
  expected: { loss: number[]; dX: number[]; dW1: number[]; db1: number[]; dW2: number[]; db2: number[] };
}

export function jsonCases(): JsonCase[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as JsonCase);
}

export const EPS = { float64: 2 ** -52, float32: 2 ** -23 } as const;

/** max|got − want| / max|want|, in units of the dtype's epsilon (normwise, as the fixtures' README asks). */
export function errEps(got: ArrayLike<number>, want: ArrayLike<number>, dtype: 'float64' | 'float32'): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} ≠ ${want.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (Number.isNaN(diff)) return Infinity;
  return scale === 0 ? (diff === 0 ? 0 : Infinity) : diff / scale / EPS[dtype];
}

export function typed(dtype: 'float64' | 'float32', a: ArrayLike<number>): FloatArray {
  return dtype === 'float64' ? Float64Array.from(a) : Float32Array.from(a);
}

export function caseParams(c: JsonCase) {
  return {
    W1: typed(c.dtype, c.inputs.W1),
    b1: typed(c.dtype, c.inputs.b1),
    W2: typed(c.dtype, c.inputs.W2),
    b2: typed(c.dtype, c.inputs.b2),
  };
}

export interface Net {
  W1: ArrayLike<number>;
  b1: ArrayLike<number>;
  W2: ArrayLike<number>;
  b2: ArrayLike<number>;
}

/** The loss, from the definition, in float64 — the function finite differences differentiate. */
export function referenceLoss(p: Net, X: ArrayLike<number>, y: ArrayLike<number>, act: Activation, red: Reduction): number {
  const H = p.b1.length;
  const C = p.b2.length;
  const D = p.W1.length / H;
  const B = y.length;
  let total = 0;
  for (let b = 0; b < B; b++) {
    const a1: number[] = [];
    for (let h = 0; h < H; h++) {
      let z = p.b1[h];
      for (let d = 0; d < D; d++) z += X[b * D + d] * p.W1[d * H + h];
      a1.push(act === 'relu' ? Math.max(z, 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-z)) : Math.tanh(z));
    }
    const z2: number[] = [];
    for (let c = 0; c < C; c++) {
      let z = p.b2[c];
      for (let h = 0; h < H; h++) z += a1[h] * p.W2[h * C + c];
      z2.push(z);
    }
    const m = Math.max(...z2);
    const lse = m + Math.log(z2.reduce((s, z) => s + Math.exp(z - m), 0));
    total += lse - z2[y[b]];
  }
  return red === 'mean' ? total / B : total;
}

/** Central differences of referenceLoss with respect to every entry of one tensor. */
export function numericalGrad(
  tensor: Float64Array,
  loss: () => number,
  step = 1e-6,
): Float64Array {
  const g = new Float64Array(tensor.length);
  for (let i = 0; i < tensor.length; i++) {
    const keep = tensor[i];
    tensor[i] = keep + step;
    const plus = loss();
    tensor[i] = keep - step;
    const minus = loss();
    tensor[i] = keep;
    g[i] = (plus - minus) / (2 * step);
  }
  return g;
}

/** A deterministic pseudo-random array (a small LCG, so the tests do not depend on lib/rng). */
export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

export function randomLabels(B: number, C: number, seed: number): Int32Array {
  const r = randomArray(B, seed);
  return Int32Array.from(r, (v) => Math.min(C - 1, Math.floor(((v + 1) / 2) * C)));
}

/** The two-layer params, X and y of one seeded problem, weights scaled by 1/√fan_in. */
export function randomProblem(dtype: 'float64' | 'float32', B: number, D: number, H: number, C: number, seed: number) {
  const make = (n: number, s: number, scale: number) => typed(dtype, randomArray(n, s, scale));
  return {
    params: { W1: make(D * H, seed + 1, 1 / Math.sqrt(D)), b1: make(H, seed + 2, 0.1), W2: make(H * C, seed + 3, 1 / Math.sqrt(H)), b2: make(C, seed + 4, 0.1) },
    X: make(B * D, seed + 5, 1),
    y: randomLabels(B, C, seed + 6),
  };
}

/**
 * Whether the LibTorch tests must run: the addon loads, or LibTorch is installed (setup then builds
 * the addon, so a missing addon is a failure, not a skip).
 */
export function torchExpected(): boolean {
  if (torchAvailable()) return true;
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', 'libtorch-dev'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}
