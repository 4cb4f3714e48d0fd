// Faults in a data-parallel job (issue 16, item 4): local jobs of 2–3 ranks on 127.0.0.1
// (test/fixtures/distributed/fault-rank.mjs; every rank a child process SIGKILLed if it outlives
// its bound; ports picked free). A rank that dies (SIGKILL) or hangs mid-epoch makes every other
// rank's fit (fitSync, and fit in its worker) reject with ERR_DISTRIBUTED within the group's
// timeoutMs, saying after which step it stopped and which collective failed; rank 0's last
// checkpoint (fit's checkpoint option: every k steps, and once more when the fit fails) loads, and
// a new job on a new port started from it — new processes, or the surviving one in a new group —
// ends on the bits of a job never interrupted (the truth: that job, run separately). At an
// epoch boundary the job may go on with another world size (held to the single-process run with
// each epoch's full batch, as test/52); a mid-epoch checkpoint on another world size is refused
// on every rank, naming both sizes. `handgrad launch --max-restarts` starts the whole set again
// on a fresh port after a failure and the script resumes from its checkpoint.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as hg from '../lib/index';
import { Rng, Sequential, Trainer } from '../lib/index';
import { shuffleSeed } from '../lib/train/loop';
import { distributedSkip, freePort, runBounded } from './helpers';
// @ts-expect-error: a plain ES module shared with the ranks
import { mlp, rows, D } from './fixtures/distributed/mlp-data.mjs';

const RANK = join(__dirname, 'fixtures', 'distributed', 'fault-rank.mjs');
const CLI = join(__dirname, '..', 'dist', 'lib', 'cli.js');

const skip = distributedSkip();
const title = (t: string) => (skip === null ? t : `${t} (skipped: ${skip})`);

interface Line {
  rank: number; event?: 'saved' | 'fault'; steps?: number; at?: number; fault?: string;
  worldSize?: number; restart?: number; resumed?: boolean; from?: number; epochs?: number; hash?: string; w?: Record<string, number[]>;
  code?: string; name?: string; message?: string; failedAt?: number;
}

interface Exit { rank: number; code: number | null; signal: NodeJS.Signals | null; killedByTest: boolean; stderr: string; lines: Line[]; end?: Line }

