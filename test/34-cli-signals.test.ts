// `handgrad train` never loses a trained model: an --out that cannot be written is refused before
// any training; SIGINT/SIGTERM mid-run stop after the current step, save the model and exit 130/143;
// a file error after training leaves the model saved. The compiled CLI (dist/, `npx tsc -p
// tsconfig.build.json` or `node scripts/setup.mjs`) runs in child processes, as a user runs it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDigits, loadSafetensors, Trainer } from '../lib';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-signals-'));
const STACK = /^\s+at /m; // a line of a stack trace
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// digits is 1438 training examples at batch 32: 45 steps an epoch. At width 256 an epoch takes a few
// ms, so the first epoch line (epoch 300 of 3000: lines come every tenth of the run) arrives after
// a second or two and the whole run would take ten times as long: the signal lands mid-run.
const STEPS_PER_EPOCH = 45;
const LONG_RUN = ['train', '--data', 'digits', '--hidden', '256', '--epochs', '3000'];

function cli(args: string[], env: Record<string, string> = {}) {
  // cwd tmp: a CLI that wrongly writes into its working folder (--out '') writes there, not into the repository.
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a long training, sends `signals` (one after another) once the first epoch line is out; the exit code, output, and that epoch. */
function interrupted(out: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; stdout: string; stderr: string; epoch: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...LONG_RUN, '--out', out], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let epoch = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      const m = /^\s+epoch\s+(\d+)/m.exec(stdout);
      if (m && epoch === 0) {
        epoch = Number(m[1]);
        for (const sig of signals) child.kill(sig);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? -1 : null), stdout, stderr, epoch });
    });
  });
}

/** The checkpoint an interrupted run names on stderr loads, holds finite weights and the steps of the epochs it reported. */
function checkSaved(r: { stderr: string; epoch: number }, dir: string) {
  const m = /saved the model so far to (\S+\.safetensors)/.exec(r.stderr);
  expect(m, r.stderr).not.toBeNull();
  const path = m![1];
  expect(path).toBe(join(dir, 'model.safetensors'));
  expect(existsSync(path)).toBe(true);
  const t = Trainer.load(path);
  // The epoch line printed before the signal says that many epochs were done; the run had 3000.
  expect(r.epoch).toBeGreaterThan(0);
  expect(t.steps).toBeGreaterThanOrEqual(r.epoch * STEPS_PER_EPOCH);
  expect(t.steps).toBeLessThan(3000 * STEPS_PER_EPOCH);
  expect(t.epochs).toBeGreaterThanOrEqual(r.epoch);
  const params = t.params as { W1: Float64Array; b1: Float64Array; W2: Float64Array; b2: Float64Array };
  for (const k of ['W1', 'b1', 'W2', 'b2'] as const) expect(params[k].every(Number.isFinite), k).toBe(true);
  expect(loadSafetensors(path).metadata.stopped).toMatch(/^SIG(INT|TERM)$/);
  // The trained weights, not the initial ones: the epoch lines said 100% training accuracy by now;
  // digits is the same split (seed 0) the CLI used, so the saved model must be far past chance (10%).
  const d = loadDigits();
  expect(t.evaluate(d.X, d.y).accuracy).toBeGreaterThan(0.9);
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.build.json` (npm test does) before this file');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('handgrad train --out that cannot be written', () => {
  it('a folder under a regular file, or a regular file itself: exit 2 before any training, one line naming the path, no stack trace', () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'not a folder\n');
    for (const out of [join(file, 'sub'), file]) {
      const started = Date.now();
      const r = cli([...LONG_RUN, '--out', out]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).not.toMatch(STACK);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^handgrad train: Expected a folder that can be created and written for --out ${esc(out)} but received (ENOTDIR|EEXIST)`));
      expect(r.stdout).not.toMatch(/epoch|completed/); // refused before training began
      expect(Date.now() - started).toBeLessThan(30_000);
    }
    expect(existsSync(join(tmp, 'a-file'))).toBe(true);
  });

  it('an empty --out is refused (it would write into the working folder)', () => {
    const r = cli(['train', '--epochs', '2', '--out', '']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^handgrad train: Expected a folder path for --out but received ""/);
  });
});

