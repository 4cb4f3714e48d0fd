#!/usr/bin/env node
// The sanitizer job: builds the core addon with AddressSanitizer + UndefinedBehaviorSanitizer into
// build/asan/ (build/Release stays the normal build), then runs scripts/sanitize/run.cjs against
// that .node under the ASan runtime: the golden fixtures, a bad-input battery on every raw export,
// worker threads, and 10 000 calls of each export with LeakSanitizer on at exit.
//
//   node scripts/sanitize.mjs            build if the sources changed, then run
//   node scripts/sanitize.mjs --rebuild  build from scratch first
//
// Exit code 0 when the battery passed with no report from the sanitizers that involves the addon;
// 1 otherwise (the report is printed). See RELIABILITY.md.
//
// How (checked on Debian 12, gcc 12, Node 20): Node itself is not instrumented, so the ASan runtime
// must be loaded first (LD_PRELOAD=$(g++ -print-file-name=libasan.so)); the addon is compiled
// directly with g++ from the target in binding.gyp (same sources, defines and libraries), plus
// -DHG_GEMM_HEADER pointing at scripts/sanitize/gemm_probe.h, which makes every BLAS call's
// bounds visible to ASan. LeakSanitizer suppressions match any frame of a stack, and every
// allocation the addon makes sits under Node/V8 frames, so a suppression file for "node
// internals" would hide the addon's leaks too: instead each leak report is read here, and one that
// has a frame in handgrad.node (or its sources) fails the job; others are listed as Node's own.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'build', 'asan');
const addon = join(outDir, 'handgrad.node');
const heapProbe = join(outDir, 'heap_probe.node');
const log = (msg) => process.stderr.write(`[sanitize] ${msg}\n`);
const fail = (msg) => {
  log(`FAILED: ${msg}`);
  process.exit(1);
};

const CXX = process.env.CXX || 'g++';
const SANITIZE = ['-fsanitize=address,undefined,float-cast-overflow', '-fno-sanitize-recover=undefined,float-cast-overflow', '-fno-omit-frame-pointer'];

/** The core target of binding.gyp (a Python literal: comments dropped, then JSON). */
function gypTarget() {
  const text = readFileSync(join(root, 'binding.gyp'), 'utf8')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/,(\s*[\]}])/g, '$1');
  let gyp;
  try {
    gyp = JSON.parse(text);
  } catch (e) {
    fail(`binding.gyp could not be read as JSON once its # comments are dropped (${e.message})`);
  }
  const target = gyp.targets?.find((t) => t.target_name === 'handgrad');
  if (!target) fail('binding.gyp has no target "handgrad"');
  return target;
}

function nodeInclude() {
  const dir = join(resolve(process.execPath, '..', '..'), 'include', 'node');
  if (!existsSync(join(dir, 'node_api.h'))) fail(`Node's headers are not at ${dir} (node_api.h missing)`);
  return dir;
}

function compileArgs() {
  const t = gypTarget();
  const addonApi = join(root, 'node_modules', 'node-addon-api');
  if (!existsSync(join(addonApi, 'napi.h'))) fail('node_modules/node-addon-api is missing: run `npm run setup` first');
  const probe = join(root, 'scripts', 'sanitize', 'gemm_probe.h');
  const std = (t.cflags_cc ?? []).filter((f) => f.startsWith('-std='));
  return [
    ...(std.length ? std : ['-std=c++17']),
    '-O1', '-g', '-shared', '-fPIC', ...SANITIZE,
    ...(t.defines ?? []).map((d) => `-D${d}`),
    `-DHG_GEMM_HEADER="${probe}"`,
    '-DBUILDING_NODE_EXTENSION',
    `-I${nodeInclude()}`,
    `-I${addonApi}`,
    ...t.sources.map((s) => join(root, s)),
    ...(t.libraries ?? []),
    '-o', addon,
  ];
}

function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** A hash of everything the build depends on: a stale addon is rebuilt, a fresh one reused. */
function buildHash(args) {
  const h = createHash('sha256').update(JSON.stringify(args)).update(process.version);
  const inputs = ['native/core', 'native/addon', 'native/common'].flatMap((d) => filesUnder(join(root, d)));
  inputs.push(join(root, 'binding.gyp'), join(root, 'scripts', 'sanitize', 'gemm_probe.h'), join(root, 'scripts', 'sanitize', 'heap_probe.cc'));
  for (const f of inputs.sort()) h.update(relative(root, f)).update(readFileSync(f));
  return h.digest('hex');
}

