// The threaded wasm module (build-wasm/handgrad-threads.wasm: native/wasm/threads.h, lib/engine/
// wasm-threads.ts): its GEMM cut into blocks of C across workers on one shared memory, and a step's
// activation backward cut into bands of columns, must give the single-threaded module's bits (the
// ones test/15 records) at every shape, transpose and beta; the
// workers must really compute blocks; the single-threaded module must still be what runs where
// SharedArrayBuffer is absent; a process that used the workers must exit by itself; and each of
// V8's tiers must finish the threaded GEMMs with those bits.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { align, ensureMemory, loadWasm, wasmModulePath, type WasmExports } from '../lib/backends/wasm';
import { instantiateThreaded, importedMemoryPages, wasmThreadsWanted, type ThreadedWasm } from '../lib/engine/wasm-threads';
import { backendTitle, randomArray, skipReason, typed } from './helpers';

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist', 'lib', 'index.js');
// The threaded sibling of the module load() takes (lib/engine/wasm-threads.ts loadPreferringThreads).
const THREADED = wasmModulePath().replace(/(\.wasm)?$/, '-threads.wasm');
const skip = skipReason('wasm') ?? (existsSync(THREADED) ? null : `${THREADED} is not built`);

type Dtype = 'float64' | 'float32';

/** C = alpha·op(A)·op(B) + beta·C on one instance's exported GEMM; C's bytes. */
function gemmBytes(w: WasmExports, dtype: Dtype, tA: boolean, tB: boolean, M: number, N: number, K: number, alpha: number, beta: number, seed: number): Uint8Array {
  const F = dtype === 'float64' ? Float64Array : Float32Array;
  const A = typed(dtype, randomArray(M * K, seed));
  const B = typed(dtype, randomArray(K * N, seed + 1));
  const C0 = typed(dtype, randomArray(M * N, seed + 2));
  if (beta === 0) C0.fill(NaN); // beta = 0 never reads C
  const pA = align(w.__heap_base.value);
  const pB = align(pA + A.byteLength);
  const pC = align(pB + B.byteLength);
  ensureMemory(w, pC + C0.byteLength, 'test');
  new F(w.memory.buffer, pA, A.length).set(A);
  new F(w.memory.buffer, pB, B.length).set(B);
  new F(w.memory.buffer, pC, C0.length).set(C0);
  (dtype === 'float64' ? w.gemmF64 : w.gemmF32)(+tA, +tB, M, N, K, alpha, pA, tA ? M : K, pB, tB ? K : N, beta, pC, N);
  return new Uint8Array(w.memory.buffer, pC, C0.byteLength).slice();
}

/** threads.h kSpinPolls: the polls before a wait sleeps. */
const SPIN_POLLS = 2 ** 17;

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

describe.skipIf(skip)(backendTitle('the threaded GEMM against the single-threaded module, bit for bit', 'wasm', skip), () => {
  let plain: WasmExports;
  const pools: ThreadedWasm[] = [];
  beforeAll(async () => {
    plain = loadWasm(wasmModulePath());
    const bytes = readFileSync(THREADED);
    for (const threads of [2, 3]) pools.push(instantiateThreaded(bytes, threads, (e) => { throw e; }));
    await Promise.all(pools.map((p) => p.ready));
  });
  afterAll(async () => {
    await Promise.all(pools.flatMap((p) => p.workers.map((w) => w.terminate())));
  });

  // Over the 2^22 multiply-adds that wake workers (gemm.h), cut by columns (N ≥ M) or rows; edges
  // that are not whole panels; K past one 256-long block, so each output is a sum of several blocks.
  const shapes: [number, number, number][] = [[256, 1024, 784], [784, 1024, 256], [256, 784, 1024], [1030, 20, 260], [77, 1100, 300], [513, 129, 257]];
  for (const dtype of ['float64', 'float32'] as const) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      it(`${dtype} ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}: alpha 1 and 0.5, beta 0 (C full of NaN), 1 and −2, on 2 and 3 threads`, () => {
        let seed = 1;
        for (const [M, N, K] of shapes) {
          for (const [alpha, beta] of [[1, 0], [1, 1], [0.5, -2]]) {
            seed += 3;
            const want = gemmBytes(plain, dtype, tA, tB, M, N, K, alpha, beta, seed);
            for (const p of pools) {
              // Polling before sleeping (the default) or sleeping at once: the same blocks, the same bits.
              for (const spin of [SPIN_POLLS, 0]) {
                (p.exports as WasmExports & { setSpin(polls: number): number }).setSpin(spin);
                const got = gemmBytes(p.exports, dtype, tA, tB, M, N, K, alpha, beta, seed);
                expect(same(got, want), `${p.threads} threads, ${spin} polls, M=${M} N=${N} K=${K} alpha=${alpha} beta=${beta}`).toBe(true);
              }
            }
          }
        }
      });
    }
  }

  it('the workers computed blocks (the comparison above is not the calling thread alone)', () => {
    for (const p of pools) {
      for (let t = 1; t < p.threads; t++) expect(p.blocksRun(t), `worker ${t} of ${p.threads}`).toBeGreaterThan(0);
    }
  });
});

