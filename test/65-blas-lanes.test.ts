// BLAS lanes (native/core/lanes.h, blas.h): the native backend's float64 products cut between its
// own threads on private single-threaded OpenBLAS copies, a layer's dW and dX side by side. Held to
// truths outside that code:
// 1. they load where setup installed Debian's libopenblas0-serial (else getBlasLanes() is false
//    and setBlasLanes(true) says why);
// 2. the bits of the process's OpenBLAS on one thread, every product whole (setBlasLanes(false),
//    setNumThreads(1)), at 1, 2 and 3 threads: two-layer steps, the input gradient, a deep
//    Sequential with accumulation, odd sizes, sizes cut by rows and by columns, products whose K
//    OpenBLAS's own threads block otherwise (its threaded driver halves a K between GEMM_Q and
//    2·GEMM_Q where the serial one rounds to its unroll: 2,566 of 25,600 entries of a 256×100×300
//    product differ between its 1 and 2 threads), so float64 results no longer depend on the
//    thread count. float32 products never take lanes (OpenBLAS's sgemm gives other bits for a
//    product cut in two), so they keep the bits of OpenBLAS's threads, which test/15 holds;
//    Measured with OpenBLAS's Haswell kernels (its choice on the CI's CPUs); under others
//    (OPENBLAS_CORETYPE=SkylakeX: small-matrix kernels for some blocks) the cut changes bits, and
//    these hold the results within 8 eps of those bits instead (test/03's bound between thread counts);
// 3. more threads than lanes can be loaded: the parts wait for a lane, nothing deadlocks, the bits
//    are unchanged;
// 4. the switch's argument check.
// Node threads sharing the lanes at once are test/10's "4 workers and the main thread at once".
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  forwardBackward, getBlasLanes, getNumThreads, HandgradError, initParams, Linear, ReLU, Sequential, setBlasLanes, setNumThreads, Tanh,
} from '../lib/index';
import type { Dtype } from '../lib/types';
import { coreBinding } from '../lib/binding';
import { errEps, randomArray, randomLabels, sameBits, thrown, typed } from './helpers';

const THREADS = getNumThreads();
const SERIAL = '/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0';
const LANES = getBlasLanes();
/** Whether OpenBLAS runs the kernels whose serial dgemm gives the same bits whole or cut (measured). */
const CUT_INVARIANT = coreBinding().blasKernels()[0] === 'Haswell';

afterEach(() => {
  if (LANES) setBlasLanes(true);
  setNumThreads(THREADS);
});

/** Every output of fn as raw bytes, with lanes on or off. */
function run(lanes: boolean, threads: number, fn: () => Record<string, Float64Array | Float32Array | number>) {
  setBlasLanes(lanes);
  setNumThreads(threads);
  try {
    return fn();
  } finally {
    setBlasLanes(LANES);
    setNumThreads(THREADS);
  }
}

function expectSameBits(a: Record<string, Float64Array | Float32Array | number>, b: typeof a, what: string, exact = true) {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    const x = a[k], y = b[k];
    if (typeof x === 'number' || typeof y === 'number') {
      if (exact) expect(Object.is(x, y), `${what}: ${k} ${x} vs ${y}`).toBe(true);
      else expect(errEps([x as number], [y as number], 'float64'), `${what}: ${k} ${x} vs ${y}`).toBeLessThanOrEqual(8);
    } else if (exact) expect(sameBits(x, y), `${what}: ${k} differs`).toBe(true);
    else expect(errEps(x, y, 'float64'), `${what}: ${k}`).toBeLessThanOrEqual(8);
  }
}

describe('where they load', () => {
  it('load where libopenblas0-serial is installed; elsewhere the switch says why', () => {
    if (existsSync(SERIAL)) {
      expect(getBlasLanes()).toBe(true);
      expect(() => setBlasLanes(true)).not.toThrow();
    } else {
      expect(getBlasLanes()).toBe(false);
      const e = thrown(() => setBlasLanes(true));
      expect(e).toBeInstanceOf(HandgradError);
      expect((e as HandgradError).code).toBe('ERR_LANES_UNAVAILABLE');
      expect(e.message).toMatch(/BLAS lanes are unavailable here: .+/);
    }
  });
});

