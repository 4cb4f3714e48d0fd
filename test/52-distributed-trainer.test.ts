// The data-parallel Trainer ({ distributed: true }): local jobs of 2 and 3 ranks on 127.0.0.1
// (test/fixtures/distributed/trainer-rank.mjs, each rank a child process killed if it outlives its
// bound) train a small MLP. Checked: every rank ends with the same bits (the weights' bytes); the
// run equals a single-process run in which each step takes the union of the ranks' batches (W·B
// rows of DistributedSampler's padded order) to rounding; evaluate of each rank's part equals a
// single-process evaluate of the whole set; a rank with another model fails at init naming both;
// the debug check sees weights that diverge; only rank 0 writes a checkpoint.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as hg from '../lib/index';
import { HandgradError, Rng, Sequential, Trainer } from '../lib/index';
import { shuffleSeed } from '../lib/train/loop';
import { backendCases, backendTitle, distributedSkip, freePort, runBounded, thrown } from './helpers';
// @ts-expect-error: a plain ES module shared with the ranks
import { mlp, rows, D } from './fixtures/distributed/mlp-data.mjs';

const RANK = join(__dirname, 'fixtures', 'distributed', 'trainer-rank.mjs');

const skip = distributedSkip();
const title = (t: string) => (skip === null ? t : `${t} (skipped: ${skip})`);


interface Out {
  rank: number; steps?: number; hash?: string; w?: Record<string, number[]>;
  history?: { loss: number; accuracy: number; valLoss?: number; valAccuracy?: number }[];
  evaluation?: { loss: number; accuracy: number; precision: number[]; recall: number[]; support: number[]; confusion: number[] };
  code?: string; message?: string; ok?: boolean;
}

/** W ranks of trainer-rank.mjs MODE, each SIGKILLed after limitMs; their JSON lines. */
async function job(W: number, mode: string, env: NodeJS.ProcessEnv, limitMs = 60_000): Promise<{ code: number | null; stderr: string; out: Out }[]> {
  const port = await freePort();
  return Promise.all(Array.from({ length: W }, (_, rank) => {
    const e = { RANK: String(rank), WORLD_SIZE: String(W), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...env };
    return runBounded(process.execPath, [RANK, mode], e, limitMs).then(({ code, stdout, stderr }) => {
      const line = stdout.trim().split('\n').filter(Boolean).pop();
      return { code, stderr, out: line ? (JSON.parse(line) as Out) : { rank } };
    });
  }));
}

/**
 * The single-process reference: rank 0's initial weights, batches of W·B rows, each epoch's rows
 * in DistributedSampler's padded order (the seeded permutation of the N rows, repeated from its
 * start up to a multiple of W), so each step's batch is the union of the ranks' batches of that step.
 */
function reference(W: number, B: number, N: number, epochs: number, shuffle: boolean): { t: Trainer<Sequential>; history: { loss: number; accuracy: number }[] } {
  const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
  const t = new Trainer(mlp(hg, 8, 100) as Sequential, { batchSize: W * B, seed: 7 });
  const history: { loss: number; accuracy: number }[] = [];
  const S = Math.ceil(N / W);
  for (let e = 1; e <= epochs; e++) {
    const perm = Int32Array.from({ length: N }, (_, i) => i);
    if (shuffle) new Rng(shuffleSeed(7, e)).shuffle(perm);
    const padded = Int32Array.from({ length: S * W }, (_, p) => perm[p % N]);
    const Xe = new Float64Array(padded.length * D);
    padded.forEach((r, i) => Xe.set(X.subarray(r * D, r * D + D), i * D));
    history.push(...t.fitSync(Xe, Int32Array.from(padded, (r) => y[r]), { epochs: 1, shuffle: false }).history);
  }
  return { t, history };
}

/** The largest |a − b| / max(1, |b|) over every weight. */
function maxRelative(w: Record<string, number[]>, ref: Readonly<Record<string, ArrayLike<number>>>): number {
  let m = 0;
  for (const k of Object.keys(ref)) {
    expect(w[k].length).toBe(ref[k].length);
    for (let i = 0; i < w[k].length; i++) m = Math.max(m, Math.abs(w[k][i] - ref[k][i]) / Math.max(1, Math.abs(ref[k][i])));
  }
  return m;
}

