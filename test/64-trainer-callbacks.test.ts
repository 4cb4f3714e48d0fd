// The Trainer's callbacks, as a reviewer attacked them (stop 15):
// - fitSync was never busy: a callback could call step, fit, fitSync or evaluate, and train on the
//   very buffers the run was using (a fit started from a fitSync callback gave different weights
//   on every run of one seed). Now every such call is an ERR_BUSY, as during fit, and the run's
//   weights are those of the same run without the callback.
// - fit ignored what an async callback returned: a rejected promise was an unhandled rejection,
//   which ends a Node process. fit now waits for such promises and rejects with the first
//   rejection; fitSync, which cannot wait, refuses an async callback by name.
// The truth for the weights is a hand-written SGD loop over the same batches (no shuffle, one
// batch an epoch: W −= lr·g with g from forwardBackward, which test/02 holds to finite differences).
import { describe, expect, it } from 'vitest';
import { forwardBackward, HandgradError, initParams, Trainer, xor } from '../lib';

const data = xor({ n: 32, seed: 3 });
const params = () => initParams({ D: 2, H: 8, C: 2 }, { seed: 1 });
const opts = { optimizer: 'sgd' as const, lr: 0.1, batchSize: 32 };
const fitOpts = { epochs: 3, shuffle: false };

/** Three full-batch SGD steps, by hand: the weights a 3-epoch fit must end on. */
function byHand(): Record<string, Float64Array> {
  const p = params() as unknown as Record<string, Float64Array>;
  for (let e = 0; e < 3; e++) {
    const { grads } = forwardBackward(p as never, data.X, data.y);
    for (const k of ['W1', 'b1', 'W2', 'b2']) {
      const g = (grads as unknown as Record<string, Float64Array>)[`d${k}`];
      for (let i = 0; i < p[k].length; i++) p[k][i] -= 0.1 * g[i];
    }
  }
  return p;
}

const weights = (t: Trainer) => t.snapshot() as unknown as Record<string, Float64Array>;
const near = (a: Record<string, Float64Array>, b: Record<string, Float64Array>) => {
  for (const k of ['W1', 'b1', 'W2', 'b2']) for (let i = 0; i < a[k].length; i++) expect(Math.abs(a[k][i] - b[k][i])).toBeLessThan(1e-15);
};

describe('fitSync is busy while it trains', () => {
  it('step, evaluate, fit and fitSync from its callbacks are ERR_BUSY; busy is true there; the weights are the hand-written loop’s', () => {
    const t = new Trainer(params(), opts);
    const seen: string[] = [];
    const busy: boolean[] = [];
    const tryCall = (name: string, f: () => unknown) => {
      try {
        const r = f();
        if (r instanceof Promise) r.catch(() => undefined);
        seen.push(`${name}: accepted`);
      } catch (e) {
        seen.push(`${name}: ${(e as HandgradError).code}`);
      }
    };
    t.fitSync(data.X, data.y, {
      ...fitOpts,
      callbacks: {
        onEpochEnd: (r) => {
          busy.push(t.busy);
          if (r.epoch !== 1) return;
          tryCall('step', () => t.step(data.X.subarray(0, 8), data.y.subarray(0, 4)));
          tryCall('evaluate', () => t.evaluate(data.X, data.y));
          tryCall('fitSync', () => t.fitSync(data.X, data.y, { epochs: 1 }));
          tryCall('fit', () => t.fit(data.X, data.y, { epochs: 1 }));
        },
      },
    });
    expect(seen).toEqual(['step: ERR_BUSY', 'evaluate: ERR_BUSY', 'fitSync: ERR_BUSY', 'fit: ERR_BUSY']);
    expect(busy).toEqual([true, true, true]);
    expect(t.busy).toBe(false);
    expect(t.steps).toBe(3);
    near(weights(t), byHand());
  });
});

