// Issue 12, items 1, 3 and 5: every input is read once, range-checked before it is narrowed, and
// used as read. Each case is a way a caller (or another thread, or a getter) can make the value
// that was checked differ from the value that is used:
// - labels in a SharedArrayBuffer that a worker rewrites (every backend copies them, then checks);
// - BigInt64Array labels outside int32 (checked before narrowing: −2^32 is not class 0);
// - a typed-array subclass whose `length` lies, and a resizable buffer that a getter on the
//   options shrinks after X was checked (lengths come from the array itself, options are read once);
// - a params object whose getters return other tensors on a second read.
// The truth each result is held to is independent of the package: a float64 forward pass written
// here, or the one loss the labels can have.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { forwardBackward, gradcheck, initParams, Linear, predict, ReLU, saveSafetensors, Sequential, Trainer, verify } from '../lib';
import type { BackendName } from '../lib/types';
import { describeBackends, randomProblem, thrown } from './helpers';

/** A resizable ArrayBuffer (ES2024; Node 20 has it, this tsconfig's lib does not name it). */
interface Resizable extends ArrayBuffer { resize(n: number): void }
const resizable = (bytes: number): Resizable => new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => Resizable)(bytes, { maxByteLength: bytes });

const B = 4;
const D = 5;
const H = 6;
const C = 3;
const problem = () => randomProblem('float64', B, D, H, C, 7);

/** Logits of the two-layer ReLU net in float64, written out: the independent truth for predict. */
function referenceLogits(p: ReturnType<typeof problem>['params'], X: ArrayLike<number>, rows: number): Float64Array {
  const out = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) {
    const hidden = Array.from({ length: H }, (_, h) => {
      let z = p.b1[h];
      for (let d = 0; d < D; d++) z += X[r * D + d] * p.W1[d * H + h];
      return Math.max(0, z);
    });
    for (let c = 0; c < C; c++) {
      let z = p.b2[c];
      for (let h = 0; h < H; h++) z += hidden[h] * p.W2[h * C + c];
      out[r * C + c] = z;
    }
  }
  return out;
}

const argmax = (logits: Float64Array, rows: number) =>
  Int32Array.from({ length: rows }, (_, r) => {
    let best = 0;
    for (let c = 1; c < C; c++) if (logits[r * C + c] > logits[r * C + best]) best = c;
    return best;
  });

/**
 * Calls `call` `n` times while a worker flips each SharedArrayBuffer label between 0 and C (one
 * past the end); `call` says whether its result is the all-zero labels' one. Returns how many were
 * wrong and how many refused (a RangeError, which must name a label C).
 */
