// `npm run bench:train`: training at realistic size — seconds per MNIST epoch (batch 128,
// 784 → 256 → 10, SGD lr 0.1), the Trainer's epochs alternated with PyTorch Python's on the same
// data in the same run (bench/torchpeer.ts; PyTorch with 1 intra-op thread, its fastest setting
// here: with 2, its OpenMP threads and OpenBLAS's oversubscribe the 2 cores and an epoch took 8–14 s
// against 0.8–1.1 s), and the event-loop delay a server sees while Trainer.fit runs at (256,784,1024,10).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getNumThreads, initParams, loadMnist, Trainer } from '../lib';
import { startTorchPeer, torchPeerSkipReason } from './torchpeer';

const ROUNDS = 3;
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];

/** Minimum and median epoch seconds of the Trainer and of PyTorch (null when it cannot run), alternated. */
async function mnistEpochs(dtype: 'float32' | 'float64'): Promise<{ ours: number[]; torch: number[] | null; about: string }> {
  const m = loadMnist({ dtype });
  const [D, H, C, batchSize, lr] = [784, 256, 10, 128, 0.1];
  const t = new Trainer(initParams({ D, H, C }, { seed: 0, dtype }), { lr, batchSize });
  t.fitSync(m.train.X.subarray(0, batchSize * 20 * D), m.train.y.subarray(0, batchSize * 20), { epochs: 1 }); // warm-up
  const skip = torchPeerSkipReason();
  const peer = skip ? null : await startTorchPeer(m.train.X, m.train.y, { N: m.train.y.length, D, H, C, batchSize, lr, threads: 1 });
  const ours: number[] = [];
  const torch: number[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const start = process.hrtime.bigint();
      t.fitSync(m.train.X, m.train.y, { epochs: 1 });
      ours.push(Number(process.hrtime.bigint() - start) / 1e9);
      if (peer) torch.push(await peer.epoch());
    }
  } finally {
    peer?.close();
  }
  return { ours, torch: peer ? torch : null, about: peer ? peer.about : `skipped: ${skip}` };
}

async function eventLoopDuringFit(): Promise<{ p50: number; p99: number; max: number; seconds: number }> {
  const [B, D, H, C] = [256, 784, 1024, 10];
  const n = B * 40;
  const X = new Float64Array(n * D).map((_, i) => Math.sin(i * 0.37));
  const y = new Int32Array(n).map((_, i) => i % C);
  const t = new Trainer(initParams({ D, H, C }, { seed: 0 }), { lr: 0.01, batchSize: B });
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const start = process.hrtime.bigint();
  await t.fit(X, y, { epochs: 2 });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  h.disable();
  return { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, seconds };
}

async function main(): Promise<void> {
  console.log(`OpenBLAS threads: ${getNumThreads()}`);
  for (const dtype of ['float32', 'float64'] as const) {
    const { ours, torch, about } = await mnistEpochs(dtype);
    const fmt = (a: number[]) => `min ${Math.min(...a).toFixed(3)} s, median ${median(a).toFixed(3)} s`;
    console.log(`MNIST epoch, ${dtype}, batch 128, 784→256→10, SGD, ${ROUNDS} alternated rounds`);
    console.log(`  handgrad native: ${fmt(ours)}`);
    if (torch === null) console.log(`  PyTorch: ${about}`);
    else {
      console.log(`  PyTorch (${about}): ${fmt(torch)}`);
      console.log(`  PyTorch ÷ handgrad: ${(Math.min(...torch) / Math.min(...ours)).toFixed(2)}× (minima), ${(median(torch) / median(ours)).toFixed(2)}× (medians); target ≥ 2×`);
    }
  }
  const e = await eventLoopDuringFit();
  console.log(
    `event-loop delay while fit() trains (256,784,1024,10) in a worker, ${e.seconds.toFixed(1)} s: ` +
      `p50 ${e.p50.toFixed(2)} ms, p99 ${e.p99.toFixed(2)} ms, max ${e.max.toFixed(2)} ms (target p99 < 20 ms)`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
