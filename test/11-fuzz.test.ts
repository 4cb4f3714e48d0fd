// Fuzzing: "never crashes, never silently wrong" on inputs nobody would write by hand.
//   (a) numerics: random shapes (1s, primes), dtypes, activations, reductions, value scales from
//       denormals to 1e300 and label patterns give either a RangeError that says what overflowed,
//       or a finite loss ≥ 0 with finite gradients on which native and ts agree; a network that
//       classifies perfectly has a per-example loss in [0, log C); the loss keeps its relative
//       precision when the logits are large. Agreement is judged against a first-order rounding
//       error analysis (errorScale), not a fixed number of epsilon: scales of 1e±300 and
//       cancellation make any fixed tolerance either flaky or blind.
//   (b) safetensors: mutated and truncated real files and random headers parse or are ERR_FILE,
//       and a declared size is never allocated.
//   (c) CSV: random tables parse to exactly what was written, a bad cell names its line; random
//       bytes give a Dataset or an ERR_FILE.
//   (d) edge numerics (logits ±1e4, all-equal logits, C = 1 and 2, B = 1, H = 1) against an
//       independent float64 reference, itself checked by finite differences.
// Seeds are fixed: a failure reproduces, and fast-check prints the shrunk counterexample.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forwardBackward, HandgradError, predict, readSafetensors, writeSafetensors } from '../lib';
import { paramsFromFile } from '../lib/checkpoint';
import { readCsv } from '../lib/data';
import type { Activation, FloatArray, Reduction } from '../lib/types';
import { EPS, FIXTURES, numericalGrad, randomArray, randomLabels, referenceLoss } from './helpers';

type Dtype = 'float64' | 'float32';
const GRADS = ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const;
/** Smallest normal number: below it rounding is absolute (denormals), not relative. */
const MIN_NORMAL = { float64: 2 ** -1022, float32: 2 ** -126 } as const;
const PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
const allFinite = (a: ArrayLike<number>) => Array.prototype.every.call(a, Number.isFinite);

/** max|a − b| / max(max|b|, floor), as test/05. */
function normwise(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  const scale = Math.max(maxAbs(b), floor);
  return scale === 0 ? diff : diff / scale;
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The float64 reference and the size of a legitimate rounding error

interface Net {
  W1: ArrayLike<number>;
  b1: ArrayLike<number>;
  W2: ArrayLike<number>;
  b2: ArrayLike<number>;
}

/**
 * Loss and every gradient in float64, in closed form, written from the definitions (not from
 * lib/): dZ2 = (softmax(Z2) − onehot(y))·s, then the chain rule through each product. Checked
 * itself against finite differences of helpers.referenceLoss below.
 */
function referenceStep(p: Net, X: ArrayLike<number>, y: ArrayLike<number>, act: Activation, red: Reduction) {
  const H = p.b1.length;
  const C = p.b2.length;
  const D = p.W1.length / H;
  const B = y.length;
  const s = red === 'mean' ? 1 / B : 1;
  const g = { dX: new Float64Array(B * D), dW1: new Float64Array(D * H), db1: new Float64Array(H), dW2: new Float64Array(H * C), db2: new Float64Array(C) };
  let loss = 0;
  for (let b = 0; b < B; b++) {
    const z1 = Array.from({ length: H }, (_, h) => {
      let z = p.b1[h];
      for (let d = 0; d < D; d++) z += X[b * D + d] * p.W1[d * H + h];
      return z;
    });
    const a1 = z1.map((z) => (act === 'relu' ? (z > 0 ? z : 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-z)) : Math.tanh(z)));
    const da1dz = z1.map((z, h) => (act === 'relu' ? (z > 0 ? 1 : 0) : act === 'sigmoid' ? a1[h] * (1 - a1[h]) : 1 - a1[h] * a1[h]));
    const z2 = Array.from({ length: C }, (_, c) => {
      let z = p.b2[c];
      for (let h = 0; h < H; h++) z += a1[h] * p.W2[h * C + c];
      return z;
    });
    const m = Math.max(...z2);
    const e = z2.map((z) => Math.exp(z - m));
    const sum = e.reduce((a, v) => a + v, 0);
    loss += Math.log(sum) + m - z2[y[b]];
    const dz2 = e.map((v, c) => (v / sum - (c === y[b] ? 1 : 0)) * s);
    const dz1 = new Float64Array(H);
    for (let h = 0; h < H; h++) {
      let da = 0;
      for (let c = 0; c < C; c++) {
        g.dW2[h * C + c] += a1[h] * dz2[c];
        da += dz2[c] * p.W2[h * C + c];
      }
      dz1[h] = da * da1dz[h];
      g.db1[h] += dz1[h];
    }
    for (let c = 0; c < C; c++) g.db2[c] += dz2[c];
    for (let d = 0; d < D; d++) {
      for (let h = 0; h < H; h++) {
        g.dW1[d * H + h] += X[b * D + d] * dz1[h];
        g.dX[b * D + d] += dz1[h] * p.W1[d * H + h];
      }
    }
  }
  return { loss: loss * s, grads: g };
}

/**
 * How large the rounding error of a forward/backward step may legitimately be, per tensor: a
 * first-order error analysis run alongside the float64 reference. Each quantity carries its size V
 * (the sum of the absolute values of the terms it is made of, which is what rounding errors scale
 * with) and E, its possible error in units of u = n·eps (n the longest sum); a product A·B gets
 * E = |A||B| + E_A|B| + |A|E_B. The activation adds its own sensitivity (Lipschitz constant times
 * the error of Z1), softmax that of the logits (δp ≤ p·(δz_c + max δz)), and a ReLU unit whose Z1
 * is within rounding of 0 may take either branch (its dZ1 may differ by the whole of dA1).
 * Two implementations that both round correctly differ by at most about 2·u·E; anything beyond a
 * small multiple of that is a mistake, not rounding. Returns max E per tensor (∞ when it overflows).
 */