function build() {
  const args = compileArgs();
  const stamp = join(outDir, 'stamp');
  const hash = buildHash(args);
  if (!process.argv.includes('--rebuild') && existsSync(addon) && existsSync(heapProbe) && existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) {
    log(`${relative(root, addon)} is up to date`);
    return;
  }
  mkdirSync(outDir, { recursive: true });
  log(`building ${relative(root, addon)} (${CXX} ${SANITIZE[0]})`);
  const r = spawnSync(CXX, args, { stdio: 'inherit', cwd: root });
  if (r.error) fail(`${CXX} did not run (${r.error.message}); install g++ (apt-get install -y g++)`);
  if (r.status !== 0) fail(`${CXX} exited with ${r.status}`);
  const probeArgs = ['-O1', '-g', '-shared', '-fPIC', '-fsanitize=address', `-I${nodeInclude()}`, join(root, 'scripts', 'sanitize', 'heap_probe.cc'), '-o', heapProbe];
  const q = spawnSync(CXX, probeArgs, { stdio: 'inherit', cwd: root });
  if (q.status !== 0) fail(`${CXX} could not build ${relative(root, heapProbe)}`);
  writeFileSync(stamp, hash);
}

/** The ASan runtime that the addon links against, to be preloaded into Node. */
function asanRuntime() {
  const r = spawnSync(CXX, ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const path = r.stdout?.trim();
  if (!path || !existsSync(path)) fail(`the ASan runtime was not found (${CXX} -print-file-name=libasan.so gave "${path}"); it comes with g++ (Debian: libasan8)`);
  return path;
}

/**
 * Leak reports split into blocks, each with its stack; those with a frame of ours are the addon's,
 * except Node's own 40-byte record of an External that is still alive at exit (a stack handle the
 * battery holds): Node 20 frees the addon's data then (its finalizer runs) but not that record, which
 * napi_create_external allocated (frame #1, in node itself) and which nothing in Node-API can free.
 */
function leaks(text) {
  const blocks = text.split(/\n(?=(?:Direct|Indirect) leak of )/).slice(1).map((b) => b.split(/\n\s*\n/)[0]);
  const nodeExternal = (b) => /^Direct leak of \d+ byte\(s\) in \d+ object\(s\)[^\n]*\n[^\n]*#0 [^\n]*operator new[^\n]*\n[^\n]*#1 [^\n]* in napi_create_external /.test(b);
  const ours = (b) => /handgrad\.node|native\/(?:addon|core|common)\/|scripts\/sanitize\//.test(b) && !nodeExternal(b);
  return { addon: blocks.filter(ours), other: blocks.filter((b) => !ours(b)) };
}

async function runBattery() {
  const env = {
    ...process.env,
    LD_PRELOAD: [asanRuntime(), process.env.LD_PRELOAD].filter(Boolean).join(':'),
    // exitcode 86: an ASan error or a UBSan error (UBSan halts through ASan's death path).
    ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=1:exitcode=86:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1',
    LSAN_OPTIONS: 'exitcode=87:max_leaks=20',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    HANDGRAD_ASAN_ADDON: addon,
  };
  const runner = join(root, 'scripts', 'sanitize', 'run.cjs');
  log(`running ${relative(root, runner)} under AddressSanitizer (LD_PRELOAD=${env.LD_PRELOAD})`);
  const child = spawn(process.execPath, ['--expose-gc', runner, addon], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
    process.stdout.write(d);
  });
  child.stderr.on('data', (d) => {
    err += d;
    process.stderr.write(d);
  });
  const [code, signal] = await new Promise((r) => child.on('close', (c, s) => r([c, s])));
  const all = `${out}\n${err}`;
  const problems = [];
  if (/ERROR: AddressSanitizer/.test(all)) problems.push('AddressSanitizer reported an error');
  if (/runtime error:/.test(all)) problems.push('UndefinedBehaviorSanitizer reported undefined behaviour');
  const l = leaks(all);
  if (l.addon.length) problems.push(`LeakSanitizer: ${l.addon.length} leak(s) with a frame in the addon`);
  if (l.other.length) log(`note: ${l.other.length} leak report(s) of Node's own (at exit; an External's record) were not counted`);
  if (!/^SANITIZE-OK /m.test(out)) problems.push('the battery did not finish (no SANITIZE-OK line)');
  const leakOnly = code === 87 && !l.addon.length;
  if (signal || (code !== 0 && !leakOnly)) problems.push(`the run ended with ${signal ? `signal ${signal}` : `exit code ${code}`}`);
  if (problems.length) fail(problems.join('; '));
  log('passed: no AddressSanitizer, UndefinedBehaviorSanitizer or LeakSanitizer report involving the addon');
}

build();
await runBattery();
