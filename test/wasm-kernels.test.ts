// The WebAssembly kernels (lib/kernels/wasm.ts over native/wasm/handgrad.cc): each kernel against
// a float64 reference written here from the definition, both dtypes, with error bounds derived
// from the length of each sum (float32 results are compared with float64 truths); subarray
// arguments; bit-for-bit agreement of the kernels composed into the two-layer step with the wasm
// backend's fused step; scratch memory growth; argument checks.
// Runs wherever the module exists or clang and wasm-ld do (as test/wasm-backend.test.ts).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerBackend } from '../lib/backends';
import { load, scratch, wasmBackend, wasmMemoryBytes, wasmModulePath } from '../lib/backends/wasm';
import type { Kernels } from '../lib/kernels/kernels';
import { wasmKernels as k } from '../lib/kernels/wasm';
import { forward, forwardBackward } from '../lib/model';
import type { Activation, Dtype, FloatArray, Reduction } from '../lib/types';
import { EPS, randomArray, randomLabels, randomProblem, typed } from './helpers';

registerBackend('wasm', () => wasmBackend);

const toolchain = ['clang', 'wasm-ld'].every((t) => !spawnSync(t, ['--version']).error);
const hasWasm = existsSync(wasmModulePath()) || toolchain;

const DTYPES: Dtype[] = ['float64', 'float32'];
const ACTIVATIONS: Activation[] = ['relu', 'sigmoid', 'tanh'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];
/** The smallest positive normal number of each dtype: an absolute floor for results that underflow. */
const TINY = { float64: 2 ** -1022, float32: 2 ** -126 } as const;

const alloc = (dtype: Dtype, n: number): FloatArray => (dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
/** Rounds a float64 to the dtype, as storing it in the dtype's array does. */
const round = (dtype: Dtype, x: number) => (dtype === 'float32' ? Math.fround(x) : x);

/**
 * Every entry within its own bound: |got[i] − want[i]| ≤ tol[i] (NaN anywhere fails). Reports the
 * worst entry, relative to its bound.
 */
function within(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const r = d === 0 ? 0 : d / tol[i];
    if (!(r <= worst)) {
      worst = Number.isNaN(r) ? Infinity : r;
      at = i;
    }
  }
  expect(worst, `${what}: worst at ${at}: got ${got[at]}, want ${want[at]}, bound ${tol[at]}`).toBeLessThanOrEqual(1);
}

/** Bit-for-bit equality of two float arrays (NaN payloads and the sign of zero included). */
function sameBits(got: FloatArray, want: FloatArray, what: string): void {
  expect(got.constructor, what).toBe(want.constructor);
  expect(got.length, what).toBe(want.length);
  const a = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  const b = new Uint8Array(want.buffer, want.byteOffset, want.byteLength);
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      first = Math.floor(i / got.BYTES_PER_ELEMENT);
      break;
    }
  }
  expect(first, first < 0 ? what : `${what}: first difference at ${first}: ${got[first]} vs ${want[first]}`).toBe(-1);
}

/** A copy of `src` as a subarray at a non-zero element offset, with sentinels on both sides. */
function offsetCopy<T extends FloatArray | Int32Array>(src: T, pad = 3): T {
  const C = src.constructor as new (n: number) => T;
  const whole = new C(src.length + 2 * pad);
  whole.fill(-7 as never);
  const sub = whole.subarray(pad, pad + src.length) as T;
  sub.set(src as never);
  return sub;
}

/** The sentinels offsetCopy put around `sub` are intact. */
function sentinelsIntact(sub: FloatArray | Int32Array, pad = 3): boolean {
  const E = sub.BYTES_PER_ELEMENT;
  const start = sub.byteOffset / E;
  const whole = new (sub.constructor as new (b: ArrayBufferLike) => typeof sub)(sub.buffer);
  for (let i = 0; i < pad; i++) if (whole[start - 1 - i] !== -7 || whole[start + sub.length + i] !== -7) return false;
  return true;
}

// ---- float64 references, from the definitions ----

