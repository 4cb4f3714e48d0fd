#!/usr/bin/env node
// Records the golden outputs that test/15-golden.test.ts holds the library to, bit for bit.
//
// Recorded at commit f29bba6 (main before the restructuring into lib/engine), on this project's
// `node` machine (2 cores, OpenBLAS from Debian), with the public API only (what lib/index.ts
// exports, as the README documents it), so that the same calls can be replayed on any later
// version whose public signatures are unchanged.
//
// Output: test/fixtures/golden/outputs.safetensors (every output tensor, raw little-endian, the
// loss as an F64 [1] tensor; identical tensors are stored once) and test/fixtures/golden/cases.json
// (the manifest: for every case the call, its options, the model, how its inputs are generated,
// and the name of the stored tensor of each output).
//
// To re-record from a given commit (normally never: the point is that the numbers do not move):
//   git worktree add /tmp/golden f29bba6 && cd /tmp/golden && node scripts/setup.mjs
//   mkdir -p test/golden && cp <repo>/test/golden/record.mjs test/golden/
//   node test/golden/record.mjs --out <repo>/test/fixtures/golden   (about 2 s)
//   git worktree remove --force /tmp/golden
// Options: --dist PATH (the built index.js to record from; default <this repo>/dist/lib/index.js),
// --out DIR (default <this repo>/test/fixtures/golden). Plain Node, no dependencies.
//
// Inputs are generated without the library (so a change in lib/rng cannot hide in the inputs):
//   uniform stream (seed): s = seed >>> 0; each draw s = (Math.imul(s, 1664525) + 1013904223) >>> 0, u = s / 2^32
//   values(n, seed, scale)[i] = ((((u1 + u2) + u3) + u4) - 2) * Math.sqrt(3) * scale   (4 draws each, Irwin–Hall: mean 0, variance scale²)
//     computed in float64, then stored in the case's dtype (Float32Array.from rounds once)
//   labels(n, C, seed)[i] = Math.floor(u * C)   (one draw each)
// Parameters come from the library's own seeded initialisers (initParams, Sequential.mlp, Linear):
// they are part of what is recorded.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const distPath = resolve(arg('--dist', join(repo, 'dist', 'lib', 'index.js')));
const outDir = resolve(arg('--out', join(repo, 'test', 'fixtures', 'golden')));
const hg = await import(pathToFileURL(distPath).href);
const {
  forwardBackward, forward, probs, predict, initParams, Sequential, Linear, ReLU, Sigmoid, Tanh, SoftmaxCrossEntropy, Trainer, Rng,
  saveSafetensors, setNumThreads, getNumThreads, torchAvailable, setTorchThreads, getTorchThreads,
} = hg;
const defaultThreads = getNumThreads();
setNumThreads(1);

// ---- inputs (the test has the same three functions) ----

function uniforms(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}
function values(dtype, n, seed, scale) {
  const u = uniforms(seed);
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = ((((u() + u()) + u()) + u()) - 2) * Math.sqrt(3) * scale;
  return dtype === 'float64' ? a : Float32Array.from(a);
}
function labels(n, C, seed) {
  const u = uniforms(seed);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) y[i] = Math.floor(u() * C);
  return y;
}

// ---- models, from their manifest description ----

function buildModel(m) {
  if (m.kind === 'initParams') return initParams({ D: m.D, H: m.H, C: m.C }, m.opts);
  const loss = m.loss ? { loss: new SoftmaxCrossEntropy(m.loss) } : {};
  if (m.kind === 'mlp') return Sequential.mlp(m.widths, { ...m.opts, ...loss });
  if (m.kind === 'layers') {
    const layers = m.layers.map((l) =>
      l.kind === 'linear' ? new Linear(l.in, l.out, l.opts) : l.kind === 'relu' ? new ReLU() : l.kind === 'sigmoid' ? new Sigmoid() : new Tanh());
    return m.loss ? new Sequential(layers, loss) : new Sequential(layers);
  }
  throw new Error(`unknown model kind ${m.kind}`);
}
const modelDtype = (m) => (m.kind === 'layers' ? m.layers.find((l) => l.kind === 'linear').opts.dtype : m.opts.dtype);
const inWidth = (m) => (m.kind === 'initParams' ? m.D : m.kind === 'mlp' ? m.widths[0] : m.layers.find((l) => l.kind === 'linear').in);
const outWidth = (m) => (m.kind === 'initParams' ? m.C : m.kind === 'mlp' ? m.widths[m.widths.length - 1] : m.layers.filter((l) => l.kind === 'linear').at(-1).out);