const parse = (stdout: string): Line[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

/** Rank `rank` of a W-rank job of fault-rank.mjs on `port`, SIGKILLed after limitMs; `started` sees the child. */
function spawnRank(rank: number, W: number, port: number, env: NodeJS.ProcessEnv, limitMs: number, started?: (c: ChildProcess) => void): Promise<Exit> {
  const e = { RANK: String(rank), WORLD_SIZE: String(W), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...env };
  return runBounded(process.execPath, [RANK], e, limitMs, started).then(({ code, signal, killedByTest, stderr, stdout }) => {
    const lines = parse(stdout);
    return { rank, code, signal, killedByTest, stderr, lines, end: lines.find((l) => l.event === undefined) };
  });
}

/**
 * W ranks of fault-rank.mjs with HG_* settings on a fresh port; each SIGKILLed after limitMs.
 * `started` sees every child (to stop a hung one).
 */
async function job(W: number, env: NodeJS.ProcessEnv, limitMs = 60_000, started?: (rank: number, c: ChildProcess) => void): Promise<Exit[]> {
  const port = await freePort();
  return Promise.all(Array.from({ length: W }, (_, rank) => spawnRank(rank, W, port, env, limitMs, started && ((c) => started(rank, c)))));
}

/** The 3-epoch job's settings, and a checkpoint path in a fresh folder. */
function threeEpochJob(): { base: NodeJS.ProcessEnv; dir: string; ckpt: string } {
  const dir = mkdtempSync(join(tmpdir(), 'hg54-'));
  return { base: { HG_N: String(N), HG_B: String(B), HG_EPOCHS: '3', HG_TIMEOUT_MS: '10000' }, dir, ckpt: join(dir, 'job.safetensors') };
}

/** The 3-epoch job on 2 ranks, uninterrupted: the bits a job that failed and resumed must end on. */
async function uninterrupted(base: NodeJS.ProcessEnv): Promise<Exit[]> {
  const whole = await job(2, base);
  for (const e of whole) expect(e.code, show(e)).toBe(0);
  return whole;
}

const show = (e: Exit) => `rank ${e.rank}: code ${e.code} signal ${e.signal}\n${e.stderr}${JSON.stringify(e.lines).slice(0, 2000)}`;

/** A checkpoint's __metadata__ (a safetensors header). */
function metadataOf(path: string): Record<string, string> {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return (JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as { __metadata__: Record<string, string> }).__metadata__;
}

const N = 37; // not a multiple of 2 or 3: the sampler pads
const B = 4;

describe('fit\'s checkpoint option (one process)', () => {
  it('saves every k steps (fitSync exactly; fit a whole step at or after it) or after each epoch; the file resumes to the bits of an uninterrupted run; bad options are errors naming them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg54-'));
    const path = join(dir, 'ck.safetensors');
    const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
    const fresh = () => new Trainer(mlp(hg, 8, 100) as Sequential, { batchSize: B, seed: 7, optimizer: 'adam', lr: 0.01 });
    const whole = fresh();
    whole.fitSync(X, y, { epochs: 3 }); // 10 steps an epoch
    let seen = 0;
    const t = fresh();
    // The caller's events keep their rhythm (every 4th step and each epoch's last) while the checkpoint listens to every step.
    t.fitSync(X, y, { epochs: 2, checkpoint: { path, every: 7 }, progressEvery: 4, callbacks: { onStep: (e) => (seen++, expect(e.step % 4 === 0 || e.step === e.steps).toBe(true)) } });
    expect(seen).toBe(2 * 3);
    expect(metadataOf(path)).toMatchObject({ steps: '14' });
    const resumed = Trainer.load(path) as Trainer<Sequential>;
    resumed.fitSync(X, y, { epochs: 2 }); // the rest of epoch 2, then epoch 3
    expect(resumed.steps).toBe(30);
    for (const k of Object.keys(whole.params)) expect(Array.from(resumed.params[k])).toEqual(Array.from((whole.params as Record<string, Float64Array>)[k]));
    const a = fresh();
    await a.fit(X, y, { epochs: 2, checkpoint: { path, every: 3 } });
    expect(Number(metadataOf(path).steps)).toBeGreaterThanOrEqual(18);
    const e = fresh();
    e.fitSync(X, y, { epochs: 2, checkpoint: { path } });
    expect(metadataOf(path)).toMatchObject({ steps: '20', epochs: '2' });
    expect(() => fresh().fitSync(X, y, { checkpoint: { path, evry: 3 } as never })).toThrow(/Expected no option 'evry' for opts\.checkpoint \(did you mean 'every'\?\)/);
    expect(() => fresh().fitSync(X, y, { checkpoint: { path, every: 0 } })).toThrow(RangeError);
    expect(() => fresh().fitSync(X, y, { checkpoint: { path: '' } })).toThrow(RangeError);
    expect(() => fresh().fitSync(X, y, { checkpoint: path as never })).toThrow(TypeError);
    expect(() => fresh().fitSync(X, y, { checkpoint: { path: join(dir, 'no', 'such', 'folder', 'ck') }, epochs: 1 })).toThrow(/ERR_FILE|Expected a writable path/);
  }, 60_000);
});