/** C = alpha·op(A)·op(B) + beta·C, and each entry's Σ|terms| = |alpha|·Σ_k|a·b| + |beta·c|. */
function gemmRef(
  tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number,
  A: ArrayLike<number>, B: ArrayLike<number>, beta: number, C: ArrayLike<number>,
): { C: Float64Array; mag: Float64Array } {
  const out = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      let m = 0;
      for (let kk = 0; kk < K; kk++) {
        const p = (tA ? A[kk * M + i] : A[i * K + kk]) * (tB ? B[j * K + kk] : B[kk * N + j]);
        s += p;
        m += Math.abs(p);
      }
      const c = beta === 0 ? 0 : beta * C[i * N + j];
      out[i * N + j] = alpha * s + c;
      mag[i * N + j] = Math.abs(alpha) * m + Math.abs(c);
    }
  }
  return { C: out, mag };
}

/** Per row: the log-sum-exp loss lse − z_y, the shift m, log Σ exp(z − m), and softmax. */
function softmaxRef(logits: ArrayLike<number>, y: ArrayLike<number>, B: number, C: number) {
  const loss = new Float64Array(B);
  const logS = new Float64Array(B);
  const gap = new Float64Array(B); // |m − z_y|
  const probs = new Float64Array(B * C);
  for (let b = 0; b < B; b++) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[b * C + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(logits[b * C + c] - m);
    // exp(z − m)/s, not exp(z − lse): lse = m + log s rounds by u·|m|, which exp would magnify.
    for (let c = 0; c < C; c++) probs[b * C + c] = Math.exp(logits[b * C + c] - m) / s;
    loss[b] = m - logits[b * C + y[b]] + Math.log(s);
    logS[b] = Math.log(s);
    gap[b] = Math.abs(m - logits[b * C + y[b]]);
  }
  return { loss, logS, gap, probs };
}

