// The wasm module (native/wasm/handgrad.cc): its SIMD128 GEMM (lib/kernels/wasm.ts) against a
// float64 reference written here from the definition, both dtypes, with error bounds derived from
// the length of each sum; and the wasm engine (lib/engine/wasm.ts) where its one linear memory
// matters: arguments at non-zero byteOffsets, nets of other shapes and dtypes interleaved with a
// GEMM that grows the memory (each keeps its own bits), the tensors of the last step only, labels
// checked on the module's own copy, more than 4 GiB refused, and the error when the module is absent.
// Runs wherever the module exists or clang and wasm-ld do (test/helpers.ts skipReason).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { wasmMemoryBytes } from '../lib/backends/wasm';
import type { StackDescription, StepArgs } from '../lib/engine/engine';
import { wasmEngine } from '../lib/engine/wasm';
import { wasmKernels as k } from '../lib/kernels/wasm';
import type { Dtype, FloatArray } from '../lib/types';
import { backendTitle, EPS, randomArray, randomLabels, skipReason, typed } from './helpers';

const skip = skipReason('wasm');

const DTYPES: Dtype[] = ['float64', 'float32'];
/** The smallest positive normal number of each dtype: an absolute floor for results that underflow. */
const TINY = { float64: 2 ** -1022, float32: 2 ** -126 } as const;

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

/** Bytes equal (NaN payloads and the sign of zero included). */
function sameBits(got: FloatArray | Int32Array, want: FloatArray | Int32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength)), what).toBe(0);
}

/** A copy of `src` as a subarray at a non-zero element offset, with sentinels (−7) on both sides. */
function offsetCopy<T extends FloatArray | Int32Array>(src: T, pad = 3): T {
  const whole = new (src.constructor as new (n: number) => T)(src.length + 2 * pad).fill(-7 as never);
  const sub = whole.subarray(pad, pad + src.length) as T;
  sub.set(src as never);
  return sub;
}

function sentinelsIntact(sub: FloatArray | Int32Array, pad = 3): boolean {
  const start = sub.byteOffset / sub.BYTES_PER_ELEMENT;
  const whole = new (sub.constructor as new (b: ArrayBufferLike) => typeof sub)(sub.buffer);
  for (let i = 0; i < pad; i++) if (whole[start - 1 - i] !== -7 || whole[start + sub.length + i] !== -7) return false;
  return true;
}

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

describe.skipIf(skip)(backendTitle('GEMM against float64 references', 'wasm', skip), () => {
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


  it('subarrays (non-zero byteOffset): the results of whole arrays, nothing written around them', () => {
    for (const dtype of DTYPES) {
      const [M, N, K] = [9, 7, 13];
      const A = typed(dtype, randomArray(M * K, 3));
      const B = typed(dtype, randomArray(K * N, 4));
      const C = typed(dtype, randomArray(M * N, 5));
      const whole = C.slice();
      k.gemm(true, false, M, N, K, 0.5, A.slice(0, M * K), B, 1, whole);
      const sub = offsetCopy(C);
      k.gemm(true, false, M, N, K, 0.5, offsetCopy(A), offsetCopy(B), 1, sub);
      sameBits(sub, whole, dtype);
      expect(sentinelsIntact(sub)).toBe(true);
    }
  });

  it('a wrong call is an error, not a read past a tensor', () => {
    const f64 = (n: number) => new Float64Array(n);
    expect(() => k.gemm(false, false, 2, 3, 4, 1, f64(8), f64(11), 0, f64(6))).toThrow(new RangeError('Expected 12 elements for B but received Float64Array of length 11'));
    expect(() => k.gemm(false, false, 2, 3, 0, 1, f64(0), f64(0), 0, f64(6))).toThrow(RangeError);
    expect(() => k.gemm(false, false, 1, 1, 1, 1, f64(1), new Float32Array(1) as never, 0, f64(1))).toThrow(TypeError);
  });
});

/** A seeded Linear–act–…–Linear description and one step's arguments for B rows. */
function problem(dtype: Dtype, widths: number[], B: number, seed: number) {
  const kinds: number[] = [];
  const params: FloatArray[] = [];
  const w: number[] = [widths[0]];
  for (let i = 0; i + 1 < widths.length; i++) {
    if (i > 0) {
      kinds.push(1 + (i % 3));
      w.push(widths[i]);
    }
    kinds.push(0);
    w.push(widths[i + 1]);
    params.push(typed(dtype, randomArray(widths[i] * widths[i + 1], seed + i, 1 / Math.sqrt(widths[i]))), typed(dtype, randomArray(widths[i + 1], seed + i + 50, 0.1)));
  }
  const desc: StackDescription = { dtype, kinds: Int32Array.from(kinds), widths: Int32Array.from(w), params };
  const C = widths[widths.length - 1];
  const step = (): StepArgs => ({
    X: typed(dtype, randomArray(B * widths[0], seed + 7)), y: randomLabels(B, C, seed + 8), B,
    grads: params.map((p) => typed(dtype, new Float64Array(p.length))), dX: typed(dtype, new Float64Array(B * widths[0])),
    reduction: 'mean', accumulate: false,
  });
  return { desc, step };
}