function errorScale(p: Net, X: ArrayLike<number>, y: ArrayLike<number>, act: Activation, red: Reduction, u: number, denormMin = 0) {
  // Below the smallest normal number rounding is absolute: each operation may add denormMin.
  const tiny = denormMin / u;
  const H = p.b1.length;
  const C = p.b2.length;
  const D = p.W1.length / H;
  const B = y.length;
  const s = red === 'mean' ? 1 / B : 1;
  const lip = act === 'relu' ? 1 : act === 'sigmoid' ? 0.25 : 1;
  const E = { loss: 0, dX: 0, dW1: 0, db1: 0, dW2: 0, db2: 0 };
  let magZ = 0; // the largest Σ|terms| of a Z1 or logit entry: near the overflow threshold, either side is right
  const eW1 = new Float64Array(D * H);
  const eb1 = new Float64Array(H);
  const eW2 = new Float64Array(H * C);
  const eb2 = new Float64Array(C);
  let lossE = 0;
  for (let b = 0; b < B; b++) {
    const z1 = new Float64Array(H);
    const z1abs = new Float64Array(H);
    for (let h = 0; h < H; h++) {
      let z = p.b1[h];
      let za = Math.abs(p.b1[h]);
      for (let d = 0; d < D; d++) {
        z += X[b * D + d] * p.W1[d * H + h];
        za += Math.abs(X[b * D + d] * p.W1[d * H + h]);
      }
      z1[h] = z;
      z1abs[h] = za;
      magZ = Math.max(magZ, za);
    }
    const a1 = Array.from(z1, (z) => (act === 'relu' ? (z > 0 ? z : 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-z)) : Math.tanh(z)));
    const eA1 = a1.map((a, h) => lip * (z1abs[h] + (D + 1) * tiny) + Math.abs(a) + tiny);
    const dact = a1.map((a, h) => (act === 'relu' ? (z1[h] > 0 ? 1 : 0) : act === 'sigmoid' ? a * (1 - a) : 1 - a * a));
    const eDact = a1.map((a, h) => (act === 'relu' ? 0 : act === 'sigmoid' ? eA1[h] + 1 : 2 * Math.abs(a) * eA1[h] + 1));
    // A ReLU unit within rounding of its kink: either branch is a correct rounding of the truth.
    const flips = Array.from(z1, (z, h) => act === 'relu' && Math.abs(z) <= 8 * u * z1abs[h]);
    const z2 = new Float64Array(C);
    const eZ2 = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      let z = p.b2[c];
      let e = Math.abs(p.b2[c]) + (H + 1) * tiny;
      for (let h = 0; h < H; h++) {
        z += a1[h] * p.W2[h * C + c];
        e += Math.abs(a1[h] * p.W2[h * C + c]) + eA1[h] * Math.abs(p.W2[h * C + c]);
      }
      z2[c] = z;
      eZ2[c] = e;
      magZ = Math.max(magZ, e);
    }
    const m = Math.max(...z2);
    const maxEz = Math.max(...eZ2);
    const ex = Array.from(z2, (z) => Math.exp(z - m));
    const sum = ex.reduce((a, v) => a + v, 0);
    const prob = ex.map((v) => v / sum);
    lossE += 2 * maxEz + Math.abs(Math.log(sum)) + Math.abs(m) + Math.abs(z2[y[b]]) + tiny;
    // dZ2 = (p − onehot)·s: its size and its error
    const vZ2 = prob.map((q, c) => Math.abs(q - (c === y[b] ? 1 : 0)) * s);
    const eZ2g = prob.map((q, c) => (q * (eZ2[c] + maxEz) + 1) * s + vZ2[c] + tiny);
    for (let c = 0; c < C; c++) eb2[c] += eZ2g[c] + vZ2[c] + tiny;
    const vZ1 = new Float64Array(H);
    const eZ1 = new Float64Array(H);
    for (let h = 0; h < H; h++) {
      let vA = 0;
      let eA = 0;
      for (let c = 0; c < C; c++) {
        const w = Math.abs(p.W2[h * C + c]);
        vA += vZ2[c] * w;
        eA += eZ2g[c] * w;
        eW2[h * C + c] += Math.abs(a1[h]) * (eZ2g[c] + vZ2[c]) + eA1[h] * vZ2[c] + tiny;
      }
      eA += vA + (C + 1) * tiny;
      vZ1[h] = vA * Math.abs(dact[h]);
      eZ1[h] = eA * Math.abs(dact[h]) + vA * eDact[h] + vZ1[h] + tiny + (flips[h] ? vA / u : 0);
      eb1[h] += eZ1[h] + vZ1[h] + tiny;
    }
    let dXmax = 0;
    for (let d = 0; d < D; d++) {
      const x = Math.abs(X[b * D + d]);
      let e = (H + 1) * tiny;
      for (let h = 0; h < H; h++) {
        eW1[d * H + h] += x * (eZ1[h] + vZ1[h]) + tiny;
        e += (eZ1[h] + vZ1[h]) * Math.abs(p.W1[d * H + h]);
      }
      dXmax = Math.max(dXmax, e);
    }
    E.dX = Math.max(E.dX, dXmax);
  }
  const mx = (a: Float64Array) => a.reduce((m, v) => (Number.isNaN(v) ? Infinity : Math.max(m, v)), 0);
  E.dW1 = mx(eW1);
  E.db1 = mx(eb1);
  E.dW2 = mx(eW2);
  E.db2 = mx(eb2);
  E.loss = lossE * s;
  for (const k of Object.keys(E) as (keyof typeof E)[]) if (Number.isNaN(E[k])) E[k] = Infinity;
  return { ...E, magnitude: Math.max(Number.isNaN(magZ) ? Infinity : magZ, ...Object.values(E)) };
}

const DENORM_MIN = { float64: 2 ** -1074, float32: 2 ** -149 } as const;
const MAX_FINITE = { float64: Number.MAX_VALUE, float32: 3.4028234663852886e38 } as const;

/**
 * max|a − b| over 4·(u·E + n·denorm_min): at most 1 when a and b differ by what rounding allows
 * (twice the first-order bound, twice again for slack), far above 1 for a wrong formula. E comes
 * from errorScale with denormMin given, so absolute rounding below the normal range is in it.
 */
function beyondRounding(a: ArrayLike<number>, b: ArrayLike<number>, E: number, u: number, dtype: Dtype): number {
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  if (Number.isNaN(diff)) return Infinity;
  const allowed = 4 * (u * E + (u / EPS[dtype]) * DENORM_MIN[dtype]);
  return diff === 0 ? 0 : diff / allowed;
}

// ---------------------------------------------------------------------------------------------
// (a) numerics

const dimArb = fc.oneof(fc.constant(1), fc.constantFrom(...PRIMES), fc.integer({ min: 1, max: 40 }));

/** How a tensor's entries are spread: a power of ten, a denormal, the extremes, or all zeros. */
const scaleArb = (dtype: Dtype) =>
  dtype === 'float64'
    ? fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: -300, max: 300 }).map((e) => 10 ** e) },
        { weight: 2, arbitrary: fc.constantFrom(1, 0.1, 10) },
        { weight: 1, arbitrary: fc.constantFrom(1e-310, 5e-324, 2 ** -1022, 1e308, 1.7976931348623157e308, 0) },
      )
    : fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: -44, max: 38 }).map((e) => Math.fround(10 ** e)) },
        { weight: 2, arbitrary: fc.constantFrom(1, 0.1, 10) },
        { weight: 1, arbitrary: fc.constantFrom(1e-40, 2 ** -149, 2 ** -126, 3e38, 3.4028234663852886e38, 0) },
      );

const tensorArb = (dtype: Dtype) => fc.record({ scale: scaleArb(dtype), pattern: fc.constantFrom('random', 'random', 'constant', 'alternating'), seed: fc.integer({ min: 1, max: 1e6 }) });
type TensorSpec = { scale: number; pattern: string; seed: number };

function makeTensor(n: number, t: TensorSpec, dtype: Dtype): FloatArray {
  const A = (dtype === 'float64' ? Float64Array : Float32Array) as Float64ArrayConstructor;
  const s = t.scale;
  if (t.pattern === 'constant') return new A(n).fill(s);
  if (t.pattern === 'alternating') return A.from({ length: n }, (_, i) => (i % 2 ? -s : s));
  return A.from(randomArray(n, t.seed), (v) => v * s);
}