describe.runIf(hasWasm)('wasm kernels against float64 references', () => {
  // M·N·K on both sides of native's small-GEMM threshold (4096) and of the SIMD GEMM's blocks
  // (micro-tiles 4×4 / 4×8, MC = 128, KC = 256, NC = 1024 doubles or 2048 floats), and 1s.
  const shapes: [number, number, number][] = [
    [1, 1, 1], [1, 9, 1], [7, 1, 3], [1, 1, 300], [3, 5, 7], [16, 16, 16], [16, 16, 17], [4, 8, 256],
    [5, 9, 257], [129, 17, 300], [7, 1030, 33], [2, 2050, 3],
  ];
  const scalars: [number, number][] = [[1, 0], [1, 1], [0.5, -2], [-1.5, 0.25], [3, 0]];
  for (const dtype of DTYPES) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      it(`gemm ${dtype} ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}: alpha, beta (0 with NaN in C), shapes across the thresholds`, () => {
        for (const [M, N, K] of shapes) {
          const A = typed(dtype, randomArray(M * K, 11 * M + K));
          const B = typed(dtype, randomArray(K * N, 13 * N + K));
          for (const [alpha, beta] of scalars) {
            const C0 = typed(dtype, beta === 0 ? new Float64Array(M * N).fill(NaN) : randomArray(M * N, M + N + 5));
            const C = C0.slice();
            k.gemm(tA, tB, M, N, K, alpha, A, B, beta, C);
            const ref = gemmRef(tA, tB, M, N, K, alpha, A, B, beta, C0);
            // K products, K − 1 sums, alpha, beta·C and its sum: (K + 3) roundings of Σ|terms| at
            // most, in each of the kernel and (for float64) the reference: (K + 2)·eps = 2(K + 2)·u.
            const tol = ref.mag.map((m) => (K + 2) * EPS[dtype] * m + TINY[dtype]);
            within(C, ref.C, tol, `${M}x${N}x${K} alpha=${alpha} beta=${beta}`);
          }
        }
      });
    }
  }

  it('broadcastRows copies the bias into every row, exactly', () => {
    for (const dtype of DTYPES) {
      for (const [rows, cols] of [[1, 1], [1, 7], [5, 1], [33, 17]]) {
        const bias = typed(dtype, randomArray(cols, cols));
        const out = typed(dtype, new Float64Array(rows * cols).fill(NaN));
        k.broadcastRows(bias, out, rows);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) expect(out[r * cols + c]).toBe(bias[c]);
      }
    }
  });

  it('sumRows: the batch sum, overwriting or adding into db (NaN in db when overwriting never leaks)', () => {
    for (const dtype of DTYPES) {
      for (const [rows, cols] of [[1, 1], [1, 6], [7, 1], [300, 13], [4097, 3]]) {
        const dZ = typed(dtype, randomArray(rows * cols, rows + cols, 2));
        for (const accumulate of [false, true]) {
          const db0 = typed(dtype, accumulate ? randomArray(cols, cols + 1, 5) : new Float64Array(cols).fill(NaN));
          const db = db0.slice();
          k.sumRows(dZ, db, rows, accumulate);
          const want = new Float64Array(cols);
          const tol = new Float64Array(cols);
          for (let j = 0; j < cols; j++) {
            let s = accumulate ? db0[j] : 0;
            let m = accumulate ? Math.abs(db0[j]) : 0;
            for (let r = 0; r < rows; r++) {
              s += dZ[r * cols + j];
              m += Math.abs(dZ[r * cols + j]);
            }
            want[j] = s;
            tol[j] = (rows + 1) * EPS[dtype] * m; // rows (+1) additions, each at most u·Σ|terms|
          }
          within(db, want, tol, `${dtype} ${rows}x${cols} accumulate=${accumulate}`);
        }
      }
    }
  });

  /** Z spread over the interesting ranges, with exact zeros (both signs) and saturating values. */
  const zValues = (dtype: Dtype) => typed(dtype, [...randomArray(500, 3, 8), 0, -0, 1e-30, -1e-30, 30, -30, 100, -100, 1000, -1000]);

  it('activationForward: relu exact (0 for Z ≤ 0), sigmoid and tanh within a few roundings', () => {
    for (const dtype of DTYPES) {
      const Z = zValues(dtype);
      const n = Z.length;
      for (const act of ACTIVATIONS) {
        const A = typed(dtype, new Float64Array(n).fill(NaN));
        k.activationForward(act, Z, A);
        if (act === 'relu') {
          for (let i = 0; i < n; i++) expect(Object.is(A[i], Z[i] > 0 ? Z[i] : 0), `relu(${Z[i]}) = ${A[i]}`).toBe(true);
          continue;
        }
        const want = Array.from(Z, (z) => (act === 'sigmoid' ? 1 / (1 + Math.exp(-z)) : Math.tanh(z)));
        // sigmoid: exp, 1 + e and 1/x, each one rounding (float32: exp rounded once from float64);
        // tanh: one rounding. 2·eps = 4u relative covers both, with the reference's own rounding.
        within(A, want, want.map((v) => 2 * EPS[dtype] * Math.abs(v) + TINY[dtype]), `${dtype} ${act}`);
        for (let i = 0; i < n; i++) expect(Number.isFinite(A[i])).toBe(true);
      }
    }
  });

  it('activationBackward: relu exact with derivative 0 at Z == 0, sigmoid and tanh from A', () => {
    for (const dtype of DTYPES) {
      const Z = zValues(dtype);
      const n = Z.length;
      const dA0 = typed(dtype, randomArray(n, 21, 3));
      for (const act of ACTIVATIONS) {
        const A = alloc(dtype, n);
        for (let i = 0; i < n; i++) A[i] = act === 'relu' ? Math.max(Z[i], 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-Z[i])) : Math.tanh(Z[i]);
        const dA = dA0.slice();
        k.activationBackward(act, Z, A, dA);
        if (act === 'relu') {
          for (let i = 0; i < n; i++) expect(Object.is(dA[i], Z[i] > 0 ? dA0[i] : 0), `relu'(${Z[i]})·${dA0[i]} = ${dA[i]}`).toBe(true);
          expect(dA[Z.indexOf(0)]).toBe(0); // Z == 0 exactly: strict >, as PyTorch
          continue;
        }
        // The derivative from the stored A, as the kernel is specified: σ' = A(1 − A), tanh' = 1 − A².
        const want = Array.from(dA0, (g, i) => (act === 'sigmoid' ? g * A[i] * (1 - A[i]) : g * (1 - A[i] * A[i])));
        // sigmoid: 1 − A, ·A, ·dA: three roundings relative to the result. tanh: A·A rounds by
        // u·A², absolutely, before the cancellation in 1 − A²: bound |dA|·(1 + A²)·2·eps.
        const tol = Array.from(dA0, (g, i) =>
          act === 'sigmoid' ? 2 * EPS[dtype] * Math.abs(want[i]) + TINY[dtype] : 2 * EPS[dtype] * Math.abs(g) * (1 + A[i] * A[i]) + TINY[dtype],
        );
        within(dA, want, tol, `${dtype} ${act}`);
      }
    }
  });

  /** Logits and labels: random rows, plus rows 1e4 apart where log(softmax) would be log(0). */
  function logitCases(dtype: Dtype) {
    const cases: { logits: FloatArray; y: Int32Array; B: number; C: number; name: string }[] = [];
    for (const [B, C] of [[1, 1], [1, 2], [7, 1], [13, 10], [64, 3], [5, 100]]) {
      cases.push({ logits: typed(dtype, randomArray(B * C, B * C + 1, 6)), y: randomLabels(B, C, B + C), B, C, name: `random ${B}x${C}` });
    }
    cases.push({
      logits: typed(dtype, [1e4, 0, -1e4, 5e3, /**/ -1e4, 1e4, 0, 1e4, /**/ 0, 0, 0, 0, /**/ 2e4, -2e4, 2e4 - 1, 1e4]),
      y: Int32Array.from([2, 0, 3, 1]),
      B: 4,
      C: 4,
      name: 'logits 1e4 apart',
    });
    return cases;
  }

  it('softmaxCrossEntropy: Σ of per-row log-sum-exp losses and softmax rows, finite for logits 1e4 apart', () => {
    for (const dtype of DTYPES) {
      for (const { logits, y, B, C, name } of logitCases(dtype)) {
        const probs = typed(dtype, new Float64Array(B * C).fill(NaN));
        const total = k.softmaxCrossEntropy(logits, y, probs, B, C);
        const ref = softmaxRef(logits, y, B, C);
        // Per row: C exponentials of rounded differences and C − 1 sums make s relatively
        // accurate to ~2C·u, then log(s) rounds once: (C + 1)·eps·(1 + log s); m − z_y is exact
        // for float32 (taken in float64), one rounding for float64. The rows add in float64.
        let want = 0;
        let tol = 0;
        for (let b = 0; b < B; b++) {
          want += ref.loss[b];
          tol += 2 * (C + 1) * EPS[dtype] * (1 + ref.logS[b]) + 2 * EPS.float64 * (ref.gap[b] + Math.abs(want));
        }
        expect(Number.isFinite(total), name).toBe(true);
        expect(Math.abs(total - want), `${dtype} ${name}: total ${total} vs ${want}`).toBeLessThanOrEqual(tol);
        // probs_c = exp(z_c − m)/s: the rounding of z_c − m grows with the gap |z_c − m|.
        const ptol = Array.from(ref.probs, (p, i) => {
          const row = Math.floor(i / C);
          let m = -Infinity;
          for (let c = 0; c < C; c++) m = Math.max(m, logits[row * C + c]);
          return 2 * EPS[dtype] * (2 * C + 3 + Math.abs(logits[i] - m)) * p + TINY[dtype];
        });
        within(probs, ref.probs, ptol, `${dtype} ${name} probs`);
        for (let b = 0; b < B; b++) {
          let s = 0;
          for (let c = 0; c < C; c++) s += probs[b * C + c];
          expect(Math.abs(s - 1), `${dtype} ${name} row ${b} sums to 1`).toBeLessThanOrEqual((2 * C + 2) * EPS[dtype]);
        }
      }
      // The 1e4 rows by hand: the loss is the gap to the max (plus log 2 for a tied max).
      const big = logitCases(dtype).at(-1)!;
      const p = alloc(dtype, 16);
      const total = k.softmaxCrossEntropy(big.logits, big.y, p, 4, 4);
      const want = 2e4 + (2e4 + Math.log(2)) + Math.log(4) + (4e4 + Math.log(1 + Math.exp(-1)));
      expect(Math.abs(total - want), dtype).toBeLessThanOrEqual(4 * EPS[dtype] * want);
      expect(Array.from(p.subarray(0, 4))).toEqual([1, 0, 0, 0]);
    }
  });

  it('softmaxCrossEntropyBackward: (probs − onehot)·scale, scale 1/B in the dtype for mean, 1 for sum', () => {
    for (const dtype of DTYPES) {
      for (const [B, C] of [[1, 1], [1, 4], [3, 5], [7, 10], [64, 3], [10, 1]]) {
        const y = randomLabels(B, C, 3 * B + C);
        const probs = typed(dtype, softmaxRef(randomArray(B * C, B + 2 * C, 4), y, B, C).probs);
        for (const reduction of REDUCTIONS) {
          const dZ = typed(dtype, new Float64Array(B * C).fill(NaN));
          k.softmaxCrossEntropyBackward(probs, y, dZ, B, C, reduction);
          const scale = reduction === 'mean' ? round(dtype, 1 / B) : 1;
          const want = new Float64Array(B * C);
          for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) want[b * C + c] = (probs[b * C + c] - (c === y[b] ? 1 : 0)) * scale;
          // p·scale rounds once; at the label, p·scale − scale rounds again.
          within(dZ, want, Array.from(probs, (p) => EPS[dtype] * scale * (1 + p) + TINY[dtype]), `${dtype} ${B}x${C} ${reduction}`);
        }
      }
      // The mean scale is 1/B rounded to the dtype: a probability of exactly 1 off the label gives it back.
      const dZ = alloc(dtype, 3 * 2);
      k.softmaxCrossEntropyBackward(typed(dtype, [1, 0, 1, 0, 1, 0]), Int32Array.from([1, 1, 1]), dZ, 3, 2, 'mean');
      expect(dZ[0]).toBe(round(dtype, 1 / 3));
      expect(dZ[1]).toBe(-round(dtype, 1 / 3));
    }
  });

  it('allFinite: NaN, +Infinity or −Infinity at the first, a middle or the last index', () => {
    for (const dtype of DTYPES) {
      expect(k.allFinite(alloc(dtype, 0))).toBe(true);
      const max = dtype === 'float64' ? Number.MAX_VALUE : 3.4028234663852886e38;
      expect(k.allFinite(typed(dtype, [max, -max, -0, 0, TINY[dtype] / 4, -1]))).toBe(true);
      for (const n of [1, 2, 3, 17, 1000]) {
        const x = typed(dtype, randomArray(n, n, 100));
        expect(k.allFinite(x), `${dtype} n=${n}`).toBe(true);
        for (const i of new Set([0, n >> 1, n - 1])) {
          for (const bad of [NaN, Infinity, -Infinity]) {
            const z = x.slice();
            z[i] = bad;
            expect(k.allFinite(z), `${dtype} n=${n} ${bad} at ${i}`).toBe(false);
          }
        }
      }
    }
  });
});

