// The published package, as a consumer gets it: `npm pack` builds the N-API prebuild itself
// (prepack), and that tarball installs into an empty project with `--ignore-scripts` (pnpm 10's
// default) and without optional dependencies, on a PATH with node and npm only (no compiler, no
// make, no cmake), and runs: a prediction checked against an independent float64 computation, the
// toy gradients against PyTorch, the CLI (--version, build-torch finding the consumer's cmake-js,
// train writing its model with the plots skipped). Without the prebuild the error names a command
// that works there. Built in a copy of the package so the build/ that the other test files load is
// never touched while they run.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'handgrad-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 });
}

/** A PATH holding node and npm and nothing else: whatever the install or the package runs must not need a compiler. */
function bareEnv(): NodeJS.ProcessEnv {
  const bin = join(work, 'bin');
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, 'node'));
  const npmCli = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
  symlinkSync(npmCli, join(bin, 'npm'));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k]; // vitest run from npm: its config must not leak
  return env;
}

describe('npm pack → install into an empty project → run', () => {
  it('npm pack ships the prebuild; --ignore-scripts --omit=optional with no compiler installs it and predicts; the CLI runs; the hints work there', () => {
    const pkg = join(work, 'pkg');
    for (const f of ['package.json', 'binding.gyp', 'CMakeLists.txt', 'README.md', 'native', 'dist']) cpSync(join(root, f), join(pkg, f), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
    // No npm_config_nodedir from here: prepack finds Node's own headers itself.
    const packEnv = { ...process.env };
    delete packEnv.npm_config_nodedir;
    const tgz = sh('npm', ['pack', '--silent'], pkg, packEnv).trim().split('\n').pop()!;
    const listed = sh('tar', ['tzf', join(pkg, tgz)], pkg).split('\n');
    expect(listed).toContain(`package/prebuilds/${process.platform}-${process.arch}/handgrad.node`);

    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'case.json'), JSON.stringify(require(join(root, 'test', 'fixtures', 'seed-toy-4x5x10x3.json'))));
    writeFileSync(join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
    const env = bareEnv();
    sh('npm', ['install', '--ignore-scripts', '--omit=optional', '--no-audit', '--no-fund', '--prefer-offline', join(pkg, tgz)], app, env);
    const installed = join(app, 'node_modules', 'handgrad');
    expect(existsSync(join(installed, 'build'))).toBe(false); // nothing compiled
    expect(existsSync(join(app, 'node_modules', 'vega'))).toBe(false); // optional, omitted
    writeFileSync(
      join(app, 'run.js'),
      `const hg = require('handgrad');
const c = require('./case.json');
const f = (a) => Float64Array.from(a);
const p = { W1: f(c.inputs.W1), b1: f(c.inputs.b1), W2: f(c.inputs.W2), b2: f(c.inputs.b2) };
const r = hg.forwardBackward(p, f(c.inputs.X), c.inputs.y, { inputGrad: true });
let worst = Math.abs(r.loss - c.expected.loss[0]) / Math.abs(c.expected.loss[0]);
for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2']) {
  const e = c.expected[k]; const m = Math.max(...e.map(Math.abs));
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(r.grads[k][i] - e[i]) / m);
}
// predict against the same net in plain float64 loops (relu(X·W1 + b1)·W2 + b2, argmax).
const [D, H, C] = [c.inputs.b1.length && c.inputs.W1.length / c.inputs.b1.length, c.inputs.b1.length, c.inputs.b2.length];
const B = c.inputs.X.length / D;
const expected = [];
for (let b = 0; b < B; b++) {
  const h = Array.from({ length: H }, (_, j) => Math.max(0, c.inputs.b1[j] + c.inputs.X.slice(b * D, b * D + D).reduce((s, x, i) => s + x * c.inputs.W1[i * H + j], 0)));
  const z = Array.from({ length: C }, (_, k) => c.inputs.b2[k] + h.reduce((s, a, j) => s + a * c.inputs.W2[j * C + k], 0));
  expected.push(z.indexOf(Math.max(...z)));
}
console.log(JSON.stringify({ worstEps: worst / 2 ** -52, threads: hg.getNumThreads(), predicted: Array.from(hg.predict(p, f(c.inputs.X))), expected }));`,
    );
    const out = JSON.parse(sh('node', ['run.js'], app, env));
    expect(out.worstEps).toBeLessThanOrEqual(8);
    expect(out.threads).toBeGreaterThanOrEqual(1);
    expect(out.predicted).toEqual(out.expected);

    // The CLI as the consumer has it (node_modules/.bin/handgrad).
    const cli = (args: string[]) => spawnSync(join(app, 'node_modules', '.bin', 'handgrad'), args, { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
    expect(cli(['--version']).stdout.trim()).toBe(require(join(root, 'package.json')).version);
    const dry = cli(['build-torch', '--dry-run']);
    expect(dry.status, dry.stderr).toBe(0);
    // The consumer's own cmake-js (installed as a dependency), run in the installed package.
    expect(dry.stdout).toContain(join(app, 'node_modules', 'cmake-js', 'bin', 'cmake-js'));
    expect(dry.stdout).toContain(`(in ${installed})`);
    expect(existsSync(join(installed, 'CMakeLists.txt'))).toBe(true);
    const trained = cli(['train', '--data', 'xor', '--epochs', '3', '--quiet', '--out', 'o']);
    expect(trained.status, trained.stderr).toBe(0);
    expect(existsSync(join(app, 'o', 'model.safetensors'))).toBe(true);
    expect(existsSync(join(app, 'o', 'curves.svg'))).toBe(false);
    expect(trained.stderr.trim()).toBe("handgrad train: plots skipped: vega and vega-lite (optional dependencies of handgrad, only for plots) are not installed; `npm install vega vega-lite` to draw them");
    // The consumer trains on a CSV of class names and predicts a held-out one with the model file.
    copyFileSync(join(root, 'test', 'fixtures', 'model-file', 'train.csv'), join(app, 'train.csv'));
    copyFileSync(join(root, 'test', 'fixtures', 'model-file', 'holdout.csv'), join(app, 'holdout.csv'));
    const csvTrained = cli(['train', '--data', 'train.csv', '--epochs', '5', '--quiet', '--out', 'm']);
    expect(csvTrained.status, csvTrained.stderr).toBe(0);
    const predicted = cli(['predict', '--model', join('m', 'model.safetensors'), '--data', 'holdout.csv', '-o', 'p.csv']);
    expect(predicted.status, predicted.stderr).toBe(0);
    expect(predicted.stdout).toMatch(/accuracy/);
    const lines = readFileSync(join(app, 'p.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe('prediction');
    expect(lines.length - 1).toBe(readFileSync(join(app, 'holdout.csv'), 'utf8').trim().split('\n').length - 1);

    // Without the prebuild (another platform, say): the error names what works in node_modules.
    renameSync(join(installed, 'prebuilds'), join(installed, 'prebuilds.away'));
    const missing = spawnSync('node', ['-e', "try { require('handgrad').getNumThreads() } catch (e) { console.log(e.code + ': ' + e.message) }"], { cwd: app, env, encoding: 'utf8' });
    expect(missing.stdout).toMatch(/^ERR_NATIVE_UNAVAILABLE: .*build it with `npm rebuild handgrad`/);
    expect(missing.stdout).not.toMatch(/npm run/);
    renameSync(join(installed, 'prebuilds.away'), join(installed, 'prebuilds'));
    expect(readdirSync(join(installed, 'prebuilds', `${process.platform}-${process.arch}`))).toEqual(['handgrad.node']);
  }, 300_000);
});
