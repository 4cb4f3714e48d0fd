// The battery that scripts/sanitize.mjs runs under AddressSanitizer against
// build-asan/handgrad_torch.node, the LibTorch reference addon (the path comes as argv[2]). Plain
// CommonJS that loads that one .node and nothing of dist/ (not the core addon either), so every
// native instruction it reaches is that addon's, LibTorch's or Node's:
//   1. the golden fixtures (test/fixtures: PyTorch autograd) through sequentialForwardBackward (dX
//      or not, accumulating, with and without the workspace) and sequentialForward; a deeper stack
//      of every layer kind against a float64 forward pass written here, with each option of
//      F.cross_entropy (weight, ignoreIndex, labelSmoothing, 'none' with gradOutput, probability
//      targets) against PyTorch 1.13's formulas written here; optimizerRun for each
//      optimizer and dtype against torch.optim's update rules written here in float64;
//   2. bad input at every argument of every export: wrong types, dtypes, lengths, detached and
//      offset buffers, Arrays of the wrong length or holding a wrong element, a getter that
//      detaches a buffer while the Arrays are read, descriptions wrong in each way, labels out of
//      range, NaN/±Infinity inputs, outputs over inputs or each other, short argument lists,
//      thread counts — each a TypeError/RangeError (or a normal return where the call is in fact
//      valid) that writes nothing, the next valid call exact to the bit; overflow inside the
//      stack reported through sequentialStatus;
//   3. the addon in worker threads (loaded, used, and terminated mid-loop);
//   4. 2 × 5 000 calls of each export, valid and refused, with the heap measured by ASan itself
//      (LeakSanitizer then reports at exit whatever was lost).
// Prints SANITIZE-TORCH-OK and a summary on success; exits 1 with the failures otherwise.
'use strict';
const { Worker } = require('node:worker_threads');
const {
  F, ACT, RED, check, section, refusedOrReturns, mustRefuse, errEps, rand, bytesOf, fixtures, detached, badValues, describeValue, leakLoops, finish,
} = require('./battery.cjs');

const ADDON = process.argv[2] || process.env.HANDGRAD_ASAN_ADDON;
const b = require(ADDON);
const STAGE = { ok: 0, input: 1, forward: 2, loss: 3, grads: 4 }; // native/core/stack.h Stage

// ---------------------------------------------------------------------------------------------
section('1. fixtures, a deeper stack, optimizers');

/**
 * A sequentialForwardBackward call over a layer stack and its buffers: args() is the argument
 * list (X, y, B, kinds, widths, params, grads, dX, reduction, accumulate, ws), then, when `loss`
 * gives F.cross_entropy's options, (weight, ignoreIndex, labelSmoothing, targets, gradOutput), each
 * array in the dtype (y is null with targets); outputs() what it writes.
 */
function problem(dtype, B, kinds, widths, data, { red = 'mean', withDX = true, withWs = true, loss = null } = {}) {
  const A = F[dtype];
  const C = widths[widths.length - 1];
  const shapes = [];
  kinds.forEach((k, i) => {
    if (k === 0) shapes.push(widths[i] * widths[i + 1], widths[i + 1]);
  });
  const p = {
    dtype, B, C, red, kinds: Int32Array.from(kinds), widths: Int32Array.from(widths),
    X: A.from(data.X), y: Int32Array.from(data.y), params: data.params.map((v) => A.from(v)),
    grads: shapes.map((n) => new A(n)), dX: withDX ? new A(B * widths[0]) : null,
  };
  // [each layer's output …, probs, ws length, the rows' losses ('none')]: the length is not the last.
  p.at = b.sequentialLayout(p.X, B, p.kinds, p.widths);
  p.ws = withWs ? new A(p.at[kinds.length + 1]) : null;
  const arr = (v) => (v == null ? null : A.from(v));
  p.loss = loss && { weight: arr(loss.weight), ignoreIndex: loss.ignoreIndex ?? -100, labelSmoothing: loss.labelSmoothing ?? 0, targets: arr(loss.targets), gradOutput: arr(loss.gradOutput) };
  p.args = (accumulate = false) => {
    const l = p.loss;
    const head = [p.X, l && l.targets ? null : p.y, B, p.kinds, p.widths, p.params, p.grads, p.dX, RED[red], accumulate, p.ws];
    return l ? [...head, l.weight, l.ignoreIndex, l.labelSmoothing, l.targets, l.gradOutput] : head;
  };
  p.forwardArgs = (logits = new A(B * C)) => [p.X, B, p.kinds, p.widths, p.params, logits];
  p.outputs = () => [p.dX, ...p.grads, p.ws].map(bytesOf).join('|');
  p.fill = (v) => [p.dX, ...p.grads, p.ws].forEach((t) => t && t.fill(v));
  return p;
}
const step = (a) => b.sequentialForwardBackward(...a);
const fwd = (a) => b.sequentialForward(...a);

