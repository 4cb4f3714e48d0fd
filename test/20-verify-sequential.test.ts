// verify and gradcheck on a Sequential of any depth: correct backward paths pass on every backend
// against LibTorch autograd (when this build has it) and against finite differences, in both
// dtypes and reductions; deliberately broken gradients fail and the report names the first failing
// tensor and its layer; gradcheck reports ReLU kinks in any layer; Sequential([Linear, ReLU,
// Linear]) gives the very verdict and figures of the two-layer params; `handgrad verify --layers`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { forwardBackward, gradcheck, HandgradError, Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, transpose, verify } from '../lib';
import type { Layer } from '../lib/layers';
import type { Dtype, FloatArray, Reduction } from '../lib/types';
import { formatGradcheckReport, formatVerifyReport } from '../lib/verify/format';
import type { GradFunction, SequentialGradFunction, SequentialVerifyReport, VerifyReport } from '../lib/verify/verify';
import { backendCases, backendTitle, randomArray, randomLabels, skipReason, thrown, typed } from './helpers';

// The torch reference follows the torch backend's skip policy (test/helpers.ts); fd always runs.
const torchSkip = skipReason('torch');
const REFS = [['torch', torchSkip], ['fd', null]] as const;
const refTitle = (title: string, ref: 'torch' | 'fd', skip: string | null) => (ref === 'torch' ? backendTitle(title, 'torch', skip) : title);
const RUNNABLE_REFS = REFS.filter(([, skip]) => skip === null).map(([ref]) => ref);
const B = 8;
const D = 6;
const C = 4;

type Spec = ['linear', number, number] | ['relu' | 'tanh' | 'sigmoid'];

/** A Sequential from a list of layers; W scaled 1/√in and b from the test's own LCG, in the dtype. */
function build(spec: Spec[], dtype: Dtype = 'float64', seed = 1, reduction: Reduction = 'mean'): Sequential {
  const layers: Layer[] = spec.map((s, i) => {
    if (s[0] !== 'linear') return s[0] === 'relu' ? new ReLU() : s[0] === 'tanh' ? new Tanh() : new Sigmoid();
    const [, n, m] = s;
    return new Linear(n, m, { W: typed(dtype, randomArray(n * m, seed + 10 * i + 1, 1.5 / Math.sqrt(n))), b: typed(dtype, randomArray(m, seed + 10 * i + 2, 0.3)) });
  });
  return new Sequential(layers, { loss: new SoftmaxCrossEntropy({ reduction }) });
}

function batch(dtype: Dtype = 'float64', seed = 5) {
  return { X: typed(dtype, randomArray(B * D, seed)), y: randomLabels(B, C, seed + 1) };
}

/** Depth = number of Linear layers; mixed activations, a layer of width 1 in the deeper ones. */
const NETS: Record<string, Spec[]> = {
  'depth 1': [['linear', D, C]],
  'depth 3': [['linear', D, 7], ['tanh'], ['linear', 7, 1], ['sigmoid'], ['linear', 1, C]],
  'depth 5': [['linear', D, 9], ['relu'], ['linear', 9, 5], ['tanh'], ['linear', 5, 1], ['sigmoid'], ['linear', 1, 7], ['relu'], ['linear', 7, C]],
};

/** The net the broken candidates are built on: every W has both dimensions > 1, so a transpose shows. */
const FOUR: Spec[] = [['linear', D, 7], ['relu'], ['linear', 7, 5], ['tanh'], ['linear', 5, 3], ['sigmoid'], ['linear', 3, C]];

const t = (r: VerifyReport | SequentialVerifyReport, name: string) => r.tensors.find((x) => x.name === name)!;

/** loss, then dW_L, db_L, …, dW1, db1, dX. */
function backwardOrder(L: number): string[] {
  const out = ['loss'];
  for (let k = L; k >= 1; k--) out.push(`dW${k}`, `db${k}`);
  return [...out, 'dX'];
}

// ---- correct candidates ---------------------------------------------------------------------------

/** The worst eps seen per depth, backend and reference (printed at the end of the run). */
const worst = new Map<string, number>();

