// The WebAssembly backend ('wasm': native/core's math with a SIMD128 GEMM, native/wasm): against
// PyTorch's golden fixtures, against the native backend on random shapes across the GEMM's block
// edges, its GEMM alone against plain loops, .grad accumulation, the cache and inference helpers,
// bad input, memory growth, and the error when the module is absent.
// Runs wherever the module exists or clang and wasm-ld do (setup builds it there, so a missing
// module is then a failure, not a skip).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadWasm, wasmGemm, wasmMemoryBytes, wasmModulePath } from '../lib/backends/wasm';
import { HandgradError } from '../lib/errors';
import { forward, forwardBackward, predict } from '../lib/model';
import type { Activation, Dtype, FloatArray, Reduction } from '../lib/types';
import { caseParams, EPS, errEps, FIXTURES, jsonCases, randomArray, randomProblem, typed } from './helpers';

const toolchain = ['clang', 'wasm-ld'].every((t) => !spawnSync(t, ['--version']).error);
const hasWasm = existsSync(wasmModulePath()) || toolchain;

// Fixtures: a few units of epsilon relative to the tensor's largest entry (test/fixtures/README.md).
const FIXTURE_TOL_EPS = 8;
const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
const ACTIVATIONS: Activation[] = ['relu', 'sigmoid', 'tanh'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];

/** A safetensors file, read here from its definition (8-byte LE header length, JSON header, raw LE data). */
function readSafetensors(path: string): { tensors: Record<string, FloatArray | Int32Array>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const tensors: Record<string, FloatArray | Int32Array> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, data_offsets: [a, b] } = info as { dtype: string; data_offsets: [number, number] };
    const bytes = new Uint8Array(buf.subarray(8 + n + a, 8 + n + b)).buffer; // a fresh, aligned copy
    tensors[name] = dtype === 'F64' ? new Float64Array(bytes) : dtype === 'F32' ? new Float32Array(bytes) : new Int32Array(bytes);
  }
  return { tensors, metadata: (header.__metadata__ ?? {}) as Record<string, string> };
}


const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