/** A fixture case as a problem: Linear–act–Linear, W_k [in, out] as the fixtures store them. */
function fixtureProblem(c, opts) {
  const { B, D, H, C } = c.dims;
  const i = c.inputs;
  return problem(c.dtype, B, [0, 1 + ACT[c.activation], 0], [D, H, H, C], { X: i.X, y: i.y, params: [i.W1, i.b1, i.W2, i.b2] }, { red: c.reduction, ...opts });
}

const cases = fixtures();
for (const c of cases) {
  const p = fixtureProblem(c);
  const loss = step(p.args());
  check(errEps([loss], c.expected.loss, c.dtype) <= 8, `${c.name}: loss ${loss} vs ${c.expected.loss[0]}`);
  const names = ['dW1', 'db1', 'dW2', 'db2'];
  p.grads.forEach((g, k) => check(errEps(g, c.expected[names[k]], c.dtype) <= 8, `${c.name}: ${names[k]} ${errEps(g, c.expected[names[k]], c.dtype)} eps`));
  check(errEps(p.dX, c.expected.dX, c.dtype) <= 8, `${c.name}: dX ${errEps(p.dX, c.expected.dX, c.dtype)} eps`);
  // sequentialForward writes the logits the step left in its workspace (layer 3's output).
  const L = p.kinds.length;
  const logits = new F[c.dtype](c.dims.B * c.dims.C);
  check(fwd(p.forwardArgs(logits)) === true && bytesOf(logits) === bytesOf(p.ws.subarray(p.at[L - 1], p.at[L - 1] + logits.length)), `${c.name}: sequentialForward's logits`);
  // Without dX and the workspace, the same gradients; accumulating twice, twice them.
  const q = fixtureProblem(c, { withDX: false, withWs: false });
  check(Object.is(step(q.args()), loss) && q.grads.every((g, k) => bytesOf(g) === bytesOf(p.grads[k])), `${c.name}: no dX, no workspace`);
  q.fill(0);
  step(q.args(true));
  step(q.args(true));
  check(q.grads.every((g, k) => errEps(Array.from(g, (v) => v / 2), c.expected[names[k]], c.dtype) <= 8), `${c.name}: accumulate twice`);
}

/** The stack's output in float64 (Z = A·W + b, then each activation), row-major [B, C]. */
function logitsOf(p) {
  const { B, kinds, widths } = p;
  let A = Array.from(p.X);
  let k = 0;
  kinds.forEach((kind, i) => {
    const n = widths[i];
    const m = widths[i + 1];
    if (kind === 0) {
      const [W, bias] = [p.params[k], p.params[k + 1]];
      k += 2;
      const Z = new Array(B * m).fill(0);
      for (let r = 0; r < B; r++) for (let j = 0; j < m; j++) {
        let s = bias[j];
        for (let t = 0; t < n; t++) s += A[r * n + t] * W[t * m + j];
        Z[r * m + j] = s;
      }
      A = Z;
    } else {
      A = A.map([(z) => Math.max(z, 0), (z) => 1 / (1 + Math.exp(-z)), Math.tanh][kind - 1]);
    }
  });
  return A;
}

/**
 * F.cross_entropy (PyTorch 1.13) of the stack's output in float64, as the addon returns it ('none':
 * the sum of the rows'). Class labels: row b's loss is (1 − ε)·w[y_b]·(−log p_b[y_b]) + ε/C·Σ_c
 * w[c]·(−log p_b[c]), an ignored row 0; 'mean' divides by Σ w[y_b] over the rows counted. Probability
 * targets t: −Σ_c w[c]·((1 − ε)·t_bc + ε/C)·log p_b[c]; 'mean' divides by B.
 */
function lossOf(p) {
  const { B, y } = p;
  const C = p.widths[p.widths.length - 1];
  const { weight = null, ignoreIndex = -100, labelSmoothing: eps = 0, targets = null } = p.loss || {};
  const w = (c) => (weight ? weight[c] : 1);
  const Z = logitsOf(p);
  let total = 0;
  let denominator = 0;
  for (let r = 0; r < B; r++) {
    const z = Z.slice(r * C, (r + 1) * C);
    const mx = Math.max(...z);
    const lse = Math.log(z.reduce((s, v) => s + Math.exp(v - mx), 0)) + mx;
    if (targets) {
      for (let c = 0; c < C; c++) total -= w(c) * ((1 - eps) * targets[r * C + c] + eps / C) * (z[c] - lse);
      denominator += 1;
    } else if (y[r] !== ignoreIndex) {
      let smooth = 0;
      for (let c = 0; c < C; c++) smooth -= w(c) * (z[c] - lse);
      total += (1 - eps) * w(y[r]) * (lse - z[y[r]]) + (eps / C) * smooth;
      denominator += w(y[r]);
    }
  }
  return p.red === 'mean' ? total / denominator : total;
}