function makeLabels(B: number, C: number, pattern: string, seed: number): Int32Array {
  if (pattern === 'zeros') return new Int32Array(B);
  if (pattern === 'last') return new Int32Array(B).fill(C - 1);
  if (pattern === 'cycle') return Int32Array.from({ length: B }, (_, i) => i % C);
  return randomLabels(B, C, seed);
}

const caseArb = fc.constantFrom<Dtype>('float64', 'float32').chain((dtype) =>
  fc.record({
    dtype: fc.constant(dtype),
    B: dimArb,
    D: dimArb,
    H: dimArb,
    C: dimArb,
    activation: fc.constantFrom<Activation>('relu', 'sigmoid', 'tanh'),
    reduction: fc.constantFrom<Reduction>('mean', 'sum'),
    labels: fc.constantFrom('random', 'zeros', 'last', 'cycle'),
    seed: fc.integer({ min: 1, max: 1e6 }),
    X: tensorArb(dtype),
    W1: tensorArb(dtype),
    b1: tensorArb(dtype),
    W2: tensorArb(dtype),
    b2: tensorArb(dtype),
  }),
);
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function build(c: Case) {
  const { B, D, H, C, dtype } = c;
  return {
    p: { W1: makeTensor(D * H, c.W1, dtype), b1: makeTensor(H, c.b1, dtype), W2: makeTensor(H * C, c.W2, dtype), b2: makeTensor(C, c.b2, dtype) },
    X: makeTensor(B * D, c.X, dtype),
    y: makeLabels(B, C, c.labels, c.seed),
  };
}

type Outcome = { ok: true; loss: number; grads: Record<(typeof GRADS)[number], FloatArray> } | { ok: false; error: unknown };

function run(c: Case, backend: 'native' | 'ts', reduction: Reduction = c.reduction): Outcome {
  const { p, X, y } = build(c);
  try {
    const r = forwardBackward(p, X, y, { backend, activation: c.activation, reduction, inputGrad: true });
    return { ok: true, loss: r.loss, grads: r.grads as Outcome extends { grads: infer G } ? G : never };
  } catch (error) {
    return { ok: false, error };
  }
}

const shape = (c: Case) => JSON.stringify({ ...c, X: c.X.scale, W1: c.W1.scale, b1: c.b1.scale, W2: c.W2.scale, b2: c.b2.scale });

/** Either a RangeError that says what overflowed, or a finite loss ≥ 0 and finite gradients. */
function neverSilentlyWrong(c: Case, o: Outcome, backend: string): void {
  if (!o.ok) {
    // Every input is finite here, so the only acceptable refusal is an overflow, and it must say so.
    expect(o.error, `${backend} ${shape(c)}`).toBeInstanceOf(RangeError);
    expect((o.error as Error).message, `${backend} ${shape(c)}`).toMatch(/^Expected .*overflow/);
    return;
  }
  expect(Number.isFinite(o.loss) && o.loss >= 0, `${backend}: loss ${o.loss} for ${shape(c)}`).toBe(true);
  for (const k of GRADS) expect(allFinite(o.grads[k]), `${backend}: ${k} not finite for ${shape(c)}`).toBe(true);
}