/** max|a − b| / max(max|b|, floor), as test/05-backends-agree.test.ts measures it. */
function normwise(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  if (Number.isNaN(diff)) return Infinity;
  const scale = Math.max(maxAbs(b), floor);
  return scale === 0 ? diff : diff / scale;
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe.runIf(hasWasm)('wasm backend against PyTorch autograd fixtures', () => {
  for (const c of jsonCases()) {
    it(`${c.name} (${c.dtype}, ${c.activation}, ${c.reduction})`, () => {
      const r = forwardBackward(caseParams(c), typed(c.dtype, c.inputs.X), c.inputs.y, {
        backend: 'wasm', activation: c.activation, reduction: c.reduction, inputGrad: true,
      });
      expect(r.grads.dW1).toBeInstanceOf(c.dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps([r.loss], c.expected.loss, c.dtype)).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
      for (const k of GRADS) expect(errEps(r.grads[k]!, c.expected[k], c.dtype), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
    });
  }

  for (const name of ['seed-realistic-64x128x256x10', 'seed-realistic-64x128x256x10-float32']) {
    it(`${name} (safetensors, B=64 D=128 H=256 C=10)`, () => {
      const { tensors: t, metadata } = readSafetensors(join(FIXTURES, `${name}.case.safetensors`));
      const { tensors: want } = readSafetensors(join(FIXTURES, `${name}.expected.safetensors`));
      const dtype: Dtype = t.X instanceof Float32Array ? 'float32' : 'float64';
      const params = { W1: t.W1 as FloatArray, b1: t.b1 as FloatArray, W2: t.W2 as FloatArray, b2: t.b2 as FloatArray };
      const r = forwardBackward(params, t.X as FloatArray, t.y as Int32Array, {
        backend: 'wasm', activation: metadata.activation as Activation, reduction: metadata.reduction as Reduction, inputGrad: true,
      });
      expect(errEps([r.loss], want.loss, dtype)).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
      for (const k of GRADS) expect(errEps(r.grads[k]!, want[k], dtype), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
    });
  }
});

describe.runIf(hasWasm)('wasm and native agree', () => {
  /** Every gradient and the loss within 2·n·eps (n = the longest sum), as native vs ts. */
  function agree(dtype: Dtype, B: number, D: number, H: number, C: number, activation: Activation, reduction: Reduction, seed: number) {
    const { params, X, y } = randomProblem(dtype, B, D, H, C, seed);
    const opts = { activation, reduction, inputGrad: true, cache: true } as const;
    const n = forwardBackward(params, X, y, { ...opts, backend: 'native' });
    const w = forwardBackward(params, X, y, { ...opts, backend: 'wasm' });
    const what = JSON.stringify({ B, D, H, C, activation, reduction, dtype });
    const tol = 2 * EPS[dtype] * Math.max(B, D, H, C);
    expect(normwise([w.loss], [n.loss]), `loss ${what}`).toBeLessThanOrEqual(tol);
    // A floor of a hundredth of the largest gradient entry covers tensors that are themselves the
    // result of cancellation (see test/05-backends-agree.test.ts).
    const floor = 0.01 * Math.max(...GRADS.map((k) => maxAbs(n.grads[k]!)));
    for (const k of GRADS) {
      expect(w.grads[k]).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
      expect(normwise(w.grads[k]!, n.grads[k]!, floor), `${k} ${what}`).toBeLessThanOrEqual(tol);
    }
    for (const k of ['Z1', 'A1', 'logits', 'probs'] as const) {
      expect(normwise(w.cache![k], n.cache![k]), `cache.${k} ${what}`).toBeLessThanOrEqual(tol);
    }
  }

  it('random shapes 1…150 (past the micro-tile and MC = 128 edges), every activation, reduction, dtype', () => {
    fc.assert(
      fc.property(
        fc.record({
          B: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
          D: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
          H: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 150 })),
          C: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 24 })),
          activation: fc.constantFrom(...ACTIVATIONS),
          reduction: fc.constantFrom(...REDUCTIONS),
          dtype: fc.constantFrom<Dtype>('float64', 'float32'),
          seed: fc.integer({ min: 1, max: 1e6 }),
        }),
        ({ B, D, H, C, activation, reduction, dtype, seed }) => agree(dtype, B, D, H, C, activation, reduction, seed),
      ),
      { numRuns: 200, seed: 20261124 },
    );
  });

  // K past one KC = 256 block, M past MC = 128, N past NC (1024 doubles, 2048 floats), and sizes
  // one off a whole micro-tile, in every GEMM of the step (each of B, D, H is M, N or K somewhere).
  const edges: [number, number, number, number][] = [
    [257, 300, 129, 11],
    [65, 513, 255, 3],
    [3, 1030, 5, 2],
    [2, 2051, 3, 1],
    [1, 1, 1, 1],
    [5, 1, 1300, 7],
  ];
  for (const [B, D, H, C] of edges) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`block edges B=${B} D=${D} H=${H} C=${C} ${dtype}`, () => {
        for (const activation of ACTIVATIONS) agree(dtype, B, D, H, C, activation, activation === 'relu' ? 'mean' : 'sum', B + D);
      });
    }
  }

  it('forward and predict give native\'s logits and classes', () => {
    for (const dtype of ['float64', 'float32'] as const) {
      const { params, X } = randomProblem(dtype, 70, 33, 90, 6, 5);
      for (const activation of ACTIVATIONS) {
        const want = forward(params, X, { backend: 'native', activation });
        const got = forward(params, X, { backend: 'wasm', activation });
        expect(got).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
        expect(normwise(got, want)).toBeLessThanOrEqual(2 * EPS[dtype] * 90);
      }
      expect(predict(params, X, { backend: 'wasm' })).toEqual(predict(params, X, { backend: 'native' }));
    }
  });
});