/** Gradient names and lengths of a model, in the order of the manifest's out seeds. */
function gradSizes(model, B) {
  const sizes = { dX: B * (model.D ?? model.inFeatures) };
  const params = model instanceof Sequential ? model.params : { W1: model.W1, b1: model.b1, W2: model.W2, b2: model.b2 };
  for (const [k, t] of Object.entries(params)) sizes[`d${k}`] = t.length;
  return sizes;
}

// ---- the store: identical tensors (same dtype, length and bytes) are kept once ----

const tensors = {};
const byDigest = new Map();
let stored = 0;
let referenced = 0;
function dtypeName(a) {
  if (a instanceof Float64Array) return 'F64';
  if (a instanceof Float32Array) return 'F32';
  if (a instanceof Int32Array) return 'I32';
  throw new Error(`unexpected output ${a?.constructor?.name}`);
}
function store(a) {
  const dtype = dtypeName(a);
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const digest = createHash('sha256').update(`${dtype}:${a.length}:`).update(bytes).digest('hex');
  referenced++;
  const known = byDigest.get(digest);
  if (known) return known;
  const name = `t${stored++}`;
  tensors[name] = { dtype, shape: [a.length], data: a.slice() };
  byDigest.set(digest, name);
  return name;
}
const f64 = (x) => Float64Array.of(x);

// ---- cases ----

const cases = [];
const BACKENDS = ['native', 'wasm', 'ts', 'torch'];
const DTYPES = ['float64', 'float32'];
const ACTS = ['relu', 'sigmoid', 'tanh'];
const REDS = ['mean', 'sum'];
const short = { float64: 'f64', float32: 'f32' };
const OUT_SEED = 900;
const torchOk = torchAvailable();
if (!torchOk) throw new Error('record with every backend built: the torch addon did not load');
setTorchThreads(1);

/** Out buffers for the gradients in `names`, prefilled with values(dtype, n, OUT_SEED + i, 1), i the index in gradSizes order. */
function outSpec(model, B, names) {
  const sizes = gradSizes(model, B);
  const spec = {};
  Object.keys(sizes).forEach((k, i) => {
    if (names.includes(k)) spec[k] = { n: sizes[k], seed: OUT_SEED + i };
  });
  return spec;
}
function outBuffers(dtype, spec) {
  const out = {};
  for (const [k, s] of Object.entries(spec)) out[k] = values(dtype, s.n, s.seed, 1);
  return out;
}

/**
 * The option variants of a gradient call: out 'none' | 'over' (prefilled, overwritten) | 'acc'
 * (prefilled, accumulated into); outDX whether out holds dX (then inputGrad is implied when not given).
 */
function fullGrid(backend, seq) {
  const v = [];
  for (const reduction of REDS) for (const inputGrad of [false, true]) for (const out of ['none', 'over', 'acc']) for (const cache of [false, true]) {
    if (cache && backend === 'torch' && seq) continue; // the torch Sequential returns gradients only
    v.push({ reduction, inputGrad, out, outDX: inputGrad, cache });
  }
  return v;
}
function reducedGrid(backend, seq) {
  const v = [
    { out: 'none' }, // the defaults
    { reduction: 'sum', out: 'none' },
    { reduction: 'mean', inputGrad: true, out: 'none' },
    { reduction: 'sum', inputGrad: true, out: 'none', cache: true },
    { reduction: 'mean', inputGrad: true, out: 'over', outDX: true },
    { reduction: 'mean', inputGrad: true, out: 'acc', outDX: true },
    { reduction: 'sum', out: 'acc', outDX: false, cache: true },
    { reduction: 'mean', out: 'acc', outDX: true }, // out.dX without inputGrad: dX is computed
    { reduction: 'mean', out: 'none', cache: true },
  ];
  return v.filter((o) => !(o.cache && backend === 'torch' && seq));
}

