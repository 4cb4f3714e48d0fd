// The public step's checks after they were made cheaper (lib/validate.ts stepOptions reads each
// option by name, out's buffers go to Sequential.checkedStep as name/value arrays, unknown out keys
// are searched only when the count says one is there). Each message below was recorded from the
// tree before that change (/tmp/tbefore at 9fff9e8, same calls): the same refusals, in the same
// order (buffers checked before an unknown key is named), reading each option once.
import { describe, expect, it } from 'vitest';
import { forwardBackward, initParams, Sequential } from '../lib';

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
