// verify and gradcheck as one path for both forms of the network: a gradient function gets the
// network as the caller passed it (the two-layer params with D, H, C and any other field, copied);
// unknown option keys are named with what they most likely meant; a Sequential of any depth gets
// the diagnoses that recompute the backward chain (ReLU mask, activation derivative, dZ of the
// logits, a bias not reduced or reduced over the wrong axis) as the two-layer params always did;
// and nothing under lib/layers or lib/model.ts depends on lib/verify.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forwardBackward, gradcheck, initParams, Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh, verify } from '../lib';
import type { Params } from '../lib/types';
import type { SequentialGradFunction, SequentialVerifyReport } from '../lib/verify/verify';
import { randomArray, randomLabels } from './helpers';

const [B, D, H, C] = [6, 5, 7, 4];
const X = randomArray(B * D, 31);
const y = randomLabels(B, C, 32);
const nested = (a: ArrayLike<number>, rows: number, cols: number) => Array.from({ length: rows }, (_, i) => Array.from(a).slice(i * cols, (i + 1) * cols));

describe('a gradient function gets the params as the caller passed them', () => {
  const params = initParams({ D, H, C }, { seed: 4, init: 'torch' });

  // Shapes the gradients from p.D, p.H, p.C: without them every tensor would have a wrong shape.
  const byDims = (p: Params, X2: Float64Array | Float32Array, y2: Int32Array, o: { activation: 'relu' | 'sigmoid' | 'tanh'; reduction: 'mean' | 'sum' }) => {
    const g = forwardBackward(p, X2, y2, { ...o, inputGrad: true }).grads;
    const [d, h, c] = [p.D!, p.H!, p.C!];
    return { dX: nested(g.dX!, y2.length, d), dW1: nested(g.dW1, d, h), db1: Array.from(g.db1), dW2: nested(g.dW2, h, c), db2: Array.from(g.db2) };
  };

  it('a candidate computing with p.D, p.H, p.C passes verify and gradcheck', () => {
    for (const reference of ['fd', 'auto'] as const) {
      const r = verify(params, X, y, { candidate: byDims, reference, activation: 'tanh' });
      expect(r.ok, r.summary).toBe(true);
      expect(r.tensors.map((t) => [t.name, t.candidateShape])).toEqual([['loss', null], ['dX', [B, D]], ['dW1', [D, H]], ['db1', null], ['dW2', [H, C]], ['db2', null]]);
    }
    expect(gradcheck(byDims, X, y, { params, inputGrad: true }).ok).toBe(true);
  });

  it('the params’ own activation is the default, as forwardBackward’s: a tanh net is checked as tanh', () => {
    const tanhParams = { ...params, activation: 'tanh' as const };
    const r = verify(tanhParams, X, y, { reference: 'fd' });
    expect(r.ok, r.summary).toBe(true);
    expect((r as { activation?: string }).activation).toBe('tanh');
    // A candidate that ignores the activation it is handed (ReLU) is caught against the tanh truth.
    const relu = verify(tanhParams, X, y, { reference: 'fd', candidate: (p, X2, y2, o) => forwardBackward(p, X2, y2, { ...o, activation: 'relu', inputGrad: true }).grads });
    expect(relu.ok).toBe(false);
  });

  // Every field a params object may hold (a key of no params object is refused: test/61).
  it('every field the caller passed, loadParams\' metadata too, on a copy: writing into it changes nothing', () => {
    const mine = { ...params, metadata: { note: 'mine' }, layout: 'handgrad' };
    const before = mine.W1.slice();
    let seen: Record<string, unknown> = {};
    const r = verify(mine, X, y, {
      reference: 'fd',
      candidate: (p, X2, y2, o) => {
        seen = p as unknown as Record<string, unknown>;
        const g = forwardBackward(p, X2, y2, o).grads;
        p.W1.fill(0);
        return g;
      },
    });
    expect(r.ok, r.summary).toBe(true);
    expect(Object.keys(seen).sort()).toEqual(Object.keys(mine).sort());
    expect(seen).toMatchObject({ D, H, C, metadata: { note: 'mine' }, layout: 'handgrad' });
    expect(seen).not.toBe(mine);
    expect(seen.W1).not.toBe(mine.W1);
    expect(Array.from(mine.W1)).toEqual(Array.from(before));
    // Without D, H, C the function gets none either.
    const { W1, b1, W2, b2 } = params;
    verify({ W1, b1, W2, b2 }, X, y, { reference: 'fd', candidate: (p, X2, y2, o) => ((seen = p as never), forwardBackward(p, X2, y2, o).grads) });
    expect(Object.keys(seen).sort()).toEqual(['W1', 'W2', 'b1', 'b2']);
  });
});

