// The C peer (bench/peers/c-openblas/mlp_peer.c): the same two-layer step in plain C on CBLAS with
// preallocated buffers, i.e. what OpenBLAS with nothing around it costs here. Built by the bench
// itself (make, or gcc directly where make is missing) into bench/peers/c-openblas/mlp_peer, which
// that folder's .gitignore ignores; run as a child process, one timing window per call, with
// OPENBLAS_NUM_THREADS set to handgrad's own thread count. A peer that does not build or run is
// reported as skipped with the reason: the bench never needs it to succeed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/binding';
import type { Dims, Dtype } from '../lib/types';

export const C_PEER_DIR = join(packageRoot, 'bench', 'peers', 'c-openblas');

export type CPeer = { path: string; skipped?: undefined } | { path?: undefined; skipped: string };

/** A failed command's first error line (else its last lines), on one line. */
function tail(s: string | undefined, lines = 3): string {
  const all = (s ?? '').trim().split('\n');
  const error = all.find((l) => /error|not found|no such/i.test(l));
  return (error ?? all.slice(-lines).join(' | ')).trim() || 'no output';
}

/**
 * Builds the peer (make's own staleness check: a second call costs a few ms).
 * @returns its path, or why it is skipped (no compiler, no OpenBLAS headers, …)
 */
export function buildCPeer(): CPeer {
  const out = join(C_PEER_DIR, 'mlp_peer');
  if (!existsSync(join(C_PEER_DIR, 'mlp_peer.c'))) return { skipped: `${join(C_PEER_DIR, 'mlp_peer.c')} not found` };
  const make = spawnSync('make', ['-s', '-C', C_PEER_DIR, 'mlp_peer'], { encoding: 'utf8', timeout: 120_000 });
  if (make.error === undefined) {
    if (make.status === 0 && existsSync(out)) return { path: out };
    return { skipped: `make -C bench/peers/c-openblas failed (needs gcc and libopenblas-dev): ${tail(make.stderr || make.stdout)}` };
  }
  // No make: the Makefile's own command line, with the header and library paths from pkg-config
  // where it exists (Debian's libopenblas-dev puts cblas.h under an openblas folder).
  const pc = (flag: string) => {
    const r = spawnSync('pkg-config', [flag, 'openblas'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim().split(/\s+/).filter(Boolean) : null;
  };
  const cflags = pc('--cflags') ?? [];
  const libs = pc('--libs') ?? ['-lopenblas'];
  const cc = process.env.CC || 'gcc';
  const args = ['-O3', '-march=native', '-std=gnu11', ...cflags, '-o', out, join(C_PEER_DIR, 'mlp_peer.c'), ...libs, '-lm'];
  const gcc = spawnSync(cc, args, { encoding: 'utf8', timeout: 120_000 });
  if (gcc.error !== undefined) return { skipped: `neither make nor ${cc} could be run (${gcc.error.message})` };
  if (gcc.status !== 0 || !existsSync(out)) return { skipped: `${cc} failed (needs libopenblas-dev): ${tail(gcc.stderr)}` };
  return { path: out };
}

/** One window of the peer, as it prints it (µs per step: median and min of its batched samples). */
export interface CPeerRun {
  medianUs: number;
  minUs: number;
  gflops: number;
  samples: number;
  /** OpenBLAS threads the peer ran with (openblas_get_num_threads()). */
  threads: number;
  /** The peer's own data (uniform inputs, labels i % C), so not comparable with handgrad's loss. */
  loss: number;
}

/**
 * Runs the peer once: its own 0.3 s warm-up, then `budgetS` of samples (at least 5).
 * @throws {Error} the peer failed or printed something unexpected
 */
export function runCPeer(path: string, dims: Dims, dtype: Dtype, budgetS: number, threads: number): CPeerRun {
  const args = [dtype === 'float64' ? 'f64' : 'f32', `${dims.B},${dims.D},${dims.H},${dims.C}`, String(budgetS)];
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  const r = spawnSync(path, args, { encoding: 'utf8', env, timeout: Math.ceil(60_000 + budgetS * 4e3) });
  if (r.error !== undefined) throw new Error(`c-openblas: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`c-openblas exited with ${r.status ?? r.signal}: ${tail(r.stderr)}`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`c-openblas printed ${JSON.stringify(line.slice(0, 200))}, not JSON`);
  }
  const num = (k: string) => {
    const x = j[k];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`c-openblas: ${k} = ${JSON.stringify(x)} in ${line}`);
    return x;
  };
  return { medianUs: num('median_us'), minUs: num('min_us'), gflops: num('gflops'), samples: num('samples'), threads: num('threads'), loss: num('loss') };
}