function passes(reference: 'torch' | 'fd') {
  for (const [depth, spec] of Object.entries(NETS)) for (const [candidate, skip] of backendCases(['native', 'ts', 'wasm'])) {
    it.skipIf(skip)(backendTitle(`${depth}: float64 and float32, mean and sum`, candidate, skip), () => {
      for (const dtype of ['float64', 'float32'] as const) {
        for (const reduction of ['mean', 'sum'] as const) {
          const seq = build(spec, dtype);
          const { X, y } = batch(dtype);
          const L = seq.linearNumber.filter((k) => k > 0).length;
          const r = verify(seq, X, y, { candidate, reference, reduction });
          const what = `${depth} ${dtype} ${reduction} ${candidate}`;
          expect(r.ok, `${what}: ${r.summary}`).toBe(true);
          expect(r.reference).toBe(reference);
          expect(r).toMatchObject({ dtype, reduction, candidate, network: seq.toString(), dims: { B, D, C }, widths: [...seq.widths], firstFailure: null, firstFailureLayer: null });
          expect(r.tensors.map((x) => x.name)).toEqual(backwardOrder(L));
          for (const x of r.tensors) {
            expect(x.status, `${what} ${x.name}`).toBe('pass');
            expect(x.epsUnits, `${what} ${x.name}`).toBeLessThanOrEqual(r.toleranceEps);
            worst.set(`${depth} ${candidate} vs ${reference} ${dtype}`, Math.max(worst.get(`${depth} ${candidate} vs ${reference} ${dtype}`) ?? 0, x.epsUnits));
          }
          // Each tensor names its layer and has its shape.
          seq.layers.forEach((_, i) => {
            for (const p of seq.paramNames(i)) {
              expect(t(r, `d${p}`).layer).toBe(seq.where(i));
              expect(t(r, `d${p}`).shape).toEqual(p[0] === 'W' ? [seq.widths[i], seq.widths[i + 1]] : [seq.widths[i + 1]]);
            }
          });
          expect(t(r, 'dX')).toMatchObject({ layer: seq.where(0), shape: [B, D] });
          expect(t(r, 'loss').layer).toBe(`SoftmaxCrossEntropy(${reduction})`);
        }
      }
    });
  }
}

describe.skipIf(torchSkip)(backendTitle('verify(seq): correct candidates pass against torch', 'torch', torchSkip), () => {
  passes('torch');

  it("the default reference is torch, and 'torch' itself as the candidate matches it", () => {
    const seq = build(NETS['depth 5']);
    const { X, y } = batch();
    expect(verify(seq, X, y).reference).toBe('torch');
    expect(verify(seq, X, y, { candidate: 'torch' }).ok).toBe(true);
  });
});

describe('verify(seq): correct candidates pass against finite differences', () => {
  passes('fd');

  it('a Sequential whose first layer is an activation, and one ending in an activation', () => {
    for (const spec of [[['tanh'], ['linear', D, 5], ['relu'], ['linear', 5, C]], [['linear', D, 5], ['sigmoid'], ['linear', 5, C], ['tanh']]] as Spec[][]) {
      const seq = build(spec);
      const { X, y } = batch();
      for (const reference of RUNNABLE_REFS) {
        const r = verify(seq, X, y, { reference });
        expect(r.ok, `${seq}: ${r.summary}`).toBe(true);
      }
    }
  });

  it('a user function returning the gradients as nested arrays with its loss passes; one without dX and loss skips them', () => {
    const seq = build(FOUR);
    const { X, y } = batch();
    const nested = (a: FloatArray, cols: number) => Array.from({ length: a.length / cols }, (_, i) => Array.from(a.subarray(i * cols, (i + 1) * cols)));
    let r = verify(seq, X, y, {
      reference: 'fd',
      candidate: (s, X2, y2, o) => {
        const f = s.forwardBackward(X2, y2, o);
        return { loss: f.loss, grads: { ...f.grads, dW2: nested(f.grads.dW2, 5), dX: nested(f.grads.dX, D) } };
      },
    });
    expect(r.ok, r.summary).toBe(true);
    expect(r.candidate).toBe('function');
    expect(t(r, 'dW2').candidateShape).toEqual([7, 5]);
    expect(t(r, 'loss').status).toBe('pass');
    r = verify(seq, X, y, { reference: 'fd', candidate: (s, X2, y2, o) => ({ ...s.forwardBackward(X2, y2, { ...o, inputGrad: false }).grads }) });
    expect(r.ok, r.summary).toBe(true);
    expect(t(r, 'dX').status).toBe('skipped');
    expect(t(r, 'loss').status).toBe('skipped');
  });
});

