#!/usr/bin/env node
// The sanitizer job: builds both addons with AddressSanitizer + UndefinedBehaviorSanitizer into
// build-asan/ (its own folder: `node-gyp rebuild`, i.e. `npm run setup`, deletes build/; build/Release
// and build-torch/ stay the normal builds), then runs a battery against each .node under the ASan
// runtime, each in its own Node process:
//   core   build-asan/handgrad.node, scripts/sanitize/run.cjs: the golden fixtures, a bad-input
//          battery on every raw export, worker threads, 10 000 calls of each export;
//   torch  build-asan/handgrad_torch.node, scripts/sanitize/torch.cjs: the same for the LibTorch
//          reference (its sequential* and optimizerRun exports); skipped, with a line saying so,
//          where LibTorch is not installed (the torch addon is optional, as in `npm run setup`).
// LeakSanitizer is on at the exit of each.
//
//   node scripts/sanitize.mjs            build what changed, then run both
//   node scripts/sanitize.mjs --rebuild  build from scratch first
//   node scripts/sanitize.mjs --only=torch   (or core) one of the two
//
// Exit code 0 when every battery passed with no report from the sanitizers that involves an
// addon; 1 otherwise (the report is printed). See RELIABILITY.md.
//
// How (checked on Debian 12, gcc 12, Node 20, LibTorch 1.13): Node itself is not instrumented, so
// the ASan runtime must be loaded first (LD_PRELOAD=$(g++ -print-file-name=libasan.so)). The core
// addon is compiled directly with g++ from the target in binding.gyp (same sources, defines and
// libraries), plus -DHG_GEMM_HEADER pointing at scripts/sanitize/gemm_probe.h, which makes every
// BLAS call's bounds visible to ASan. The torch addon is compiled the same way from CMakeLists.txt
// (native/torch/*.cc, its compile definitions) against the LibTorch that CMake's find_package(Torch)
// would use (Torch_DIR, else the normal build's CMakeCache.txt, else Debian's libtorch-dev), with
// TorchConfig.cmake's TORCH_CXX_FLAGS; LibTorch itself stays uninstrumented, so what ASan sees is
// our code and every header function it inlines. LeakSanitizer suppressions match any frame of a
// stack, and every allocation an addon makes sits under Node/V8 frames, so a suppression file for
// "node internals" would hide the addon's leaks too: instead each report is read here, and one
// that has a frame in an addon (its .node or its sources) fails the job; others are listed as
// Node's or LibTorch's own.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'build-asan');
const addon = join(outDir, 'handgrad.node');
const torchAddon = join(outDir, 'handgrad_torch.node');
const heapProbe = join(outDir, 'heap_probe.node');
const log = (msg) => process.stderr.write(`[sanitize] ${msg}\n`);
const fail = (msg) => {
  log(`FAILED: ${msg}`);
  process.exit(1);
};
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only && only !== 'core' && only !== 'torch') fail(`--only takes core or torch, not ${only}`);

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

/** A hash of everything a build depends on (its arguments, folders and files): a stale addon is rebuilt, a fresh one reused. */
function buildHash(args, dirs, files) {
  const h = createHash('sha256').update(JSON.stringify(args)).update(process.version);
  const inputs = [...dirs.flatMap((d) => filesUnder(join(root, d))), ...files.map((f) => join(root, f))];
  for (const f of inputs.sort()) h.update(relative(root, f)).update(readFileSync(f));
  return h.digest('hex');
}

/** build-asan/ and its subfolder, ignored by git from inside (everything in it is built here). */
function outFolder(sub = '') {
  mkdirSync(join(outDir, sub), { recursive: true });
  writeFileSync(join(outDir, '.gitignore'), '*\n');
}

/** Whether the build stamped `stamp` with this hash (and made `outputs`) is the one on disk. */
const upToDate = (stamp, hash, outputs) =>
  !process.argv.includes('--rebuild') && [stamp, ...outputs].every((f) => existsSync(f)) && readFileSync(stamp, 'utf8') === hash;