describe.runIf(hasWasm)('wasm kernels on subarrays (non-zero byteOffset)', () => {
  it('every kernel reads and writes exactly its subarray, with the results of whole arrays', () => {
    for (const dtype of DTYPES) {
      const [M, N, K] = [9, 6, 5];
      const A = typed(dtype, randomArray(M * K, 1));
      const Bt = typed(dtype, randomArray(N * K, 2)); // stored [N,K]: transB
      const C0 = typed(dtype, randomArray(M * N, 3));
      const wantC = C0.slice();
      k.gemm(false, true, M, N, K, 0.5, A, Bt, 2, wantC);
      const gotC = offsetCopy(C0);
      k.gemm(false, true, M, N, K, 0.5, offsetCopy(A), offsetCopy(Bt), 2, gotC);
      sameBits(gotC, wantC, `${dtype} gemm`);
      expect(sentinelsIntact(gotC)).toBe(true);

      const bias = typed(dtype, randomArray(N, 4));
      const out = offsetCopy(alloc(dtype, M * N));
      k.broadcastRows(offsetCopy(bias), out, M);
      const outWant = alloc(dtype, M * N);
      k.broadcastRows(bias, outWant, M);
      sameBits(out, outWant, `${dtype} broadcastRows`);
      expect(sentinelsIntact(out)).toBe(true);

      for (const accumulate of [false, true]) {
        const db0 = typed(dtype, randomArray(N, 5));
        const db = offsetCopy(db0);
        const dbWant = db0.slice();
        k.sumRows(offsetCopy(C0), db, M, accumulate);
        k.sumRows(C0, dbWant, M, accumulate);
        sameBits(db, dbWant, `${dtype} sumRows accumulate=${accumulate}`);
        expect(sentinelsIntact(db)).toBe(true);
      }

      for (const act of ACTIVATIONS) {
        const Z = typed(dtype, [...randomArray(40, 6, 3), 0]);
        const Aw = alloc(dtype, Z.length);
        k.activationForward(act, Z, Aw);
        const Ag = offsetCopy(alloc(dtype, Z.length));
        k.activationForward(act, offsetCopy(Z), Ag);
        sameBits(Ag, Aw, `${dtype} activationForward ${act}`);
        expect(sentinelsIntact(Ag)).toBe(true);
        const dA0 = typed(dtype, randomArray(Z.length, 7));
        const dAw = dA0.slice();
        k.activationBackward(act, Z, Aw, dAw);
        const dAg = offsetCopy(dA0);
        k.activationBackward(act, offsetCopy(Z), offsetCopy(Aw), dAg);
        sameBits(dAg, dAw, `${dtype} activationBackward ${act}`);
        expect(sentinelsIntact(dAg)).toBe(true);
      }

      const y = randomLabels(M, N, 8);
      const pw = alloc(dtype, M * N);
      const lw = k.softmaxCrossEntropy(C0, y, pw, M, N);
      const pg = offsetCopy(alloc(dtype, M * N));
      expect(k.softmaxCrossEntropy(offsetCopy(C0), offsetCopy(y), pg, M, N)).toBe(lw);
      sameBits(pg, pw, `${dtype} softmaxCrossEntropy probs`);
      expect(sentinelsIntact(pg)).toBe(true);
      for (const reduction of REDUCTIONS) {
        const dw = alloc(dtype, M * N);
        k.softmaxCrossEntropyBackward(pw, y, dw, M, N, reduction);
        const dg = offsetCopy(alloc(dtype, M * N));
        k.softmaxCrossEntropyBackward(offsetCopy(pw), offsetCopy(y), dg, M, N, reduction);
        sameBits(dg, dw, `${dtype} softmaxCrossEntropyBackward ${reduction}`);
        expect(sentinelsIntact(dg)).toBe(true);
      }

      const x = offsetCopy(typed(dtype, randomArray(30, 9)));
      expect(k.allFinite(x)).toBe(true);
      // A NaN just outside the subarray is not its business.
      const around = new (x.constructor as new (b: ArrayBufferLike) => FloatArray)(x.buffer);
      around.fill(NaN, 0, 3);
      expect(k.allFinite(x)).toBe(true);
      x[29] = NaN;
      expect(k.allFinite(x)).toBe(false);
    }
  });
});