function variantName(o) {
  const parts = [o.reduction ?? 'default-red', o.inputGrad === true ? 'dX' : o.inputGrad === false ? 'noDX' : 'dX?'];
  parts.push(o.out === 'none' ? 'fresh' : `${o.out}${o.outDX ? '+dX' : ''}`);
  if (o.cache !== undefined) parts.push(o.cache ? 'cache' : 'nocache');
  return parts.join(' ');
}

/** The options object of a gradient call, as the manifest stores it (out as a spec). */
function gradOpts(backend, model, B, o, activation) {
  const opts = { backend };
  if (activation !== undefined) opts.activation = activation;
  if (o.reduction !== undefined) opts.reduction = o.reduction;
  if (o.inputGrad !== undefined) opts.inputGrad = o.inputGrad;
  if (o.cache !== undefined) opts.cache = o.cache;
  if (o.out !== 'none') {
    const names = Object.keys(gradSizes(model, B)).filter((k) => k !== 'dX' || o.outDX);
    opts.out = outSpec(model, B, names);
    opts.accumulate = o.out === 'acc';
  }
  return opts;
}

function withThreads(threads, fn) {
  setNumThreads(threads);
  try {
    return fn();
  } finally {
    setNumThreads(1);
  }
}

/** Runs one case (the same steps as the test) and returns its outputs by name. */
function run(c) {
  return withThreads(c.threads, () => {
    if (c.call === 'rng') {
      const r = new Rng(c.seed);
      const o = {};
      o.uniform = Float64Array.from({ length: c.uniform }, () => r.uniform());
      o.normal = Float64Array.from({ length: c.normal }, () => r.normal());
      o.int = Int32Array.from({ length: c.int.count }, () => r.int(c.int.n));
      o.shuffle = r.shuffle(Int32Array.from({ length: c.shuffle }, (_, i) => i));
      return o;
    }
    const model = buildModel(c.model);
    const dtype = modelDtype(c.model);
    if (c.call === 'init') {
      const p = model instanceof Sequential ? model.params : { W1: model.W1, b1: model.b1, W2: model.W2, b2: model.b2 };
      return Object.fromEntries(Object.entries(p).map(([k, t]) => [`params.${k}`, t]));
    }
    const X = values(dtype, c.X.n, c.X.seed, c.X.scale);
    const opts = { ...c.opts };
    if (opts.out) opts.out = outBuffers(dtype, opts.out);
    const o = {};
    switch (c.call) {
      case 'forwardBackward': {
        const y = labels(c.y.n, c.y.C, c.y.seed);
        const r = forwardBackward(model, X, y, opts);
        o.loss = f64(r.loss);
        for (const [k, t] of Object.entries(r.grads)) o[`grads.${k}`] = t;
        if (r.cache) for (const [k, t] of Object.entries(r.cache)) o[`cache.${k}`] = t;
        break;
      }
      case 'forward':
        o.logits = forward(model, X, opts);
        break;
      case 'probs':
        o.probs = probs(model, X, opts);
        break;
      case 'predict':
        o.classes = predict(model, X, opts);
        break;
      case 'seq.forwardBackward': {
        const y = labels(c.y.n, c.y.C, c.y.seed);
        const r = model.forwardBackward(X, y, opts);
        o.loss = f64(r.loss);
        for (const [k, t] of Object.entries(r.grads)) o[`grads.${k}`] = t;
        if (r.logits) o.logits = r.logits.slice();
        if (r.cache) {
          r.cache.outputs.forEach((t, i) => (o[`cache.outputs.${i}`] = t));
          o['cache.probs'] = r.cache.probs;
        }
        break;
      }
      case 'seq.forward':
        o.logits = model.forward(X, opts);
        break;
      case 'seq.predict':
        o.classes = model.predict(X, opts);
        break;
      case 'trainer.fitSync': {
        const y = labels(c.y.n, c.y.C, c.y.seed);
        const t = new Trainer(model, c.trainer);
        const fit = { ...c.fit };
        if (c.validation) {
          fit.validation = { X: values(dtype, c.validation.X.n, c.validation.X.seed, c.validation.X.scale), y: labels(c.validation.y.n, c.validation.y.C, c.validation.y.seed) };
        }
        const r = t.fitSync(X, y, fit);
        for (const [k, p] of Object.entries(t.params)) if (ArrayBuffer.isView(p)) o[`params.${k}`] = p.slice();
        for (const field of ['loss', 'accuracy', 'lr', 'valLoss', 'valAccuracy']) {
          if (r.history.every((e) => e[field] !== undefined)) o[`history.${field}`] = Float64Array.from(r.history, (e) => e[field]);
        }
        const e = t.evaluate(X, y);
        o['evaluate.loss'] = f64(e.loss);
        o['evaluate.accuracy'] = f64(e.accuracy);
        break;
      }
      default:
        throw new Error(`unknown call ${c.call}`);
    }
    return o;
  });
}

