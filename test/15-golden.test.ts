// Golden outputs: the public API must give, bit for bit, the numbers it gave at commit f29bba6
// (before the engine restructuring). test/golden/record.mjs ran ~2,400 calls there — the two-layer
// forwardBackward/forward/probs/predict, Sequential's forwardBackward/forward/predict at depths 1–5
// (activations first and last too), Trainer.fitSync with sgd/momentum/adam, the seeded
// initialisers and Rng — on every backend, both dtypes, both reductions, with and without dX,
// out buffers (overwritten and accumulated into) and the cache, at toy sizes (the hand-written
// loops) and at sizes above 4096 multiply-adds (OpenBLAS). test/fixtures/golden/cases.json says
// how to rebuild each call's inputs; outputs.safetensors holds every output's raw bytes.
//
// Only what lib/index.ts exports is used, so the internals can change freely: these numbers may not.
// A backend whose toolchain is installed must run (setup builds it); one whose toolchain is missing
// is skipped, with the reason. Results on the BLAS path depend on the OpenBLAS thread count (pinned
// per case here) and on the CPU OpenBLAS and LibTorch pick their kernels for: a failure on another
// CPU than the recording's says so.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { coreBinding } from '../lib/binding';
import {
  forward, forwardBackward, getNumThreads, HandgradError, initParams, Linear, loadSafetensors, predict, probs, ReLU, Rng, Sequential,
  setNumThreads, setTorchThreads, Sigmoid, SoftmaxCrossEntropy, Tanh, torchAvailable, Trainer,
  type BackendName, type Dtype, type FitOptions, type FloatArray, type ForwardBackwardOptions, type ForwardOptions, type InitializedParams, type InitOptions,
  type Layer, type LinearOptions, type MlpOptions, type SequentialForwardBackwardOptions, type TensorData, type TrainerOptions,
} from '../lib';

const DIR = join(__dirname, 'fixtures', 'golden');

// ---- the manifest ----

interface ValuesSpec { n: number; seed: number; scale: number }
interface LabelsSpec { n: number; C: number; seed: number }
type LayerDesc = { kind: 'linear'; in: number; out: number; opts: LinearOptions } | { kind: 'relu' | 'sigmoid' | 'tanh' };
type ModelDesc =
  | { kind: 'initParams'; D: number; H: number; C: number; opts: InitOptions }
  | { kind: 'mlp'; widths: number[]; opts: MlpOptions; loss?: { reduction: 'mean' | 'sum' } }
  | { kind: 'layers'; layers: LayerDesc[]; loss?: { reduction: 'mean' | 'sum' } };
interface Case {
  name: string;
  group: string;
  backend: BackendName | null;
  threads: number;
  call: string;
  model?: string;
  X?: ValuesSpec;
  y?: LabelsSpec;
  opts?: Record<string, unknown>;
  trainer?: TrainerOptions;
  fit?: FitOptions;
  validation?: { X: ValuesSpec; y: LabelsSpec };
  // call 'rng'
  seed?: number;
  uniform?: number;
  normal?: number;
  int?: { n: number; count: number };
  shuffle?: number;
  outputs: Record<string, string>;
  notStored?: string[];
}
interface Manifest {
  recorded: { commit: string; cpu: string; cores: number };
  models: Record<string, ModelDesc>;
  cases: Case[];
}

const manifest = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as Manifest;
const recorded = loadSafetensors(join(DIR, 'outputs.safetensors')).tensors;

// ---- inputs: exactly as test/golden/record.mjs (and cases.json's "inputs") describe them ----

function uniforms(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function values(dtype: Dtype, n: number, seed: number, scale: number): FloatArray {
  const u = uniforms(seed);
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = ((((u() + u()) + u()) + u()) - 2) * Math.sqrt(3) * scale;
  return dtype === 'float64' ? a : Float32Array.from(a);
}

function labels(s: LabelsSpec): Int32Array {
  const u = uniforms(s.seed);
  const y = new Int32Array(s.n);
  for (let i = 0; i < s.n; i++) y[i] = Math.floor(u() * s.C);
  return y;
}

type Model = InitializedParams | Sequential;

function buildModel(m: ModelDesc): Model {
  if (m.kind === 'initParams') return initParams({ D: m.D, H: m.H, C: m.C }, m.opts);
  const loss = m.loss ? { loss: new SoftmaxCrossEntropy(m.loss) } : {};
  if (m.kind === 'mlp') return Sequential.mlp(m.widths, { ...m.opts, ...loss });
  const layers = m.layers.map((l): Layer =>
    l.kind === 'linear' ? new Linear(l.in, l.out, l.opts) : l.kind === 'relu' ? new ReLU() : l.kind === 'sigmoid' ? new Sigmoid() : new Tanh());
  return m.loss ? new Sequential(layers, loss) : new Sequential(layers);
}

function modelDtype(m: ModelDesc): Dtype {
  if (m.kind !== 'layers') return m.opts.dtype ?? 'float64';
  const first = m.layers.find((l): l is Extract<LayerDesc, { kind: 'linear' }> => l.kind === 'linear')!;
  return first.opts.dtype ?? 'float64';
}

const twoLayer = (m: Model) => {
  if (m instanceof Sequential) throw new Error('expected the two-layer params');
  return m;
};
const sequential = (m: Model) => {
  if (!(m instanceof Sequential)) throw new Error('expected a Sequential');
  return m;
};

/** The options of the call: as recorded, with out's {n, seed} specs made into prefilled buffers. */
function callOptions(c: Case, dtype: Dtype): Record<string, unknown> {
  const opts: Record<string, unknown> = { ...c.opts };
  if (opts.out !== undefined) {
    const specs = opts.out as Record<string, { n: number; seed: number }>;
    opts.out = Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, values(dtype, s.n, s.seed, 1)]));
  }
  return opts;
}

