// The verifier: correct candidates pass against both references (LibTorch when this build has it,
// finite differences always); every diagnosis is exercised by a deliberately broken candidate built
// from correct gradients; gradcheck behaves as torch.autograd.gradcheck (tolerances, fast mode,
// kinks, nondeterminism, PyTorch-shaped messages).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { forwardBackward, gradcheck, HandgradError, loadSafetensors, verify } from '../lib';
import type { Activation, FloatArray, Reduction } from '../lib/types';
import { FiniteDifferences } from '../lib/verify/fd';
import { DEFAULT_FD_STEP, DEFAULT_TOLERANCE_EPS, type GradFunction, type VerifyReport } from '../lib/verify/verify';
import { backendTitle, errEps, FIXTURES, jsonCases, randomArray, randomLabels, skipReason, thrown, typed } from './helpers';

// The two references, each with null or why it is skipped here: 'torch' follows the torch backend's
// skip policy (test/helpers.ts), finite differences always run.
const torchSkip = skipReason('torch');
const REFS = [['torch', torchSkip], ['fd', null]] as const;
const refTitle = (title: string, ref: 'torch' | 'fd', skip: string | null) => (ref === 'torch' ? backendTitle(title, 'torch', skip) : title);

function realistic(suffix = '') {
  const t = loadSafetensors(`${FIXTURES}/seed-realistic-64x128x256x10${suffix}.case.safetensors`).tensors;
  const params = { W1: t.W1.data as FloatArray, b1: t.b1.data as FloatArray, W2: t.W2.data as FloatArray, b2: t.b2.data as FloatArray };
  return { params, X: t.X.data as FloatArray, y: t.y.data as Int32Array };
}

/** A small problem with B, D, H, C all different, so every shape mistake shows. */
function small(dims = { B: 6, D: 5, H: 7, C: 4 }, seed = 3) {
  const { B, D, H, C } = dims;
  return {
    dims,
    params: { W1: randomArray(D * H, seed + 1, 0.9), b1: randomArray(H, seed + 2, 0.2), W2: randomArray(H * C, seed + 3, 0.9), b2: randomArray(C, seed + 4, 0.2) },
    X: randomArray(B * D, seed + 5),
    y: randomLabels(B, C, seed + 6),
  };
}

const t = (r: VerifyReport, name: string) => r.tensors.find((x) => x.name === name)!;

// ---- a hand-written backward for the broken candidates (from the native forward cache) ----------

interface Bugs {
  /** dZ1 = dA1 · g(Z1, A1) instead of the activation derivative. */
  deriv?: (z: number, a: number) => number;
  noOnehot?: boolean;
  dW2FromZ1?: boolean;
}

function backwardWith(p: { W1: FloatArray; b1: FloatArray; W2: FloatArray; b2: FloatArray }, X: FloatArray, y: Int32Array, o: { activation: Activation; reduction: Reduction }, bugs: Bugs) {
  const H = p.b1.length;
  const C = p.b2.length;
  const D = p.W1.length / H;
  const B = y.length;
  const { cache } = forwardBackward(p, X, y, { ...o, cache: true });
  const { Z1, A1, probs } = cache!;
  const s = o.reduction === 'mean' ? 1 / B : 1;
  const dZ2 = Float64Array.from(probs, (v) => v * s);
  if (!bugs.noOnehot) for (let b = 0; b < B; b++) dZ2[b * C + y[b]] -= s;
  const dW2 = new Float64Array(H * C);
  const db2 = new Float64Array(C);
  const dZ1 = new Float64Array(B * H);
  const left = bugs.dW2FromZ1 ? Z1 : A1;
  const deriv = bugs.deriv ?? ((z: number, a: number) => (o.activation === 'relu' ? (z > 0 ? 1 : 0) : o.activation === 'sigmoid' ? a * (1 - a) : 1 - a * a));
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      db2[c] += dZ2[b * C + c];
      for (let h = 0; h < H; h++) dW2[h * C + c] += left[b * H + h] * dZ2[b * C + c];
    }
    for (let h = 0; h < H; h++) {
      let dA = 0;
      for (let c = 0; c < C; c++) dA += dZ2[b * C + c] * p.W2[h * C + c];
      dZ1[b * H + h] = dA * deriv(Z1[b * H + h], A1[b * H + h]);
    }
  }
  const dW1 = new Float64Array(D * H);
  const db1 = new Float64Array(H);
  const dX = new Float64Array(B * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const g = dZ1[b * H + h];
      db1[h] += g;
      for (let d = 0; d < D; d++) {
        dW1[d * H + h] += X[b * D + d] * g;
        dX[b * D + d] += g * p.W1[d * H + h];
      }
    }
  }
  return { dX, dW1, db1, dW2, db2, dZ1, dZ2 };
}