/**
 * What a job computes whatever its loss, in plain loops apart from lib/ (the MLP of mlp-data.mjs:
 * W1 [D,H], Tanh, W2 [H,C], softmax cross-entropy): each step, every rank's loss over its own B
 * rows (its weighted mean, or its sum), the gradients of those W losses averaged (DDP's rule), one
 * SGD step. Rank 0's initial weights, the Trainer's shuffle (seed 7), DistributedSampler's shards.
 */
function averagedRankLosses(W: number, B: number, N: number, epochs: number, lr: number, loss: { reduction?: 'sum'; weight?: readonly number[] }): Record<string, Float64Array> {
  const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
  const init = (mlp(hg, 8, 100) as Sequential).params as Record<string, Float64Array>;
  const p = Object.fromEntries(Object.entries(init).map(([k, a]) => [k, Float64Array.from(a)]));
  const H = 8, C = 3;
  const S = Math.ceil(N / W);
  for (let e = 1; e <= epochs; e++) {
    const perm = Int32Array.from({ length: N }, (_, i) => i);
    new Rng(shuffleSeed(7, e)).shuffle(perm);
    const padded = Int32Array.from({ length: S * W }, (_, q) => perm[q % N]);
    for (let k = 0; k * B < S; k++) {
      const g = Object.fromEntries(Object.entries(p).map(([n, a]) => [n, new Float64Array(a.length)]));
      for (let r = 0; r < W; r++) {
        const batch: number[] = [];
        for (let j = k * B; j < Math.min(S, (k + 1) * B); j++) batch.push(padded[r + W * j]);
        const c = batch.map((i) => (loss.weight ? loss.weight[y[i]] : 1));
        const den = loss.reduction === 'sum' ? 1 : c.reduce((a, b) => a + b, 0);
        batch.forEach((i, bi) => {
          const h = Array.from({ length: H }, (_, u) => {
            let z = p.b1[u];
            for (let d = 0; d < D; d++) z += X[i * D + d] * p.W1[d * H + u];
            return Math.tanh(z);
          });
          const z = Array.from({ length: C }, (_, o) => h.reduce((a, hu, u) => a + hu * p.W2[u * C + o], p.b2[o]));
          const m = Math.max(...z);
          const ez = z.map((v) => Math.exp(v - m));
          const sum = ez.reduce((a, b) => a + b, 0);
          const dz = ez.map((v, o) => (c[bi] / den) * (v / sum - (o === y[i] ? 1 : 0)));
          for (let o = 0; o < C; o++) g.b2[o] += dz[o];
          for (let u = 0; u < H; u++) {
            let dh = 0;
            for (let o = 0; o < C; o++) {
              g.W2[u * C + o] += h[u] * dz[o];
              dh += p.W2[u * C + o] * dz[o];
            }
            const ds = dh * (1 - h[u] * h[u]);
            g.b1[u] += ds;
            for (let d = 0; d < D; d++) g.W1[d * H + u] += X[i * D + d] * ds;
          }
        });
      }
      for (const n of Object.keys(p)) for (let q = 0; q < p[n].length; q++) p[n][q] -= lr * (g[n][q] / W);
    }
  }
  return p;
}

// Float64 throughout. The job's step averages per-rank mean gradients ((1/W)·Σ_r mean_r, one
// rounding per rank and per sum) where the reference takes the mean over the W·B rows in one GEMM
// sum: equal in exact arithmetic (the padding makes every rank's batch the same size, so the mean
// of the ranks' means is the mean of the union), different in the last bits of a gradient. Measured
// after 15 SGD steps (2 and 3 ranks, shuffled or not): at most 1.1e-16 relative (1 ulp).
// 1e-14 (~45 ulps) leaves room for another BLAS's summation order; a wrong shard, a missing
// average or rank 1's own initial weights move the weights in the 2nd–3rd digit.
const TOLERANCE = 1e-14;