describe('(a) numerics under random shapes, dtypes and scales from denormal to 1e300', () => {
  it('never silently wrong: a RangeError naming the overflow, or a finite loss ≥ 0 and finite gradients (native and ts)', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        neverSilentlyWrong(c, run(c, 'native'), 'native');
        neverSilentlyWrong(c, run(c, 'ts'), 'ts');
      }),
      { numRuns: 400, seed: 611 },
    );
  });

  it('where both succeed with finite results: native and ts agree to a few epsilon, and sum = B·mean', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const n = run(c, 'native');
        const t = run(c, 'ts');
        const finite = (o: Outcome) => o.ok && Number.isFinite(o.loss) && GRADS.every((k) => allFinite(o.grads[k]));
        const { dtype, B, D, H, C } = c;
        const u = EPS[dtype] * Math.max(B, D, H, C);
        const { p, X, y } = build(c);
        const E = errorScale(p, X, y, c.activation, c.reduction, u, DENORM_MIN[dtype]);
        const what = shape(c);
        // Both refuse or both compute: an overflow is a property of the numbers, not of a backend,
        // unless some sum comes within rounding of the largest finite number (then either is right).
        if (n.ok !== t.ok) {
          const msg = `native ${n.ok ? 'computed' : (n.error as Error).message}, ts ${t.ok ? 'computed' : (t.error as Error).message}: ${what}`;
          expect(E.magnitude, msg).toBeGreaterThanOrEqual(MAX_FINITE[dtype] * (1 - 8 * u));
          return;
        }
        if (!n.ok || !t.ok) {
          expect(((n as { error: Error }).error).message).toBe((t as { error: Error }).error.message);
          return;
        }
        if (!finite(n) || !finite(t)) return; // the property above reports these
        expect(beyondRounding([n.loss], [t.loss], E.loss, u, dtype), `loss ${n.loss} vs ${t.loss}: ${what}`).toBeLessThanOrEqual(1);
        for (const k of GRADS) expect(beyondRounding(n.grads[k], t.grads[k], E[k], u, dtype), `${k}: ${what}`).toBeLessThanOrEqual(1);

        // sum = B·mean for the loss and every gradient (each is scaled by B exactly in the math).
        const other = c.reduction === 'mean' ? 'sum' : 'mean';
        const o = run(c, 'native', other);
        if (!o.ok || !finite(o)) return;
        const [sum, mean] = (c.reduction === 'sum' ? [n, o] : [o, n]) as [typeof n, typeof n];
        // Both results carry their own rounding; the mean's, scaled by B, is B times larger.
        const Em = c.reduction === 'mean' ? E : errorScale(p, X, y, c.activation, 'mean', u, DENORM_MIN[dtype]);
        const Esum = c.reduction === 'sum' ? E : errorScale(p, X, y, c.activation, 'sum', u, DENORM_MIN[dtype]);
        const Es = Object.fromEntries(Object.keys(E).map((k) => [k, Esum[k as keyof typeof E] + B * Em[k as keyof typeof E]])) as typeof E;
        const scaled = (a: ArrayLike<number>) => Array.from(a, (v) => v * B);
        expect(beyondRounding([mean.loss * B], [sum.loss], Es.loss, u, dtype), `B·mean loss: ${what}`).toBeLessThanOrEqual(1);
        for (const k of GRADS) expect(beyondRounding(scaled(mean.grads[k]), sum.grads[k], Es[k], u, dtype), `B·mean ${k}: ${what}`).toBeLessThanOrEqual(1);
      }),
      { numRuns: 400, seed: 612 },
    );
  });

  it('a network that classifies perfectly: per-example loss in [0, log C), predict = y, the loss as recomputed from its logits', () => {
    // X rows are onehot(y)·s in the first C features (random values elsewhere); W1 maps feature c
    // to hidden unit c with weight w and the other features only to the other hidden units; W2
    // maps hidden unit c to class c with weight v, the other units to nothing. So the logits are
    // k + margin·onehot(y) with margin = v·(act(s·w) − act(0)) > 0, whatever the extra units do.
    fc.assert(
      fc.property(
        fc.record({
          dtype: fc.constantFrom<Dtype>('float64', 'float32'),
          B: dimArb,
          C: fc.oneof(fc.constant(2), fc.constantFrom(...PRIMES), fc.integer({ min: 2, max: 40 })),
          extraD: fc.integer({ min: 0, max: 7 }),
          extraH: fc.integer({ min: 0, max: 7 }),
          activation: fc.constantFrom<Activation>('relu', 'sigmoid', 'tanh'),
          reduction: fc.constantFrom<Reduction>('mean', 'sum'),
          backend: fc.constantFrom<'native' | 'ts'>('native', 'ts'),
          labels: fc.constantFrom('random', 'zeros', 'last', 'cycle'),
          // margin from about 0.05 (relu: s·w·v ≥ 10^-1.3) up to 1e30 (1e300 in float64)
          s: fc.double({ min: 0, max: 10, noNaN: true }),
          w: fc.double({ min: -1.3, max: 10, noNaN: true }),
          v: fc.double({ min: 0, max: 10, noNaN: true }),
          k: fc.double({ min: -1e4, max: 1e4, noNaN: true }),
          seed: fc.integer({ min: 1, max: 1e6 }),
        }),
        (q) => {
          const { dtype, B, C, extraD, extraH, activation, reduction, backend } = q;
          const D = C + extraD;
          const H = C + extraH;
          const lim = dtype === 'float64' ? 100 : 10;
          const s = 10 ** Math.min(q.s, lim);
          const w = 10 ** Math.min(q.w, lim);
          const v = 10 ** Math.min(q.v, lim);
          const A = dtype === 'float64' ? Float64Array : Float32Array;
          const y = makeLabels(B, C, q.labels, q.seed);
          const X = new A(B * D);
          const noise = randomArray(B * D, q.seed + 1);
          for (let b = 0; b < B; b++) {
            X[b * D + y[b]] = s;
            for (let d = C; d < D; d++) X[b * D + d] = noise[b * D + d];
          }
          const W1 = new A(D * H);
          const r1 = randomArray(D * H, q.seed + 2);
          for (let c = 0; c < C; c++) W1[c * H + c] = w;
          for (let d = 0; d < D; d++) for (let h = C; h < H; h++) W1[d * H + h] = r1[d * H + h];
          const W2 = new A(H * C);
          for (let c = 0; c < C; c++) W2[c * C + c] = v;
          const p = { W1, b1: new A(H), W2, b2: new A(C).fill(q.k) };
          const r = forwardBackward(p, X, y, { backend, activation, reduction, cache: true, inputGrad: true });
          const what = JSON.stringify({ ...q, D, H });
          expect(predict(p, X, { backend, activation }), what).toEqual(y);
          const mean = reduction === 'mean' ? r.loss : r.loss / B;
          expect(mean, what).toBeGreaterThanOrEqual(0);
          expect(mean, what).toBeLessThan(Math.log(C));
          // The loss from the returned logits, in float64 (log Σ_c exp(z_c − z_y), per example).
          const z = r.cache!.logits;
          let total = 0;
          for (let b = 0; b < B; b++) {
            const zy = z[b * C + y[b]];
            let sum = 0;
            for (let c = 0; c < C; c++) sum += Math.exp(z[b * C + c] - zy);
            expect(Math.log(sum), what).toBeLessThan(Math.log(C));
            total += Math.log(sum);
          }
          const want = reduction === 'mean' ? total / B : total;
          expect(Math.abs(r.loss - want), what).toBeLessThanOrEqual(8 * EPS[dtype] * Math.max(want, MIN_NORMAL[dtype]) + 1e-300);
          for (const k of GRADS) expect(allFinite(r.grads[k]!), `${k} ${what}`).toBe(true);
        },
      ),
      { numRuns: 400, seed: 613 },
    );
  });
  // Minimal overflow cases (loss, gradients) are named tests in test/04-bad-input.test.ts.
});