/** Correct gradients from the native path, edited by `edit`. */
function broken(edit: (g: Record<string, Float64Array>, B: number, shape: Record<string, number[]>) => Record<string, unknown>): GradFunction {
  return (p, X, y, o) => {
    const r = forwardBackward(p, X, y, o);
    const g = Object.fromEntries(Object.entries(r.grads).map(([k, v]) => [k, Float64Array.from(v)]));
    const H = p.b1.length;
    const C = p.b2.length;
    const D = p.W1.length / H;
    const B = y.length;
    return edit(g, B, { dX: [B, D], dW1: [D, H], db1: [H], dW2: [H, C], db2: [C] }) as never;
  };
}

const times = (a: Float64Array, k: number) => a.map((v) => v * k);
function transposeOf(a: Float64Array, m: number, n: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = a[i * n + j];
  return out;
}
function nested(a: Float64Array, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, (_, i) => Array.from(a.subarray(i * cols, (i + 1) * cols)));
}

// ---- correct candidates ------------------------------------------------------------------------

describe('the finite-difference reference itself', () => {
  it('matches every float64 PyTorch fixture within 8 eps, tensor by tensor', () => {
    const cases = jsonCases().filter((c) => c.dtype === 'float64');
    expect(cases.length).toBeGreaterThan(5);
    for (const c of cases) {
      const I = c.inputs;
      const fd = new FiniteDifferences({
        dims: c.dims, X: Float64Array.from(I.X), y: Int32Array.from(I.y), W1: Float64Array.from(I.W1), b1: Float64Array.from(I.b1),
        W2: Float64Array.from(I.W2), b2: Float64Array.from(I.b2), activation: c.activation, reduction: c.reduction,
      });
      expect(errEps([fd.f.loss], c.expected.loss, 'float64'), `${c.name} loss`).toBeLessThanOrEqual(8);
      for (const [k, g] of [['X', 'dX'], ['W1', 'dW1'], ['b1', 'db1'], ['W2', 'dW2'], ['b2', 'db2']] as const) {
        expect(errEps(fd.gradient(k, DEFAULT_FD_STEP, 'avoid').grad, c.expected[g], 'float64'), `${c.name} ${g}`).toBeLessThanOrEqual(8);
      }
    }
  });

  it('matches the realistic-size PyTorch fixture within 8 eps', () => {
    const { params, X, y } = realistic();
    const e = loadSafetensors(`${FIXTURES}/seed-realistic-64x128x256x10.expected.safetensors`).tensors;
    const f = (a: FloatArray) => a as Float64Array;
    const fd = new FiniteDifferences({
      dims: { B: 64, D: 128, H: 256, C: 10 }, X: f(X), y, W1: f(params.W1), b1: f(params.b1), W2: f(params.W2), b2: f(params.b2), activation: 'relu', reduction: 'mean',
    });
    for (const [k, g] of [['X', 'dX'], ['W1', 'dW1'], ['b1', 'db1'], ['W2', 'dW2'], ['b2', 'db2']] as const) {
      expect(errEps(fd.gradient(k, DEFAULT_FD_STEP, 'avoid').grad, e[g].data as Float64Array, 'float64'), g).toBeLessThanOrEqual(8);
    }
  });
});

