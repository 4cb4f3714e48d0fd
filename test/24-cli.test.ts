// `handgrad verify` and `handgrad grads` (and --help, --version) as a user runs them: the compiled CLI (dist/, built by
// `node scripts/setup.mjs`, which `npm test` runs first) in child processes, exit codes and output.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSafetensors, saveSafetensors, saveSequential, Sequential, SoftmaxCrossEntropy, type TensorInput } from '../lib';
import { errEps, FIXTURES } from './helpers';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const DIST_INDEX = join(ROOT, 'dist', 'lib', 'index.js');
const TOL_EPS = 8; // test/fixtures/README.md: a few eps relative to the tensor's largest entry
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-cli-'));

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'lib', 'commands', 'verify.js'))) {
    throw new Error('dist/ is not built: run `node scripts/setup.mjs` (npm test does) before this file');
  }
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('handgrad', () => {
  it('--version prints the package version; <command> --help (or -h) prints its usage and exits 0; an unknown flag exits 2 naming it', () => {
    const version = cli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
    for (const command of ['tour', 'verify', 'grads', 'train']) {
      for (const flag of ['--help', '-h']) {
        const r = cli([command, flag]);
        expect(r.code, `${command} ${flag}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^usage: handgrad ${command} `));
      }
    }
    const r = cli(['train', '--epoch', '3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^handgrad train: Expected no option '--epoch' for handgrad train \(did you mean '--epochs'\?\); the options are --data, /);
    expect(cli(['trian']).stderr).toMatch(/unknown command 'trian' \(did you mean 'train'\?\)/);
  });

  it('a flag given twice exits 2 naming it and both values, never taking the last one', () => {
    const r = cli(['train', '--data', 'xor', '--epochs', '1', '--epochs', '2', '--out', join(tmp, 'twice')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^handgrad train: Expected --epochs at most once for handgrad train but received it twice: --epochs 1, then --epochs 2$/m);
    expect(existsSync(join(tmp, 'twice'))).toBe(false);
    // A short alias and its long name are one flag; a switch given twice too.
    expect(cli(['predict', '-o', 'a.csv', '--output', 'b.csv', '--model', 'm', '--data', 'd']).stderr).toMatch(/Expected --output at most once for handgrad predict but received it twice: -o a\.csv, then --output b\.csv/);
    expect(cli(['verify', '--json', '--json']).stderr).toMatch(/Expected --json at most once for handgrad verify but received it twice: --json, then --json/);
  });

  it('--seed outside [0, 2^32) is refused naming --seed (train, verify), before any data is read', () => {
    for (const args of [['train', '--data', 'xor', '--seed', '4294967296', '--out', join(tmp, 'seed')], ['train', '--data', 'xor', '--seed=-1', '--out', join(tmp, 'seed')], ['verify', '--seed=-1'], ['verify', '--seed', '4294967296']]) {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/Expected an integer in \[0, 2\^32\) .* for --seed but received (-1|4294967296)$/m);
      expect(r.stderr).not.toMatch(/opts\./);
    }
    expect(cli(['verify', '--seed', '1.5']).stderr).toMatch(/Expected an integer for --seed but received "1\.5"/);
  });

  it('every command that handgrad --help lists answers --help and -h with its usage (exit 0), before any other flag is read', () => {
    const listed = [...cli(['--help']).stdout.matchAll(/^ {2}handgrad (\S+)/gm)].map((m) => m[1]);
    expect(listed).toEqual(expect.arrayContaining(['tour', 'verify', 'grads', 'train', 'launch', 'build-torch']));
    for (const command of listed) {
      for (const args of [['--help'], ['-h'], ['--bogus', '--help']]) {
        const r = cli([command, ...args]);
        expect(r.code, `${command} ${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^usage: handgrad ${command}\\b`));
      }
    }
  });
});

