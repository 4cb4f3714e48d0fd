// `node dist/bench/lanes.js [rounds] [B,D,H,C …]`: the BLAS lanes (native/core/lanes.h) against
// OpenBLAS's own threads and the C program (bench/peers/c-openblas, the same step in C on the
// threaded OpenBLAS), float64 — the only dtype on lanes. Each round runs the three in turn (order
// rotated round by round): the public step with dX and preallocated out buffers, lanes on, lanes
// off, and one window of the C program. Per contender: the minimum and the median of the rounds'
// µs per step, and each over the C program's. Sizes default to (64,128,256,10) and (256,784,1024,10).
import { forwardBackward, getBlasLanes, getNumThreads, initParams, Rng, setBlasLanes } from '../lib';
import { buildCPeer, runCPeer } from './cpeer';

const rounds = Number(process.argv[2] ?? 7);
const sizes = (process.argv.length > 3 ? process.argv.slice(3) : ['64,128,256,10', '256,784,1024,10']).map((s) => s.split(',').map(Number));
if (!(Number.isInteger(rounds) && rounds >= 1) || sizes.some((d) => d.length !== 4 || d.some((n) => !(Number.isInteger(n) && n >= 1)))) {
  throw new RangeError('usage: node dist/bench/lanes.js [rounds ≥ 1] [B,D,H,C …] (positive integers)');
}
if (!getBlasLanes()) throw new Error('BLAS lanes do not load here (setBlasLanes(true) says why): nothing to compare');

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const peer = buildCPeer();
const threads = getNumThreads();
console.log(`float64, ${threads} thread(s), ${rounds} rounds; the C program: ${peer.path ? 'built' : `skipped (${peer.skipped})`}`);

try {
  for (const [B, D, H, C] of sizes) {
    const p = initParams({ D, H, C }, { seed: 0 });
    const rng = new Rng(1);
    const X = Float64Array.from({ length: B * D }, () => rng.uniform() * 2 - 1);
    const y = Int32Array.from({ length: B }, (_, i) => i % C);
    const out = { dW1: new Float64Array(D * H), db1: new Float64Array(H), dW2: new Float64Array(H * C), db2: new Float64Array(C), dX: new Float64Array(B * D) };
    // About 0.4 s of steps per window, as the C program's default window is a few tenths of a second.
    const steps = Math.max(20, Math.floor(4e10 / (6 * B * (D * H + H * C))));
    // The median of ten batches' µs per step, as the C program reports the median of its batches.
    const window = (lanes: boolean) => {
      setBlasLanes(lanes);
      for (let i = 0; i < 5; i++) forwardBackward(p, X, y, { inputGrad: true, out });
      const batches: number[] = [];
      const each = Math.max(2, Math.ceil(steps / 10));
      for (let b = 0; b < 10; b++) {
        const start = process.hrtime.bigint();
        for (let i = 0; i < each; i++) forwardBackward(p, X, y, { inputGrad: true, out });
        batches.push(Number(process.hrtime.bigint() - start) / 1e3 / each);
      }
      return median(batches);
    };
    const times: Record<'on' | 'off' | 'C', number[]> = { on: [], off: [], C: [] };
    const contenders: Array<['on' | 'off' | 'C', () => number]> = [
      ['on', () => window(true)],
      ['off', () => window(false)],
      ...(peer.path ? [['C', () => runCPeer(peer.path!, { B, D, H, C }, 'float64', 0.4, threads).medianUs] as ['C', () => number]] : []),
    ];
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < contenders.length; k++) {
        const [name, run] = contenders[(k + r) % contenders.length];
        times[name].push(run());
      }
    }
    const line = (name: 'on' | 'off' | 'C', label: string) => {
      const t = times[name];
      if (t.length === 0) return;
      const c = times.C.length ? `  ÷ C ${(Math.min(...t) / Math.min(...times.C)).toFixed(3)}× min, ${(median(t) / median(times.C)).toFixed(3)}× median` : '';
      console.log(`  ${label.padEnd(22)} min ${Math.min(...t).toFixed(1).padStart(9)} µs  median ${median(t).toFixed(1).padStart(9)} µs${c}`);
    };
    console.log(`(${B},${D},${H},${C}):`);
    line('on', 'lanes');
    line('off', "OpenBLAS's threads");
    line('C', 'the C program');
  }
} finally {
  setBlasLanes(true);
}
