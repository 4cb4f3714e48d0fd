// Process groups from Node (lib/distributed, native/torch/distributed): local jobs of 2–4 ranks on
// 127.0.0.1, each rank a child process (test/fixtures/distributed/rank.mjs) killed if it outlives
// its bound. The results are checked exactly against plain arithmetic (the fixture's values are
// exact in float32, so every sum and power-of-two average is too), against PyTorch Python ranks in
// the same job, and the faults: mismatched worldSize/check/lengths, a killed rank, a hung rank,
// `handgrad launch`'s exit codes and signals.
import { type ChildProcess, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { distributed, HandgradError } from '../lib/index';
import { type BoundedExit, distributedSkip, freePort, runBounded, thrown } from './helpers';

const ROOT = join(__dirname, '..');
const RANK = join(__dirname, 'fixtures', 'distributed', 'rank.mjs');
const RANK_PY = join(__dirname, 'fixtures', 'distributed', 'rank.py');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const PYTHON = '/usr/bin/python3';

function pythonSkip(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found (apt install python3-torch)`;
  const r = spawnSync(PYTHON, ['-c', 'import torch.distributed as d; assert d.is_gloo_available()'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${PYTHON} has no torch with gloo (apt install python3-torch)`;
}
const skip = distributedSkip();
const skipPython = skip ?? pythonSkip();
const title = (t: string, why: string | null) => (why === null ? t : `${t} (skipped: ${why})`);


type Exit = BoundedExit;
const run = runBounded;

type Line = Record<string, unknown> & { rank: number };
const lines = (e: Exit): Line[] => e.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);

/** A job of `kinds.length` ranks (rank r runs kinds[r]: 'node' → rank.mjs MODE, 'python' → rank.py), each bounded by limitMs. */
async function job(kinds: ('node' | 'python')[], mode: string, limitMs: number, env: (rank: number) => NodeJS.ProcessEnv = () => ({})): Promise<Exit[]> {
  const port = await freePort();
  return Promise.all(kinds.map((kind, rank) => {
    const e = { RANK: String(rank), WORLD_SIZE: String(kinds.length), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...env(rank) };
    return kind === 'node' ? run(process.execPath, [RANK, mode], e, limitMs) : run(PYTHON, [RANK_PY], e, limitMs);
  }));
}

// The fixture's values (rank.mjs and rank.py compute the same), and what each collective must give.
const value = (r: number, i: number, salt: number) => ((i * 7 + salt) % 13) * 0.25 + r * 1.5 - 3;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sumOver = (W: number, n: number, salt: number) => range(n).map((i) => range(W).reduce((s, r) => s + value(r, i, salt), 0));
function expected(W: number) {
  return {
    f32: sumOver(W, 1000, 1),
    a: sumOver(W, 300, 2).map((s) => s / W),
    b: sumOver(W, 5, 3).map((s) => s / W),
    i32: range(17).map((i) => Math.max(...range(W).map((r) => (i * 31 + r * 5) % 23))),
    bc: range(64).map((i) => value(W - 1, i, 4)),
    gathered: range(W).flatMap((r) => [String(r * 10 + 1), String(-(2n ** 40n) - BigInt(r))]),
    bc64: String(2n ** 62n + 3n),
  };
}

function expectCollectives(out: Line, W: number): void {
  const want = expected(W);
  for (const k of ['f32', 'a', 'b', 'i32', 'bc', 'gathered', 'bc64'] as const) expect(out[k], `${k} on rank ${out.rank}`).toEqual(want[k]);
}