describe('verify and gradcheck options: unknown keys are TypeErrors naming the key', () => {
  const params = initParams({ D, H, C }, { seed: 1 });
  const seq = Sequential.mlp([D, H, C], { seed: 1 });

  it('with what it most likely meant, for either form of the network', () => {
    expect(() => verify(params, X, y, { candidat: 'ts' } as never)).toThrow(TypeError);
    expect(() => verify(params, X, y, { candidat: 'ts' } as never)).toThrow(/Expected no option 'candidat' for opts \(did you mean 'candidate'\?\)/);
    expect(() => verify(seq, X, y, { refrence: 'fd' } as never)).toThrow(/'refrence' .*did you mean 'reference'/);
    expect(() => gradcheck(params, X, y, { mod: 'fast' } as never)).toThrow(/Expected no option 'mod' for opts \(did you mean 'mode'\?\)/);
    expect(() => gradcheck(seq, X, y, { input_grad: true } as never)).toThrow(/did you mean 'inputGrad'/);
    expect(() => verify(params, X, y, { zzz: 1 } as never)).toThrow(/the options are activation, reduction, candidate, reference, tolerance, inputGrad, fdStep/);
  });

  it("F.cross_entropy's options: PyTorch's names are answered with this package's, and opts must be an object", () => {
    expect(() => verify(params, X, y, { label_smoothing: 0.1 } as never)).toThrow(/did you mean 'labelSmoothing'/);
    expect(gradcheck(seq, X, y, { weight: new Float64Array(C).fill(1) }).ok).toBe(true);
    expect(() => verify(params, X, y, null as never)).toThrow(/Expected an options object for opts but received null/);
  });
});

// ---- a Sequential of any depth gets the backward-chain diagnoses --------------------------------------

type Act = 'relu' | 'tanh' | 'sigmoid';

/**
 * A hand-written backward of a Sequential from its forward cache, with hooks for the usual bugs: an
 * activation derivative `deriv(kind, z, a)`, dZ of the logits without the one-hot.
 */
function handBackward(seq: Sequential, X2: Float64Array, y2: Int32Array, bugs: { deriv?: (kind: Act, z: number, a: number) => number | undefined; noOnehot?: boolean } = {}) {
  const n = y2.length;
  const { cache } = seq.forwardBackward(X2, y2, { cache: true, backend: 'ts' });
  const outs = cache!.outputs;
  const widths = seq.widths;
  const c = widths[widths.length - 1];
  let g = Float64Array.from(cache!.probs, (p) => p / n);
  if (!bugs.noOnehot) for (let b = 0; b < n; b++) g[b * c + y2[b]] -= 1 / n;
  const grads: Record<string, Float64Array> = {};
  const dZ: Record<string, Float64Array> = {};
  for (let i = seq.layers.length - 1; i >= 0; i--) {
    const input = i === 0 ? X2 : (outs[i - 1] as Float64Array);
    const [win, wout] = [widths[i], widths[i + 1]];
    const k = seq.linearNumber[i];
    const next = new Float64Array(n * win);
    if (k > 0) {
      dZ[`dZ${k}`] = g;
      const W = seq.params[`W${k}`];
      const dW = new Float64Array(win * wout);
      const db = new Float64Array(wout);
      for (let b = 0; b < n; b++) {
        for (let o = 0; o < wout; o++) {
          const go = g[b * wout + o];
          db[o] += go;
          for (let j = 0; j < win; j++) {
            dW[j * wout + o] += input[b * win + j] * go;
            next[b * win + j] += go * W[j * wout + o];
          }
        }
      }
      grads[`dW${k}`] = dW;
      grads[`db${k}`] = db;
    } else {
      const kind = seq.layers[i].kind as Act;
      const out = outs[i];
      for (let j = 0; j < next.length; j++) {
        const [z, a] = [input[j], out[j]];
        const right = kind === 'relu' ? (z > 0 ? 1 : 0) : kind === 'tanh' ? 1 - a * a : a * (1 - a);
        next[j] = g[j] * (bugs.deriv?.(kind, z, a) ?? right);
      }
    }
    g = next;
  }
  grads.dX = g;
  return { grads, dZ };
}