describe('async callbacks', () => {
  it('fit waits for an async callback and rejects with its rejection (no unhandled rejection); the Trainer is usable after', async () => {
    const t = new Trainer(params(), opts);
    const boom = new Error('async boom');
    await expect(t.fit(data.X, data.y, { ...fitOpts, callbacks: { onEpochEnd: async (r) => { if (r.epoch === 1) throw boom; } } })).rejects.toBe(boom);
    expect(t.busy).toBe(false);
    expect(() => t.evaluate(data.X, data.y)).not.toThrow();
  });

  it('fit settles only after its async callbacks have: each one ran to its end before fit resolved', async () => {
    const t = new Trainer(params(), opts);
    const done: number[] = [];
    const r = await t.fit(data.X, data.y, { ...fitOpts, onProgress: async (e) => { if (e.type !== 'epoch') return; await new Promise((s) => setTimeout(s, 20)); done.push(e.epoch); } });
    expect(r.stopped).toBe('completed');
    expect(done).toEqual([1, 2, 3]);
    near(weights(t), byHand());
  });

  it('fitSync refuses an async callback by name (it cannot wait for it), as a throwing callback stops it', () => {
    const t = new Trainer(params(), opts);
    let caught: unknown;
    try {
      t.fitSync(data.X, data.y, { ...fitOpts, callbacks: { onEpochEnd: async () => { throw new Error('never awaited'); } } });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(TypeError);
    expect((caught as Error).message).toMatch(/for opts\.callbacks\.onEpochEnd/);
    expect(t.steps).toBe(1);
    expect(t.busy).toBe(false);
  });
});

// fit's worker put the best epoch's weights back itself, racing the caller's thread, which writes
// the per-epoch checkpoint when the last epoch's event arrives: that file could hold epoch 2's
// weights beside epoch 4's counters and optimizer state — the state after no step of the run.
// The caller's thread now puts them back after every event is delivered, as fitSync does.
describe("restoreBest with a per-epoch checkpoint: the last epoch's file holds that epoch's weights", () => {
  it('fit writes the same last file as fitSync, and ends on the same restored weights', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'handgrad-64-'));
    const D = 5, C = 3, N = 50;
    const X = new Float64Array(N * D).map((_, i) => Math.sin(i * 0.37) + (i % 5) * 0.1);
    const y = Int32Array.from({ length: N }, (_, i) => (i * 7) % C);
    const make = () => new Trainer(initParams({ D, H: 7, C }, { seed: 3 }), { optimizer: 'sgd', lr: 3, batchSize: 8, seed: 5 });
    const fitOpts = (path: string) => ({ epochs: 8, validation: { X, y }, earlyStop: { patience: 2 }, restoreBest: true, checkpoint: { path } });
    const a = make();
    const ra = a.fitSync(X, y, fitOpts(join(dir, 'a.safetensors')));
    const b = make();
    const rb = await b.fit(X, y, fitOpts(join(dir, 'b.safetensors')));
    expect(rb.bestEpoch).toBe(ra.bestEpoch);
    expect(rb.bestEpoch).toBeLessThan(rb.history.length); // the restore happened: the file must not hold it
    const fa = Trainer.load(join(dir, 'a.safetensors'));
    const fb = Trainer.load(join(dir, 'b.safetensors'));
    expect(fb.epochs).toBe(rb.history.length);
    for (const k of ['W1', 'b1', 'W2', 'b2']) {
      expect(Array.from(fb.params[k as 'W1'])).toEqual(Array.from(fa.params[k as 'W1']));
      expect(Array.from(b.params[k as 'W1'])).toEqual(Array.from(a.params[k as 'W1']));
    }
    // and the file's weights are not the restored ones (they are the last epoch's)
    expect(Array.from(fb.params.W1)).not.toEqual(Array.from(b.params.W1));
  });
});

describe("trainer.params: live tensors, fields not the caller's to replace", () => {
  it('assigning W1 is refused (frozen record); snapshot reads the buffers that train and save', () => {
    const t = new Trainer(params(), opts);
    expect(() => {
      'use strict';
      (t.params as unknown as Record<string, unknown>).W1 = new Float64Array(16);
    }).toThrow(TypeError);
    t.fitSync(data.X, data.y, { epochs: 1, shuffle: false });
    expect(Array.from(t.snapshot().W1)).toEqual(Array.from(t.params.W1));
    expect(Array.from(t.snapshot().W1).some((x) => x !== 0)).toBe(true);
  });
});
