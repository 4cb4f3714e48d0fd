// The exact mode's cost (dev tool): one forward+backward of Linear-ReLU-Linear on the core addon,
// the default mode and the exact mode interleaved step by step in one run (same buffers, same
// thread), median of each; the ratio is exact / default.
//   node test/exact/speed.mjs [seconds per shape, default 2]
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const b = require('../../build/Release/handgrad.node');
const budget = Number(process.argv[2] ?? 2) * 1000;

function setup(dtype, B, D, H, C) {
  const F = dtype === 'float32' ? Float32Array : Float64Array;
  const kinds = new Int32Array([0, 1, 0]);
  const widths = new Int32Array([D, H, H, C]);
  let s = 12345;
  const rnd = (n, scale) => F.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * scale);
  const params = [rnd(D * H, 2 / Math.sqrt(D)), rnd(H, 0.1), rnd(H * C, 2 / Math.sqrt(H)), rnd(C, 0.1)];
  const X = rnd(B * D, 2);
  const y = Int32Array.from({ length: B }, (_, i) => (i * 7) % C);
  const mode = (exact) => {
    const handle = b.stackPrepare(kinds, widths, dtype === 'float32');
    b.stackExact(handle, exact);
    const ws = new F(b.stackLayout(handle, B)[4]);
    const grads = params.map((p) => new F(p.length));
    return () => b.stackForwardBackward(handle, ws, X, y, B, null, 0, false, ...params, ...grads);
  };
  return [mode(false), mode(true)];
}

const median = (a) => a.sort((x, y) => x - y)[a.length >> 1];
console.log('dtype    shape (B,D,H,C)        default µs   exact µs   exact/default');
for (const dtype of ['float64', 'float32']) {
  for (const [B, D, H, C] of [[4, 5, 10, 3], [64, 128, 256, 10], [256, 784, 1024, 10]]) {
    const [plain, exact] = setup(dtype, B, D, H, C);
    for (let i = 0; i < 3; i++) { plain(); exact(); } // warm: caches, the exact mode's scratch
    const t = [[], []];
    const start = performance.now();
    while (performance.now() - start < budget || t[0].length < 5) {
      for (const [k, f] of [[0, plain], [1, exact]]) {
        const t0 = performance.now();
        f();
        t[k].push(performance.now() - t0);
      }
    }
    const [p, e] = t.map(median);
    console.log(`${dtype}  ${`(${B},${D},${H},${C})`.padEnd(20)} ${(p * 1000).toFixed(1).padStart(11)} ${(e * 1000).toFixed(1).padStart(10)}   ${(e / p).toFixed(2)}×  (${t[0].length} steps each)`);
  }
}