const names = new Set();
function add(c, omit = []) {
  if (names.has(c.name)) throw new Error(`two cases named ${c.name}`);
  names.add(c.name);
  const outputs = run(c);
  c.outputs = {};
  for (const [k, t] of Object.entries(outputs)) if (!omit.includes(k)) c.outputs[k] = store(t);
  if (omit.length > 0) c.notStored = omit.filter((k) => k in outputs);
  // Running it again must give the same bits (else the case cannot be golden).
  const again = run(c);
  for (const [k, name] of Object.entries(c.outputs)) {
    const a = again[k];
    const b = tensors[name].data;
    const same = a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
    if (!same) throw new Error(`${c.name}: ${k} differs between two runs`);
  }
  if (c.model) c.model = modelId(c.model);
  cases.push(c);
}

/** Models are listed once in the manifest and named by id in each case. */
const models = {};
const modelIds = new Map();
function modelId(m) {
  const key = JSON.stringify(m);
  let id = modelIds.get(key);
  if (id === undefined) {
    id = `m${modelIds.size}`;
    modelIds.set(key, id);
    models[id] = m;
  }
  return id;
}

const twoLayer = (D, H, C, dtype, seed) => ({ kind: 'initParams', D, H, C, opts: { seed, dtype, init: 'torch' } });
const dimsName = (B, D, H, C) => `${B}x${D}x${H}x${C}`;

// 1. The two-layer API: forwardBackward over the whole option grid at (4,5,10,3), a reduced grid
//    at (3,1,1,2), and the BLAS sizes for a subset; forward, probs, predict.
for (const backend of BACKENDS) for (const dtype of DTYPES) for (const activation of ACTS) {
  for (const [B, D, H, C, grid] of [[4, 5, 10, 3, fullGrid], [3, 1, 1, 2, reducedGrid]]) {
    const model = twoLayer(D, H, C, dtype, 1000 + B);
    const params = buildModel(model);
    for (const o of grid(backend, false)) {
      add({
        name: `forwardBackward ${backend} ${short[dtype]} ${activation} ${variantName(o)} ${dimsName(B, D, H, C)}`,
        group: 'forwardBackward', backend, threads: 1, call: 'forwardBackward', model,
        X: { n: B * D, seed: 10 + B, scale: 1 }, y: { n: B, C, seed: 20 + B },
        opts: gradOpts(backend, params, B, o, activation),
      });
    }
  }
  const [B, D, H, C] = [4, 5, 10, 3];
  for (const call of ['forward', 'probs', 'predict']) {
    add({
      name: `${call} ${backend} ${short[dtype]} ${activation} ${dimsName(B, D, H, C)}`,
      group: 'forward', backend, threads: 1, call, model: twoLayer(D, H, C, dtype, 1000 + B),
      X: { n: B * D, seed: 30 + B, scale: 1 }, opts: { backend, activation },
    });
  }
}

