// CPU-time comparison of native's step with the C program (bench/peers/c-openblas), alternately, for
// a machine shared with other work, where wall-time figures (npm run bench) swing by 2× from one
// run to the next: the time other processes take is not counted on either side. Meaningful with
// one OpenBLAS thread (idle spinning threads would count), so it sets OPENBLAS_NUM_THREADS=1 for
// both. Caveat: process CPU time includes V8's own helper threads (GC, compiler), so handgrad's
// medians read a little high; the minima are the figures to compare.
//
//   node bench/cputime.mjs 64,128,256,10 [f64|f32] [rounds] [--roots=/work/before,/work/main] [--prepared]
//
// --prepared: also the prepared step a training loop calls, seq.forwardBackwardInto(X, y, grads,
// { backend: 'native', reduction: 'mean', accumulate: false }) on a Sequential with the same weights.
//
// Each root is a built handgrad checkout (dist/, build/Release); each is timed in this process, on
// forwardBackward(params, X, y, { backend: 'native', inputGrad: true, out }) with bench/sizes.ts's
// data, one ~0.25 s CPU window per round, then the C program one window (its own CPU clock:
// `mlp_peer … cpu`). Prints per contender the lowest sample, the median of the windows' medians,
// both ÷ the C program's, and GFLOP/s at the lowest.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

process.env.OPENBLAS_NUM_THREADS = '1'; // before any addon loads OpenBLAS
const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = args.find((a) => a.startsWith('--roots='));
const positional = args.filter((a) => !a.startsWith('--'));
const prepared = args.includes('--prepared');
const roots = flag ? flag.slice('--roots='.length).split(',').map((r) => resolve(r)) : [resolve(here, '..')];
const dims = (positional[0] ?? '64,128,256,10').split(',').map(Number);
const dtype = (positional[1] ?? 'f64') === 'f32' ? 'float32' : 'float64';
const rounds = Number(positional[2] ?? 5);
if (dims.length !== 4 || !dims.every((x) => Number.isInteger(x) && x > 0) || !(rounds >= 1)) {
  process.stderr.write('usage: node bench/cputime.mjs B,D,H,C [f64|f32] [rounds] [--roots=DIR,DIR] [--prepared]\n');
  process.exit(2);
}
const [B, D, H, C] = dims;

const peer = join(here, 'peers', 'c-openblas', 'mlp_peer');
const make = spawnSync('make', ['-s', '-C', dirname(peer), 'mlp_peer'], { encoding: 'utf8' });
if (make.status !== 0 || !existsSync(peer)) {
  process.stderr.write(`the C program did not build: ${make.stderr || make.error?.message}\n`);
  process.exit(1);
}

const steps = [];
for (const root of roots) {
  const url = (p) => pathToFileURL(join(root, p)).href;
  const { forwardBackward } = await import(url('dist/lib/model.js'));
  const { makeProblem } = await import(url('dist/bench/sizes.js'));
  const p = makeProblem({ B, D, H, C }, dtype);
  const opts = { backend: 'native', inputGrad: true, out: p.out };
  steps.push({ name: root, step: () => forwardBackward(p.params, p.X, p.y, opts) });
  if (prepared) {
    const { Sequential } = await import(url('dist/lib/layers/index.js'));
    const seq = Sequential.mlp([D, H, C], { dtype, seed: 1 });
    for (const name of ['W1', 'b1', 'W2', 'b2']) seq.params[name].set(p.params[name]);
    const make = (n) => (dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
    const grads = { dX: make(B * D) };
    for (const [name, t] of Object.entries(seq.params)) grads[`d${name}`] = make(t.length);
    const into = { backend: 'native', reduction: 'mean', accumulate: false };
    steps.push({ name: `${root} prepared`, step: () => seq.forwardBackwardInto(p.X, p.y, grads, into) });
  }
}

const cpuUs = (d) => d.user + d.system;
/** One window: batches long enough for the µs clock, ≥ 5 samples and ~0.25 s of CPU. */
function window(step) {
  step();
  let n = 1;
  for (;;) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) step();
    if (cpuUs(process.cpuUsage(t0)) > 2000) break;
    n *= 2;
  }
  const samples = [];
  for (let spent = 0; spent < 250_000 || samples.length < 5; ) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) step();
    const us = cpuUs(process.cpuUsage(t0));
    samples.push(us / n);
    spent += us;
  }
  samples.sort((a, b) => a - b);
  return { min: samples[0], median: samples[samples.length >> 1] };
}

const results = new Map([...steps.map((s) => [s.name, []]), ['C program', []]]);
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? steps : [...steps].reverse();
  for (const s of order) results.get(s.name).push(window(s.step));
  const c = spawnSync(peer, [dtype === 'float64' ? 'f64' : 'f32', `${B},${D},${H},${C}`, '0.25', 'cpu'], { encoding: 'utf8', env: process.env });
  if (c.status !== 0) throw new Error(`mlp_peer failed: ${c.stderr}`);
  const j = JSON.parse(c.stdout.trim().split('\n').pop());
  results.get('C program').push({ min: j.min_us, median: j.median_us });
}

const low = (ws) => Math.min(...ws.map((w) => w.min));
const mid = (ws) => [...ws.map((w) => w.median)].sort((a, b) => a - b)[ws.length >> 1];
const cw = results.get('C program');
const flop = 6 * B * (D * H + H * C);
const w = Math.max(...[...results.keys()].map((k) => k.length));
console.log(`(${B},${D},${H},${C}) ${dtype}, 1 OpenBLAS thread, CPU time, ${rounds} alternating rounds`);
for (const [name, ws] of results) {
  console.log(
    `${name.padEnd(w)}  min ${low(ws).toFixed(2).padStart(10)} µs  median ${mid(ws).toFixed(2).padStart(10)} µs  ` +
      `÷ C min ${(low(ws) / low(cw)).toFixed(3)}  median ${(mid(ws) / mid(cw)).toFixed(3)}  ${(flop / low(ws) / 1e3).toFixed(1)} GFLOP/s`,
  );
}
