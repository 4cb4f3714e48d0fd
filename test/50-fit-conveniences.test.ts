// fit's conveniences a tfjs/Keras user reaches for: validationSplit (the last rows held out, as
// tfjs and Keras take them), callbacks { onEpochEnd, onStep } (tfjs's names), and restoreBest
// (Keras's restore_best_weights). Each is held to an independent run: the split to the same rows
// passed as `validation`, the callbacks to onProgress's events, the restored weights to a run
// stopped at the best epoch — bit for bit.
import { describe, expect, it } from 'vitest';
import { blobs, Sequential, Trainer } from '../lib';
import { describeBackends } from './helpers';
import type { FitOptions, ProgressEvent } from '../lib/train/trainer';

// Overlapping blobs (spread 3 over a box of 2): a net that overfits, so the validation loss has a
// minimum before the last epoch (checked in each test that relies on it).
const data = blobs({ n: 60, classes: 3, dim: 4, spread: 3, box: 2, seed: 7 });
const D = 4;
const trainer = () => new Trainer(Sequential.mlp([4, 32, 3], { seed: 1 }), { batchSize: 8, lr: 0.3, seed: 5 });
const rows = (from: number, to: number) => ({ X: data.X.slice(from * D, to * D), y: data.y.slice(from, to) });
/** The weights as plain arrays (toEqual compares every double: bit for bit, NaN and -0 included). */
const weights = (t: Trainer<Sequential>) => Object.fromEntries(Object.entries(t.params).map(([k, w]) => [k, Array.from(w)]));
const bad = (o: object) => o as never;

describe('validationSplit: the last rows held out, as tfjs and Keras', () => {
  // 60 rows, 0.25: tfjs's floor(60·0.75) = 45 train, 15 validation; 0.3 of 10 rows: floor(7) = 7.
  for (const [n, f, at] of [[60, 0.25, 45], [10, 0.3, 7], [10, 0.25, 7]] as const) {
    it(`fitSync: ${f} of ${n} rows is validation = the last ${n - at} rows, history and weights bit for bit`, () => {
      const all = rows(0, n);
      const a = trainer();
      const ra = a.fitSync(all.X, all.y, { epochs: 4, validationSplit: f });
      const b = trainer();
      const rb = b.fitSync(rows(0, at).X, rows(0, at).y, { epochs: 4, validation: rows(at, n) });
      expect(ra.history[0].valLoss).toBeDefined();
      expect(ra).toEqual(rb);
      expect(weights(a)).toEqual(weights(b));
    });
  }

  it('fit (worker) gives fitSync\'s history and weights', async () => {
    const a = trainer();
    const ra = await a.fit(data.X, data.y, { epochs: 3, validationSplit: 0.2 });
    const b = trainer();
    const rb = b.fitSync(rows(0, 48).X, rows(0, 48).y, { epochs: 3, validation: rows(48, 60) });
    expect(ra).toEqual(rb);
    expect(weights(a)).toEqual(weights(b));
  });

  it('refuses a fraction outside (0, 1), one that leaves a side empty, and validation alongside', () => {
    const t = trainer();
    expect(() => t.fitSync(data.X, data.y, { validationSplit: 0.2, validation: rows(0, 5) })).toThrow(TypeError);
    expect(() => t.fitSync(data.X, data.y, { validationSplit: 0.2, validation: rows(0, 5) })).toThrow(/validationSplit.*validation|validation.*validationSplit/);
    for (const f of [0, 1, 1.5, -0.1, NaN]) expect(() => t.fitSync(data.X, data.y, { validationSplit: f }), String(f)).toThrow(RangeError);
    expect(() => t.fitSync(data.X, data.y, bad({ validationSplit: '0.2' }))).toThrow(TypeError);
    // floor(60·(1 − 1e-17)) = 60: no validation row; floor(2·(1 − 0.9)) = 0: no training row.
    expect(() => t.fitSync(data.X, data.y, { validationSplit: 1e-17 })).toThrow(/opts\.validationSplit/);
    expect(() => t.fitSync(rows(0, 2).X, rows(0, 2).y, { validationSplit: 0.9 })).toThrow(RangeError);
    expect(t.steps).toBe(0);
  });
});