describe('(a) the loss keeps its relative precision when the logits are large', () => {
  // logits [2^50 + 0.25, 2^50] (exact: A1 = 1, W2 = [0.25, 0], b2 = 2^50): the loss of label 0 is
  // log(1 + e^−0.25) = 0.5759…, of label 1 0.25 more. Computed as log Σ exp(z − m) + m − z_y, the
  // sum with m = 2^50 rounds to a multiple of 0.25 first (0.5 and 0.75: 13% and 9% off);
  // (m − z_y) + log Σ exp(z − m) is exact to the last bits, as PyTorch's log_softmax is.
  const p = { W1: new Float64Array([1]), b1: new Float64Array([0]), W2: new Float64Array([0.25, 0]), b2: new Float64Array([2 ** 50, 2 ** 50]) };
  const X = new Float64Array([1]);
  it.each(['native', 'ts'] as const)('%s', (backend) => {
    const want = [Math.log1p(Math.exp(-0.25)), 0.25 + Math.log1p(Math.exp(-0.25))];
    for (const label of [0, 1]) {
      const r = forwardBackward(p, X, [label], { backend });
      expect(Math.abs(r.loss - want[label]) / want[label], `label ${label}: loss ${r.loss}, want ${want[label]}`).toBeLessThanOrEqual(8 * EPS.float64);
      // The gradients were never affected: softmax is computed from z − m.
      const p1 = 1 / (1 + Math.exp(0.25)); // softmax of the smaller logit
      const db2 = label === 0 ? [-p1, p1] : [1 - p1, p1 - 1];
      expect(beyondRounding(r.grads.db2, db2, 1, EPS.float64, 'float64'), `db2 ${Array.from(r.grads.db2)}`).toBeLessThanOrEqual(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (b) safetensors

/** The error of fn, which must be undefined (it parsed) or a HandgradError with code ERR_FILE. */
function parsesOrFileError(fn: () => unknown, what: string): boolean {
  const e = caught(fn);
  if (e === undefined) return true;
  if (!(e instanceof HandgradError) || e.code !== 'ERR_FILE') {
    throw new Error(`${what}: expected a HandgradError ERR_FILE but got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
  }
  expect(e.message).toMatch(/^Expected /);
  return false;
}

const SAFETENSORS = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.safetensors'))
  .sort()
  .map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(FIXTURES, f))) }));

function headerLength(b: Uint8Array): number {
  return Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
}

/** A file with this header text (or object) and data bytes; the length field may be forged. */
function forge(header: unknown, data: Uint8Array, lengthField?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** What a file that parsed must satisfy: sizes consistent, every byte inside the file. */
function consistent(f: ReturnType<typeof readSafetensors>, fileBytes: number): void {
  let total = 0;
  for (const [name, t] of Object.entries(f.tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const len = t.data instanceof Uint8Array ? t.data.length : (t.data as FloatArray).length;
    if (!(t.data instanceof Uint8Array)) expect(len, name).toBe(n);
    total += t.data.byteLength;
  }
  expect(total).toBeLessThanOrEqual(fileBytes);
}

describe('(b) safetensors reader under fuzzing', () => {
  it('the real fixtures, mutated in the header, in the length field, truncated or shifted: parse (consistently) or ERR_FILE', () => {
    const file = fc.constantFrom(...SAFETENSORS.keys());
    const edit = fc.oneof(
      // a byte of the header text, or of the 8-byte length field
      fc.record({ kind: fc.constant('flip'), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), inHeader: fc.boolean() }),
      fc.record({ kind: fc.constant('truncate'), at: fc.nat(), inHeader: fc.boolean() }),
      fc.record({ kind: fc.constant('insert'), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), inHeader: fc.constant(true) }),
      fc.record({ kind: fc.constant('delete'), at: fc.nat(), inHeader: fc.constant(true) }),
      // a digit of the header replaced by another (offsets and shapes that still look plausible)
      fc.record({ kind: fc.constant('digit'), at: fc.nat(), value: fc.integer({ min: 0x30, max: 0x39 }), inHeader: fc.constant(true) }),
      fc.record({ kind: fc.constant('length'), at: fc.constantFrom(0, 1, 7, 8, 2 ** 31, 2 ** 53, 100_000_001), inHeader: fc.constant(false) }),
    );
    fc.assert(
      fc.property(file, fc.array(edit, { minLength: 1, maxLength: 4 }), (i, edits) => {
        const src = SAFETENSORS[i].bytes;
        let b = src;
        for (const e of edits) {
          const hlen = Math.min(8 + headerLength(src), b.length);
          const at = e.inHeader ? e.at % Math.max(1, hlen) : e.at % Math.max(1, b.length);
          if (e.kind === 'flip') {
            b = b.slice();
            b[at] = e.value!;
          } else if (e.kind === 'truncate') b = b.slice(0, at);
          else if (e.kind === 'insert') {
            const o = new Uint8Array(b.length + 1);
            o.set(b.subarray(0, at));
            o[at] = e.value!;
            o.set(b.subarray(at), at + 1);
            b = o;
          } else if (e.kind === 'delete') {
            const o = new Uint8Array(Math.max(0, b.length - 1));
            o.set(b.subarray(0, at));
            o.set(b.subarray(at + 1), at);
            b = o;
          }
          else if (e.kind === 'digit') {
            b = b.slice();
            const digits: number[] = [];
            for (let k = 8; k < hlen; k++) if (b[k] >= 0x30 && b[k] <= 0x39) digits.push(k);
            if (digits.length) b[digits[e.at % digits.length]] = e.value!;
          } else if (b.length >= 8) {
            b = b.slice();
            new DataView(b.buffer).setBigUint64(0, BigInt(e.at), true);
          }
        }
        const what = `${SAFETENSORS[i].name} ${JSON.stringify(edits)}`;
        for (const copy of [false, true]) {
          let f: ReturnType<typeof readSafetensors> | undefined;
          if (parsesOrFileError(() => (f = readSafetensors(b, { copy })), what)) consistent(f!, b.length);
        }
        // What the library builds on top of the reader is as careful.
        let file: ReturnType<typeof readSafetensors> | undefined;
        if (parsesOrFileError(() => (file = readSafetensors(b)), what) && SAFETENSORS[i].name.includes('.case.')) {
          parsesOrFileError(() => paramsFromFile(file!, 'fuzzed'), `paramsFromFile ${what}`);
        }
      }),
      { numRuns: 1500, seed: 621 },
    );
  });

  // Header fields drawn from the valid values, near misses and hostile ones.
  const dtypeArb = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('F64', 'F32', 'I32', 'I64', 'F16', 'BF16', 'U8', 'I8', 'BOOL', 'U64', 'F8_E4M3') },
    { weight: 1, arbitrary: fc.constantFrom('F4', 'F6_E2M3', 'f64', '', 'F 64', 'float64', 'toString', '__proto__', 'constructor', 'valueOf', 'hasOwnProperty') },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.constant(null), fc.constant([]), fc.constant({})) },
  );
  const dimValue = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0, max: 6 }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 64, 1e300, -1, -0, 0.5, NaN) },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 3 }), fc.constant(null), fc.constant([2]), fc.boolean()) },
  );
  const shapeArb = fc.oneof({ weight: 8, arbitrary: fc.array(dimValue, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.integer(), fc.string({ maxLength: 3 }), fc.array(dimValue, { minLength: 60, maxLength: 70 })) });
  const entryArb = fc.record(
    {
      dtype: dtypeArb,
      shape: shapeArb,
      // 'auto': offsets that tile the buffer as a valid file would; otherwise values of any kind.
      offsets: fc.oneof(
        { weight: 6, arbitrary: fc.constant('auto' as const) },
        { weight: 2, arbitrary: fc.tuple(fc.integer({ min: -8, max: 600 }), fc.integer({ min: -8, max: 600 })) },
        { weight: 1, arbitrary: fc.oneof(fc.tuple(fc.constantFrom(0, 2 ** 53, 2 ** 64, 1e300, 0.5, -1), fc.constantFrom(0, 8, 2 ** 53, 2 ** 64, 1e300)), fc.array(fc.nat(64), { maxLength: 4 }), fc.constant(null), fc.string({ maxLength: 4 })) },
      ),
    },
    { requiredKeys: ['dtype', 'shape', 'offsets'] },
  );
  const nameArb = fc.oneof(fc.constantFrom('W1', 'b1', 'W2', 'b2', 'X', 'y', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'a.b'), fc.string({ maxLength: 5 }));
  const SIZE: Record<string, number> = { F64: 8, F32: 4, I32: 4, I64: 8, F16: 2, BF16: 2, U8: 1, I8: 1, BOOL: 1, U64: 8, F8_E4M3: 1 };

  /** A header object (with __proto__ as an own key when drawn) and a data buffer for it. */
  function headerFile(entries: [string, { dtype: unknown; shape: unknown; offsets: unknown }][], metadata: unknown, slack: number): { text: string; data: Uint8Array } {
    const parts: string[] = [];
    let at = 0;
    for (const [name, e] of entries) {
      let offsets = e.offsets;
      if (offsets === 'auto') {
        const shape = Array.isArray(e.shape) ? (e.shape as unknown[]) : [];
        const count = shape.reduce<number>((a, d) => a * (typeof d === 'number' && d >= 0 && d <= 64 ? d : 1), 1);
        const bytes = count * (SIZE[e.dtype as string] ?? 1);
        offsets = [at, at + bytes];
        at += bytes;
      }
      parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: e.dtype, shape: e.shape, data_offsets: offsets })}`);
    }
    if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
    return { text: `{${parts.join(',')}}`, data: new Uint8Array(Math.max(0, at + slack)) };
  }

  it('random headers (valid layouts, near misses, hostile names, dtypes, shapes and offsets): parse or ERR_FILE', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(nameArb, entryArb), { maxLength: 5 }),
        fc.option(fc.oneof(fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string({ maxLength: 4 }), fc.integer())), fc.constant([1]), fc.constant('x')), { nil: undefined }),
        fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -16, max: 16 }) }),
        fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
        (entries, metadata, slack, lengthField) => {
          const { text, data } = headerFile(entries, metadata, slack);
          const b = forge(text, data, lengthField);
          let f: ReturnType<typeof readSafetensors> | undefined;
          if (parsesOrFileError(() => (f = readSafetensors(b, { copy: true })), text)) consistent(f!, b.length);
        },
      ),
      { numRuns: 3000, seed: 622 },
    );
  });

  it('the writer refuses a dtype named after an Object.prototype member, as an unknown dtype', () => {
    // (The reader's side is in test/22-safetensors.test.ts and in the random headers above.)
    for (const dtype of ['toString', '__proto__', 'constructor', 'valueOf']) {
      expect(() => writeSafetensors({ W: { dtype: dtype as never, shape: [1], data: new Uint8Array(8) } }), dtype).toThrow(/Expected a safetensors dtype .* for tensors\.W\.dtype but received "/);
    }
  });

  it('headers that declare huge tensors allocate nothing of that size; deep or long headers are no problem', () => {
    const huge = [
      { W: { dtype: 'F64', shape: [2 ** 40], data_offsets: [0, 2 ** 43] } },
      { W: { dtype: 'F64', shape: [2 ** 27, 2 ** 27], data_offsets: [0, 8] } },
      { W: { dtype: 'U8', shape: [2 ** 53 - 1], data_offsets: [0, 2 ** 53 - 1] } },
      { W: { dtype: 'F32', shape: [1e6, 1e6, 1e6], data_offsets: [0, 4e18] } },
      ...Array.from({ length: 3 }, (_, i) => ({ [`T${i}`]: { dtype: 'I64', shape: [2 ** 50 + i], data_offsets: [0, 2 ** 53] } })),
    ];
    for (const h of huge) {
      const before = process.memoryUsage().arrayBuffers;
      expect(parsesOrFileError(() => readSafetensors(forge(h, new Uint8Array(64)), { copy: true }), JSON.stringify(h))).toBe(false);
      // Generous: a declared size of even 1 MiB would show. (arrayBuffers only grows by allocation.)
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
    }
    // A header length field larger than the file (up to 2^64 − 1) is refused before any slicing.
    for (const n of [2n ** 64n - 1n, 2n ** 53n, 100_000_001n, 99_999_999n]) {
      expect(parsesOrFileError(() => readSafetensors(forge('{}', new Uint8Array(0), n)), String(n))).toBe(false);
    }
    // 200 000 levels of nesting, and 50 000 zero-size tensors: an error or a parse, quickly enough
    // not to time the test out.
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    expect(parsesOrFileError(() => readSafetensors(forge(`{"W":{"dtype":"F64","shape":${deep},"data_offsets":[0,0]}}`, new Uint8Array(0))), 'deep')).toBe(false);
    expect(parsesOrFileError(() => readSafetensors(forge(deep, new Uint8Array(0))), 'deep array')).toBe(false);
    const many: Record<string, unknown> = {};
    for (let i = 0; i < 50_000; i++) many[`t${i}`] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] };
    // 2.8 MB of header: past the 1 MiB default cap, so the cap is raised for it.
    const f = readSafetensors(forge(many, new Uint8Array(0)), { maxHeaderBytes: 4_000_000 });
    expect(Object.keys(f.tensors)).toHaveLength(50_000);
  });
});