describe.skipIf(skip !== null)(title('distributed: local jobs of Node ranks', skip), () => {
  it.each([2, 4])('%i ranks: allReduce sum/avg/max, broadcast, allGather, int64, small buckets, the blocking form and a worker_thread, exactly', async (W) => {
    const exits = await job(Array(W).fill('node'), 'collectives', 60_000);
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    const outs = exits.map((e) => lines(e)[0]);
    for (const out of outs) {
      expectCollectives(out, W);
      expect(out.info).toMatchObject({ rank: out.rank, worldSize: W, localRank: out.rank, masterAddr: '127.0.0.1', allHandgrad: true, verifiesCalls: true });
      expect(out.many).toEqual([[10, 5], [7, 6], [20, 7]].map(([n, salt]) => sumOver(W, n, salt)));
      // The worker averaged [r + 0.5, 10r] over the ranks.
      const mean = (f: (r: number) => number) => range(W).reduce((s, r) => s + f(r), 0) / W;
      expect(out.worker).toEqual({ initialized: true, rank: out.rank, g: [mean((r) => r + 0.5), mean((r) => 10 * r)] });
      expect(out.nan).toMatch(/^RangeError: Expected finite values after allReduce but received NaN at index 0/);
      expect(out.after).toBe((W * (W - 1)) / 2);
      if (out.rank === 0) expect(out.ticks).toBeGreaterThan(10);
    }
  });

  it('mismatched worldSize or check fails every rank at once, naming both values', async () => {
    const ws = await job(['node', 'node'], 'join', 30_000, (r) => ({ HG_WORLD_SIZE: r === 0 ? '2' : '3', HG_TIMEOUT_MS: '20000' }));
    for (const e of ws) {
      expect(e.ms).toBeLessThan(15_000); // not the 20 s timeout
      const out = lines(e)[0];
      expect(out.code).toBe('ERR_DISTRIBUTED');
      expect(out.message).toMatch(/^ranks disagree on worldSize: rank [01] has [23], rank [01] has [23]/);
      expect(out.message).toContain('has 2');
      expect(out.message).toContain('has 3');
    }
    const check = await job(['node', 'node'], 'join', 30_000, (r) => ({ HG_CHECK: r === 0 ? 'mlp 784-256-10 float32' : 'mlp 784-128-10 float32', HG_TIMEOUT_MS: '20000' }));
    for (const e of check) {
      expect(e.ms).toBeLessThan(15_000);
      const out = lines(e)[0];
      expect(out.code).toBe('ERR_DISTRIBUTED');
      expect(out.message).toContain('"mlp 784-256-10 float32"');
      expect(out.message).toContain('"mlp 784-128-10 float32"');
    }
  });

  it('arrays of different lengths across ranks are an ERR_DISTRIBUTED on every rank (Gloo alone aborts the process)', async () => {
    const exits = await job(['node', 'node'], 'lengths', 30_000);
    for (const e of exits) {
      expect(e.code, e.stderr).toBe(0);
      const out = lines(e)[0];
      expect(out.code).toBe('ERR_DISTRIBUTED');
      expect(out.message).toMatch(/allReduce was called differently across ranks: rank [01] passed (10|1000) float32 elements in 1 array, the ranks passed from 10 to 1000 elements/);
    }
  });

  it('a killed rank makes the others fail with ERR_DISTRIBUTED at once; a hung one within timeoutMs', async () => {
    const died = await job(['node', 'node', 'node'], 'die', 40_000, () => ({ HG_TIMEOUT_MS: '30000' }));
    expect(died[1].signal).toBe('SIGKILL');
    expect(died[1].killedByTest).toBe(false);
    for (const r of [0, 2]) {
      expect(died[r].killedByTest).toBe(false);
      const out = lines(died[r])[0];
      expect(out).toMatchObject({ code: 'ERR_DISTRIBUTED', name: 'HandgradError' });
      expect(out.message).toMatch(new RegExp(`^allReduce failed on rank ${r} of 3`));
      expect(out.failedAfterMs).toBeLessThan(10_000); // far below the 30 s timeout: the peer's sockets closed
    }
    const timeoutMs = 3000;
    const port = await freePort();
    const env = (rank: number) => ({ RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), HG_TIMEOUT_MS: String(timeoutMs) });
    let stopped: ChildProcess | undefined;
    const [hung0, hung1] = await Promise.all([
      run(process.execPath, [RANK, 'hang'], env(0), 30_000).finally(() => stopped?.kill('SIGKILL')),
      run(process.execPath, [RANK, 'hang'], env(1), 30_000, (c) => (stopped = c)),
    ]);
    expect(hung1.signal).toBe('SIGKILL'); // stopped, then killed by the test once rank 0 had given up
    expect(hung0.killedByTest).toBe(false);
    const out = lines(hung0)[0];
    expect(out.code).toBe('ERR_DISTRIBUTED');
    expect(out.failedAfterMs).toBeGreaterThanOrEqual(timeoutMs - 500);
    expect(out.failedAfterMs).toBeLessThan(timeoutMs + 3000);
  });

  it('a rank that never comes: init fails within timeoutMs naming it', async () => {
    const exits = await job(['node'], 'join', 20_000, () => ({ WORLD_SIZE: '2', HG_TIMEOUT_MS: '2000' }));
    const out = lines(exits[0])[0];
    expect(out.code).toBe('ERR_DISTRIBUTED');
    expect(out.message).toMatch(/^rank 1 did not join within 2000 ms \(master 127\.0\.0\.1:\d+, worldSize 2\)/);
    expect(exits[0].ms).toBeLessThan(10_000);
  });
});

describe.skipIf(skipPython !== null)(title('distributed: a mixed job of Node and PyTorch Python ranks', skipPython), () => {
  it.each([
    [['node', 'python'] as const],
    [['python', 'node', 'python', 'node'] as const],
  ])('%j: every rank gets the same, exact results', async (kinds) => {
    const exits = await job([...kinds], 'mixed', 90_000);
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    const outs = exits.map((e) => lines(e)[0]);
    outs.forEach((out, r) => {
      expect(out.rank).toBe(r);
      expectCollectives(out, kinds.length);
      if (kinds[r] === 'node') expect(out.info).toMatchObject({ allHandgrad: false, verifiesCalls: false });
    });
  });
});

