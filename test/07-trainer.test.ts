// Training: update rules against hand computations, convergence on XOR and digits, determinism,
// async fit off the event loop, abort, busy, copy-on-entry.
import { describe, expect, it } from 'vitest';
import { initParams, Trainer, xor } from '../lib';
import { optimizerConfig, update } from '../lib/train/optimizer';
import { learningRate } from '../lib/train/schedule';

describe('update rules, by hand (W = 1, g = 0.5, lr = 0.1)', () => {
  const run = (opts: Parameters<typeof optimizerConfig>[0], steps: number) => {
    const cfg = optimizerConfig(opts);
    const W = new Float64Array([1]);
    const s = { m: new Float64Array(1), v: new Float64Array(1) };
    for (let t = 1; t <= steps; t++) update(cfg, W, new Float64Array([0.5]), s, 0.1, t);
    return W[0];
  };
  it('SGD: W − lr·g', () => expect(run({ optimizer: 'sgd' }, 2)).toBeCloseTo(0.9, 15));
  it('SGD with weight decay 0.1: g + 0.1·W', () => expect(run({ optimizer: 'sgd', weightDecay: 0.1 }, 1)).toBeCloseTo(1 - 0.1 * 0.6, 15));
  it('momentum 0.9: buffers 0.5 then 0.95', () => expect(run({ optimizer: 'momentum', momentum: 0.9 }, 2)).toBeCloseTo(1 - 0.05 - 0.095, 15));
  it('Nesterov 0.9: steps g + μ·buf = 0.95 then 0.5 + 0.9·0.95', () =>
    expect(run({ optimizer: 'nesterov', momentum: 0.9 }, 2)).toBeCloseTo(1 - 0.095 - 0.1 * (0.5 + 0.855), 15));
  it('Adam: the first steps move by lr (bias correction makes m̂/√v̂ = 1)', () => {
    // m̂ = g, v̂ = g² on every step for a constant g, so each step is lr·g/(|g| + ε).
    expect(run({ optimizer: 'adam' }, 3)).toBeCloseTo(1 - 3 * 0.1 * (0.5 / (0.5 + 1e-8)), 12);
  });
  it('AdamW decays W by (1 − lr·wd) before the Adam step', () =>
    expect(run({ optimizer: 'adamw', weightDecay: 0.5 }, 1)).toBeCloseTo(1 * (1 - 0.05) - 0.1 * (0.5 / (0.5 + 1e-8)), 12));
  it('schedules: step and cosine', () => {
    expect(learningRate({ type: 'step', every: 2, gamma: 0.5 }, 1, 5)).toBe(0.25);
    expect(learningRate({ type: 'cosine', epochs: 4, minLr: 0 }, 1, 2)).toBeCloseTo(0.5, 15);
    expect(learningRate({ type: 'cosine', epochs: 4, minLr: 0.1 }, 1, 4)).toBeCloseTo(0.1, 15);
    // Past T, as torch.optim.lr_scheduler.CosineAnnealingLR(T_max=4, eta_min=0.1) from lr 1 gives
    // (PyTorch 1.13, get_lr of epochs 0–10): the cosine goes on, back up to lr at 2T.
    const torchLrs = [1.0, 0.8681980515339464, 0.55, 0.23180194846605368, 0.1, 0.2318019484660536, 0.55, 0.8681980515339467, 1.0000000000000004, 0.8681980515339468, 0.5500000000000004];
    torchLrs.forEach((want, epoch) => expect(Math.abs(learningRate({ type: 'cosine', epochs: 4, minLr: 0.1 }, 1, epoch) - want)).toBeLessThanOrEqual(4 * Number.EPSILON));
  });
});

