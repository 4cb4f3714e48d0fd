// The threaded wasm module (build-wasm/handgrad-threads.wasm: native/wasm/threads.h): one instance
// on this thread and one per worker, all on one shared WebAssembly.Memory, so a GEMM is cut into
// blocks of C that every thread computes a share of (never a cut along k: the bits are the
// single-threaded module's). Chosen by lib/backends/wasm.ts's load() where SharedArrayBuffer exists
// (Node always; a browser only when cross-origin isolated) and more than one thread is wanted; else
// the single-threaded handgrad.wasm runs, unchanged.
//
// The workers start asynchronously and never hold the process open (unref'd): a GEMM called before
// they are up, or after one failed, is computed by the calling thread alone (threads.h: the caller
// claims blocks like any worker). Each worker sits in the module's workerLoop, waiting on the
// memory; Worker.terminate() (and the process's exit) ends it within the loop's wait timeout.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { HandgradError } from '../errors';
import { loadWasm, type WasmExports } from '../backends/wasm';

/** native/wasm/threads.h kMaxThreads. */
export const WASM_MAX_THREADS = 8;
const MAX_PAGES = 65536; // 4 GiB, the module's --max-memory

// The WebAssembly JS-API members used here (this project's TypeScript libs declare none).
interface WasmThreadsApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: unknown };
  Memory: new (d: { initial: number; maximum: number; shared: true }) => WasmExports['memory'];
}
const api = () => (globalThis as unknown as { WebAssembly: WasmThreadsApi }).WebAssembly;

/** The threaded module's extra exports. */
interface ThreadExports extends WasmExports {
  setThreads(n: number): number;
  workerStack(thread: number): number;
  workerLoop(thread: number): void;
  threadBlocks(thread: number): number;
  __stack_pointer: { value: number };
}

/** A threaded instance: the exports the engine uses, and its workers. */
export interface ThreadedWasm {
  exports: WasmExports;
  /** 1 + the workers started (the GEMMs' threads once every worker is up). */
  threads: number;
  workers: Worker[];
  /** Resolves when every worker sits in its loop (nothing waits for it but tests). */
  ready: Promise<void>;
  /** GEMM blocks thread t (0: the caller's) has computed so far. */
  blocksRun(t: number): number;
}

/**
 * The threads wanted: HANDGRAD_WASM_THREADS when set (1 = the single-threaded module), else one per
 * core, at most WASM_MAX_THREADS.
 * @throws {RangeError} HANDGRAD_WASM_THREADS not an integer in [1, WASM_MAX_THREADS]
 */
export function wasmThreadsWanted(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.HANDGRAD_WASM_THREADS;
  if (text === undefined || text === '') return Math.min(availableParallelism(), WASM_MAX_THREADS);
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > WASM_MAX_THREADS) {
    throw new RangeError(`Expected an integer in [1, ${WASM_MAX_THREADS}] for HANDGRAD_WASM_THREADS but received ${JSON.stringify(text)}`);
  }
  return n;
}

