// Mixed jobs: Node ranks (the Trainer with distributed: { peers: 'ddp' }) and PyTorch Python ranks
// (torch.nn.parallel.DistributedDataParallel over the same nn.Sequential, gloo, env://) train one
// model together. The ranks are the README's recipe, examples/ddp/train.js and train.py, each a
// child process on 127.0.0.1 killed if it outlives its bound. Checked: every rank ends with the same
// weights (every double of the state_dict, Node's and PyTorch's alike); they equal PyTorch's own
// single-process run with the full batch (test/fixtures/distributed/ddp-reference.py) to rounding;
// rank 0 on either side; 2 and 3 ranks; SGD and Adam; float64 and float32; a model big enough for
// DDP's rebuilt buckets to be two; a Node rank whose model differs fails at DDP's shape check.
// Without PyTorch: DDP's bucket rule and DistributedSampler's randperm against committed goldens
// from PyTorch 1.13 (test/fixtures/distributed/ddp-goldens.py).
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HandgradError, Linear, Sequential, Tanh, Trainer } from '../lib/index';
import { bucketAssignment } from '../lib/train/ddp';
import { torchRandperm, torchSamplerSeed } from '../lib/train/ddp-sampler';
import { distributedOption } from '../lib/train/settings';
import { distributedSkip, freePort, runBounded, thrown, TORCH_PYTHON, torchPythonSkip } from './helpers';

const ROOT = join(__dirname, '..');
const NODE_RANK = join(ROOT, 'examples', 'ddp', 'train.js');
const PY_RANK = join(ROOT, 'examples', 'ddp', 'train.py');
const NODE_PIECES = join(__dirname, 'fixtures', 'distributed', 'ddp-rank.mjs');
const REFERENCE = join(__dirname, 'fixtures', 'distributed', 'ddp-reference.py');
const GOLDENS = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'distributed', 'ddp-goldens.json'), 'utf8')) as {
  torch: string;
  buckets: { widths: number[]; dtype: string; limits: number[]; order: number[]; bytes: number[]; buckets: number[][] }[];
  randperm: { n: number; seed: number; head: number[]; weighted: number }[];
};

const skip = distributedSkip() ?? torchPythonSkip('torch.distributed');
const title = (t: string) => (skip === null ? t : `${t} (skipped: ${skip})`);

describe('DDP\'s rules in TypeScript, against PyTorch 1.13\'s (committed goldens)', () => {
  it(`bucketAssignment is torch.distributed._compute_bucket_assignment_by_size (${GOLDENS.buckets.length} nets, DDP's initial, rebuilt and broadcast limits)`, () => {
    expect(GOLDENS.torch).toMatch(/^1\.13/);
    for (const g of GOLDENS.buckets) expect(bucketAssignment(g.bytes, g.order, g.limits), JSON.stringify(g.widths)).toEqual(g.buckets);
  });

  it('torchRandperm(torchSamplerSeed(seed, epoch)) is DistributedSampler\'s torch.randperm with manual_seed(seed + epoch)', () => {
    for (const g of GOLDENS.randperm) {
      const perm = torchRandperm(new Int32Array(g.n), g.n, torchSamplerSeed(g.seed, 0));
      expect(Array.from(perm.subarray(0, 64)), `n ${g.n} seed ${g.seed}`).toEqual(g.head);
      let weighted = 0;
      perm.forEach((v, i) => (weighted += i * v));
      expect(weighted).toBe(g.weighted);
    }
    // seed + epoch: epoch 3 of seed 4 is seed 7's order.
    const a = torchRandperm(new Int32Array(37), 37, torchSamplerSeed(4, 3));
    expect(Array.from(a.subarray(0, 64))).toEqual(GOLDENS.randperm.find((g) => g.n === 37 && g.seed === 7)!.head);
  });
});

