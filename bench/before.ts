// `--before=DIR`: another handgrad checkout, built (dist/, build/Release), whose own bench step
// (DIR/dist/bench/step.js measureStep: forwardBackward(params, X, y, { backend, inputGrad, out }),
// as this tree's bench/step.ts times it) is measured alternately with this tree's in the one-engine
// section. It runs in a child process of its own (two builds of the addon in one process would
// share nothing, but two libraries of the same name is asking for trouble), kept alive for the
// section so its JIT is as warm as ours; OPENBLAS_NUM_THREADS is handgrad's own thread count.
// E.g. the tree before the one-engine change, with its fused two-layer step:
//   git worktree add --detach /work/before f29bba6 && (cd /work/before && npm ci && node scripts/setup.mjs)
//   node dist/bench/run.js --before=/work/before
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Dims, Dtype } from '../lib/types';
import type { Budget, Timing } from './harness';

interface Request {
  dims: Dims;
  dtype: Dtype;
  backend: string;
  budget: Budget;
}
interface Reply {
  timing?: Timing;
  loss?: number;
  skipped?: string;
  error?: string;
}

/** The other tree's measurement, one window per call. */
export interface Before {
  dir: string;
  /** `git rev-parse --short HEAD` there (+dirty), or null. */
  commit: string | null;
  measure(dims: Dims, dtype: Dtype, backend: string, budget: Budget): Promise<Reply>;
  close(): void;
}

function commitOf(dir: string): string | null {
  try {
    const opts = { cwd: dir, encoding: 'utf8' as const, stdio: ['ignore', 'pipe', 'ignore'] as ['ignore', 'pipe', 'ignore'] };
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], opts).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return null;
  }
}

/**
 * Starts the child for DIR.
 * @throws {Error} DIR has no built bench (dist/bench/step.js)
 */
export function startBefore(dirArg: string, threads: number): Before {
  const dir = resolve(dirArg);
  const step = join(dir, 'dist', 'bench', 'step.js');
  if (!existsSync(step)) throw new Error(`--before=${dirArg}: ${step} not found (build that tree first: npm ci && node scripts/setup.mjs there)`);
  const child: ChildProcess = fork(__filename, [dir], {
    env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let pending: { resolve: (r: Reply) => void } | undefined;
  let exited: string | undefined;
  child.on('message', (m) => {
    const p = pending;
    pending = undefined;
    p?.resolve(m as Reply);
  });
  child.on('exit', (code, signal) => {
    exited = `the --before child exited (${code ?? signal})`;
    pending?.resolve({ error: exited });
    pending = undefined;
  });
  return {
    dir,
    commit: commitOf(dir),
    measure: (dims, dtype, backend, budget) =>
      exited !== undefined
        ? Promise.resolve({ error: exited })
        : new Promise<Reply>((res) => {
          pending = { resolve: res };
          child.send({ dims, dtype, backend, budget } satisfies Request);
        }),
    close: () => {
      if (exited === undefined) child.kill();
    },
  };
}

// The child: DIR's own bench step, one window per message.
if (require.main === module && process.send !== undefined) {
  const dir = process.argv[2];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { measureStep } = require(join(dir, 'dist', 'bench', 'step.js')) as typeof import('./step');
  process.on('message', (m: Request) => {
    const opts = { quick: false, step: m.budget, slowMinSamples: 3, slowBudgetS: 20, deep: { slowBudgetS: 12, slowMinSamples: 3 }, peakSizes: [], peakReps: 0 };
    measureStep(m.dims, m.backend as never, m.dtype, opts)
      .then((r) => process.send!({ timing: r.timing, loss: r.loss, skipped: r.skipped } satisfies Reply))
      .catch((e: unknown) => process.send!({ error: e instanceof Error ? e.message : String(e) } satisfies Reply));
  });
  process.on('disconnect', () => process.exit(0));
}