/** A stack of every layer kind, an activation first, three Linears. */
function deepProblem(dtype, seed, opts) {
  const B = 6;
  const kinds = [3, 0, 1, 0, 2, 0];
  const widths = [7, 7, 9, 9, 8, 8, 5];
  const params = [];
  kinds.forEach((k, i) => {
    if (k === 0) params.push(rand(widths[i] * widths[i + 1], seed + i, 1 / Math.sqrt(widths[i])), rand(widths[i + 1], seed + 50 + i, 0.1));
  });
  const y = Array.from(rand(B, seed + 99), (v) => Math.min(4, Math.floor(((v + 1) / 2) * 5)));
  return problem(dtype, B, kinds, widths, { X: rand(B * 7, seed), y, params }, opts);
}
for (const dtype of ['float64', 'float32']) {
  for (const red of ['mean', 'sum']) {
    const p = deepProblem(dtype, 11, { red });
    const loss = step(p.args());
    const want = lossOf(p); // on the dtype's own inputs, so only the arithmetic differs
    check(errEps([loss], [want], dtype) <= 16, `${dtype} ${red} deep stack: loss ${loss} vs ${want} (${errEps([loss], [want], dtype)} eps)`);
    check([p.dX, ...p.grads].every((g) => g.every(Number.isFinite) && g.some((v) => v !== 0)), `${dtype} ${red} deep stack: gradients`);
  }
}

/** With an ignoreIndex, row 1 is ignored and row 0 counted (a 'mean' over no row is refused). */
function ignoreOne(p) {
  if (!p.loss || p.loss.ignoreIndex < 0) return p;
  p.y[1] = p.loss.ignoreIndex;
  if (p.y[0] === p.loss.ignoreIndex) p.y[0] = (p.y[0] + 1) % p.C;
  return p;
}

/** F.cross_entropy's options for the deep stack (B = 6, C = 5), each alone and together. */
const LOSS_OPTIONS = (() => {
  const weight = [0.5, 1, 2, 1.5, 0.25];
  const targets = Array.from({ length: 6 }, (_, r) => {
    const row = Array.from({ length: 5 }, (_, c) => 1 + ((r * 7 + c * 3) % 5));
    const s = row.reduce((a, v) => a + v, 0);
    return row.map((v) => v / s);
  }).flat();
  const gradOutput = [0.5, -1, 2, 0.25, 1, -0.75];
  return [
    ['weight', { weight }], ['ignoreIndex', { ignoreIndex: 2 }], ['labelSmoothing', { labelSmoothing: 0.2 }],
    ['weight+ignoreIndex+labelSmoothing', { weight, ignoreIndex: 2, labelSmoothing: 0.1 }],
    ['targets', { targets }], ['targets+weight+labelSmoothing', { targets, weight, labelSmoothing: 0.3 }],
  ].flatMap(([name, o]) => ['mean', 'sum', 'none'].map((red) => [`${name} ${red}`, red, red === 'none' ? { ...o, gradOutput } : o]));
})();
for (const dtype of ['float64', 'float32']) {
  for (const [name, red, loss] of LOSS_OPTIONS) {
    const p = deepProblem(dtype, 17, { red, loss });
    ignoreOne(p);
    const got = step(p.args());
    const want = lossOf(p);
    check(errEps([got], [want], dtype) <= 16, `${dtype} deep stack, ${name}: loss ${got} vs ${want} (${errEps([got], [want], dtype)} eps)`);
    check([p.dX, ...p.grads].every((g) => g.every(Number.isFinite) && g.some((v) => v !== 0)), `${dtype} deep stack, ${name}: gradients`);
    if (red === 'none') {
      // The rows' losses land in the workspace at sequentialLayout's last offset and sum to the loss.
      const rows = p.ws.subarray(p.at[p.at.length - 1], p.at[p.at.length - 1] + p.B);
      check(errEps([rows.reduce((s, v) => s + v, 0)], [want], dtype) <= 16, `${dtype} deep stack, ${name}: the rows' losses in ws`);
    }
  }
}