describe.runIf(hasWasm)('wasm GEMM alone against plain loops', () => {
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

describe.runIf(hasWasm)('wasm semantics', () => {
  it('accumulate adds into the out buffers like PyTorch .grad, both dtypes, with and without dX', () => {
    for (const dtype of ['float64', 'float32'] as const) {
      const { B, D, H, C } = { B: 9, D: 70, H: 33, C: 5 };
      const { params, X, y } = randomProblem(dtype, B, D, H, C, 77);
      const once = forwardBackward(params, X, y, { backend: 'wasm', inputGrad: true });
      const filled = (n: number) => typed(dtype, new Float64Array(n).fill(0.25));
      for (const inputGrad of [true, false]) {
        const out = { dW1: filled(D * H), db1: filled(H), dW2: filled(H * C), db2: filled(C), ...(inputGrad ? { dX: filled(B * D) } : {}) };
        forwardBackward(params, X, y, { backend: 'wasm', out, accumulate: true, inputGrad });
        const r = forwardBackward(params, X, y, { backend: 'wasm', out, accumulate: true, inputGrad });
        expect(r.grads.dW1).toBe(out.dW1); // written in place
        for (const k of GRADS) {
          if (k === 'dX' && !inputGrad) continue;
          const got = out[k as keyof typeof out]!;
          const want = once.grads[k]!.map((g) => 0.25 + 2 * g);
          expect(errEps(got, want, dtype), `${dtype} ${k}`).toBeLessThanOrEqual(4);
        }
      }
      // Without accumulate the same buffers are overwritten, never doubled.
      const out = { dX: filled(B * D), dW1: filled(D * H), db1: filled(H), dW2: filled(H * C), db2: filled(C) };
      forwardBackward(params, X, y, { backend: 'wasm', out });
      forwardBackward(params, X, y, { backend: 'wasm', out });
      for (const k of GRADS) expect(out[k], k).toEqual(once.grads[k]);
    }
  });

  it('the returned cache: probs are softmax(logits) and sum to 1, ReLU of Z1 is A1', () => {
    const { params, X, y } = randomProblem('float64', 12, 20, 30, 7, 3);
    const r = forwardBackward(params, X, y, { backend: 'wasm', cache: true });
    const { Z1, A1, logits, probs } = r.cache!;
    for (let i = 0; i < Z1.length; i++) expect(A1[i]).toBe(Math.max(Z1[i], 0));
    for (let b = 0; b < 12; b++) {
      const row = Array.from(probs.subarray(b * 7, b * 7 + 7));
      expect(Math.abs(row.reduce((s, p) => s + p, 0) - 1)).toBeLessThan(1e-15);
      const z = Array.from(logits.subarray(b * 7, b * 7 + 7));
      const m = Math.max(...z);
      const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
      for (let c = 0; c < 7; c++) expect(Math.abs(probs[b * 7 + c] - Math.exp(logits[b * 7 + c] - lse))).toBeLessThan(1e-15);
    }
  });

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

describe.runIf(hasWasm)('wasm: bad input is a clear error, and the next call is still exact', () => {
  const golden = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
  const { B, D, H } = golden.dims;
  const fresh = () => ({ p: caseParams(golden), X: typed('float64', golden.inputs.X), y: Int32Array.from(golden.inputs.y) });
  function stillExact() {
    const { p, X, y } = fresh();
    const r = forwardBackward(p, X, y, { backend: 'wasm', inputGrad: true });
    for (const k of GRADS) expect(errEps(r.grads[k]!, golden.expected[k], 'float64'), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
  }

  it('NaN in W2 is a RangeError naming W2 and the index', () => {
    const t = fresh();
    t.p.W2[7] = NaN;
    expect(() => forwardBackward(t.p, t.X, t.y, { backend: 'wasm' })).toThrow(new RangeError('Expected finite values in W2 but received NaN at index 7'));
    stillExact();
  });

  // The module detects non-finite values on each Linear's output (native/core/stack.h): every position
  // of every tensor is exercised, and nothing is written to the out buffers on error.
  for (const name of ['X', 'W1', 'b1', 'W2', 'b2'] as const) {
    it(`NaN, +Infinity or −Infinity at any index of ${name}, float64 and float32`, () => {
      for (const dtype of ['float64', 'float32'] as const) {
        const len = name === 'X' ? B * D : caseParams(golden)[name].length;
        for (let i = 0; i < len; i++) {
          for (const bad of [NaN, Infinity, -Infinity]) {
            const p = { ...caseParams(golden) };
            const params = { W1: typed(dtype, p.W1), b1: typed(dtype, p.b1), W2: typed(dtype, p.W2), b2: typed(dtype, p.b2) };
            const X = typed(dtype, golden.inputs.X);
            (name === 'X' ? X : params[name])[i] = bad;
            const out = { dW1: typed(dtype, new Float64Array(D * H).fill(7)) };
            expect(() => forwardBackward(params, X, golden.inputs.y, { backend: 'wasm', out, accumulate: true })).toThrow(
              new RangeError(`Expected finite values in ${name} but received ${bad} at index ${i}`),
            );
            expect(out.dW1.every((v) => v === 7)).toBe(true);
            expect(() => forward(params, X, { backend: 'wasm' })).toThrow(new RangeError(`Expected finite values in ${name} but received ${bad} at index ${i}`));
          }
        }
      }
      stillExact();
    });
  }

  it('finite inputs whose forward pass overflows are an error, not an Infinity loss', () => {
    const t = fresh();
    t.p.W1.fill(1e300);
    t.X.fill(1e300);
    expect(() => forwardBackward(t.p, t.X, t.y, { backend: 'wasm' })).toThrow(/Z1 = X·W1 \+ b1 overflowed/);
    const f = { W1: Float32Array.from(t.p.W1.fill(0.5)), b1: Float32Array.from(t.p.b1), W2: Float32Array.from(t.p.W2.fill(3e38)), b2: Float32Array.from(t.p.b2) };
    expect(() => forwardBackward(f, Float32Array.from(t.X.fill(1)), t.y, { backend: 'wasm' })).toThrow(/logits = A1·W2 \+ b2 overflowed/);
    stillExact();
  });

  it('an out buffer that aliases an input or another output', () => {
    const t = fresh();
    const shared = new Float64Array(200);
    expect(() => forwardBackward(t.p, t.X, t.y, { backend: 'wasm', out: { dW1: t.p.W1 } })).toThrow(/dW1 not to share memory with (params\.)?W1/);
    expect(() => forwardBackward(t.p, t.X, t.y, { backend: 'wasm', out: { dW1: shared.subarray(0, 50), dW2: shared.subarray(40, 70) } })).toThrow(/not to share memory/);
    stillExact();
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
