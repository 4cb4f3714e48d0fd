// The WebAssembly backend ('wasm': native/core's math with a SIMD128 GEMM, native/wasm), where it is
// specific: its GEMM alone against plain loops, the growth of its one linear memory, and the error
// when the module is absent. What every backend must satisfy (PyTorch's fixtures, finite
// differences, semantics, bad input, agreement with native) is test/01–05's, on wasm as on the others.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadWasm, wasmGemm, wasmMemoryBytes } from '../lib/backends/wasm';
import { HandgradError } from '../lib/errors';
import { forwardBackward } from '../lib/model';
import { backendTitle, caseParams, EPS, errEps, jsonCases, maxAbs, normwise, randomArray, randomProblem, skipReason, thrown, typed } from './helpers';

const skip = skipReason('wasm');
// Fixtures: a few units of epsilon relative to the tensor's largest entry (test/fixtures/README.md).
const FIXTURE_TOL_EPS = 8;
const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;


describe.skipIf(skip)(backendTitle('GEMM alone against plain loops', 'wasm', skip), () => {
  /** C = alpha·op(A)·op(B) + beta·C in float64 from the definition. */
  function reference(tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, A: ArrayLike<number>, B: ArrayLike<number>, beta: number, C: ArrayLike<number>) {
    const out = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
        out[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
      }
    }
    return out;
  }

  const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [4, 8, 256], [5, 9, 257], [129, 17, 300], [7, 1030, 33], [2, 2050, 3]];
  for (const dtype of ['float64', 'float32'] as const) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      it(`${dtype} ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}, alpha 1 and 0.5, beta 0 (C full of NaN never read), 1 and −2`, () => {
        for (const [M, N, K] of shapes) {
          const A = typed(dtype, randomArray(M * K, M + K));
          const B = typed(dtype, randomArray(K * N, N + K + 1));
          for (const [alpha, beta] of [[1, 0], [1, 1], [0.5, -2]]) {
            const C0 = typed(dtype, beta === 0 ? new Float64Array(M * N).fill(NaN) : randomArray(M * N, M * N));
            const C = C0.slice();
            wasmGemm(tA, tB, M, N, K, alpha, A, B, beta, C);
            const want = reference(tA, tB, M, N, K, alpha, A, B, beta, C0);
            // K products summed in another order, plus the beta term: (K + 2)·eps of the terms' scale.
            const scale = Math.sqrt(K) + Math.abs(beta);
            expect(normwise(C, want, scale), `${M}x${N}x${K} alpha=${alpha} beta=${beta}`).toBeLessThanOrEqual((K + 2) * EPS[dtype]);
          }
        }
      });
    }
  }
  it('K = 0 gives C = beta·C, as BLAS: zeros over NaN garbage for beta 0, C scaled for beta −2', () => {
    for (const dtype of ['float64', 'float32'] as const) {
      const C = typed(dtype, [NaN, Infinity, 3, -1]);
      wasmGemm(false, false, 2, 2, 0, 1, typed(dtype, []), typed(dtype, []), 0, C);
      expect(Array.from(C)).toEqual([0, 0, 0, 0]);
      const D = typed(dtype, [1, 2, 3, -1]);
      wasmGemm(true, true, 2, 2, 0, 1, typed(dtype, []), typed(dtype, []), -2, D);
      expect(Array.from(D)).toEqual([-2, -4, -6, 2]);
    }
  });
});

describe.skipIf(skip)(backendTitle('one linear memory', 'wasm', skip), () => {
  it('memory grows for a large call, and small calls before and after give identical results', () => {
    const small = randomProblem('float64', 4, 5, 10, 3, 9);
    const first = forwardBackward(small.params, small.X, small.y, { backend: 'wasm', inputGrad: true, cache: true });
    const before = wasmMemoryBytes();
    expect(before).toBeGreaterThan(0);

    // ~40 MB of tensors: past the module's initial memory.
    const [B, D, H, C] = [300, 2000, 1500, 10];
    const big = randomProblem('float32', B, D, H, C, 10);
    const w = forwardBackward(big.params, big.X, big.y, { backend: 'wasm', inputGrad: true });
    expect(wasmMemoryBytes()).toBeGreaterThan(before);
    expect(wasmMemoryBytes()).toBeGreaterThanOrEqual(4 * (2 * B * D + 2 * D * H + 3 * B * H));
    const n = forwardBackward(big.params, big.X, big.y, { backend: 'native', inputGrad: true });
    const floor = 0.01 * Math.max(...GRADS.map((k) => maxAbs(n.grads[k]!)));
    for (const k of GRADS) expect(normwise(w.grads[k]!, n.grads[k]!, floor), k).toBeLessThanOrEqual(2 * EPS.float32 * D);

    const again = forwardBackward(small.params, small.X, small.y, { backend: 'wasm', inputGrad: true, cache: true });
    expect(again.loss).toBe(first.loss);
    for (const k of GRADS) expect(again.grads[k], k).toEqual(first.grads[k]);
    for (const k of ['Z1', 'A1', 'logits', 'probs'] as const) expect(again.cache![k], k).toEqual(first.cache![k]);
    const toy = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
    const r = forwardBackward(caseParams(toy), typed('float64', toy.inputs.X), toy.inputs.y, { backend: 'wasm', inputGrad: true });
    for (const k of GRADS) expect(errEps(r.grads[k]!, toy.expected[k], 'float64'), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
  });
});

describe('wasm module missing or broken: ERR_WASM_UNAVAILABLE with the way to build it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'handgrad-wasm-'));
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('a path with no file', () => {
    const e = thrown(() => loadWasm(join(dir, 'missing', 'handgrad.wasm')));
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_WASM_UNAVAILABLE');
    expect(e.message).toContain('does not exist');
    expect(e.message).toContain('node scripts/build-wasm.mjs');
    expect(e.message).toContain('apt-get install -y clang lld');
  });

  it('a file that is not a WebAssembly module', () => {
    const bogus = join(dir, 'bogus.wasm');
    writeFileSync(bogus, 'not wasm');
    const e = thrown(() => loadWasm(bogus));
    expect((e as HandgradError).code).toBe('ERR_WASM_UNAVAILABLE');
    expect(e.message).toContain('could not be loaded');
    expect(e.message).toContain('node scripts/build-wasm.mjs');
  });

  it('through the public API, with HANDGRAD_WASM pointing nowhere', async () => {
    vi.stubEnv('HANDGRAD_WASM', join(dir, 'missing', 'handgrad.wasm'));
    vi.resetModules();
    const wasm = await import('../lib/backends/wasm');
    const model = await import('../lib/model');
    const errors = await import('../lib/errors');
    const toy = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
    const e = thrown(() => model.forwardBackward(caseParams(toy), typed('float64', toy.inputs.X), toy.inputs.y, { backend: 'wasm' }));
    expect(e).toBeInstanceOf(errors.HandgradError);
    expect((e as HandgradError).code).toBe('ERR_WASM_UNAVAILABLE');
    expect(wasm.wasmAvailable()).toBe(false);
  });
});