// The BLAS path: every product above 4096 multiply-adds goes to OpenBLAS on native (wasm's blocked
// GEMM and ts's loops are the same code at every size: the smaller shapes cover them, and
// (260,3,5,2) below crosses the wasm GEMM's blocks). (64,128,256,10) with one activation per dtype,
// on 1 and on 2 OpenBLAS threads (sgemm rounds differently on 2; dgemm does not, here, and its
// tensors are stored once); Z1 and A1 [64,256] are returned but not stored (size).
const BIG = [64, 128, 256, 10];
const bigActs = { float64: 'relu', float32: 'tanh' };
for (const dtype of DTYPES) for (const threads of [1, 2]) {
  const [B, D, H, C] = BIG;
  const activation = bigActs[dtype];
  add({
    name: `forwardBackward native ${short[dtype]} ${activation} mean dX fresh cache ${dimsName(B, D, H, C)}${threads > 1 ? ` threads=${threads}` : ''}`,
    group: 'forwardBackward-blas', backend: 'native', threads, call: 'forwardBackward', model: twoLayer(D, H, C, dtype, 64),
    X: { n: B * D, seed: 64, scale: 1 }, y: { n: B, C, seed: 65 },
    opts: { backend: 'native', activation, reduction: 'mean', inputGrad: true, cache: true },
  }, ['cache.Z1', 'cache.A1']);
}
for (const backend of BACKENDS) for (const dtype of DTYPES) for (const threads of backend === 'native' ? [1, 2] : [1]) {
  const [B, D, H, C] = BIG;
  const activation = bigActs[dtype];
  for (const call of ['forward', 'probs', 'predict']) {
    add({
      name: `${call} ${backend} ${short[dtype]} ${activation} ${dimsName(B, D, H, C)}${threads > 1 ? ` threads=${threads}` : ''}`,
      group: 'forward-blas', backend, threads, call, model: twoLayer(D, H, C, dtype, 64), X: { n: B * D, seed: 64, scale: 1 }, opts: { backend, activation },
    });
  }
}
// A middle size with the accumulate axis on the BLAS path: X·W1, dW1 and dX go to BLAS (16·12·24 =
// 4,608 multiply-adds), the second layer's products (16·24·5 = 1,920) to the hand loop.
for (const backend of BACKENDS) for (const dtype of DTYPES) {
  const [B, D, H, C] = [16, 12, 24, 5];
  const model = twoLayer(D, H, C, dtype, 16);
  const params = buildModel(model);
  for (const o of [{ reduction: 'mean', inputGrad: true, out: 'none', cache: true }, { reduction: 'sum', inputGrad: true, out: 'acc', outDX: true }, { reduction: 'mean', inputGrad: false, out: 'over' }]) {
    add({
      name: `forwardBackward ${backend} ${short[dtype]} sigmoid ${variantName(o)} ${dimsName(B, D, H, C)}`,
      group: 'forwardBackward-blas', backend, threads: 1, call: 'forwardBackward', model,
      X: { n: B * D, seed: 16, scale: 1 }, y: { n: B, C, seed: 17 },
      opts: gradOpts(backend, params, B, o, 'sigmoid'),
    });
  }
}

// A long batch: K = B = 260 in dW1 = Xᵀ·dZ1 and M = 260 in X·W1 cross the wasm GEMM's blocks
// (kKC = 256, kMC = 128); every product stays under 4096 multiply-adds (native's hand loop).
for (const backend of BACKENDS) for (const dtype of DTYPES) {
  const [B, D, H, C] = [260, 3, 5, 2];
  const model = twoLayer(D, H, C, dtype, 260);
  const params = buildModel(model);
  for (const o of [{ reduction: 'mean', inputGrad: true, out: 'none' }, { reduction: 'sum', inputGrad: true, out: 'acc', outDX: true }]) {
    add({
      name: `forwardBackward ${backend} ${short[dtype]} relu ${variantName(o)} ${dimsName(B, D, H, C)}`,
      group: 'forwardBackward', backend, threads: 1, call: 'forwardBackward', model,
      X: { n: B * D, seed: 26, scale: 1 }, y: { n: B, C, seed: 27 },
      opts: gradOpts(backend, params, B, o, 'relu'),
    });
  }
}