/** torch.optim's update rules in float64 over a gradient sequence (the documented algorithms, dampening 0, amsgrad off). */
function optimizerRef(name, W0, grads, h) {
  const W = Array.from(W0);
  const m = new Array(W.length).fill(0);
  const v = new Array(W.length).fill(0);
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < W.length; i++) {
      if (name === 'adamw') W[i] *= 1 - h.lr * h.weightDecay;
      const gi = name === 'adamw' ? g[i] : g[i] + h.weightDecay * W[i];
      if (name === 'sgd') W[i] -= h.lr * gi;
      else if (name === 'momentum' || name === 'nesterov') {
        m[i] = t === 1 ? gi : h.momentum * m[i] + gi;
        W[i] -= h.lr * (name === 'nesterov' ? gi + h.momentum * m[i] : m[i]);
      } else {
        m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
        v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
        const denom = Math.sqrt(v[i]) / Math.sqrt(1 - h.beta2 ** t) + h.epsilon;
        W[i] -= (h.lr / (1 - h.beta1 ** t)) * (m[i] / denom);
      }
    }
  });
  return W;
}
const OPT = ['sgd', 'momentum', 'nesterov', 'adam', 'adamw'];
const H = { lr: 0.05, momentum: 0.8, beta1: 0.9, beta2: 0.99, epsilon: 1e-6 };
const optArgs = (name, W, grads, h = H, weightDecay = 0) => [name, W, grads, h.lr, h.momentum, h.beta1, h.beta2, h.epsilon, weightDecay];
for (const dtype of ['float64', 'float32']) {
  for (const name of OPT) {
    for (const weightDecay of [0, 0.1]) {
      const W = F[dtype].from(rand(300, 21));
      const grads = Array.from({ length: 6 }, (_, s) => F[dtype].from(rand(300, 30 + s)));
      const want = optimizerRef(name, W, grads, { ...H, weightDecay });
      b.optimizerRun(...optArgs(name, W, grads, H, weightDecay));
      // float32: the update computed in float32, each step rounding (a few eps of the dtype).
      check(errEps(W, want, dtype) <= 64, `optimizerRun ${name} ${dtype} weightDecay ${weightDecay}: ${errEps(W, want, dtype)} eps`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
section('2. bad input at every argument of every export');

const toy = cases.find((c) => c.name.startsWith('seed-toy'));
const base = fixtureProblem(toy);
const baseLoss = step(base.args());
const baseOut = base.outputs();
function stillExact(what) {
  const p = fixtureProblem(toy);
  check(Object.is(step(p.args()), baseLoss) && p.outputs() === baseOut, `${what}: the next valid call is not exact`);
}

/** A view's bytes, or '' for anything else and a detached view. */
const liveBytes = (v) => (ArrayBuffer.isView(v) && v.buffer.byteLength ? bytesOf(v) : '');

/** Bad values for argument `valid`; for an Array of typed arrays, also that Array one short, one long, and with each element replaced by each of its bad values. */
function badArgs(valid) {
  if (!Array.isArray(valid)) return badValues(valid);
  const out = [...badValues(valid), valid.slice(1), [...valid, valid[0]], [...valid, undefined], new Array(valid.length)];
  valid.forEach((t, i) => {
    for (const v of badValues(t)) out.push(valid.map((u, j) => (i === j ? v : u)));
  });
  return out;
}

const SNAMES = ['X', 'y', 'B', 'kinds', 'widths', 'params', 'grads', 'dX', 'reduction', 'accumulate', 'ws'];
const FNAMES = ['X', 'B', 'kinds', 'widths', 'params', 'logits'];
for (const dtype of ['float64', 'float32']) {
  const fresh = () => {
    const p = fixtureProblem({ ...toy, dtype });
    p.fill(7);
    return p;
  };
  // Every position, every bad value; what it wrote must be nothing when refused.
  for (let i = 0; i < SNAMES.length; i++) {
    for (const v of badArgs(fresh().args()[i])) {
      const p = fresh();
      const a = p.args();
      a[i] = v;
      const before = p.outputs();
      if (refusedOrReturns(() => step(a), `${dtype} sequentialForwardBackward ${SNAMES[i]} = ${describeValue(v)}`)) {
        check(p.outputs() === before, `${dtype} sequentialForwardBackward ${SNAMES[i]} = ${describeValue(v)}: wrote into the outputs and threw`);
      }
    }
  }
  for (let i = 0; i < FNAMES.length; i++) {
    for (const v of badArgs(fresh().forwardArgs()[i])) {
      const a = fresh().forwardArgs(new F[dtype](toy.dims.B * toy.dims.C).fill(7));
      a[i] = v;
      const before = liveBytes(a[5]);
      if (refusedOrReturns(() => fwd(a), `${dtype} sequentialForward ${FNAMES[i]} = ${describeValue(v)}`) && before) {
        check(bytesOf(a[5]) === before, `${dtype} sequentialForward ${FNAMES[i]} = ${describeValue(v)}: wrote into logits and threw`);
      }
    }
  }
  const layoutArgs = (p) => [p.X, p.B, p.kinds, p.widths];
  for (let i = 0; i < 4; i++) {
    for (const v of badArgs(layoutArgs(fresh())[i])) {
      const a = layoutArgs(fresh());
      a[i] = v;
      refusedOrReturns(() => b.sequentialLayout(...a), `${dtype} sequentialLayout ${['X', 'B', 'kinds', 'widths'][i]} = ${describeValue(v)}`);
    }
  }
  // Argument lists cut short, or with extra arguments.
  for (let n = 0; n < 10; n++) mustRefuse(() => step(fresh().args().slice(0, n)), `${dtype} sequentialForwardBackward with ${n} arguments`);
  for (let n = 0; n < 6; n++) mustRefuse(() => fwd(fresh().forwardArgs().slice(0, n)), `${dtype} sequentialForward with ${n} arguments`);
  refusedOrReturns(() => step([...fresh().args(), 1, 2]), `${dtype} sequentialForwardBackward with extra arguments`);

  // The loss options (arguments 11–15) at every bad value, on problems that use them all: class
  // labels (weight, ignoreIndex, labelSmoothing) and probability targets (y null), both 'none' with
  // gradOutput; refused or a normal return, nothing written when refused.
  const LNAMES = ['weight', 'ignoreIndex', 'labelSmoothing', 'targets', 'gradOutput'];
  const withLoss = LOSS_OPTIONS.filter(([name, red]) => red === 'none' && (name === 'weight+ignoreIndex+labelSmoothing none' || name === 'targets+weight+labelSmoothing none'));
  for (const [name, red, loss] of withLoss) {
    const freshL = () => {
      const p = ignoreOne(deepProblem(dtype, 17, { red, loss }));
      p.fill(7);
      return p;
    };
    const lossBase = freshL();
    const lossRef = step(lossBase.args());
    const lossOut = lossBase.outputs();
    for (let i = 11; i < 16; i++) {
      for (const v of badArgs(freshL().args()[i])) {
        const p = freshL();
        const a = p.args();
        a[i] = v;
        const before = p.outputs();
        if (refusedOrReturns(() => step(a), `${dtype} ${name}: ${LNAMES[i - 11]} = ${describeValue(v)}`)) {
          check(p.outputs() === before, `${dtype} ${name}: ${LNAMES[i - 11]} = ${describeValue(v)}: wrote into the outputs and threw`);
        }
      }
    }
    // Each output over each loss array (whole, or shifted by one element): refused before any write.
    for (const j of [11, 14, 15]) {
      if (freshL().args()[j] === null) continue;
      for (const [o, get, set] of [['dX', (a) => a[7], (a, v) => (a[7] = v)], ['ws', (a) => a[10], (a, v) => (a[10] = v)],
        ['grads[1]', (a) => a[6][1], (a, v) => (a[6] = a[6].map((u, k) => (k === 1 ? v : u)))]]) {
        for (const shift of [0, 1]) {
          const a = freshL().args();
          const target = a[j];
          const out = get(a);
          const elem = out.constructor.BYTES_PER_ELEMENT;
          const big = new ArrayBuffer(target.byteLength + (out.length + 2) * elem);
          new Uint8Array(big).set(new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
          a[j] = new target.constructor(big, 0, target.length);
          set(a, new out.constructor(big, shift * elem, out.length));
          mustRefuse(() => step(a), `${dtype} ${name}: ${o} over ${LNAMES[j - 11]} (shift ${shift})`);
        }
      }
    }
    const again = freshL();
    check(Object.is(step(again.args()), lossRef) && again.outputs() === lossOut, `${dtype} ${name}: the next valid call is not exact`);
  }

  // A getter on the params or grads Array that detaches X's, a param's or dX's buffer while the
  // Arrays are read: the tensors are read after, so the detached one is refused by name.
  for (const [list, victim] of [[5, 'X'], [5, 'W1'], [6, 'X'], [6, 'dX'], [6, 'db2']]) {
    const p = fresh();
    const a = p.args();
    const target = { X: p.X, W1: p.params[0], dX: p.dX, db2: p.grads[3] }[victim];
    const arr = [...a[list]];
    Object.defineProperty(arr, 0, {
      get() {
        if (target.buffer.byteLength) structuredClone(target.buffer, { transfer: [target.buffer] });
        return a[list][0];
      },
    });
    a[list] = arr;
    mustRefuse(() => step(a), `${dtype} ${victim} detached by a getter on ${SNAMES[list]}[0]`);
  }

  // Labels out of range, at each position.
  for (let k = 0; k < toy.dims.B; k++) {
    for (const bad of [-1, toy.dims.C, 2 ** 31 - 1, -(2 ** 31)]) {
      const p = fresh();
      p.y[k] = bad;
      const before = p.outputs();
      mustRefuse(() => step(p.args()), `${dtype} y[${k}] = ${bad}`);
      check(p.outputs() === before, `${dtype} y[${k}] = ${bad}: wrote into the outputs`);
    }
  }
  // NaN and ±Infinity at every index of every input: refused by name, nothing written.
  for (const [name, get] of [['X', (p) => p.X], ...['W1', 'b1', 'W2', 'b2'].map((n, k) => [n, (p) => p.params[k]])]) {
    for (let k = 0; k < get(base).length; k++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const p = fresh();
        get(p)[k] = bad;
        const before = p.outputs();
        mustRefuse(() => step(p.args()), `${dtype} ${bad} at ${name}[${k}]`);
        check(p.outputs() === before, `${dtype} ${bad} at ${name}[${k}]: wrote into the outputs`);
        mustRefuse(() => fwd(p.forwardArgs()), `${dtype} sequentialForward ${bad} at ${name}[${k}]`);
      }
    }
  }
  // Finite inputs whose forward pass or loss overflow: NaN (or false) and sequentialStatus at that stage.
  {
    // Z = X·W past the largest finite value; logits ±big/1 whose difference (the loss) overflows.
    const big = dtype === 'float64' ? 1.7e308 : 3.3e38;
    const one = (X, W) => problem(dtype, 1, [0], [2, 2], { X, y: [1], params: [W, [0, 0]] });
    const cases2 = [['Z', one([1e10, 1e10], [big, big, big, big]), STAGE.forward], ['loss', one([1, 1], [big / 2, -big / 2, big / 2, -big / 2]), STAGE.loss]];
    for (const [what, p, stage] of cases2) {
      const before = p.outputs();
      const r = step(p.args());
      const st = b.sequentialStatus();
      check(Number.isNaN(r) && st[0] === stage && st[1] === 0, `${dtype} ${what} overflowing: ${r}, status ${st}`);
      check(p.outputs() === before, `${dtype} ${what} overflowing: wrote into the outputs`);
      if (stage === STAGE.forward) check(fwd(p.forwardArgs()) === false && b.sequentialStatus()[0] === stage, `${dtype} sequentialForward ${what} overflowing`);
    }
  }
  // Aliasing: each output (every gradient, dX, the workspace) as a view onto every other tensor,
  // whole or shifted by one element; refused exactly when the bytes overlap, before any write.
  const tensors = (a) => [[0, -1, 'X'], [1, -1, 'y'], ...[0, 1, 2, 3].map((k) => [5, k, `params[${k}]`]), ...[0, 1, 2, 3].map((k) => [6, k, `grads[${k}]`]), [7, -1, 'dX'], [10, -1, 'ws']]
    .map(([i, k, name]) => ({ get: () => (k < 0 ? a[i] : a[i][k]), set: (v) => (k < 0 ? (a[i] = v) : (a[i] = a[i].map((u, j) => (j === k ? v : u)))), name }));
  const OUTS = ['grads[0]', 'grads[1]', 'grads[2]', 'grads[3]', 'dX', 'ws'];
  for (const o of OUTS) {
    for (const j of tensors(fresh().args()).map((t) => t.name)) {
      if (j === o) continue;
      for (const shift of [0, 1]) {
        const a = fresh().args();
        const ts = tensors(a);
        const to = ts.find((t) => t.name === o);
        const tj = ts.find((t) => t.name === j);
        const target = tj.get();
        const out = to.get();
        const elem = out.constructor.BYTES_PER_ELEMENT;
        const big = new ArrayBuffer(target.byteLength + (out.length + 2) * elem);
        new Uint8Array(big).set(new Uint8Array(target.buffer, target.byteOffset, target.byteLength));
        const moved = new target.constructor(big, 0, target.length);
        tj.set(moved);
        to.set(new out.constructor(big, shift * elem, out.length));
        const overlaps = shift * elem < moved.byteLength;
        const thrown = refusedOrReturns(() => step(a), `${dtype} ${o} over ${j} (shift ${shift})`);
        check(thrown === overlaps, `${dtype} ${o} over ${j} (shift ${shift}): ${thrown ? 'refused' : 'accepted'}`);
      }
    }
  }
  {
    const p = fresh();
    const logits = p.X.subarray(0, toy.dims.B * toy.dims.C);
    mustRefuse(() => fwd(p.forwardArgs(logits)), `${dtype} sequentialForward logits over X`);
    mustRefuse(() => fwd(p.forwardArgs(new F[dtype](p.params[0].buffer, 0, toy.dims.B * toy.dims.C))), `${dtype} sequentialForward logits over W1`);
  }
  // B disagreeing with the buffers, or whose workspace cannot exist.
  for (const v of [1, 3, 5, 2 ** 20, 2 ** 31 - 1]) {
    const a = fresh().args();
    a[2] = v;
    mustRefuse(() => step(a), `${dtype} B = ${v}`);
  }
  mustRefuse(() => b.sequentialLayout(new F[dtype](0), 2 ** 17, Int32Array.of(0), Int32Array.of(2 ** 16, 2 ** 16)), `${dtype} a workspace past 2^32 − 1`);
  // optimizerRun: every position, every bad value; W unchanged when refused.
  for (let i = 0; i < 9; i++) {
    const ok = () => optArgs('adam', F[dtype].from(rand(20, 3)), [F[dtype].from(rand(20, 4)), F[dtype].from(rand(20, 5))]);
    for (const v of badArgs(ok()[i])) {
      const a = ok();
      a[i] = v;
      const before = liveBytes(a[1]);
      if (refusedOrReturns(() => b.optimizerRun(...a), `${dtype} optimizerRun ${['name', 'W', 'grads', 'lr', 'momentum', 'beta1', 'beta2', 'epsilon', 'weightDecay'][i]} = ${describeValue(v)}`)) {
        check(liveBytes(a[1]) === before, `${dtype} optimizerRun argument ${i} = ${describeValue(v)}: wrote into W and threw`);
      }
    }
    if (i < 3) mustRefuse(() => b.optimizerRun(...ok().slice(0, i)), `${dtype} optimizerRun with ${i} arguments`);
  }
  {
    const W = F[dtype].from(rand(20, 3));
    mustRefuse(() => b.optimizerRun(...optArgs('sgd', W, [W])), `${dtype} optimizerRun grads[0] is W`);
    mustRefuse(() => b.optimizerRun(...optArgs('sgd', W, [new F[dtype](W.buffer, 4 * W.BYTES_PER_ELEMENT, 16)])), `${dtype} optimizerRun grads[0] over W`);
    mustRefuse(() => b.optimizerRun(...optArgs('nesterov', W, [W.slice()], { ...H, momentum: 0 })), `${dtype} optimizerRun nesterov without momentum`);
    const g = W.slice();
    g[7] = NaN;
    mustRefuse(() => b.optimizerRun(...optArgs('adam', W, [W.slice(), g])), `${dtype} optimizerRun NaN in grads[1]`);
    // A getter on grads that detaches W: W is read after the Array, as empty, and grads[0] no longer fits it.
    const W2 = F[dtype].from(rand(20, 3));
    const grads = [W2.slice()];
    Object.defineProperty(grads, 0, { get: () => (structuredClone(W2.buffer, { transfer: [W2.buffer] }), W.slice()) });
    mustRefuse(() => b.optimizerRun(...optArgs('adam', W2, grads)), `${dtype} optimizerRun W detached by a getter on grads[0]`);
    check(!refusedOrReturns(() => b.optimizerRun(...optArgs('adam', detached(F[dtype], 20), [])), `${dtype} optimizerRun on a detached W with no steps`), `${dtype} optimizerRun detached W, no steps: refused`);
  }
}
// Descriptions wrong in each way.
for (const [kinds, widths] of [[[], [3]], [[0, 4], [2, 3, 3]], [[0, -1], [2, 3, 3]], [[1], [2, 2]], [[0, 1], [2, 3, 4]], [[0], [0, 2]], [[0], [2, -1]], [[0], [2 ** 31 - 1, 2 ** 31 - 1]], [[0, 1, 0], [5, 10, 3]]]) {
  mustRefuse(() => b.sequentialLayout(new Float64Array(0), 4, Int32Array.from(kinds), Int32Array.from(widths)), `sequentialLayout ${kinds} ${widths}`);
  mustRefuse(() => step([new Float64Array(4 * (widths[0] || 1)), new Int32Array(4), 4, Int32Array.from(kinds), Int32Array.from(widths), [], [], null, 0, false]), `sequentialForwardBackward ${kinds} ${widths}`);
}
// Threads: bad counts refused (above 256 too: OpenMP would abort), the count restored after.
{
  const before = b.getNumThreads();
  for (const v of [0, -1, 1.5, NaN, Infinity, 257, 2 ** 31, '2', undefined, null, {}, 1n]) mustRefuse(() => b.setNumThreads(v), `setNumThreads(${describeValue(v)})`);
  b.setNumThreads(2);
  check(b.getNumThreads() === 2, 'getNumThreads after setNumThreads(2)');
  stillExact('on 2 threads');
  b.setNumThreads(before);
  check(b.getNumThreads() === before, 'getNumThreads restored');
  refusedOrReturns(() => b.getNumThreads('extra', 1), 'getNumThreads with arguments');
  refusedOrReturns(() => b.sequentialStatus('extra'), 'sequentialStatus with arguments');
}
stillExact('after the battery');

// ---------------------------------------------------------------------------------------------
section('3. worker threads');

const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  const b = require(workerData.addon);
  const { args, loop } = workerData;
  const bytes = (a) => a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64') : '';
  const out = () => [args[7], ...args[6]].map(bytes).join('|');
  if (loop) { parentPort.postMessage({ looping: true }); for (;;) b.sequentialForwardBackward(...args); }
  const ref = b.sequentialForwardBackward(...args);
  const refOut = out();
  let bad = 0;
  for (let i = 0; i < 100; i++) if (!Object.is(b.sequentialForwardBackward(...args), ref) || out() !== refOut) bad++;
  try { b.sequentialForwardBackward(); } catch (e) { if (!(e instanceof TypeError)) bad++; }
  parentPort.postMessage({ bad, loss: ref, out: refOut, threads: b.getNumThreads() });
`;

async function workers() {
  const probs = [fixtureProblem(toy), deepProblem('float32', 12, { red: 'sum' }), deepProblem('float64', 13, { withDX: false })];
  const refs = probs.map((p) => ({ loss: step(p.args()), out: [p.dX, ...p.grads].map(bytesOf).join('|') }));
  const ws = probs.map((p) => new Worker(WORKER, { eval: true, workerData: { addon: ADDON, args: p.args(), loop: false } }));
  const results = await Promise.all(ws.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  results.forEach((r, i) => check(r.bad === 0 && r.threads === 1 && Object.is(r.loss, refs[i].loss) && r.out === refs[i].out, `worker ${i}: ${r.bad} inexact calls, ${r.threads} threads`));
  await Promise.all(ws.map((w) => w.terminate()));
  // Terminated while it loops on calls at a size that keeps it in LibTorch most of the time.
  for (let round = 0; round < 3; round++) {
    const B = 64;
    const big = problem('float64', B, [0, 1, 0], [128, 128, 128, 10], { X: rand(B * 128, 40 + round), y: new Array(B).fill(3), params: [rand(128 * 128, 41, 0.1), rand(128, 42), rand(1280, 43, 0.1), rand(10, 44)] });
    const w = new Worker(WORKER, { eval: true, workerData: { addon: ADDON, args: big.args(), loop: true } });
    await new Promise((r) => w.once('message', r));
    await new Promise((r) => setTimeout(r, round * 5));
    check((await w.terminate()) === 1, 'terminated worker: exit code');
    stillExact(`after terminating worker ${round}`);
  }
}

// ---------------------------------------------------------------------------------------------
async function loops() {
  section('4. 2 × 5 000 calls of each export, valid and refused');
  const small = fixtureProblem(toy);
  const small32 = fixtureProblem({ ...toy, dtype: 'float32' }, { withDX: false, withWs: false, red: 'sum' });
  const deep = deepProblem('float64', 14);
  const [, lossRed, lossOpts] = LOSS_OPTIONS.find(([name]) => name === 'weight+ignoreIndex+labelSmoothing none');
  const withOptions = ignoreOne(deepProblem('float32', 15, { red: lossRed, loss: lossOpts }));
  const [, targetRed, targetOpts] = LOSS_OPTIONS.find(([name]) => name === 'targets+weight+labelSmoothing mean');
  const withTargets = deepProblem('float64', 16, { red: targetRed, loss: targetOpts, withWs: false });
  const logits = new Float64Array(toy.dims.B * toy.dims.C);
  const W = Float64Array.from(rand(400, 1));
  const G = [Float64Array.from(rand(400, 2)), Float64Array.from(rand(400, 3))];
  const W32 = Float32Array.from(rand(400, 1));
  const G32 = [Float32Array.from(rand(400, 2))];
  const nan = fixtureProblem(toy);
  nan.params[3][1] = NaN;
  const overflow = problem('float64', 1, [0], [2, 2], { X: [1e10, 1e10], y: [1], params: [[1e300, 1e300, 1e300, 1e300], [0, 0]] });
  await leakLoops([
    ['sequentialForwardBackward float64', () => step(small.args())],
    ['sequentialForwardBackward float32, no dX, no workspace, accumulating', () => step(small32.args(true))],
    ['sequentialForwardBackward, a deeper stack', () => step(deep.args())],
    ['sequentialForwardBackward float32, weight + ignoreIndex + labelSmoothing, \'none\' with gradOutput', () => step(withOptions.args())],
    ['sequentialForwardBackward float64, probability targets + weight + labelSmoothing, no workspace', () => step(withTargets.args())],
    ['sequentialForward', () => fwd(small.forwardArgs(logits))],
    ['sequentialLayout', () => b.sequentialLayout(small.X, 4, small.kinds, small.widths)],
    ['sequentialStatus', () => b.sequentialStatus()],
    ['optimizerRun adam, 2 steps', () => b.optimizerRun(...optArgs('adam', W, G))],
    ['optimizerRun nesterov float32', () => b.optimizerRun(...optArgs('nesterov', W32, G32, H, 0.01))],
    ['getNumThreads', () => b.getNumThreads()],
    ['setNumThreads', () => b.setNumThreads(1)],
    ['failed: overflow in the forward pass', () => { if (!Number.isNaN(step(overflow.args()))) throw new Error('accepted'); throw new RangeError('failed as it should'); }],
    ['refused: no arguments', () => step([])],
    ['refused: wrong length', () => { const a = small.args(); a[5] = [small.params[0], small.params[1], small.params[2], new Float64Array(2)]; step(a); }],
    ['refused: wrong dtype', () => { const a = small.args(); a[7] = new Float32Array(20); step(a); }],
    ['refused: label out of range', () => { const a = small.args(); a[1] = Int32Array.of(0, 1, 7, 0); step(a); }],
    ['refused: a weight of the wrong length', () => { const a = withOptions.args(); a[11] = new Float32Array(4); step(a); }],
    ['refused: labelSmoothing above 1', () => { const a = withOptions.args(); a[13] = 1.5; step(a); }],
    ['refused: NaN in b2', () => step(nan.args())],
    ['refused: aliasing', () => { const a = small.args(); a[6] = [a[5][0], ...a[6].slice(1)]; step(a); }],
    ['refused: a bad description', () => b.sequentialLayout(small.X, 4, small.kinds, Int32Array.of(5, 10, 11, 3))],
    ['refused: optimizerRun bad name', () => b.optimizerRun(...optArgs('adagrad', W, G))],
    ['refused: optimizerRun grads[1] too short', () => b.optimizerRun(...optArgs('sgd', W, [G[0], G[1].subarray(1)]))],
    ['refused: setNumThreads(257)', () => b.setNumThreads(257)],
  ], 5000);
  stillExact('after the loops');
}

(async () => {
  await workers();
  await loops();
  await finish('SANITIZE-TORCH-OK', { fixtures: cases.length });
})().catch((e) => {
  process.stdout.write(`[battery] crashed in JavaScript: ${e && e.stack}\n`);
  process.exitCode = 1;
});
