// The LibTorch autograd backend ('torch', native/torch): against PyTorch's own golden fixtures,
// against the hand-derived native backend at the seed's realistic size, .grad accumulation, no state
// carried between calls, bad input, threads, worker_threads, and the error when the addon is absent.
// Runs wherever the addon loads or LibTorch is installed (setup builds the addon there, so a missing
// addon is then a failure, not a skip).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadTorchBinding, torchAddonPath, torchBinding } from '../lib/backends/torch';
import { forward, forwardBackward, getTorchThreads, HandgradError, setTorchThreads } from '../lib/index';
import type { Activation, Dtype, FloatArray, Reduction } from '../lib/types';
import { caseParams, errEps, FIXTURES, jsonCases, randomArray, randomLabels, randomProblem, torchExpected, typed } from './helpers';


const hasTorch = torchExpected();

// Fixtures: a few units of epsilon relative to the tensor's largest entry (test/fixtures/README.md).
const FIXTURE_TOL_EPS = 8;
// torch vs native at (64,128,256,10): two different summation orders of the same GEMMs.
const AGREE_TOL_EPS = 16;

const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
const ACTIVATIONS: Activation[] = ['relu', 'sigmoid', 'tanh'];
const REDUCTIONS: Reduction[] = ['mean', 'sum'];
const DTYPES: Dtype[] = ['float64', 'float32'];

/** A safetensors file, read here from its definition (8-byte LE header length, JSON header, raw LE data). */
function readSafetensors(path: string): { tensors: Record<string, FloatArray | Int32Array>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const tensors: Record<string, FloatArray | Int32Array> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, data_offsets: [a, b] } = info as { dtype: string; data_offsets: [number, number] };
    // A copy into a fresh (aligned) ArrayBuffer; x86 is little-endian like the file.
    const bytes = new Uint8Array(buf.subarray(8 + n + a, 8 + n + b)).buffer;
    tensors[name] = dtype === 'F64' ? new Float64Array(bytes) : dtype === 'F32' ? new Float32Array(bytes) : new Int32Array(bytes);
  }
  return { tensors, metadata: (header.__metadata__ ?? {}) as Record<string, string> };
}