type Output = TensorData | number;

/** Runs one case through the public API; its outputs by the manifest's names. */
function run(c: Case): Record<string, Output> {
  const o: Record<string, Output> = {};
  if (c.call === 'rng') {
    const r = new Rng(c.seed!);
    o.uniform = Float64Array.from({ length: c.uniform! }, () => r.uniform());
    o.normal = Float64Array.from({ length: c.normal! }, () => r.normal());
    o.int = Int32Array.from({ length: c.int!.count }, () => r.int(c.int!.n));
    o.shuffle = r.shuffle(Int32Array.from({ length: c.shuffle! }, (_, i) => i));
    return o;
  }
  const desc = manifest.models[c.model!];
  const model = buildModel(desc);
  const dtype = modelDtype(desc);
  if (c.call === 'init') {
    const p = model instanceof Sequential ? model.params : { W1: model.W1, b1: model.b1, W2: model.W2, b2: model.b2 };
    for (const [k, t] of Object.entries(p)) o[`params.${k}`] = t;
    return o;
  }
  const X = values(dtype, c.X!.n, c.X!.seed, c.X!.scale);
  const opts = callOptions(c, dtype);
  switch (c.call) {
    case 'forwardBackward': {
      const r = forwardBackward(twoLayer(model), X, labels(c.y!), opts as ForwardBackwardOptions);
      o.loss = r.loss;
      for (const [k, t] of Object.entries(r.grads)) o[`grads.${k}`] = t;
      if (r.cache) for (const [k, t] of Object.entries(r.cache)) o[`cache.${k}`] = t;
      break;
    }
    case 'forward':
      o.logits = forward(twoLayer(model), X, opts as ForwardOptions);
      break;
    case 'probs':
      o.probs = probs(twoLayer(model), X, opts as ForwardOptions);
      break;
    case 'predict':
      o.classes = predict(twoLayer(model), X, opts as ForwardOptions);
      break;
    case 'seq.forwardBackward': {
      const r = sequential(model).forwardBackward(X, labels(c.y!), opts as SequentialForwardBackwardOptions);
      o.loss = r.loss;
      for (const [k, t] of Object.entries(r.grads)) o[`grads.${k}`] = t;
      if (r.logits) o.logits = r.logits.slice();
      if (r.cache) {
        r.cache.outputs.forEach((t, i) => (o[`cache.outputs.${i}`] = t));
        o['cache.probs'] = r.cache.probs;
      }
      break;
    }
    case 'seq.forward':
      o.logits = sequential(model).forward(X, opts as { backend?: BackendName });
      break;
    case 'seq.predict':
      o.classes = sequential(model).predict(X, opts as { backend?: BackendName });
      break;
    case 'trainer.fitSync': {
      const y = labels(c.y!);
      const t = model instanceof Sequential ? new Trainer(model, c.trainer) : new Trainer(model, c.trainer);
      const fit: FitOptions = { ...c.fit };
      if (c.validation) fit.validation = { X: values(dtype, c.validation.X.n, c.validation.X.seed, c.validation.X.scale), y: labels(c.validation.y) };
      const r = t.fitSync(X, y, fit);
      for (const [k, p] of Object.entries(t.params)) if (ArrayBuffer.isView(p)) o[`params.${k}`] = (p as FloatArray).slice();
      for (const field of ['loss', 'accuracy', 'lr', 'valLoss', 'valAccuracy'] as const) {
        if (r.history.every((e) => e[field] !== undefined)) o[`history.${field}`] = Float64Array.from(r.history, (e) => e[field]!);
      }
      const e = t.evaluate(X, y);
      o['evaluate.loss'] = e.loss;
      o['evaluate.accuracy'] = e.accuracy;
      break;
    }
    default:
      throw new Error(`unknown call ${c.call} in cases.json`);
  }
  return o;
}