function build() {
  const args = compileArgs();
  const stamp = join(outDir, 'stamp');
  const hash = buildHash(args, ['native/core', 'native/addon', 'native/common'], ['binding.gyp', 'scripts/sanitize/gemm_probe.h', 'scripts/sanitize/heap_probe.cc']);
  if (upToDate(stamp, hash, [addon, heapProbe])) {
    log(`${relative(root, addon)} is up to date`);
    return;
  }
  outFolder();
  log(`building ${relative(root, addon)} (${CXX} ${SANITIZE[0]})`);
  const r = spawnSync(CXX, args, { stdio: 'inherit', cwd: root });
  if (r.error) fail(`${CXX} did not run (${r.error.message}); install g++ (apt-get install -y g++)`);
  if (r.status !== 0) fail(`${CXX} exited with ${r.status}`);
  const probeArgs = ['-O1', '-g', '-shared', '-fPIC', '-fsanitize=address', `-I${nodeInclude()}`, join(root, 'scripts', 'sanitize', 'heap_probe.cc'), '-o', heapProbe];
  const q = spawnSync(CXX, probeArgs, { stdio: 'inherit', cwd: root });
  if (q.status !== 0) fail(`${CXX} could not build ${relative(root, heapProbe)}`);
  writeFileSync(stamp, hash);
}

/**
 * The LibTorch that find_package(Torch) would use, as TorchConfig.cmake computes it: its prefix
 * (four folders above the config), the two include folders, the library folder and
 * TORCH_CXX_FLAGS; null when no TorchConfig.cmake is found.
 */
function libtorch() {
  const cache = join(root, 'build-torch', 'CMakeCache.txt');
  const cached = existsSync(cache) ? /^Torch_DIR:PATH=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1] : undefined;
  const multiarch = spawnSync(CXX, ['-print-multiarch'], { encoding: 'utf8' }).stdout?.trim();
  const candidates = [process.env.Torch_DIR, cached, multiarch && `/usr/lib/${multiarch}/cmake/Torch`, '/usr/lib/cmake/Torch'];
  const dir = candidates.find((d) => d && existsSync(join(d, 'TorchConfig.cmake')));
  if (!dir) return null;
  const config = readFileSync(join(dir, 'TorchConfig.cmake'), 'utf8');
  const prefix = process.env.TORCH_INSTALL_PREFIX || resolve(dir, '..', '..', '..', '..');
  const libDir = [join(prefix, 'lib'), resolve(dir, '..', '..')].find((d) => existsSync(join(d, 'libtorch.so')));
  if (!libDir) fail(`LibTorch's config is at ${dir} but libtorch.so is neither in ${join(prefix, 'lib')} nor in ${resolve(dir, '..', '..')}`);
  const cxxFlags = /set\(TORCH_CXX_FLAGS "([^"]*)"\)/.exec(config)?.[1] ?? '';
  return { dir, includes: [join(prefix, 'include'), join(prefix, 'include', 'torch', 'csrc', 'api', 'include')], libDir, cxxFlags: cxxFlags.split(/\s+/).filter(Boolean) };
}

/** CMakeLists.txt's target: its sources (native/torch/*.cc, as its GLOB) and compile definitions. */
function cmakeTarget() {
  const text = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
  const defs = /target_compile_definitions\(handgrad_torch PRIVATE ([^)]*)\)/.exec(text);
  if (!defs || !/native\/torch\/\*\.cc/.test(text)) fail('CMakeLists.txt no longer globs native/torch/*.cc with target_compile_definitions(handgrad_torch PRIVATE …): update scripts/sanitize.mjs');
  const dir = join(root, 'native', 'torch');
  return { sources: readdirSync(dir).filter((f) => f.endsWith('.cc')).sort().map((f) => join(dir, f)), defines: defs[1].trim().split(/\s+/) };
}

/** Runs the commands at most `jobs` at a time; the first that fails ends the job. */
async function runAll(commands, jobs) {
  const queue = [...commands];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      const code = await new Promise((r) => spawn(CXX, c.args, { stdio: 'inherit', cwd: root }).on('close', r).on('error', () => r(-1)));
      if (code !== 0) fail(`${CXX} exited with ${code} on ${c.what}`);
      c.done?.();
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
}