describe.skipIf(skip)(backendTitle('where the threaded module runs, and where it does not', 'wasm', skip), () => {
  // One child per case: load() chooses once per process. It prints the threads in use, the memory's
  // kind and the step's loss and gradients' bytes (hex): at a width whose activation backward (with
  // db1) runs on the calling thread (64 × 512), and at ones past gemm.h's forColumnBlocks threshold
  // (2^16 entries), whose bands run side by side on the pool: each activation, a width that is not
  // whole 16-column bands (515), and accumulate (db1 added to what it held).
  const CHILD = `
    const hg = require(${JSON.stringify(DIST)});
    // An engine that refuses shared wasm memory, as a browser page that is not cross-origin
    // isolated does (Node's --no-harmony-sharedarraybuffer would also stop the rest of the package,
    // which reads SharedArrayBuffer.prototype, from loading at all).
    if (process.env.HG_TEST_NO_SHARED) {
      const Memory = WebAssembly.Memory;
      WebAssembly.Memory = function (d) {
        if (d && d.shared) throw new TypeError('WebAssembly.Memory: shared memory needs cross-origin isolation');
        return new Memory(d);
      };
    }
    const t = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'engine', 'wasm-threads.js'))});
    const w = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'backends', 'wasm.js'))});
    const { createHash } = require('node:crypto');
    const dims = { D: 300, H: 512, C: 10 }, B = 64;
    const out = [];
    const warnings = [];
    process.on('warning', (w) => warnings.push(w.message));
    (async () => {
    w.load();
    await t.wasmWorkersReady(); // else the first GEMMs could run on this thread alone
    const cases = [[dims, B, 'relu', false], [{ D: 40, H: 515, C: 10 }, 160, 'relu', false], [{ D: 40, H: 515, C: 10 }, 160, 'sigmoid', true],
      [{ D: 40, H: 1024, C: 10 }, 128, 'tanh', false]];
    for (const dtype of ['float64', 'float32']) {
      for (const [d, b, activation, accumulate] of cases) {
        const params = hg.initParams(d, { seed: 1, dtype });
        const F = dtype === 'float64' ? Float64Array : Float32Array;
        const X = new F(b * d.D).map((_, i) => Math.sin(i * 0.37));
        const y = Int32Array.from({ length: b }, (_, i) => (i * 7) % d.C);
        const grads = { dX: new F(b * d.D), dW1: new F(d.D * d.H).fill(0.5), db1: new F(d.H).map((_, i) => i / 7), dW2: new F(d.H * d.C), db2: new F(d.C) };
        const r = hg.forwardBackward(params, X, y, { backend: 'wasm', inputGrad: true, activation, accumulate, out: grads });
        const h = createHash('sha256');
        for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2']) h.update(new Uint8Array(r.grads[k].buffer, r.grads[k].byteOffset, r.grads[k].byteLength));
        out.push(dtype + ':' + activation + ':' + r.loss + ':' + h.digest('hex'));
      }
    }
    const buffer = w.load().memory.buffer.constructor.name;
    await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
    console.log(JSON.stringify({ threads: t.wasmThreads(), buffer, out, blocks: t.wasmBlocksRun(), warnings }));
    })();
  `;
  function child(env: Record<string, string>) {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['-e', CHILD], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
    const report = `status ${r.status}, signal ${r.signal}\n${r.stdout}\n${r.stderr.slice(-2000)}`;
    expect(r.signal, report).toBeNull();
    expect(r.status, report).toBe(0);
    return { ...(JSON.parse(r.stdout) as { threads: number; buffer: string; out: string[]; blocks: number[]; warnings: string[] }), ms: Date.now() - t0 };
  }
  const distSkip = existsSync(DIST) ? null : 'dist/ is not built (npm run setup)';

  it.skipIf(distSkip)('2 threads on a shared memory, 1 on a plain one (HANDGRAD_WASM_THREADS=1, or no shared wasm memory as in a browser page without cross-origin isolation): the same bits, and each process exits by itself', () => {
    const threaded = child({ HANDGRAD_WASM_THREADS: '2' });
    expect([threaded.threads, threaded.buffer]).toEqual([2, 'SharedArrayBuffer']);
    expect(threaded.blocks[1], 'blocks computed by the worker').toBeGreaterThan(0);
    const one = child({ HANDGRAD_WASM_THREADS: '1' });
    expect([one.threads, one.buffer]).toEqual([1, 'ArrayBuffer']);
    const noShared = child({ HANDGRAD_WASM_THREADS: '2', HG_TEST_NO_SHARED: '1' });
    expect([noShared.threads, noShared.buffer]).toEqual([1, 'ArrayBuffer']);
    // An engine without shared memory is an expected place, not a failure: no warning there.
    for (const c of [threaded, one, noShared]) expect(c.warnings).toEqual([]);
    expect(threaded.out).toEqual(one.out);
    expect(noShared.out).toEqual(one.out);
    // The parked workers are unref'd: the process ends when its work does, not at the 60 s timeout.
    expect(threaded.ms).toBeLessThan(20_000);
  });
});