describe('verify: correct candidates pass', () => {
  it('native, realistic size, default reference (torch when built, else fd), every tensor reported', () => {
    const { params, X, y } = realistic();
    const r = verify(params, X, y);
    expect(r.reference).toBe(torchSkip === null ? 'torch' : 'fd');
    if (torchSkip !== null) expect(r.referenceNote).toMatch(/torch reference is unavailable/);
    expect(r.candidate).toBe('native');
    expect(r.toleranceEps).toBe(DEFAULT_TOLERANCE_EPS[r.reference]);
    expect(r.tensors.map((x) => [x.name, x.shape])).toEqual([
      ['loss', []], ['dX', [64, 128]], ['dW1', [128, 256]], ['db1', [256]], ['dW2', [256, 10]], ['db2', [10]],
    ]);
    for (const x of r.tensors) {
      expect(x.status, x.name).toBe('pass');
      expect(x.epsUnits, x.name).toBeLessThanOrEqual(r.toleranceEps);
      expect(x.relError).toBeCloseTo(x.maxAbsDiff / x.maxAbsRef, 20);
    }
    expect(r.ok).toBe(true);
    expect(r.firstFailure).toBeNull();
    expect(r.summary).toMatch(/All checked tensors match/);
  });

  for (const [ref, skip] of REFS) {
    it.skipIf(skip)(refTitle(`native and ts, float64 and float32, against ${ref}`, ref, skip), () => {
      for (const suffix of ['', '-float32']) {
        const { params, X, y } = realistic(suffix);
        for (const candidate of ['native', 'ts'] as const) {
          const r = verify(params, X, y, { candidate, reference: ref });
          expect(r.reference).toBe(ref);
          expect(r.dtype).toBe(suffix ? 'float32' : 'float64');
          expect(r.ok, `${candidate}${suffix}: ${r.summary}`).toBe(true);
        }
      }
    });

    it.skipIf(skip)(refTitle(`every activation and reduction of the JSON fixtures, against ${ref}`, ref, skip), () => {
      for (const c of jsonCases()) {
        const p = { W1: typed(c.dtype, c.inputs.W1), b1: typed(c.dtype, c.inputs.b1), W2: typed(c.dtype, c.inputs.W2), b2: typed(c.dtype, c.inputs.b2) };
        const r = verify(p, typed(c.dtype, c.inputs.X), c.inputs.y, { activation: c.activation, reduction: c.reduction, reference: ref });
        expect(r.ok, `${c.name}: ${r.summary}`).toBe(true);
      }
    });
  }

  it('a correct user function returning nested plain arrays and its loss passes', () => {
    const s = small();
    const fn: GradFunction = (p, X, y, o) => {
      const r = forwardBackward(p, X, y, o);
      const { B, D, H, C } = s.dims;
      return {
        loss: r.loss,
        grads: { dX: nested(Float64Array.from(r.grads.dX!), B, D), dW1: nested(Float64Array.from(r.grads.dW1), D, H), db1: Array.from(r.grads.db1), dW2: nested(Float64Array.from(r.grads.dW2), H, C), db2: Array.from(r.grads.db2) },
      };
    };
    const r = verify(s.params, s.X, s.y, { candidate: fn });
    expect(r.ok, r.summary).toBe(true);
    expect(r.candidate).toBe('function');
    expect(t(r, 'dW1').candidateShape).toEqual([5, 7]);
    expect(t(r, 'loss').status).toBe('pass');
  });

  it('a function that returns no dX and no loss: those are skipped, the rest pass', () => {
    const s = small();
    const r = verify(s.params, s.X, s.y, { candidate: broken(({ dW1, db1, dW2, db2 }) => ({ dW1, db1, dW2, db2 })) });
    expect(r.ok).toBe(true);
    expect(t(r, 'dX').status).toBe('skipped');
    expect(t(r, 'loss').status).toBe('skipped');
  });
});

// ---- each diagnosis, from a deliberately broken candidate --------------------------------------

