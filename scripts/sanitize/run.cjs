// The battery that scripts/sanitize.mjs runs under AddressSanitizer against build/asan/handgrad.node
// (the path comes as argv[2]). Plain CommonJS that loads that one .node and nothing of dist/, so
// every native instruction it reaches is instrumented:
//   1. the golden fixtures (test/fixtures: PyTorch autograd) through the raw forwardBackward and
//      forward, and gemm against plain loops, at sizes on both sides of the small-GEMM cutoff;
//   2. bad input at every argument of every export: each wrong type, length, dim, dtype, detached
//      and offset buffer, aliasing between every output and every other buffer, NaN/±Infinity at
//      every index, labels out of range, short and long argument lists — each must be a
//      TypeError/RangeError (or a normal return where the call is in fact valid), write nothing
//      when refused, and leave the next valid call exact to the bit;
//   3. the addon in worker threads (loaded, used and terminated mid-call);
//   4. 2 × 10 000 calls of each export, valid and refused (LeakSanitizer then reports at exit
//      whatever was lost), with the heap measured by ASan itself before and after each round.
// Prints SANITIZE-OK and a summary on success; exits 1 with the failures otherwise.
'use strict';
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Worker } = require('node:worker_threads');

const ROOT = join(__dirname, '..', '..');
const ADDON = process.argv[2] || process.env.HANDGRAD_ASAN_ADDON;
const b = require(ADDON);
const failures = [];
let checks = 0;
const check = (ok, what) => {
  checks++;
  if (!ok && failures.length < 50) failures.push(what);
};
const section = (name) => process.stdout.write(`[battery] ${name}\n`);

const EPS = { float64: 2 ** -52, float32: 2 ** -23 };
const F = { float64: Float64Array, float32: Float32Array };
const ACT = { relu: 0, sigmoid: 1, tanh: 2 };
const RED = { mean: 0, sum: 1 };

/** max|got − want| / max|want| in units of eps (normwise, as test/fixtures/README.md asks). */
function errEps(got, want, dtype) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (Number.isNaN(diff) || got.length !== want.length) return Infinity;
  return scale === 0 ? (diff === 0 ? 0 : Infinity) : diff / scale / EPS[dtype];
}

/** A problem's buffers, laid out as the raw export wants them (args in lib/binding.ts order). */
function problem(dtype, dims, data, act = 'relu', red = 'mean', withDX = true) {
  const A = F[dtype];
  const { B, D, H, C } = dims;
  const p = {
    dtype, dims, act, red,
    X: A.from(data.X), y: Int32Array.from(data.y), W1: A.from(data.W1), b1: A.from(data.b1), W2: A.from(data.W2), b2: A.from(data.b2),
    ws: new A(3 * B * H + 3 * B * C),
    dX: withDX ? new A(B * D) : null, dW1: new A(D * H), db1: new A(H), dW2: new A(H * C), db2: new A(C),
  };
  p.args = () => [p.X, p.y, p.W1, p.b1, p.W2, p.b2, p.ws, p.dX, p.dW1, p.db1, p.dW2, p.db2, B, D, H, C, ACT[act], RED[red], false];
  p.forwardArgs = () => [p.X, p.W1, p.b1, p.W2, p.b2, p.ws, B, D, H, C, ACT[act]];
  return p;
}

/** A deterministic pseudo-random array (the LCG of test/helpers.ts). */
function rand(n, seed, scale = 1) {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

function randomProblem(dtype, dims, seed, act, red, withDX) {
  const { B, D, H, C } = dims;
  return problem(dtype, dims, {
    X: rand(B * D, seed), y: Array.from(rand(B, seed + 1), (v) => Math.min(C - 1, Math.floor(((v + 1) / 2) * C))),
    W1: rand(D * H, seed + 2, 1 / Math.sqrt(D)), b1: rand(H, seed + 3, 0.1), W2: rand(H * C, seed + 4, 1 / Math.sqrt(H)), b2: rand(C, seed + 5, 0.1),
  }, act, red, withDX);
}

const bytesOf = (a) => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') : '');
const outputs = (p) => [p.dX, p.dW1, p.db1, p.dW2, p.db2].map(bytesOf).join('|');

// ---------------------------------------------------------------------------------------------
section('1. fixtures and gemm');

function readSafetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = { metadata: header.__metadata__ || {}, tensors: {} };
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    const Ctor = { F64: Float64Array, F32: Float32Array, I32: Int32Array }[t.dtype];
    const copy = new Uint8Array(bytes); // aligned
    out.tensors[name] = { shape: t.shape, data: new Ctor(copy.buffer, 0, copy.length / Ctor.BYTES_PER_ELEMENT) };
  }
  return out;
}

