// `node dist/bench/sparse.js [rounds] [B,D,H,C]`: the sparse first layer against the dense path,
// one public step (forwardBackward with dX off, preallocated out buffers) on an MNIST-shaped
// Linear–ReLU–Linear (default 128,784,256,10, float32), setSparseInput(true) and (false) alternated
// round by round at the threads OpenBLAS runs. X has a given share of nonzero entries (19%: MNIST's;
// 24%: just under the quarter limit; 100%, where the sparse path is only tried: its failed
// compression is the cost a dense input pays). Minima of the rounds, µs per step, and dense ÷ sparse.
import { forwardBackward, getNumThreads, initParams, Rng, setSparseInput } from '../lib';

const rounds = Number(process.argv[2] ?? 7);
const [B, D, H, C] = (process.argv[3] ?? '128,784,256,10').split(',').map(Number);
if (!(Number.isInteger(rounds) && rounds >= 1) || [B, D, H, C].some((n) => !(Number.isInteger(n) && n >= 1))) {
  throw new RangeError('usage: node dist/bench/sparse.js [rounds ≥ 1] [B,D,H,C positive integers]');
}

const p = initParams({ D, H, C }, { seed: 0, dtype: 'float32' });
const y = Int32Array.from({ length: B }, (_, i) => i % C);
const out = { dW1: new Float32Array(D * H), db1: new Float32Array(H), dW2: new Float32Array(H * C), db2: new Float32Array(C) };
const steps = Math.max(50, Math.floor(4e8 / (6 * B * D * H)));

function input(share: number): Float32Array {
  const rng = new Rng(1);
  return Float32Array.from({ length: B * D }, () => (rng.uniform() < share ? rng.uniform() : 0));
}

function perStep(X: Float32Array): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) forwardBackward(p, X, y, { out });
  return Number(process.hrtime.bigint() - start) / 1e3 / steps;
}

console.log(`(${B},${D},${H},${C}) float32, ${getNumThreads()} OpenBLAS thread(s), ${rounds} alternated rounds of ${steps} steps, minima:`);
try {
  for (const share of [0.19, 0.24, 1]) {
    const X = input(share);
    for (let i = 0; i < 20; i++) forwardBackward(p, X, y, { out });
    const on: number[] = [];
    const off: number[] = [];
    for (let r = 0; r < rounds; r++) {
      setSparseInput(true);
      on.push(perStep(X));
      setSparseInput(false);
      off.push(perStep(X));
    }
    const [a, b] = [Math.min(...on), Math.min(...off)];
    console.log(`  ${(100 * share).toFixed(0).padStart(3)}% nonzero: sparse path on ${a.toFixed(1)} µs, off ${b.toFixed(1)} µs, off ÷ on ${(b / a).toFixed(2)}×`);
  }
} finally {
  setSparseInput(true);
}