describe('the data-parallel Trainer without a process group', () => {
  it('new Trainer(model, { distributed: true }) is an ERR_DISTRIBUTED that names distributed.init; a misspelt option is a did-you-mean', () => {
    const e = thrown(() => new Trainer(mlp(hg, 8, 1) as Sequential, { distributed: true }));
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_DISTRIBUTED');
    expect((e as Error).message).toMatch(/needs a process group: call `await distributed\.init\(\)`/);
    expect(() => new Trainer(mlp(hg, 8, 1) as Sequential, { distributed: { verfy: 1 } as never })).toThrow(/verfy.*did you mean 'verify'/i);
    expect(() => new Trainer(mlp(hg, 8, 1) as Sequential, { distributed: { verify: 0 } })).toThrow(RangeError);
    // Not distributed: nothing changes.
    expect(new Trainer(mlp(hg, 8, 1) as Sequential, { distributed: false }).steps).toBe(0);
  });
});

describe.skipIf(skip !== null)(title('the data-parallel Trainer: local jobs'), () => {
  const N = 37; // not a multiple of W: the sampler pads
  const B = 4;
  const epochs = 3;

  it.each([
    [2, true, 'sync'], [2, false, 'async'], [3, true, 'async'],
  ] as const)('%i ranks (shuffle %s, fit%s): the same bits on every rank, the full-batch single-process run to rounding, evaluate of the whole set', async (W, shuffle, fit) => {
    const dir = mkdtempSync(join(tmpdir(), 'hg52-'));
    const exits = await job(W, 'train', { HG_N: String(N), HG_B: String(B), HG_EPOCHS: String(epochs), HG_SHUFFLE: shuffle ? '1' : '0', HG_FIT: fit === 'sync' ? 'sync' : 'async', HG_SAVE: join(dir, 'ckpt'), HG_VAL: '23' });
    for (const e of exits) expect(e.code, `${e.stderr}${JSON.stringify(e.out)}`).toBe(0);
    const outs = exits.map((e) => e.out);
    // Identical bits on every rank: the hash of the weights' bytes, and every double.
    for (const o of outs) {
      expect(o.hash).toBe(outs[0].hash);
      expect(o.w).toEqual(outs[0].w);
      expect(o.steps).toBe(epochs * Math.ceil(Math.ceil(N / W) / B));
      expect(o.history).toEqual(outs[0].history); // the job's records, alike everywhere
    }
    const { t: ref, history } = reference(W, B, N, epochs, shuffle);
    expect(ref.steps).toBe(outs[0].steps);
    // The epoch records are the job's: the full-batch run's loss (to rounding) and accuracy.
    outs[0].history!.forEach((r, i) => {
      expect(r.accuracy).toBe(history[i].accuracy);
      expect(Math.abs(r.loss - history[i].loss) / history[i].loss).toBeLessThan(1e-14);
    });
    const diff = maxRelative(outs[0].w!, ref.params);
    if (process.env.HG_SHOW_DIFF) console.info(`W=${W} shuffle=${shuffle}: max relative difference from the full-batch run ${diff}`);
    expect(diff).toBeLessThan(TOLERANCE);
    // evaluate: each rank passed rows r, r+W, … (no padding); the result is the whole set's.
    const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
    const whole = new Trainer(Sequential.fromSpec(ref.model.spec(), Object.fromEntries(Object.entries(outs[0].w!).map(([k, a]) => [k, Float64Array.from(a)]))), {}).evaluate(X, y);
    const got = outs[0].evaluation!;
    for (const o of outs) expect(o.evaluation).toEqual(got);
    expect(got.accuracy).toBe(whole.accuracy);
    expect(got.support).toEqual(whole.support);
    expect(got.precision).toEqual(whole.precision);
    expect(got.recall).toEqual(whole.recall);
    expect(got.confusion).toEqual(Array.from(whole.confusion!));
    expect(Math.abs(got.loss - whole.loss) / whole.loss).toBeLessThan(1e-14); // a sum in another order
    // Validation, each rank its part of 23 rows: the last epoch's figures are the whole set's.
    const val = rows(23) as { X: Float64Array; y: Int32Array };
    const wholeVal = new Trainer(Sequential.fromSpec(ref.model.spec(), Object.fromEntries(Object.entries(outs[0].w!).map(([k, a]) => [k, Float64Array.from(a)]))), {}).evaluate(val.X, val.y);
    const last = outs[0].history![epochs - 1];
    expect(last.valAccuracy).toBe(wholeVal.accuracy);
    expect(Math.abs(last.valLoss! - wholeVal.loss) / wholeVal.loss).toBeLessThan(1e-14);
    // Only rank 0 writes its checkpoint; it loads as the job's weights.
    expect(existsSync(join(dir, 'ckpt.zero'))).toBe(true);
    expect(existsSync(join(dir, 'ckpt.other'))).toBe(false);
    const loaded = Trainer.load(join(dir, 'ckpt.zero')) as Trainer<Sequential>;
    expect(maxRelative(outs[0].w!, loaded.params)).toBe(0);
    expect(loaded.steps).toBe(outs[0].steps);
  }, 120_000);

  it('Trainer.load(file, { distributed: true }) takes rank 0\'s weights, optimizer state and counters: 2 epochs + save + load + 1 epoch ends on the bits of 3 epochs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg52-'));
    const env = { HG_N: String(N), HG_B: String(B), HG_OPTS: JSON.stringify({ optimizer: 'adam', lr: 0.01 }), HG_SAVE: join(dir, 'ckpt') };
    const [whole, resumed] = [await job(2, 'train', { ...env, HG_EPOCHS: '3' }), await job(2, 'resume', env)];
    for (const e of [...whole, ...resumed]) expect(e.code, `${e.stderr}${JSON.stringify(e.out)}`).toBe(0);
    for (const e of resumed) {
      expect(e.out.steps).toBe(whole[0].out.steps);
      expect(e.out.hash).toBe(whole[0].out.hash);
      expect(e.out.history).toEqual(whole[0].out.history!.slice(2));
    }
  }, 120_000);

  for (const [backend, why] of backendCases()) it.skipIf(why !== null)(backendTitle('float32, SGD with momentum: 2 ranks end on the same bits', backend, why), async () => {
    const exits = await job(2, 'train', { HG_DTYPE: 'float32', HG_OPTS: JSON.stringify({ backend, optimizer: 'sgd', momentum: 0.9 }) });
    for (const e of exits) expect(e.code, `${e.stderr}${JSON.stringify(e.out)}`).toBe(0);
    expect(exits[0].out.steps).toBe(3 * Math.ceil(Math.ceil(37 / 2) / 4));
    expect(exits[1].out.hash).toBe(exits[0].out.hash);
    expect(exits[1].out.w).toEqual(exits[0].out.w);
  }, 60_000);

  it('a rank given another model fails at init on every rank, naming both', async () => {
    const exits = await job(2, 'mismatch', {}, 30_000);
    for (const e of exits) {
      expect(e.out.code).toBe('ERR_DISTRIBUTED');
      expect(e.out.message).toContain('ranks disagree on the model');
      expect(e.out.message).toContain('rank 0 has "float64 Linear 4→8, Tanh, Linear 8→3; loss mean"');
      expect(e.out.message).toContain('rank 1 has "float64 Linear 4→16, Tanh, Linear 16→3; loss mean"');
    }
  }, 60_000);

  // README: the job equals single-process training on the union of the ranks' batches only for the
  // unweighted mean (the mean of equal-sized means is the union's mean). Otherwise the ranks'
  // gradients are still averaged, as DDP does (a mixed job needs DDP's arithmetic): with 'sum' that
  // is the union's sum gradient divided by W (here single-process 'sum' training with lr/2, since
  // SGD is linear in the gradient), with a class weight the mean of the ranks' own weighted means.
  // Measured (2 ranks, 2 epochs, 10 SGD steps): ≤ 2.2e-16 relative from the plain loops; the union's
  // loss at the same lr ends 0.31 ('sum') and 0.098 (weight) relative away.
  it.each([
    ['reduction \'sum\'', { reduction: 'sum' }],
    ['a class weight', { weight: [1, 5, 0.2] }],
  ] as const)('loss with %s: each step averages the gradients of the ranks\' own losses (DDP\'s rule), not the gradient of the loss over the union', async (_, loss) => {
    const W = 2, lr = 0.1, epochs = 2;
    const exits = await job(W, 'train', { HG_N: String(N), HG_B: String(B), HG_EPOCHS: String(epochs), HG_LOSS: JSON.stringify(loss), HG_OPTS: JSON.stringify({ optimizer: 'sgd', lr }) });
    for (const e of exits) expect(e.code, `${e.stderr}${JSON.stringify(e.out)}`).toBe(0);
    expect(exits[1].out.hash).toBe(exits[0].out.hash);
    const got = exits[0].out.w!;
    const diff = maxRelative(got, averagedRankLosses(W, B, N, epochs, lr, loss));
    if (process.env.HG_SHOW_DIFF) console.info(`${JSON.stringify(loss)}: max relative difference from the averaged ranks' gradients ${diff}`);
    expect(diff).toBeLessThan(TOLERANCE);
    // The union's loss, single-process (batches of W·B rows in the padded order), is another run.
    const union = (lrU: number) => {
      const { X, y } = rows(N) as { X: Float64Array; y: Int32Array };
      const t = new Trainer(mlp(hg, 8, 100, 'float64', loss) as Sequential, { optimizer: 'sgd', lr: lrU, batchSize: W * B, seed: 7 });
      const S = Math.ceil(N / W);
      for (let e = 1; e <= epochs; e++) {
        const perm = Int32Array.from({ length: N }, (_, i) => i);
        new Rng(shuffleSeed(7, e)).shuffle(perm);
        const padded = Int32Array.from({ length: S * W }, (_, q) => perm[q % N]);
        const Xe = new Float64Array(padded.length * D);
        padded.forEach((r, i) => Xe.set(X.subarray(r * D, r * D + D), i * D));
        t.fitSync(Xe, Int32Array.from(padded, (r) => y[r]), { epochs: 1, shuffle: false });
      }
      return t.params;
    };
    const unionDiff = maxRelative(got, union(lr));
    if (process.env.HG_SHOW_DIFF) console.info(`${JSON.stringify(loss)}: max relative difference from the union's loss ${unionDiff}`);
    expect(unionDiff).toBeGreaterThan(1e-3);
    // 'sum': the union's sum gradient divided by W — with SGD, the union's run at lr/W (W = 2: exact halving).
    if ('reduction' in loss) expect(maxRelative(got, union(lr / W))).toBeLessThan(TOLERANCE);
  }, 60_000);

  // Before: neither was compared. Two samplers shard two permutations (rank 0 the Trainer's
  // shuffle, rank 1 torch.randperm's), so some rows train twice an epoch and others never, with no
  // error; two bucket sizes failed only at the first step (verifyCalls) or aborted in Gloo (without).
  it.each([
    ['sampler', { sampler: 'handgrad' }, { sampler: 'torch' }, '"sampler":"handgrad"', '"sampler":"torch"'],
    ['bucketBytes', { bucketBytes: 64 }, { bucketBytes: 128 }, '"bucketBytes":64', '"bucketBytes":128'],
  ] as const)('ranks that disagree on distributed.%s fail at construction on every rank, naming both', async (_, zero, one, mine, theirs) => {
    const exits = await job(2, 'train', { HG_OPTS_0: JSON.stringify({ distributed: zero }), HG_OPTS_1: JSON.stringify({ distributed: one }) }, 30_000);
    for (const e of exits) {
      expect(e.out.code, `${e.stderr}${JSON.stringify(e.out)}`).toBe('ERR_DISTRIBUTED');
      expect(e.out.message).toMatch(/^ranks disagree on the distributed settings \(sampler, bucketBytes, verify\) \(new Trainer\): rank 0 has "\{.*\}", rank 1 has "\{.*\}"$/);
      expect(e.out.message).toContain(JSON.stringify(mine).slice(1, -1));
      expect(e.out.message).toContain(JSON.stringify(theirs).slice(1, -1));
      expect(e.out.steps).toBeUndefined(); // no step taken
    }
  }, 60_000);

  it('distributed: { verify: 1 } sees one rank\'s weights diverge at the next step', async () => {
    const exits = await job(2, 'verify', { HG_OPTS: JSON.stringify({ distributed: { verify: 1 } }) }, 30_000);
    const steps = Math.ceil(Math.ceil(37 / 2) / 4);
    for (const e of exits) {
      expect(e.out.code).toBe('ERR_DISTRIBUTED');
      expect(e.out.message).toMatch(new RegExp(`^the ranks' weights differ after step ${steps + 1} \\(distributed\\.verify\\)`));
    }
    // Without the perturbation the same job passes every check.
  }, 60_000);
});