// ---- broken candidates: the first failure and its layer -------------------------------------------

/** The correct gradients of the Sequential handed to the function, edited by `edit`. */
function broken(edit: (g: Record<string, Float64Array>) => Record<string, unknown>): SequentialGradFunction {
  return (s, X, y, o) => {
    const g = s.forwardBackward(X, y, o).grads;
    return edit(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Float64Array.from(v)]))) as never;
  };
}
const times = (a: Float64Array, k: number) => a.map((x) => x * k);

for (const [reference, skip] of REFS) describe.skipIf(skip)(refTitle(`verify(seq) names the first failing tensor and its layer (reference ${reference})`, reference, skip), () => {
  const seq = build(FOUR);
  const { X, y } = batch();
  const run = (candidate: SequentialGradFunction, reduction: Reduction = 'mean') => verify(seq, X, y, { candidate, reference, reduction });
  const failing = (r: SequentialVerifyReport) => r.tensors.filter((x) => x.status !== 'pass' && x.status !== 'skipped').map((x) => x.name);

  it('dW2 transposed: dW2 of layers[2] (Linear 7→5), in the report, the summary and the formatted table', () => {
    const r = run(broken((g) => ({ ...g, dW2: transpose(g.dW2, 7, 5) })));
    expect(r.ok).toBe(false);
    expect(r.firstFailure).toBe('dW2');
    expect(r.firstFailureLayer).toBe('layers[2] (Linear 7→5)');
    expect(t(r, 'dW2').layer).toBe('layers[2] (Linear 7→5)');
    expect(failing(r)).toEqual(['dW2']);
    expect(t(r, 'dW2').diagnosis.map((d) => d.kind)).toEqual(['transpose']);
    expect(t(r, 'dW2').diagnosis[0].message).toMatch(/dW2 is transposed: it holds dW2ᵀ \[5,7\] where dW2 \[7,5\] belongs \(dZ2ᵀ·A1 instead of A1ᵀ·dZ2\)/);
    expect(r.summary).toMatch(/^First failing tensor in backward order: dW2 of layers\[2\] \(Linear 7→5\)\. /);
    expect(r.summary).toMatch(/db2 = Σ_b dZ2 passes, so dZ2 is right: the error is in the product dW2 = A1ᵀ·dZ2 itself\./);
    const text = formatVerifyReport(r);
    expect(text).toMatch(/^tensor\s+layer\s+shape\s+max\|Δ\|/m);
    expect(text).toMatch(/^dW2\s+layers\[2\] \(Linear 7→5\)\s+\[7,5\]\s.*FAIL$/m);
    expect(text).toMatch(/^db2\s+layers\[2\] \(Linear 7→5\)\s+\[5\]\s.*ok$/m);
    expect(text).toMatch(/^dW2 \(layers\[2\] \(Linear 7→5\)\):\n {2}- \[transpose\]/m);
    expect(text).toMatch(/^MISMATCH: First failing tensor in backward order: dW2 of layers\[2\] \(Linear 7→5\)\./m);
  });

  it('dW2 × 2 and dW2 × −1: a constant factor and a sign flip, in layers[2]', () => {
    let r = run(broken((g) => ({ ...g, dW2: times(g.dW2, 2) })));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW2', 'layers[2] (Linear 7→5)']);
    expect(failing(r)).toEqual(['dW2']);
    expect(t(r, 'dW2').diagnosis[0]).toMatchObject({ kind: 'scale' });
    expect(t(r, 'dW2').diagnosis[0].factor!).toBeCloseTo(2, 10);
    r = run(broken((g) => ({ ...g, dW2: times(g.dW2, -1) })));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW2', 'layers[2] (Linear 7→5)']);
    expect(t(r, 'dW2').diagnosis[0].kind).toBe('sign');
  });

  it('db3 without the 1/B of the mean: db3 of layers[4] (Linear 5→3), "forgot the /B"', () => {
    const r = run(broken((g) => ({ ...g, db3: times(g.db3, B) })));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['db3', 'layers[4] (Linear 5→3)']);
    expect(failing(r)).toEqual(['db3']);
    const d = t(r, 'db3').diagnosis[0];
    expect(d.kind).toBe('scale');
    expect(d.factor!).toBeCloseTo(B, 10);
    expect(d.message).toMatch(/db3 is B = 8 × the reference: forgot the \/B of the mean/);
    expect(r.summary).toMatch(/dW3 = A2ᵀ·dZ3 passes, so dZ3 is right: the error is in the bias reduction db3 = Σ_b dZ3\./);
  });

  it('dX zeroed: dX of layers[0] (Linear 6→7), all zeros, every weight gradient right', () => {
    const r = run(broken((g) => ({ ...g, dX: new Float64Array(g.dX.length) })));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dX', 'layers[0] (Linear 6→7)']);
    expect(failing(r)).toEqual(['dX']);
    expect(t(r, 'dX').diagnosis[0].kind).toBe('zero');
    expect(r.summary).toMatch(/Every weight gradient passes, so dZ1 is right: the error is in dX = dZ1·W1ᵀ itself\./);
  });

  it('dZ4 without /B (everything × B, reduction sum): the last layer first, everything after it inherits', () => {
    const r = run(broken((g) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, times(v, B)]))), 'sum');
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW4', 'layers[6] (Linear 3→4)']);
    expect(failing(r)).toEqual(['dW4', 'db4', 'dW3', 'db3', 'dW2', 'db2', 'dW1', 'db1', 'dX']);
    expect(t(r, 'dW4').diagnosis[0].message).toMatch(/multiplied by B although reduction 'sum' has no 1\/B to undo/);
    expect(r.summary).toMatch(/dW4 = A3ᵀ·dZ4 and db4 = Σ_b dZ4 fail the same way, so dZ4 itself is wrong, and everything computed from it \(dW3, db3, dW2, db2, dW1, db1, dX\) inherits the error\./);
  });

  it('dW2 and db2 × 2, everything after right: dZ2 = (dZ3·W3ᵀ) ⊙ act′(Z2) is wrong', () => {
    const r = run(broken((g) => ({ ...g, dW2: times(g.dW2, 2), db2: times(g.db2, 2), dW1: times(g.dW1, 2), db1: times(g.db1, 2), dX: times(g.dX, 2) })));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW2', 'layers[2] (Linear 7→5)']);
    expect(r.summary).toMatch(/Linears 3–4 are right \(dW4, db4, dW3, db3 pass\); dW2 and db2 fail the same way, so dZ2 = \(dZ3·W3ᵀ\) ⊙ act′\(Z2\) is wrong: check dA2 = dZ3·W3ᵀ and the activation derivative\./);
    expect(r.summary).toMatch(/Also failing: db2, dW1, db1, dX\./);
  });

  it('a missing dW3, another layer\'s gradient in its place, a candidate that throws', () => {
    let r = run(broken(({ dW3: _drop, ...rest }) => rest));
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW3', 'layers[4] (Linear 5→3)']);
    expect(t(r, 'dW3').status).toBe('missing');
    // A net with two Linear layers of one shape: dW3 [5,5] returned as dW2 [5,5].
    const sq = build([['linear', D, 5], ['tanh'], ['linear', 5, 5], ['tanh'], ['linear', 5, 5], ['relu'], ['linear', 5, C]]);
    r = verify(sq, X, y, { reference, candidate: broken((g) => ({ ...g, dW3: g.dW2 })) });
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW3', 'layers[4] (Linear 5→5)']);
    expect(t(r, 'dW3').diagnosis[0]).toMatchObject({ kind: 'wrong-tensor', message: 'dW3 holds dW2 [5,5], not dW3 [5,5]' });
    r = run(() => {
      throw new Error('boom');
    });
    expect(r.ok).toBe(false);
    expect(r.candidateError).toMatch(/the candidate threw: boom/);
    r = run((() => 7) as never);
    expect(r.candidateError).toMatch(/returned 7, not an object of gradients \{ dW1, db1, dW2, db2, dW3, db3, dW4, db4, dX\? \}/);
  });

  it('the function gets a copy of the network and the batch: writing into them changes nothing', () => {
    const before = Object.fromEntries(Object.entries(seq.params).map(([k, v]) => [k, v.slice()]));
    const Xb = X.slice();
    const r = run((s, X2, y2, o) => {
      const g = s.forwardBackward(X2, y2, o).grads;
      for (const p of Object.values(s.params)) p.fill(0);
      X2.fill(0);
      return g;
    });
    expect(r.ok, r.summary).toBe(true);
    for (const [k, v] of Object.entries(seq.params)) expect(Array.from(v), k).toEqual(Array.from(before[k]));
    expect(Array.from(X)).toEqual(Array.from(Xb));
  });
});