describe.skipIf(skip)(backendTitle('the waits: bounded polling, then sleep', 'wasm', skip), () => {
  // threads.h: after a job a worker polls the claim word (and the caller the done count) a bounded
  // while before it sleeps, so back-to-back GEMMs skip the futex wake-ups. Bounded: a process that
  // stops calling must stop burning a core within a few ms. Measured in a child, whose CPU time is
  // its own (a vitest worker's process.cpuUsage would count the other test files' threads).
  const CHILD = `
    const { readFileSync } = require('node:fs');
    const t = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'engine', 'wasm-threads.js'))});
    const w = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'backends', 'wasm.js'))});
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    (async () => {
      const p = t.instantiateThreaded(readFileSync(${JSON.stringify(THREADED)}), 2, (e) => { throw e; });
      await p.ready;
      const x = p.exports;
      if (process.env.HG_TEST_SPIN) x.setSpin(Number(process.env.HG_TEST_SPIN));
      const M = 256, N = 256, K = 256, at = w.align(x.__heap_base.value);
      w.ensureMemory(x, at + 4 * (M * K + K * N + M * N), 'test');
      const blocks0 = p.blocksRun(1);
      for (let i = 0; i < 20; i++) x.gemmF32(0, 0, M, N, K, 1, at, K, at + 4 * M * K, N, 0, at + 4 * (M * K + K * N), N);
      await sleep(100); // past any bounded poll
      const c0 = process.cpuUsage(), t0 = performance.now();
      await sleep(400);
      const c = process.cpuUsage(c0);
      console.log(JSON.stringify({ idleCpuFraction: (c.user + c.system) / 1000 / (performance.now() - t0), workerBlocks: p.blocksRun(1) - blocks0 }));
    })();
  `;
  const distSkip = existsSync(DIST) ? null : 'dist/ is not built (npm run setup)';

  it.skipIf(distSkip)('after its GEMMs an idle process sleeps: well under a core busy over 400 ms, and it exits by itself', () => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ['-e', CHILD], { encoding: 'utf8', timeout: 60_000 });
    const report = `status ${r.status}, signal ${r.signal}\n${r.stdout}\n${r.stderr.slice(-2000)}`;
    expect(r.status, report).toBe(0);
    const { idleCpuFraction, workerBlocks } = JSON.parse(r.stdout) as { idleCpuFraction: number; workerBlocks: number };
    expect(workerBlocks, 'blocks computed by the worker').toBeGreaterThan(0);
    // A worker still polling would show ~1 (a whole core); a sleeping process, a few percent.
    expect(idleCpuFraction, report).toBeLessThan(0.3);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});