describe('handgrad build-torch', () => {
  it("runs the package's own cmake-js (a dependency, resolved from the package) on its CMakeLists.txt; without cmake it exits 1 saying what is needed", () => {
    const dry = cli(['build-torch', '--dry-run', '--jobs', '3']);
    expect(dry.code, dry.stderr).toBe(0);
    const m = /^handgrad build-torch: (\S+) (\S+) compile --out build-torch --parallel 3 {2}\(in (.+)\)$/m.exec(dry.stdout);
    expect(m, dry.stdout).not.toBeNull();
    expect(m![1]).toBe(process.execPath);
    expect(existsSync(m![2])).toBe(true);
    expect(m![2]).toMatch(/node_modules[/\\]cmake-js[/\\]bin[/\\]cmake-js$/);
    expect(existsSync(join(m![3], 'CMakeLists.txt'))).toBe(true);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.dependencies['cmake-js']).toBeDefined();
    expect(pkg.devDependencies['cmake-js']).toBeUndefined();
    // No cmake on the PATH (an empty folder; node is spawned by its own path): one line that says what to install.
    const empty = join(tmp, 'empty-path');
    mkdirSync(empty, { recursive: true });
    const bare = cli(['build-torch'], { PATH: empty });
    expect(bare.code).toBe(1);
    expect(bare.stderr).toMatch(/^handgrad build-torch: cmake is not on the PATH \(it needs cmake, a C\+\+17 compiler and LibTorch: `apt-get install -y cmake g\+\+ libtorch-dev`\)$/m);
    expect(cli(['build-torch', '--jobs', '0']).stderr).toMatch(/Expected a positive integer for --jobs but received "0"/);
  });
});