describe.skipIf(skip !== null)(title('a rank dies mid-epoch: the others\' fit rejects, the checkpoint loads, a new job resumes from it'), () => {
  // Rank 0 checkpoints every 3 steps (fit's checkpoint option). fitSync: rank 1 dies after step 7 of
  // 15; rank 0, whose step 8 fails, saves step 7 once more. fit (its worker): rank 0 of 3 — the
  // store's host — dies on the first step event at or after step 22 of 120 (the worker may be a
  // step or more ahead of the events rank 0 saves and dies on: whatever whole step the file holds,
  // the resumed job must end on the uninterrupted job's bits).
  it.each([
    ['sync', 2, 1, 7, 3],
    ['async', 3, 0, 22, 30],
  ] as const)('fit (%s), %i ranks, rank %i SIGKILLed after step %i', async (fit, W, faultRank, faultStep, epochs) => {
    const dir = mkdtempSync(join(tmpdir(), 'hg54-'));
    const ckpt = join(dir, 'job.safetensors');
    const timeoutMs = 10_000;
    const base = { HG_N: String(N), HG_B: String(B), HG_EPOCHS: String(epochs), HG_FIT: fit, HG_TIMEOUT_MS: String(timeoutMs), HG_OPTS: JSON.stringify({ optimizer: 'adam', lr: 0.01 }) };
    const whole = await job(W, base);
    for (const e of whole) expect(e.code, show(e)).toBe(0);
    const stepsInAll = epochs * Math.ceil(Math.ceil(N / W) / B);
    expect(whole[0].end!.steps).toBe(stepsInAll);

    // (a) The fault.
    const faulted = await job(W, { ...base, HG_CKPT: ckpt, HG_EVERY: '3', HG_FAULT: 'die', HG_FAULT_RANK: String(faultRank), HG_FAULT_STEP: String(faultStep) });
    const dead = faulted[faultRank];
    expect(dead.signal, show(dead)).toBe('SIGKILL');
    expect(dead.killedByTest).toBe(false);
    const at = dead.lines.find((l) => l.event === 'fault')!.at!;
    for (const e of faulted.filter((x) => x.rank !== faultRank)) {
      expect(e.killedByTest, show(e)).toBe(false);
      expect(e.code, show(e)).toBe(3); // fit rejected; the process went on and exited on its own
      expect(e.end).toMatchObject({ code: 'ERR_DISTRIBUTED', name: 'HandgradError' });
      // Where it stopped (a whole step, mid-epoch), then the collective and what Gloo saw.
      expect(e.end!.message).toMatch(new RegExp(`^fit stopped after step (\\d+) \\(epoch \\d+(, \\d+ of this rank's rows done| complete)\\), the Trainer holding that step's weights: allReduce failed on rank ${e.rank} of ${W} \\(a rank died, was stopped, or did not reach the same call within ${timeoutMs} ms\\): .*(peer|Connection)`));
      const stoppedAfter = Number(/^fit stopped after step (\d+)/.exec(e.end!.message!)![1]);
      expect(stoppedAfter).toBeGreaterThanOrEqual(faultStep);
      expect(stoppedAfter).toBeLessThan(stepsInAll);
      const elapsed = e.end!.failedAt! - at;
      expect(elapsed).toBeLessThan(timeoutMs + 2000);
      if (process.env.HG_SHOW_TIMES) console.info(`${fit}: rank ${e.rank} failed ${elapsed} ms after rank ${faultRank} died`);
    }
    // Rank 0's last checkpoint: whole (no temporary file left beside it), a mid-epoch position of W ranks, loadable.
    expect(readdirSync(dir)).toEqual(['job.safetensors']);
    const meta = metadataOf(ckpt);
    const saved = Number(meta.steps);
    if (fit === 'sync') expect(saved).toBe(7); // the failure's save: no step lost
    // fit: the events that save and kill lag the worker (a save's write lets it run on), so the
    // last file may be a few steps short of the death; it is still a whole step of this job.
    expect(saved).toBeGreaterThanOrEqual(fit === 'sync' ? 7 : 3);
    expect(saved).toBeLessThan(stepsInAll);
    const loaded = Trainer.load(ckpt);
    expect(loaded.steps).toBe(saved);
    if (meta.position !== undefined) expect(JSON.parse(meta.position).ranks).toBe(W);

    // (b) A new job (new port, new processes) from the checkpoint ends on the uninterrupted job's bits.
    const resumed = await job(W, { ...base, HG_CKPT: ckpt, HG_RESUME: '1' });
    for (const e of resumed) {
      expect(e.code, show(e)).toBe(0);
      expect(e.end).toMatchObject({ resumed: true, from: saved, steps: stepsInAll, epochs });
      expect(e.end!.hash).toBe(whole[0].end!.hash);
      expect(e.end!.w).toEqual(whole[0].end!.w);
    }
  }, 180_000);
});