// ---------------------------------------------------------------------------------------------
// (c) CSV

/** Line (1-based, as an editor shows) on which the character at `offset` of `text` sits. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) {
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] !== '\n')) line++;
  }
  return line;
}

/** A number written in one of the ways a CSV file may hold it (`k` picks the digits). */
function formatNumber(v: number, how: number, k: number): string {
  switch (how) {
    case 0:
      return String(v);
    case 1:
      return v.toExponential(k % 21);
    case 2:
      return Math.abs(v) < 1e15 ? v.toFixed(k % 9) : String(v);
    case 3:
      return (v >= 0 ? '+' : '') + String(v).toUpperCase();
    default:
      return v.toPrecision(1 + (k % 21));
  }
}

const csvArb = fc.record({
  rows: fc.integer({ min: 1, max: 12 }),
  D: fc.integer({ min: 1, max: 6 }),
  delimiter: fc.constantFrom(',', ';', '\t', '|'),
  eol: fc.constantFrom('\n', '\r\n', '\r'),
  header: fc.boolean(),
  headerOpt: fc.constantFrom<'auto' | boolean>('auto', true),
  labelAt: fc.constantFrom<'last' | 'first'>('last', 'first'),
  names: fc.boolean(),
  bom: fc.boolean(),
  blank: fc.boolean(),
  finalEol: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1e6 }),
  values: fc.array(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -1000, max: 1000 }), fc.constantFrom(0, -0, 5e-324, 1.7976931348623157e308, 0.1, 1e22, 1e23)), { minLength: 72, maxLength: 72 }),
  bad: fc.option(fc.record({ row: fc.nat(), col: fc.nat(), text: fc.constantFrom('abc', '', 'NaN', 'Infinity', '1e999', '-1e400', '1.2.3', '0x10', '1e', '--1', '"1" x') }), { nil: undefined }),
});
type CsvCase = typeof csvArb extends fc.Arbitrary<infer T> ? T : never;

/** The text of a table, with what reading it must give (or the line its bad cell is on). */
function csvText(q: CsvCase) {
  const { rows, D, delimiter: dl, eol } = q;
  const rnd = randomArray(rows * (D + 3), q.seed);
  const X: number[] = [];
  const labels: string[] = [];
  const lines: string[] = [];
  const starts: number[][] = []; // offset of each cell in the text, per data row
  let text = q.bom ? '\ufeff' : '';
  const put = (cells: string[], record: boolean) => {
    const at: number[] = [];
    cells.forEach((c, j) => {
      if (j > 0) text += dl;
      at.push(text.length);
      text += c;
    });
    if (record) starts.push(at);
    text += eol;
    if (q.blank && rnd[lines.length % rnd.length] > 0.5) text += ` ${eol}`;
    lines.push('');
  };
  const labelCol = q.labelAt === 'last' ? D : 0;
  if (q.header) put(Array.from({ length: D + 1 }, (_, j) => (j === labelCol ? 'label' : `f${j}`)), false);
  for (let r = 0; r < rows; r++) {
    const feats: string[] = [];
    for (let j = 0; j < D; j++) {
      const v = q.values[(r * D + j) % q.values.length] * (r + 1);
      const val = Number.isFinite(v) ? v : q.values[(r * D + j) % q.values.length];
      const pick = Math.floor(((rnd[r * (D + 3) + j] + 1) / 2) * 5 * 64);
      let cell = formatNumber(val, pick % 5, pick >> 3);
      if (!Number.isFinite(Number(cell))) cell = String(val); // 1.8e308 to 2 digits is 2e308: Infinity
      X.push(Number(cell));
      if (rnd[r * (D + 3) + D] > 0.6) cell = ` ${cell} `; // spaces around a number are fine
      if (rnd[r * (D + 3) + D + 1] > 0.8) cell = `"${cell.trim()}"`;
      feats.push(cell);
    }
    const k = Math.floor(((rnd[r * (D + 3) + D + 2] + 1) / 2) * 4);
    // Names may be quoted and hold the delimiter, a quote or a line break; ids are plain integers.
    const name = ['cat', `d${dl}og`, 'say "hi"', `two${eol}lines`][k];
    labels.push(q.names ? name : String(k * 3));
    const labelCell = q.names ? (k === 0 ? name : `"${name.replaceAll('"', '""')}"`) : String(k * 3);
    put(q.labelAt === 'last' ? [...feats, labelCell] : [labelCell, ...feats], true);
  }
  if (!q.finalEol) text = text.slice(0, text.length - eol.length);
  return { text, X, labels, starts, labelCol };
}