/**
 * The two-layer step composed from kernels, as native/core/mlp.h composes it: loss, gradients and
 * the cached tensors.
 */
function layeredStep(
  kern: Kernels, dtype: Dtype, dims: { B: number; D: number; H: number; C: number },
  p: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray }, X: FloatArray, y: Int32Array,
  act: Activation, red: Reduction, grads?: { dX: FloatArray; dW1: FloatArray; db1: FloatArray; dW2: FloatArray; db2: FloatArray },
) {
  const { B, D, H, C } = dims;
  const accumulate = grads !== undefined;
  const g = grads ?? { dX: alloc(dtype, B * D), dW1: alloc(dtype, D * H), db1: alloc(dtype, H), dW2: alloc(dtype, H * C), db2: alloc(dtype, C) };
  const Z1 = alloc(dtype, B * H);
  kern.broadcastRows(p.b1, Z1, B);
  kern.gemm(false, false, B, H, D, 1, X, p.W1, 1, Z1);
  const A1 = alloc(dtype, B * H);
  kern.activationForward(act, Z1, A1);
  const logits = alloc(dtype, B * C);
  kern.broadcastRows(p.b2, logits, B);
  kern.gemm(false, false, B, C, H, 1, A1, p.W2, 1, logits);
  expect(kern.allFinite(Z1) && kern.allFinite(logits)).toBe(true);
  const probs = alloc(dtype, B * C);
  const total = kern.softmaxCrossEntropy(logits, y, probs, B, C);
  const loss = round(dtype, red === 'mean' ? total / B : total);
  const dZ2 = alloc(dtype, B * C);
  kern.softmaxCrossEntropyBackward(probs, y, dZ2, B, C, red);
  const beta = accumulate ? 1 : 0;
  kern.gemm(true, false, H, C, B, 1, A1, dZ2, beta, g.dW2);
  kern.sumRows(dZ2, g.db2, B, accumulate);
  const dZ1 = alloc(dtype, B * H);
  kern.gemm(false, true, B, H, C, 1, dZ2, p.W2, 0, dZ1);
  kern.activationBackward(act, Z1, A1, dZ1);
  kern.gemm(true, false, D, H, B, 1, X, dZ1, beta, g.dW1);
  kern.sumRows(dZ1, g.db1, B, accumulate);
  kern.gemm(false, true, B, D, H, 1, dZ1, p.W1, beta, g.dX);
  return { loss, grads: g, cache: { Z1, A1, logits, probs } };
}