/** The torch addon, one object per source compiled in parallel (each LibTorch TU takes ~1 minute), then linked. False when LibTorch is missing. */
async function buildTorch() {
  const torch = libtorch();
  if (!torch) {
    log('torch addon skipped: LibTorch not found (no TorchConfig.cmake under $Torch_DIR, build-torch/CMakeCache.txt\'s Torch_DIR or /usr/lib; ' +
      'install it with `apt-get install -y libtorch-dev`)');
    return false;
  }
  const t = cmakeTarget();
  const addonApi = join(root, 'node_modules', 'node-addon-api');
  const common = [
    '-std=c++17', '-O1', '-g', '-fPIC', ...SANITIZE, ...torch.cxxFlags, ...t.defines.map((d) => `-D${d}`),
    // The compiler's own /usr/include is left out, as CMake leaves it out: as -isystem it would
    // come before libstdc++'s folders and break their #include_next.
    `-I${nodeInclude()}`, `-I${addonApi}`, ...torch.includes.filter((d) => !/^\/usr(?:\/local)?\/include$/.test(d)).flatMap((d) => ['-isystem', d]),
  ];
  const objects = t.sources.map((src) => join(outDir, 'torch', `${relative(join(root, 'native', 'torch'), src)}.o`));
  const link = ['-shared', ...SANITIZE, ...objects, `-L${torch.libDir}`, `-Wl,-rpath,${torch.libDir}`, '-ltorch', '-ltorch_cpu', '-lc10', '-o', torchAddon];
  // Each object has its own stamp (its source, every header of native/, the flags): a change to
  // one .cc recompiles that one (each takes about a minute), a change to a header all of them.
  const headers = ['native/torch', 'native/common', 'native/core'].flatMap((d) => filesUnder(join(root, d))).filter((f) => f.endsWith('.h')).map((f) => relative(root, f));
  const stale = t.sources.map((src, i) => ({ src, obj: objects[i], stamp: `${objects[i]}.stamp`, hash: buildHash([common, torch], [], [relative(root, src), ...headers]) }))
    .filter((o) => !upToDate(o.stamp, o.hash, [o.obj]));
  const stamp = join(outDir, 'torch', 'stamp');
  const linkHash = buildHash([link, ...objects.map((o) => (existsSync(`${o}.stamp`) ? readFileSync(`${o}.stamp`, 'utf8') : ''))], [], ['CMakeLists.txt']);
  if (!stale.length && upToDate(stamp, linkHash, [torchAddon])) {
    log(`${relative(root, torchAddon)} is up to date`);
    return true;
  }
  outFolder('torch');
  log(`building ${relative(root, torchAddon)} against LibTorch at ${torch.dir} (${CXX} ${SANITIZE[0]}, ${stale.length} of ${t.sources.length} sources, in parallel)`);
  const started = Date.now();
  await runAll(stale.map((o) => ({ what: relative(root, o.src), args: [...common, '-c', o.src, '-o', o.obj], done: () => writeFileSync(o.stamp, o.hash) })), Math.min(stale.length, availableParallelism()) || 1);
  await runAll([{ what: 'the link', args: link }], 1);
  // The objects' stamps as they are now (just written for the rebuilt ones).
  writeFileSync(stamp, buildHash([link, ...objects.map((o) => readFileSync(`${o}.stamp`, 'utf8'))], [], ['CMakeLists.txt']));
  log(`built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return true;
}

/** The ASan runtime that the addons link against, to be preloaded into Node. */
function asanRuntime() {
  const r = spawnSync(CXX, ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const path = r.stdout?.trim();
  if (!path || !existsSync(path)) fail(`the ASan runtime was not found (${CXX} -print-file-name=libasan.so gave "${path}"); it comes with g++ (Debian: libasan8)`);
  return path;
}

/**
 * A sanitizer's output split into reports (each leak, each ASan error, each UBSan runtime error)
 * with their stacks; `ours` tells one with a frame of the addon's. A leak that is Node's own 40-byte
 * record of an External still alive at exit (a stack handle the battery holds) is not: Node 20
 * frees the addon's data then (its finalizer runs) but not that record, which
 * napi_create_external allocated (frame #1, in node itself) and which nothing in Node-API can free.
 */
function reports(text, ours) {
  const blocks = (re) => text.split(re).slice(1).map((b) => b.split(/\n\s*\n/)[0]);
  const nodeExternal = (b) => /^Direct leak of \d+ byte\(s\) in \d+ object\(s\)[^\n]*\n[^\n]*#0 [^\n]*operator new[^\n]*\n[^\n]*#1 [^\n]* in napi_create_external /.test(b);
  const split = (list, isOurs = ours) => ({ addon: list.filter(isOurs), other: list.filter((b) => !isOurs(b)) });
  return {
    leaks: split(blocks(/\n(?=(?:Direct|Indirect) leak of )/), (b) => ours(b) && !nodeExternal(b)),
    errors: split([...blocks(/\n(?==+\n==\d+==ERROR: AddressSanitizer)/), ...blocks(/\n(?=[^\n]*runtime error:)/)]),
  };
}

/**
 * One battery in its own Node process under the ASan runtime. `ours` matches a report's frame in
 * the addon (its .node, its sources); `others` names whose the rest are. The problems found, none when clean.
 */
async function runBattery({ name, runner, node, ours, others, okLine }) {
  const env = {
    ...process.env,
    LD_PRELOAD: [asanRuntime(), process.env.LD_PRELOAD].filter(Boolean).join(':'),
    // exitcode 86: an ASan error or a UBSan error (UBSan halts through ASan's death path).
    ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=1:exitcode=86:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1',
    LSAN_OPTIONS: 'exitcode=87:max_leaks=20',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    HANDGRAD_ASAN_ADDON: node,
    HANDGRAD_HEAP_PROBE: heapProbe,
  };
  log(`${name}: running ${relative(root, runner)} on ${relative(root, node)} under AddressSanitizer (LD_PRELOAD=${env.LD_PRELOAD})`);
  const started = Date.now();
  const child = spawn(process.execPath, ['--expose-gc', runner, node], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
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
  const r = reports(all, ours);
  if (r.errors.addon.length) problems.push(`${r.errors.addon.length} AddressSanitizer/UndefinedBehaviorSanitizer report(s) with a frame in the addon`);
  if (r.errors.other.length) problems.push(`${r.errors.other.length} AddressSanitizer/UndefinedBehaviorSanitizer report(s) with no frame in the addon (${others}), which stopped the run`);
  if (/ERROR: AddressSanitizer/.test(all) && !r.errors.addon.length && !r.errors.other.length) problems.push('AddressSanitizer reported an error');
  if (/runtime error:/.test(all) && !r.errors.addon.length && !r.errors.other.length) problems.push('UndefinedBehaviorSanitizer reported undefined behaviour');
  if (r.leaks.addon.length) problems.push(`LeakSanitizer: ${r.leaks.addon.length} leak(s) with a frame in the addon`);
  if (r.leaks.other.length) log(`${name}: note: ${r.leaks.other.length} leak report(s) with no frame in the addon (${others}) were not counted`);
  if (!new RegExp(`^${okLine} `, 'm').test(out)) problems.push(`the battery did not finish (no ${okLine} line)`);
  const leakOnly = code === 87 && !r.leaks.addon.length;
  if (signal || (code !== 0 && !leakOnly)) problems.push(`the run ended with ${signal ? `signal ${signal}` : `exit code ${code}`}`);
  log(`${name}: ${problems.length ? 'FAILED' : 'passed'} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return problems.map((p) => `${name}: ${p}`);
}

const problems = [];
if (only !== 'torch') {
  build();
  problems.push(...await runBattery({
    name: 'core', runner: join(root, 'scripts', 'sanitize', 'run.cjs'), node: addon, okLine: 'SANITIZE-OK',
    ours: (b) => /handgrad\.node|native\/(?:addon|core|common)\/|scripts\/sanitize\//.test(b), others: "Node's own, at exit: an External's record",
  }));
}
if (only !== 'core') {
  // The heap probe comes with the core build; the torch battery measures with it too.
  if (only === 'torch') build();
  if (await buildTorch()) {
    problems.push(...await runBattery({
      name: 'torch', runner: join(root, 'scripts', 'sanitize', 'torch.cjs'), node: torchAddon, okLine: 'SANITIZE-TORCH-OK',
      ours: (b) => /handgrad_torch\.node|native\/(?:torch|core|common)\/|scripts\/sanitize\//.test(b), others: "Node's or LibTorch's own",
    }));
  }
}
if (problems.length) fail(problems.join('; '));
log('passed: no AddressSanitizer, UndefinedBehaviorSanitizer or LeakSanitizer report involving the addon');