describe.skipIf(skip !== null)(title('the surviving process joins a new group'), () => {
  it('rank 1 dies; rank 0 leaves the dead group (destroy), joins a new one on another port with a new rank 1, loads its checkpoint and ends on the uninterrupted job\'s bits', async () => {
    const { base, ckpt } = threeEpochJob();
    const whole = await uninterrupted(base);
    const [port, again] = [await freePort(), await freePort()];
    const env = { ...base, HG_CKPT: ckpt, HG_EVERY: '3', HG_FAULT: 'die', HG_FAULT_STEP: '7' };
    const survivor = spawnRank(0, 2, port, { ...env, HG_REJOIN_PORT: String(again) }, 60_000);
    const dead = await spawnRank(1, 2, port, env, 60_000);
    expect(dead.signal, show(dead)).toBe('SIGKILL');
    // A new process takes rank 1's place in the new group and loads the same file.
    const [zero, one] = await Promise.all([survivor, spawnRank(1, 2, again, { ...base, HG_CKPT: ckpt, HG_RESUME: '1' }, 60_000)]);
    expect(zero.code, show(zero)).toBe(0);
    expect(zero.lines[0]).toMatchObject({ code: 'ERR_DISTRIBUTED' });
    expect(zero.lines[1]).toMatchObject({ rejoined: true, from: 7, steps: whole[0].end!.steps, hash: whole[0].end!.hash });
    expect(one.code, show(one)).toBe(0);
    expect(one.end).toMatchObject({ resumed: true, from: 7, hash: whole[0].end!.hash });
  }, 120_000);
});

describe.skipIf(skip !== null)(title('a hung rank fails the others within timeoutMs'), () => {
  // fitSync: rank 1's thread sleeps between two steps (its peers wait in the next all-reduce).
  // fit: rank 1's process is stopped (SIGSTOP), its worker with it. The test kills it once the others have failed.
  it.each([
    ['sync', 'hang'],
    ['async', 'stop'],
  ] as const)('fit (%s): rank 1 stops answering (%s) after step 7', async (fit, fault) => {
    const timeoutMs = 3000;
    const children: ChildProcess[] = [];
    // Rank 1 is killed by the test as soon as rank 0 has given up.
    const [zero, one] = await job(2, { HG_N: String(N), HG_B: String(B), HG_EPOCHS: '40', HG_FIT: fit, HG_TIMEOUT_MS: String(timeoutMs), HG_FAULT: fault, HG_FAULT_STEP: '7', HG_HANG_MS: '60000' }, 40_000, (r, c) => {
      children[r] = c;
      if (r === 0) c.once('close', () => children[1]?.kill('SIGKILL'));
    });
    expect(zero.killedByTest, show(zero)).toBe(false);
    expect(zero.code, show(zero)).toBe(3);
    expect(one.signal).toBe('SIGKILL');
    const at = one.lines.find((l) => l.event === 'fault')!.at!;
    expect(zero.end).toMatchObject({ code: 'ERR_DISTRIBUTED', name: 'HandgradError' });
    expect(zero.end!.message).toMatch(/^fit stopped after step \d+ \(epoch \d+, \d+ of this rank's rows done\), the Trainer holding that step's weights: allReduce failed on rank 0 of 2 \(a rank died, was stopped, or did not reach the same call within 3000 ms\)/);
    const elapsed = zero.end!.failedAt! - at;
    if (process.env.HG_SHOW_TIMES) console.info(`${fit}: rank 0 failed ${elapsed} ms after rank 1 stopped answering`);
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 500); // a timeout, not a closed connection
    expect(elapsed).toBeLessThan(timeoutMs + 2000);
  }, 60_000);
});