for (const [reference, skip] of REFS) describe.skipIf(skip)(refTitle(`verify diagnoses (reference ${reference})`, reference, skip), () => {
  const s = small();
  const { B, D, H, C } = s.dims;
  const run = (candidate: GradFunction, opts: { reduction?: Reduction; activation?: Activation } = {}, prob = s) =>
    verify(prob.params, prob.X, prob.y, { candidate, reference, ...opts });

  it('dW1 × B: "forgot /B, or used sum where mean was meant", first failure dW1, dZ1 right', () => {
    const r = run(broken((g) => ({ ...g, dW1: times(g.dW1, B) })));
    expect(r.ok).toBe(false);
    expect(r.firstFailure).toBe('dW1');
    const d = t(r, 'dW1').diagnosis;
    expect(d[0].kind).toBe('scale');
    expect(d[0].factor!).toBeCloseTo(B, 10);
    expect(d[0].message).toMatch(/B = 6 × the reference: forgot the \/B of the mean, or used sum where mean was meant/);
    expect(r.tensors.filter((x) => x.status === 'fail').map((x) => x.name)).toEqual(['dW1']);
    expect(r.summary).toMatch(/db1 = Σ_b dZ1 passes, so dZ1 is right/);
  });

  it('dZ2 without /B (every gradient × B): first failure dW2, dZ2 implied wrong, loss × B named', () => {
    const r = run((p, X, y, o) => {
      const f = forwardBackward(p, X, y, o);
      const g = f.grads;
      return { loss: f.loss * B, grads: { dX: times(Float64Array.from(g.dX!), B), dW1: times(Float64Array.from(g.dW1), B), db1: times(Float64Array.from(g.db1), B), dW2: times(Float64Array.from(g.dW2), B), db2: times(Float64Array.from(g.db2), B) } };
    });
    expect(r.firstFailure).toBe('loss');
    expect(t(r, 'loss').diagnosis[0].message).toMatch(/the loss is B = 6 × the reference/);
    for (const n of ['dX', 'dW1', 'db1', 'dW2', 'db2']) expect(t(r, n).diagnosis[0].factor!, n).toBeCloseTo(B, 10);
    expect(r.summary).toMatch(/dZ2 itself is wrong/);
  });

  it("reduction 'sum' but the candidate divides by B: 1/B, mean used where sum was meant", () => {
    const r = run(broken((g) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, times(v, 1 / B)]))), { reduction: 'sum' });
    expect(r.firstFailure).toBe('dW2');
    const d = t(r, 'dW2').diagnosis[0];
    expect(d.kind).toBe('scale');
    expect(d.factor! * B).toBeCloseTo(1, 10);
    expect(d.message).toMatch(/1\/B = 1\/6 × the reference: divided by B: used mean where sum was meant/);
  });

  it('every gradient negated: a sign flip, first failure dW2', () => {
    const r = run(broken((g) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, times(v, -1)]))));
    expect(r.firstFailure).toBe('dW2');
    for (const n of ['dX', 'dW1', 'db1', 'dW2', 'db2']) expect(t(r, n).diagnosis[0].kind, n).toBe('sign');
    expect(r.summary).toMatch(/dZ2 itself is wrong/);
  });

  it('dW2 transposed in a flat buffer, dW1 returned nested as [H,D], dX transposed', () => {
    let r = run(broken((g) => ({ ...g, dW2: transposeOf(g.dW2, H, C) })));
    expect(r.firstFailure).toBe('dW2');
    expect(t(r, 'dW2').diagnosis[0].kind).toBe('transpose');
    expect(t(r, 'dW2').diagnosis[0].message).toMatch(/dW2ᵀ \[4,7\] where dW2 \[7,4\] belongs \(dZ2ᵀ·A1 instead of A1ᵀ·dZ2\)/);
    expect(r.summary).toMatch(/db2 = Σ_b dZ2 passes, so dZ2 is right/);

    r = run(broken((g) => ({ ...g, dW1: nested(transposeOf(g.dW1, D, H), H, D) })));
    expect(r.firstFailure).toBe('dW1');
    expect(t(r, 'dW1').candidateShape).toEqual([H, D]);
    expect(t(r, 'dW1').diagnosis.map((d) => d.kind)).toEqual(['transpose']);

    r = run(broken((g) => ({ ...g, dX: transposeOf(g.dX, B, D) })));
    expect(r.firstFailure).toBe('dX');
    expect(t(r, 'dX').diagnosis[0].kind).toBe('transpose');
    expect(r.summary).toMatch(/error is in dX = dZ1·W1ᵀ itself/);
  });

  it('transposed and × B at once: both named', () => {
    const r = run(broken((g) => ({ ...g, dW2: times(transposeOf(g.dW2, H, C), B) })));
    expect(t(r, 'dW2').diagnosis.map((d) => d.kind).sort()).toEqual(['scale', 'transpose']);
  });

  it('bias summed over the wrong axis (Σ_h dZ1, Σ_c dZ2), or not summed at all', () => {
    const o = { activation: 'relu' as const, reduction: 'mean' as const };
    const wrongAxis = (which: 'db1' | 'db2'): GradFunction => (p, X, y) => {
      const m = backwardWith(p, X, y, o, {});
      const cols = which === 'db1' ? H : C;
      const dZ = which === 'db1' ? m.dZ1 : m.dZ2;
      const sums = Float64Array.from({ length: B }, (_, b) => dZ.subarray(b * cols, (b + 1) * cols).reduce((a, v) => a + v, 0));
      return { dX: m.dX, dW1: m.dW1, db1: m.db1, dW2: m.dW2, db2: m.db2, [which]: sums };
    };
    let r = run(wrongAxis('db1'));
    expect(r.firstFailure).toBe('db1');
    expect(t(r, 'db1').diagnosis[0].kind).toBe('bias-axis');
    expect(t(r, 'db1').diagnosis[0].message).toMatch(/Σ_h dZ1\[b,h\] \(\[B\] = \[6\]\); db1 = Σ_b dZ1\[b,:\] sums over the batch \(\[H\] = \[7\]\)/);
    r = run(wrongAxis('db2'));
    expect(r.firstFailure).toBe('db2');
    expect(t(r, 'db2').diagnosis[0].kind).toBe('bias-axis');
    expect(r.summary).toMatch(/dW2 = A1ᵀ·dZ2 passes, so dZ2 is right: the error is in the bias reduction/);
    r = run((p, X, y) => {
      const m = backwardWith(p, X, y, o, {});
      return { dX: m.dX, dW1: m.dW1, db1: nested(m.dZ1, B, H), dW2: m.dW2, db2: m.db2 };
    });
    expect(t(r, 'db1').diagnosis[0].kind).toBe('bias-not-reduced');
  });

  it('bias summed over the wrong axis when B = H, so the length is right', () => {
    const sq = small({ B: 7, D: 5, H: 7, C: 4 }, 11);
    const r = run((p, X, y, o) => {
      const m = backwardWith(p, X, y, o, {});
      const db1 = Float64Array.from({ length: 7 }, (_, b) => m.dZ1.subarray(b * 7, (b + 1) * 7).reduce((a, v) => a + v, 0));
      return { dX: m.dX, dW1: m.dW1, db1, dW2: m.dW2, db2: m.db2 };
    }, {}, sq);
    expect(r.firstFailure).toBe('db1');
    expect(t(r, 'db1').diagnosis[0].kind).toBe('bias-axis');
  });

  it("ReLU mask Z1 >= 0 instead of > 0 (on the fixture with Z1 exactly 0)", () => {
    const c = jsonCases().find((k) => k.name.startsWith('relu-exact-zero'))!;
    const prob = { dims: c.dims, params: { W1: typed('float64', c.inputs.W1), b1: typed('float64', c.inputs.b1), W2: typed('float64', c.inputs.W2), b2: typed('float64', c.inputs.b2) }, X: typed('float64', c.inputs.X), y: Int32Array.from(c.inputs.y) };
    const r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: (z) => (z >= 0 ? 1 : 0) }), {}, prob as never);
    expect(r.firstFailure).toBe('dW1');
    const d = t(r, 'dW1').diagnosis[0];
    expect(d.kind).toBe('activation');
    expect(d.variant).toBe('mask-ge');
    expect(d.message).toMatch(/Z1 >= 0 instead of Z1 > 0/);
    expect(t(r, 'dW2').status).toBe('pass');
  });

  it('a zero row of X with b1 = 0 puts every Z1 of that row at exactly 0: the reference follows relu\'(0) = 0, and >= is caught in dX', () => {
    const z = small();
    z.params.b1.fill(0);
    z.X.fill(0, 0, D); // row 0
    let r = verify(z.params, z.X, z.y, { reference });
    expect(r.ok, r.summary).toBe(true);
    expect(t(r, 'dX').maxAbsRef).toBeGreaterThan(0);
    r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: (zz) => (zz >= 0 ? 1 : 0) }), {}, z);
    // X[0,:] = 0 hides the bug from dW1 (Xᵀ·dZ1); db1 and dX see it.
    expect(t(r, 'dW1').status).toBe('pass');
    expect(r.firstFailure).toBe('db1');
    expect(t(r, 'dX').diagnosis[0]).toMatchObject({ kind: 'activation', variant: 'mask-ge' });
  });

  it('ReLU mask missing, or multiplied by A1 instead of the mask', () => {
    let r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: () => 1 }));
    expect(r.firstFailure).toBe('dW1');
    expect(t(r, 'dW1').diagnosis[0].variant).toBe('mask-missing');
    expect(t(r, 'db1').diagnosis[0].variant).toBe('mask-missing');
    expect(r.summary).toMatch(/dW1 and db1 fail the same way, so dZ1 .* is wrong/);
    r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: (_z, a) => a }));
    expect(t(r, 'dW1').diagnosis[0].variant).toBe('mask-times-A1');
  });

  it("sigmoid′ written on Z1, and tanh′ missing", () => {
    let r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: (z) => z * (1 - z) }), { activation: 'sigmoid' });
    expect(r.firstFailure).toBe('dW1');
    expect(t(r, 'dW1').diagnosis[0]).toMatchObject({ kind: 'activation', variant: 'act-deriv-on-Z1' });
    r = run((p, X, y, o) => backwardWith(p, X, y, o, { deriv: () => 1 }), { activation: 'tanh' });
    expect(t(r, 'dX').diagnosis[0]).toMatchObject({ kind: 'activation', variant: 'act-deriv-missing' });
  });

  it('dZ2 without subtracting onehot(y), and dW2 from Z1 instead of A1', () => {
    let r = run((p, X, y, o) => backwardWith(p, X, y, o, { noOnehot: true }));
    expect(r.firstFailure).toBe('dW2');
    expect(t(r, 'dW2').diagnosis[0]).toMatchObject({ kind: 'dZ2', variant: 'dZ2-no-onehot' });
    expect(r.summary).toMatch(/dZ2 itself is wrong/);
    // b1 nonzero and mixed-sign Z1, so Z1 ≠ A1 under ReLU.
    r = run((p, X, y, o) => backwardWith(p, X, y, o, { dW2FromZ1: true }));
    expect(r.tensors.filter((x) => x.status === 'fail').map((x) => x.name)).toEqual(['dW2']);
    expect(t(r, 'dW2').diagnosis[0]).toMatchObject({ kind: 'formula', variant: 'dW2-uses-Z1' });
  });

  it('shapes: an extra element, a bias as [1,H], another tensor returned in its place', () => {
    let r = run(broken((g) => ({ ...g, dW1: Float64Array.from([...g.dW1, 0]) })));
    expect(t(r, 'dW1').diagnosis.map((d) => d.kind)).toContain('shape');
    expect(t(r, 'dW1').diagnosis[0].message).toMatch(/dW1 has shape a flat array of 36, expected \[5,7\] \(35 elements\)/);
    r = run(broken((g) => ({ ...g, db1: [Array.from(g.db1)] })));
    expect(t(r, 'db1').diagnosis[0]).toMatchObject({ kind: 'shape' });
    expect(t(r, 'db1').diagnosis[0].message).toMatch(/right values in row-major order but the shape \[1,7\], expected \[7\]/);
    r = run((p, X, y, o) => {
      const m = backwardWith(p, X, y, o, {});
      return { dX: m.dX, dW1: m.dZ1, db1: m.db1, dW2: m.dW2, db2: m.db2 };
    });
    expect(t(r, 'dW1').diagnosis[0]).toMatchObject({ kind: 'wrong-tensor' });
    expect(t(r, 'dW1').diagnosis[0].message).toMatch(/dW1 holds dZ1 \[6,7\], not dW1 \[5,7\]/);
  });

  it('NaN, all zeros, a missing tensor, noise, and a candidate that throws', () => {
    let r = run(broken((g) => ({ ...g, db2: g.db2.map((v, i) => (i === 2 ? NaN : v)) })));
    expect(t(r, 'db2').status).toBe('fail');
    expect(t(r, 'db2').diagnosis[0].kind).toBe('nonfinite');
    expect(t(r, 'db2').worst!.index).toEqual([2]);
    r = run(broken((g) => ({ ...g, dW2: new Float64Array(g.dW2.length) })));
    expect(t(r, 'dW2').diagnosis[0].kind).toBe('zero');
    r = run(broken(({ dX, dW1, db1, db2 }) => ({ dX, dW1, db1, db2 })));
    expect(t(r, 'dW2').status).toBe('missing');
    expect(r.firstFailure).toBe('dW2');
    r = run(broken((g) => ({ ...g, dW1: g.dW1.map((v, i) => v * (1 + 1e-3 * Math.sin(i))) })));
    expect(t(r, 'dW1').diagnosis[0].kind).toBe('unexplained');
    r = run(() => {
      throw new Error('boom');
    });
    expect(r.ok).toBe(false);
    expect(r.candidateError).toMatch(/the candidate threw: boom/);
    r = run((() => 42) as never);
    expect(r.ok).toBe(false);
    expect(r.candidateError).toMatch(/returned 42, not an object of gradients/);
  });

  it('the candidate receives copies: one that writes into its inputs does not change the reference', () => {
    const ok = verify(s.params, s.X, s.y, { reference }).tensors;
    const r = run((p, X, y, o) => {
      const g = forwardBackward(p, X, y, o).grads;
      p.W1.fill(0);
      X.fill(0);
      return g;
    });
    expect(r.ok).toBe(true);
    const refs = (ts: typeof ok) => ts.filter((x) => x.name !== 'loss').map((x) => x.maxAbsRef);
    expect(refs(r.tensors)).toEqual(refs(ok));
    expect(s.X.some((v) => v !== 0)).toBe(true);
  });
});