const FIX = join(ROOT, 'test', 'fixtures');
const cases = readdirSync(FIX).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(FIX, f), 'utf8')));
for (const f of readdirSync(FIX).filter((f) => f.endsWith('.case.safetensors'))) {
  const c = readSafetensors(join(FIX, f));
  const e = readSafetensors(join(FIX, f.replace('.case.', '.expected.'))).tensors;
  const t = c.tensors;
  const [B, D] = t.X.shape;
  const [, H] = t.W1.shape;
  const [, C] = t.W2.shape;
  const arr = (x) => Array.from(x.data);
  cases.push({
    name: f, dtype: t.X.data instanceof Float32Array ? 'float32' : 'float64', activation: c.metadata.activation, reduction: c.metadata.reduction,
    dims: { B, D, H, C },
    inputs: { X: arr(t.X), y: arr(t.y), W1: arr(t.W1), b1: arr(t.b1), W2: arr(t.W2), b2: arr(t.b2) },
    expected: { loss: arr(e.loss), dX: arr(e.dX), dW1: arr(e.dW1), db1: arr(e.db1), dW2: arr(e.dW2), db2: arr(e.db2) },
  });
}
for (const c of cases) {
  const p = problem(c.dtype, c.dims, c.inputs, c.activation, c.reduction);
  const loss = b.forwardBackward(...p.args());
  check(errEps([loss], c.expected.loss, c.dtype) <= 8, `${c.name}: loss ${loss} vs ${c.expected.loss[0]}`);
  for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2']) check(errEps(p[k], c.expected[k], c.dtype) <= 8, `${c.name}: ${k}`);
  // forward writes the same logits into its workspace as forwardBackward did.
  const { B, H, C } = c.dims;
  const logits = p.ws.slice(3 * B * H, 3 * B * H + B * C);
  p.ws.fill(0);
  b.forward(...p.forwardArgs());
  check(bytesOf(p.ws.subarray(3 * B * H, 3 * B * H + B * C)) === bytesOf(logits), `${c.name}: forward's logits`);
  // With dX not asked for, and accumulating twice into the same buffers.
  const q = problem(c.dtype, c.dims, c.inputs, c.activation, c.reduction, false);
  const a = q.args();
  a[18] = true;
  b.forwardBackward(...a);
  b.forwardBackward(...a);
  check(errEps(Array.from(q.dW1, (v) => v / 2), c.expected.dW1, c.dtype) <= 8, `${c.name}: accumulate twice`);
}

