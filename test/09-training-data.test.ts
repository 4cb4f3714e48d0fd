// Real data: digits to ≥ 97% held out (the data set's README saw 99% with NumPy), MNIST to
// ≥ 97.5% on its test set; and the train command end to end.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initParams, Trainer } from '../lib';
import { loadDigits, loadMnist, trainValSplit } from '../lib/data';

const root = resolve(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'handgrad-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('convergence on real data', () => {
  it('digits, 64 → 64 → 10, SGD: held-out accuracy ≥ 97%', () => {
    const d = loadDigits();
    const s = trainValSplit(d.X, d.y, d.D, { fraction: 0.2, seed: 0 });
    const t = new Trainer(initParams({ D: 64, H: 64, C: 10 }, { seed: 0 }), { lr: 0.1, batchSize: 32 });
    t.fitSync(s.train.X, s.train.y, { epochs: 60 });
    expect(t.evaluate(s.val.X, s.val.y).accuracy).toBeGreaterThanOrEqual(0.97);
  });

  it('MNIST, 784 → 256 → 10, float32, SGD with momentum: test accuracy ≥ 97.5%', async () => {
    const m = loadMnist({ dtype: 'float32' });
    expect([m.train.y.length, m.test.y.length, m.train.D]).toEqual([60000, 10000, 784]);
    const t = new Trainer(initParams({ D: 784, H: 256, C: 10 }, { seed: 0, dtype: 'float32' }), { optimizer: 'momentum', lr: 0.05, batchSize: 128 });
    await t.fit(m.train.X, m.train.y, { epochs: 5 });
    expect(t.evaluate(m.test.X, m.test.y).accuracy).toBeGreaterThanOrEqual(0.975);
  }, 600_000);
});

describe('handgrad train', () => {
  it('trains spirals and writes the curves, the decision boundary, the history and the model', () => {
    const out = join(dir, 'spirals');
    const stdout = execFileSync(process.execPath, [join(root, 'dist/lib/cli.js'), 'train', '--data', 'spirals', '--epochs', '40', '--out', out], { encoding: 'utf8' });
    expect(stdout).toMatch(/completed after 40 epochs/);
    for (const f of ['curves.svg', 'boundary.svg', 'history.json', 'model.safetensors']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, 'boundary.svg'), 'utf8')).toMatch(/^<svg/);
    const history = JSON.parse(readFileSync(join(out, 'history.json'), 'utf8'));
    expect(history.history).toHaveLength(40);
    expect(history.history[39].loss).toBeLessThan(history.history[0].loss);
  });

  it('a CSV with a named label column, and a clear error for a bad one', () => {
    const csv = join(dir, 'data.csv');
    const rows = ['a,b,kind', ...Array.from({ length: 60 }, (_, i) => `${i % 2 ? 1 : -1},${(i % 7) / 7},${i % 2 ? 'yes' : 'no'}`)];
    require('node:fs').writeFileSync(csv, `${rows.join('\n')}\n`);
    const stdout = execFileSync(process.execPath, [join(root, 'dist/lib/cli.js'), 'train', '--data', csv, '--label', 'kind', '--epochs', '30', '--out', join(dir, 'csv')], { encoding: 'utf8' });
    expect(stdout).toMatch(/validation loss .* accuracy 100\.00%/);
    expect(() =>
      execFileSync(process.execPath, [join(root, 'dist/lib/cli.js'), 'train', '--data', csv, '--label', 'nope', '--out', join(dir, 'csv2')], { encoding: 'utf8', stdio: 'pipe' }),
    ).toThrow(/nope/);
  });
});