/**
 * The single-process run with each epoch's full batch (test/52's reference): epoch e in
 * DistributedSampler's padded order for worldSizes[e−1] ranks, batches of W·B rows.
 */
function reference(worldSizes: number[]): Trainer<Sequential> {
  const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
  let t = new Trainer(mlp(hg, 8, 100) as Sequential, { batchSize: worldSizes[0] * B, seed: 7 });
  worldSizes.forEach((W, i) => {
    if (i > 0 && W !== worldSizes[i - 1]) t = Trainer.load(t.save(), { batchSize: W * B }) as Trainer<Sequential>;
    const perm = Int32Array.from({ length: N }, (_, r) => r);
    new Rng(shuffleSeed(7, i + 1)).shuffle(perm);
    const S = Math.ceil(N / W);
    const padded = Int32Array.from({ length: S * W }, (_, p) => perm[p % N]);
    const Xe = new Float64Array(padded.length * D);
    padded.forEach((r, j) => Xe.set(X.subarray(r * D, r * D + D), j * D));
    t.fitSync(Xe, Int32Array.from(padded, (r) => y[r]), { epochs: 1, shuffle: false });
  });
  return t;
}

describe.skipIf(skip !== null)(title('resuming on another world size'), () => {
  it('at an epoch boundary: 2 ranks fail at the end of epoch 2, 3 ranks go on from there (the full-batch run to rounding); mid-epoch: refused on every rank, naming both sizes', async () => {
    const { base, dir } = threeEpochJob();
    const boundary = join(dir, 'boundary.safetensors');
    const mid = join(dir, 'mid.safetensors');
    // 5 steps an epoch on 2 ranks: saved after steps 5 and 10 (epoch boundaries); rank 1 dies after
    // step 10, and rank 0's epoch record fails (its save after the failure is the same epoch boundary).
    const a = await job(2, { ...base, HG_CKPT: boundary, HG_EVERY: '5', HG_FAULT: 'die', HG_FAULT_STEP: '10' });
    expect(a[0].end!.message).toMatch(/^fit stopped after step 10 \(epoch 2 complete\), the Trainer holding that step's weights: allReduce failed on rank 0 of 2 /);
    expect(a[1].signal, show(a[1])).toBe('SIGKILL');
    expect(metadataOf(boundary)).toMatchObject({ steps: '10', epochs: '2' });
    expect(metadataOf(boundary).position).toBeUndefined();
    const b = await job(3, { ...base, HG_CKPT: boundary, HG_RESUME: '1' });
    for (const e of b) expect(e.code, show(e)).toBe(0);
    for (const e of b) expect(e.end!.hash).toBe(b[0].end!.hash);
    expect(b[0].end).toMatchObject({ resumed: true, from: 10, epochs: 3, steps: 10 + Math.ceil(Math.ceil(N / 3) / B) });
    // float64: one rounding per rank and per sum away from the full-batch run (test/52's bound).
    const ref = reference([2, 2, 3]);
    let worst = 0;
    for (const k of Object.keys(ref.params)) {
      const got = b[0].end!.w![k];
      ref.params[k].forEach((x, i) => (worst = Math.max(worst, Math.abs(got[i] - x) / Math.max(1, Math.abs(x)))));
    }
    expect(worst).toBeLessThan(1e-14);
    // Mid-epoch (saved after step 7, in epoch 2 of 2 ranks): 3 ranks refuse it, every one, naming both.
    const c = await job(2, { ...base, HG_CKPT: mid, HG_EVERY: '3', HG_FAULT: 'die', HG_FAULT_STEP: '7' });
    expect(c[1].signal, show(c[1])).toBe('SIGKILL');
    expect(JSON.parse(metadataOf(mid).position)).toMatchObject({ ranks: 2, epoch: 2 });
    const d = await job(3, { ...base, HG_CKPT: mid, HG_RESUME: '1' }, 30_000);
    for (const e of d) {
      expect(e.killedByTest, show(e)).toBe(false);
      expect(e.end).toMatchObject({ name: 'RangeError' });
      expect(e.end!.message).toMatch(/^Expected the epoch in progress to resume on 2 ranks \(it stopped after \d+ rows of a 2-rank shard\) but this fit runs on 3/);
    }
  }, 120_000);
});

describe.skipIf(skip !== null)(title('handgrad launch --max-restarts'), () => {
  it('a rank that dies on the first attempt: the set starts again on a new port, resumes from the checkpoint, and ends on the uninterrupted run\'s bits', async () => {
    const { base, dir, ckpt } = threeEpochJob();
    const whole = await uninterrupted(base);
    const launch = (args: string[], env: NodeJS.ProcessEnv) => runBounded(process.execPath, [CLI, 'launch', ...args, RANK], { ...base, ...env }, 90_000);
    const fault = { HG_CKPT: ckpt, HG_RESUME: '1', HG_EVERY: '3', HG_FAULT: 'die', HG_FAULT_STEP: '7', HG_FAULT_ONCE: '1' };
    const r = await launch(['--nproc', '2', '--max-restarts', '1'], fault);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('handgrad launch: rank 1 was killed by SIGKILL; stopping the other ranks (SIGTERM in 2 s unless they end first)');
    expect(r.stderr).toMatch(/handgrad launch: restarting all 2 ranks on MASTER_PORT=\d+ \(restart 1 of 1, HANDGRAD_RESTART_COUNT=1\)/);
    const lines = parse(r.stdout);
    // Rank 0's fit rejects and saves step 7 within the launch's grace (before its SIGTERM).
    const first = lines.filter((l) => l.restart === 0 && l.event === undefined);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ rank: 0, code: 'ERR_DISTRIBUTED', steps: 7 });
    const ends = lines.filter((l) => l.restart === 1);
    expect(ends.map((l) => l.rank).sort()).toEqual([0, 1]);
    for (const l of ends) {
      expect(l).toMatchObject({ resumed: true, from: 7, steps: whole[0].end!.steps });
      expect(l.hash).toBe(whole[0].end!.hash);
    }
    // Without restarts (the default) the same fault is the launch's failure; a fault on every
    // attempt gives up after 1 + max-restarts of them.
    const none = await launch(['--nproc', '2'], { ...fault, HG_CKPT: join(dir, 'other.safetensors') });
    expect(none.code).toBe(128 + 9);
    expect(none.stderr).not.toContain('restarting');
    const always = await launch(['--nproc', '2', '--max-restarts', '1'], { ...fault, HG_FAULT_ONCE: '0', HG_CKPT: join(dir, 'always.safetensors') });
    expect(always.code).toBe(128 + 9);
    expect(always.stderr.match(/restarting all 2 ranks/g)).toHaveLength(1);
    expect(always.stderr).toContain('handgrad launch: rank 1 failed on the last of 2 attempts (--max-restarts 1); giving up');
    expect(existsSync(join(dir, 'always.safetensors'))).toBe(true);
  }, 180_000);

  it('--max-restarts takes a whole number; a misspelling is a did-you-mean', async () => {
    const run = (args: string[]) => runBounded(process.execPath, [CLI, 'launch', ...args], {}, 20_000);
    expect((await run(['--nproc', '1', '--max-restarts', '-1', RANK])).stderr).toMatch(/--max-restarts/);
    expect((await run(['--nproc', '1', '--max-restarts', '1.5', RANK])).stderr).toMatch(/Expected an integer in \[0, 1000\] for --max-restarts but received/);
    expect((await run(['--nproc', '1', '--max-restart', '1', RANK])).stderr).toMatch(/did you mean '--max-restarts'/);
  }, 30_000);
});