const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
const CACHED = ['Z1', 'A1', 'logits', 'probs'] as const;

describe.runIf(hasWasm)('wasm kernels composed = the fused wasm step, bit for bit', () => {
  // Toy, a batch over the K block (257), M past MC = 128, N past NC, and 1s.
  const shapes: [number, number, number, number][] = [[4, 10, 5, 3], [1, 1, 1, 1], [257, 30, 129, 11], [3, 1030, 7, 2], [2, 5, 2051, 4]];
  for (const dtype of DTYPES) {
    for (const [B, D, H, C] of shapes) {
      it(`${dtype} B=${B} D=${D} H=${H} C=${C}: loss, every gradient and the cache, every activation and reduction`, () => {
        const { params, X, y } = randomProblem(dtype, B, D, H, C, B + D + H);
        for (const act of ACTIVATIONS) {
          for (const red of REDUCTIONS) {
            const what = `${act} ${red}`;
            const fused = forwardBackward(params, X, y, { backend: 'wasm', activation: act, reduction: red, inputGrad: true, cache: true });
            const layered = layeredStep(k, dtype, { B, D, H, C }, params, X, y, act, red);
            expect(Object.is(layered.loss, fused.loss), `${what} loss ${layered.loss} vs ${fused.loss}`).toBe(true);
            for (const g of GRADS) sameBits(layered.grads[g], fused.grads[g]!, `${what} ${g}`);
            for (const c of CACHED) sameBits(layered.cache[c], fused.cache![c], `${what} ${c}`);
            sameBits(layered.cache.logits, forward(params, X, { backend: 'wasm', activation: act }), `${what} forward()`);
          }
        }
      });
    }
  }

  it('accumulating: gemm with beta = 1 and sumRows with accumulate = the fused step with { out, accumulate }', () => {
    for (const dtype of DTYPES) {
      const [B, D, H, C] = [9, 70, 33, 5];
      const { params, X, y } = randomProblem(dtype, B, D, H, C, 77);
      const start = () => ({
        dX: typed(dtype, randomArray(B * D, 1)), dW1: typed(dtype, randomArray(D * H, 2)), db1: typed(dtype, randomArray(H, 3)),
        dW2: typed(dtype, randomArray(H * C, 4)), db2: typed(dtype, randomArray(C, 5)),
      });
      for (const act of ACTIVATIONS) {
        const out = start();
        const fused = forwardBackward(params, X, y, { backend: 'wasm', activation: act, out, accumulate: true });
        const layered = layeredStep(k, dtype, { B, D, H, C }, params, X, y, act, 'mean', start());
        expect(layered.loss).toBe(fused.loss);
        for (const g of GRADS) sameBits(layered.grads[g], out[g], `${dtype} ${act} ${g}`);
      }
    }
  });
});

