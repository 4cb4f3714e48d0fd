// The battery that scripts/sanitize.mjs runs under AddressSanitizer against build-asan/handgrad.node
// (the path comes as argv[2]). Plain CommonJS that loads that one .node and nothing of dist/, so
// every native instruction it reaches is instrumented:
//   1. the golden fixtures (test/fixtures: PyTorch autograd) through the raw stack exports
//      (stackForwardBackward, stackForward, and the prepared step stackBind + stackRun, on a
//      Linear–act–Linear stack), and gemm against plain loops, at sizes on both sides of the
//      small-GEMM cutoff;
//   2. bad input at every argument of every export: each wrong type, length, dim, dtype, detached
//      and offset buffer, handle, description, aliasing between every output and every other
//      buffer, labels out of range, short and long argument lists — each must be a
//      TypeError/RangeError (or a normal return where the call is in fact valid), write nothing
//      when refused, and leave the next valid call exact to the bit; NaN/±Infinity at every index
//      of every input a failure (NaN, stackStatus) that writes nothing;
//      a bound step's views pinned (bound from arrays nothing else holds, collected, then run),
//      and a transferred or shrunk bound buffer caught by the byteLength check every caller makes
//      before stackRun (lib/engine/native.ts's), then refused when bound again;
//   3. the addon in worker threads (loaded, used and terminated mid-call, bound and unbound);
//   3b. the sparse first layer (native/core/sparse.h): mostly-zero X at 1 and 2 threads against
//      setSparseInput(false), X filled exactly to the cap and then a whole row past it (the
//      compression's spare slots), NaN/±Infinity in X and in unused rows of W1, an X in a
//      SharedArrayBuffer that a worker rewrites during the calls, and gatherRows' refusals;
//   4. 2 × 10 000 calls of each export, valid and refused (LeakSanitizer then reports at exit
//      whatever was lost), with the heap measured by ASan itself before and after each round.
// Prints SANITIZE-OK and a summary on success; exits 1 with the failures otherwise.
'use strict';
const { Worker } = require('node:worker_threads');
const {
  F, ACT, RED, check, section, refusedOrReturns, mustRefuse, errEps, rand, bytesOf, fixtures, badValues, describeValue, leakLoops: measureLoops, finish,
} = require('./battery.cjs');

const ADDON = process.argv[2] || process.env.HANDGRAD_ASAN_ADDON;
const b = require(ADDON);
const step = (a) => b.stackForwardBackward(...a);
const fwd = (a) => b.stackForward(...a);
const bind = (a) => b.stackBind(...a);
const run = (a) => b.stackRun(...a);

/** A Linear–act–Linear stack's handle (one per dtype and activation) and the step's buffers. */
const handles = new Map();
function handleOf(dtype, dims, act) {
  const key = `${dtype} ${dims.D},${dims.H},${dims.C} ${act}`;
  if (!handles.has(key)) handles.set(key, b.stackPrepare(Int32Array.of(0, 1 + ACT[act], 0), Int32Array.of(dims.D, dims.H, dims.H, dims.C), dtype === 'float32'));
  return handles.get(key);
}
function problem(dtype, dims, data, act = 'relu', red = 'mean', withDX = true) {
  const A = F[dtype];
  const { B, D, H, C } = dims;
  const h = handleOf(dtype, dims, act);
  const p = {
    dtype, dims, act, red, h,
    X: A.from(data.X), y: Int32Array.from(data.y), W1: A.from(data.W1), b1: A.from(data.b1), W2: A.from(data.W2), b2: A.from(data.b2),
    ws: new A(b.stackLayout(h, B)[4]),
    dX: withDX ? new A(B * D) : null, dW1: new A(D * H), db1: new A(H), dW2: new A(H * C), db2: new A(C),
  };
  p.at = b.stackLayout(h, B);
  p.args = () => [p.h, p.ws, p.X, p.y, B, p.dX, RED[red], false, p.W1, p.b1, p.W2, p.b2, p.dW1, p.db1, p.dW2, p.db2];
  // The prepared step over the same buffers: stackBind's arguments, then stackRun's for a bound step.
  p.bindArgs = () => [p.h, p.ws, p.dX, p.W1, p.b1, p.W2, p.b2, p.dW1, p.db1, p.dW2, p.db2];
  p.runArgs = (bound, accumulate = false) => [bound, p.X, p.y, B, RED[red], accumulate];
  p.forwardArgs = () => [p.h, p.ws, p.X, B, p.W1, p.b1, p.W2, p.b2];
  p.logits = () => p.ws.subarray(p.at[2], p.at[2] + B * C);
  return p;
}

function randomProblem(dtype, dims, seed, act, red, withDX) {
  const { B, D, H, C } = dims;
  return problem(dtype, dims, {
    X: rand(B * D, seed), y: Array.from(rand(B, seed + 1), (v) => Math.min(C - 1, Math.floor(((v + 1) / 2) * C))),
    W1: rand(D * H, seed + 2, 1 / Math.sqrt(D)), b1: rand(H, seed + 3, 0.1), W2: rand(H * C, seed + 4, 1 / Math.sqrt(H)), b2: rand(C, seed + 5, 0.1),
  }, act, red, withDX);
}

const outputs = (p) => [p.dX, p.dW1, p.db1, p.dW2, p.db2].map(bytesOf).join('|');

// ---------------------------------------------------------------------------------------------
section('1. fixtures and gemm');

const cases = fixtures();
for (const c of cases) {
  const p = problem(c.dtype, c.dims, c.inputs, c.activation, c.reduction);
  const loss = step(p.args());
  check(errEps([loss], c.expected.loss, c.dtype) <= 8, `${c.name}: loss ${loss} vs ${c.expected.loss[0]}`);
  for (const k of ['dX', 'dW1', 'dW2', 'db1', 'db2']) check(errEps(p[k], c.expected[k], c.dtype) <= 8, `${c.name}: ${k}`);
  // The bound step gives the same bits, on its first run and on the next (its layout cached).
  const want = outputs(p);
  const bound = bind(p.bindArgs());
  for (let k = 0; k < 2; k++) {
    for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(0);
    check(Object.is(run(p.runArgs(bound)), loss) && outputs(p) === want, `${c.name}: stackRun ${k + 1} is not stackForwardBackward's bits`);
  }
  // stackForward writes the same logits into its workspace as the step did.
  const logits = bytesOf(p.logits());
  p.ws.fill(0);
  check(fwd(p.forwardArgs()) === true && bytesOf(p.logits()) === logits, `${c.name}: stackForward's logits`);
  // With dX not asked for, and accumulating twice into the same buffers.
  const q = problem(c.dtype, c.dims, c.inputs, c.activation, c.reduction, false);
  const a = q.args();
  a[7] = true;
  step(a);
  step(a);
  check(errEps(Array.from(q.dW1, (v) => v / 2), c.expected.dW1, c.dtype) <= 8, `${c.name}: accumulate twice`);
  const accumulated = outputs(q);
  for (const g of [q.dW1, q.db1, q.dW2, q.db2]) g.fill(0);
  const qb = bind(q.bindArgs());
  run(q.runArgs(qb, true));
  run(q.runArgs(qb, true));
  check(outputs(q) === accumulated, `${c.name}: stackRun accumulating twice, no dX`);
}