describe('Trainer on XOR (the seed: H = 8, full batch, 3000 iterations)', () => {
  const { X, y } = xor({ seed: 0 });
  const make = (backend: 'native' | 'ts' = 'native') =>
    new Trainer(initParams({ D: 2, H: 8, C: 2 }, { seed: 0 }), { lr: 0.5, batchSize: 200, backend });

  it('reaches ≥ 90% accuracy (synchronously)', () => {
    const t = make();
    const r = t.fitSync(X, y, { epochs: 3000 });
    expect(r.stopped).toBe('completed');
    expect(r.history).toHaveLength(3000);
    expect(t.evaluate(X, y).accuracy).toBeGreaterThanOrEqual(0.9);
    expect(r.history[2999].loss).toBeLessThan(r.history[0].loss);
  });

  it('is bitwise reproducible for a seed, and fit (worker thread) equals fitSync', async () => {
    const a = make();
    const b = make();
    a.fitSync(X, y, { epochs: 200 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const r = await b.fit(X, y, { epochs: 200 });
    clearInterval(timer);
    expect(r.stopped).toBe('completed');
    expect(b.params.W1).toEqual(a.params.W1);
    expect(b.params.b2).toEqual(a.params.b2);
    expect(ticks).toBeGreaterThan(0); // the event loop kept running during the fit
  });

  it('native and ts follow the same loss curve to a few epsilon per step', () => {
    const n = make('native');
    const t = make('ts');
    const hn = n.fitSync(X, y, { epochs: 20 }).history;
    const ht = t.fitSync(X, y, { epochs: 20 }).history;
    for (let i = 0; i < 20; i++) expect(Math.abs(hn[i].loss - ht[i].loss) / ht[i].loss).toBeLessThan(64 * 2 ** -52);
  });
});

describe('Trainer.fit is a well-behaved async job', () => {
  const { X, y } = xor({ seed: 1, n: 400 });
  const make = () => new Trainer(initParams({ D: 2, H: 16, C: 2 }, { seed: 2 }), { optimizer: 'adam', lr: 0.01, batchSize: 8 });

  it('an AbortSignal stops it between steps with consistent params', async () => {
    const t = make();
    const ac = new AbortController();
    const seen: number[] = [];
    const r = await t.fit(X, y, {
      epochs: 1000,
      signal: ac.signal,
      progressEvery: 10,
      onProgress: (e) => {
        if (e.type === 'step') seen.push(e.step);
        if (seen.length === 5) ac.abort();
      },
    });
    expect(r.stopped).toBe('aborted');
    expect(t.busy).toBe(false);
    expect(t.steps).toBeGreaterThanOrEqual(50);
    expect(t.steps).toBeLessThan(1000 * 50);
    expect([...t.params.W1].every(Number.isFinite)).toBe(true);
    // The next fit continues from where it stopped: it finishes the epoch in progress (50 steps
    // each), from the next batch (test/33 checks the weights bit for bit).
    const before = t.steps;
    const epochs = t.epochs;
    t.fitSync(X, y, { epochs: 1 });
    expect(t.steps).toBe(before + (before % 50 === 0 ? 50 : 50 - (before % 50)));
    expect(t.epochs).toBe(epochs + 1);
  });

  it('refuses other calls while it runs (ERR_BUSY), and copies X on entry', async () => {
    const t = make();
    const ref = make();
    const Xc = X.slice();
    const p = t.fit(Xc, y, { epochs: 3 });
    expect(t.busy).toBe(true);
    expect(() => t.evaluate(X, y)).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    expect(() => t.fitSync(X, y)).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    Xc.fill(0); // changing the caller's array after fit() returned must not change the run
    await p;
    ref.fitSync(X, y, { epochs: 3 });
    expect(t.params.W1).toEqual(ref.params.W1);
  });

  it('early stopping stops when the loss stops improving', () => {
    const t = new Trainer(initParams({ D: 2, H: 8, C: 2 }, { seed: 0 }), { lr: 1e-9, batchSize: 400 });
    const r = t.fitSync(X, y, { epochs: 100, earlyStop: { patience: 3, minDelta: 1e-3 } });
    expect(r.stopped).toBe('early');
    expect(r.history.length).toBe(4);
  });

  it('bad input to fit is a clear error', () => {
    const t = make();
    expect(() => t.fitSync(X, [...y].map((v) => v + 5))).toThrow(RangeError);
    expect(() => t.fitSync(new Float32Array(X), y)).toThrow(/Expected X and params of one dtype/);
    expect(() => t.fitSync(X, y, { epochs: 0 })).toThrow(/positive 32-bit integer for opts.epochs/);
    expect(() => new Trainer(initParams({ D: 2, H: 2, C: 2 }), { optimizer: 'rmsprop' as never })).toThrow(/for opts.optimizer/);
    expect(() => new Trainer(initParams({ D: 2, H: 2, C: 2 }), { lr: -1 })).toThrow(/positive finite number for opts.lr/);
  });
});