describe.runIf(hasWasm)('wasm kernels: scratch memory', () => {
  it('a kernel call that grows the memory, between fused calls, changes none of their results', () => {
    const small = randomProblem('float64', 6, 11, 7, 3, 40);
    const run = () => forwardBackward(small.params, small.X, small.y, { backend: 'wasm', inputGrad: true, cache: true });
    const first = run();
    const before = wasmMemoryBytes();
    // ~3·24 MB of float64 in scratch: past whatever the memory held.
    const n = Math.ceil((before + 8 * 2 ** 20) / 8);
    const x = new Float64Array(n).fill(1.5);
    expect(k.allFinite(x)).toBe(true);
    const out = new Float64Array(n);
    k.activationForward('tanh', x, out);
    expect(out[n - 1]).toBe(Math.tanh(1.5));
    const dA = new Float64Array(n).fill(2);
    k.activationBackward('relu', x, out, dA);
    expect(dA[0]).toBe(2);
    expect(dA[n - 1]).toBe(2);
    expect(wasmMemoryBytes()).toBeGreaterThan(before);
    const again = run();
    expect(again.loss).toBe(first.loss);
    for (const g of GRADS) sameBits(again.grads[g]!, first.grads[g]!, g);
    for (const c of CACHED) sameBits(again.cache![c], first.cache![c], c);
    // And small kernels after the growth still agree with the fused step.
    const layered = layeredStep(k, 'float64', { B: 6, D: 11, H: 7, C: 3 }, small.params, small.X, small.y, 'relu', 'mean');
    for (const g of GRADS) sameBits(layered.grads[g], first.grads[g]!, `after growth ${g}`);
  });

  it('more than 4 GiB of scratch is a RangeError, and the module stays usable', () => {
    const w = load();
    expect(() => scratch(w, [2 ** 31, 2 ** 31], 'gemm M=65536, N=65536, K=65536')).toThrow(
      new RangeError(
        `Expected at most 4 GiB of WebAssembly memory for backend 'wasm' but gemm M=65536, N=65536, K=65536 needs ${2 ** 32 + 64 * Math.ceil(w.__heap_base.value / 64)} bytes; use { backend: 'native' }`,
      ),
    );
    const p = scratch(w, [8, 100, 0, 8], 'x');
    expect(p.every((q) => q % 64 === 0 && q >= w.__heap_base.value)).toBe(true);
    expect(p[1] - p[0]).toBe(64);
    expect(p[2] - p[1]).toBe(128);
    expect(p[3]).toBe(p[2]);
    const A = new Float64Array([1, 2, 3, 4]);
    const C = new Float64Array(4);
    k.gemm(false, false, 2, 2, 2, 1, A, A, 0, C);
    expect(Array.from(C)).toEqual([7, 10, 15, 22]);
  });
});