// 2. The any-depth API.
const lin = (i, o, dtype, seed, init) => ({ kind: 'linear', in: i, out: o, opts: init ? { dtype, seed, init } : { dtype, seed } });
function seqModels(dtype) {
  const m = [];
  for (const activation of ACTS) {
    m.push({ label: `mlp[5,10,3] ${activation}`, B: 4, model: { kind: 'mlp', widths: [5, 10, 3], opts: { activation, dtype, seed: 1004, init: 'torch' } } });
    m.push({ label: `mlp[5,8,6,3] ${activation}`, B: 4, model: { kind: 'mlp', widths: [5, 8, 6, 3], opts: { activation, dtype, seed: 13 } } });
    m.push({ label: `mlp[5,9,7,6,4,3] ${activation}`, B: 5, model: { kind: 'mlp', widths: [5, 9, 7, 6, 4, 3], opts: { activation, dtype, seed: 14, init: 'xavier' } } });
  }
  m.push({ label: 'depth1 [Linear 5→3]', B: 4, model: { kind: 'layers', layers: [lin(5, 3, dtype, 11, 'torch')] } });
  m.push({
    label: 'act-first [Tanh, Linear 5→7, ReLU, Linear 7→3]', B: 4,
    model: { kind: 'layers', layers: [{ kind: 'tanh' }, lin(5, 7, dtype, 15, 'torch'), { kind: 'relu' }, lin(7, 3, dtype, 16, 'torch')] },
  });
  m.push({
    label: 'act-first-and-last [Sigmoid, Linear 5→6, Tanh, Linear 6→4, ReLU, Linear 4→3, Sigmoid]', B: 6,
    model: {
      kind: 'layers',
      layers: [{ kind: 'sigmoid' }, lin(5, 6, dtype, 17, 'torch'), { kind: 'tanh' }, lin(6, 4, dtype, 18, 'torch'), { kind: 'relu' }, lin(4, 3, dtype, 19, 'torch'), { kind: 'sigmoid' }],
    },
  });
  m.push({ label: 'loss-sum mlp[5,10,3] sigmoid', B: 4, model: { kind: 'mlp', widths: [5, 10, 3], opts: { activation: 'sigmoid', dtype, seed: 20 }, loss: { reduction: 'sum' } } });
  m.push({ label: 'mlp[1,1,2] tanh', B: 3, model: { kind: 'mlp', widths: [1, 1, 2], opts: { activation: 'tanh', dtype, seed: 1003, init: 'torch' } } });
  m.push({ label: 'mlp[1,1,1,2] relu', B: 3, model: { kind: 'mlp', widths: [1, 1, 1, 2], opts: { activation: 'relu', dtype, seed: 21, init: 'torch' } } });
  return m;
}
for (const backend of BACKENDS) for (const dtype of DTYPES) {
  for (const { label, B, model } of seqModels(dtype)) {
    const seq = buildModel(model);
    const D = inWidth(model);
    const C = outWidth(model);
    // Full option grid for the depth-3 ReLU net, the reduced one for the others.
    const grid = label === 'mlp[5,8,6,3] relu' ? fullGrid(backend, true) : reducedGrid(backend, true);
    for (const o of grid) {
      add({
        name: `seq.forwardBackward ${backend} ${short[dtype]} ${label} ${variantName(o)} B=${B}`,
        group: 'seq.forwardBackward', backend, threads: 1, call: 'seq.forwardBackward', model,
        X: { n: B * D, seed: 40 + B, scale: 1 }, y: { n: B, C, seed: 50 + B },
        opts: gradOpts(backend, seq, B, o),
      });
    }
    for (const call of ['seq.forward', 'seq.predict']) {
      add({
        name: `${call} ${backend} ${short[dtype]} ${label} B=${B}`, group: 'seq.forward', backend, threads: 1, call, model,
        X: { n: B * D, seed: 60 + B, scale: 1 }, opts: { backend },
      });
    }
  }
  // BLAS sizes: the two-layer (64,128,256,10) as a Sequential on native (the very numbers of
  // forwardBackward, stored once), and a depth-3 net whose first two layers take the BLAS path.
  if (backend === 'native') {
    const [B, D, H, C] = BIG;
    const model = { kind: 'mlp', widths: [D, H, C], opts: { activation: bigActs[dtype], dtype, seed: 64, init: 'torch' } };
    add({
      name: `seq.forwardBackward ${backend} ${short[dtype]} mlp[128,256,10] ${bigActs[dtype]} mean dX fresh B=64`,
      group: 'seq.forwardBackward-blas', backend, threads: 1, call: 'seq.forwardBackward', model,
      X: { n: B * D, seed: 64, scale: 1 }, y: { n: B, C, seed: 65 }, opts: { backend, reduction: 'mean', inputGrad: true },
    });
  }
  {
    const B = 16;
    // 16·12·24 and 16·24·20 multiply-adds: BLAS; 16·20·5: the hand loop.
    const model = { kind: 'mlp', widths: [12, 24, 20, 5], opts: { activation: 'tanh', dtype, seed: 22, init: 'torch' } };
    const seq = buildModel(model);
    for (const o of [{ reduction: 'mean', inputGrad: true, out: 'none', cache: true }, { reduction: 'sum', inputGrad: true, out: 'acc', outDX: true }]) {
      if (o.cache && backend === 'torch') o.cache = undefined;
      add({
        name: `seq.forwardBackward ${backend} ${short[dtype]} mlp[12,24,20,5] tanh ${variantName(o)} B=${B}`,
        group: 'seq.forwardBackward-blas', backend, threads: 1, call: 'seq.forwardBackward', model,
        X: { n: B * 12, seed: 70, scale: 1 }, y: { n: B, C: 5, seed: 71 }, opts: gradOpts(backend, seq, B, o),
      });
    }
    add({
      name: `seq.forward ${backend} ${short[dtype]} mlp[12,24,20,5] tanh B=${B}`, group: 'seq.forward-blas', backend, threads: 1,
      call: 'seq.forward', model, X: { n: B * 12, seed: 72, scale: 1 }, opts: { backend },
    });
  }
}