/**
 * Whether this JS realm can share a wasm memory with workers: SharedArrayBuffer exists and the
 * engine makes a shared WebAssembly.Memory (a browser page that is not cross-origin isolated does
 * neither; Node does both).
 */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer !== 'function') return false;
  try {
    new (api().Memory)({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/** Reads one unsigned LEB128 at bytes[at.i], advancing at.i. */
function leb(bytes: Uint8Array, at: { i: number }): number {
  let n = 0;
  let scale = 1;
  for (;;) {
    const b = bytes[at.i++];
    n += (b & 0x7f) * scale;
    if (b < 0x80) return n;
    scale *= 128;
  }
}

/**
 * The initial pages the module's imported memory asks for (its import section), which the shared
 * memory made here must have at least: wasm-ld sizes it from the module's static data.
 */
export function importedMemoryPages(bytes: Uint8Array): number {
  const at = { i: 8 }; // past the magic and version
  const name = () => { const n = leb(bytes, at); at.i += n; };
  const limits = () => { const flags = bytes[at.i++]; const min = leb(bytes, at); if (flags & 1) leb(bytes, at); return min; };
  while (at.i < bytes.length) {
    const id = bytes[at.i++];
    const size = leb(bytes, at);
    const end = at.i + size;
    if (id === 2) {
      for (let k = leb(bytes, at); k > 0; k--) {
        name();
        name();
        const kind = bytes[at.i++];
        if (kind === 0) leb(bytes, at); // function: type index
        else if (kind === 1) { at.i++; limits(); } // table: element type, limits
        else if (kind === 2) return limits(); // memory
        else at.i += 2; // global: value type, mutability
      }
    }
    at.i = end;
  }
  throw new Error('the threaded wasm module imports no memory');
}

// A worker: its own instance of the module on the shared memory, its own stack, then workerLoop
// (which never returns). CommonJS eval code, so it runs the same from lib/ under a test runner and
// from dist/.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, thread } = workerData;
const x = new WebAssembly.Instance(module, { env: { memory, exp: Math.exp, log: Math.log, tanh: Math.tanh } }).exports;
x.__stack_pointer.value = x.workerStack(thread);
require('node:worker_threads').parentPort.postMessage('ready');
x.workerLoop(thread);
`;

/**
 * Instantiates the threaded module `bytes` on a new shared memory and starts threads − 1 workers
 * on it (asynchronously: the instance is usable at once).
 * @throws {Error} the module does not compile or link here (the caller falls back to handgrad.wasm)
 */
export function instantiateThreaded(bytes: Uint8Array, threads: number, onWorkerError: (e: Error) => void): ThreadedWasm {
  const wa = api();
  const memory = new wa.Memory({ initial: importedMemoryPages(bytes), maximum: MAX_PAGES, shared: true });
  const module = new wa.Module(bytes);
  const imports = { env: { memory, exp: Math.exp, log: Math.log, tanh: Math.tanh } };
  const x = new wa.Instance(module, imports).exports as ThreadExports;
  const engineExports: WasmExports = { ...x, memory };
  const n = Math.min(threads, WASM_MAX_THREADS);
  x.setThreads(n);
  const workers: Worker[] = [];
  const started: Promise<void>[] = [];
  let alive = n;
  for (let t = 1; t < n; t++) {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, thread: t } });
    w.unref(); // a parked worker never keeps the process alive
    w.on('error', (e) => {
      // The GEMMs stay right without it (the caller computes unclaimed blocks), only slower: cut
      // the blocks to the threads left, and say so.
      x.setThreads(--alive);
      onWorkerError(e);
    });
    workers.push(w);
    started.push(new Promise((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    }));
  }
  const ready = Promise.all(started).then(() => undefined);
  ready.catch(() => undefined); // a failed worker is reported by its 'error' listener above
  return { exports: engineExports, threads: n, workers, ready, blocksRun: (t) => x.threadBlocks(t) };
}

/** Loads `path`'s threaded module with `threads` threads; wraps failures as ERR_WASM_UNAVAILABLE. */
export function loadThreadedWasm(bytes: Uint8Array, path: string, threads: number): ThreadedWasm {
  try {
    return instantiateThreaded(bytes, threads, (e) => {
      process.emitWarning(`a wasm GEMM worker failed (${e.message}); the GEMMs go on with the threads left`, { code: 'HANDGRAD_WASM_WORKER' });
    });
  } catch (cause) {
    throw new HandgradError('ERR_WASM_UNAVAILABLE', `The threaded WebAssembly module at ${path} could not be loaded (${(cause as Error).message})`, { cause });
  }
}

// This thread's threaded instance, once load() chose it.
let current: ThreadedWasm | null = null;

/** The threads the wasm GEMMs use on this thread's instance: 1 until load(), or single-threaded. */
export function wasmThreads(): number {
  return current?.threads ?? 1;
}

/** The workers of this thread's threaded instance (none when single-threaded), for tests. */
export function wasmWorkers(): readonly Worker[] {
  return current?.workers ?? [];
}

/**
 * Lets this thread's wasm GEMMs use n threads (1: the caller alone), at most the threads started,
 * to compare the two in one process (bench/backends.ts); returns the count now in use.
 * @throws {RangeError} n not a positive integer
 */
export function setWasmThreads(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a positive integer for threads but received ${n}`);
  const c = current;
  if (!c) return 1;
  return (c.exports as ThreadExports).setThreads(Math.min(n, c.threads));
}

/** Resolves once every worker of this thread's instance is in its loop (at once when there are none). */
export function wasmWorkersReady(): Promise<void> {
  return current?.ready ?? Promise.resolve();
}

/** GEMM blocks each thread of this thread's instance has computed: [the caller's, worker 1's, …]; [] when single-threaded. */
export function wasmBlocksRun(): number[] {
  const c = current;
  return c ? Array.from({ length: c.threads }, (_, t) => c.blocksRun(t)) : [];
}

/**
 * lib/backends/wasm.ts load(): `path` (handgrad.wasm), or its threaded sibling handgrad-threads.wasm
 * when wasmThreadsWanted() > 1, SharedArrayBuffer exists and both files are there. A threaded build
 * that fails to load falls back to `path` with a process warning saying why.
 * @throws {HandgradError} ERR_WASM_UNAVAILABLE: `path` is not built or does not load
 * @throws {RangeError} a bad HANDGRAD_WASM_THREADS
 */
export function loadPreferringThreads(path: string): WasmExports {
  const threads = wasmThreadsWanted();
  const threadedPath = path.replace(/(\.wasm)?$/, '-threads.wasm');
  if (threads > 1 && sharedMemoryAvailable() && existsSync(path) && existsSync(threadedPath)) {
    try {
      current = loadThreadedWasm(readFileSync(threadedPath), threadedPath, threads);
      return current.exports;
    } catch (e) {
      process.emitWarning(`${(e as Error).message}; the single-threaded ${path} runs instead`, { code: 'HANDGRAD_WASM_THREADS' });
    }
  }
  return loadWasm(path);
}