describe('handgrad verify', () => {
  it('the native path at the seed size passes: exit 0, a table of every tensor', () => {
    const r = cli(['verify']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/verify: B=64 D=128 H=256 C=10, float64, relu, reduction mean/);
    for (const [name, shape] of [['loss', '[]'], ['dX', '[64,128]'], ['dW1', '[128,256]'], ['db1', '[256]'], ['dW2', '[256,10]'], ['db2', '[10]']]) {
      expect(r.stdout).toMatch(new RegExp(`^${name}\\s+${shape.replace(/[[\]]/g, '\\$&')}\\s.*\\sok$`, 'm'));
    }
    expect(r.stdout).toMatch(/^OK: All checked tensors match/m);
  });

  it('without the torch addon it falls back to finite differences and says so', () => {
    const r = cli(['verify', '--B', '16', '--D', '24', '--H', '32', '--C', '5'], { HANDGRAD_TORCH_ADDON: join(tmp, 'no-such-addon.node') });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/reference: fd \(central finite differences in float64 \(step 1e-8\): the torch reference is unavailable in this build\)/);
    // Not only a field: the verdict line opens with the fallback, why, and the command that fixes it.
    expect(r.stdout).toMatch(/^OK: Fell back to finite differences, not LibTorch autograd: The LibTorch addon is not built: .*no-such-addon\.node does not exist; `npx handgrad build-torch` builds it, or ask for reference 'fd' \(--reference fd\)/m);
    const json = JSON.parse(cli(['verify', '--B', '4', '--D', '3', '--H', '5', '--C', '2', '--json'], { HANDGRAD_TORCH_ADDON: join(tmp, 'no-such-addon.node') }).stdout);
    expect(json.fallback).toMatch(/no-such-addon\.node does not exist/);
    expect(json.summary).toMatch(/^Fell back to finite differences/);
    // Asked for fd: nothing fell back, nothing to say.
    const asked = JSON.parse(cli(['verify', '--B', '4', '--D', '3', '--H', '5', '--C', '2', '--json', '--reference', 'fd'], { HANDGRAD_TORCH_ADDON: join(tmp, 'no-such-addon.node') }).stdout);
    expect(asked.fallback).toBeUndefined();
    expect(asked.summary).toMatch(/^All checked tensors match/);
    const demanded = cli(['verify', '--reference', 'torch', '--B', '4'], { HANDGRAD_TORCH_ADDON: join(tmp, 'no-such-addon.node') });
    expect(demanded.code).toBe(2);
    expect(demanded.stderr).toMatch(/LibTorch addon is not built/);
  });

  it('float32, tanh, sum, the ts candidate against fd: exit 0; --json is the report', () => {
    const r = cli(['verify', '--dtype', 'float32', '--activation', 'tanh', '--reduction', 'sum', '--candidate', 'ts', '--reference', 'fd', '--B', '32', '--D', '40', '--H', '48', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ ok: true, dtype: 'float32', activation: 'tanh', reduction: 'sum', candidate: 'ts', reference: 'fd' });
    expect(report.tensors.map((t: { name: string }) => t.name)).toEqual(['loss', 'dX', 'dW1', 'db1', 'dW2', 'db2']);
  });

  it('a broken candidate file (dW1 × B) exits 1 with the diagnosis', () => {
    const file = join(tmp, 'broken.js');
    writeFileSync(
      file,
      `const { forwardBackward } = require(${JSON.stringify(DIST_INDEX)});
module.exports = (params, X, y, opts) => {
  const g = forwardBackward(params, X, y, opts).grads;
  return { ...g, dW1: g.dW1.map((v) => v * y.length) }; // forgot the /B
};
`,
    );
    const r = cli(['verify', '--candidate', file]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^dW1\s+\[128,256\].*FAIL$/m);
    expect(r.stdout).toMatch(/\[scale\] dW1 is B = 64 × the reference: forgot the \/B of the mean, or used sum where mean was meant/);
    expect(r.stdout).toMatch(/^MISMATCH: First failing tensor in backward order: dW1\./m);
  });

  it('an ES module exporting `grads` is loaded too (a correct one passes), a module with no function is a usage error', () => {
    const esm = join(tmp, 'correct.mjs');
    writeFileSync(
      esm,
      `import { createRequire } from 'node:module';
const { forwardBackward } = createRequire(import.meta.url)(${JSON.stringify(DIST_INDEX)});
export function grads(params, X, y, opts) { return forwardBackward(params, X, y, opts); }
`,
    );
    const ok = cli(['verify', '--candidate', esm, '--B', '8', '--D', '6', '--H', '5', '--C', '3']);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    const none = join(tmp, 'none.js');
    writeFileSync(none, 'module.exports = { answer: 42 };\n');
    const broken = join(tmp, 'syntax.js');
    writeFileSync(broken, 'module.exports = (;\n');
    const syntax = cli(['verify', '--candidate', broken]);
    expect(syntax.code).toBe(2);
    expect(syntax.stderr).toMatch(/Expected a loadable JavaScript module for --candidate but received .*syntax\.js \(/);
    expect(cli(['verify', '--candidate', join(tmp, 'absent.js')]).stderr).toMatch(/Expected a loadable JavaScript module .*absent\.js \(Cannot find module/);
    const bad = cli(['verify', '--candidate', none]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Expected a module whose default export or `grads` export is a gradient function for --candidate but received .*none\.js exporting answer/);
  });

  it('bad options exit 2 with the library wording', () => {
    expect(cli(['verify', '--B', '0']).stderr).toMatch(/Expected a positive integer for --B but received "0"/);
    // Past a 32-bit size: the flag is named, not the dims.C or typed-array length it becomes.
    for (const flag of ['--B', '--D', '--C', '--H']) {
      const r = cli(['verify', flag, '3000000000']);
      expect(r.code, flag).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`Expected a positive integer ≤ 2\\^31 − 1 \\(a size is a 32-bit dimension\\) for ${flag} but received "3000000000"`));
    }
    expect(cli(['verify', '--layers', '8,3000000000']).stderr).toMatch(/for --layers\[1\] but received "3000000000"/);
    expect(cli(['verify', '--dtype', 'float16']).code).toBe(2);
    expect(cli(['verify', '--reference', 'jax']).stderr).toMatch(/Expected one of 'auto', 'torch', 'fd' for --reference/);
    const bogus = cli(['verify', '--bogus']);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/Expected no option '--bogus' for handgrad verify; the options are --B, --D/);
    expect(cli(['verify', '--help']).stdout).toMatch(/--candidate native\|ts\|torch\|wasm\|FILE\.js/);
  });
});