describe('distributed: { peers, sampler } checked', () => {
  it("peers 'ddp' refuses verify (a collective PyTorch ranks never make); unknown values and keys are errors; sampler defaults by peers", () => {
    const net = () => new Sequential([new Linear(4, 8, { seed: 1 }), new Tanh(), new Linear(8, 3, { seed: 2 })]);
    expect(() => new Trainer(net(), { distributed: { peers: 'ddp', verify: 1 } })).toThrow(/no verify with peers 'ddp'.*for opts\.distributed\.verify/);
    expect(() => new Trainer(net(), { distributed: { peers: 'torch' as never } })).toThrow(RangeError);
    expect(() => new Trainer(net(), { distributed: { sampler: 'random' as never } })).toThrow(/opts\.distributed\.sampler/);
    expect(() => new Trainer(net(), { distributed: { peer: 'ddp' } as never })).toThrow(/did you mean 'peers'/i);
    expect(distributedOption({ peers: 'ddp' }, 'opts.distributed')).toMatchObject({ peers: 'ddp', sampler: 'torch' });
    expect(distributedOption(true, 'opts.distributed')).toMatchObject({ peers: 'handgrad', sampler: 'handgrad' });
    expect(distributedOption({ sampler: 'torch' }, 'opts.distributed')).toMatchObject({ peers: 'handgrad', sampler: 'torch' });
    // Without a process group: the same error as distributed: true.
    const e = thrown(() => new Trainer(net(), { distributed: { peers: 'ddp' } }));
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_DISTRIBUTED');
  });
});

type StateDict = Record<string, number[] | number[][]>;
interface Rank { kind: 'node' | 'python'; code: number | null; stdout: string; stderr: string; killed: boolean }

const N = 37; // not a multiple of 2 or 3: the sampler pads
const D = 4;

/** The data (a deterministic function of the row, as test/52's) and rank 0's initial weights, as JSON files in `dir`. */
function inputs(dir: string, H: number): { data: string; init: string } {
  const X: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < N; i++) {
    const r = Array.from({ length: D }, (_, j) => Math.sin(i * 1.7 + j * 2.3) + 0.1 * Math.cos(i * j));
    X.push(r);
    const s = r[0] - r[1] + 0.5 * r[2] * r[3];
    y.push(s < -0.4 ? 0 : s < 0.4 ? 1 : 2);
  }
  const m = new Sequential([new Linear(D, H, { seed: 11 }), new Tanh(), new Linear(H, 3, { seed: 12 })]);
  const rows = (w: ArrayLike<number>, inn: number, out: number) => Array.from({ length: out }, (_, o) => Array.from({ length: inn }, (_, k) => w[k * out + o]));
  const p = m.params;
  const init = { '0.weight': rows(p.W1, D, H), '0.bias': Array.from(p.b1), '2.weight': rows(p.W2, H, 3), '2.bias': Array.from(p.b2) };
  writeFileSync(join(dir, 'data.json'), JSON.stringify({ X, y }));
  writeFileSync(join(dir, 'init.json'), JSON.stringify(init));
  return { data: join(dir, 'data.json'), init: join(dir, 'init.json') };
}

/** A process run to its end, SIGKILLed after limitMs. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, limitMs: number): Promise<{ code: number | null; stdout: string; stderr: string; killed: boolean }> {
  return runBounded(cmd, args, env, limitMs).then(({ code, stdout, stderr, killedByTest }) => ({ code, stdout, stderr, killed: killedByTest }));
}

/**
 * One job: rank r is `kinds[r]` ('n' Node, 'p' PyTorch) running the recipe's script with `args`
 * (and `perRank[r]` after them); rank 0 starts from --init. Every rank writes its final state_dict
 * to dir/out{rank}.json.
 */
async function job(dir: string, kinds: string, args: string[], perRank: string[][] = [], limitMs = 90_000, nodeScript = NODE_RANK): Promise<Rank[]> {
  const port = await freePort();
  const modules = join(dir, 'node_modules');
  if (!existsSync(join(modules, 'handgrad'))) {
    mkdirSync(modules, { recursive: true });
    // require('handgrad') as in a user's project: a folder named handgrad on NODE_PATH.
    symlinkSync(ROOT, join(modules, 'handgrad'), 'dir');
  }
  const W = kinds.length;
  return Promise.all(Array.from(kinds, async (k, rank) => {
    const env = { ...process.env, RANK: String(rank), WORLD_SIZE: String(W), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), NODE_PATH: modules };
    const all = [...args, '--out', join(dir, 'out{rank}.json'), '--timeout-ms', '30000', ...(rank === 0 ? ['--init', join(dir, 'init.json')] : []), ...(perRank[rank] ?? [])];
    const r = k === 'n' ? await run(process.execPath, [nodeScript, ...all], env, limitMs) : await run(TORCH_PYTHON, [PY_RANK, ...all], env, limitMs);
    return { kind: k === 'n' ? 'node' : 'python', ...r } as Rank;
  }));
}

function flat(s: StateDict): number[] {
  return ['0.weight', '0.bias', '2.weight', '2.bias'].flatMap((k) => (s[k] as (number | number[])[]).flat());
}

/** The largest |a − b| / max(1, |b|). */
function maxRelative(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
}

