// The published package: `npm run prebuildify` packs the N-API addon, `npm pack` makes a tarball,
// and that tarball installs into an empty project and runs the toy example without a compiler
// (node-gyp-build picks the prebuild). Built in a copy of the package so the build/ that the other
// test files load is never touched while they run.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'handgrad-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('npm pack → install into an empty project → run', () => {
  it('installs from the tarball with the prebuild and reproduces PyTorch on the toy case', () => {
    const pkg = join(work, 'pkg');
    for (const f of ['package.json', 'binding.gyp', 'README.md', 'native', 'dist']) cpSync(join(root, f), join(pkg, f), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir');
    const env = { ...process.env, npm_config_nodedir: resolve(process.execPath, '..', '..') };
    sh('npm', ['run', 'prebuildify'], pkg, env);
    expect(readdirSync(join(pkg, 'prebuilds', `${process.platform}-${process.arch}`)).some((f) => f.endsWith('.node'))).toBe(true);
    const tgz = sh('npm', ['pack', '--silent'], pkg).trim().split('\n').pop()!;

    const app = join(work, 'app');
    cpSync(join(root, 'test', 'fixtures', 'seed-toy-4x5x10x3.json'), join(app, 'case.json'));
    writeFileSync(join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
    sh('npm', ['install', '--no-audit', '--no-fund', join(pkg, tgz)], app);
    // No build/ folder: the install script (node-gyp-build) found the prebuild and compiled nothing.
    expect(existsSync(join(app, 'node_modules', 'handgrad', 'build'))).toBe(false);
    writeFileSync(
      join(app, 'run.js'),
      `const hg = require('handgrad');
const c = require('./case.json');
const f = (a) => Float64Array.from(a);
const r = hg.forwardBackward({ W1: f(c.inputs.W1), b1: f(c.inputs.b1), W2: f(c.inputs.W2), b2: f(c.inputs.b2) },
  f(c.inputs.X), c.inputs.y, { inputGrad: true });
let worst = Math.abs(r.loss - c.expected.loss[0]) / Math.abs(c.expected.loss[0]);
for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2']) {
  const e = c.expected[k]; const m = Math.max(...e.map(Math.abs));
  for (let i = 0; i < e.length; i++) worst = Math.max(worst, Math.abs(r.grads[k][i] - e[i]) / m);
}
console.log(JSON.stringify({ worstEps: worst / 2 ** -52, threads: hg.getNumThreads() }));`,
    );
    const out = JSON.parse(sh(process.execPath, ['run.js'], app));
    expect(out.worstEps).toBeLessThanOrEqual(8);
    expect(out.threads).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