describe.runIf(hasWasm)('wasm kernels: a wrong call is an error, not a read past a tensor', () => {
  it('lengths, dtypes, dimensions, labels and enums', () => {
    const f64 = (n: number) => new Float64Array(n);
    expect(() => k.gemm(false, false, 2, 3, 4, 1, f64(8), f64(11), 0, f64(6))).toThrow(new RangeError('Expected 12 elements for B but received 11'));
    expect(() => k.gemm(false, false, 2, 3, 0, 1, f64(0), f64(0), 0, f64(6))).toThrow(new RangeError('Expected a positive 32-bit integer for K but received 0'));
    expect(() => k.gemm(false, false, 1, 1, 1, 1, f64(1), new Float32Array(1) as never, 0, f64(1))).toThrow(new TypeError('Expected Float64Array for B but received Float32Array'));
    expect(() => k.broadcastRows(f64(3), f64(7), 2)).toThrow(new RangeError('Expected 6 elements for out but received 7'));
    expect(() => k.sumRows(f64(5), f64(2), 2, false)).toThrow(new RangeError('Expected 4 elements for dZ but received 5'));
    expect(() => k.activationForward('relu', f64(3), f64(4))).toThrow(new RangeError('Expected 3 elements for A but received 4'));
    expect(() => k.activationBackward('gelu' as never, f64(3), f64(3), f64(3))).toThrow(RangeError);
    expect(() => k.softmaxCrossEntropy(f64(6), Int32Array.from([0, 3]), f64(6), 2, 3)).toThrow(
      new RangeError('Expected labels in [0, 3) for y but received 3 at index 1'),
    );
    expect(() => k.softmaxCrossEntropyBackward(f64(6), Int32Array.from([-1, 0]), f64(6), 2, 3, 'mean')).toThrow(
      new RangeError('Expected labels in [0, 3) for y but received -1 at index 0'),
    );
    expect(() => k.softmaxCrossEntropyBackward(f64(6), Int32Array.from([0, 0]), f64(6), 2, 3, 'max' as never)).toThrow(RangeError);
    expect(() => k.allFinite([1, 2] as never)).toThrow(TypeError);
  });
});

describe('wasm kernels without the module: ERR_WASM_UNAVAILABLE, as the backend', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('HANDGRAD_WASM pointing nowhere', async () => {
    vi.stubEnv('HANDGRAD_WASM', join(tmpdir(), 'handgrad-no-such-dir', 'handgrad.wasm'));
    vi.resetModules();
    const { wasmKernels } = await import('../lib/kernels/wasm');
    const errors = await import('../lib/errors');
    let e: unknown;
    try {
      wasmKernels.allFinite(new Float64Array(3));
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(errors.HandgradError);
    expect((e as { code: string }).code).toBe('ERR_WASM_UNAVAILABLE');
    expect((e as Error).message).toContain('node scripts/build-wasm.mjs');
  });
});