// 3. The Trainer: two epochs of fitSync (batches 4, 4, 2: a last partial batch) with validation data.
const LR = { sgd: 0.1, momentum: 0.05, adam: 0.01 };
for (const backend of BACKENDS) for (const dtype of DTYPES) for (const optimizer of ['sgd', 'momentum', 'adam']) {
  const N = 10;
  const data = { X: { n: N * 5, seed: 80, scale: 1 }, y: { n: N, C: 3, seed: 81 } };
  const validation = { X: { n: 6 * 5, seed: 82, scale: 1 }, y: { n: 6, C: 3, seed: 83 } };
  add({
    name: `trainer ${backend} ${short[dtype]} ${optimizer} two-layer(5,8,3) sigmoid N=${N}`, group: 'trainer', backend, threads: 1,
    call: 'trainer.fitSync', model: twoLayer(5, 8, 3, dtype, 84), ...data, validation,
    trainer: { optimizer, lr: LR[optimizer], batchSize: 4, seed: 5, backend, activation: 'sigmoid' }, fit: { epochs: 2 },
  });
  add({
    name: `trainer ${backend} ${short[dtype]} ${optimizer} mlp[5,8,6,3] tanh N=${N}`, group: 'trainer', backend, threads: 1,
    call: 'trainer.fitSync', model: { kind: 'mlp', widths: [5, 8, 6, 3], opts: { activation: 'tanh', dtype, seed: 85, init: 'torch' } }, ...data, validation,
    trainer: { optimizer, lr: LR[optimizer], batchSize: 4, seed: 6, backend }, fit: { epochs: 2 },
  });
}
// The BLAS path in training: batches of 16 and a last one of 8, 8·32·64 = 16,384 multiply-adds.
for (const backend of ['native', 'wasm']) for (const dtype of DTYPES) {
  add({
    name: `trainer ${backend} ${short[dtype]} adam two-layer(32,64,4) relu N=40`, group: 'trainer-blas', backend, threads: 1,
    call: 'trainer.fitSync', model: twoLayer(32, 64, 4, dtype, 86), X: { n: 40 * 32, seed: 87, scale: 1 }, y: { n: 40, C: 4, seed: 88 },
    trainer: { optimizer: 'adam', lr: 0.01, batchSize: 16, seed: 7, backend, activation: 'relu' }, fit: { epochs: 2 },
  });
}