describe('handgrad grads', () => {
  for (const [suffix, dtype, F] of [['', 'float64', 'F64'], ['-float32', 'float32', 'F32']] as const) {
    for (const backend of ['native', 'ts']) {
      it(`${dtype}, ${backend}: reproduces the PyTorch expected file within ${TOL_EPS} eps`, () => {
        const out = join(tmp, `grads${suffix}-${backend}.safetensors`);
        const base = join(FIXTURES, `seed-realistic-64x128x256x10${suffix}`);
        const r = cli(['grads', `${base}.case.safetensors`, '-o', out, '--backend', backend]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/dX \[64,128\], dW1 \[128,256\], db1 \[256\], dW2 \[256,10\], db2 \[10\]/);
        const got = loadSafetensors(out);
        const want = loadSafetensors(`${base}.expected.safetensors`).tensors;
        expect(got.metadata).toMatchObject({ activation: 'relu', reduction: 'mean', backend });
        expect(Object.keys(got.tensors).sort()).toEqual(['dW1', 'dW2', 'dX', 'db1', 'db2', 'loss']);
        for (const [k, w] of Object.entries(want)) {
          expect(got.tensors[k].dtype, k).toBe(F);
          expect(got.tensors[k].shape, k).toEqual(w.shape);
          expect(errEps(got.tensors[k].data as Float64Array, w.data as Float64Array, dtype), k).toBeLessThanOrEqual(TOL_EPS);
        }
      });
    }
  }

  it("an nn.Sequential's state_dict (0.weight [H,D], …) with its activation named reproduces the same PyTorch gradients; unnamed, it exits 2 saying how", () => {
    const base = join(FIXTURES, 'seed-realistic-64x128x256x10');
    const c = loadSafetensors(`${base}.case.safetensors`);
    const want = loadSafetensors(`${base}.expected.safetensors`).tensors;
    const T = (name: string, rows: number, cols: number) => {
      const a = c.tensors[name].data as Float64Array;
      const out = new Float64Array(a.length);
      for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) out[k * rows + r] = a[r * cols + k];
      return { shape: [cols, rows], data: out };
    };
    const { X, y, b1, b2 } = c.tensors;
    const check = (args: string[], dict: Record<string, TensorInput>, meta: Record<string, string>, name: string) => {
      const path = join(tmp, `${name}.safetensors`);
      saveSafetensors(path, { X, y, ...dict }, meta);
      const out = join(tmp, `${name}-out.safetensors`);
      const r = cli(['grads', path, '-o', out, ...args]);
      return { r, got: r.code === 0 ? loadSafetensors(out) : undefined };
    };
    const sd = { '0.weight': T('W1', 128, 256), '0.bias': b1, '2.weight': T('W2', 256, 10), '2.bias': b2 };
    const named = check(['--activation', 'relu'], sd, { reduction: 'mean' }, 'sd');
    expect(named.r.code, named.r.stderr).toBe(0);
    expect(named.r.stdout).toMatch(/from PyTorch's layout \(0\.weight, 0\.bias, 2\.weight, 2\.bias\)/);
    for (const [k, w] of Object.entries(want)) {
      expect(named.got!.tensors[k].shape, k).toEqual(w.shape); // handgrad's layout: dW1 [D,H]
      expect(errEps(named.got!.tensors[k].data as Float64Array, w.data as Float64Array, 'float64'), k).toBeLessThanOrEqual(TOL_EPS);
    }
    // A Dropout between (indices 0 and 3) with every module named.
    const gap = { '0.weight': sd['0.weight'], '0.bias': b1, '3.weight': sd['2.weight'], '3.bias': b2 };
    const layers = check(['--layers', 'linear,relu,dropout,linear'], gap, {}, 'sd-gap');
    expect(layers.r.code, layers.r.stderr).toBe(0);
    expect(errEps(layers.got!.tensors.dW1.data as Float64Array, want.dW1.data as Float64Array, 'float64')).toBeLessThanOrEqual(TOL_EPS);
    // The file's own metadata names it too.
    expect(check([], sd, { activation: 'relu' }, 'sd-meta').r.code).toBe(0);
    // tanh where the weights were trained with ReLU: a different network, a different loss (the flag is obeyed).
    const tanh = check(['--activation', 'tanh'], sd, { activation: 'relu' }, 'sd-tanh');
    expect(tanh.r.code, tanh.r.stderr).toBe(0);
    expect(tanh.got!.metadata.activation).toBe('tanh');
    expect(Math.abs((tanh.got!.tensors.loss.data as Float64Array)[0] - (want.loss.data as Float64Array)[0])).toBeGreaterThan(1e-6);
    const unnamed = check([], sd, {}, 'sd-unnamed');
    expect(unnamed.r.code).toBe(2);
    expect(unnamed.r.stderr).toMatch(/holds a PyTorch state_dict \(0\.weight, 0\.bias, 2\.weight, 2\.bias\) that does not record its activation: name it with --activation relu\|sigmoid\|tanh, or every module with --layers/);
    const both = check(['--activation', 'relu', '--layers', 'linear,relu,linear'], sd, {}, 'sd-both');
    expect(both.r.stderr).toMatch(/Expected either --activation or --layers, not both/);
    // X's D must be the state_dict's in_features.
    const wrongD = check(['--activation', 'relu'], { ...sd, '0.weight': { shape: [256, 64], data: new Float64Array(256 * 64) } }, {}, 'sd-d');
    expect(wrongD.r.code).toBe(2);
    expect(wrongD.r.stderr).toMatch(/Expected shape \[H,D\] = \[256,128\] \(D from X\) for tensor "0\.weight" but received \[256,64\]/);
  });

  it('int64 labels (PyTorch\'s default) and a metadata override from the command line', () => {
    const c = loadSafetensors(join(FIXTURES, 'seed-realistic-64x128x256x10.case.safetensors'));
    const tensors = Object.fromEntries(Object.entries(c.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
    tensors.y = { shape: [64], data: BigInt64Array.from(c.tensors.y.data as Int32Array, (v) => BigInt(v)) };
    const path = join(tmp, 'i64.safetensors');
    saveSafetensors(path, tensors, { activation: 'relu', reduction: 'mean' });
    const out = join(tmp, 'i64-out.safetensors');
    expect(cli(['grads', path, '-o', out]).code).toBe(0);
    const want = loadSafetensors(join(FIXTURES, 'seed-realistic-64x128x256x10.expected.safetensors')).tensors;
    expect(errEps(loadSafetensors(out).tensors.dW1.data as Float64Array, want.dW1.data as Float64Array, 'float64')).toBeLessThanOrEqual(TOL_EPS);
    // --reduction sum: every gradient B times the mean one.
    const sum = join(tmp, 'sum.safetensors');
    expect(cli(['grads', path, '-o', sum, '--reduction', 'sum']).code).toBe(0);
    const s = loadSafetensors(sum);
    expect(s.metadata.reduction).toBe('sum');
    expect(errEps((s.tensors.db2.data as Float64Array).map((v) => v / 64), want.db2.data as Float64Array, 'float64')).toBeLessThanOrEqual(TOL_EPS);
  });

  it('a case file holding a deeper net (W3, b3; its layers metadata) is refused, never cut down to W1, b1, W2, b2', () => {
    const X = { shape: [2, 4], data: new Float64Array([0.1, 0.2, 0.3, 0.4, -0.5, 0.6, -0.7, 0.8]) };
    const y = { shape: [2], data: new Int32Array([0, 2]) };
    const caseOf = (name: string, widths: number[], keepMetadata: boolean) => {
      const net = join(tmp, `${name}-net.safetensors`);
      saveSequential(net, Sequential.mlp(widths, { seed: 0, activation: 'tanh' }));
      const f = loadSafetensors(net);
      const path = join(tmp, `${name}.safetensors`);
      saveSafetensors(path, { X, y, ...Object.fromEntries(Object.entries(f.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }])) }, keepMetadata ? f.metadata : {});
      return path;
    };
    for (const keep of [true, false]) {
      const out = join(tmp, `deep-out-${keep}.safetensors`);
      const r = cli(['grads', caseOf(`deep-${keep}`, [4, 5, 6, 3], keep), '-o', out]);
      expect(r.code, r.stdout).toBe(2);
      expect(r.stderr).toMatch(/Expected the two-layer net W1, b1, W2, b2 .* but received a net of 3 Linear layers: linear, (tanh|relu), linear, (tanh|relu), linear/);
      expect(existsSync(out)).toBe(false);
    }
    // --layers against the file's own layers list: refused in the flag's name, not computed as another net.
    const two = caseOf('two-tanh', [4, 5, 3], true);
    const clash = cli(['grads', two, '-o', join(tmp, 'clash.safetensors'), '--layers', 'linear,relu,linear']);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/for --layers but received/);
    expect(clash.stderr).not.toMatch(/opts\./);
    // The two-layer net the same way still runs, as tanh (its layers say so).
    const ok = cli(['grads', two, '-o', join(tmp, 'two-out.safetensors')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/\(F64, tanh, mean, backend native\)/);
  });

  it("a model file's saved loss (weight, reduction) is the loss the gradients are of, never the default mean", () => {
    // A tanh net saved with F.cross_entropy(…, weight=[1, 5, 1], reduction='sum'), X and y added.
    const net = Sequential.mlp([3, 5, 3], { seed: 2, activation: 'tanh', loss: new SoftmaxCrossEntropy({ reduction: 'sum', weight: new Float64Array([1, 5, 1]) }) });
    const file = join(tmp, 'weighted-net.safetensors');
    saveSequential(file, net);
    const f = loadSafetensors(file);
    const X = new Float64Array([0.3, -1.2, 0.8, 1.5, 0.1, -0.4, -0.9, 0.6, 0.2, 0.05, -0.7, 1.1]);
    const y = new Int32Array([1, 0, 2, 1]);
    const path = join(tmp, 'weighted.safetensors');
    saveSafetensors(path, { X: { shape: [4, 3], data: X }, y: { shape: [4], data: y }, ...Object.fromEntries(Object.entries(f.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }])) }, f.metadata);
    const out = join(tmp, 'weighted-out.safetensors');
    const r = cli(['grads', path, '-o', out]);
    expect(r.code, r.stderr).toBe(0);
    // The truth, in plain float64: Σ_b w[y_b]·(−log softmax(z_b)[y_b]), and ∂/∂logits = w[y_b]·(p_b − e_{y_b}).
    const [W1, b1, W2, b2] = ['W1', 'b1', 'W2', 'b2'].map((k) => f.tensors[k].data as Float64Array);
    const w = [1, 5, 1];
    let loss = 0;
    const dW2 = new Float64Array(15);
    const db2 = new Float64Array(3);
    for (let b = 0; b < 4; b++) {
      const a = Array.from({ length: 5 }, (_, j) => Math.tanh(b1[j] + X[b * 3] * W1[j] + X[b * 3 + 1] * W1[5 + j] + X[b * 3 + 2] * W1[10 + j]));
      const z = Array.from({ length: 3 }, (_, c) => b2[c] + a.reduce((s, ai, j) => s + ai * W2[j * 3 + c], 0));
      const m = Math.max(...z);
      const e = z.map((zc) => Math.exp(zc - m));
      const sum = e.reduce((s, x) => s + x, 0);
      loss += w[y[b]] * (Math.log(sum) + m - z[y[b]]);
      for (let c = 0; c < 3; c++) {
        const g = w[y[b]] * (e[c] / sum - (c === y[b] ? 1 : 0));
        db2[c] += g;
        for (let j = 0; j < 5; j++) dW2[j * 3 + c] += a[j] * g;
      }
    }
    const got = loadSafetensors(out);
    expect(got.metadata.reduction).toBe('sum');
    expect(JSON.parse(got.metadata.loss)).toEqual({ reduction: 'sum', weight: [1, 5, 1] });
    expect(errEps(got.tensors.loss.data as Float64Array, new Float64Array([loss]), 'float64')).toBeLessThanOrEqual(TOL_EPS);
    expect(errEps(got.tensors.db2.data as Float64Array, db2, 'float64')).toBeLessThanOrEqual(TOL_EPS);
    expect(errEps(got.tensors.dW2.data as Float64Array, dW2, 'float64')).toBeLessThanOrEqual(TOL_EPS);
    // A case whose own "reduction" disagrees with the saved loss's is refused, never one of them taken.
    const clash = join(tmp, 'weighted-clash.safetensors');
    saveSafetensors(clash, { ...Object.fromEntries(Object.entries(loadSafetensors(path).tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }])) }, { ...f.metadata, reduction: 'mean' });
    const bad = cli(['grads', clash, '-o', join(tmp, 'clash-out.safetensors')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Expected the reduction of __metadata__\.loss \(sum\), or no "reduction" for __metadata__\.reduction but received mean/);
  });

  it('bad input files and arguments exit 2 with a message that names the problem', () => {
    const c = loadSafetensors(join(FIXTURES, 'seed-realistic-64x128x256x10.case.safetensors'));
    const tensors = Object.fromEntries(Object.entries(c.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
    // nn.Linear keeps weight as [out, in] = [H, D]: saved as-is, W1 has the transposed shape.
    const linear = join(tmp, 'linear.safetensors');
    saveSafetensors(linear, { ...tensors, W1: { shape: [256, 128], data: c.tensors.W1.data } }, c.metadata);
    let r = cli(['grads', linear, '-o', join(tmp, 'x.safetensors')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected shape \[D,H\] = \[128,256\] for tensor "W1" but received \[256,128\] \(nn\.Linear's weight is \[out,in\]: save W1 = linear\.weight\.T\)/);

    const half = join(tmp, 'half.safetensors');
    saveSafetensors(half, { ...tensors, X: { dtype: 'F16', shape: [64, 128], data: new Uint8Array(64 * 128 * 2) } }, c.metadata);
    r = cli(['grads', half, '-o', join(tmp, 'x.safetensors')]);
    expect(r.stderr).toMatch(/Expected dtype F64 or F32 for tensor "X" but received F16/);

    const mixed = join(tmp, 'mixed.safetensors');
    saveSafetensors(mixed, { ...tensors, b2: { shape: [10], data: Float32Array.from(c.tensors.b2.data as Float64Array) } }, c.metadata);
    expect(cli(['grads', mixed, '-o', join(tmp, 'x.safetensors')]).stderr).toMatch(/Expected dtype F64 \(the dtype of X\) for tensor "b2" but received F32/);

    const noLabels = join(tmp, 'nolabels.safetensors');
    const { y: _y, ...rest } = tensors;
    saveSafetensors(noLabels, rest, c.metadata);
    expect(cli(['grads', noLabels, '-o', join(tmp, 'x.safetensors')]).stderr).toMatch(/Expected a tensor named "y" for the safetensors file/);

    const badMeta = join(tmp, 'meta.safetensors');
    saveSafetensors(badMeta, tensors, { activation: 'gelu' });
    expect(cli(['grads', badMeta, '-o', join(tmp, 'x.safetensors')]).stderr).toMatch(/Expected one of 'relu', 'sigmoid', 'tanh' for __metadata__\.activation but received "gelu"/);

    const junk = join(tmp, 'junk.safetensors');
    writeFileSync(junk, 'not a safetensors file at all');
    r = cli(['grads', junk, '-o', join(tmp, 'x.safetensors')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected .* for the safetensors header but received/);

    expect(cli(['grads', join(tmp, 'missing.safetensors'), '-o', join(tmp, 'x.safetensors')]).stderr).toMatch(/Expected a readable safetensors file/);
    expect(cli(['grads', linear]).stderr).toMatch(/Expected an output file for -o\/--out/);
    expect(cli(['grads', '-o', join(tmp, 'x.safetensors')]).code).toBe(2);
  });

  it("train takes torch.optim's options (--momentum, --dampening, --nesterov, --betas, --eps, --amsgrad, --weight-decay): the Trainer runs them, the checkpoint records them", () => {
    const help = cli(['train', '--help']).stdout;
    for (const flag of ['--momentum X', '--dampening X', '--nesterov', '--betas B1,B2', '--eps X', '--amsgrad', '--weight-decay X']) expect(help).toContain(flag);
    const trained = (args: string[]) => {
      const out = join(tmp, `train-${args.join('').replace(/[^a-z0-9]/gi, '')}`);
      const r = cli(['train', '--data', 'xor', '--epochs', '2', '--quiet', '--out', out, ...args]);
      expect(r.code, r.stderr).toBe(0);
      return { stdout: r.stdout, saved: JSON.parse(loadSafetensors(join(out, 'model.safetensors')).metadata.trainer).optimizer };
    };
    const sgd = trained(['--optimizer', 'sgd', '--momentum', '0.8', '--nesterov', '--weight-decay', '0.001']);
    expect(sgd.saved).toMatchObject({ name: 'nesterov', momentum: 0.8, nesterov: true, dampening: 0, weightDecay: 0.001 });
    expect(sgd.stdout).toMatch(/sgd \(momentum 0\.8, nesterov, weight-decay 0\.001\) lr/);
    expect(trained(['--momentum', '0.9', '--dampening', '0.25']).saved).toMatchObject({ name: 'momentum', momentum: 0.9, dampening: 0.25 });
    const adam = trained(['--optimizer', 'adamw', '--betas', '0.8,0.99', '--eps', '1e-6', '--amsgrad']);
    expect(adam.saved).toMatchObject({ name: 'adamw', beta1: 0.8, beta2: 0.99, epsilon: 1e-6, amsgrad: true, weightDecay: 0.01 });
    expect(adam.stdout).toMatch(/adamw \(betas 0\.8,0\.99, eps 0\.000001, amsgrad\) lr/);
  });

  it("train: an optimizer option of the other family, out of range, or malformed exits 2 naming the flag (as torch.optim's TypeError/ValueError)", () => {
    const bad = (args: string[], message: RegExp) => {
      const r = cli(['train', '--data', 'xor', '--epochs', '1', '--quiet', '--out', join(tmp, 'bad-train'), ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    };
    bad(['--optimizer', 'adam', '--momentum', '0.9'], /Expected nothing with optimizer 'adam' \(momentum is SGD's, as in torch.optim\) for --momentum but received 0\.9/);
    bad(['--optimizer', 'adamw', '--nesterov'], /for --nesterov but received/);
    bad(['--optimizer', 'adam', '--dampening', '0.1'], /for --dampening but received 0\.1/);
    bad(['--optimizer', 'sgd', '--betas', '0.9,0.99'], /Expected nothing with optimizer 'sgd' \(beta1 is Adam's and AdamW's, as in torch.optim\) for --betas\[0\]/);
    bad(['--optimizer', 'momentum', '--eps', '1e-6'], /for --eps but received 0\.000001/);
    bad(['--optimizer', 'nesterov', '--amsgrad'], /for --amsgrad but received/);
    // The data set's default optimizer (xor's is sgd) is named as such.
    bad(['--amsgrad'], /'sgd' is the default optimizer for xor; choose another with --optimizer/);
    bad(['--optimizer', 'sgd', '--nesterov'], /Expected momentum > 0 \(Nesterov needs it, as torch.optim.SGD does\) for --momentum but received 0/);
    bad(['--momentum', '0.9', '--nesterov', '--dampening', '0.1'], /Expected dampening 0 .* for --dampening but received 0\.1/);
    bad(['--optimizer', 'adam', '--betas', '0.9'], /Expected two numbers B1,B2 .* for --betas but received "0\.9"/);
    bad(['--optimizer', 'adam', '--betas', '0.9,1'], /Expected a finite number in \[0, 1\) for --betas\[1\] but received 1/);
    bad(['--optimizer', 'adam', '--eps', 'x'], /Expected a finite number for --eps but received "x"/);
    bad(['--momentum=-0.5'], /Expected a finite number in \[0, 1\] for --momentum but received -0\.5/);
    bad(['--weight-decay=-1'], /Expected a finite number ≥ 0 for --weight-decay but received -1/);
    bad(['--optimizer', 'adamw', '--weight-decay', 'Infinity'], /Expected a finite number for --weight-decay but received "Infinity"/);
  });

  it('train --exact: every step in the exact mode, saved with the settings; with a backend that cannot be exact it exits 2 naming --exact', () => {
    const dir = join(tmp, 'exact-train');
    const r = cli(['train', '--data', 'xor', '--epochs', '2', '--quiet', '--exact', '--out', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backend native \(exact: PyTorch's bits\)/);
    const saved = JSON.parse(loadSafetensors(join(dir, 'model.safetensors')).metadata.trainer);
    expect(saved.exact).toBe(true);
    const bad = cli(['train', '--data', 'xor', '--epochs', '1', '--quiet', '--exact', '--backend', 'ts', '--out', dir]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/with --exact: the exact mode reproduces LibTorch's CPU kernels/);
  });
});