describe('verify: arguments', () => {
  const s = small();
  it('bad options are TypeError/RangeError in the library wording', () => {
    expect(() => verify(s.params, s.X, s.y, { reference: 'autograd' as never })).toThrow(/Expected one of 'auto', 'torch', 'fd' for opts.reference but received "autograd"/);
    expect(() => verify(s.params, s.X, s.y, { candidate: 'cuda' as never })).toThrow(RangeError);
    expect(() => verify(s.params, s.X, s.y, { tolerance: -1 })).toThrow(/Expected a positive finite number for opts.tolerance but received -1/);
    expect(() => verify(s.params, s.X, Int32Array.from([0, 1, 2]))).toThrow(RangeError);
    const X = s.X.slice();
    X[3] = NaN;
    expect(() => verify(s.params, X, s.y)).toThrow(/Expected finite values in X but received NaN at index 3/);
    expect(() => verify(s.params, s.X, s.y, { candidate: (async () => ({})) as never })).toThrow(/synchronous/);
  });

  it("reference 'torch' demanded without the addon is ERR_TORCH_UNAVAILABLE (the library loaded with HANDGRAD_TORCH_ADDON pointing nowhere)", async () => {
    vi.stubEnv('HANDGRAD_TORCH_ADDON', join(tmpdir(), 'handgrad-no-such-dir', 'handgrad_torch.node'));
    vi.resetModules();
    try {
      const lib = await import('../lib');
      const err = thrown(() => lib.verify(s.params, s.X, s.y, { reference: 'torch' }));
      expect(err).toBeInstanceOf(lib.HandgradError);
      expect((err as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });

  it('a tolerance given is used as given', () => {
    const { params, X, y } = realistic();
    const r = verify(params, X, y, { reference: 'fd', tolerance: 0.001 });
    expect(r.toleranceEps).toBe(0.001);
    expect(r.ok).toBe(false); // nothing matches to a thousandth of an eps
    expect(t(r, r.firstFailure!).diagnosis[0].kind).toBe('precision');
  });
});

// ---- gradcheck ------------------------------------------------------------------------------------

describe('gradcheck', () => {
  it('the native backward passes in full mode for every JSON fixture, X included', () => {
    for (const c of jsonCases().filter((k) => k.dtype === 'float64')) {
      const p = { W1: typed('float64', c.inputs.W1), b1: typed('float64', c.inputs.b1), W2: typed('float64', c.inputs.W2), b2: typed('float64', c.inputs.b2) };
      const r = gradcheck(p, typed('float64', c.inputs.X), c.inputs.y, { activation: c.activation, reduction: c.reduction, inputGrad: true });
      expect(r.ok, `${c.name}: ${r.failures.join('\n')}`).toBe(true);
      expect(r.tensors.map((x) => x.name)).toEqual(['X', 'W1', 'b1', 'W2', 'b2']);
      for (const x of r.tensors) expect(x.checked + x.kinks, x.name).toBe(x.shape.reduce((a, b) => a * b, 1));
      expect(r.nondeterminism).toEqual({ checked: true, ok: true });
    }
  });

  it('ReLU kinks (Z1 exactly 0) are reported as kinks, not failures', () => {
    const c = jsonCases().find((k) => k.name.startsWith('relu-exact-zero'))!;
    const p = { W1: typed('float64', c.inputs.W1), b1: typed('float64', c.inputs.b1), W2: typed('float64', c.inputs.W2), b2: typed('float64', c.inputs.b2) };
    const r = gradcheck(p, typed('float64', c.inputs.X), c.inputs.y, { inputGrad: true });
    expect(r.ok).toBe(true);
    const kinks = r.tensors.reduce((a, x) => a + x.kinks, 0);
    expect(kinks).toBeGreaterThan(0);
    // At an exact 0 PyTorch's gradient is 0 while the two-sided difference sees half a slope.
    const k = r.tensors.find((x) => x.kinks > 0)!.kinkEntries[0];
    expect(k.analytical).toBe(0);
    expect(Math.abs(k.numerical)).toBeGreaterThan(1e-6);
  });

  it('a wrong gradient fails with a PyTorch-shaped message naming output, input, numerical and analytical', () => {
    const s = small();
    const r = gradcheck(broken((g) => ({ ...g, dW1: times(g.dW1, 2) })), s.X, s.y, { params: s.params });
    expect(r.ok).toBe(false);
    const w1 = r.tensors.find((x) => x.name === 'W1')!;
    expect(w1.pass).toBe(false);
    expect(w1.failures).toBeGreaterThan(0);
    expect(r.tensors.filter((x) => !x.pass).map((x) => x.name)).toEqual(['W1']);
    expect(r.failures[0]).toMatch(/^Gradient mismatch for output loss with respect to input W1 at index \[\d+,\d+\] \(\d+ of 35 entries fail \|a − n\| ≤ atol \+ rtol·\|n\| with atol=0.00001, rtol=0.001\),\nnumerical:\S+\nanalytical:\S+/);
    const w = w1.worst[0];
    expect(w.analytical / w.numerical).toBeCloseTo(2, 6);
    expect(w.relError).toBeCloseTo(1 / 3, 6);
  });

  it('fast mode: one directional derivative per tensor; a failure is re-checked entry by entry', () => {
    const s = small();
    let r = gradcheck(s.params, s.X, s.y, { mode: 'fast', inputGrad: true, activation: 'tanh' });
    expect(r.ok).toBe(true);
    for (const x of r.tensors) {
      expect(x.checked, x.name).toBe(1);
      expect(x.fast!.pass).toBe(true);
      expect(Math.abs(x.fast!.analytical - x.fast!.numerical)).toBeLessThan(1e-9);
    }
    r = gradcheck(broken((g) => ({ ...g, db2: times(g.db2, -1) })), s.X, s.y, { params: s.params, mode: 'fast', activation: 'tanh' });
    const b2 = r.tensors.find((x) => x.name === 'b2')!;
    expect(b2.recheckedInFull).toBe(true);
    expect(b2.mode).toBe('full');
    expect(b2.checked).toBe(4);
    expect(b2.pass).toBe(false);
    expect(r.failures[0]).toMatch(/with respect to input b2 \(fast mode: the directional derivative along a random unit vector u/);
    expect(r.failures[1]).toMatch(/with respect to input b2 at index \[\d\]/);
  });

  it('fast mode at the realistic size, float64, X included', () => {
    const { params, X, y } = realistic();
    const r = gradcheck(params, X, y, { mode: 'fast', inputGrad: true });
    expect(r.ok, r.failures.join('\n')).toBe(true);
  });

  it('backward run twice must agree bit for bit', () => {
    const s = small();
    let calls = 0;
    const flaky: GradFunction = (p, X, y, o) => {
      const g = forwardBackward(p, X, y, o).grads;
      // The second run differs in the last bit of one entry, as an atomic-add reduction might.
      if (calls++ > 0) g.db1[3] = g.db1[3] * (1 + Number.EPSILON);
      return g;
    };
    const r = gradcheck(flaky, s.X, s.y, { params: s.params });
    expect(r.tensors.every((x) => x.pass)).toBe(true);
    expect(r.nondeterminism.ok).toBe(false);
    expect(r.nondeterminism.message).toMatch(/Backward is not reentrant: running it twice on the same inputs gave different db1 \(first difference at \[3\]/);
    expect(r.ok).toBe(false);
    expect(gradcheck(flaky, s.X, s.y, { params: s.params, nondetCheck: false }).ok).toBe(true);
  });

  it('onProgress reports every tensor up to its total', () => {
    const s = small();
    const seen = new Map<string, number[]>();
    gradcheck(s.params, s.X, s.y, { onProgress: ({ tensor, done, total }) => seen.set(tensor, [...(seen.get(tensor) ?? []), done, total]) });
    expect([...seen.keys()]).toEqual(['W1', 'b1', 'W2', 'b2']);
    const w1 = seen.get('W1')!;
    expect(w1[w1.length - 2]).toBe(35);
    expect(w1[w1.length - 1]).toBe(35);
  });

  it('options and float32', () => {
    const s = small();
    // @ts-expect-error a gradient function without opts.params: a compile error (lib/verify/gradcheck.ts overloads), and at run time a TypeError
    expect(() => gradcheck(broken((g) => g), s.X, s.y)).toThrow(/for opts.params but received undefined/);
    expect(() => gradcheck(s.params, s.X, s.y, { eps: 0 })).toThrow(/Expected a positive finite number for opts.eps but received 0/);
    expect(() => gradcheck(s.params, s.X, s.y, { mode: 'slow' as never })).toThrow(RangeError);
    const p32 = Object.fromEntries(Object.entries(s.params).map(([k, v]) => [k, Float32Array.from(v)]));
    const r = gradcheck(p32 as never, Float32Array.from(s.X), s.y);
    expect(r.dtype).toBe('float32');
    expect(r.warnings[0]).toMatch(/designed for float64/);
  });
});