// 4. Backend-free: the seeded initialisers and Rng, whose numbers every case above starts from.
for (const dtype of DTYPES) {
  for (const init of ['he', 'small', 'xavier', 'torch']) {
    add({ name: `initParams ${short[dtype]} ${init} (5,10,3)`, group: 'init', backend: null, threads: 1, call: 'init', model: { kind: 'initParams', D: 5, H: 10, C: 3, opts: { seed: 7, dtype, init } } });
  }
  add({ name: `initParams ${short[dtype]} default init (5,10,3)`, group: 'init', backend: null, threads: 1, call: 'init', model: { kind: 'initParams', D: 5, H: 10, C: 3, opts: { seed: 8, dtype } } });
  add({ name: `Sequential.mlp ${short[dtype]} [5,9,7,3] default init`, group: 'init', backend: null, threads: 1, call: 'init', model: { kind: 'mlp', widths: [5, 9, 7, 3], opts: { dtype, seed: 9 } } });
  add({
    name: `Sequential of Linear(seed) ${short[dtype]}`, group: 'init', backend: null, threads: 1, call: 'init',
    model: { kind: 'layers', layers: [lin(5, 4, dtype, 10), { kind: 'relu' }, lin(4, 3, dtype, 10, 'xavier')] },
  });
}
add({ name: 'Rng seed 12345', group: 'rng', backend: null, threads: 1, call: 'rng', seed: 12345, uniform: 8, normal: 9, int: { n: 7, count: 8 }, shuffle: 10 });

// ---- write ----

const bytes = Object.values(tensors).reduce((s, t) => s + t.data.byteLength, 0);
mkdirSync(outDir, { recursive: true });
const commit = spawnSync('git', ['-C', dirname(distPath), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
const manifest = {
  about: 'Golden outputs of the public API, recorded by test/golden/record.mjs and checked bit for bit by test/15-golden.test.ts.',
  recorded: {
    commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length,
    defaultBlasThreads: defaultThreads, torchThreads: getTorchThreads(),
  },
  threads:
    'Each case runs with setNumThreads(case.threads) (OpenBLAS; sgemm rounds differently on 1 and 2 threads) and setTorchThreads(1). ' +
    'BLAS-path results (products above 4096 multiply-adds on native, any size on torch) also depend on the CPU OpenBLAS/LibTorch picks kernels for.',
  inputs: {
    uniform: 's = seed >>> 0; per draw: s = (Math.imul(s, 1664525) + 1013904223) >>> 0; u = s / 2**32',
    values: 'X, out buffers: v[i] = ((((u() + u()) + u()) + u()) - 2) * Math.sqrt(3) * scale in float64, then rounded to the dtype (Float32Array.from); {n, seed, scale}',
    labels: 'y: Math.floor(u() * C), one draw per label; {n, C, seed}',
    model: "case.model names an entry of models. initParams: initParams({ D, H, C }, opts); mlp: Sequential.mlp(widths, { ...opts, loss: new SoftmaxCrossEntropy(loss) if loss }); layers: new Sequential([new Linear(in, out, opts) | new ReLU() | new Sigmoid() | new Tanh()], loss ? { loss: new SoftmaxCrossEntropy(loss) } : undefined)",
    opts: 'passed as written, except opts.out: { name: {n, seed} } becomes { name: values(dtype, n, seed, 1) } (dtype: the model\'s)',
    trainer: 'new Trainer(model, case.trainer).fitSync(X, y, { ...case.fit, validation: { X, y } from case.validation when given })',
  },
  outputs:
    'loss: F64 [1]; grads.NAME, cache.NAME, cache.outputs.I, cache.probs, logits (a copy of the view), probs, classes (I32): the call\'s results; ' +
    'trainer: params.NAME after fitSync, history.FIELD [epochs] (F64), evaluate.loss/accuracy (F64 [1]) of trainer.evaluate(X, y) after the fit; ' +
    'init: params.NAME; rng: uniform, normal, int, shuffle (an Int32Array 0..n-1 shuffled). Each names a tensor of outputs.safetensors (identical tensors are stored once). ' +
    'notStored: outputs the call returns that were left out for size (still returned, not compared).',
  counts: { cases: cases.length, outputs: referenced, tensors: stored, dataBytes: bytes },
  models,
  cases,
};
// One line per case, so a diff of the manifest reads case by case.
const json = JSON.stringify({ ...manifest, cases: [] }, null, 2).replace('"cases": []', `"cases": [\n${cases.map((c) => `    ${JSON.stringify(c)}`).join(',\n')}\n  ]`);
writeFileSync(join(outDir, 'cases.json'), `${json}\n`);
saveSafetensors(join(outDir, 'outputs.safetensors'), tensors, { format: 'handgrad-golden', commit });
console.log(`${cases.length} cases, ${referenced} outputs, ${stored} tensors stored (${bytes} bytes of data) → ${outDir}`);