// The exact mode (native/core/exact*.h: LibTorch's kernels, Sleef, its own scratch buffers) on the
// same fixtures, on a handle of its own: within 8 eps of PyTorch as the default mode is (its bits are
// test/39's), through a plain step, a bound step, the forward alone and accumulation; then off again.
for (const c of cases) {
  const p = problem(c.dtype, c.dims, c.inputs, c.activation, c.reduction);
  p.h = b.stackPrepare(Int32Array.of(0, 1 + ACT[c.activation], 0), Int32Array.of(c.dims.D, c.dims.H, c.dims.H, c.dims.C), c.dtype === 'float32');
  let machine;
  try {
    machine = b.stackExact(p.h, true);
  } catch (e) {
    check(/capability|thread/i.test(e.message), `${c.name}: stackExact refused without saying why: ${e.message}`);
    continue;
  }
  check(Array.isArray(machine) && machine.length === 2, `${c.name}: stackExact's answer`);
  const loss = step(p.args());
  check(errEps([loss], c.expected.loss, c.dtype) <= 8, `${c.name}: exact loss ${loss} vs ${c.expected.loss[0]}`);
  for (const k of ['dX', 'dW1', 'dW2', 'db1', 'db2']) check(errEps(p[k], c.expected[k], c.dtype) <= 8, `${c.name}: exact ${k}`);
  const want = outputs(p);
  const bound = bind(p.bindArgs());
  check(Object.is(run(p.runArgs(bound)), loss) && outputs(p) === want, `${c.name}: exact stackRun is not the exact step's bits`);
  const logits = bytesOf(p.logits());
  p.ws.fill(0);
  check(fwd(p.forwardArgs()) === true && bytesOf(p.logits()) === logits, `${c.name}: exact stackForward's logits`);
  const a = p.args();
  a[7] = true;
  step(a);
  check(errEps(Array.from(p.dW1, (v) => v / 2), c.expected.dW1, c.dtype) <= 8, `${c.name}: exact, accumulated`);
  b.stackExact(p.h, false);
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
/** The valid toy call, and what it writes: every refused call must leave the next one exact. */
const base = problem('float64', DIMS, toy.inputs);
const baseLoss = step(base.args());
const baseOut = outputs(base);
function stillExact(what) {
  const p = problem('float64', DIMS, toy.inputs);
  const loss = step(p.args());
  check(Object.is(loss, baseLoss) && outputs(p) === baseOut, `${what}: the next valid call is not exact`);
}

/**
 * Each output argument in `outs` as a view onto every other buffer argument of argsOf() (a fresh
 * argument list each time), whole or shifted by one element: `call` must refuse exactly the ones
 * whose bytes overlap, before anything is written.
 */
function overlapBattery(outs, names, argsOf, call, label) {
  for (const o of outs) {
    for (let j = 1; j < names.length; j++) {
      if (j === o || !ArrayBuffer.isView(argsOf()[j])) continue;
      for (const shift of [0, 1]) {
        const a = argsOf();
        const target = a[j];
        const need = a[o].length;
        const Ctor = a[o].constructor;
        const elem = Ctor.BYTES_PER_ELEMENT;
        // A view of the right length starting inside the target (a larger buffer when needed).
        const big = new ArrayBuffer(target.byteLength + (need + 2) * elem);
        new Uint8Array(big).set(new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
        const moved = new target.constructor(big, 0, target.length);
        a[j] = moved;
        a[o] = new Ctor(big, shift * elem, need);
        const overlaps = shift * elem < moved.byteLength;
        const what = `${label} ${names[o]} over ${names[j]} (shift ${shift})`;
        const thrown = refusedOrReturns(() => call(a), what);
        check(thrown === overlaps, `${what}: ${thrown ? 'refused' : 'accepted'}`);
      }
    }
  }
}

const OUT = [1, 5, 12, 13, 14, 15]; // ws, dX, dW1, db1, dW2, db2 in a step's arguments
const NAMES = ['handle', 'workspace', 'X', 'y', 'B', 'dX', 'reduction', 'accumulate', 'W1', 'b1', 'W2', 'b2', 'dW1', 'db1', 'dW2', 'db2'];
for (const dtype of ['float64', 'float32']) {
  const fresh = () => {
    const p = problem(dtype, DIMS, toy.inputs);
    for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(7);
    return p;
  };
  // stackForwardBackward: every position, every bad value; what it wrote must be nothing when refused.
  for (let i = 0; i < NAMES.length; i++) {
    for (const v of [...badValues(fresh().args()[i]), handleOf(dtype === 'float64' ? 'float32' : 'float64', DIMS, 'relu')]) {
      const p = fresh();
      const a = p.args();
      a[i] = v;
      const before = outputs(p);
      if (refusedOrReturns(() => step(a), `${dtype} stackForwardBackward ${NAMES[i]} = ${describeValue(v)}`)) {
        check(outputs(p) === before, `${dtype} stackForwardBackward ${NAMES[i]} = ${describeValue(v)}: wrote into the outputs and threw`);
      }
    }
  }
  // stackForward, stackLayout, stackStatus: the same.
  const FNAMES = ['handle', 'workspace', 'X', 'B', 'W1', 'b1', 'W2', 'b2'];
  for (let i = 0; i < FNAMES.length; i++) {
    for (const v of badValues(fresh().forwardArgs()[i])) {
      const a = fresh().forwardArgs();
      a[i] = v;
      refusedOrReturns(() => fwd(a), `${dtype} stackForward ${FNAMES[i]} = ${describeValue(v)}`);
    }
  }
  for (const v of badValues(base.h)) {
    refusedOrReturns(() => b.stackLayout(v, DIMS.B), `stackLayout handle = ${describeValue(v)}`);
    refusedOrReturns(() => b.stackStatus(v), `stackStatus handle = ${describeValue(v)}`);
    refusedOrReturns(() => b.stackLayout(base.h, v), `stackLayout B = ${describeValue(v)}`);
  }
  // stackBind and stackRun: every position, every bad value; nothing written when refused. A
  // refused stackBind returns nothing to run; a refused stackRun leaves the bound step usable.
  const BNAMES = ['handle', 'workspace', 'dX', 'W1', 'b1', 'W2', 'b2', 'dW1', 'db1', 'dW2', 'db2'];
  for (let i = 0; i < BNAMES.length; i++) {
    for (const v of [...badValues(fresh().bindArgs()[i]), handleOf(dtype === 'float64' ? 'float32' : 'float64', DIMS, 'relu')]) {
      const p = fresh();
      const a = p.bindArgs();
      a[i] = v;
      const before = outputs(p);
      let bound = null;
      if (!refusedOrReturns(() => (bound = bind(a)), `${dtype} stackBind ${BNAMES[i]} = ${describeValue(v)}`)) {
        // Accepted (a longer workspace, a dX of other rows, null dX): a run is exact or refused.
        refusedOrReturns(() => run(p.runArgs(bound)), `${dtype} stackRun after stackBind ${BNAMES[i]} = ${describeValue(v)}`);
      } else {
        check(outputs(p) === before, `${dtype} stackBind ${BNAMES[i]} = ${describeValue(v)}: wrote into the outputs and threw`);
      }
    }
  }
  const RNAMES = ['bound', 'X', 'y', 'B', 'reduction', 'accumulate'];
  {
    const p = fresh();
    const bound = bind(p.bindArgs());
    const want = (() => {
      const q = fresh();
      const loss = step(q.args());
      return { loss, out: outputs(q) };
    })();
    for (let i = 0; i < RNAMES.length; i++) {
      for (const v of [...badValues(p.runArgs(bound)[i]), p.h, handleOf(dtype === 'float64' ? 'float32' : 'float64', DIMS, 'relu'), bind(fresh().bindArgs())]) {
        for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(7);
        const a = p.runArgs(bound);
        a[i] = v;
        const before = outputs(p);
        if (refusedOrReturns(() => run(a), `${dtype} stackRun ${RNAMES[i]} = ${describeValue(v)}`)) {
          check(outputs(p) === before, `${dtype} stackRun ${RNAMES[i]} = ${describeValue(v)}: wrote into the outputs and threw`);
        }
      }
    }
    for (const g of [p.dX, p.dW1, p.db1, p.dW2, p.db2]) g.fill(7);
    check(Object.is(run(p.runArgs(bound)), want.loss) && outputs(p) === want.out, `${dtype} stackRun after the refusals: not exact`);
    for (let n = 0; n < 6; n++) mustRefuse(() => run(p.runArgs(bound).slice(0, n)), `${dtype} stackRun with ${n} arguments`);
    for (let n = 0; n < 11; n++) mustRefuse(() => bind(p.bindArgs().slice(0, n)), `${dtype} stackBind with ${n} arguments`);
    // B other than the bound dX's rows, or whose workspace is larger than the bound one.
    for (const v of [1, 3, 5, 2 ** 20]) mustRefuse(() => run([bound, p.X.subarray(0, v * DIMS.D), p.y.subarray(0, v), v, 0, false]), `${dtype} stackRun B = ${v}`);
    const q = fresh();
    const noDX = bind([q.h, q.ws, null, q.W1, q.b1, q.W2, q.b2, q.dW1, q.db1, q.dW2, q.db2]);
    mustRefuse(() => run([noDX, new F[dtype](5 * DIMS.D), new Int32Array(5), 5, 0, false]), `${dtype} stackRun B past the workspace`);
    const what = `${dtype} stackRun B = 2 in B = 4's workspace`;
    check(!refusedOrReturns(() => run([noDX, q.X.subarray(0, 2 * DIMS.D), q.y.subarray(0, 2), 2, 0, false]), what), `${what}: refused`);
  }
  // Aliasing at bind: each output (workspace, dX, each gradient) over every other bound buffer,
  // whole or shifted by one element; at run: X and y over each bound output. Refused exactly when
  // the bytes overlap, before anything is written.
  const BOUT = [1, 2, 7, 8, 9, 10];
  overlapBattery(BOUT, BNAMES, () => fresh().bindArgs(), bind, `${dtype} stackBind`);
  for (const o of BOUT) {
    for (const [j, name] of [[1, 'X'], [2, 'y']]) {
      for (const shift of [0, 1]) {
        const p = fresh();
        const a = p.bindArgs();
        const out = a[o];
        const r = p.runArgs(null);
        const input = r[j];
        const elem = out.constructor.BYTES_PER_ELEMENT;
        // The output inside a larger buffer; the input a view at `shift` elements into it.
        const big = new ArrayBuffer(out.byteLength + input.byteLength + 8 * elem);
        a[o] = new out.constructor(big, 0, out.length);
        const at = shift === 0 ? 0 : out.byteLength;
        const moved = new input.constructor(big, at, input.length);
        moved.set(input);
        r[j] = moved;
        const bound = bind(a);
        r[0] = bound;
        const overlaps = at < out.byteLength;
        const before = outputs(p);
        const thrown = refusedOrReturns(() => run(r), `${dtype} stackRun ${name} over ${BNAMES[o]} (${shift ? 'after' : 'at'} it)`);
        check(thrown === overlaps, `${dtype} stackRun ${name} over ${BNAMES[o]}: ${thrown ? 'refused' : 'accepted'}`);
        if (thrown) check(outputs(p) === before, `${dtype} stackRun ${name} over ${BNAMES[o]}: wrote and threw`);
      }
    }
  }
  // NaN/±Infinity in X and labels out of range through a bound step: NaN with the status, or a
  // RangeError, nothing written.
  {
    const p = fresh();
    const bound = bind(p.bindArgs());
    for (let k = 0; k < p.X.length; k++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const keep = p.X[k];
        p.X[k] = bad;
        const before = outputs(p);
        const loss = run(p.runArgs(bound));
        const failed = Number.isNaN(loss) && b.stackStatus(p.h)[0] === b.codes.stage.forward;
        check(failed && outputs(p) === before, `${dtype} stackRun ${bad} at X[${k}]: ${loss}`);
        p.X[k] = keep;
      }
    }
    for (let k = 0; k < DIMS.B; k++) {
      const keep = p.y[k];
      p.y[k] = DIMS.C;
      const before = outputs(p);
      const refusal = refusedOrReturns(() => run(p.runArgs(bound)), `${dtype} stackRun y[${k}] = C`);
      check(refusal && outputs(p) === before, `${dtype} stackRun y[${k}] = C: accepted or wrote`);
      p.y[k] = keep;
    }
  }
  // Pinned: bound from arrays nothing else holds, collected (the bound step's references keep
  // them), then run: the bits of the unbound step. Then the rule every caller follows before
  // stackRun (lib/engine/native.ts): a bound view whose byteLength changed (its buffer transferred,
  // or a resizable buffer shrunk under it) is never run on; binding it again is refused.
  {
    const p = fresh();
    const want = (() => {
      const q = fresh();
      const loss = step(q.args());
      return { loss, out: outputs(q) };
    })();
    // The gradients kept here (db2's 3 or 4 elements start on V8's moving heap: binding read them
    // off it), the rest held by nothing but the bound step.
    const gs = [p.dW1, p.db1, p.dW2, p.db2].map((g) => g.slice());
    let bound = bind([p.h, new F[dtype](p.ws.length), p.dX.slice(), p.W1.slice(), p.b1.slice(), p.W2.slice(), p.b2.slice(), ...gs]);
    for (let i = 0; i < 3; i++) global.gc();
    const same = Object.is(run(p.runArgs(bound)), want.loss) && ['', ...gs.map(bytesOf)].join('|') === want.out.replace(/^[^|]*/, '');
    check(same, `${dtype} a bound step over arrays only it holds, after a GC: not exact`);
    const rab = new ArrayBuffer(p.dW1.byteLength, { maxByteLength: 2 * p.dW1.byteLength });
    const shrinking = new F[dtype](rab, 0, p.dW1.length);
    const views = [p.ws, p.dX, p.W1, p.b1, p.W2, p.b2, shrinking, p.db1, p.dW2, p.db2];
    bound = bind([p.h, ...views]);
    const bytes = views.map((v) => v.byteLength);
    const checkedRun = (a) => {
      const changed = views.findIndex((v, i) => v.byteLength !== bytes[i]);
      if (changed >= 0) throw new TypeError(`Expected ${BNAMES[changed + 1]} to keep its ${bytes[changed]} bytes`);
      return run(a);
    };
    check(Object.is(checkedRun(p.runArgs(bound)), want.loss), `${dtype} bound over a resizable buffer: loss`);
    rab.resize(8);
    check(refusedOrReturns(() => checkedRun(p.runArgs(bound)), `${dtype} shrunk dW1`), `${dtype} shrunk dW1: the check missed it`);
    check(refusedOrReturns(() => bind([p.h, ...views]), `${dtype} stackBind a shrunk dW1`), `${dtype} stackBind a shrunk dW1: accepted`);
    rab.resize(2 * p.dW1.byteLength);
    check(Object.is(checkedRun(p.runArgs(bound)), want.loss), `${dtype} bound over a resizable buffer grown back: loss`);
    structuredClone(p.db2.buffer, { transfer: [p.db2.buffer] });
    check(refusedOrReturns(() => checkedRun(p.runArgs(bound)), `${dtype} transferred db2`), `${dtype} transferred db2: the check missed it`);
    check(refusedOrReturns(() => bind([p.h, ...views]), `${dtype} stackBind a transferred db2`), `${dtype} stackBind a transferred db2: accepted`);
  }

  // Argument lists cut short, or with extra arguments.
  for (let n = 0; n < 16; n++) check(refusedOrReturns(() => step(fresh().args().slice(0, n)), `${dtype} stackForwardBackward with ${n} arguments`), `${dtype} stackForwardBackward with ${n} arguments: accepted`);
  for (let n = 0; n < 8; n++) check(refusedOrReturns(() => fwd(fresh().forwardArgs().slice(0, n)), `${dtype} stackForward with ${n} arguments`), `${dtype} stackForward with ${n} arguments: accepted`);
  refusedOrReturns(() => step([...fresh().args(), 1, 2, 3]), `${dtype} stackForwardBackward with extra arguments`);

  // Aliasing: every output (the workspace too) as a view onto every other buffer, whole or shifted
  // by one element; each one that overlaps must be refused before anything is written.
  overlapBattery(OUT, NAMES, () => fresh().args(), step, dtype);

  // NaN and ±Infinity at every index of every input: a failure (NaN, stackStatus forward at the
  // Linear that met it), nothing written; stackForward says false.
  for (const [i, name, layer] of [[2, 'X', 0], [8, 'W1', 0], [9, 'b1', 0], [10, 'W2', 2], [11, 'b2', 2]]) {
    const len = fresh().args()[i].length;
    for (let k = 0; k < len; k++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const p = fresh();
        const a = p.args();
        a[i][k] = bad;
        const before = outputs(p);
        const loss = step(a);
        const st = b.stackStatus(p.h);
        check(Number.isNaN(loss) && st[0] === b.codes.stage.forward && st[1] === layer, `${dtype} ${bad} at ${name}[${k}]: ${loss}, status ${st}`);
        check(outputs(p) === before, `${dtype} ${bad} at ${name}[${k}]: wrote into the outputs`);
        const f = fresh().forwardArgs();
        f[[2, 4, 5, 6, 7][[2, 8, 9, 10, 11].indexOf(i)]][k] = bad;
        check(fwd(f) === false, `${dtype} stackForward ${bad} at ${name}[${k}]: accepted`);
      }
    }
  }
  // Finite inputs whose forward pass, loss or gradients overflow: a failure at that stage.
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
    for (const [name, p, stage] of [['Z1', z1, 'forward'], ['logits', logits, 'forward'], ['loss', loss, 'loss'], ['gradients', grads, 'grads']]) {
      const r = step(p.args());
      check(Number.isNaN(r) && b.stackStatus(p.h)[0] === b.codes.stage[stage], `${dtype} ${name} overflowing: ${r}, status ${b.stackStatus(p.h)}`);
    }
  }
  // Labels out of range, at each position.
  for (let k = 0; k < DIMS.B; k++) {
    for (const bad of [-1, DIMS.C, 2 ** 31 - 1, -(2 ** 31)]) {
      const p = fresh();
      p.y[k] = bad;
      const before = outputs(p);
      check(refusedOrReturns(() => step(p.args()), `${dtype} y[${k}] = ${bad}`), `${dtype} y[${k}] = ${bad}: accepted`);
      check(outputs(p) === before, `${dtype} y[${k}] = ${bad}: wrote into the outputs`);
    }
  }
  // B disagreeing with the buffers, or whose workspace cannot exist.
  for (const v of [1, 3, 5, 2 ** 20, 2 ** 31 - 1]) {
    const a = fresh().args();
    a[4] = v;
    check(refusedOrReturns(() => step(a), `${dtype} B = ${v}`), `${dtype} B = ${v}: accepted`);
  }
  check(refusedOrReturns(() => b.stackLayout(b.stackPrepare(Int32Array.of(0), Int32Array.of(2 ** 16, 2 ** 16), dtype === 'float32'), 2 ** 17), `${dtype} a workspace past 2^32 − 1`), `${dtype} a workspace past 2^32 − 1: accepted`);
}
// stackPrepare: every position, every bad value; descriptions that are wrong in each way.
{
  const ok = () => [Int32Array.of(0, 1, 0), Int32Array.of(5, 10, 10, 3), false];
  for (let i = 0; i < 3; i++) {
    for (const v of badValues(ok()[i])) {
      const a = ok();
      a[i] = v;
      refusedOrReturns(() => b.stackPrepare(...a), `stackPrepare ${['kinds', 'widths', 'float32'][i]} = ${describeValue(v)}`);
    }
  }
  for (const [kinds, widths] of [[[], [3]], [[0, 4], [2, 3, 3]], [[0, -1], [2, 3, 3]], [[1], [2, 2]], [[0, 1], [2, 3, 4]], [[0], [0, 2]], [[0], [2, -1]], [[0], [2 ** 31 - 1, 2 ** 31 - 1]], [[0, 1, 0], [5, 10, 3]]]) {
    check(refusedOrReturns(() => b.stackPrepare(Int32Array.from(kinds), Int32Array.from(widths), false), `stackPrepare ${kinds} ${widths}`), `stackPrepare ${kinds} ${widths}: accepted`);
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
stillExact('after the battery');

// ---------------------------------------------------------------------------------------------
// The sparse first layer: a Linear–act–Linear stack whose X is mostly zeros (B·D·H past 4096), so
// stack.h's sparseFirstLayer compresses X into the workspace. (This build's sparseThreads() is 1:
// its GEMM is the bounds probe's, so the helper pool is not reached here; test/59 runs it.)
const SPARSE = { B: 32, D: 100, H: 20, C: 5 };

/** X [B,D]: `count` nonzeros at seeded places in its first B − fullRows rows (column 7 kept zero), then fullRows dense rows. */
function sparseData(dtype, count, seed, fullRows = 0) {
  const { B, D } = SPARSE;
  const X = new F[dtype](B * D);
  const room = (B - fullRows) * D;
  const r = rand(4 * room, seed);
  let placed = 0;
  for (let i = 0; i < r.length && placed < count; i += 2) {
    const at = Math.floor(((r[i] + 1) / 2) * room) % room;
    if (at % D === 7 || X[at] !== 0) continue;
    X[at] = r[i + 1] || 0.5;
    placed++;
  }
  if (placed !== count) throw new Error(`sparseData placed ${placed} of ${count}`);
  for (let i = B - fullRows; i < B; i++) for (let k = 0; k < D; k++) X[i * D + k] = k === 7 ? 0 : 0.25 + (k % 5) / 8;
  return X;
}

/** A tanh stack's step (sum reduction, dX wanted) over X. */
function sparseProblem(dtype, X, seed = 61) {
  const p = randomProblem(dtype, SPARSE, seed, 'tanh', 'sum', true);
  p.X.set(X);
  return p;
}

async function sparseSection() {
  section('3b. the sparse first layer');
  const { B, D, H } = SPARSE;
  const cap = (B * D) / 4;
  const threads = b.getNumThreads();
  for (const dtype of ['float64', 'float32']) {
    const tol = 2 * Math.max(B, D, H);
    // [what, X]: a sparse one; exactly the cap (sparse), the cap then a dense row (the compression
    // writes up to `in` entries past the cap before it gives up), just past the cap (dense).
    const best = b.getKernelSet();
    const kernelSets = ['portable', 'avx2', 'avx512'].slice(0, ['portable', 'avx2', 'avx512'].indexOf(best) + 1);
    const xs = [
      ['15% nonzero', sparseData(dtype, Math.floor(0.15 * B * D), 71)],
      ['exactly the cap', sparseData(dtype, cap, 72)],
      ['exactly the cap, its last row dense', sparseData(dtype, cap - (D - 1), 73, 1)],
      ['the cap before a dense last row', sparseData(dtype, cap, 74, 1)],
      ['one below the cap before two dense rows', sparseData(dtype, cap - 1, 75, 2)],
      ['one past the cap', sparseData(dtype, cap + 1, 76)],
    ];
    for (const [what, X] of xs) {
      b.setSparseInput(false);
      const dense = sparseProblem(dtype, X);
      const denseLoss = step(dense.args());
      b.setSparseInput(true);
      // Each instruction set the sparse loops are built for that this CPU runs (AVX-512's panels,
      // AVX2's and the portable 16-byte loops: setKernelSet), on 1 and 2 threads.
      for (const [n, set] of [1, 2].flatMap((n) => kernelSets.map((k) => [n, k]))) {
        b.setNumThreads(n);
        b.setKernelSet(set);
        const p = sparseProblem(dtype, X);
        const loss = step(p.args());
        check(errEps([loss], [denseLoss], dtype) <= tol, `${dtype} sparse ${what}, ${n} thread(s): loss ${loss} vs ${denseLoss}`);
        for (const k of ['dX', 'dW1', 'db1', 'dW2', 'db2']) check(errEps(p[k], dense[k], dtype) <= tol, `${dtype} sparse ${what}, ${n} thread(s): ${k} ${errEps(p[k], dense[k], dtype)} eps from the dense path`);
        // The bound step and the forward alone: the same bits as the step.
        const want = outputs(p);
        const bound = bind(p.bindArgs());
        check(Object.is(run(p.runArgs(bound)), loss) && outputs(p) === want, `${dtype} sparse ${what}: stackRun is not the step's bits`);
        const logits = bytesOf(p.logits());
        p.ws.fill(0);
        check(fwd(p.forwardArgs()) === true && bytesOf(p.logits()) === logits, `${dtype} sparse ${what}: stackForward's logits`);
        // Accumulating twice: twice the gradient (a power of two: exact).
        const q = sparseProblem(dtype, X);
        const a = q.args();
        a[7] = true;
        step(a);
        step(a);
        check(q.dW1.every((v, i) => v === 2 * p.dW1[i]), `${dtype} sparse ${what}: accumulated twice is not twice`);
      }
      b.setKernelSet(best);
      b.setNumThreads(threads);
    }
    // NaN/±Infinity at every index of X, and in every entry of W1's unused row (column 7 of X is
    // all zeros, so the sparse product never reads that row): a failure at the first Linear,
    // nothing written.
    const X = sparseData(dtype, Math.floor(0.15 * B * D), 76);
    for (let k = 0; k < X.length; k += 3) {
      const bad = [NaN, Infinity, -Infinity][k % 9 / 3];
      const p = sparseProblem(dtype, X);
      p.X[k] = bad;
      const before = outputs(p);
      const loss = step(p.args());
      const st = b.stackStatus(p.h);
      check(Number.isNaN(loss) && st[0] === b.codes.stage.forward && st[1] === 0 && outputs(p) === before, `${dtype} sparse ${bad} at X[${k}]: ${loss}, status ${st}`);
    }
    for (let j = 0; j < H; j++) {
      const p = sparseProblem(dtype, X);
      p.W1[7 * H + j] = [NaN, Infinity, -Infinity][j % 3];
      const before = outputs(p);
      const loss = step(p.args());
      const st = b.stackStatus(p.h);
      check(Number.isNaN(loss) && st[0] === b.codes.stage.forward && st[1] === 0 && outputs(p) === before, `${dtype} sparse W1[7, ${j}] non-finite in an unused row: ${loss}, status ${st}`);
    }
    // A dW1 that overflows: big x in eight rows of one column whose W1 row makes x·w ≈ 0.01; W2
    // only in the label's column, so each row's dZ1 has one sign: dW1[50, h] ≈ 8·big·0.8·(1 − A1²).
    {
      const big = dtype === 'float64' ? 1e308 : 3e38;
      const p = sparseProblem(dtype, X);
      for (const i of [0, 1, 2, 4, 5, 6, 9, 30]) {
        p.X[i * D + 50] = big;
        p.y[i] = 2;
      }
      p.W1.fill(0.01 / big, 50 * H, 51 * H);
      p.W2.fill(0);
      for (let h = 0; h < H; h++) p.W2[h * SPARSE.C + 2] = -1;
      const loss = step(p.args());
      const st = b.stackStatus(p.h);
      check(Number.isNaN(loss) && st[0] === b.codes.stage.grads && st[1] === 0, `${dtype} sparse dW1 overflowing: ${loss}, status ${st}`);
    }
  }
  b.setSparseInput(true);
  // X in a SharedArrayBuffer that a worker rewrites (rows flipped between zeros and dense, across
  // the cap) during the calls: every call a finite loss, and nothing read or written outside.
  {
    const sab = new SharedArrayBuffer(8 * B * D);
    const X = new Float64Array(sab);
    const p = sparseProblem('float64', X);
    p.X = X;
    const w = new Worker(`
      const { workerData } = require('node:worker_threads'); const X = new Float64Array(workerData.sab); const { B, D } = workerData;
      for (let pass = 0; ; pass++) {
        const first = pass % B, count = 1 + (pass * 7) % (B / 2);
        for (let i = first; i < first + count && i < B; i++) X.fill(0.5 + (pass & 1), i * D, (i + 1) * D);
        for (let i = 0; i < B; i++) X.fill(0, i * D, (i + 1) * D - 4);
      }`, { eval: true, workerData: { sab, B, D } });
    let finite = 0;
    for (let i = 0; i < 2000; i++) finite += Number.isFinite(step(p.args())) ? 1 : 0;
    await w.terminate();
    check(finite === 2000, `sparse X rewritten by a worker: ${2000 - finite} calls of 2000 not finite`);
  }
  // gatherRows: valid, every index out of range, every bad argument.
  {
    const X = Float64Array.from({ length: 15 }, (_, i) => i);
    const y = Int32Array.of(10, 11, 12, 13, 14);
    const ok = () => [X, 3, Int32Array.of(4, 0, 2, 1, 3), 1, 2, new Float64Array(6), y, new Int32Array(2)];
    const a = ok();
    b.gatherRows(...a);
    check(a[5].join() === '0,1,2,6,7,8' && a[7].join() === '10,12', `gatherRows: ${a[5]} ${a[7]}`);
    for (const bad of [-1, 5, 2 ** 31 - 1, -(2 ** 31)]) mustRefuse(() => { const c = ok(); c[2][1] = bad; b.gatherRows(...c); }, `gatherRows order[1] = ${bad}`);
    const names = ['X', 'D', 'order', 'start', 'B', 'Xb', 'y', 'yb'];
    for (let i = 0; i < names.length; i++) {
      for (const v of badValues(ok()[i])) {
        const c = ok();
        c[i] = v;
        refusedOrReturns(() => b.gatherRows(...c), `gatherRows ${names[i]} = ${describeValue(v)}`);
      }
    }
    for (const [start, B] of [[4, 2], [0, 6], [0.5, 1], [-1, 1], [2 ** 53, 1]]) mustRefuse(() => { const c = ok(); c[3] = start; c[4] = B; b.gatherRows(...c); }, `gatherRows start ${start} B ${B}`);
    for (let n = 0; n < 8; n++) mustRefuse(() => b.gatherRows(...ok().slice(0, n)), `gatherRows with ${n} arguments`);
    // Past 64 KB the gather is cut between the pool's threads, and its indices read in chunks of 512.
    const wide = Float32Array.from({ length: 2000 * 50 }, (_, i) => i);
    const many = Int32Array.from({ length: 1100 }, (_, i) => (i * 37) % 2000);
    const rows = new Float32Array(1100 * 50);
    b.gatherRows(wide, 50, many, 0, 1100, rows, new Int32Array(2000), new Int32Array(1100));
    check(rows[1099 * 50 + 7] === many[1099] * 50 + 7 && rows[600 * 50] === many[600] * 50, 'gatherRows of 1,100 rows cut between threads');
    many[700] = 2000;
    mustRefuse(() => b.gatherRows(wide, 50, many, 0, 1100, rows, new Int32Array(2000), new Int32Array(1100)), 'gatherRows order[700] = 2000 in the second chunk');
    for (const v of [1, 'true', null, undefined]) mustRefuse(() => b.setSparseInput(v), `setSparseInput(${describeValue(v)})`);
    for (const v of ['sse2', '', 2, null, undefined]) mustRefuse(() => b.setKernelSet(v), `setKernelSet(${describeValue(v)})`);
    check(b.getSparseInput() === true, 'getSparseInput after the refusals');
  }
  // allFinite (fit's check of X): its answers on both sides of the pool's 64 KB cut, every bad argument.
  {
    for (const [n, F] of [[100, Float64Array], [30000, Float32Array], [30000, Float64Array]]) {
      const a = new F(n);
      check(b.allFinite(a) === true, `allFinite of ${n} zeros`);
      for (const at of [0, n >> 1, n - 1]) {
        a[at] = -Infinity;
        check(b.allFinite(a) === false, `allFinite of ${n} with −Infinity at ${at}`);
        a[at] = 0;
      }
    }
    for (const v of badValues(new Float32Array(4))) refusedOrReturns(() => b.allFinite(v), `allFinite ${describeValue(v)}`);
    mustRefuse(() => b.allFinite(), 'allFinite with no arguments');
  }
  stillExact('after the sparse section');
}

// ---------------------------------------------------------------------------------------------
section('3. worker threads');

// Each worker prepares its own handle (an External belongs to the environment that made it).
const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const b = require(workerData.addon);
  const { kinds, widths, f32, args, loop } = workerData;
  args[0] = b.stackPrepare(kinds, widths, f32);
  const unbound = () => b.stackForwardBackward(...args);
  // The prepared step over the same buffers (stackBind(handle, ws, dX, ...params, ...grads)).
  const bound = b.stackBind(args[0], args[1], args[5], ...args.slice(8));
  const run = workerData.bound ? () => b.stackRun(bound, args[2], args[3], args[4], args[6], args[7]) : unbound;
  const ref = unbound();
  const out = () => [5, 12, 13, 14, 15].map((i) => args[i] ? Buffer.from(args[i].buffer, args[i].byteOffset, args[i].byteLength).toString('base64') : '').join('|');
  const refOut = out();
  let bad = 0;
  if (loop) { parentPort.postMessage({ looping: true }); for (;;) run(); }
  for (let i = 0; i < 200; i++) { if (!Object.is(run(), ref) || out() !== refOut) bad++; }
  for (let i = 0; i < 200; i++) { if (!Object.is(b.stackRun(bound, args[2], args[3], args[4], args[6], args[7]), ref) || out() !== refOut) bad++; }
  try { b.stackForwardBackward(); } catch (e) { if (!(e instanceof TypeError)) bad++; }
  parentPort.postMessage({ bad, loss: ref, out: refOut });
`;
const workerData = (p, loop, bound = false) => ({
  addon: ADDON, kinds: Int32Array.of(0, 1 + ACT[p.act], 0), widths: Int32Array.of(p.dims.D, p.dims.H, p.dims.H, p.dims.C),
  f32: p.dtype === 'float32', args: [null, ...p.args().slice(1)], loop, bound,
});

async function workers() {
  const probs = [randomProblem('float64', { B: 32, D: 40, H: 48, C: 7 }, 5, 'relu', 'mean', true), randomProblem('float32', { B: 32, D: 40, H: 48, C: 7 }, 6, 'tanh', 'sum', false), base];
  const refs = probs.map((p) => {
    const loss = step(p.args());
    return { loss, out: outputs(p) };
  });
  const ws = probs.map((p) => new Worker(WORKER, { eval: true, workerData: workerData(p, false) }));
  const results = await Promise.all(ws.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  results.forEach((r, i) => check(r.bad === 0 && Object.is(r.loss, refs[i].loss) && r.out === refs[i].out, `worker ${i}: ${r.bad} inexact calls`));
  await Promise.all(ws.map((w) => w.terminate()));
  // Terminated while it loops on calls at a size that keeps it in native code most of the time,
  // unbound and bound (a bound step's references released when its environment goes).
  for (let round = 0; round < 4; round++) {
    const big = randomProblem('float64', { B: 128, D: 256, H: 256, C: 10 }, 7 + round, 'relu', 'mean', true);
    const w = new Worker(WORKER, { eval: true, workerData: workerData(big, true, round % 2 === 1) });
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
  const smallBound = bind(small.bindArgs());
  const small32Bound = bind(small32.bindArgs());
  const midBound = bind(mid.bindArgs());
  const nan = problem('float64', DIMS, toy.inputs);
  nan.b2[2] = NaN;
  // The exact mode on handles of their own (its scratch buffers grow per thread and size, never per call).
  const exactOf = (p) => {
    p.h = b.stackPrepare(Int32Array.of(0, 1 + ACT[p.act], 0), Int32Array.of(p.dims.D, p.dims.H, p.dims.H, p.dims.C), p.dtype === 'float32');
    try {
      b.stackExact(p.h, true);
      return p;
    } catch {
      return null; // this machine's LibTorch kernels are not reproduced: the loops below skip it
    }
  };
  const exactSmall = exactOf(problem('float64', DIMS, toy.inputs));
  const exactMid = exactOf(randomProblem('float32', { B: 16, D: 24, H: 20, C: 5 }, 9, 'tanh', 'mean', true));
  const threads = b.getNumThreads();
  const sparse = sparseProblem('float32', sparseData('float32', 300, 81));
  const sparseBound = bind(sparse.bindArgs());
  const pastCap = sparseProblem('float64', sparseData('float64', (SPARSE.B * SPARSE.D) / 4 - 1 - (SPARSE.D - 1), 82, 1));
  const order = Int32Array.of(3, 0, 2, 1);
  const gathered = new Float64Array(4 * DIMS.D);
  const gatheredY = new Int32Array(4);
  // Sizes the pool cuts (native/core/data.h, optimizer.h): 120 KB gathered, 2^16 elements updated.
  const wide = new Float32Array(2000 * 50).fill(0.5);
  const wideOrder = Int32Array.from({ length: 600 }, (_, i) => (i * 37) % 2000);
  const wideRows = new Float32Array(600 * 50);
  const wideY = new Int32Array(2000);
  const wideYb = new Int32Array(600);
  const [W2e16, G2e16, M2e16, S2e16, SM2e16] = [0.5, 0.25, 0, 0, 0].map((v) => new Float32Array(2 ** 16).fill(v));
  const kinds = Int32Array.of(0, 2, 0);
  const widths = Int32Array.of(5, 10, 10, 3);
  const loops = [
    ['stackForwardBackward float64', () => step(small.args())],
    ['stackForwardBackward float32, no dX', () => step(small32.args())],
    ['stackForwardBackward through OpenBLAS', () => step(mid.args())],
    ['stackForward', () => fwd(small.forwardArgs())],
    ...(exactSmall && exactMid ? [
      ['exact stackForwardBackward float64', () => step(exactSmall.args())],
      ['exact stackForwardBackward float32 through OpenBLAS', () => step(exactMid.args())],
      ['exact stackForward', () => fwd(exactMid.forwardArgs())],
      ['stackExact on and off', () => { b.stackExact(exactSmall.h, false); b.stackExact(exactSmall.h, true); }],
    ] : []),
    ['stackPrepare (a handle made and dropped per call)', () => b.stackPrepare(kinds, widths, false)],
    ['stackLayout', () => b.stackLayout(small.h, 4)],
    ['stackStatus', () => b.stackStatus(small.h)],
    ['stackBind (a bound step made and dropped per call)', () => bind(small.bindArgs())],
    ['stackRun float64', () => run(small.runArgs(smallBound))],
    ['stackRun float32, no dX', () => run(small32.runArgs(small32Bound))],
    ['stackRun through OpenBLAS', () => run(mid.runArgs(midBound))],
    ['refused: stackRun on a handle', () => run(small.runArgs(small.h))],
    ['refused: stackRun X over a bound gradient', () => { const a = small.runArgs(smallBound); a[1] = small.dW1.subarray(0, 20); run(a); }],
    ['refused: stackRun B other than dX\'s rows', () => run([smallBound, small.X.subarray(0, 15), small.y.subarray(0, 3), 3, 0, false])],
    ['refused: stackBind dW1 over W1', () => { const a = small.bindArgs(); a[7] = a[3]; bind(a); }],
    ['gemm', () => b.gemm(true, false, 20, 20, 20, 1, A, G, 0, Cg)],
    ['optimizerUpdate adam', () => b.optimizerUpdate(A, G, Am, Av, 3, 1e-3, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['optimizerUpdate nesterov float32', () => b.optimizerUpdate(A32, G32, Am32, null, 2, 1e-3, 2, 0.9, 0.9, 0.999, 1e-8, 0.01)],
    ['stackForwardBackward, the sparse first layer', () => step(sparse.args())],
    ['stackRun, the sparse first layer', () => run(sparse.runArgs(sparseBound))],
    ['stackForwardBackward past the sparse cap by a row', () => step(pastCap.args())],
    ['gatherRows', () => b.gatherRows(small.X, DIMS.D, order, 0, 4, gathered, small.y, gatheredY)],
    ['gatherRows cut between threads', () => b.gatherRows(wide, 50, wideOrder, 0, 600, wideRows, wideY, wideYb)],
    ['allFinite cut between threads', () => b.allFinite(wide)],
    ['optimizerUpdate cut between threads', () => b.optimizerUpdate(W2e16, G2e16, M2e16, null, 1, 1e-6, 2, 0.9, 0.9, 0.999, 1e-8, 0, 0, null, S2e16, SM2e16, null, null)],
    ['refused: gatherRows index out of range', () => b.gatherRows(small.X, DIMS.D, Int32Array.of(0, 9, 1, 2), 0, 4, gathered, small.y, gatheredY)],
    ['setSparseInput and getSparseInput', () => b.setSparseInput(b.getSparseInput())],
    ['setKernelSet and getKernelSet', () => b.setKernelSet(b.getKernelSet())],
    ['getNumThreads', () => b.getNumThreads()],
    ['setNumThreads', () => b.setNumThreads(threads)],
    ['refused: no arguments', () => b.stackForwardBackward()],
    ['refused: not a handle', () => b.stackForwardBackward(new Int8Array(4))],
    ['refused: wrong length', () => { const a = small.args(); a[10] = new Float64Array(3); step(a); }],
    ['refused: label out of range', () => { const a = small.args(); a[3] = new Int32Array([0, 1, 7, 0]); step(a); }],
    ['refused: aliasing', () => { const a = small.args(); a[12] = a[8]; step(a); }],
    ['failed: NaN found after the forward pass', () => { if (!Number.isNaN(step(nan.args()))) throw new Error('accepted'); throw new RangeError('failed as it should'); }],
    ['refused: stackForward with a bad B', () => { const a = small.forwardArgs(); a[3] = -1; fwd(a); }],
    ['refused: stackPrepare with an activation changing the width', () => b.stackPrepare(kinds, Int32Array.of(5, 10, 11, 3), false)],
    ['refused: stackLayout past 2^32 − 1', () => b.stackLayout(small.h, 2 ** 30)],
    ['refused: gemm too small', () => b.gemm(false, false, 21, 20, 20, 1, A, G, 0, Cg)],
    ['refused: setNumThreads(0)', () => b.setNumThreads(0)],
    ['refused: optimizerUpdate g too short', () => b.optimizerUpdate(A, G.subarray(1), null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
    ['refused: optimizerUpdate aliasing', () => b.optimizerUpdate(A, A, null, null, 0, 0.1, 1, 0.9, 0.9, 0.999, 1e-8, 0)],
  ];
  await measureLoops(loops, N);
  stillExact('after the loops');
}

(async () => {
  await workers();
  await sparseSection();
  await leakLoops();
  await finish('SANITIZE-OK', { fixtures: cases.length });
})().catch((e) => {
  process.stdout.write(`[battery] crashed in JavaScript: ${e && e.stack}\n`);
  process.exitCode = 1;
});