describe('verify(seq): the chain diagnoses at depth 4', () => {
  // Linear 1 → ReLU → Linear 2 → Tanh → Linear 3 → Sigmoid → Linear 4; B = 6 and every width different.
  const lin = (i: number, o: number, seed: number) => new Linear(i, o, { W: randomArray(i * o, seed, 1.2 / Math.sqrt(i)), b: randomArray(o, seed + 1, 0.3) });
  const seq = new Sequential([lin(D, 8, 1), new ReLU(), lin(8, 7, 3), new Tanh(), lin(7, 3, 5), new Sigmoid(), lin(3, C, 7)], { loss: new SoftmaxCrossEntropy() });
  const run = (candidate: SequentialGradFunction) => verify(seq, X, y, { candidate, reference: 'fd' });
  const first = (r: SequentialVerifyReport) => r.tensors.find((t) => t.name === r.firstFailure)!;

  it('the hand backward itself passes', () => {
    const r = run((s, X2, y2) => handBackward(s, X2 as Float64Array, y2).grads);
    expect(r.ok, r.summary).toBe(true);
  });

  it('no ReLU mask: dW1 of layers[0], the mask-missing variant', () => {
    const r = run((s, X2, y2) => handBackward(s, X2 as Float64Array, y2, { deriv: (kind) => (kind === 'relu' ? 1 : undefined) }).grads);
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW1', 'layers[0] (Linear 5→8)']);
    expect(first(r).diagnosis[0]).toMatchObject({ kind: 'activation', variant: 'mask-missing' });
    expect(first(r).diagnosis[0].message).toMatch(/no ReLU mask: dZ1 = dA1/);
  });

  it("tanh′ written on Z2: dW2 of layers[2], the act-deriv-on-Z1 variant named with Z2", () => {
    const r = run((s, X2, y2) => handBackward(s, X2 as Float64Array, y2, { deriv: (kind, z) => (kind === 'tanh' ? 1 - z * z : undefined) }).grads);
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['dW2', 'layers[2] (Linear 8→7)']);
    expect(first(r).diagnosis[0]).toMatchObject({ kind: 'activation', variant: 'act-deriv-on-Z1' });
    expect(first(r).diagnosis[0].message).toMatch(/tanh′ written as 1−Z2²: the output-form derivative applied to Z2 \(it is 1−A2²\)/);
  });

  it('dZ4 without the one-hot: dW4 first, the dZ variant named with Z4', () => {
    const r = run((s, X2, y2) => handBackward(s, X2 as Float64Array, y2, { noOnehot: true }).grads);
    expect(r.firstFailure).toBe('dW4');
    expect(first(r).diagnosis[0]).toMatchObject({ kind: 'dZ2', variant: 'dZ2-no-onehot' });
    expect(first(r).diagnosis[0].message).toMatch(/dZ4 = probs\/B: the one-hot of y was never subtracted/);
  });

  it('db4 not reduced over the batch, db3 reduced over the wrong axis', () => {
    let r = run((s, X2, y2) => {
      const h = handBackward(s, X2 as Float64Array, y2);
      return { ...h.grads, db4: nested(h.dZ.dZ4, B, C) };
    });
    expect(r.firstFailure).toBe('db4');
    expect(first(r).diagnosis[0]).toMatchObject({ kind: 'bias-not-reduced' });
    expect(first(r).diagnosis[0].message).toMatch(/^db4 is not reduced over the batch: it holds dZ4 \[B,C\]/);
    r = run((s, X2, y2) => {
      const h = handBackward(s, X2 as Float64Array, y2);
      return { ...h.grads, db3: Float64Array.from({ length: B }, (_, b) => h.dZ.dZ3.slice(b * 3, b * 3 + 3).reduce((a, x) => a + x, 0)) };
    });
    expect([r.firstFailure, r.firstFailureLayer]).toEqual(['db3', 'layers[4] (Linear 7→3)']);
    expect(first(r).diagnosis[0]).toMatchObject({ kind: 'bias-axis' });
    expect(first(r).diagnosis[0].message).toMatch(/db3 is summed over the wrong axis: it holds Σ_h dZ3\[b,h\]/);
  });
});

describe('dependencies flow one way', () => {
  it('nothing under lib/layers, nor lib/model.ts, imports lib/verify', () => {
    const lib = join(__dirname, '..', 'lib');
    const files = [...readdirSync(join(lib, 'layers')).map((f) => join(lib, 'layers', f)), join(lib, 'model.ts')].filter((f) => f.endsWith('.ts'));
    for (const f of files) expect(readFileSync(f, 'utf8'), f).not.toMatch(/from '(\.\.?\/)+verify/);
  });
});
