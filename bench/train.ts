// `npm run bench:train`: training at realistic size — seconds per MNIST epoch (batch 128,
// 784 → 256 → 10, SGD; the PyTorch figures for the same setting, measured on this machine
// with the same OpenBLAS and 1 intra-op thread: 0.80 s in float32, 1.23 s in float64), and the
// event-loop delay a server sees while Trainer.fit runs at (256,784,1024,10).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getNumThreads, initParams, loadMnist, Trainer } from '../lib';

const PYTORCH_EPOCH_S = { float32: 0.8, float64: 1.23 } as const;

function mnistEpoch(dtype: 'float32' | 'float64'): number {
  const m = loadMnist({ dtype });
  const t = new Trainer(initParams({ D: 784, H: 256, C: 10 }, { seed: 0, dtype }), { lr: 0.1, batchSize: 128 });
  t.fitSync(m.train.X.subarray(0, 128 * 20 * 784), m.train.y.subarray(0, 128 * 20), { epochs: 1 }); // warm-up
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const start = process.hrtime.bigint();
    t.fitSync(m.train.X, m.train.y, { epochs: 1 });
    runs.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  return Math.min(...runs);
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
    const s = mnistEpoch(dtype);
    const target = dtype === 'float32' ? 0.4 : 0.7;
    console.log(
      `MNIST epoch, ${dtype}, batch 128, 784→256→10, SGD, native: ${s.toFixed(3)} s ` +
        `(PyTorch here: ${PYTORCH_EPOCH_S[dtype]} s, ratio ${(PYTORCH_EPOCH_S[dtype] / s).toFixed(2)}×; target ≤ ${target} s)`,
    );
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