// ---- bit-for-bit comparison ----

const bitsOf = (x: number, dtype: string): string => {
  const v = new DataView(new ArrayBuffer(8));
  if (dtype === 'F32') {
    v.setFloat32(0, x, true);
    return `0x${v.getUint32(0, true).toString(16).padStart(8, '0')}`;
  }
  v.setFloat64(0, x, true);
  return `0x${v.getBigUint64(0, true).toString(16).padStart(16, '0')}`;
};
const show = (x: number, dtype: string) => (dtype === 'I32' ? String(x) : `${x} (${bitsOf(x, dtype)})`);

const CLASS_OF: Record<string, string> = { F64: 'Float64Array', F32: 'Float32Array', I32: 'Int32Array' };

/** Where `got` first differs from the recorded tensor `name`, or null when every bit is equal. */
function difference(key: string, got: Output | undefined, name: string): string | null {
  const want = recorded[name];
  if (!want) return `the fixture has no tensor ${name}`;
  const w = want.data as Float64Array | Float32Array | Int32Array;
  // A number (the loss, evaluate's loss and accuracy) is held to Object.is against an F64 [1].
  if (key === 'loss' || key.startsWith('evaluate.')) {
    if (typeof got !== 'number') return `expected a number but received ${typeof got}`;
    return Object.is(got, w[0]) ? null : `got ${show(got, 'F64')}, recorded ${show(w[0], 'F64')}`;
  }
  if (got === undefined) return 'missing from the result';
  if (typeof got === 'number' || !ArrayBuffer.isView(got)) return `expected a ${CLASS_OF[want.dtype]} but received ${typeof got}`;
  if (got.constructor.name !== CLASS_OF[want.dtype]) return `expected a ${CLASS_OF[want.dtype]} but received a ${got.constructor.name}`;
  if (got.length !== w.length) return `expected ${w.length} elements but received ${got.length}`;
  const a = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  const b = new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  let same = true;
  for (let i = 0; i < a.length && same; i++) same = a[i] === b[i];
  if (same) return null;
  const g = got as Float64Array | Float32Array | Int32Array;
  for (let i = 0; i < w.length; i++) {
    if (!Object.is(g[i], w[i])) return `first difference at [${i}]: got ${show(g[i], want.dtype)}, recorded ${show(w[i], want.dtype)}`;
  }
  const i = a.findIndex((x, j) => x !== b[j]);
  return `byte ${i} differs (element ${Math.floor(i / (b.length / w.length))}: NaN payloads)`;
}

/** Every difference of one case: missing, extra or different outputs. */
function check(c: Case): string[] {
  let out: Record<string, Output>;
  setNumThreads(c.threads);
  try {
    out = run(c);
  } catch (e) {
    return [`threw ${(e as Error).name}: ${(e as Error).message}`];
  } finally {
    setNumThreads(1);
  }
  const problems: string[] = [];
  for (const [key, name] of Object.entries(c.outputs)) {
    const d = difference(key, out[key], name);
    if (d !== null) problems.push(`${key}: ${d}`);
  }
  const known = new Set([...Object.keys(c.outputs), ...(c.notStored ?? [])]);
  for (const key of Object.keys(out)) if (!known.has(key)) problems.push(`${key}: returned, but not at ${manifest.recorded.commit}`);
  return problems;
}

// ---- backends: run where built; skipped (with the reason) only where the toolchain is missing ----

const onPath = (names: string[]) => names.find((n) => !spawnSync(n, ['--version'], { stdio: 'ignore' }).error);
const versions = (base: string) => [base, ...[20, 19, 18, 17, 16, 15, 14].map((v) => `${base}-${v}`)];

function debsInstalled(names: string[]): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}\n', ...names], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.split('\n').filter((l) => l.includes('install ok installed')).length === names.length;
}

type Availability = { run: true } | { run: false; skip: true; why: string } | { run: false; skip: false; why: string };

/** Whether the backend runs; if not, skipped (its toolchain is missing) or failed (it should run and cannot). */
function availability(backend: BackendName): Availability {
  if (backend === 'native' || backend === 'ts') return { run: true };
  const p = initParams({ D: 2, H: 2, C: 2 });
  try {
    forward(p, new Float64Array(2), { backend });
    return { run: true };
  } catch (e) {
    if (!(e instanceof HandgradError)) throw e;
    const msg = e.message.split('. ')[0];
    if (backend === 'wasm') {
      const clang = process.env.CLANG || onPath(versions('clang'));
      const ld = process.env.WASM_LD || onPath(versions('wasm-ld'));
      if (clang && ld) return { run: false, skip: false, why: `the wasm backend is unavailable although ${clang} and ${ld} are installed (setup builds it): ${e.message}` };
      return { run: false, skip: true, why: `${msg} (${clang ? 'wasm-ld' : 'clang'} is not installed)` };
    }
    if (debsInstalled(['cmake', 'libtorch-dev'])) {
      return { run: false, skip: false, why: `the torch backend is unavailable although cmake and libtorch-dev are installed (setup builds it): ${e.message}` };
    }
    return { run: false, skip: true, why: `${msg} (cmake and libtorch-dev are not both installed)` };
  }
}