describe.skipIf(skip !== null)(title('handgrad launch', skip), () => {
  it('runs N ranks with the environment and exits 0 when they all do', async () => {
    const e = await run(process.execPath, [CLI, 'launch', '--nproc', '2', RANK, 'collectives'], {}, 60_000);
    expect(e.code, e.stderr).toBe(0);
    const outs = lines(e).sort((x, y) => x.rank - y.rank);
    expect(outs.map((o) => o.rank)).toEqual([0, 1]);
    for (const out of outs) expectCollectives(out, 2);
  });

  it('two launchers as two machines (--nnodes 2 --node-rank 0|1) make one job of 4 ranks', async () => {
    const port = String(await freePort());
    const node = (r: number) => run(process.execPath, [CLI, 'launch', '--nproc', '2', '--nnodes', '2', '--node-rank', String(r), '--master-port', port, RANK, 'mixed'], {}, 90_000);
    const exits = await Promise.all([node(0), node(1)]);
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    const outs = exits.flatMap(lines).sort((x, y) => x.rank - y.rank);
    expect(outs.map((o) => [o.rank, (o.info as { localRank: number }).localRank])).toEqual([[0, 0], [1, 1], [2, 0], [3, 1]]);
    for (const out of outs) expectCollectives(out, 4);
  });

  it("one rank's failure stops the others within seconds and is the launch's exit code", async () => {
    // Rank 1 exits before joining: the others would wait 60 s in init, only the launcher ends them
    // sooner (after the 2 s it gives them to end on their own, as a checkpointing rank needs).
    const e = await run(process.execPath, [CLI, 'launch', '--nproc', '3', RANK, 'exit'], { HG_TIMEOUT_MS: '60000' }, 40_000);
    expect(e.killedByTest).toBe(false);
    expect(e.code).toBe(7);
    expect(e.stderr).toContain('handgrad launch: rank 1 exited with code 7; stopping the other ranks');
    expect(e.ms).toBeLessThan(30_000);
  });

  it('SIGTERM is passed on to the ranks and the launch exits 143', async () => {
    const e = await run(process.execPath, [CLI, 'launch', '--nproc', '2', RANK, 'sleep'], { HG_TIMEOUT_MS: '60000' }, 40_000, (c) => {
      setTimeout(() => c.kill('SIGTERM'), 3000);
    });
    expect(e.killedByTest).toBe(false);
    expect(e.code).toBe(143);
    expect(e.stderr).toContain('stopped by SIGTERM');
  });

  it('bad usage exits 2 with a did-you-mean', async () => {
    const e = await run(process.execPath, [CLI, 'launch', '--nprocs', '2', RANK], {}, 20_000);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain("Expected no option '--nprocs' for handgrad launch (did you mean '--nproc'?)");
    const none = await run(process.execPath, [CLI, 'launch', '--nproc', '2'], {}, 20_000);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Expected a script to run');
  });
});

describe('distributed: arguments (no group needed)', () => {
  it('init checks every option, unknown keys with a did-you-mean, and names the environment it read', async () => {
    await expect(distributed.init({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1, timeoutMS: 5 } as never)).rejects.toThrow(
      /^Expected no option 'timeoutMS' for distributed.init options \(did you mean 'timeoutMs'\?\)/,
    );
    await expect(distributed.init({ rank: 2, worldSize: 2, masterAddr: 'h', masterPort: 1 })).rejects.toThrow(RangeError);
    await expect(distributed.init({ rank: 0, worldSize: 1, masterAddr: 'h', masterPort: 70000 })).rejects.toThrow(/Expected an integer in \[1, 65535\] for masterPort but received 70000/);
    const saved = { ...process.env };
    try {
      delete process.env.RANK;
      process.env.WORLD_SIZE = '2';
      await expect(distributed.init({ masterAddr: 'h', masterPort: 1 })).rejects.toThrow(/environment variable RANK/);
      process.env.RANK = 'one';
      await expect(distributed.init({ masterAddr: 'h', masterPort: 1 })).rejects.toThrow(/Expected an integer for \$RANK but received "one"/);
    } finally {
      process.env = saved;
    }
  });

  it.skipIf(skip !== null)('collectives before init are ERR_DISTRIBUTED; bad arrays are TypeError/RangeError', async () => {
    expect(distributed.isInitialized()).toBe(false);
    const e = thrown(() => distributed.allReduceSync(new Float32Array(2)));
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_DISTRIBUTED');
    await expect(distributed.allReduce(new Float32Array(2))).rejects.toThrow(/not initialised: call distributed.init\(\) first/);
    expect(() => distributed.allReduceSync(new Uint8Array(2) as never)).toThrow(TypeError);
    expect(() => distributed.allReduceSync([new Float32Array(2), new Float64Array(2)] as never)).toThrow(/one dtype per call/);
    expect(() => distributed.allReduceSync(new Float32Array(0))).toThrow(RangeError);
    expect(() => distributed.allReduceSync(new Int32Array(2), 'avg')).toThrow(/for op 'avg'/);
    expect(() => distributed.allReduceSync(new BigInt64Array(2), 'avg')).toThrow(/for op 'avg'/);
    expect(() => distributed.allReduceSync(new Float32Array(2), 'mean' as never)).toThrow(/Expected one of 'sum', 'avg', 'max' for op/);
  });
});
