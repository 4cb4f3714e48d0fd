// Which backends can run here, found at run time: every name lib/ accepts is tried on a tiny
// problem in each dtype, so a backend that lib/ gains later (torch, wasm) joins the table by itself.
import { HandgradError } from '../lib/errors';
import { forwardBackward } from '../lib/model';
import type { BackendName, Dtype } from '../lib/types';
import { BACKENDS } from '../lib/validate';
import { makeProblem } from './sizes';

export const DTYPES: readonly Dtype[] = ['float64', 'float32'];

export interface Availability {
  backend: BackendName;
  dtype: Dtype;
  available: boolean;
  /** Why not, when unavailable (the backend's own message). */
  note?: string;
}

function probe(backend: BackendName, dtype: Dtype): Availability {
  const p = makeProblem({ B: 2, D: 3, H: 4, C: 2 }, dtype);
  try {
    const { loss } = forwardBackward(p.params, p.X, p.y, { backend, inputGrad: true, out: p.out });
    if (!Number.isFinite(loss)) return { backend, dtype, available: false, note: `returned a non-finite loss (${loss})` };
    return { backend, dtype, available: true };
  } catch (e) {
    const code = e instanceof HandgradError ? `${e.code}: ` : '';
    const message = e instanceof Error ? e.message : String(e);
    return { backend, dtype, available: false, note: `${code}${message}` };
  }
}

/** Every (backend, dtype) pair lib/ knows, with whether it runs on this machine. */
export function discoverBackends(): Availability[] {
  return BACKENDS.flatMap((b) => DTYPES.map((d) => probe(b, d)));
}

// ---- the wasm backend against native, GEMM by GEMM (`node dist/bench/backends.js [rounds]`) -----
// The three GEMMs of a (256,784,1024,10) step and the step itself, in both dtypes, on native with
// 1 and 2 OpenBLAS threads and on wasm with 1 thread and its worker pool (lib/engine/wasm-threads.ts),
// all in this process and alternated round by round; the minimum of each over the rounds (the
// machine may be shared: the fastest round is the one least disturbed).

/** Runs f once, then `reps` times; the fastest call in ms. */
function fastestMs(f: () => void, reps: number): number {
  f();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Prints GFLOP/s and ratios of wasm (1 thread, pool) to native (1, 2 threads) after `rounds` alternated rounds. */
export async function reportWasmRates(rounds: number): Promise<void> {
  const { coreBinding } = await import('../lib/binding');
  const { load, align, ensureMemory } = await import('../lib/backends/wasm');
  const { setWasmThreads, wasmThreads, wasmWorkersReady } = await import('../lib/engine/wasm-threads');
  const { stepFlop } = await import('./sizes');
  const core = coreBinding();
  const w = load();
  await wasmWorkersReady();
  const pool = wasmThreads();
  const dims = { B: 256, D: 784, H: 1024, C: 10 };
  // [label, transA, transB, M, N, K]: the forward, dW1 and dX products of that step.
  const gemms = [['X·W1', false, false, 256, 1024, 784], ['Xᵀ·dZ1', true, false, 784, 1024, 256], ['dZ1·W1ᵀ', false, true, 256, 784, 1024]] as const;
  const engines = [['native 1', 1], ['native 2', 2], ['wasm 1', 1], [`wasm ${pool}`, pool]] as const;
  const best = new Map<string, number>();
  const keep = (k: string, ms: number) => best.set(k, Math.min(best.get(k) ?? Infinity, ms));
  for (let r = 0; r < rounds; r++) {
    for (const dtype of DTYPES) {
      const F = dtype === 'float64' ? Float64Array : Float32Array;
      for (const [label, tA, tB, M, N, K] of gemms) {
        const A = new F(M * K).map((_, i) => Math.sin(i));
        const B = new F(K * N).map((_, i) => Math.cos(i));
        const C = new F(M * N);
        const pA = align(w.__heap_base.value);
        const pB = align(pA + A.byteLength);
        const pC = align(pB + B.byteLength);
        ensureMemory(w, pC + C.byteLength, 'the wasm rates');
        new F(w.memory.buffer, pA, A.length).set(A);
        new F(w.memory.buffer, pB, B.length).set(B);
        const wasmGemm = dtype === 'float64' ? w.gemmF64 : w.gemmF32;
        for (const [name, threads] of engines) {
          const f = name.startsWith('native')
            ? (core.setNumThreads(threads), () => core.gemm(tA, tB, M, N, K, 1, A, B, 0, C))
            : (setWasmThreads(threads), () => wasmGemm(+tA, +tB, M, N, K, 1, pA, tA ? M : K, pB, tB ? K : N, 0, pC, N));
          keep(`${dtype}|${label} ${M}×${N}×${K}|${name}`, fastestMs(f, 4));
        }
      }
      const p = makeProblem(dims, dtype);
      for (const [name, threads] of engines) {
        const backend = name.startsWith('native') ? 'native' : 'wasm';
        if (backend === 'native') core.setNumThreads(threads);
        else setWasmThreads(threads);
        keep(`${dtype}|step (256,784,1024,10)|${name}`, fastestMs(() => forwardBackward(p.params, p.X, p.y, { backend, inputGrad: true, out: p.out }), 4));
      }
    }
  }
  core.setNumThreads(2);
  setWasmThreads(pool);
  const rows = new Map<string, Map<string, number>>();
  for (const [k, ms] of best) {
    const [dtype, what, name] = k.split('|');
    const row = `${dtype} ${what}`;
    if (!rows.has(row)) rows.set(row, new Map());
    rows.get(row)!.set(name, ms);
  }
  process.stdout.write(`wasm against native, minima of ${rounds} alternated rounds (GFLOP/s; wasm pool: ${pool} threads)\n`);
  for (const [row, by] of rows) {
    const m = row.match(/(\d+)×(\d+)×(\d+)/);
    const flop = m ? 2 * Number(m[1]) * Number(m[2]) * Number(m[3]) : stepFlop(dims);
    const gf = (name: string) => (flop / by.get(name)! / 1e6).toFixed(1);
    const ratio = (a: string, b: string) => (by.get(a)! / by.get(b)!).toFixed(2);
    process.stdout.write(`${row.padEnd(38)} ${engines.map(([n]) => `${n} ${gf(n)}`).join(' | ')} | time wasm 1÷native 1 ${ratio('wasm 1', 'native 1')}, wasm ${pool}÷native 2 ${ratio(`wasm ${pool}`, 'native 2')}\n`);
  }
}

if (require.main === module) {
  const rounds = Number(process.argv[2] ?? 5);
  reportWasmRates(Number.isInteger(rounds) && rounds > 0 ? rounds : 5).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
}
