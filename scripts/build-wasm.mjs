#!/usr/bin/env node
// Builds build-wasm/handgrad.wasm (the 'wasm' backend) from native/wasm and native/core with
// clang --target=wasm32 and wasm-ld, when any source is newer than the module (or --force-build),
// and build-wasm/handgrad-threads.wasm from the same sources: the GEMM on a pool of workers over a
// shared memory (native/wasm/threads.h, lib/engine/wasm-threads.ts), used where SharedArrayBuffer is.
// Without clang or wasm-ld (or a clang without the WebAssembly target) it says so and exits 0:
// the backend is optional, and lib/backends/wasm.ts explains how to get it when asked for.
// Plain Node with no dependencies, like scripts/setup.mjs. Exit 1 only when a present toolchain
// fails to compile or link the sources.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newestMtime } from './mtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force-build');
const log = (msg) => process.stderr.write(`[build-wasm] ${msg}\n`);

const outDir = join(root, 'build-wasm');
const entry = join(root, 'native', 'wasm', 'handgrad.cc');
// Every header the module can include: stack.h pulls in sparse.h, overflow.h, product.h and
// kernels.h, and a list of single files went stale when one of them was added.
const INPUTS = ['native/wasm', 'native/core', 'scripts/build-wasm.mjs'];

/** The first of `names` that runs with --version, or null. */
function findTool(names) {
  for (const name of names) {
    const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return name;
  }
  return null;
}

const VERSIONS = [20, 19, 18, 17, 16, 15, 14];
const withVersions = (base) => [base, ...VERSIONS.map((v) => `${base}-${v}`)];

// The two modules: the single-threaded one, and the threaded one (-matomics: atomics and
// memory.atomic.wait/notify; -mmutable-globals: a worker sets the exported __stack_pointer; the memory
// imported, shared, and allowed to grow to wasm32's 4 GiB like the single-threaded one's).
const MODULES = [
  { out: join(outDir, 'handgrad.wasm'), compile: [], link: [] },
  {
    out: join(outDir, 'handgrad-threads.wasm'),
    compile: ['-matomics', '-mmutable-globals', '-DHG_WASM_THREADS'],
    link: ['--shared-memory', '--import-memory', `--max-memory=${2 ** 32}`, '--export=__stack_pointer'],
  },
];

function main() {
  const newest = newestMtime(INPUTS.map((p) => join(root, p)));
  if (!force && MODULES.every((m) => existsSync(m.out) && statSync(m.out).mtimeMs >= newest)) return 0;

  const clang = process.env.CLANG || findTool(withVersions('clang'));
  const wasmLd = process.env.WASM_LD || findTool(withVersions('wasm-ld'));
  const skip = (why) => {
    log(`skipped: ${why}. The 'wasm' backend stays unavailable until then; ` +
      "install them with `apt-get install -y clang lld` and run `node scripts/build-wasm.mjs`.");
    return 0;
  };
  if (!clang) return skip('clang not found (set CLANG to use another)');
  if (!wasmLd) return skip('wasm-ld not found (package lld; set WASM_LD to use another)');
  const targets = spawnSync(clang, ['-print-targets'], { encoding: 'utf8' });
  if (targets.status === 0 && !/\bwasm32\b/.test(targets.stdout)) return skip(`${clang} has no wasm32 target`);

  mkdirSync(outDir, { recursive: true });
  for (const m of MODULES) if (build(clang, wasmLd, m) !== 0) return 1;
  return 0;
}

function build(clang, wasmLd, { out, compile: extraCompile, link: extraLink }) {
  const obj = `${out}.${process.pid}.o`;
  const tmp = `${out}.${process.pid}.tmp`;
  // -nostdlib and our own <cmath>/<cstring>/… (native/wasm/include): no libc in the module;
  // -mbulk-memory turns memcpy/memset into memory.copy/memory.fill. Every export is named in
  // the source (export_name), everything else is hidden.
  const compile = [
    '--target=wasm32', '-O3', '-msimd128', '-mbulk-memory', '-std=c++17', '-fno-exceptions', '-fno-rtti',
    '-nostdlib', '-fvisibility=hidden', '-Wall', '-Wextra',
    '-isystem', join(root, 'native', 'wasm', 'include'), '-I', join(root, 'native', 'wasm'),
    '-DHG_GEMM_HEADER="gemm.h"', ...extraCompile, '-c', entry, '-o', obj,
  ];
  // Link-time undefined symbols are errors: a libc call left behind fails here, not at load.
  const link = [obj, '-o', tmp, '--no-entry', '--export=__heap_base', '--strip-debug', ...extraLink];
  log(`compiling ${out} (${clang}, ${wasmLd})`);
  for (const [cmd, args] of [[clang, compile], [wasmLd, link]]) {
    const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
    if (r.status !== 0) {
      log(`failed: ${cmd} ${args.join(' ')}`);
      rmSync(tmp, { force: true });
      rmSync(obj, { force: true });
      return 1;
    }
  }
  renameSync(tmp, out); // atomic: a reader never sees half a module
  rmSync(obj, { force: true });
  return 0;
}

process.exitCode = main();