describe.skipIf(skip)(backendTitle("each of V8's tiers: the threaded GEMM finishes with the single-threaded bits", 'wasm', skip), () => {
  // V8 runs a wasm function first as Liftoff's baseline code and later as TurboFan's; a function
  // mid-call keeps the tier it started in. One build of this module (clang's -mllvm -disable-lsr,
  // tried 2026-12-03) deadlocked under Liftoff alone — the caller on the main thread, the workers
  // asleep in their wait, nonzero data — and ran under TurboFan: so each tier is held here, in a
  // child (its flags are per process), on the path that hung: workers woken from their sleep.
  const CHILD = `
    const { readFileSync } = require('node:fs');
    const { createHash } = require('node:crypto');
    const t = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'engine', 'wasm-threads.js'))});
    const w = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'backends', 'wasm.js'))});
    const threadedPath = w.wasmModulePath().replace(/(\\.wasm)?$/, '-threads.wasm');
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    // C's bytes after C = op(A)·op(B) (beta 0) on x, A and B from a fixed sequence of small integers and halves.
    function run(x, dtype, tA, tB, M, N, K) {
      const F = dtype === 'float64' ? Float64Array : Float32Array;
      const pA = w.align(x.__heap_base.value), pB = w.align(pA + F.BYTES_PER_ELEMENT * M * K), pC = w.align(pB + F.BYTES_PER_ELEMENT * K * N);
      w.ensureMemory(x, pC + F.BYTES_PER_ELEMENT * M * N, 'test');
      new F(x.memory.buffer, pA, M * K).forEach((_, i, a) => (a[i] = ((i * 7) % 13) / 2 - 3));
      new F(x.memory.buffer, pB, K * N).forEach((_, i, a) => (a[i] = ((i * 5) % 11) / 2 - 2.5));
      (dtype === 'float64' ? x.gemmF64 : x.gemmF32)(+tA, +tB, M, N, K, 1, pA, tA ? M : K, pB, tB ? K : N, 0, pC, N);
      return createHash('sha256').update(new Uint8Array(x.memory.buffer, pC, F.BYTES_PER_ELEMENT * M * N)).digest('hex');
    }
    (async () => {
      const plain = w.loadWasm(w.wasmModulePath());
      const p = t.instantiateThreaded(readFileSync(threadedPath), 2, (e) => { throw e; });
      await p.ready;
      const cases = [];
      for (const dtype of ['float64', 'float32'])
        for (const [tA, tB, M, N, K] of [[false, false, 256, 256, 256], [true, false, 784, 1024, 256], [false, true, 513, 129, 257], [true, true, 300, 260, 270]]) {
          await sleep(60); // past the bounded poll: each GEMM wakes sleeping workers
          cases.push({ dtype, shape: [tA, tB, M, N, K], threaded: run(p.exports, dtype, tA, tB, M, N, K), plain: run(plain, dtype, tA, tB, M, N, K) });
        }
      console.log(JSON.stringify({ cases, workerBlocks: p.blocksRun(1) }));
    })();
  `;
  const distSkip = existsSync(DIST) ? null : 'dist/ is not built (npm run setup)';

  for (const tier of ['--liftoff-only', '--no-liftoff']) {
    it.skipIf(distSkip)(`node ${tier}: eight GEMMs (both dtypes, the four transposes), each after the workers slept, finish with the same bits`, () => {
      const r = spawnSync(process.execPath, [tier, '-e', CHILD], { encoding: 'utf8', timeout: 60_000 });
      const report = `status ${r.status}, signal ${r.signal} (a signal: killed at the 60 s timeout, i.e. hung)\n${r.stdout}\n${r.stderr.slice(-2000)}`;
      expect(r.signal, report).toBeNull();
      expect(r.status, report).toBe(0);
      const { cases, workerBlocks } = JSON.parse(r.stdout) as { cases: { threaded: string; plain: string }[]; workerBlocks: number };
      expect(workerBlocks, 'blocks computed by the worker').toBeGreaterThan(0);
      expect(cases).toHaveLength(8);
      for (const c of cases) expect(c.threaded, JSON.stringify(c)).toBe(c.plain);
    });
  }
});

describe('HANDGRAD_WASM_THREADS and the module file', () => {
  it('an integer in [1, 8], else a RangeError naming it; unset: one per core, at most 8', () => {
    expect(wasmThreadsWanted({ HANDGRAD_WASM_THREADS: '3' })).toBe(3);
    expect(wasmThreadsWanted({})).toBeGreaterThanOrEqual(1);
    expect(wasmThreadsWanted({})).toBeLessThanOrEqual(8);
    for (const bad of ['0', '9', '1.5', 'two']) {
      expect(() => wasmThreadsWanted({ HANDGRAD_WASM_THREADS: bad })).toThrow(new RangeError(`Expected an integer in [1, 8] for HANDGRAD_WASM_THREADS but received "${bad}"`));
    }
  });

  it.skipIf(skip)('the memory pages the threaded module imports are read from its import section', () => {
    const pages = importedMemoryPages(readFileSync(THREADED));
    expect(pages).toBeGreaterThan(0);
    // One page fewer is refused at instantiation: the parse is what makes it link.
    const api = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => object; Module: new (b: Uint8Array) => object; Instance: new (m: object, i: object) => object } }).WebAssembly;
    const module = new api.Module(readFileSync(THREADED));
    const env = { exp: Math.exp, log: Math.log, tanh: Math.tanh };
    expect(() => new api.Instance(module, { env: { ...env, memory: new api.Memory({ initial: pages - 1, maximum: 65536, shared: true }) } })).toThrow(/memory/i);
  });
});
