// `node bench/wasm-ab.mjs A.wasm B.wasm [pairs]`: two builds of the single-threaded wasm module
// (build-wasm/handgrad.wasm, e.g. before and after a change to native/wasm/gemm.h or to
// scripts/build-wasm.mjs's flags) on the same GEMMs, alternated call by call, the first of each pair
// swapped every other pair. Per dtype and shape (the (256,784,1024,10) step's three large products
// and two of (64,128,256,10)'s): each build's best GFLOP/s and the median of the pairs' B ÷ A time
// ratios (< 1: B faster). Pairs a few ms apart share the machine's state, so the ratio holds where
// absolute times on a shared VM drift by tens of percent; a build against itself gives 0.98–1.02.
import { readFileSync } from 'node:fs';

const [fileA, fileB] = process.argv.slice(2, 4);
const pairs = Number(process.argv[4] ?? 30);
if (!fileA || !fileB || !(Number.isInteger(pairs) && pairs >= 1)) {
  console.error('usage: node bench/wasm-ab.mjs A.wasm B.wasm [pairs ≥ 1]');
  process.exit(2);
}
// exp/log/tanh are the host's, as lib/backends/wasm.ts imports them.
const load = (f) => new WebAssembly.Instance(new WebAssembly.Module(readFileSync(f)), { env: { exp: Math.exp, log: Math.log, tanh: Math.tanh } }).exports;
const builds = [load(fileA), load(fileB)];
const shapes = [[0, 0, 256, 1024, 784], [1, 0, 784, 1024, 256], [0, 1, 256, 784, 1024], [0, 0, 64, 256, 128], [1, 0, 128, 256, 64]];
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const align = (n) => Math.ceil(n / 64) * 64;

for (const [dtype, F, name] of [['f32', Float32Array, 'gemmF32'], ['f64', Float64Array, 'gemmF64']]) {
  for (const [tA, tB, M, N, K] of shapes) {
    const calls = builds.map((w) => {
      const size = F.BYTES_PER_ELEMENT;
      const pA = align(w.__heap_base.value), pB = align(pA + M * K * size), pC = align(pB + K * N * size);
      const need = pC + M * N * size;
      if (w.memory.buffer.byteLength < need) w.memory.grow(Math.ceil((need - w.memory.buffer.byteLength) / 65536));
      new F(w.memory.buffer, pA, M * K).forEach((_, i, a) => (a[i] = Math.sin(i)));
      new F(w.memory.buffer, pB, K * N).forEach((_, i, a) => (a[i] = Math.cos(i)));
      return () => w[name](tA, tB, M, N, K, 1, pA, tA ? M : K, pB, tB ? K : N, 0, pC, N);
    });
    const reps = Math.max(1, Math.round(2e7 / (M * N * K))); // a few ms a window
    const time = (f) => {
      const start = performance.now();
      for (let i = 0; i < reps; i++) f();
      return (performance.now() - start) / reps;
    };
    for (let i = 0; i < 5; i++) calls.forEach(time); // past V8's baseline tier
    const ta = [], tb = [], ratios = [];
    for (let p = 0; p < pairs; p++) {
      const first = p & 1;
      const t0 = time(calls[first]), t1 = time(calls[1 - first]);
      const [a, b] = first ? [t1, t0] : [t0, t1];
      ta.push(a);
      tb.push(b);
      ratios.push(b / a);
    }
    const gflops = (ms) => (2 * M * N * K / ms / 1e6).toFixed(1);
    console.log(`${dtype} ${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} ${M}×${N}×${K}`.padEnd(22),
      `A ${gflops(Math.min(...ta))} GFLOP/s, B ${gflops(Math.min(...tb))}, B ÷ A median ${median(ratios).toFixed(3)}`);
  }
}
