// The public step's checks after they were made cheaper (lib/validate.ts stepOptions reads each
// option by name, out's buffers go to Sequential.checkedStep as name/value arrays, unknown out keys
// are searched only when the count says one is there). Each message below was recorded from the
// tree before that change (/tmp/tbefore at 9fff9e8, same calls): the same refusals, in the same
// order (buffers checked before an unknown key is named), reading each option once.
import { describe, expect, it } from 'vitest';
import { forwardBackward, initParams, Sequential } from '../lib';
import { backendCases, describeBackends } from './helpers';

// D = 2 = C: dW1 [2,3] and dW2 [3,2] have the same length, so a buffer given to the wrong name would
// pass the length check and be caught only by its values.
const X = Float64Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]);
const y = Int32Array.from([0, 1, 1, 0]);
const p = initParams({ D: 2, H: 3, C: 2 }, { seed: 1 });
const f = (n: number) => new Float64Array(n);
const full = () => ({ dX: f(8), dW1: f(6), db1: f(3), dW2: f(6), db2: f(2) });
const STEP = 'backend, reduction, inputGrad, cache, out, accumulate, weight, ignoreIndex, labelSmoothing, gradOutput, exact';

describe('forwardBackward: out keys', () => {
  it('an unknown key among every known one is refused by name', () => {
    expect(() => forwardBackward(p, X, y, { inputGrad: true, out: { ...full(), dW9: f(3) } } as never))
      .toThrow(new TypeError('Expected one of dX, dW1, db1, dW2, db2 for opts.out key but received "dW9"'));
  });
  it('a known key holding undefined does not hide an unknown one', () => {
    expect(() => forwardBackward(p, X, y, { out: { dW1: undefined, extra: f(6) } } as never))
      .toThrow(new TypeError('Expected one of dW1, db1, dW2, db2 for opts.out key but received "extra"'));
  });
  it('dX (even undefined) with inputGrad false is an unknown key', () => {
    expect(() => forwardBackward(p, X, y, { inputGrad: false, out: { dX: undefined } }))
      .toThrow(new TypeError('Expected one of dW1, db1, dW2, db2 for opts.out key but received "dX"'));
    expect(() => forwardBackward(p, X, y, { inputGrad: false, out: { dX: f(8) } }))
      .toThrow(new TypeError('Expected no out.dX when inputGrad is false for opts.out.dX but received Float64Array of length 8'));
  });
  it('the buffers are checked before an unknown key is named', () => {
    expect(() => forwardBackward(p, X, y, { out: { bogus: f(1), dW1: f(5) } } as never))
      .toThrow(new RangeError('Expected 6 elements for out.dW1 but received Float64Array of length 5'));
  });
  it('each buffer receives its own gradient whatever the key order', () => {
    const want = forwardBackward(p, X, y, { inputGrad: true }).grads;
    const g = full();
    const out = { db2: g.db2, dW2: g.dW2, db1: g.db1, dW1: g.dW1, dX: g.dX };
    const r = forwardBackward(p, X, y, { out });
    for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2'] as const) {
      expect(r.grads[k]).toBe(g[k]);
      expect(Array.from(g[k])).toEqual(Array.from(want[k]!));
    }
    expect(Array.from(g.dW1)).not.toEqual(Array.from(g.dW2));
  });
  it('aliasing is refused on native (in C++)', () => {
    const g = full();
    expect(() => forwardBackward(p, X, y, { out: { ...g, db1: g.dW1.subarray(0, 3) } }))
      .toThrow(new RangeError('Expected out.db1 not to share memory with out.dW1'));
  });
});

describe('forwardBackward: option objects', () => {
  it('activation is an option of the two-layer call only', () => {
    const seq = Sequential.mlp([2, 3, 2], { seed: 1 });
    expect(() => seq.forwardBackward(X, y, { activation: 'tanh' } as never))
      .toThrow(new TypeError(`Expected no option 'activation' for opts; the options are ${STEP}`));
    expect(() => forwardBackward(p, X, y, { activation: 'tanh' })).not.toThrow();
  });
  it('unknown and foreign keys, with did-you-mean, as options() words them', () => {
    expect(() => forwardBackward(p, X, y, { weight_decay: 0.1 } as never))
      .toThrow(new TypeError(`Expected no option 'weight_decay' for opts; the options are ${STEP}, activation`));
    expect(() => forwardBackward(p, X, y, { label_smoothing: 0.1 } as never))
      .toThrow(new TypeError(`Expected no option 'label_smoothing' for opts (did you mean 'labelSmoothing'?); the options are ${STEP}, activation`));
    expect(() => forwardBackward(p, X, y, { out: 3 } as never)).toThrow(new TypeError('Expected an object of gradient buffers for opts.out but received 3'));
    expect(() => forwardBackward(p, X, y, [] as never)).toThrow(new TypeError('Expected an options object for opts but received Array of length 0'));
  });
  it('a getter before an unknown key is read once, then the key is refused', () => {
    let reads = 0;
    const o = { get backend() { reads++; return 'native' as const; }, bogus: 1 };
    expect(() => forwardBackward(p, X, y, o as never)).toThrow(/Expected no option 'bogus' for opts/);
    expect(reads).toBe(1);
  });
  it('the same options object with a key added between calls is checked again', () => {
    const o: Record<string, unknown> = { inputGrad: true, out: full() };
    forwardBackward(p, X, y, o);
    o.learningRate = 0.1;
    expect(() => forwardBackward(p, X, y, o)).toThrow(/Expected no option 'learningRate' for opts/);
    delete o.learningRate;
    (o.out as Record<string, unknown>).dW3 = f(1);
    expect(() => forwardBackward(p, X, y, o)).toThrow(/received "dW3"/);
  });
});