// ---- gradcheck ------------------------------------------------------------------------------------

describe('gradcheck(seq)', () => {
  for (const [backend, skip] of backendCases(['native', 'ts', 'wasm'])) {
    it.skipIf(skip)(backendTitle('depth 3 passes in full and fast mode, X included, every input named with its layer', backend, skip), () => {
      const seq = build(NETS['depth 3']);
      const { X, y } = batch();
      for (const mode of ['full', 'fast'] as const) {
        const r = gradcheck(seq, X, y, { backend, mode, inputGrad: true });
        expect(r.ok, `${backend} ${mode}: ${r.failures.join('\n')}`).toBe(true);
        expect(r.tensors.map((x) => [x.name, x.layer, x.shape])).toEqual([
          ['X', 'layers[0] (Linear 6→7)', [B, D]], ['W1', 'layers[0] (Linear 6→7)', [D, 7]], ['b1', 'layers[0] (Linear 6→7)', [7]],
          ['W2', 'layers[2] (Linear 7→1)', [7, 1]], ['b2', 'layers[2] (Linear 7→1)', [1]],
          ['W3', 'layers[4] (Linear 1→4)', [1, C]], ['b3', 'layers[4] (Linear 1→4)', [C]],
        ]);
        for (const x of r.tensors) {
          if (mode === 'full') expect(x.checked + x.kinks, x.name).toBe(x.shape.reduce((a, b) => a * b, 1));
          expect(x.maxRelError, x.name).toBeLessThan(1e-7);
        }
        expect(r).toMatchObject({ network: seq.toString(), analytical: backend, nondeterminism: { checked: true, ok: true } });
      }
    });
  }

  it('ReLU inputs exactly at 0, in the first and in the second ReLU layer, are reported as kinks, not failures; a tensor left with nothing checked is not ok', () => {
    const seq = build([['linear', D, 5], ['relu'], ['linear', 5, 6], ['relu'], ['linear', 6, C]]);
    const { X, y } = batch();
    // Row 0 of X is zero and b1 = 0: Z1[0,:] = 0, so A1[0,:] = 0; with b2 = 0, Z2[0,:] = 0 too.
    X.fill(0, 0, D);
    seq.params.b1.fill(0);
    seq.params.b2.fill(0);
    const r = gradcheck(seq, X, y, { inputGrad: true });
    const byName = Object.fromEntries(r.tensors.map((x) => [x.name, x]));
    // Every entry of b1 and b2 moves row 0's units across their kink: nothing of them is checked,
    // so they do not pass (a wrong db1 passed that way; torch's gradcheck, which skips no entry,
    // raises there). Every other tensor passes, its kinks reported, not failed.
    expect(r.ok).toBe(false);
    expect(r.failures.map((f) => f.split(':')[0])).toEqual(['Nothing checked for input b1', 'Nothing checked for input b2']);
    for (const t of r.tensors) expect(t.pass, t.name).toBe(t.name !== 'b1' && t.name !== 'b2');
    expect([byName.b1.checked, byName.b2.checked]).toEqual([0, 0]);
    expect(byName.X.kinks).toBeGreaterThan(0);
    expect(byName.b1.kinks).toBeGreaterThan(0); // the first ReLU
    expect(byName.b2.kinks).toBeGreaterThan(0); // the second ReLU: Z2[0,:] moves only through b2
    expect(byName.b3.kinks).toBe(0);
    // At an exact 0 the analytical gradient is 0 (PyTorch's relu'(0)) while the two-sided difference sees half a slope.
    const k = byName.X.kinkEntries[0];
    expect(k.index[0]).toBe(0);
    expect(k.analytical).toBe(0);
    expect(Math.abs(k.numerical)).toBeGreaterThan(1e-6);
    expect(formatGradcheckReport(r)).toMatch(/^b2\s+layers\[2\] \(Linear 5→6\)\s+\[6\]\s+\d+\s+0\s+[1-9]\d*\s/m);
  });

  it('a wrong gradient fails naming the input (W3, a Linear number past the two-layer names); a function is checked at opts.params', () => {
    const seq = build(FOUR);
    const { X, y } = batch();
    const r = gradcheck(broken((g) => ({ ...g, dW3: times(g.dW3, 2) })), X, y, { params: seq });
    expect(r.ok).toBe(false);
    expect(r.tensors.filter((x) => !x.pass).map((x) => [x.name, x.layer])).toEqual([['W3', 'layers[4] (Linear 5→3)']]);
    expect(r.failures[0]).toMatch(/^Gradient mismatch for output loss with respect to input W3 at index \[\d+,\d+\] \(\d+ of 15 entries fail/);
    const fast = gradcheck(broken((g) => ({ ...g, db4: times(g.db4, -1) })), X, y, { params: seq, mode: 'fast' });
    expect(fast.tensors.filter((x) => !x.pass).map((x) => x.name)).toEqual(['b4']);
    expect(fast.tensors.find((x) => x.name === 'b4')!.recheckedInFull).toBe(true);
  });
});

// ---- Sequential([Linear, ReLU, Linear]) is the two-layer network --------------------------------------

describe('Sequential([Linear(D,H), ReLU, Linear(H,C)]) and the two-layer params with the same numbers', () => {
  const H = 7;
  const params = { W1: randomArray(D * H, 21, 0.8), b1: randomArray(H, 22, 0.2), W2: randomArray(H * C, 23, 0.8), b2: randomArray(C, 24, 0.2) };
  const seq = new Sequential([new Linear(D, H, { W: params.W1.slice(), b: params.b1.slice() }), new ReLU(), new Linear(H, C, { W: params.W2.slice(), b: params.b2.slice() })]);
  const { X, y } = batch();
  const figures = (r: VerifyReport | SequentialVerifyReport) =>
    Object.fromEntries(r.tensors.map(({ name, shape, status, candidateShape, maxAbsDiff, maxAbsRef, relError, epsUnits, worst: w, mismatches, diagnosis }) =>
      [name, { shape, status, candidateShape, maxAbsDiff, maxAbsRef, relError, epsUnits, worst: w, mismatches, diagnosis }]));
  const dW1xB: GradFunction = (p, X2, y2, o) => {
    const g = forwardBackward(p, X2, y2, o).grads;
    return { ...g, dW1: g.dW1.map((x) => x * B) };
  };
  const seqDW1xB: SequentialGradFunction = (s, X2, y2, o) => {
    const g = s.forwardBackward(X2, y2, o).grads;
    return { ...g, dW1: g.dW1.map((x) => x * B) };
  };

  for (const [reference, skip] of REFS) {
    it.skipIf(skip)(refTitle(`the same verdict and figures, tensor by tensor, against ${reference}: native, ts, and a broken function`, reference, skip), () => {
      for (const reduction of ['mean', 'sum'] as const) {
        for (const [two, one] of [['native', 'native'], ['ts', 'ts'], [dW1xB, seqDW1xB]] as const) {
          const a = verify(params, X, y, { reference, reduction, candidate: two });
          const b = verify(seq, X, y, { reference, reduction, candidate: one });
          expect(b.ok).toBe(a.ok);
          expect(b.firstFailure).toBe(a.firstFailure);
          expect(figures(b)).toEqual(figures(a));
          // The summary says the same, with the layer named.
          expect(b.summary.replace(/ of layers\[\d\] \([^)]*\)/, '')).toBe(a.summary);
        }
      }
      expect(verify(params, X, y, { reference, candidate: dW1xB }).summary).toMatch(/db1 = Σ_b dZ1 passes, so dZ1 is right: the error is in the product dW1 = Xᵀ·dZ1 itself/);
    });
  }

  it('gradcheck: the same figures', () => {
    for (const mode of ['full', 'fast'] as const) {
      const a = gradcheck(params, X, y, { mode, inputGrad: true });
      const b = gradcheck(seq, X, y, { mode, inputGrad: true });
      const strip = (r: typeof a | typeof b) => r.tensors.map(({ layer: _layer, ...rest }) => rest);
      expect(strip(b)).toEqual(strip(a));
      expect(b.ok).toBe(a.ok);
    }
  });
});