async function underFlippingLabels(n: number, call: (ys: Int32Array) => boolean): Promise<[number, number]> {
  const ys = new Int32Array(new SharedArrayBuffer(4 * B));
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads'); const y = new Int32Array(workerData);
     for (let i = 0; ; i++) y[i & 3] = (i >> 2) & 1 ? ${C} : 0;`,
    { eval: true, workerData: ys.buffer },
  );
  try {
    await new Promise((r) => setTimeout(r, 50));
    let wrong = 0;
    let refused = 0;
    for (let i = 0; i < n; i++) {
      try {
        if (!call(ys)) wrong++;
      } catch (e) {
        expect((e as Error).message).toMatch(new RegExp(`^Expected labels in \\[0, ${C}\\) for y but received ${C} at index \\d$`));
        refused++;
      }
    }
    return [wrong, refused];
  } finally {
    await worker.terminate();
  }
}

describeBackends('labels are copied once, then checked, then used', (backend: BackendName) => {
  it('a worker flipping SharedArrayBuffer labels between 0 and C gives the all-zero loss or a RangeError, never another loss', async () => {
    const { params, X } = problem();
    const want = forwardBackward(params, X, new Int32Array(B), { backend }).loss;
    const [wrong, refused] = await underFlippingLabels(backend === 'torch' ? 300 : 20000, (ys) => forwardBackward(params, X, ys, { backend }).loss === want);
    expect(wrong).toBe(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('evaluate, too: SharedArrayBuffer labels a worker flips give the all-zero score or a RangeError, never NaN', async () => {
    const { params, X } = problem();
    const net = new Sequential([new Linear(D, H, { W: params.W1, b: params.b1 }), new ReLU(), new Linear(H, C, { W: params.W2, b: params.b2 })]);
    const want = net.evaluate(X, new Int32Array(B), { backend });
    const [wrong] = await underFlippingLabels(backend === 'torch' ? 300 : 5000, (ys) => {
      const got = net.evaluate(X, ys, { backend });
      return got.loss === want.loss && got.accuracy === want.accuracy;
    });
    expect(wrong).toBe(0);
  });

  it('BigInt64Array labels are range-checked before they are narrowed to int32', () => {
    const { params, X } = problem();
    for (const bad of [-(2n ** 32n), 2n ** 32n, 2n ** 32n + 1n, -1n, 2n ** 63n - 1n]) {
      const y = BigInt64Array.of(0n, 1n, bad, 2n) as unknown as Int32Array;
      const e = thrown(() => forwardBackward(params, X, y, { backend }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe(`Expected labels in [0, ${C}) for y but received ${bad} at index 2`);
    }
    const ok = forwardBackward(params, X, BigInt64Array.of(0n, 1n, 2n, 1n) as unknown as Int32Array, { backend }).loss;
    expect(ok).toBe(forwardBackward(params, X, Int32Array.of(0, 1, 2, 1), { backend }).loss);
  });

  it('Uint32Array labels past 2^31 are refused with their own value', () => {
    const { params, X } = problem();
    const e = thrown(() => forwardBackward(params, X, Uint32Array.of(0, 2 ** 32 - 1, 1, 2), { backend }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(`Expected labels in [0, ${C}) for y but received ${2 ** 32 - 1} at index 1`);
  });
});

describeBackends('a weight another thread rewrites is named as it was read', (backend: BackendName) => {
  // A worker flips W1[7] between NaN and 0.5 while the step checks W1: the check's first scan can
  // see NaN and its search for the culprit 0.5. The refusal must name NaN at index 7 (or say the
  // value was rewritten while checked, or come from the forward that met it) — never a finite
  // value, never an index past the end (the torch backend's check read W1[length] that way).
  it('every refusal names NaN at index 7 or the rewrite; every result is the loss with W1[7] = 0.5', async () => {
    const [d, h, rows] = [64, 128, 8];
    const p = initParams({ D: d, H: h, C }, { seed: 3 });
    const W1 = new Float64Array(new SharedArrayBuffer(8 * d * h));
    W1.set(p.W1);
    W1[7] = 0.5;
    const X = new Float64Array(rows * d).fill(0.1);
    const y = new Int32Array(rows);
    const want = forwardBackward({ ...p, W1: W1.slice() }, X, y, { backend }).loss;
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads'); const W = new Float64Array(workerData);
       for (let k = 0; ; k++) W[7] = k & 2 ? NaN : 0.5;`,
      { eval: true, workerData: W1.buffer },
    );
    try {
      await new Promise((r) => setTimeout(r, 50));
      const named = new Set<string>();
      let results = 0;
      for (let i = 0; i < (backend === 'torch' ? 1500 : 4000); i++) {
        try {
          expect(forwardBackward({ ...p, W1 }, X, y, { backend }).loss).toBe(want);
          results++;
        } catch (e) {
          expect(e).toBeInstanceOf(RangeError);
          const m = /received (.*) at index (\d+)$/.exec((e as Error).message);
          if (m) named.add(`${m[1]} at ${m[2]}`);
          else expect((e as Error).message).toMatch(/rewrote while it was being checked|^Expected a finite forward pass/);
        }
      }
      expect([...named].filter((n) => n !== 'NaN at 7')).toEqual([]);
      expect(results + named.size).toBeGreaterThan(0);
    } finally {
      await worker.terminate();
    }
  });
});