describe('handgrad train stopped by a signal', () => {
  it('SIGINT mid-run: finishes the step, saves the model (path on stderr), exits 130', async () => {
    const dir = join(tmp, 'sigint');
    const r = await interrupted(dir, ['SIGINT']);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).not.toMatch(STACK);
    checkSaved(r, dir);
  }, 150_000);

  it('SIGTERM mid-run: the same, exit 143', async () => {
    const dir = join(tmp, 'sigterm');
    const r = await interrupted(dir, ['SIGTERM']);
    expect(r.code, r.stderr).toBe(143);
    checkSaved(r, dir);
    expect(loadSafetensors(join(dir, 'model.safetensors')).metadata.stopped).toBe('SIGTERM');
  }, 150_000);

  it('a second and third Ctrl-C while it stops and saves do not cut the save short', async () => {
    const dir = join(tmp, 'sigint3');
    const r = await interrupted(dir, ['SIGINT', 'SIGINT', 'SIGINT']);
    expect(r.code, r.stderr).toBe(130);
    checkSaved(r, dir);
  }, 150_000);
});

describe('handgrad train: a file error after training does not lose the model', () => {
  it('curves.svg cannot be written (a folder of that name): the model is saved first, exit 2 with one line', () => {
    const dir = join(tmp, 'plots');
    mkdirSync(join(dir, 'curves.svg'), { recursive: true });
    const r = cli(['train', '--data', 'xor', '--epochs', '200', '--out', dir]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr).toMatch(/^handgrad train: .*curves\.svg/);
    const t = Trainer.load(join(dir, 'model.safetensors'));
    expect(t.steps).toBe(200); // xor is one full batch: a step an epoch
  });

  it('model.safetensors cannot be written: the model goes to the temporary folder instead and the message says where', () => {
    const dir = join(tmp, 'model-blocked');
    const rescue = join(tmp, 'rescue');
    mkdirSync(join(dir, 'model.safetensors'), { recursive: true });
    mkdirSync(rescue);
    const r = cli(['train', '--data', 'xor', '--epochs', '50', '--out', dir], { TMPDIR: rescue });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(STACK);
    const m = /the model was saved to (\S+\.safetensors) instead/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(m![1].startsWith(rescue)).toBe(true);
    expect(Trainer.load(m![1]).steps).toBe(50);
  });
});

describe('handgrad train: a user mistake is one clear line naming the flag, never a stack trace', () => {
  const MISTAKES: [args: string[], message: RegExp][] = [
    [['--epochs', '1.5'], /Expected a positive integer for --epochs but received "1\.5"/],
    [['--batch', '0'], /Expected a positive integer for --batch but received "0"/],
    [['--hidden', '2.5'], /Expected a positive integer for --hidden but received "2\.5"/],
    [['--lr', '0'], /Expected a positive finite number for --lr but received "0"/],
    [['--seed', '0.5'], /Expected an integer for --seed but received "0\.5"/],
    [['--optimizer', 'rmsprop'], /Expected one of 'sgd', 'momentum', 'nesterov', 'adam', 'adamw' for --optimizer but received "rmsprop"/],
    [['--activation', 'gelu'], /Expected one of 'relu', 'sigmoid', 'tanh' for --activation but received "gelu"/],
    [['--backend', 'cuda'], /Expected one of 'native', 'ts', 'torch', 'wasm' for --backend but received "cuda"/],
    [['--data', 'xor', '--label', 'kind'], /Expected --label only with a CSV file for --data but received "xor"/],
    [['--layers', '100000,100000'], /Expected a network and batch that fit in memory for --hidden\/--layers and --batch but received 2 → 100000 → 100000 → 2, batch 200 \(/],
    [['--data', join(tmp, 'no-such.csv')], /Expected a readable CSV file for .*no-such\.csv but received ENOENT/],
    [['--data', tmp], /Expected a regular file \(the CSV file\) for .* but received a folder/],
  ];
  it.each(MISTAKES)('handgrad train %j', (args, message) => {
    const r = cli(['train', ...args, '--quiet', '--out', join(tmp, 'mistakes')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(STACK);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^handgrad train: ${message.source}`));
    if (!args.includes('--layers')) expect(r.stdout).toBe(''); // refused before the data set was even described
  });
});

describe('handgrad train --dtype float32', () => {
  it.each(['xor', 'spirals', 'blobs', 'digits'])('%s trains in float32 and saves F32 tensors', (data) => {
    const dir = join(tmp, `f32-${data}`);
    const r = cli(['train', '--data', data, '--dtype', 'float32', '--epochs', '2', '--quiet', '--out', dir]);
    expect(r.code, r.stderr).toBe(0);
    const file = loadSafetensors(join(dir, 'model.safetensors'));
    for (const k of ['W1', 'b1', 'W2', 'b2']) expect(file.tensors[k].dtype, k).toBe('F32');
  });
});