// forwardBackwardInto (the Trainer's step, public on the class) and the engines' own buffers,
// after a bug hunt (/tmp/hunt-api): every backend refuses what the native addon refuses, in its
// words, before anything is written.
describe('a logits view (the engine\'s workspace) given back to a step', () => {
  // D = C = 3 and B = H = 5: a logits view [5,3] fits as X [5,3] and as dW2 [5,3].
  const seq = Sequential.mlp([3, 5, 3], { seed: 2 });
  const X3 = Float64Array.from({ length: 15 }, (_, i) => Math.sin(3 * i + 1));
  const y3 = Int32Array.from([0, 1, 2, 0, 1]);
  const zeros = () => Object.fromEntries(Object.keys(seq.params).map((k) => [`d${k}`, new Float64Array(seq.params[k].length)]));
  for (const [backend, skip] of backendCases(['native', 'ts', 'wasm'])) {
    it.skipIf(skip !== null)(`${backend}: as X, as out.dW2, as dX: refused in the native addon's words, the view left as it was`, () => {
      const view = seq.forwardBackward(X3, y3, { backend }).logits as Float64Array;
      const before = view.slice();
      expect(() => seq.forwardBackward(view, y3, { backend, inputGrad: true })).toThrow(new RangeError('Expected workspace not to share memory with X'));
      expect(() => seq.forward(view, { backend })).toThrow(new RangeError('Expected workspace not to share memory with X'));
      expect(() => seq.forwardBackward(X3, y3, { backend, out: { dW2: view } })).toThrow(new RangeError('Expected out.dW2 not to share memory with workspace'));
      expect(() => seq.forwardBackward(X3, y3, { backend, out: { dX: view } })).toThrow(new RangeError('Expected out.dX not to share memory with workspace'));
      const into = (X: Float64Array, g: Record<string, Float64Array>) => seq.forwardBackwardInto(X, y3, g, { backend, reduction: 'mean', accumulate: false });
      expect(() => into(view, zeros())).toThrow(new RangeError('Expected workspace not to share memory with X'));
      expect(() => into(X3, { ...zeros(), dW2: view })).toThrow(new RangeError('Expected out.dW2 not to share memory with workspace'));
      expect(Array.from(view)).toEqual(Array.from(before));
      // A copy of the same values is another array: it runs, and gives what the values give.
      const fromCopy = seq.forwardBackward(view.slice(), y3, { backend }).loss;
      expect(fromCopy).toBe(seq.forwardBackward(before, y3, { backend }).loss);
    });
  }
});

describe('forwardBackwardInto: its options, as forwardBackward checks them', () => {
  const seq = Sequential.mlp([2, 3, 2], { seed: 1 });
  const sentinel = () => Object.fromEntries(Object.keys(seq.params).map((k) => [`d${k}`, new Float64Array(seq.params[k].length).fill(7)]));
  it('an unknown backend is named (it was "Cannot read properties of undefined")', () => {
    expect(() => seq.forwardBackwardInto(X, y, sentinel(), { backend: 'natve' as never, reduction: 'mean', accumulate: false }))
      .toThrow(new RangeError("Expected one of 'native', 'ts', 'torch', 'wasm' for opts.backend but received \"natve\""));
    expect(() => seq.forwardBackwardInto(X, y, sentinel(), { backend: undefined as never, reduction: 'mean', accumulate: false }))
      .toThrow(new TypeError("Expected one of 'native', 'ts', 'torch', 'wasm' for opts.backend but received undefined"));
  });
  describeBackends('reduction none without a gradOutput: one refusal up front, nothing written (wasm and ts computed the sum)', (backend) => {
    it('is refused', () => {
      const g = sentinel();
      expect(() => seq.forwardBackwardInto(X, y, g, { backend, reduction: 'none', accumulate: false }))
        .toThrow(new TypeError("Expected a gradOutput [B] (∂L/∂loss) with reduction 'none': like PyTorch, which refuses backward() of a non-scalar loss without a gradient for opts.loss.gradOutput but received undefined"));
      for (const t of Object.values(g)) expect(Array.from(t).every((x) => x === 7)).toBe(true);
    });
  });
  for (const [backend, skip] of backendCases(['wasm', 'ts'])) {
    it.skipIf(skip !== null)(`exact: true on ${backend} is refused, as forwardBackward refuses it`, () => {
      const g = sentinel();
      expect(() => seq.forwardBackward(X, y, { backend, exact: true })).toThrow(/Expected backend 'native' \(or 'torch'\) with opts.exact/);
      expect(() => seq.forwardBackwardInto(X, y, g, { backend, reduction: 'mean', accumulate: false, exact: true }))
        .toThrow(/Expected backend 'native' \(or 'torch'\) with opts.exact/);
      for (const t of Object.values(g)) expect(Array.from(t).every((x) => x === 7)).toBe(true);
    });
  }
  const [[, torchSkip]] = backendCases(['torch']);
  it.skipIf(torchSkip !== null)('torch: an X of the other dtype is named X (it was reported against W1)', () => {
    expect(() => seq.forwardBackwardInto(new Float32Array(X) as never, y, sentinel(), { backend: 'torch', reduction: 'mean', accumulate: false }))
      .toThrow(/for X but received Float32Array/);
  });
});