function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe.skipIf(!hasTorch)('torch backend against PyTorch autograd fixtures', () => {
  for (const c of jsonCases()) {
    it(`${c.name} (${c.dtype}, ${c.activation}, ${c.reduction})`, () => {
      const r = forwardBackward(caseParams(c), typed(c.dtype, c.inputs.X), c.inputs.y, {
        backend: 'torch', activation: c.activation, reduction: c.reduction, inputGrad: true,
      });
      expect(r.grads.dW1).toBeInstanceOf(c.dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps([r.loss], c.expected.loss, c.dtype)).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
      for (const k of GRADS) {
        expect(r.grads[k]!.length, k).toBe(c.expected[k].length);
        expect(errEps(r.grads[k]!, c.expected[k], c.dtype), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
      }
    });
  }

  for (const suffix of ['', '-float32']) {
    const name = `seed-realistic-64x128x256x10${suffix}`;
    it(`${name} (safetensors, B=64 D=128 H=256 C=10)`, () => {
      const { tensors: t, metadata } = readSafetensors(join(FIXTURES, `${name}.case.safetensors`));
      const { tensors: want } = readSafetensors(join(FIXTURES, `${name}.expected.safetensors`));
      const dtype: Dtype = t.X instanceof Float64Array ? 'float64' : 'float32';
      const p = { W1: t.W1 as FloatArray, b1: t.b1 as FloatArray, W2: t.W2 as FloatArray, b2: t.b2 as FloatArray };
      const r = forwardBackward(p, t.X as FloatArray, t.y as Int32Array, {
        backend: 'torch', activation: metadata.activation as Activation, reduction: metadata.reduction as Reduction, inputGrad: true,
      });
      expect(errEps([r.loss], want.loss, dtype)).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
      for (const k of GRADS) expect(errEps(r.grads[k]!, want[k], dtype), k).toBeLessThanOrEqual(FIXTURE_TOL_EPS);
    });
  }
});

describe.skipIf(!hasTorch)('torch and native agree at (64,128,256,10)', () => {
  for (const dtype of DTYPES) {
    for (const activation of ACTIVATIONS) {
      for (const reduction of REDUCTIONS) {
        it(`${dtype} ${activation} ${reduction}: loss, every gradient and the cache`, () => {
          const { params, X, y } = randomProblem(dtype, 64, 128, 256, 10, 1000);
          const opts = { activation, reduction, inputGrad: true, cache: true } as const;
          const t = forwardBackward(params, X, y, { ...opts, backend: 'torch' });
          const n = forwardBackward(params, X, y, { ...opts, backend: 'native' });
          expect(errEps([t.loss], [n.loss], dtype)).toBeLessThanOrEqual(AGREE_TOL_EPS);
          for (const k of GRADS) expect(errEps(t.grads[k]!, n.grads[k]!, dtype), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
          for (const k of ['Z1', 'A1', 'logits', 'probs'] as const) {
            expect(errEps(t.cache![k], n.cache![k], dtype), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
          }
        });
      }
    }
  }

  it('forward() logits agree', () => {
    for (const dtype of DTYPES) {
      const { params, X } = randomProblem(dtype, 64, 128, 256, 10, 2000);
      const t = forward(params, X, { backend: 'torch', activation: 'tanh' });
      const n = forward(params, X, { backend: 'native', activation: 'tanh' });
      expect(t).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
      expect(errEps(t, n, dtype)).toBeLessThanOrEqual(AGREE_TOL_EPS);
    }
  });
});

describe.skipIf(!hasTorch)('torch: .grad semantics and no state between calls', () => {
  const { params, X, y } = randomProblem('float64', 16, 12, 20, 5, 3000);
  const base = { backend: 'torch', activation: 'sigmoid', inputGrad: true } as const;
  const buffers = (fill: number) => ({
    dX: new Float64Array(X.length).fill(fill), dW1: new Float64Array(params.W1.length).fill(fill), db1: new Float64Array(params.b1.length).fill(fill),
    dW2: new Float64Array(params.W2.length).fill(fill), db2: new Float64Array(params.b2.length).fill(fill),
  });

  it('two calls without accumulate give identical results (a fresh graph each time)', () => {
    const a = forwardBackward(params, X, y, base);
    const b = forwardBackward(params, X, y, base);
    expect(b.loss).toBe(a.loss);
    for (const k of GRADS) expect(b.grads[k], k).toEqual(a.grads[k]);
  });

  it('without accumulate, whatever the out buffers held (even NaN) is overwritten', () => {
    const fresh = forwardBackward(params, X, y, base);
    const out = buffers(NaN);
    forwardBackward(params, X, y, { ...base, out });
    for (const k of GRADS) expect(out[k], k).toEqual(fresh.grads[k]);
  });

  it('with accumulate, two calls into zeroed buffers give twice one call', () => {
    const once = forwardBackward(params, X, y, base);
    const out = buffers(0);
    forwardBackward(params, X, y, { ...base, out, accumulate: true });
    forwardBackward(params, X, y, { ...base, out, accumulate: true });
    for (const k of GRADS) expect(out[k], k).toEqual(once.grads[k]!.map((v) => 2 * v));
  });

  it('with accumulate, the gradient is added to what the buffers hold', () => {
    const once = forwardBackward(params, X, y, base);
    const start = randomArray(params.W1.length, 77);
    const out = { ...buffers(0), dW1: Float64Array.from(start) };
    forwardBackward(params, X, y, { ...base, out, accumulate: true });
    expect(out.dW1).toEqual(start.map((v, i) => v + once.grads.dW1[i]));
  });

  it('matches native accumulation too', () => {
    const t = buffers(0.5);
    const n = buffers(0.5);
    for (let i = 0; i < 3; i++) {
      forwardBackward(params, X, y, { ...base, out: t, accumulate: true });
      forwardBackward(params, X, y, { ...base, backend: 'native', out: n, accumulate: true });
    }
    for (const k of GRADS) expect(errEps(t[k], n[k], 'float64'), k).toBeLessThanOrEqual(AGREE_TOL_EPS);
  });

  it('memory does not grow over many calls (the graph dies with each call)', () => {
    const big = randomProblem('float64', 64, 128, 256, 10, 4000);
    const step = () => forwardBackward(big.params, big.X, big.y, { backend: 'torch', inputGrad: true });
    for (let i = 0; i < 50; i++) step();
    const before = process.memoryUsage().rss;
    // About 1 MB of tensors per call: 400 leaked graphs would be hundreds of MB.
    for (let i = 0; i < 400; i++) step();
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20);
  });
});

describe.skipIf(!hasTorch)('torch: bad input is an error, never a crash', () => {
  const { params, X, y } = randomProblem('float64', 4, 5, 10, 3, 5000);

  it('NaN in W2 is a RangeError naming W2 and the index', () => {
    const W2 = params.W2.slice();
    W2[3] = NaN;
    const e = thrown(() => forwardBackward({ ...params, W2 }, X, y, { backend: 'torch' }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected finite values in W2 but received NaN at index 3');
  });

  it('Infinity in X is a RangeError naming X, in forward() as well', () => {
    const Xbad = X.slice();
    Xbad[7] = -Infinity;
    for (const fn of [() => forwardBackward(params, Xbad, y, { backend: 'torch' }), () => forward(params, Xbad, { backend: 'torch' })]) {
      const e = thrown(fn);
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe('Expected finite values in X but received -Infinity at index 7');
    }
  });

  it('an overflowing forward pass fails as the native backend fails', () => {
    // Every input finite, but Z1 = Σ_d 1·1e308 is not.
    const huge = { ...params, W1: params.W1.map(() => 1e308) };
    const ones = X.map(() => 1);
    const native = thrown(() => forwardBackward(huge, ones, y, { backend: 'native' }));
    const torch = thrown(() => forwardBackward(huge, ones, y, { backend: 'torch' }));
    expect(torch).toBeInstanceOf(RangeError);
    expect(torch.message).toBe(native.message);
    expect(torch.message).toMatch(/Z1/);
  });

  it('a wrong dtype is a TypeError (public API and raw addon)', () => {
    expect(() => forwardBackward({ ...params, W1: Float32Array.from(params.W1) } as never, X, y, { backend: 'torch' })).toThrow(TypeError);
    const e = thrown(() => rawStep(X, y, [Float32Array.from(params.W1), params.b1, params.W2, params.b2]));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe('Expected Float64Array (the dtype of X) for W1 but received Float32Array of length 50');
  });

  it('the raw addon checks lengths and labels itself', () => {
    const p = [params.W1, params.b1, params.W2, params.b2];
    expect(() => rawStep(X.subarray(1), y, p)).toThrow(RangeError);
    const e = thrown(() => rawStep(X, Int32Array.from([0, 1, 3, 2]), p));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected labels in [0, 3) for y but received 3 at index 2');
  });
});

/** The LibTorch addon's own Linear–ReLU–Linear step on the toy sizes (B 4, D 5, H 10, C 3). */
function rawStep(Xa: FloatArray, ya: Int32Array, p: FloatArray[]): number {
  const grads = [new Float64Array(50), new Float64Array(10), new Float64Array(30), new Float64Array(3)];
  return torchBinding().sequentialForwardBackward(Xa, ya, 4, Int32Array.of(0, 1, 0), Int32Array.of(5, 10, 10, 3), p, grads, null, 0, false);
}

describe.skipIf(!hasTorch)('torch: threads and worker_threads', () => {
  it('LibTorch intra-op threads default to 1 and can be set', () => {
    expect(getTorchThreads()).toBe(1);
    setTorchThreads(2);
    expect(getTorchThreads()).toBe(2);
    setTorchThreads(1);
    expect(getTorchThreads()).toBe(1);
    expect(() => setTorchThreads(0)).toThrow(RangeError);
    expect(() => setTorchThreads(1e6)).toThrow(RangeError);
    expect(getTorchThreads()).toBe(1);
  });

  it('loads and computes in a worker_thread (context-aware, own thread setting)', async () => {
    const { params, X, y } = randomProblem('float64', 4, 5, 10, 3, 6000);
    const main = forwardBackward(params, X, y, { backend: 'torch' });
    const code = `
      const { parentPort, workerData: w } = require('node:worker_threads');
      const t = require(w.path);
      const loss = t.sequentialForwardBackward(w.X, w.y, 4, Int32Array.of(0, 1, 0), Int32Array.of(5, 10, 10, 3), [w.W1, w.b1, w.W2, w.b2],
        [new Float64Array(50), new Float64Array(10), new Float64Array(30), new Float64Array(3)], null, 0, false);
      parentPort.postMessage({ loss, threads: t.getNumThreads() });`;
    const worker = new Worker(code, { eval: true, workerData: { path: torchAddonPath(), X, y: Int32Array.from(y), ...params } });
    const msg = await new Promise<{ loss: number; threads: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(msg.loss).toBe(main.loss);
    expect(msg.threads).toBe(1);
  });
});

describe('torch addon missing or broken: ERR_TORCH_UNAVAILABLE with the way to build it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'handgrad-torch-'));
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('a path with no file', () => {
    const e = thrown(() => loadTorchBinding(join(dir, 'missing', 'handgrad_torch.node')));
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    expect(e.message).toContain('npm run build:torch');
    expect(e.message).toContain('apt-get install -y cmake libtorch-dev');
  });

  it('a file that is not a loadable addon', () => {
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF file');
    const e = thrown(() => loadTorchBinding(bogus));
    expect((e as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    expect(e.message).toContain('could not be loaded');
    expect(e.message).toContain('npm run build:torch');
  });

  it('through the public API, with HANDGRAD_TORCH_ADDON pointing nowhere', async () => {
    vi.stubEnv('HANDGRAD_TORCH_ADDON', join(dir, 'missing', 'handgrad_torch.node'));
    vi.resetModules();
    const lib = await import('../lib/index');
    expect(lib.torchAvailable()).toBe(false);
    const { params, X, y } = randomProblem('float64', 4, 5, 10, 3, 7000);
    const e = thrown(() => lib.forwardBackward(params, X, y, { backend: 'torch' }));
    expect(e.name).toBe('HandgradError');
    expect((e as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    expect(e.message).toContain('npm run build:torch');
    expect(() => lib.getTorchThreads()).toThrow(/build:torch/);
    // The other backends are unaffected.
    expect(Number.isFinite(lib.forwardBackward(params, X, y, { backend: 'ts' }).loss)).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });
});