describe('callbacks { onEpochEnd, onStep }: onProgress\'s records', () => {
  const strip = (e: ProgressEvent) => {
    const { type: _, ...rest } = e;
    return rest;
  };

  it('fitSync and fit: the same records as onProgress, in the same order', async () => {
    for (const run of ['fitSync', 'fit'] as const) {
      const progress: ProgressEvent[] = [];
      const epochs: unknown[] = [];
      const steps: unknown[] = [];
      const opts: FitOptions = {
        epochs: 3, progressEvery: 2, validationSplit: 0.25,
        onProgress: (e) => progress.push(e),
        callbacks: { onEpochEnd: (r) => epochs.push(r), onStep: (e) => steps.push(e) },
      };
      const t = trainer();
      const r = run === 'fit' ? await t.fit(data.X, data.y, opts) : t.fitSync(data.X, data.y, opts);
      expect(epochs, run).toEqual(progress.filter((e) => e.type === 'epoch').map(strip));
      expect(steps, run).toEqual(progress.filter((e) => e.type === 'step').map(strip));
      expect(epochs, run).toEqual(r.history);
      expect(steps.length, run).toBe(3 * 3); // 45 rows / 8 = 6 steps: steps 2, 4, 6 of each epoch
    }
  });

  it('onStep without progressEvery is called after every step (tfjs\'s onBatchEnd)', () => {
    const steps: number[] = [];
    trainer().fitSync(data.X, data.y, { epochs: 2, callbacks: { onStep: (e) => steps.push(e.step) } });
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a throwing callback stops the fit and it rejects with what was thrown; the Trainer stays usable', async () => {
    for (const run of ['fitSync', 'fit'] as const) {
      const boom = { why: 'enough' };
      const t = trainer();
      const opts: FitOptions = { epochs: 5, callbacks: { onEpochEnd: (r) => { if (r.epoch === 2) throw boom; } } };
      if (run === 'fit') await expect(t.fit(data.X, data.y, opts)).rejects.toBe(boom);
      else expect(() => t.fitSync(data.X, data.y, opts)).toThrow(expect.objectContaining(boom));
      // fitSync stops after the epoch that threw; a worker runs on until it sees the stop.
      if (run === 'fitSync') expect(t.epochs, run).toBe(2);
      else expect(t.epochs, run).toBeGreaterThanOrEqual(2);
      expect(t.busy).toBe(false);
      const stepThrow = new Error('step');
      const u = trainer();
      const calls: number[] = [];
      const o2: FitOptions = { epochs: 2, callbacks: { onStep: (e) => { calls.push(e.step); if (e.step === 3) throw stepThrow; } } };
      if (run === 'fit') await expect(u.fit(data.X, data.y, o2)).rejects.toBe(stepThrow);
      else expect(() => u.fitSync(data.X, data.y, o2)).toThrow(stepThrow);
      expect(calls, run).toEqual([1, 2, 3]); // nothing after the throw
      if (run === 'fitSync') expect(u.steps, run).toBe(3);
    }
  });

  it('refuses unknown callbacks with did-you-mean, an array, and a callback that is not a function', () => {
    const t = trainer();
    expect(() => t.fitSync(data.X, data.y, bad({ callbacks: { onBatchEnd: () => {} } }))).toThrow(/'onBatchEnd' for opts\.callbacks \(did you mean 'onStep'\?\)/);
    expect(() => t.fitSync(data.X, data.y, bad({ callbacks: { on_epoch_end: () => {} } }))).toThrow(/did you mean 'onEpochEnd'/);
    expect(() => t.fitSync(data.X, data.y, bad({ callbacks: { onTrainBegin: () => {} } }))).toThrow(/Expected no option 'onTrainBegin' for opts\.callbacks.*onEpochEnd, onStep/);
    expect(() => t.fitSync(data.X, data.y, bad({ callbacks: [] }))).toThrow(TypeError);
    expect(() => t.fitSync(data.X, data.y, bad({ callbacks: { onEpochEnd: 3 } }))).toThrow(/a function for opts\.callbacks\.onEpochEnd/);
    expect(t.steps).toBe(0);
  });
});