describeBackends('lengths come from the array, options and params are read once', (backend: BackendName) => {
  it('a Float64Array subclass whose length over-reports is refused, not read past its end', () => {
    const { params, X, y } = problem();
    class Liar extends Float64Array {
      override get length(): number {
        return B * D;
      }
    }
    const short = new Liar(X.subarray(0, (B - 1) * D));
    const e = thrown(() => forwardBackward(params, short as Float64Array, y, { backend }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toContain('for X');
    const shortW = new Liar(params.W2.subarray(0, H * C - 2)) as unknown as Float64Array;
    Object.defineProperty(shortW, 'length', { value: H * C });
    expect(thrown(() => forwardBackward({ ...params, W2: shortW }, X, y, { backend }))).toBeInstanceOf(RangeError);
  });

  it('a resizable X shrunk by a getter on opts.out after X was checked is refused', () => {
    const { params, X, y } = problem();
    const buffer = resizable(X.byteLength);
    const Xr = new Float64Array(buffer);
    Xr.set(X);
    // The getter of out.dW1 runs when the gradient buffers are gathered, after X and y were checked.
    const out = Object.defineProperty({}, 'dW1', {
      enumerable: true,
      get: () => {
        buffer.resize(8);
        return undefined;
      },
    });
    const opts = { backend, out };
    const err = thrown(() => forwardBackward(params, Xr, y, opts as never));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toContain('for X');
  });

  it('a Linear over a resizable buffer that shrank since is refused on every call, never computed on stale memory', () => {
    const { params, X, y } = problem();
    const buffer = resizable(params.W1.byteLength);
    const W1 = new Float64Array(buffer);
    W1.set(params.W1);
    const net = new Sequential([new Linear(D, H, { W: W1, b: params.b1 }), new ReLU(), new Linear(H, C, { W: params.W2, b: params.b2 })]);
    const want = forwardBackward(params, X, y, { backend }).loss;
    expect(net.forwardBackward(X, y, { backend }).loss).toBe(want);
    buffer.resize(8 * (D * H - 1));
    const e = thrown(() => net.forwardBackward(X, y, { backend }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(/W1/);
    expect(thrown(() => net.predict(X, { backend }))).toBeInstanceOf(RangeError);
  });

  it('predict reads each of params’ tensors once: a getter that returns another tensor later changes nothing', () => {
    const { params, X } = problem();
    let reads = 0;
    const tricky = { W1: params.W1, b1: params.b1, W2: params.W2 } as Record<string, unknown>;
    Object.defineProperty(tricky, 'b2', { enumerable: true, get: () => (reads++ === 0 ? params.b2 : new Float64Array(0)) });
    const got = predict(tricky as never, X, { backend });
    expect(Array.from(got)).toEqual(Array.from(argmax(referenceLogits(params, X, B), B)));
    expect(reads).toBe(1);
  });
});

describe('options are read once', () => {
  it('each option getter runs once per call', () => {
    const { params, X, y } = problem();
    let reads = 0;
    const opts = Object.defineProperty({}, 'reduction', { enumerable: true, get: () => (reads++, 'sum') });
    forwardBackward(params, X, y, opts as never);
    expect(reads).toBe(1);
  });
});

describe('handgrad grads reads I64 labels from a file as they are', () => {
  it('a label of −2^32 in an I64 y is refused by name, not read as class 0', () => {
    const { params, X } = problem();
    const dir = mkdtempSync(join(tmpdir(), 'hg-read-once-'));
    const file = join(dir, 'in.safetensors');
    const y = BigInt64Array.of(0n, -(2n ** 32n), 1n, 2n);
    saveSafetensors(file, { X: { shape: [B, D], data: X }, y: { shape: [B], data: y }, W1: { shape: [D, H], data: params.W1 }, b1: { shape: [H], data: params.b1 }, W2: { shape: [H, C], data: params.W2 }, b2: { shape: [C], data: params.b2 } });
    const r = spawnSync(process.execPath, [join(__dirname, '..', 'dist', 'lib', 'cli.js'), 'grads', file, '-o', join(dir, 'out.safetensors')], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`Expected labels in [0, ${C}) for y but received ${-(2 ** 32)} at index 1`);
    expect(existsSync(join(dir, 'out.safetensors'))).toBe(false);
  });
});

describe('sizes and kinds in the package’s words', () => {
  it('a DataView X is a TypeError naming the dtypes, not a length error', () => {
    const { params } = problem();
    const e = thrown(() => predict(params, new DataView(new ArrayBuffer(8 * B * D)) as never));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/^Expected a Float64Array or Float32Array for X but received DataView/);
  });

  it('a weight a 32-bit BLAS index cannot address is refused by name before any allocation', () => {
    expect(thrown(() => initParams({ D: 1e6, H: 1e6, C: 10 })).message).toBe('Expected at most 4294967295 elements for W1 but received 1000000000000 elements');
    expect(thrown(() => Sequential.mlp([4, 1e5, 1e5, 10])).message).toBe('Expected at most 4294967295 elements for W2 but received 10000000000 elements');
  });
});

describe('verify, gradcheck and fit read the objects they are given once', () => {
  /** params whose tensors answer an empty array from the second read on. */
  const oneShot = () => {
    const { params, X, y } = problem();
    const reads: Record<string, number> = {};
    const tricky = {};
    for (const [k, t] of Object.entries(params)) {
      Object.defineProperty(tricky, k, { enumerable: true, get: () => ((reads[k] = (reads[k] ?? 0) + 1) > 1 ? new Float64Array(0) : t) });
    }
    return { params, tricky: tricky as typeof params, reads, X, y };
  };

  it('verify and gradcheck check and use the same tensors', () => {
    const a = oneShot();
    expect(verify(a.tricky, a.X, a.y, { reference: 'fd' }).ok).toBe(true);
    expect(Object.values(a.reads).every((n) => n === 1)).toBe(true);
    const b = oneShot();
    expect(gradcheck((p, X2, y2, o) => forwardBackward(p, X2, y2, o).grads, b.X, b.y, { params: b.tricky }).ok).toBe(true);
    expect(Object.values(b.reads).every((n) => n === 1)).toBe(true);
  });

  it('fitSync reads validation.X once: the data checked is the data evaluated', () => {
    const { params, X, y } = problem();
    let reads = 0;
    const validation = { y };
    Object.defineProperty(validation, 'X', { enumerable: true, get: () => (reads++ > 0 ? new Float64Array(0) : X) });
    const r = new Trainer({ ...params }).fitSync(X, y, { epochs: 1, validation: validation as { X: Float64Array; y: Int32Array } });
    expect(r.stopped).toBe('completed');
    expect(Number.isFinite(r.history[0].valLoss)).toBe(true);
    expect(reads).toBe(1);
  });
});