describe.skipIf(!LANES)('the bits of OpenBLAS on one thread, at any thread count', () => {
  const twoLayer = (dims: { B: number; D: number; H: number; C: number }, dtype: Dtype, seed: number) => {
    const p = initParams({ D: dims.D, H: dims.H, C: dims.C }, { seed, dtype });
    const X = typed(dtype, randomArray(dims.B * dims.D, seed + 1));
    const y = randomLabels(dims.B, dims.C, seed + 2);
    return () => {
      const r = forwardBackward(p, X, y, { inputGrad: true });
      return { loss: r.loss, ...r.grads } as Record<string, Float64Array | Float32Array | number>;
    };
  };

  // Products above OpenBLAS's threading threshold (2^18 multiply-adds), cut by rows (M ≥ N) and
  // by columns; odd sizes that no 16-wide panel divides.
  const SIZES = [
    { B: 64, D: 128, H: 256, C: 10 },
    { B: 256, D: 300, H: 100, C: 7 }, // K = 300 in the forward: OpenBLAS's own threads block it otherwise
    { B: 33, D: 700, H: 301, C: 13 },
    { B: 517, D: 64, H: 96, C: 3 },
  ];
  for (const dims of SIZES) {
    for (const threads of [1, 2, 3]) {
      it(`two-layer step (${dims.B},${dims.D},${dims.H},${dims.C}) float64 at ${threads} thread(s)`, () => {
        const step = twoLayer(dims, 'float64', dims.B + threads);
        expectSameBits(run(true, threads, step), run(false, 1, step), 'lanes vs OpenBLAS on one thread', CUT_INVARIANT);
      });
    }
  }

  it('float32 products stay on OpenBLAS\'s threads: its bits at 2 threads', () => {
    const step = twoLayer({ B: 64, D: 128, H: 256, C: 10 }, 'float32', 5);
    expectSameBits(run(true, 2, step), run(false, 2, step), 'float32');
  });

  it('a deep Sequential, the gradients of a second call accumulated into the first\'s', () => {
    const step = () => {
      const net = new Sequential([
        new Linear(200, 160, { seed: 1 }), new Tanh(), new Linear(160, 120, { seed: 2 }), new ReLU(),
        new Linear(120, 90, { seed: 3 }), new ReLU(), new Linear(90, 10, { seed: 4 }),
      ]);
      const X = randomArray(96 * 200, 7);
      const y = randomLabels(96, 10, 8);
      const first = net.forwardBackward(X, y, { inputGrad: true });
      const sums = Object.fromEntries(Object.entries(first.grads).map(([k, g]) => [k, Float64Array.from(g)]));
      const again = net.forwardBackward(X, y, { out: sums, accumulate: true });
      return { loss: first.loss as number, again: again.loss as number, ...first.grads, ...Object.fromEntries(Object.entries(sums).map(([k, g]) => [`sum ${k}`, g])) };
    };
    for (const threads of [1, 2, 3]) expectSameBits(run(true, threads, step), run(false, 1, step), `${threads} threads`, CUT_INVARIANT);
  });

  it('more threads than lanes can be loaded (12 parts for 8 lanes at most): every part waits its turn, the bits are unchanged', () => {
    const step = twoLayer({ B: 64, D: 512, H: 512, C: 10 }, 'float64', 3);
    expectSameBits(run(true, 12, step), run(false, 1, step), 'twelve parts vs whole', CUT_INVARIANT);
  });
});

describe.skipIf(!LANES)('gradients scanned block by block as the lanes write them', () => {
  // Finite inputs, a finite forward and loss, and one gradient past float64's range: dW1 (X large, W1
  // subnormal) or dX (W1 large, X subnormal). X·W1 is ~1e-300 either way, W2's first column twice
  // the others (1e300), so the softmax is one-hot and dZ1 ≈ 7.8e297 on every row whose label is not 0.
  const B = 64, D = 128, H = 256, C = 10;
  const overflowing = (x: number, w1: number) => {
    const p = initParams({ D, H, C }, { seed: 1 });
    p.W1.fill(w1);
    p.b1.fill(0);
    for (let k = 0; k < H; k++) for (let c = 0; c < C; c++) p.W2[k * C + c] = c === 0 ? 1e300 : 0.5e300;
    p.b2.fill(0);
    return { p, X: new Float64Array(B * D).fill(x), y: randomLabels(B, C, 3) };
  };
  const message = (lanes: boolean, threads: number, c: ReturnType<typeof overflowing>) => {
    setBlasLanes(lanes);
    setNumThreads(threads);
    try {
      return thrown(() => forwardBackward(c.p, c.X, c.y, { inputGrad: true })).message;
    } finally {
      setBlasLanes(LANES);
      setNumThreads(THREADS);
    }
  };
  for (const [what, x, w1] of [['dW1', 1e10, 1e-310], ['dX', 1e-320, 1e20]] as const) {
    it(`${what} overflows: the same failure as OpenBLAS's threads and a scan after the backward report`, () => {
      const c = overflowing(x, w1);
      const want = message(false, 2, c);
      expect(want).toMatch(new RegExp(`finite gradients but ${what}`));
      for (const threads of [1, 2, 3]) expect(message(true, threads, c)).toBe(want);
    });
  }
});

describe('the switch', () => {
  it('takes booleans only', () => {
    for (const bad of [1, 'true', null, undefined]) {
      const e = thrown(() => setBlasLanes(bad as unknown as boolean));
      expect(e).toBeInstanceOf(TypeError);
      expect(e.message).toMatch(/boolean for on/);
    }
    expect(getBlasLanes()).toBe(LANES);
  });

  it('off and on again', () => {
    setBlasLanes(false);
    expect(getBlasLanes()).toBe(false);
    if (LANES) {
      setBlasLanes(true);
      expect(getBlasLanes()).toBe(true);
    }
  });
});