/** The outcome's loss and the bytes of every gradient, dX, the logits and the step's tensors. */
function fingerprint(net: ReturnType<typeof wasmEngine.prepare>, a: StepArgs): string {
  const r = net.forwardBackward(a);
  if (r.failure) throw new Error(`failed: ${r.failure.stage}`);
  const t = net.tensors(a.B)!;
  return [r.loss, ...[...a.grads, a.dX!, r.logits!, ...t.outputs, t.probs].map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64'))].join('|');
}

describe.skipIf(skip)(backendTitle('the engine in its one linear memory', 'wasm', skip), () => {
  it('arguments at non-zero byteOffsets give the bits of whole arrays, and nothing is written around them', () => {
    for (const dtype of DTYPES) {
      const { desc, step } = problem(dtype, [7, 12, 5], 6, 3);
      const a = step();
      const want = fingerprint(wasmEngine.prepare(desc), a);
      const moved = { ...desc, params: desc.params.map((p) => offsetCopy(p)) };
      const b: StepArgs = { ...step(), X: offsetCopy(a.X), y: offsetCopy(a.y), grads: a.grads.map((g) => offsetCopy(g)), dX: offsetCopy(a.dX!) };
      expect(fingerprint(wasmEngine.prepare(moved), b)).toBe(want);
      for (const t of [b.X, b.y, ...b.grads, b.dX!, ...moved.params]) expect(sentinelsIntact(t)).toBe(true);
    }
  });

  it('nets of other shapes and dtypes interleaved, and a GEMM that grows the memory: each keeps the bits it has alone', () => {
    const nets = [problem('float64', [5, 10, 3], 4, 1), problem('float32', [9, 20, 20, 4], 7, 2), problem('float64', [40, 64, 10], 33, 3)];
    const args = nets.map((n) => n.step());
    const prepared = nets.map((n) => wasmEngine.prepare(n.desc));
    const alone = prepared.map((p, i) => fingerprint(p, args[i]));
    for (let round = 0; round < 3; round++) {
      prepared.forEach((p, i) => expect(fingerprint(p, args[i]), `net ${i}, round ${round}`).toBe(alone[i]));
      if (round === 1) {
        const before = wasmMemoryBytes();
        const n = Math.ceil((before + 2 ** 23) / 8); // past whatever the memory held
        const C = new Float64Array(n);
        k.gemm(false, false, n, 1, 1, 1, new Float64Array(n).fill(2), Float64Array.of(3), 0, C);
        expect(C[n - 1]).toBe(6);
        expect(wasmMemoryBytes()).toBeGreaterThan(before);
      }
    }
  });

  it("tensors(B) are the last step's, read right after it: after another call on the module it is an error, not stale data", () => {
    const a = problem('float64', [5, 10, 3], 4, 1);
    const b = problem('float64', [6, 3], 2, 2);
    const pa = wasmEngine.prepare(a.desc);
    const pb = wasmEngine.prepare(b.desc);
    pa.forwardBackward(a.step());
    expect(pa.tensors(4)!.outputs).toHaveLength(3);
    pb.forwardBackward(b.step());
    expect(() => pa.tensors(4)).toThrow(/right after the step/);
    expect(pa.tensors(5)).toBeNull();
  });

  it("labels are checked on the module's own copy: one outside [0, C) is a RangeError and writes nothing", () => {
    const { desc, step } = problem('float64', [5, 10, 3], 4, 1);
    const a = step();
    a.y[2] = 3;
    a.grads.forEach((g) => g.fill(7));
    expect(() => wasmEngine.prepare(desc).forwardBackward(a)).toThrow(new RangeError('Expected labels in [0, 3) for y but received 3 at index 2'));
    expect(a.grads.every((g) => g.every((v) => v === 7))).toBe(true);
  });

  it('a step needing more than 4 GiB is a RangeError before anything is copied, and the module stays usable', () => {
    const D = 2 ** 15;
    const big: StackDescription = { dtype: 'float64', kinds: Int32Array.of(0), widths: Int32Array.of(D, 2), params: [new Float64Array(2 * D), new Float64Array(2)] };
    const B = 2 ** 14; // X alone is 4 GiB of float64: never allocated here, the engine refuses first
    expect(() => wasmEngine.prepare(big).forward(new Float64Array(0), B)).toThrow(/Expected at most 4 GiB of WebAssembly memory for backend 'wasm' but B=16384, widths=32768→2 needs \d+ bytes; use \{ backend: 'native' \}/);
    const { desc, step } = problem('float64', [5, 10, 3], 4, 1);
    expect(wasmEngine.prepare(desc).forwardBackward(step()).failure).toBeUndefined();
  });
});

describe('the wasm engine without the module: ERR_WASM_UNAVAILABLE and how to build it', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('HANDGRAD_WASM pointing nowhere', async () => {
    vi.stubEnv('HANDGRAD_WASM', join(tmpdir(), 'handgrad-no-such-dir', 'handgrad.wasm'));
    vi.resetModules();
    const { wasmEngine: engine } = await import('../lib/engine/wasm');
    const errors = await import('../lib/errors');
    let e: unknown;
    try {
      engine.prepare(problem('float64', [2, 2], 1, 1).desc);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(errors.HandgradError);
    expect((e as { code: string }).code).toBe('ERR_WASM_UNAVAILABLE');
    expect((e as Error).message).toContain('node scripts/build-wasm.mjs');
  });
});