/** C = alpha·op(A)·op(B) + beta·C by plain loops, in float64. */
function naiveGemm(tA, tB, M, N, K, alpha, A, B, beta, C) {
  const out = Float64Array.from(C);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
      out[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
    }
  }
  return out;
}
let seed = 100;
for (const dtype of ['float64', 'float32']) {
  for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [16, 16, 16], [17, 33, 9], [70, 65, 80], [1, 300, 20], [129, 1, 40]]) {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const A = F[dtype].from(rand(M * K, seed++));
        const Bm = F[dtype].from(rand(K * N, seed++));
        const C0 = F[dtype].from(rand(M * N, seed++));
        for (const [alpha, beta] of [[1, 0], [0.5, 1], [-2, 0.25]]) {
          const C = C0.slice();
          b.gemm(tA, tB, M, N, K, alpha, A, Bm, beta, C);
          const want = naiveGemm(tA, tB, M, N, K, alpha, A, Bm, beta, C0);
          check(errEps(C, want, dtype) <= 4 * K, `gemm ${dtype} ${M}x${N}x${K} tA=${tA} tB=${tB} alpha=${alpha} beta=${beta}: ${errEps(C, want, dtype)} eps`);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
section('2. bad input at every argument of every export');

const toy = cases.find((c) => c.name.startsWith('seed-toy'));
const DIMS = toy.dims;
let refused = 0;
let accepted = 0;

/** fn must throw a TypeError/RangeError, or return; anything else is a failure. */
function refusedOrReturns(fn, what) {
  try {
    fn();
    accepted++;
    return false;
  } catch (e) {
    check(e instanceof TypeError || e instanceof RangeError, `${what}: threw ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    refused++;
    return true;
  }
}

/** The valid toy call, and what it writes: every refused call must leave the next one exact. */
const base = problem('float64', DIMS, toy.inputs);
const baseLoss = b.forwardBackward(...base.args());
const baseOut = outputs(base);
function stillExact(what) {
  const p = problem('float64', DIMS, toy.inputs);
  const loss = b.forwardBackward(...p.args());
  check(Object.is(loss, baseLoss) && outputs(p) === baseOut, `${what}: the next valid call is not exact`);
}

const detached = (A, n) => {
  const a = new A(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
};
// Values that are not what any argument wants, or only nearly.
function badValues(valid) {
  const vals = [undefined, null, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 31 - 1, 2 ** 53, -(2 ** 31), 'x', '4', {}, [], [1, 2], true, false, 1n, Symbol('s'), () => 0,
    new ArrayBuffer(64), new DataView(new ArrayBuffer(64)), new SharedArrayBuffer(64)];
  if (ArrayBuffer.isView(valid)) {
    const A = valid.constructor;
    const n = valid.length;
    vals.push(new A(Math.max(0, n - 1)), new A(n + 1), new A(0), detached(A, n), new A(new ArrayBuffer(A.BYTES_PER_ELEMENT * (n + 3)), A.BYTES_PER_ELEMENT, n),
      new A(new SharedArrayBuffer(A.BYTES_PER_ELEMENT * n)));
    for (const K of [Float64Array, Float32Array, Int32Array, Uint32Array, Int16Array, Uint8Array, Uint8ClampedArray, BigInt64Array, BigUint64Array]) {
      if (K !== A) vals.push(new K(n), new K(Math.ceil((n * A.BYTES_PER_ELEMENT) / K.BYTES_PER_ELEMENT)));
    }
  }
  return vals;
}

const describeValue = (v) => (typeof v === 'symbol' ? 'Symbol' : typeof v === 'bigint' ? `${v}n` : ArrayBuffer.isView(v) ? `${v.constructor.name}(${v.length})` : typeof v === 'function' ? 'function' : JSON.stringify(v) ?? String(v));

for (const dtype of ['float64', 'float32']) {
  const fresh = () => problem(dtype, DIMS, toy.inputs);
  // forwardBackward: every position, every bad value; what it wrote must be nothing when refused.
  const names = ['X', 'y', 'W1', 'b1', 'W2', 'b2', 'ws', 'dX', 'dW1', 'db1', 'dW2', 'db2', 'B', 'D', 'H', 'C', 'activation', 'reduction', 'accumulate'];
  for (let i = 0; i < names.length; i++) {
    for (const v of badValues(fresh().args()[i])) {
      const p = fresh();
      const a = p.args();
      a[i] = v;
      for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(7);
      const before = outputs(p);
      if (refusedOrReturns(() => b.forwardBackward(...a), `${dtype} forwardBackward ${names[i]} = ${describeValue(v)}`)) {
        check(outputs(p) === before, `${dtype} forwardBackward ${names[i]} = ${describeValue(v)}: wrote into the outputs and threw`);
      }
    }
  }
  // forward: the same.
  const fnames = ['X', 'W1', 'b1', 'W2', 'b2', 'ws', 'B', 'D', 'H', 'C', 'activation'];
  for (let i = 0; i < fnames.length; i++) {
    for (const v of badValues(fresh().forwardArgs()[i])) {
      const a = fresh().forwardArgs();
      a[i] = v;
      refusedOrReturns(() => b.forward(...a), `${dtype} forward ${fnames[i]} = ${describeValue(v)}`);
    }
  }
  // Argument lists cut short, or with extra arguments.
  for (let n = 0; n <= 19; n++) refusedOrReturns(() => b.forwardBackward(...fresh().args().slice(0, n)), `${dtype} forwardBackward with ${n} arguments`);
  for (let n = 0; n <= 11; n++) refusedOrReturns(() => b.forward(...fresh().forwardArgs().slice(0, n)), `${dtype} forward with ${n} arguments`);
  refusedOrReturns(() => b.forwardBackward(...fresh().args(), 1, 2, 3), `${dtype} forwardBackward with extra arguments`);

  // Aliasing: every output (and the workspace) as a view onto every other buffer, whole or shifted
  // by one element; each one that overlaps must be refused before anything is written.
  const outIdx = [6, 7, 8, 9, 10, 11];
  for (const o of outIdx) {
    for (let j = 0; j < 12; j++) {
      if (j === o) continue;
      for (const shift of [0, 1]) {
        const p = fresh();
        const a = p.args();
        const target = a[j];
        const need = a[o].length;
        const Ctor = a[o].constructor;
        const elem = Ctor.BYTES_PER_ELEMENT;
        if (target.byteLength < elem) continue;
        // A view of the right length starting inside the target (a larger buffer when needed).
        const big = new ArrayBuffer(target.byteLength + (need + 2) * elem);
        new Uint8Array(big).set(new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
        const moved = new target.constructor(big, 0, target.length);
        a[j] = moved;
        a[o] = new Ctor(big, shift * elem, need);
        const overlaps = shift * elem < moved.byteLength;
        const thrown = refusedOrReturns(() => b.forwardBackward(...a), `${dtype} ${names[o]} aliasing ${names[j]} (shift ${shift})`);
        check(thrown === overlaps, `${dtype} ${names[o]} aliasing ${names[j]} (shift ${shift}): ${thrown ? 'refused' : 'accepted'}`);
      }
    }
  }

  // NaN and ±Infinity at every index of every input: refused, nothing written.
  for (const [i, name] of [[0, 'X'], [2, 'W1'], [3, 'b1'], [4, 'W2'], [5, 'b2']]) {
    const len = fresh().args()[i].length;
    for (let k = 0; k < len; k++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const p = fresh();
        const a = p.args();
        a[i][k] = bad;
        for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(7);
        const before = outputs(p);
        let msg = '';
        try {
          b.forwardBackward(...a);
        } catch (e) {
          msg = e instanceof RangeError ? e.message : `${e.constructor.name}: ${e.message}`;
        }
        check(msg === `Expected finite values in ${name} but received ${bad > 0 ? 'Infinity' : bad < 0 ? '-Infinity' : 'NaN'} at index ${k}`, `${dtype} ${bad} at ${name}[${k}]: ${msg || 'accepted'}`);
        check(outputs(p) === before, `${dtype} ${bad} at ${name}[${k}]: wrote into the outputs`);
        const f = fresh().forwardArgs();
        f[[0, 1, 2, 3, 4][[0, 2, 3, 4, 5].indexOf(i)]][k] = bad;
        check(refusedOrReturns(() => b.forward(...f), `${dtype} forward ${bad} at ${name}[${k}]`), `${dtype} forward ${bad} at ${name}[${k}]: accepted`);
      }
    }
  }
  // Finite inputs whose forward pass, loss or gradients overflow: a RangeError that says so.
  {
    const big = dtype === 'float64' ? 1e300 : 1e38;
    const one = (B, D, H, C) => problem(dtype, { B, D, H, C }, { X: new Array(B * D).fill(1), y: new Array(B).fill(C - 1), W1: new Array(D * H).fill(1), b1: new Array(H).fill(0), W2: new Array(H * C).fill(1), b2: new Array(C).fill(0) });
    const z1 = one(2, 3, 2, 2);
    z1.X.fill(big);
    z1.W1.fill(big);
    const logits = one(2, 3, 2, 2);
    logits.W2.fill(big);
    logits.b1.fill(big);
    const loss = one(1, 1, 1, 2); // logits ±(the largest power of ten): finite, their difference is not
    loss.W2.set(dtype === 'float64' ? [1e308, -1e308] : [3e38, -3e38]);
    const grads = one(1, 1, 1, 2);
    grads.X.fill(big);
    grads.W1.fill(1 / big);
    grads.W2.set([big / 10, -big / 10]);
    for (const [name, p] of [['Z1', z1], ['logits', logits], ['loss', loss], ['gradients', grads]]) {
      let msg = '';
      try {
        b.forwardBackward(...p.args());
      } catch (e) {
        msg = e instanceof RangeError ? e.message : `${e.constructor.name}: ${e.message}`;
      }
      check(/^Expected .*overflow/.test(msg), `${dtype} ${name} overflowing: ${msg || 'accepted'}`);
    }
  }
  // Labels out of range, at each position.
  for (let k = 0; k < DIMS.B; k++) {
    for (const bad of [-1, DIMS.C, 2 ** 31 - 1, -(2 ** 31)]) {
      const p = fresh();
      p.y[k] = bad;
      check(refusedOrReturns(() => b.forwardBackward(...p.args()), `${dtype} y[${k}] = ${bad}`), `${dtype} y[${k}] = ${bad}: accepted`);
    }
  }
  // Dims that disagree with the buffers, or whose products overflow.
  for (const [i, v] of [[12, 5], [13, 4], [14, 11], [15, 2], [12, 2 ** 31 - 1], [13, 2 ** 31 - 1], [14, 2 ** 30], [15, 2 ** 31 - 1]]) {
    const a = fresh().args();
    a[i] = v;
    check(refusedOrReturns(() => b.forwardBackward(...a), `${dtype} ${names[i]} = ${v}`), `${dtype} ${names[i]} = ${v}: accepted`);
  }
  {
    const a = fresh().args();
    a[12] = 2 ** 31 - 1;
    a[13] = 2 ** 31 - 1;
    a[14] = 2 ** 31 - 1;
    a[15] = 2 ** 31 - 1;
    check(refusedOrReturns(() => b.forwardBackward(...a), `${dtype} every dim 2^31 − 1`), `${dtype} every dim 2^31 − 1: accepted`);
  }
}

// gemm: every position, every bad value; dims that overflow; output aliasing an input.
{
  const ok = () => [false, true, 3, 4, 5, 1, new Float64Array(15), new Float64Array(20), 0, new Float64Array(12)];
  const gnames = ['transA', 'transB', 'M', 'N', 'K', 'alpha', 'A', 'B', 'beta', 'C'];
  for (let i = 0; i < gnames.length; i++) {
    for (const v of badValues(ok()[i])) {
      const a = ok();
      a[i] = v;
      refusedOrReturns(() => b.gemm(...a), `gemm ${gnames[i]} = ${describeValue(v)}`);
    }
  }
  for (let n = 0; n <= 10; n++) refusedOrReturns(() => b.gemm(...ok().slice(0, n)), `gemm with ${n} arguments`);
  for (const [M, N, K] of [[2 ** 31 - 1, 2 ** 31 - 1, 1], [1, 2 ** 31 - 1, 2 ** 31 - 1], [2 ** 20, 2 ** 20, 2 ** 20], [4, 4, 0]]) {
    check(refusedOrReturns(() => b.gemm(false, false, M, N, K, 1, new Float64Array(16), new Float64Array(16), 0, new Float64Array(16)), `gemm ${M}x${N}x${K}`), `gemm ${M}x${N}x${K}: accepted`);
  }
  const m = new Float64Array(64);
  for (const [A, B, C, should] of [[m.subarray(0, 16), m.subarray(16, 32), m.subarray(32, 48), false], [m.subarray(0, 16), m.subarray(0, 16), m.subarray(32, 48), false], [m.subarray(0, 16), m.subarray(16, 32), m.subarray(8, 24), true], [m.subarray(0, 16), m.subarray(16, 32), m.subarray(31, 47), true]]) {
    check(refusedOrReturns(() => b.gemm(false, false, 4, 4, 4, 1, A, B, 0, C), 'gemm aliasing') === should, `gemm aliasing (C at ${C.byteOffset / 8}, A at ${A.byteOffset / 8}, B at ${B.byteOffset / 8}): expected ${should ? 'refused' : 'accepted'}`);
  }
}
// Threads: bad counts refused; huge counts are OpenBLAS's to clamp; the count restored after.
{
  const before = b.getNumThreads();
  for (const v of [0, -1, 1.5, NaN, Infinity, 2 ** 31, '2', undefined, null, {}, 1n]) {
    check(refusedOrReturns(() => b.setNumThreads(v), `setNumThreads(${describeValue(v)})`), `setNumThreads(${describeValue(v)}): accepted`);
  }
  for (const v of [1, 2, 64, 1000, 2 ** 31 - 1]) {
    refusedOrReturns(() => b.setNumThreads(v), `setNumThreads(${v})`);
    check(b.getNumThreads() >= 1, `getNumThreads after setNumThreads(${v})`);
  }
  refusedOrReturns(() => b.getNumThreads('extra', 1), 'getNumThreads with arguments');
  b.setNumThreads(before);
}
// The kernel primitives (native/addon/kernels_glue.cc), both dtypes: every position × every bad
// value (refused calls write nothing), argument lists cut short or too long, dims that disagree
// with the buffers or whose products overflow, labels out of range at every position, every output
// laid over every other buffer (overlapping refused, disjoint accepted), and valid calls at several
// sizes against plain loops.
const KERNELS = {
  broadcastRows: { names: ['bias', 'out', 'rows', 'cols'], outputs: [1], dims: [2, 3], ok: (A) => [A.from([1, -2, 3]), new A(6), 2, 3] },
  sumRows: { names: ['dZ', 'db', 'rows', 'cols', 'accumulate'], outputs: [1], dims: [2, 3], ok: (A) => [A.from([1, 2, 3, 4, 5, 6]), new A(3), 2, 3, true] },
  activationForward: { names: ['activation', 'Z', 'A'], outputs: [2], variants: [0, 1, 2], ok: (A, act) => [act, A.from([-1, 0, 0.5, 2, -3, 1]), new A(6)] },
  activationBackward: { names: ['activation', 'Z', 'A', 'dA'], outputs: [3], variants: [0, 1, 2], ok: (A, act) => [act, A.from([-1, 0, 0.5, 2, -3, 1]), A.from([0, 0, 0.5, 0.9, 0.1, 0.7]), A.from([1, 2, 3, 4, 5, 6])] },
  softmaxCrossEntropy: { names: ['logits', 'y', 'probs', 'B', 'C'], outputs: [2], dims: [3, 4], labels: 1, ok: (A) => [A.from(rand(12, 40, 3)), Int32Array.from([0, 2, 1, 2]), new A(12), 4, 3] },
  softmaxCrossEntropyBackward: { names: ['probs', 'y', 'dZ', 'B', 'C', 'reduction'], outputs: [2], dims: [3, 4], labels: 1, variants: [0, 1], ok: (A, red) => [A.from(rand(12, 41)), Int32Array.from([0, 2, 1, 2]), new A(12), 4, 3, red] },
  allFinite: { names: ['x'], outputs: [], ok: (A) => [A.from([1, -2, 0, 3.5])] },
};
const viewsOf = (a) => a.filter((v) => ArrayBuffer.isView(v)).map(bytesOf).join('|');
for (const dtype of ['float64', 'float32']) {
  const A = F[dtype];
  for (const [kname, k] of Object.entries(KERNELS)) {
    for (const variant of k.variants || [0]) {
      const ok = () => {
        const a = k.ok(A, variant);
        for (const o of k.outputs) a[o].fill(7);
        return a;
      };
      const what = (s) => `${dtype} ${kname}${k.variants ? `(${variant})` : ''} ${s}`;
      check(!refusedOrReturns(() => b[kname](...ok()), what('valid call')), what('valid call: refused'));
      for (let i = 0; i < k.names.length; i++) {
        for (const v of badValues(ok()[i])) {
          const a = ok();
          const kept = a.slice();
          const before = viewsOf(kept);
          a[i] = v;
          if (refusedOrReturns(() => b[kname](...a), what(`${k.names[i]} = ${describeValue(v)}`))) {
            check(viewsOf(kept) === before, what(`${k.names[i]} = ${describeValue(v)}: wrote and threw`));
          }
        }
      }
      for (let n = 0; n < k.names.length; n++) {
        check(refusedOrReturns(() => b[kname](...ok().slice(0, n)), what(`with ${n} arguments`)), what(`with ${n} arguments: accepted`));
      }
      refusedOrReturns(() => b[kname](...ok(), 1, 'x', new Float64Array(3)), what('with extra arguments'));

      // Dims that disagree with the buffers (same product, or not), or whose product overflows.
      if (k.dims) {
        const [r, c] = k.dims;
        for (const [rv, cv] of [[3, 2], [1, 6], [6, 1], [2, 4], [4, 2], [5, 3], [4, 4], [12, 1], [1, 12], [2 ** 31 - 1, 2 ** 31 - 1], [2 ** 30, 2 ** 30], [2 ** 31 - 1, 3], [2, 2 ** 31 - 1], [2 ** 26, 2 ** 27]]) {
          const a = ok();
          if (rv === a[r] && cv === a[c]) continue;
          const kept = a.slice();
          const before = viewsOf(kept);
          a[r] = rv;
          a[c] = cv;
          check(refusedOrReturns(() => b[kname](...a), what(`${k.names[r]} = ${rv}, ${k.names[c]} = ${cv}`)), what(`${k.names[r]} = ${rv}, ${k.names[c]} = ${cv}: accepted`));
          check(viewsOf(kept) === before, what(`${k.names[r]} = ${rv}, ${k.names[c]} = ${cv}: wrote and threw`));
        }
      }
      // Labels out of range at every position: refused before anything is written.
      if (k.labels !== undefined) {
        const C = ok()[k.dims[1]];
        for (let pos = 0; pos < ok()[k.labels].length; pos++) {
          for (const bad of [-1, C, C + 1, 2 ** 31 - 1, -(2 ** 31)]) {
            const a = ok();
            const kept = a.slice();
            const before = viewsOf(kept);
            a[k.labels] = a[k.labels].slice();
            a[k.labels][pos] = bad;
            check(refusedOrReturns(() => b[kname](...a), what(`y[${pos}] = ${bad}`)), what(`y[${pos}] = ${bad}: accepted`));
            check(viewsOf(kept) === before, what(`y[${pos}] = ${bad}: wrote and threw`));
          }
        }
      }
      // Every output as a view onto every other buffer, whole or shifted by one element.
      for (const o of k.outputs) {
        for (let j = 0; j < k.names.length; j++) {
          if (j === o || !ArrayBuffer.isView(ok()[j])) continue;
          for (const shift of [0, 1, 2]) {
            const a = ok();
            const target = a[j];
            const need = a[o].length;
            const Ctor = a[o].constructor;
            const elem = Ctor.BYTES_PER_ELEMENT;
            const big = new ArrayBuffer(target.byteLength + (need + 3) * elem);
            new Uint8Array(big).set(new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
            const moved = new target.constructor(big, 0, target.length);
            a[j] = moved;
            a[o] = new Ctor(big, shift * elem, need);
            const overlaps = shift * elem < moved.byteLength;
            const thrown = refusedOrReturns(() => b[kname](...a), what(`${k.names[o]} over ${k.names[j]} (shift ${shift})`));
            check(thrown === overlaps, what(`${k.names[o]} over ${k.names[j]} (shift ${shift}): ${thrown ? 'refused' : 'accepted'}`));
          }
        }
      }
    }
  }
  // Inputs may share memory with each other: Z and A of activationBackward as one buffer.
  {
    const z = A.from([-1, 2, 0.5]);
    check(!refusedOrReturns(() => b.activationBackward(0, z, z, new A(3)), `${dtype} activationBackward Z = A`), `${dtype} activationBackward Z = A: refused`);
  }
  // allFinite: NaN/±Infinity at every index found; the extremes of the finite range are finite.
  for (const n of [1, 2, 7, 16, 33]) {
    for (let i = 0; i < n; i++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const x = A.from(rand(n, i + 1));
        x[i] = bad;
        check(b.allFinite(x) === false, `${dtype} allFinite: ${bad} at ${i} of ${n} not found`);
      }
    }
    const max = dtype === 'float64' ? Number.MAX_VALUE : 3.4028234663852886e38;
    check(b.allFinite(A.from(rand(n, 3), (v, i) => [max, -max, 0, -0, 5e-324, v][i % 6])) === true, `${dtype} allFinite: extremes of ${n} called non-finite`);
  }
  // Valid calls at several sizes against plain loops (in T: Math.fround for float32).
  const R = dtype === 'float32' ? Math.fround : (v) => v;
  for (const [rows, cols] of [[1, 1], [3, 7], [17, 5], [64, 33]]) {
    const n = rows * cols;
    const bias = A.from(rand(cols, rows + cols));
    const out = new A(n).fill(7);
    b.broadcastRows(bias, out, rows, cols);
    check(out.every((v, i) => v === bias[i % cols]), `${dtype} broadcastRows ${rows}x${cols}`);
    const dZ = A.from(rand(n, n));
    for (const accumulate of [false, true]) {
      const db = A.from(rand(cols, 5));
      const want = Array.from(db, (v) => (accumulate ? v : 0));
      for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) want[j] = R(want[j] + dZ[r * cols + j]);
      b.sumRows(dZ, db, rows, cols, accumulate);
      check(db.every((v, j) => v === want[j]), `${dtype} sumRows ${rows}x${cols} accumulate=${accumulate}`);
    }
    const Z = A.from(rand(n, n + 1, 4));
    Z[0] = 0;
    for (const act of [0, 1, 2]) {
      const Aout = new A(n).fill(7);
      b.activationForward(act, Z, Aout);
      const f = [(z) => (z > 0 ? z : 0), (z) => 1 / (1 + Math.exp(-z)), Math.tanh][act];
      check(errEps(Aout, Array.from(Z, f), dtype) <= 4, `${dtype} activationForward(${act}) ${rows}x${cols}: ${errEps(Aout, Array.from(Z, f), dtype)} eps`);
      const dA = A.from(rand(n, n + 2));
      const wantD = Array.from(dA, (d, i) => [Z[i] > 0 ? d : 0, R(d * R(R(1 - Aout[i]) * Aout[i])), R(d * R(1 - R(Aout[i] * Aout[i])))][act]);
      b.activationBackward(act, Z, Aout, dA);
      check(dA.every((v, i) => v === wantD[i]), `${dtype} activationBackward(${act}) ${rows}x${cols}`);
    }
    const B = rows;
    const C = cols;
    const logits = A.from(rand(n, n + 3, 5));
    const y = Int32Array.from({ length: B }, (_, i) => (i * 7) % C);
    const probs = new A(n).fill(7);
    const loss = b.softmaxCrossEntropy(logits, y, probs, B, C);
    let wantLoss = 0;
    const wantP = [];
    for (let r = 0; r < B; r++) {
      const z = Array.from(logits.subarray(r * C, (r + 1) * C));
      const m = Math.max(...z);
      const s = z.reduce((t, v) => t + Math.exp(v - m), 0);
      wantLoss += m - z[y[r]] + Math.log(s);
      for (const v of z) wantP.push(Math.exp(v - m) / s);
    }
    check(errEps(probs, wantP, dtype) <= 4 * C && Math.abs(loss - wantLoss) <= 8 * C * B * EPS[dtype] * Math.max(1, wantLoss), `${dtype} softmaxCrossEntropy ${B}x${C}: loss ${loss} vs ${wantLoss}`);
    for (const red of [0, 1]) {
      const dZ2 = new A(n).fill(7);
      b.softmaxCrossEntropyBackward(probs, y, dZ2, B, C, red);
      const scale = red === 0 ? R(1 / B) : 1;
      const want = Array.from(probs, (p, i) => R(R(p * scale) - (i % C === y[Math.floor(i / C)] ? scale : 0)));
      check(dZ2.every((v, i) => v === want[i]), `${dtype} softmaxCrossEntropyBackward(${red}) ${B}x${C}`);
    }
  }
}
stillExact('after the battery');

// ---------------------------------------------------------------------------------------------
section('3. worker threads');

const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const b = require(workerData.addon);
  const { args, loop } = workerData;
  const run = () => b.forwardBackward(...args);
  const ref = run();
  const out = () => args.slice(7, 12).map((a) => a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') : '').join('|');
  const refOut = out();
  let bad = 0;
  if (loop) { parentPort.postMessage({ looping: true }); for (;;) run(); }
  for (let i = 0; i < 200; i++) { if (!Object.is(run(), ref) || out() !== refOut) bad++; }
  try { b.forwardBackward(); } catch (e) { if (!(e instanceof TypeError)) bad++; }
  parentPort.postMessage({ bad, loss: ref, out: refOut });
`;

async function workers() {
  const probs = [randomProblem('float64', { B: 32, D: 40, H: 48, C: 7 }, 5, 'relu', 'mean', true), randomProblem('float32', { B: 32, D: 40, H: 48, C: 7 }, 6, 'tanh', 'sum', false), base];
  const refs = probs.map((p) => {
    const loss = b.forwardBackward(...p.args());
    return { loss, out: outputs(p) };
  });
  const ws = probs.map((p) => new Worker(WORKER, { eval: true, workerData: { addon: ADDON, args: p.args(), loop: false } }));
  const results = await Promise.all(ws.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  results.forEach((r, i) => check(r.bad === 0 && Object.is(r.loss, refs[i].loss) && r.out === refs[i].out, `worker ${i}: ${r.bad} inexact calls`));
  await Promise.all(ws.map((w) => w.terminate()));
  // Terminated while it loops on calls at a size that keeps it in native code most of the time.
  for (let round = 0; round < 3; round++) {
    const big = randomProblem('float64', { B: 128, D: 256, H: 256, C: 10 }, 7 + round, 'relu', 'mean', true);
    const w = new Worker(WORKER, { eval: true, workerData: { addon: ADDON, args: big.args(), loop: true } });
    await new Promise((r) => w.once('message', r));
    await new Promise((r) => setTimeout(r, round * 5));
    check((await w.terminate()) === 1, 'terminated worker: exit code');
    stillExact(`after terminating worker ${round}`);
  }
}

// ---------------------------------------------------------------------------------------------
async function leakLoops() {
  section('4. 2 × 10 000 calls of each export, valid and refused');
  const N = 10_000;
  const small = problem('float64', DIMS, toy.inputs);
  const small32 = problem('float32', DIMS, toy.inputs, 'sigmoid', 'sum', false);
  const mid = randomProblem('float64', { B: 16, D: 24, H: 20, C: 5 }, 9, 'tanh', 'mean', true); // OpenBLAS path
  const A = new Float64Array(20 * 20).fill(0.5);
  const G = new Float64Array(20 * 20).fill(0.25);
  const Cg = new Float64Array(20 * 20);
  const Am = new Float64Array(20 * 20);
  const Av = new Float64Array(20 * 20);
  const A32 = new Float32Array(20 * 20).fill(0.5);
  const G32 = new Float32Array(20 * 20).fill(0.25);
  const Am32 = new Float32Array(20 * 20);
  const nan = problem('float64', DIMS, toy.inputs);
  nan.b2[2] = NaN;
  const bias = new Float64Array(20).fill(0.125);
  const db32 = new Float32Array(20);
  const Ak = new Float64Array(20 * 20);
  const dAk = new Float64Array(20 * 20).fill(1);
  const P = new Float64Array(20 * 20);
  const dZk32 = new Float32Array(20 * 20);
  const yk = Int32Array.from({ length: 20 }, (_, i) => (i * 3) % 20);
  const yBad = yk.slice();
  yBad[19] = 20;
  const gone = detached(Float64Array, 20 * 20);
  const threads = b.getNumThreads();
  const loops = [
    ['forwardBackward float64', () => b.forwardBackward(...small.args())],
    ['forwardBackward float32, no dX', () => b.forwardBackward(...small32.args())],
    ['forwardBackward through OpenBLAS', () => b.forwardBackward(...mid.args())],
    ['forward', () => b.forward(...small.forwardArgs())],
    ['gemm', () => b.gemm(true, false, 20, 20, 20, 1, A, G, 0, Cg)],
    ['optimizerUpdate adam', () => b.optimizerUpdate(A, G, Am, Av, 3, 1e-3, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate nesterov float32', () => b.optimizerUpdate(A32, G32, Am32, null, 2, 1e-3, 2, 0.9, 0.9, 0.999, 1e-8, 0.01)],
    ['getNumThreads', () => b.getNumThreads()],
    ['setNumThreads', () => b.setNumThreads(threads)],
    ['refused: no arguments', () => b.forwardBackward()],
    ['refused: wrong dtype', () => b.forwardBackward(new Int8Array(4))],
    ['refused: wrong length', () => { const a = small.args(); a[2] = new Float64Array(3); b.forwardBackward(...a); }],
    ['refused: label out of range', () => { const a = small.args(); a[1] = new Int32Array([0, 1, 7, 0]); b.forwardBackward(...a); }],
    ['refused: aliasing', () => { const a = small.args(); a[8] = a[2]; b.forwardBackward(...a); }],
    ['refused: NaN found after the forward pass', () => b.forwardBackward(...nan.args())],
    ['refused: forward with a bad dim', () => { const a = small.forwardArgs(); a[6] = -1; b.forward(...a); }],
    ['refused: gemm too small', () => b.gemm(false, false, 21, 20, 20, 1, A, G, 0, Cg)],
    ['refused: setNumThreads(0)', () => b.setNumThreads(0)],
    ['refused: optimizerUpdate g too short', () => b.optimizerUpdate(A, G.subarray(1), null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['refused: optimizerUpdate aliasing', () => b.optimizerUpdate(A, A, null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    // The kernel primitives (Z, Ak, dAk, P, dZk: 20 × 20; bias, db: 20; yk: 20 labels in [0, 20)).
    ['broadcastRows', () => b.broadcastRows(bias, Cg, 20, 20)],
    ['sumRows float32, accumulating', () => b.sumRows(G32, db32, 20, 20, true)],
    ['activationForward sigmoid', () => b.activationForward(1, A, Ak)],
    ['activationBackward tanh', () => b.activationBackward(2, A, Ak, dAk)],
    ['softmaxCrossEntropy', () => b.softmaxCrossEntropy(G, yk, P, 20, 20)],
    ['softmaxCrossEntropyBackward float32 mean', () => b.softmaxCrossEntropyBackward(A32, yk, dZk32, 20, 20, 0)],
    ['allFinite', () => b.allFinite(A)],
    ['refused: broadcastRows with no arguments', () => b.broadcastRows()],
    ['refused: broadcastRows out over bias', () => b.broadcastRows(Cg.subarray(0, 20), Cg, 20, 20)],
    ['refused: sumRows with rows·cols overflowing', () => b.sumRows(G, bias, 2 ** 31 - 1, 2 ** 31 - 1, false)],
    ['refused: activationForward with code 3', () => b.activationForward(3, A, Ak)],
    ['refused: activationBackward with a detached dA', () => b.activationBackward(0, A, Ak, gone)],
    ['refused: softmaxCrossEntropy with a label out of range', () => b.softmaxCrossEntropy(G, yBad, P, 20, 20)],
    ['refused: softmaxCrossEntropy with Float64Array labels', () => b.softmaxCrossEntropy(G, bias, P, 20, 20)],
    ['refused: softmaxCrossEntropyBackward with reduction 2', () => b.softmaxCrossEntropyBackward(P, yk, Cg, 20, 20, 2)],
    ['refused: allFinite of an Int32Array', () => b.allFinite(yk)],
  ];
  const heap = heapProbe();
  for (const [name, fn] of loops) {
    let thrown = 0;
    const run = (n) => {
      for (let i = 0; i < n; i++) {
        try {
          fn();
        } catch (e) {
          if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
          thrown++;
        }
      }
    };
    // Warm up and settle the heap, then measure what each of two rounds of N calls leaves
    // allocated. V8's background work moves the heap by up to ~100 kB either way; a per-call leak
    // grows it in both rounds.
    run(200);
    const h0 = heap.settle();
    run(N);
    const h1 = heap.settle();
    run(N);
    const h2 = heap.settle();
    const grew = Math.min(h1 - h0, h2 - h1);
    check(thrown === 0 || thrown === 2 * N + 200, `${name}: threw ${thrown} times of ${2 * N + 200}`);
    if (heap.available) check(grew < 16 * N, `${name}: the heap grew by ${h1 - h0} and ${h2 - h1} bytes in two rounds of ${N} calls`);
    process.stdout.write(`[battery]   ${name}: 2 × ${N} calls${heap.available ? `, heap ${h1 - h0 >= 0 ? '+' : ''}${h1 - h0} and ${h2 - h1 >= 0 ? '+' : ''}${h2 - h1} bytes` : ''}\n`);
  }
  stillExact('after the loops');
}

/**
 * The bytes the ASan allocator holds (all malloc in the process), through ASan's own interface,
 * read by an addon built beside the sanitized one (scripts/sanitize/heap_probe.cc), after a full
 * GC. Unreachable leaks are LeakSanitizer's at exit; this catches memory kept reachable per call.
 */
function heapProbe() {
  let probe = null;
  try {
    probe = require(join(__dirname, '..', '..', 'build', 'asan', 'heap_probe.node'));
  } catch {
    process.stdout.write('[battery]   (heap probe not built: only LeakSanitizer checks for leaks)\n');
  }
  return {
    available: probe !== null,
    settle() {
      if (!probe) return 0;
      let last = Infinity;
      for (let i = 0; i < 8; i++) {
        global.gc();
        const now = probe.allocatedBytes();
        if (now >= last) return Math.min(now, last);
        last = now;
      }
      return last;
    },
  };
}

(async () => {
  await workers();
  await leakLoops();
  if (failures.length) {
    process.stdout.write(`[battery] ${failures.length} failure(s) of ${checks} checks:\n  ${failures.join('\n  ')}\n`);
    process.exitCode = 1; // not process.exit(): a normal teardown keeps LeakSanitizer's report short
    return;
  }
  process.stdout.write(`SANITIZE-OK ${JSON.stringify({ checks, refused, accepted, fixtures: cases.length })}\n`);
})().catch((e) => {
  process.stdout.write(`[battery] crashed in JavaScript: ${e && e.stack}\n`);
  process.exitCode = 1;
});