// ---- arguments ----------------------------------------------------------------------------------------

describe('verify(seq) and gradcheck(seq): arguments', () => {
  const seq = build(NETS['depth 3']);
  const { X, y } = batch();

  it('refused in the library wording, before anything runs', () => {
    expect(() => verify(seq, X, y, { activation: 'tanh' } as never)).toThrow(/Expected no opts.activation with a Sequential \(its layers hold the activations\) for opts.activation but received "tanh"/);
    expect(() => gradcheck(seq, X, y, { activation: 'tanh' } as never)).toThrow(TypeError);
    expect(() => verify(seq, Float32Array.from(X), y)).toThrow(/Expected X and params of one dtype \(params are float64\)/);
    expect(() => verify(seq, X, Int32Array.from({ length: B }, () => C))).toThrow(RangeError);
    const Xn = X.slice();
    Xn[4] = NaN;
    expect(() => verify(seq, Xn, y)).toThrow(/Expected finite values in X but received NaN at index 4/);
    const bad = build(NETS['depth 3']);
    bad.params.W2[3] = Infinity;
    expect(() => verify(bad, X, y)).toThrow(/Expected finite values in W2 but received Infinity at index 3/);
    expect(() => verify(seq, X, y, { candidate: 'cuda' as never })).toThrow(RangeError);
    // @ts-expect-error without opts.params: a compile error too (the overloads); the run-time check stays for JavaScript callers
    expect(() => gradcheck(broken((g) => g), X, y)).toThrow(/or a Sequential\) to check a gradient function at for opts.params but received undefined/);
  });

  it('a forward that overflows is a RangeError naming the layer', () => {
    const big = build([['linear', D, 5], ['sigmoid'], ['linear', 5, C]]);
    big.params.W2.fill(1e308);
    expect(() => verify(big, X, y)).toThrow(/Expected a finite forward pass but layers\[2\] \(Linear 5→4\) = the output of layers\[1\]·W2 \+ b2 overflowed/);
  });

  it("the reduction defaults to the Sequential's loss, opts.reduction overrides it", () => {
    const sum = build(NETS['depth 3'], 'float64', 1, 'sum');
    expect(verify(sum, X, y, { reference: 'fd' })).toMatchObject({ ok: true, reduction: 'sum' });
    expect(verify(sum, X, y, { reference: 'fd', reduction: 'mean' })).toMatchObject({ ok: true, reduction: 'mean' });
    // A candidate that ignores the reduction it is handed fails by exactly B.
    const r = verify(sum, X, y, { reference: 'fd', reduction: 'mean', candidate: (s, X2, y2) => s.forwardBackward(X2, y2, { inputGrad: true }).grads });
    expect(t(r, r.firstFailure!).diagnosis[0].message).toMatch(/is B = 8 × the reference/);
  });

  it("reference 'torch' demanded without the addon is ERR_TORCH_UNAVAILABLE (the library loaded with HANDGRAD_TORCH_ADDON pointing nowhere)", async () => {
    vi.stubEnv('HANDGRAD_TORCH_ADDON', join(tmpdir(), 'handgrad-no-such-dir', 'handgrad_torch.node'));
    vi.resetModules();
    try {
      const lib = await import('../lib');
      const err = thrown(() => lib.verify(lib.Sequential.mlp([D, 5, C], { seed: 1 }), X, y, { reference: 'torch' }));
      expect(err).toBeInstanceOf(lib.HandgradError);
      expect((err as HandgradError).code).toBe('ERR_TORCH_UNAVAILABLE');
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});

// ---- handgrad verify --layers ---------------------------------------------------------------------------

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-verify-seq-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('handgrad verify --layers (the compiled CLI; `node scripts/setup.mjs` builds dist/)', () => {
  it('dist/ is built', () => {
    expect(existsSync(join(ROOT, 'dist', 'lib', 'commands', 'verify.js')), 'run `node scripts/setup.mjs` first').toBe(true);
  });

  it('a Sequential.mlp([D, …layers, C]) passes: exit 0, one row per tensor with its layer', () => {
    const r = cli(['verify', '--layers', '12,1,9', '--B', '10', '--D', '6', '--C', '5', '--activation', 'tanh', '--reference', 'fd']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^verify: Sequential\(Linear 6→12, Tanh, Linear 12→1, Tanh, Linear 1→9, Tanh, Linear 9→5; SoftmaxCrossEntropy\(mean\)\), B=10, float64, reduction mean$/m);
    for (const [name, layer, shape] of [['dW4', 'layers[6] (Linear 9→5)', '[9,5]'], ['db2', 'layers[2] (Linear 12→1)', '[1]'], ['dX', 'layers[0] (Linear 6→12)', '[10,6]']]) {
      expect(r.stdout).toMatch(new RegExp(`^${name}\\s+${layer.replace(/[[\]()]/g, '\\$&')}\\s+${shape.replace(/[[\]]/g, '\\$&')}\\s.*\\sok$`, 'm'));
    }
    expect(r.stdout).toMatch(/^OK: All checked tensors match/m);
    const json = JSON.parse(cli(['verify', '--layers', '7', '--B', '4', '--D', '3', '--C', '2', '--dtype', 'float32', '--reduction', 'sum', '--json']).stdout);
    expect(json).toMatchObject({ ok: true, dtype: 'float32', reduction: 'sum', widths: [3, 7, 7, 2] });
  });

  it('a broken candidate module (seq, X, y, opts) => grads exits 1 naming the tensor and its layer', () => {
    const file = join(tmp, 'broken.js');
    writeFileSync(file, `module.exports = (seq, X, y, opts) => {
  const g = seq.forwardBackward(X, y, opts).grads;
  return { ...g, dW2: g.dW2.map((v) => -v) };
};
`);
    const r = cli(['verify', '--layers', '8,6', '--B', '5', '--D', '4', '--C', '3', '--candidate', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^dW2\s+layers\[2\] \(Linear 8→6\)\s+\[8,6\]\s.*FAIL$/m);
    expect(r.stdout).toMatch(/^MISMATCH: First failing tensor in backward order: dW2 of layers\[2\] \(Linear 8→6\)\. dW2 is −1 × the reference/m);
  });

  it('--layers with --H, or a width that is not a positive integer, is a usage error (exit 2)', () => {
    let r = cli(['verify', '--layers', '8', '--H', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--H/);
    r = cli(['verify', '--layers', '8,0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected a positive integer for --layers\[1\] but received "0"/);
  });
});

afterAll(() => {
  // The worst error per depth, candidate, reference and dtype (what docs/verifier.md quotes).
  if (process.env.HANDGRAD_VERIFY_FIGURES) for (const [k, e] of [...worst].sort()) console.log(`${k.padEnd(40)} ${e.toFixed(2)} eps`);
});