/** readCsv takes CSV text as { text } (a bare string is always a path): half the time, bytes otherwise. */
function csvInput(text: string, seed: number): { text: string } | Uint8Array {
  return seed % 2 === 0 ? { text } : Buffer.from(text, 'utf8');
}

describe('(c) CSV reader under fuzzing', () => {
  it('random tables (delimiters, line ends, quotes, spaces, BOM, blank lines, headers, names) read back exactly; a bad cell names its line', () => {
    fc.assert(
      fc.property(csvArb, (q) => {
        const { text, X, labels, starts, labelCol } = csvText(q);
        const opts = { delimiter: q.delimiter, header: q.header ? q.headerOpt : false, label: q.labelAt === 'last' ? -1 : 0 };
        if (q.bad === undefined) {
          const d = readCsv(csvInput(text, q.seed), opts);
          expect(d.D).toBe(q.D);
          expect(d.header).toBe(q.header);
          expect(d.X.length).toBe(X.length);
          for (let i = 0; i < X.length; i++) if (!Object.is(d.X[i], X[i])) throw new Error(`X[${i}] = ${d.X[i]}, written ${X[i]}: ${JSON.stringify(text)}`);
          if (q.names) {
            const order = [...new Set(labels)];
            expect(d.classNames).toEqual(order);
            expect(Array.from(d.y)).toEqual(labels.map((l) => order.indexOf(l)));
          } else {
            expect(d.classNames).toBeUndefined();
            expect(Array.from(d.y)).toEqual(labels.map(Number));
            expect(d.C).toBe(Math.max(...labels.map(Number)) + 1);
          }
          return;
        }
        // One feature cell replaced by something that is not a finite number.
        const r = q.bad.row % q.rows;
        const j = q.bad.col % q.D;
        const col = labelCol === 0 ? j + 1 : j;
        const at = starts[r][col];
        let end = at;
        const quoted = text[at] === '"';
        if (quoted) end = text.indexOf('"', at + 1) + 1;
        else while (end < text.length && text[end] !== q.delimiter && text[end] !== '\n' && text[end] !== '\r') end++;
        const broken = text.slice(0, at) + q.bad.text + text.slice(end);
        const e = caught(() => readCsv(csvInput(broken, q.seed), opts));
        const line = lineAt(broken, at);
        expect(e, JSON.stringify(broken)).toBeInstanceOf(HandgradError);
        expect((e as HandgradError).code).toBe('ERR_FILE');
        // The cell's own line, named in the message (a cell with junk after a quote, too).
        expect((e as Error).message, JSON.stringify(broken)).toMatch(new RegExp(`line ${line}\\b`));
      }),
      { numRuns: 1500, seed: 631 },
    );
  });

  it('a row with another number of cells names its own line, after multi-line quoted cells too', () => {
    fc.assert(
      fc.property(csvArb, fc.nat(), fc.boolean(), (q, row, more) => {
        const c = { ...q, bad: undefined, header: true, headerOpt: true as const };
        const { text, starts } = csvText(c);
        const r = row % c.rows;
        const at = starts[r][0];
        // An extra cell at the start of the row, or one fewer (the row's first cell and delimiter removed).
        const second = starts[r][1];
        const broken = more ? `${text.slice(0, at)}1${c.delimiter}${text.slice(at)}` : second === undefined ? text : text.slice(0, at) + text.slice(second);
        if (broken === text) return;
        const e = caught(() => readCsv(csvInput(broken, c.seed), { delimiter: c.delimiter, header: true, label: c.labelAt === 'last' ? -1 : 0 }));
        expect(e, JSON.stringify(broken)).toBeInstanceOf(HandgradError);
        expect((e as Error).message, JSON.stringify(broken)).toMatch(new RegExp(`cells \\(as on line \\d+\\) for line ${lineAt(broken, at)} `));
      }),
      { numRuns: 500, seed: 632 },
    );
  });

  it('random bytes and random text: a consistent Dataset or an ERR_FILE whose line number is in the file', () => {
    const token = fc.constantFrom('1', '-2.5', '3e4', ',', ',', ';', '\n', '\r\n', '\r', '"', '""', ' ', '\t', 'a', 'é', 'NaN', '\ufeff', '.', 'e', '+', '0');
    const text = fc.array(token, { maxLength: 60 }).map((t) => t.join(''));
    const raw = fc.oneof(
      text.map((t) => Buffer.from(t, 'utf8')),
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 40 }).map((b) => new Uint8Array([0x1f, 0x8b, ...b])), // gzip magic, then junk
      fc.uint8Array({ maxLength: 40 }).map((b) => new Uint8Array([0xef, 0xbb, 0xbf, ...b])),
    );
    fc.assert(
      fc.property(raw, fc.constantFrom(',', ';', '\t', ' '), fc.constantFrom<'auto' | boolean>('auto', true, false), (bytes, delimiter, header) => {
        let d: ReturnType<typeof readCsv> | undefined;
        const e = caught(() => (d = readCsv(bytes, { delimiter, header })));
        const what = JSON.stringify(Buffer.from(bytes).toString('latin1'));
        if (e === undefined) {
          expect(d!.D).toBeGreaterThanOrEqual(1);
          expect(d!.X.length, what).toBe(d!.y.length * d!.D);
          expect(d!.y.length).toBeGreaterThanOrEqual(1);
          expect(allFinite(d!.X), what).toBe(true);
          expect(d!.y.every((v) => v >= 0 && v < d!.C), what).toBe(true);
          expect(d!.featureNames).toHaveLength(d!.D);
          return;
        }
        expect(e, `${what}: ${(e as Error).message}`).toBeInstanceOf(HandgradError);
        expect((e as HandgradError).code).toBe('ERR_FILE');
        expect((e as Error).message).toMatch(/^Expected /);
        const lines = 1 + (Buffer.from(bytes).toString('latin1').match(/\r\n|\n|\r/g)?.length ?? 0);
        for (const m of (e as Error).message.matchAll(/\bline (\d+)/g)) {
          expect(Number(m[1]), `${what}: ${(e as Error).message}`).toBeGreaterThanOrEqual(1);
          expect(Number(m[1]), `${what}: ${(e as Error).message}`).toBeLessThanOrEqual(lines);
        }
      }),
      { numRuns: 3000, seed: 633 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// (d) edge numerics against an independent float64 reference

/** max|got − want| / max|want| in units of eps; exact zeros must come out exactly zero. */
function errEps(got: ArrayLike<number>, want: ArrayLike<number>, dtype: Dtype): number {
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
  const scale = maxAbs(want);
  if (Number.isNaN(diff)) return Infinity;
  return scale === 0 ? (diff === 0 ? 0 : Infinity) : diff / scale / EPS[dtype];
}

interface Edge {
  name: string;
  dims: { B: number; D: number; H: number; C: number };
  make: (A: typeof Float64Array | typeof Float32Array) => { p: Record<'W1' | 'b1' | 'W2' | 'b2', FloatArray>; X: FloatArray; y: Int32Array };
}

/** Random parameters and data of these dims, then `tweak` shapes the logits. */
function edge(name: string, dims: Edge['dims'], seed: number, tweak: (t: ReturnType<Edge['make']>, dims: Edge['dims']) => void = () => {}): Edge {
  return {
    name,
    dims,
    make: (A) => {
      const { B, D, H, C } = dims;
      const t = {
        p: { W1: A.from(randomArray(D * H, seed, 1)), b1: A.from(randomArray(H, seed + 1, 0.5)), W2: A.from(randomArray(H * C, seed + 2, 1)), b2: A.from(randomArray(C, seed + 3, 0.5)) },
        X: A.from(randomArray(B * D, seed + 4)),
        y: randomLabels(B, C, seed + 5),
      };
      tweak(t, dims);
      return t;
    },
  };
}

const EDGES: Edge[] = [
  // A1 has entries of size ~1 and W2 of size ~1e4: logits of ±1e4, softmax saturated to 0 and 1.
  edge('logits of about ±1e4', { B: 5, D: 3, H: 4, C: 6 }, 101, (t) => {
    t.p.W2.forEach((v, i) => (t.p.W2[i] = v * 1e4));
    t.p.b2.fill(0);
  }),
  // H = 1, A1 = 1 exactly (relu of 1), W2 = ±1e4: logits exactly ±1e4 with the label on either side.
  edge('logits exactly ±1e4 (H = 1)', { B: 4, D: 1, H: 1, C: 2 }, 102, (t) => {
    t.X.fill(1);
    t.p.W1.fill(1);
    t.p.b1.fill(0);
    t.p.W2.set([1e4, -1e4]);
    t.p.b2.fill(0);
    t.y.set([0, 1, 1, 0]);
  }),
  // W2 = 0 and one value in b2: every logit equal, probs exactly 1/C, loss log C.
  edge('all-equal logits', { B: 3, D: 4, H: 5, C: 7 }, 103, (t) => {
    t.p.W2.fill(0);
    t.p.b2.fill(3.5);
  }),
  edge('C = 1 (the loss and every gradient exactly 0)', { B: 3, D: 4, H: 5, C: 1 }, 104),
  edge('C = 2', { B: 6, D: 4, H: 5, C: 2 }, 105),
  edge('B = 1', { B: 1, D: 6, H: 5, C: 4 }, 106),
  edge('H = 1', { B: 5, D: 4, H: 1, C: 3 }, 107),
  edge('B = D = H = C = 1', { B: 1, D: 1, H: 1, C: 1 }, 108),
  edge('B = D = H = 1, C = 2', { B: 1, D: 1, H: 1, C: 2 }, 109),
];

describe('(d) edge numerics against an independent float64 reference', () => {
  const ACTS: Activation[] = ['relu', 'sigmoid', 'tanh'];
  const REDS: Reduction[] = ['mean', 'sum'];

  it('the closed-form reference is itself right: central differences of helpers.referenceLoss agree', () => {
    for (const e of EDGES) {
      for (const act of ACTS) {
        const t = e.make(Float64Array);
        const ref = referenceStep(t.p, t.X, t.y, act, 'mean');
        expect(Math.abs(ref.loss - referenceLoss(t.p, t.X, t.y, act, 'mean'))).toBeLessThanOrEqual(1e-12 * Math.max(1, ref.loss));
        const tensors = { dX: t.X, dW1: t.p.W1, db1: t.p.b1, dW2: t.p.W2, db2: t.p.b2 } as const;
        for (const k of GRADS) {
          // Step relative to the tensor (1e-6·max|·|, at least 1e-6); error ~ step² + eps·loss/step.
          const target = tensors[k] as Float64Array;
          const step = 1e-6 * Math.max(1, maxAbs(target));
          const fd = numericalGrad(target, () => referenceLoss(t.p, t.X, t.y, act, 'mean'), step);
          const scale = Math.max(maxAbs(ref.grads[k]), 1e-3);
          expect(normwise(fd, ref.grads[k], scale), `${e.name} ${act} ${k}`).toBeLessThan(1e-4 * Math.max(1, ref.loss));
        }
      }
    }
  });

  for (const e of EDGES) {
    it(`${e.name}: loss and gradients finite and equal to the reference, every backend, activation, reduction and dtype`, () => {
      for (const dtype of ['float64', 'float32'] as const) {
        const t = e.make(dtype === 'float64' ? Float64Array : Float32Array);
        for (const act of ACTS) {
          for (const red of REDS) {
            // The reference sees the very same (possibly float32-rounded) numbers, in float64.
            const ref = referenceStep(t.p, t.X, t.y, act, red);
            const { B, D, H, C } = e.dims;
            const u = EPS[dtype] * Math.max(B, D, H, C);
            const E = errorScale(t.p, t.X, t.y, act, red, u, DENORM_MIN[dtype]);
            for (const backend of ['native', 'ts'] as const) {
              const what = `${e.name} ${dtype} ${act} ${red} ${backend}`;
              const r = forwardBackward(t.p, t.X, t.y, { backend, activation: act, reduction: red, inputGrad: true });
              expect(Number.isFinite(r.loss) && r.loss >= 0, what).toBe(true);
              expect(beyondRounding([r.loss], [ref.loss], E.loss, u, dtype), `${what} loss ${r.loss} vs ${ref.loss}`).toBeLessThanOrEqual(1);
              for (const k of GRADS) {
                expect(allFinite(r.grads[k]!), `${what} ${k}`).toBe(true);
                expect(beyondRounding(r.grads[k]!, ref.grads[k], E[k], u, dtype), `${what} ${k}`).toBeLessThanOrEqual(1);
              }
              if (e.dims.C === 1) {
                expect(r.loss, what).toBe(0);
                for (const k of GRADS) expect(r.grads[k]!.every((v) => v === 0), `${what} ${k}`).toBe(true);
              }
              if (e.name === 'all-equal logits') {
                const B = e.dims.B;
                expect(errEps([r.loss], [red === 'mean' ? Math.log(e.dims.C) : B * Math.log(e.dims.C)], dtype), what).toBeLessThanOrEqual(2);
              }
            }
          }
        }
      }
    });
  }
});
