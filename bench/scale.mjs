// Data-parallel scaling on one machine (issue 16, item 5): one MNIST-size epoch (60k × 784 → H →
// 10, batch B per rank, SGD, float32) with the data-parallel Trainer, the all-reduce's share of it
// timed by the Trainer's own collective. H and B default to the epoch benchmark's 256 and 128;
// `--hidden 1024 --batch 256` is the (256,784,1024,10) net. Run it two ways and compare:
//   OPENBLAS_NUM_THREADS=2 node bench/scale.mjs [--hidden H --batch B]          (1 rank × 2 BLAS threads)
//   node dist/lib/cli.js launch --nproc 2 bench/scale.mjs [--hidden H --batch B] (2 ranks × 1 BLAS thread each)
// Rank 0 prints the epoch's seconds (min of 2, after a warm-up) and, with 2 ranks, the time of one
// all-reduce of every gradient (median of 20), so the share is epoch steps × that ÷ the epoch.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
const { values: flags } = parseArgs({ options: { hidden: { type: 'string', default: '256' }, batch: { type: 'string', default: '128' } } });
const H = Number(flags.hidden);
const B = Number(flags.batch);
if (!(Number.isInteger(H) && H > 0 && Number.isInteger(B) && B > 0)) throw new RangeError(`--hidden and --batch must be positive integers, got ${flags.hidden} and ${flags.batch}`);
const hg = await import(new URL('../dist/lib/index.js', import.meta.url).href);
const { distributed, initParams, loadMnist, Sequential, Trainer } = hg;
const ranks = Number(process.env.WORLD_SIZE ?? 1);
if (ranks > 1) await distributed.init({ timeoutMs: 120_000 });
const m = loadMnist({ dtype: 'float32' });
const net = Sequential.mlp([784, H, 10], { seed: 0, dtype: 'float32' });
const t = new Trainer(net, { optimizer: 'sgd', lr: 0.1, batchSize: B, ...(ranks > 1 ? { distributed: true } : {}) });
t.fitSync(m.train.X.subarray(0, B * 20 * 784), m.train.y.subarray(0, B * 20), { epochs: 1 }); // warm-up
const runs = [];
for (let r = 0; r < 2; r++) {
  const s = performance.now();
  t.fitSync(m.train.X, m.train.y, { epochs: 1 });
  runs.push((performance.now() - s) / 1000);
}
let allReduceMs = null;
if (ranks > 1) {
  const grads = Object.values(t.params).map((p) => new Float32Array(p.length).fill(1e-3));
  const times = [];
  for (let i = 0; i < 23; i++) {
    const s = performance.now();
    distributed.allReduceSync(grads, 'avg');
    if (i >= 3) times.push(performance.now() - s);
  }
  allReduceMs = times.sort((a, b) => a - b)[times.length >> 1];
}
const rank = Number(process.env.RANK ?? 0);
if (rank === 0) {
  const steps = Math.ceil(Math.ceil(60000 / ranks) / B);
  const epoch = Math.min(...runs);
  const gradBytes = Object.values(t.params).reduce((n, p) => n + p.byteLength, 0);
  console.log(JSON.stringify({
    ranks, hidden: H, batch: B, blasThreads: hg.getNumThreads(), epochSeconds: +epoch.toFixed(3), stepsPerRank: steps, gradientBytes: gradBytes,
    ...(allReduceMs !== null ? { allReduceMs: +allReduceMs.toFixed(2), allReduceShare: +((steps * allReduceMs) / 1000 / epoch).toFixed(3) } : {}),
  }));
}
if (ranks > 1) distributed.destroy();
