#!/usr/bin/env node
// Setup for a fresh clone, run first by `npm start`, `npm test` and `npm run bench`: system
// packages, npm dependencies, the native addon, the TypeScript build. Each step checks whether it
// is already done (stamps and mtimes), so a second run takes a fraction of a second.
// Plain Node with no dependencies: it runs before node_modules exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newestMtime } from './mtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force-build');
const log = (msg) => process.stderr.write(`[setup] ${msg}\n`);

// Debian packages: the first group is needed to build the core addon; the second serves the
// optional LibTorch reference addon, the WebAssembly build, the exact mode (Sleef, the vectorized
// exp/log LibTorch links) and the tests held to PyTorch Python (python3-torch, run as
// /usr/bin/python3), the BLAS lanes (libopenblas0-serial: native/core/lanes.h), and is installed
// when possible.
const REQUIRED = ['g++', 'make', 'python3', 'libopenblas-dev'];
const OPTIONAL = ['cmake', 'libtorch-dev', 'clang', 'lld', 'libsleef-dev', 'python3-torch', 'libgloo-dev', 'libopenblas0-serial'];

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    log(`failed: ${cmd} ${args.join(' ')}`);
    process.exit(r.status ?? 1);
  }
}

function missingDebs(names) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Status}\n', ...names], { encoding: 'utf8' });
  if (r.error) return null; // not a Debian system: trust the toolchain and let the build say
  const ok = new Set(
    r.stdout.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0].split(':')[0]),
  );
  return names.filter((n) => !ok.has(n));
}

function systemPackages() {
  const missing = missingDebs([...REQUIRED, ...OPTIONAL]);
  if (!missing || missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    const required = missing.filter((m) => REQUIRED.includes(m));
    const msg = `missing Debian packages: ${missing.join(', ')}. Run:\n  sudo sh -c '${cmd}'`;
    if (required.length > 0) {
      log(msg);
      process.exit(1);
    }
    log(`${msg}\n(optional: the LibTorch reference and the WebAssembly backend stay unavailable until then)`);
    return;
  }
  log(`installing ${missing.join(' ')} (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
}

// Node's own headers, so node-gyp never tries to download them (there may be no network).
function nodeDir() {
  const prefix = resolve(process.execPath, '..', '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

function buildEnv() {
  const dir = nodeDir();
  return dir ? { ...process.env, npm_config_nodedir: dir } : process.env;
}

function npmDependencies() {
  const lock = join(root, 'package-lock.json');
  const stamp = join(root, 'node_modules', '.handgrad-lock-hash');
  const hash = createHash('sha256').update(readFileSync(lock)).digest('hex');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) return false;
  log('npm ci');
  run('npm', ['ci', '--no-audit', '--no-fund'], { env: buildEnv() });
  writeFileSync(stamp, hash);
  return true;
}

function stale(output, inputs) {
  return force || !existsSync(output) || statSync(output).mtimeMs < newestMtime(inputs.map((i) => join(root, i)));
}

function nativeAddon() {
  const out = join(root, 'build', 'Release', 'handgrad.node');
  if (!stale(out, ['binding.gyp', 'native/core', 'native/addon', 'native/common'])) return;
  if (!nodeDir()) log('Node headers not found next to this node binary: node-gyp will try to download them');
  log('building the native addon (node-gyp)');
  run(join(root, 'node_modules', '.bin', 'node-gyp'), ['rebuild', '--jobs', 'max'], { env: buildEnv() });
}

// The optional LibTorch reference addon (backend 'torch'), built with cmake-js where cmake and
// libtorch-dev are installed; elsewhere one line says how to get it. Compiling against LibTorch's
// headers takes a minute or two, so it too is built only when its inputs changed.
function torchAddon() {
  const missing = missingDebs(['cmake', 'libtorch-dev']);
  if (missing && missing.length > 0) {
    log(`torch backend skipped (${missing.join(', ')} not installed): apt-get install -y cmake libtorch-dev, then npm run build:torch`);
    return;
  }
  // Two targets: the reference (handgrad_torch) and, where Gloo's headers are installed
  // (libgloo-dev), the c10d process groups (handgrad_distributed); either one stale rebuilds both.
  const out = join(root, 'build-torch', 'Release', 'handgrad_torch.node');
  const distributed = join(root, 'build-torch', 'Release', 'handgrad_distributed.node');
  const inputs = ['CMakeLists.txt', 'native/torch', 'native/common', 'native/core'];
  const glooMissing = missingDebs(['libgloo-dev']);
  const wantsDistributed = glooMissing !== null && glooMissing.length === 0;
  if (!stale(out, inputs) && !(wantsDistributed && stale(distributed, inputs))) return;
  log('building the LibTorch addon (cmake-js; a minute or two)');
  const args = ['compile', '--out', 'build-torch', '--parallel', String(availableParallelism())];
  if (missing === null) {
    // Not Debian: no package list to ask, so try, and skip the optional backend if it fails.
    const r = spawnSync(join(root, 'node_modules', '.bin', 'cmake-js'), args, { stdio: 'inherit', cwd: root });
    if (r.status !== 0) log('torch backend skipped: the LibTorch addon did not build (needs cmake and LibTorch; see npm run build:torch)');
    return;
  }
  run(join(root, 'node_modules', '.bin', 'cmake-js'), args);
  // ninja leaves the file alone when a changed input (say a native/core header) is not one the
  // LibTorch addon includes: mark it current so the next setup does not ask again.
  for (const built of [out, distributed]) if (existsSync(built)) utimesSync(built, new Date(), new Date());
}

// The optional WebAssembly module (backend 'wasm'): skips itself, saying how to get it, when clang
// or wasm-ld is missing.
function wasmModule() {
  run(process.execPath, [join(root, 'scripts', 'build-wasm.mjs'), ...(force ? ['--force-build'] : [])]);
}

function typescript() {
  const out = join(root, 'dist', '.tsbuildinfo');
  if (!stale(out, ['lib', 'bench', 'tsconfig.json', 'tsconfig.build.json'])) return;
  log('compiling TypeScript');
  run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json']);
}

systemPackages();
npmDependencies();
nativeAddon();
wasmModule();
torchAddon();
typescript();
