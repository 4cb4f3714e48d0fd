// The LibTorch autograd backend ('torch', native/torch), where it is specific: the addon's own
// argument checks, LibTorch's intra-op threads, loading and computing in a worker_thread, and the
// error when the addon is absent. What every backend must satisfy (PyTorch's fixtures, finite
// differences, semantics, bad input, agreement with native) is test/01–05's, on torch as on the
// others; its optimizers against torch::optim are test/25's, its any-depth reference test/26's.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadTorchBinding, torchAddonPath, torchBinding } from '../lib/backends/torch';
import { forwardBackward, getTorchThreads, HandgradError, setTorchThreads } from '../lib/index';
import type { FloatArray } from '../lib/types';
import { backendTitle, randomProblem, skipReason, thrown } from './helpers';

const skip = skipReason('torch');


describe.skipIf(skip)(backendTitle('the addon checks its arguments itself', 'torch', skip), () => {
  const { params, X, y } = randomProblem('float64', 4, 5, 10, 3, 5000);

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

describe.skipIf(skip)(backendTitle('threads and worker_threads', 'torch', skip), () => {
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
    expect(e.message).toContain('npx handgrad build-torch');
    expect(e.message).toContain('apt-get install -y cmake libtorch-dev');
  });

  it('a file that is not a loadable addon', () => {
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF file');
    const e = thrown(() => loadTorchBinding(bogus));
    expect((e as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    expect(e.message).toContain('could not be loaded');
    expect(e.message).toContain('npx handgrad build-torch');
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
    expect(e.message).toContain('npx handgrad build-torch');
    expect(() => lib.getTorchThreads()).toThrow(/handgrad build-torch/);
    // The other backends are unaffected.
    expect(Number.isFinite(lib.forwardBackward(params, X, y, { backend: 'ts' }).loss)).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });
});