describe('restoreBest: the best epoch\'s weights at the end (Keras\'s restore_best_weights)', () => {
  /** The first epoch with the lowest monitored loss (a tie is no improvement). */
  const argmin = (h: { epoch: number; loss: number; valLoss?: number }[]) => h.reduce((b, r) => ((r.valLoss ?? r.loss) < (b.valLoss ?? b.loss) ? r : b)).epoch;

  it('with validation: ends on the weights of a run stopped at the best epoch, bit for bit (fitSync and fit)', async () => {
    for (const run of ['fitSync', 'fit'] as const) {
      const a = trainer();
      const opts: FitOptions = { epochs: 12, validationSplit: 0.25, restoreBest: true };
      const r = run === 'fit' ? await a.fit(data.X, data.y, opts) : a.fitSync(data.X, data.y, opts);
      const best = argmin(r.history);
      expect(best, 'the setup must overfit for the test to mean anything').toBeLessThan(12);
      expect(r.bestEpoch, run).toBe(best);
      expect(r.stopped).toBe('completed');
      expect(a.epochs).toBe(12); // the counters are the run's; the weights the best epoch's
      const b = trainer();
      const rb = b.fitSync(data.X, data.y, { epochs: best, validationSplit: 0.25 });
      expect(rb.history).toEqual(r.history.slice(0, best));
      expect(weights(a), run).toEqual(weights(b));
      expect(a.evaluate(data.X, data.y)).toEqual(b.evaluate(data.X, data.y));
    }
  });

  it('with earlyStop: stopped early, the best epoch is restored; without validation the training loss is monitored', () => {
    const a = trainer();
    const r = a.fitSync(data.X, data.y, { epochs: 50, validationSplit: 0.25, earlyStop: { patience: 2 }, restoreBest: true });
    expect(r.stopped).toBe('early');
    const best = argmin(r.history);
    expect(r.bestEpoch).toBe(best);
    expect(r.history.length).toBe(best + 2);
    const b = trainer();
    b.fitSync(data.X, data.y, { epochs: best, validationSplit: 0.25 });
    expect(weights(a)).toEqual(weights(b));

    // Training loss, lr high enough that it does not fall every epoch.
    const hot = () => new Trainer(Sequential.mlp([4, 32, 3], { seed: 1 }), { batchSize: 8, lr: 1.5, seed: 5 });
    const c = hot();
    const rc = c.fitSync(data.X, data.y, { epochs: 12, earlyStop: { patience: 3 }, restoreBest: true });
    const bestC = argmin(rc.history);
    expect(rc.history[0].valLoss).toBeUndefined();
    expect(rc.bestEpoch).toBe(bestC);
    expect(bestC).toBeLessThan(rc.history.length);
    const d = hot();
    d.fitSync(data.X, data.y, { epochs: bestC });
    expect(weights(c)).toEqual(weights(d));
  });

  it('without restoreBest the last weights are kept (the default is unchanged)', () => {
    const a = trainer();
    const r = a.fitSync(data.X, data.y, { epochs: 12, validationSplit: 0.25 });
    expect(r.bestEpoch).toBeUndefined();
    const b = trainer();
    b.fitSync(data.X, data.y, { epochs: 12, validationSplit: 0.25, restoreBest: false });
    expect(weights(a)).toEqual(weights(b));
  });

  // In fitSync a stop lands exactly after the epoch (a worker runs on until it sees it: fit's stop is
  // checked through the weights it ends on, not only the epoch count).
  it('a fit aborted (signal or a throwing callback) keeps the last whole step\'s weights: nothing is restored', async () => {
    for (const run of ['fitSync'] as const) {
      // Stopped by a callback after epoch 12, past the best epoch: the weights are epoch 12's.
      const stop = new Error('stop');
      const a = trainer();
      const opts: FitOptions = { epochs: 14, validationSplit: 0.25, restoreBest: true, callbacks: { onEpochEnd: (e) => { if (e.epoch === 12) throw stop; } } };
      expect(() => a.fitSync(data.X, data.y, opts)).toThrow(stop);
      const b = trainer();
      const rb = b.fitSync(data.X, data.y, { epochs: 12, validationSplit: 0.25 });
      expect(argmin(rb.history)).toBeLessThan(12);
      expect(weights(a), run).toEqual(weights(b));
      // An AbortSignal after epoch 12: aborted, no bestEpoch, epoch 12's weights.
      const ctl = new AbortController();
      const c = trainer();
      const o2: FitOptions = { epochs: 14, validationSplit: 0.25, restoreBest: true, onProgress: (e) => { if (e.type === 'epoch' && e.epoch === 12) ctl.abort(); }, signal: ctl.signal };
      const rc = c.fitSync(data.X, data.y, o2);
      expect(rc.stopped).toBe('aborted');
      expect(rc.bestEpoch).toBeUndefined();
      expect(weights(c), run).toEqual(weights(b));
    }
  });

  it('fit (worker) aborted after the best epoch: not restored, the weights are a later epoch\'s', async () => {
    const ctl = new AbortController();
    const a = trainer();
    // Epochs to spare: the worker trains on while epoch 12's event reaches this thread and the abort
    // goes back; with 30, a loaded machine let the worker finish all of them first ('completed').
    const r = await a.fit(data.X, data.y, { epochs: 5000, validationSplit: 0.25, restoreBest: true, signal: ctl.signal, callbacks: { onEpochEnd: (e) => { if (e.epoch === 12) ctl.abort(); } } });
    expect(r.stopped).toBe('aborted');
    expect(r.bestEpoch).toBeUndefined();
    expect(a.steps).toBeGreaterThanOrEqual(12 * 6);
    // The same number of steps on this thread, no restoreBest: the same weights (those of the last step).
    const stop = new AbortController();
    const b = trainer();
    b.fitSync(data.X, data.y, { epochs: 30, validationSplit: 0.25, signal: stop.signal, callbacks: { onStep: () => { if (b.steps === a.steps) stop.abort(); } } });
    expect(b.steps).toBe(a.steps);
    expect(weights(a)).toEqual(weights(b));
  });

  it('refuses restoreBest with neither earlyStop nor a validation set, and a non-boolean', () => {
    const t = trainer();
    expect(() => t.fitSync(data.X, data.y, { restoreBest: true })).toThrow(/opts\.restoreBest/);
    expect(() => t.fitSync(data.X, data.y, { restoreBest: true })).toThrow(TypeError);
    expect(() => t.fitSync(data.X, data.y, bad({ restoreBest: 1, validationSplit: 0.2 }))).toThrow(TypeError);
    expect(t.steps).toBe(0);
  });
});

// The restored tensors are the live ones every backend reads (nothing cached from before the restore).
describeBackends('restoreBest on each backend', (backend) => {
  const on = () => new Trainer(Sequential.mlp([4, 32, 3], { seed: 1 }), { batchSize: 8, lr: 0.3, seed: 5, backend });
  it('fit (worker) ends on the best epoch\'s weights: those of a run stopped there, and its evaluate', async () => {
    const a = on();
    const r = await a.fit(data.X, data.y, { epochs: 10, validationSplit: 0.25, earlyStop: { patience: 10 }, restoreBest: true });
    const best = r.history.reduce((b, e) => (e.valLoss! < b.valLoss! ? e : b)).epoch;
    expect(r.bestEpoch).toBe(best);
    const b = on();
    b.fitSync(data.X, data.y, { epochs: best, validationSplit: 0.25 });
    expect(weights(a)).toEqual(weights(b));
    expect(a.evaluate(data.X, data.y)).toEqual(b.evaluate(data.X, data.y));
    expect(a.model.predict(data.X)).toEqual(b.model.predict(data.X));
  });
});