// Tolerances against the single-process full-batch run. The job's step averages per-rank mean
// gradients ((1/W)·Σ_r mean_r, each rank's scaled before the sum) where the reference takes one mean
// over the W·B rows in one GEMM sum, by another BLAS on the Node ranks: equal in exact arithmetic
// (every rank's batch has the same size, padding included), different in the last bits of a
// gradient, and the difference carried through ~15 steps. Measured (this machine, every case
// below): float64 at most 2.9e-15 relative (the 44,000-wide net, Adam), 1.9e-16 for the small net;
// float32 SGD at most 1.2e-7 (1 ulp at 1). 1e-13 and 1e-5 leave ~35× and ~80× room for another
// BLAS's summation order; a wrong shard or sampler order, a missing 1/W, a transposed bucket or a
// rank's own initial weights move the weights in the 2nd–3rd digit. float32 with Adam is compared
// across ranks only (Adam divides by √v: a gradient near 0 can flip sign on one rounding).
const TOLERANCE = { float64: 1e-13, float32: 1e-5 } as const;

describe.skipIf(skip !== null)(title('mixed jobs: Node Trainers and PyTorch DDP ranks (examples/ddp)'), () => {
  // Rank r is kinds[r]: n a Node rank, p a PyTorch rank.
  const cases = [
    { name: 'SGD momentum 0.9', kinds: 'np', dtype: 'float64', opt: ['--optimizer', 'sgd', '--lr', '0.1', '--momentum', '0.9'], reference: true },
    { name: 'Adam', kinds: 'pn', dtype: 'float64', opt: ['--optimizer', 'adam', '--lr', '0.01'], reference: true },
    { name: 'SGD momentum 0.9', kinds: 'npn', dtype: 'float32', opt: ['--optimizer', 'sgd', '--lr', '0.1', '--momentum', '0.9'], reference: true },
    { name: 'Adam', kinds: 'pnn', dtype: 'float64', opt: ['--optimizer', 'adam', '--lr', '0.01'], reference: true },
    { name: 'Adam', kinds: 'pn', dtype: 'float32', opt: ['--optimizer', 'adam', '--lr', '0.01'], reference: false },
    { name: 'SGD', kinds: 'nn', dtype: 'float32', opt: ['--optimizer', 'sgd', '--lr', '0.1'], reference: true },
    // DistributedSampler(shuffle=False) and fit's shuffle: false: the rows in order, padded alike.
    { name: 'SGD, shuffle false', kinds: 'pnn', dtype: 'float64', opt: ['--optimizer', 'sgd', '--lr', '0.1', '--shuffle', '0'], reference: true },
  ] as const;

  it.each(cases)('$kinds ($dtype, $name): every rank ends on the same weights, the full-batch single-process run to rounding', async ({ kinds, dtype, opt, reference }) => {
    const dir = mkdtempSync(join(tmpdir(), 'hg53-'));
    const files = inputs(dir, 8);
    const args = ['--data', files.data, '--dtype', dtype, '--hidden', '8', '--epochs', '3', '--batch-size', '4', '--seed', '7', ...opt];
    const ranks = await job(dir, kinds, args);
    ranks.forEach((r, i) => expect(r.code, `rank ${i} (${r.kind}${r.killed ? ', killed after its bound' : ''}): ${r.stderr}`).toBe(0));
    const outs = ranks.map((_, r) => flat(JSON.parse(readFileSync(join(dir, `out${r}.json`), 'utf8')) as StateDict));
    // The same double everywhere (float32 weights as their exact doubles): Node's and PyTorch's.
    for (let r = 1; r < outs.length; r++) expect(outs[r].every((v, i) => v === outs[0][i]), `rank ${r} against rank 0`).toBe(true);
    // Every rank trained (the weights left their start) and ran its 3 epochs.
    expect(maxRelative(outs[0], flat(JSON.parse(readFileSync(files.init, 'utf8')) as StateDict))).toBeGreaterThan(1e-3);
    for (const r of ranks) expect(r.stdout.trim().split('\n').filter((l) => l.includes('"epoch"')).length).toBe(3);
    if (!reference) return;
    const ref = await run(TORCH_PYTHON, [REFERENCE, '--init', files.init, '--world-size', String(kinds.length), ...args], process.env, 60_000);
    expect(ref.code, ref.stderr).toBe(0);
    const diff = maxRelative(outs[0], flat(JSON.parse(ref.stdout) as StateDict));
    if (process.env.HG_SHOW_DIFF) console.info(`${kinds} ${dtype} ${opt[1]}: max relative difference from the full-batch run ${diff}`);
    expect(diff).toBeLessThan(TOLERANCE[dtype]);
  }, 120_000);

  it('a Node rank that trains in pieces (early stopping refused, fitSync 1 epoch, its own evaluate, fit 2 more with validation): DDP sees one run, the same weights on both sides', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg53-'));
    const files = inputs(dir, 8);
    const args = ['--data', files.data, '--dtype', 'float64', '--hidden', '8', '--epochs', '3', '--batch-size', '4', '--seed', '7', '--optimizer', 'adam', '--lr', '0.01'];
    for (const kinds of ['np', 'pn']) {
      const ranks = await job(dir, kinds, args, [], 90_000, NODE_PIECES);
      ranks.forEach((r, i) => expect(r.code, `rank ${i} (${r.kind}${r.killed ? ', killed after its bound' : ''}): ${r.stderr}`).toBe(0));
      const outs = ranks.map((_, r) => flat(JSON.parse(readFileSync(join(dir, `out${r}.json`), 'utf8')) as StateDict));
      expect(outs[1].every((v, i) => v === outs[0][i]), kinds).toBe(true);
      const node = ranks.find((r) => r.kind === 'node')!;
      const lines = node.stdout.trim().split('\n').map((l) => JSON.parse(l) as { steps?: number; valLoss?: number; refused?: string });
      expect(lines.at(-1)!.steps).toBe(3 * Math.ceil(Math.ceil(N / 2) / 4));
      expect(lines.at(-1)!.refused).toMatch(/^TypeError: Expected no early stopping or restoreBest with distributed peers 'ddp'/);
      expect(lines.filter((l) => l.valLoss !== undefined).length).toBe(2);
    }
    const ref = await run(TORCH_PYTHON, [REFERENCE, '--init', files.init, '--world-size', '2', ...args], process.env, 60_000);
    expect(ref.code, ref.stderr).toBe(0);
    expect(maxRelative(flat(JSON.parse(readFileSync(join(dir, 'out0.json'), 'utf8')) as StateDict), flat(JSON.parse(ref.stdout) as StateDict))).toBeLessThan(TOLERANCE.float64);
  }, 180_000);

  it('a net over DDP\'s 1 MiB first bucket (Linear 4→44000→3, float64): two rebuilt buckets, rank 0 PyTorch then Node, the full-batch run to rounding', async () => {
    for (const kinds of ['pn', 'np']) {
      const dir = mkdtempSync(join(tmpdir(), 'hg53-'));
      const files = inputs(dir, 44_000);
      const args = ['--data', files.data, '--dtype', 'float64', '--hidden', '44000', '--epochs', '1', '--batch-size', '8', '--seed', '3', '--optimizer', 'adam', '--lr', '0.001'];
      const ranks = await job(dir, kinds, args);
      ranks.forEach((r, i) => expect(r.code, `rank ${i} (${r.kind}${r.killed ? ', killed after its bound' : ''}): ${r.stderr}`).toBe(0));
      const outs = ranks.map((_, r) => flat(JSON.parse(readFileSync(join(dir, `out${r}.json`), 'utf8')) as StateDict));
      expect(outs[1].every((v, i) => v === outs[0][i])).toBe(true);
      const ref = await run(TORCH_PYTHON, [REFERENCE, '--init', files.init, '--world-size', '2', ...args], process.env, 60_000);
      expect(ref.code, ref.stderr).toBe(0);
      expect(maxRelative(outs[0], flat(JSON.parse(ref.stdout) as StateDict))).toBeLessThan(TOLERANCE.float64);
    }
  }, 180_000);

  it('a Node rank whose model differs from PyTorch rank 0\'s fails at DDP\'s shape check, naming both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg53-'));
    const files = inputs(dir, 8);
    const ranks = await job(dir, 'pn', ['--data', files.data, '--dtype', 'float64', '--hidden', '8', '--epochs', '1'], [[], ['--hidden', '16']], 60_000);
    expect(ranks[1].killed).toBe(false);
    expect(ranks[1].code).not.toBe(0);
    expect(ranks[1].stderr).toContain('ERR_DISTRIBUTED');
    expect(ranks[1].stderr).toContain('DDP expects the same model on every rank: parameter 0 is W1 [16, 4] on rank 1 and [8, 4] on rank 0');
    expect(ranks[0].killed).toBe(false);
    expect(ranks[0].code).not.toBe(0); // the PyTorch rank's broadcast fails when its peer leaves
  }, 90_000);
});