const cpu = cpus()[0]?.model ?? 'unknown';
const cpuNote = cpu === manifest.recorded.cpu
  ? ''
  : `\n(recorded on ${manifest.recorded.cpu}, ${manifest.recorded.cores} cores; this is ${cpu}, ${cpus().length} cores: OpenBLAS and LibTorch may pick other kernels)`;

const threadsBefore = getNumThreads();
if (torchAvailable()) setTorchThreads(1);
afterAll(() => setNumThreads(threadsBefore));

/** The cases of one backend, grouped by kind of call, size class and dtype. */
function groups(backend: BackendName | null): { label: string; cases: Case[] }[] {
  const by = new Map<string, Case[]>();
  for (const c of manifest.cases) {
    if (c.backend !== backend) continue;
    const label = c.model ? `${c.group} ${modelDtype(manifest.models[c.model])}` : c.group;
    if (!by.has(label)) by.set(label, []);
    by.get(label)!.push(c);
  }
  return [...by].map(([label, cases]) => ({ label, cases }));
}

function checkAll(cases: Case[]): void {
  const failures: string[] = [];
  for (const c of cases) {
    const problems = check(c);
    if (problems.length > 0) failures.push(`${c.name}\n    ${problems.slice(0, 3).join('\n    ')}${problems.length > 3 ? `\n    … ${problems.length - 3} more` : ''}`);
  }
  if (failures.length > 0) {
    const shown = failures.slice(0, 8).join('\n  ');
    const more = failures.length > 8 ? `\n  … and ${failures.length - 8} more cases` : '';
    throw new Error(`${failures.length} of ${cases.length} cases differ from ${manifest.recorded.commit}:\n  ${shown}${more}${cpuNote}`);
  }
}

describe('the golden fixture', () => {
  it('lists every case once and holds every tensor it names', () => {
    const names = new Set<string>();
    for (const c of manifest.cases) {
      if (names.has(c.name)) throw new Error(`two cases named ${c.name}`);
      names.add(c.name);
      for (const t of Object.values(c.outputs)) if (!(t in recorded)) throw new Error(`${c.name}: no tensor ${t}`);
    }
    if (manifest.cases.length < 2000) throw new Error(`only ${manifest.cases.length} cases`);
  });
});

describe.each(['native', 'wasm', 'ts', 'torch'] as const)('golden outputs on backend %s (bit for bit)', (backend) => {
  const status = availability(backend);
  const runnable = (ctx: { skip: (note?: string) => never }) => {
    if (status.run) return;
    if (status.skip) ctx.skip(status.why);
    throw new Error(status.why);
  };
  it(status.run ? 'is available' : status.skip ? `is skipped: ${status.why}` : 'is available (it must be: its toolchain is installed)', (ctx) => {
    runnable(ctx);
  });
  for (const g of groups(backend)) {
    it(`${g.label}: ${g.cases.length} cases`, (ctx) => {
      runnable(ctx);
      checkAll(g.cases);
    });
  }
});

// The native backend's loops over a layer's values (native/core/kernels.h: finite scans,
// activations and their backward; sparse.h's products) are built for AVX-512, AVX2 and a portable
// 16-byte set, and a CPU runs the widest it has: the recorded bits must come out of each set this
// CPU can run (setKernelSet narrows the choice), since another CPU runs another.
const WIDER = ['portable', 'avx2', 'avx512'] as const;
const KERNEL_SETS = WIDER.slice(0, WIDER.indexOf(coreBinding().getKernelSet()));
describe.each(KERNEL_SETS)('golden outputs on backend native under the %s kernel set (bit for bit)', (set) => {
  const status = availability('native');
  for (const g of groups('native')) {
    it(`${g.label}: ${g.cases.length} cases`, (ctx) => {
      if (!status.run) ctx.skip(status.why);
      const best = coreBinding().getKernelSet();
      coreBinding().setKernelSet(set);
      try {
        expect(coreBinding().getKernelSet()).toBe(set);
        checkAll(g.cases);
      } finally {
        coreBinding().setKernelSet(best);
      }
    });
  }
});

describe('golden outputs of the seeded initialisers and Rng (bit for bit)', () => {
  for (const g of groups(null)) {
    it(`${g.label}: ${g.cases.length} cases`, () => checkAll(g.cases));
  }
});
