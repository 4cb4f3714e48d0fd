// What both batteries of the sanitizer job share (run.cjs for the core addon, torch.cjs for the
// LibTorch one): the check tally, the golden fixtures, the bad values tried at every argument, the
// heap probe, the closing line. Plain CommonJS that loads no addon of its own, so every native
// instruction a battery reaches is the sanitized addon's (or Node's, or LibTorch's).
'use strict';
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');

const ROOT = join(__dirname, '..', '..');
const EPS = { float64: 2 ** -52, float32: 2 ** -23 };
const F = { float64: Float64Array, float32: Float32Array };
const ACT = { relu: 0, sigmoid: 1, tanh: 2 }; // layer code − 1
const RED = { mean: 0, sum: 1, none: 2 };

const failures = [];
const tally = { checks: 0, refused: 0, accepted: 0 };
const check = (ok, what) => {
  tally.checks++;
  if (!ok && failures.length < 50) failures.push(what);
};
const section = (name) => process.stdout.write(`[battery] ${name}\n`);

/** fn must throw a TypeError/RangeError, or return; anything else is a failure. Whether it threw. */
function refusedOrReturns(fn, what) {
  try {
    fn();
    tally.accepted++;
    return false;
  } catch (e) {
    check(e instanceof TypeError || e instanceof RangeError, `${what}: threw ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    tally.refused++;
    return true;
  }
}
const mustRefuse = (fn, what) => check(refusedOrReturns(fn, what), `${what}: accepted`);

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

const bytesOf = (a) => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') : '');

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

/** The golden fixtures of test/fixtures (PyTorch autograd on a Linear–act–Linear stack), JSON and safetensors alike. */
function fixtures() {
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
  return cases;
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

const describeValue = (v) => (typeof v === 'symbol' ? 'Symbol' : typeof v === 'bigint' ? `${v}n` : ArrayBuffer.isView(v) ? `${v.constructor.name}(${v.length})` : typeof v === 'function' ? 'function'
  : Array.isArray(v) ? `[${Array.from(v, describeValue).join(', ')}]` : JSON.stringify(v) ?? String(v));

/**
 * The bytes the ASan allocator holds (all malloc in the process), through ASan's own interface,
 * read by an addon built beside the sanitized one (scripts/sanitize/heap_probe.cc, at
 * $HANDGRAD_HEAP_PROBE), after a full GC. Unreachable leaks are LeakSanitizer's at exit; this
 * catches memory kept reachable per call.
 */
function heapProbe() {
  let probe = null;
  try {
    probe = require(process.env.HANDGRAD_HEAP_PROBE || join(ROOT, 'build-asan', 'heap_probe.node'));
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

/**
 * Each loop's fn run 200 times, then twice n times, with the heap measured after each (V8's
 * background work moves it by up to ~100 kB either way; a per-call leak grows it in both rounds).
 * fn must always return or always throw a TypeError/RangeError.
 */
async function leakLoops(loops, n) {
  const heap = heapProbe();
  for (const [name, fn] of loops) {
    let thrown = 0;
    const run = (count) => {
      for (let i = 0; i < count; i++) {
        try {
          fn();
        } catch (e) {
          if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
          thrown++;
        }
      }
    };
    // Turns of the event loop between full GCs before each measure: Node runs Node-API
    // finalizers (the stack handles', the bound steps') from it rather than from the GC itself,
    // so an External the GC found dead is freed only at the next turn.
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        global.gc();
        await new Promise((r) => setImmediate(r));
      }
      return heap.settle();
    };
    run(200);
    const h0 = await settle();
    run(n);
    const h1 = await settle();
    run(n);
    const h2 = await settle();
    const grew = Math.min(h1 - h0, h2 - h1);
    check(thrown === 0 || thrown === 2 * n + 200, `${name}: threw ${thrown} times of ${2 * n + 200}`);
    if (heap.available) check(grew < 16 * n, `${name}: the heap grew by ${h1 - h0} and ${h2 - h1} bytes in two rounds of ${n} calls`);
    const signed = (d) => `${d >= 0 ? '+' : ''}${d}`;
    process.stdout.write(`[battery]   ${name}: 2 × ${n} calls${heap.available ? `, heap ${signed(h1 - h0)} and ${signed(h2 - h1)} bytes` : ''}\n`);
  }
}

/**
 * Drains the finalizers still queued (Node runs those of collected Externals from the event loop
 * and drops the rest at exit, which LeakSanitizer would then report), then prints `okLine` and
 * the tally, or the failures with exit code 1.
 */
async function finish(okLine, extra = {}) {
  for (let i = 0; i < 4; i++) {
    global.gc();
    await new Promise((r) => setImmediate(r));
  }
  if (failures.length) {
    process.stdout.write(`[battery] ${failures.length} failure(s) of ${tally.checks} checks:\n  ${failures.join('\n  ')}\n`);
    process.exitCode = 1; // not process.exit(): a normal teardown keeps LeakSanitizer's report short
    return;
  }
  process.stdout.write(`${okLine} ${JSON.stringify({ ...tally, ...extra })}\n`);
}

module.exports = {
  ROOT, EPS, F, ACT, RED, check, section, refusedOrReturns, mustRefuse, errEps, rand, bytesOf, fixtures, detached, badValues,
  describeValue, leakLoops, finish,
};
