// The LibTorch autograd reference for a layer stack of any depth (sequentialForwardBackward and
// sequentialForward in native/torch/sequential.cc), checked against truths it does not share code
// with: PyTorch's own autograd fixtures (test/fixtures) for Linear–act–Linear (test/15-golden holds the
// bits of the two-layer torch reference it replaced), central finite differences of a float64
// log-sum-exp cross-entropy written here, and a naive float64 forward loop written here. Then its
// .grad semantics, its argument checks and its failures (reported as the core's, worded by Sequential).
// Runs wherever the addon loads or LibTorch is installed (setup builds the addon there, so a missing
// addon is then a failure, not a skip: test/helpers.ts skipReason).
import { describe, expect, it } from 'vitest';
import { torchBinding } from '../lib/backends/torch';
import { coreBinding } from '../lib/binding';
import { type Layer, Linear, ReLU, Sequential } from '../lib/index';
import type { Activation, Dtype, FloatArray, Reduction } from '../lib/types';
import { backendTitle, caseParams, EPS, errEps, jsonCases, randomArray, randomLabels, skipReason, thrown, typed } from './helpers';

const skip = skipReason('torch');

// Layer codes of the sequential exports.
const LINEAR = 0;
const RELU = 1;
const SIGMOID = 2;
const TANH = 3;
const SEQ_CODE: Record<Activation, number> = { relu: RELU, sigmoid: SIGMOID, tanh: TANH };
const RED_CODE: Record<Reduction, number> = { mean: 0, sum: 1 };
/** sequentialStatus()'s stage codes: the core's (native/core/stack.h Stage). */
const STAGE = coreBinding().codes.stage;

const REDUCTIONS: Reduction[] = ['mean', 'sum'];
const DTYPES: Dtype[] = ['float64', 'float32'];

/** Finite differences: every gradient within this of central differences, normwise relative. */
const FD_TOL = 1e-7;
const FD_STEP = 1e-6;
// Central differences carry a rounding error of about eps·|loss|/h ≈ 2e-10 absolute at h = 1e-6, so
// a tensor whose gradient is below ~2e-3 cannot be checked to 1e-7 relative. Uniform ±1/√in
// weights shrink the gradient of the first layers of the depth-5 stack to ~1e-3 (measured: dW1 at
// 2e-7 relative, all of it rounding — 1e-9 at h = 1e-4); weights of ±2.5/√in keep it near 1e-2.
const GAIN = 2.5;

interface Stack {
  kinds: Int32Array;
  sizes: Int32Array;
  /** The addon's description: widths[i] enters layer i (an activation keeps it). */
  widths: Int32Array;
}

function stack(kinds: number[], sizes: number[]): Stack {
  const widths = [sizes[0]];
  let k = 0;
  for (const kind of kinds) widths.push(kind === LINEAR ? sizes[2 * k++ + 1] : widths[widths.length - 1]);
  return { kinds: Int32Array.from(kinds), sizes: Int32Array.from(sizes), widths: Int32Array.from(widths) };
}

function zeros(dtype: Dtype, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

/** W_k [in, out] uniform in ±gain/√in and b_k [out] in ±0.1, in the dtype, one pair per Linear. */
function makeParams(s: Stack, dtype: Dtype, seed: number, gain = 1): FloatArray[] {
  const out: FloatArray[] = [];
  for (let k = 0; k < s.sizes.length / 2; k++) {
    const i = s.sizes[2 * k], o = s.sizes[2 * k + 1];
    out.push(typed(dtype, randomArray(i * o, seed + 10 * k + 1, gain / Math.sqrt(i))));
    out.push(typed(dtype, randomArray(o, seed + 10 * k + 2, 0.1)));
  }
  return out;
}

/** The width at the end of the stack. */
function outWidth(s: Stack, D: number): number {
  return s.sizes.length ? s.sizes[s.sizes.length - 1] : D;
}

/** A naive forward in float64 from the definition: Z = A·W + b, elementwise activations. */
function naiveForward(s: Stack, X: ArrayLike<number>, B: number, params: ArrayLike<number>[]): Float64Array {
  let width = X.length / B;
  let A = Float64Array.from(X);
  let k = 0;
  for (const kind of s.kinds) {
    if (kind === LINEAR) {
      const W = params[2 * k], b = params[2 * k + 1];
      const out = s.sizes[2 * k + 1];
      const Z = new Float64Array(B * out);
      for (let r = 0; r < B; r++) {
        for (let j = 0; j < out; j++) {
          let z = b[j];
          for (let i = 0; i < width; i++) z += A[r * width + i] * W[i * out + j];
          Z[r * out + j] = z;
        }
      }
      A = Z;
      width = out;
      k++;
    } else {
      A = A.map((z) => (kind === RELU ? Math.max(z, 0) : kind === SIGMOID ? 1 / (1 + Math.exp(-z)) : Math.tanh(z)));
    }
  }
  return A;
}

/** Softmax cross-entropy of raw logits [B,C] in float64, by log-sum-exp. */
function crossEntropy(logits: ArrayLike<number>, y: ArrayLike<number>, red: Reduction): number {
  const B = y.length;
  const C = logits.length / B;
  let total = 0;
  for (let r = 0; r < B; r++) {
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[r * C + c]);
    let sum = 0;
    for (let c = 0; c < C; c++) sum += Math.exp(logits[r * C + c] - m);
    total += m + Math.log(sum) - logits[r * C + y[r]];
  }
  return red === 'mean' ? total / B : total;
}

/** max|got − want| / max|want|: normwise relative error. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return scale === 0 ? (diff === 0 ? 0 : Infinity) : diff / scale;
}

/** Byte-for-byte equality of two typed arrays (so −0 vs 0 and NaN payloads count too). */
function sameBits(a: FloatArray, b: FloatArray): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}


describe.skipIf(skip)(backendTitle('sequential reference = PyTorch autograd fixtures for Linear, act, Linear', 'torch', skip), () => {
  // PyTorch's own numbers (test/fixtures, written by F.cross_entropy and autograd), within the
  // fixtures' tolerance; test/15-golden holds the bits of the two-layer torch reference this replaced.
  const TOL_EPS = 8;
  for (const c of jsonCases()) {
    it(`${c.name} (${c.dtype}, ${c.activation}, ${c.reduction}), with and without dX, with and without accumulate`, () => {
      const { B, D, H, C } = c.dims;
      const s = stack([LINEAR, SEQ_CODE[c.activation], LINEAR], [D, H, H, C]);
      const { W1, b1, W2, b2 } = caseParams(c);
      const X = typed(c.dtype, c.inputs.X);
      const names = ['dW1', 'db1', 'dW2', 'db2', 'dX'] as const;
      for (const withDX of [false, true]) {
        for (const accumulate of [false, true]) {
          // Random start values, so accumulate adds to something.
          const start = [D * H, H, H * C, C, B * D].map((n, i) => typed(c.dtype, randomArray(n, 20 + i)));
          const out = start.map((a) => a.slice());
          const loss = torchBinding().sequentialForwardBackward(X, Int32Array.from(c.inputs.y), B, s.kinds, s.widths, [W1, b1, W2, b2],
            out.slice(0, 4), withDX ? out[4] : null, RED_CODE[c.reduction], accumulate);
          expect(errEps([loss], c.expected.loss, c.dtype), 'loss').toBeLessThanOrEqual(TOL_EPS);
          for (let i = 0; i < (withDX ? 5 : 4); i++) {
            const want = c.expected[names[i]].map((v, j) => (accumulate ? start[i][j] + v : v));
            expect(errEps(out[i], want, c.dtype), `${names[i]} dX=${withDX} acc=${accumulate}`).toBeLessThanOrEqual(TOL_EPS);
          }
          // Without dX, its buffer is untouched.
          if (!withDX) expect(sameBits(out[4], start[4])).toBe(true);
        }
      }
    });
  }
});

// Stacks for finite differences and the naive forward: depth 1, 3, 5 (Linear layers), mixed
// activations, one starting with an activation, one ending with one.
const DEEP: { name: string; s: Stack; B: number; D: number }[] = [
  { name: 'depth 1: Linear', s: stack([LINEAR], [4, 3]), B: 5, D: 4 },
  { name: 'depth 3: Linear, Tanh, Linear, ReLU, Linear', s: stack([LINEAR, TANH, LINEAR, RELU, LINEAR], [4, 6, 6, 5, 5, 3]), B: 5, D: 4 },
  {
    name: 'depth 5: Tanh, Linear, ReLU, Linear, Sigmoid, Linear, Linear, Tanh, Linear',
    s: stack([TANH, LINEAR, RELU, LINEAR, SIGMOID, LINEAR, LINEAR, TANH, LINEAR], [4, 6, 6, 5, 5, 7, 7, 4, 4, 3]),
    B: 6, D: 4,
  },
  { name: 'depth 2 ending in an activation: Linear, Sigmoid, Linear, Tanh', s: stack([LINEAR, SIGMOID, LINEAR, TANH], [3, 5, 5, 4]), B: 4, D: 3 },
  { name: 'depth 2, width 1 inside: Linear, ReLU, Linear', s: stack([LINEAR, RELU, LINEAR], [3, 1, 1, 2]), B: 5, D: 3 },
];

describe.skipIf(skip)(backendTitle('sequential reference against central finite differences (float64)', 'torch', skip), () => {
  for (const { name, s, B, D } of DEEP) {
    for (const reduction of REDUCTIONS) {
      it(`${name}, ${reduction}: every gradient within ${FD_TOL} of central differences`, () => {
        const t = torchBinding();
        const C = outWidth(s, D);
        const params = makeParams(s, 'float64', 300 + B + D, GAIN) as Float64Array[];
        const X = Float64Array.from(randomArray(B * D, 301, 1.5));
        const y = randomLabels(B, C, 302);
        const grads = params.map((p) => new Float64Array(p.length));
        const dX = new Float64Array(B * D);
        const loss = t.sequentialForwardBackward(X, y, B, s.kinds, s.widths, params, grads, dX, RED_CODE[reduction], false);

        // The loss differentiated: torch's forward, then a cross-entropy written here.
        const logits = new Float64Array(B * C);
        const lossAt = () => {
          t.sequentialForward(X, B, s.kinds, s.widths, params, logits);
          return crossEntropy(logits, y, reduction);
        };
        expect(Math.abs(loss - lossAt()) / Math.abs(lossAt())).toBeLessThan(4 * EPS.float64);

        const tensors: [string, Float64Array, Float64Array][] = [
          ...params.map((p, i): [string, Float64Array, Float64Array] => [`${i % 2 ? 'db' : 'dW'}${(i >> 1) + 1}`, p, grads[i]]),
          ['dX', X, dX],
        ];
        for (const [label, tensor, grad] of tensors) {
          const fd = new Float64Array(tensor.length);
          for (let i = 0; i < tensor.length; i++) {
            const keep = tensor[i];
            tensor[i] = keep + FD_STEP;
            const plus = lossAt();
            tensor[i] = keep - FD_STEP;
            const minus = lossAt();
            tensor[i] = keep;
            fd[i] = (plus - minus) / (2 * FD_STEP);
          }
          // Not vacuous: the gradient is there to be compared.
          expect(Math.max(...fd.map(Math.abs)), label).toBeGreaterThan(1e-4);
          expect(relErr(grad, fd), label).toBeLessThan(FD_TOL);
        }
      });
    }
  }
});

describe.skipIf(skip)(backendTitle('sequentialForward = a naive float64 forward loop', 'torch', skip), () => {
  // Normwise, in eps of the dtype. float64: two summation orders of the same dot products.
  // float32: torch rounds every op to float32, the loop computes in float64 from the same values.
  // Measured: at most 1.53 eps (float64) and 0.86 eps (float32) over these stacks.
  const TOL_EPS = { float64: 4, float32: 4 };
  for (const dtype of DTYPES) {
    for (const { name, s, B, D } of DEEP) {
      it(`${dtype} ${name}`, () => {
        const C = outWidth(s, D);
        const params = makeParams(s, dtype, 500);
        const X = typed(dtype, randomArray(B * D, 501, 2));
        const logits = zeros(dtype, B * C).fill(NaN);
        torchBinding().sequentialForward(X, B, s.kinds, s.widths, params, logits);
        expect(logits).toBeInstanceOf(dtype === 'float64' ? Float64Array : Float32Array);
        expect(errEps(logits, naiveForward(s, X, B, params), dtype)).toBeLessThanOrEqual(TOL_EPS[dtype]);
      });
    }
  }
});

describe.skipIf(skip)(backendTitle('sequential reference: .grad semantics and no state between calls', 'torch', skip), () => {
  const s = DEEP[2].s;
  const B = 6, D = 4;
  const params = makeParams(s, 'float64', 700);
  const X = Float64Array.from(randomArray(B * D, 701));
  const y = randomLabels(B, 3, 702);
  const fresh = (fill: number) => [...params.map((p) => new Float64Array(p.length).fill(fill)), new Float64Array(B * D).fill(fill)];
  const call = (out: Float64Array[], accumulate: boolean) =>
    torchBinding().sequentialForwardBackward(X, y, B, s.kinds, s.widths, params, out.slice(0, -1), out[out.length - 1], 0, accumulate);

  it('without accumulate, whatever the buffers held (even NaN) is overwritten, and calls repeat exactly', () => {
    const a = fresh(0);
    const b = fresh(NaN);
    const la = call(a, false);
    const lb = call(b, false);
    expect(lb).toBe(la);
    for (let i = 0; i < a.length; i++) expect(sameBits(b[i], a[i]), `tensor ${i}`).toBe(true);
  });

  it('with accumulate, two calls into zeroed buffers give twice one call, and a start value is added to', () => {
    const once = fresh(0);
    call(once, false);
    const twice = fresh(0);
    call(twice, true);
    call(twice, true);
    for (let i = 0; i < once.length; i++) expect(twice[i], `tensor ${i}`).toEqual(once[i].map((v) => 2 * v));
    const start = fresh(0.25);
    call(start, true);
    for (let i = 0; i < once.length; i++) expect(start[i], `tensor ${i}`).toEqual(once[i].map((v) => 0.25 + v));
  });

  it('params are never written', () => {
    const copy = params.map((p) => p.slice());
    call(fresh(0), false);
    for (let i = 0; i < params.length; i++) expect(sameBits(params[i], copy[i])).toBe(true);
  });
});

describe.skipIf(skip)(backendTitle('sequential reference: bad input is an error naming the tensor, never a crash', 'torch', skip), () => {
  // Linear(5→10), ReLU, Linear(10→3), B = 4.
  const B = 4, D = 5, H = 10, C = 3;
  const s = stack([LINEAR, RELU, LINEAR], [D, H, H, C]);
  const params = makeParams(s, 'float64', 900) as Float64Array[];
  const [W1, b1, W2, b2] = params;
  const X = Float64Array.from(randomArray(B * D, 901));
  const y = Int32Array.from([0, 1, 2, 1]);
  const grads = () => params.map((p) => new Float64Array(p.length));
  type Args = [unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown];
  const base = (): Args => [X, y, B, s.kinds, s.widths, params, grads(), new Float64Array(B * D), 0, false];
  const fb = (args: unknown[]) => (torchBinding().sequentialForwardBackward as (...a: unknown[]) => number)(...args);
  const fwd = (args: unknown[]) => (torchBinding().sequentialForward as (...a: unknown[]) => void)(...args);
  const at = (i: number, v: unknown): Args => {
    const a = base();
    a[i] = v;
    return a;
  };
  const withParam = (i: number, v: unknown) => params.map((p, j) => (j === i ? v : p));
  const withGrad = (i: number, v: unknown) => grads().map((g, j) => (j === i ? v : g));
  const shared = new ArrayBuffer(128);

  const CASES: { name: string; args: unknown[]; cls: typeof TypeError | typeof RangeError; msg: string | RegExp }[] = [
    { name: 'no arguments', args: [], cls: TypeError, msg: 'Expected Float64Array or Float32Array for X' },
    { name: 'X an Int32Array', args: at(0, new Int32Array(20)), cls: TypeError, msg: 'Expected Float64Array or Float32Array for X but received Int32Array' },
    { name: 'X a plain array', args: at(0, Array.from(X)), cls: TypeError, msg: /for X/ },
    { name: 'X of the wrong length', args: at(0, X.subarray(1)), cls: RangeError, msg: 'Expected 20 elements ([4, 5]) for X but received Float64Array of length 19' },
    { name: 'X empty', args: at(0, new Float64Array(0)), cls: RangeError, msg: /20 elements .* for X but received Float64Array of length 0/ },
    { name: 'B missing', args: base().slice(0, 2), cls: TypeError, msg: 'Expected a number for B' },
    { name: 'B a string', args: at(2, '4'), cls: TypeError, msg: 'Expected a number for B' },
    { name: 'B = 0', args: at(2, 0), cls: RangeError, msg: /positive 32-bit integer for B/ },
    { name: 'B = -4', args: at(2, -4), cls: RangeError, msg: /for B/ },
    { name: 'B = 2.5', args: at(2, 2.5), cls: RangeError, msg: /for B/ },
    { name: 'kinds a plain array', args: at(3, [0, 1, 0]), cls: TypeError, msg: 'Expected an Int32Array for kinds but received Array of length 3' },
    { name: 'kinds empty', args: at(3, new Int32Array(0)), cls: RangeError, msg: 'Expected at least one layer for kinds but received Int32Array of length 0' },
    { name: 'kinds code 4', args: at(3, Int32Array.from([0, 4, 0])), cls: RangeError, msg: 'Expected layer codes in [0, 4) (0 Linear, 1 ReLU, 2 Sigmoid, 3 Tanh) for kinds but received 4 at index 1' },
    { name: 'kinds code -1', args: at(3, Int32Array.from([0, 1, -1])), cls: RangeError, msg: /for kinds but received -1 at index 2/ },
    {
      name: 'kinds with no Linear',
      args: (() => {
        const a = at(3, Int32Array.of(TANH));
        a[4] = Int32Array.of(D, D);
        return a;
      })(),
      cls: RangeError, msg: 'Expected at least one Linear layer (code 0) for kinds but received none',
    },
    { name: 'widths an Int16Array', args: at(4, Int16Array.from(s.widths)), cls: TypeError, msg: 'Expected an Int32Array for widths but received Int16Array of length 4' },
    { name: 'widths of the wrong count', args: at(4, Int32Array.from([D, H, C])), cls: RangeError, msg: 'Expected 4 elements (one more than kinds) for widths but received Int32Array of length 3' },
    { name: 'widths with a 0 width', args: at(4, Int32Array.from([D, H, H, 0])), cls: RangeError, msg: 'Expected a positive width for widths[3] but received 0' },
    { name: 'widths with a negative width', args: at(4, Int32Array.from([D, -1, H, C])), cls: RangeError, msg: /positive width for widths\[1\].* received -1/ },
    { name: 'widths[0] ≠ X\'s width', args: at(4, Int32Array.from([6, H, H, C])), cls: RangeError, msg: 'Expected 24 elements ([4, 6]) for X but received Float64Array of length 20' },
    { name: 'an activation changing the width', args: at(4, Int32Array.from([D, H, 9, C])), cls: RangeError, msg: 'Expected 10 (an activation keeps the width of widths[1]) for widths[2] but received 9' },
    { name: 'y a Float64Array', args: at(1, new Float64Array(4)), cls: TypeError, msg: 'Expected Int32Array for y but received Float64Array' },
    { name: 'y of the wrong length', args: at(1, new Int32Array(3)), cls: RangeError, msg: 'Expected 4 elements for y but received 3' },
    { name: 'a label = C', args: at(1, Int32Array.from([0, 1, 3, 2])), cls: RangeError, msg: 'Expected labels in [0, 3) for y but received 3 at index 2' },
    { name: 'a negative label', args: at(1, Int32Array.from([0, -1, 2, 2])), cls: RangeError, msg: 'Expected labels in [0, 3) for y but received -1 at index 1' },
    { name: 'params not an Array', args: at(5, W1), cls: TypeError, msg: 'Expected an Array of typed arrays for params but received Float64Array of length 50' },
    { name: 'params missing', args: base().slice(0, 5), cls: TypeError, msg: 'Expected an Array of typed arrays for params but received undefined' },
    { name: 'params of the wrong count', args: at(5, [W1, b1, W2]), cls: RangeError, msg: 'Expected 4 typed arrays (W, b for each of the 2 Linear layers in kinds) for params but received Array of length 3' },
    { name: 'W2 of another dtype', args: at(5, withParam(2, Float32Array.from(W2))), cls: TypeError, msg: 'Expected Float64Array (the dtype of X) for W2 but received Float32Array of length 30' },
    { name: 'W1 of the wrong length', args: at(5, withParam(0, W1.subarray(1))), cls: RangeError, msg: 'Expected 50 elements ([5, 10]) for W1 but received Float64Array of length 49' },
    { name: 'b2 undefined', args: at(5, withParam(3, undefined)), cls: TypeError, msg: 'Expected Float64Array (the dtype of X) for b2 but received undefined' },
    { name: 'b1 a plain array', args: at(5, withParam(1, Array.from(b1))), cls: TypeError, msg: /for b1 but received Array of length 10/ },
    { name: 'grads not an Array', args: at(6, null), cls: TypeError, msg: 'Expected an Array of typed arrays for grads but received null' },
    { name: 'grads of the wrong count', args: at(6, grads().slice(0, 2)), cls: RangeError, msg: /4 typed arrays .* for grads but received Array of length 2/ },
    { name: 'dW1 of another dtype', args: at(6, withGrad(0, new Float32Array(50))), cls: TypeError, msg: 'Expected Float64Array (the dtype of X) for dW1 but received Float32Array of length 50' },
    { name: 'db2 of the wrong length', args: at(6, withGrad(3, new Float64Array(4))), cls: RangeError, msg: 'Expected 3 elements ([3]) for db2 but received Float64Array of length 4' },
    { name: 'dX of the wrong length', args: at(7, new Float64Array(19)), cls: RangeError, msg: 'Expected 20 elements ([4, 5]) for dX but received Float64Array of length 19' },
    { name: 'dX of another dtype', args: at(7, new Float32Array(20)), cls: TypeError, msg: /Float64Array \(the dtype of X\) for dX/ },
    { name: 'reduction 3', args: at(8, 3), cls: RangeError, msg: 'Expected an integer in [0, 3) for reduction' },
    { name: 'reduction 2 (none) without gradOutput', args: at(8, 2), cls: TypeError, msg: 'Expected a gradOutput [B] with reduction none for gradOutput but received undefined' },
    { name: 'reduction a string', args: at(8, 'mean'), cls: TypeError, msg: 'Expected a number for reduction' },
    { name: 'accumulate a number', args: at(9, 1), cls: TypeError, msg: 'Expected a boolean for accumulate' },
    { name: 'accumulate missing', args: base().slice(0, 9), cls: TypeError, msg: 'Expected a boolean for accumulate' },
    { name: 'float32 X with float64 params', args: at(0, Float32Array.from(X)), cls: TypeError, msg: 'Expected Float32Array (the dtype of X) for W1 but received Float64Array of length 50' },
    { name: 'dW1 is W1', args: at(6, withGrad(0, W1)), cls: RangeError, msg: 'Expected dW1 not to share memory with W1' },
    { name: 'dX over X', args: at(7, new Float64Array(X.buffer, X.byteOffset, B * D)), cls: RangeError, msg: 'Expected dX not to share memory with X' },
    {
      name: 'db1 over y',
      args: (() => {
        const a = at(1, new Int32Array(shared, 0, 4));
        a[6] = withGrad(1, new Float64Array(shared, 8, 10));
        return a;
      })(),
      cls: RangeError, msg: 'Expected db1 not to share memory with y',
    },
    {
      name: 'dW2 overlapping dW1',
      args: (() => {
        const buf = new Float64Array(80);
        return at(6, withGrad(0, buf.subarray(0, 50)).map((g, j) => (j === 2 ? buf.subarray(40, 70) : g)));
      })(),
      cls: RangeError, msg: 'Expected dW2 not to share memory with dW1',
    },
    {
      name: 'dX overlapping db2',
      args: (() => {
        const buf = new Float64Array(22);
        const a = at(6, withGrad(3, buf.subarray(0, 3)));
        a[7] = buf.subarray(2, 22);
        return a;
      })(),
      cls: RangeError, msg: 'Expected dX not to share memory with db2',
    },
    {
      name: 'NaN in W2',
      args: at(5, withParam(2, W2.map((v, i) => (i === 3 ? NaN : v)))),
      cls: RangeError, msg: 'Expected finite values in W2 but received NaN at index 3',
    },
    {
      name: '-Infinity in X',
      args: at(0, X.map((v, i) => (i === 7 ? -Infinity : v))),
      cls: RangeError, msg: 'Expected finite values in X but received -Infinity at index 7',
    },
  ];

  for (const c of CASES) {
    it(`sequentialForwardBackward: ${c.name}`, () => {
      const e = thrown(() => fb(c.args));
      expect(e).toBeInstanceOf(c.cls);
      if (typeof c.msg === 'string') expect(e.message).toBe(c.msg);
      else expect(e.message).toMatch(c.msg);
    });
  }

  const fwdBase = (): unknown[] => [X, B, s.kinds, s.widths, params, new Float64Array(B * C)];
  const fwdAt = (i: number, v: unknown) => {
    const a = fwdBase();
    a[i] = v;
    return a;
  };
  const FORWARD_CASES: { name: string; args: unknown[]; cls: typeof TypeError | typeof RangeError; msg: string | RegExp }[] = [
    { name: 'no arguments', args: [], cls: TypeError, msg: 'Expected Float64Array or Float32Array for X' },
    { name: 'B = 3 (X of 4 rows)', args: fwdAt(1, 3), cls: RangeError, msg: /Expected 15 elements \(\[3, 5\]\) for X/ },
    { name: 'kinds code 9', args: fwdAt(2, Int32Array.from([0, 9, 0])), cls: RangeError, msg: /for kinds but received 9 at index 1/ },
    { name: 'mismatched widths', args: fwdAt(3, Int32Array.from([D, H, 11, C])), cls: RangeError, msg: 'Expected 10 (an activation keeps the width of widths[1]) for widths[2] but received 11' },
    { name: 'params of the wrong count', args: fwdAt(4, [W1, b1]), cls: RangeError, msg: /4 typed arrays .* for params/ },
    { name: 'logits missing', args: fwdBase().slice(0, 5), cls: TypeError, msg: 'Expected Float64Array (the dtype of X) for logits but received undefined' },
    { name: 'logits of the wrong length', args: fwdAt(5, new Float64Array(13)), cls: RangeError, msg: 'Expected 12 elements ([4, 3]) for logits but received Float64Array of length 13' },
    { name: 'logits over W1', args: fwdAt(5, new Float64Array(W1.buffer, W1.byteOffset + 8 * 30, 12)), cls: RangeError, msg: 'Expected logits not to share memory with W1' },
    { name: 'logits over X', args: fwdAt(5, new Float64Array(X.buffer, X.byteOffset + 8, 12)), cls: RangeError, msg: 'Expected logits not to share memory with X' },
    { name: 'Infinity in b2', args: fwdAt(4, withParam(3, Float64Array.from([0, Infinity, 0]))), cls: RangeError, msg: 'Expected finite values in b2 but received Infinity at index 1' },
  ];
  for (const c of FORWARD_CASES) {
    it(`sequentialForward: ${c.name}`, () => {
      const e = thrown(() => fwd(c.args));
      expect(e).toBeInstanceOf(c.cls);
      if (typeof c.msg === 'string') expect(e.message).toBe(c.msg);
      else expect(e.message).toMatch(c.msg);
    });
  }

  it('a failed call writes nothing (an overlap refused leaves the buffers as they were)', () => {
    const g = grads().map((a) => a.fill(7));
    const e = thrown(() => fb([X, y, B, s.kinds, s.widths, params, g, new Float64Array(X.buffer), 0, false]));
    expect(e).toBeInstanceOf(RangeError);
    for (const a of g) expect(a.every((v) => v === 7)).toBe(true);
  });

  it('a getter that detaches X while params is read is an error, not a read of freed memory', () => {
    const Xd = X.slice();
    const list = [W1, b1, W2, b2];
    Object.defineProperty(list, 1, {
      get() {
        structuredClone(Xd.buffer, { transfer: [Xd.buffer] });
        return b1;
      },
    });
    const e = thrown(() => fb([Xd, y, B, s.kinds, s.widths, list, grads(), null, 0, false]));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected 20 elements ([4, 5]) for X but received Float64Array of length 0');
  });

  // An overflow is reported as the core reports it, NaN (or false) and sequentialStatus()
  // [stage, layer]; the Sequential puts it into the one wording of every backend.
  const net = (...layers: Layer[]) => new Sequential(layers);

  it('a layer that overflows is a failure at that layer, worded by the Sequential, and nothing is written', () => {
    // Every input finite, but Z = Σ_d 1·1e308 over D = 5 is not.
    const huge = [W1.map(() => 1e308), b1, W2, b2];
    const g = grads().map((a) => a.fill(7));
    expect(fb([X.map(() => 1), y, B, s.kinds, s.widths, huge, g, null, 0, false])).toBeNaN();
    expect(torchBinding().sequentialStatus()).toEqual([STAGE.forward, 0]);
    for (const a of g) expect(a.every((v) => v === 7)).toBe(true);
    expect(fwd([X.map(() => 1), B, s.kinds, s.widths, huge, new Float64Array(B * C)])).toBe(false);
    expect(torchBinding().sequentialStatus()).toEqual([STAGE.forward, 0]);
    const seq = net(new Linear(D, H, { W: huge[0], b: b1 }), new ReLU(), new Linear(H, C, { W: W2, b: b2 }));
    const out = { dW1: new Float64Array(D * H).fill(7) };
    const e = thrown(() => seq.forwardBackward(X.map(() => 1), y, { backend: 'torch', out }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected a finite forward pass but layers[0] (Linear 5→10) = X·W1 + b1 overflowed (inputs or weights too large for the dtype)');
    expect(out.dW1.every((v) => v === 7)).toBe(true);
    expect(() => seq.forward(X.map(() => 1), { backend: 'torch' })).toThrow(e.message);
  });

  for (const dtype of DTYPES) {
    it(`${dtype}: a loss that overflows is a failure at the loss, worded by the Sequential, and nothing is written`, () => {
      // One Linear(1→2): logits [big, −big], label 1, so loss = 2·big > the dtype's max.
      const big = dtype === 'float64' ? 1.7e308 : 3e38;
      const one = stack([LINEAR], [1, 2]);
      const W = typed(dtype, [big, -big]);
      const g = [zeros(dtype, 2).fill(7), zeros(dtype, 2).fill(7)];
      expect(torchBinding().sequentialForwardBackward(typed(dtype, [1]), Int32Array.from([1]), 1, one.kinds, one.widths,
        [W, zeros(dtype, 2)], g, null, 0, false)).toBeNaN();
      expect(torchBinding().sequentialStatus()).toEqual([STAGE.loss, 0]);
      for (const a of g) expect(Array.from(a)).toEqual([7, 7]);
      const e = thrown(() => net(new Linear(1, 2, { W, b: zeros(dtype, 2) })).forwardBackward(typed(dtype, [1]), [1], { backend: 'torch', out: { dW1: g[0], db1: g[1] } }));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toBe('Expected a finite loss but it overflowed (logits too far apart for the dtype)');
      for (const a of g) expect(Array.from(a)).toEqual([7, 7]);
    });
  }

  it('a gradient that overflows (finite loss) is a failure at the gradients, named by the Sequential as on native', () => {
    // float32: X = 1e-30, W1 = 1 (10 columns), W2 columns ±1e38: logits ±1e9 (finite), dA1 = 2e38
    // per column, dX = Σ of ten of them = 2e39 > float32's max.
    const s2 = stack([LINEAR, LINEAR], [1, 10, 10, 2]);
    const W2f = new Float32Array(20).map((_, i) => (i % 2 ? -1e38 : 1e38));
    const p = [new Float32Array(10).fill(1), new Float32Array(10), W2f, new Float32Array(2)];
    const g = p.map((a) => new Float32Array(a.length).fill(7));
    const dX = new Float32Array(1).fill(7);
    expect(torchBinding().sequentialForwardBackward(Float32Array.from([1e-30]), Int32Array.from([1]), 1, s2.kinds, s2.widths, p, g, dX, 0, false)).toBeNaN();
    // As the core: the gradients are written, then scanned (dX first, layer 0), so the Sequential can name the one that overflowed.
    expect(torchBinding().sequentialStatus()).toEqual([STAGE.grads, 0]);
    expect(Number.isFinite(dX[0])).toBe(false);
    const seq = net(new Linear(1, 10, { W: p[0], b: p[1] }), new Linear(10, 2, { W: p[2], b: p[3] }));
    const messages = (['torch', 'native'] as const).map((backend) => thrown(() => seq.forwardBackward(Float32Array.from([1e-30]), [1], { backend, inputGrad: true })));
    expect(messages[0]).toBeInstanceOf(RangeError);
    expect(messages[0].message).toBe('Expected finite gradients but dX overflowed (inputs or weights too large for the dtype)');
    expect(messages[1].message).toBe(messages[0].message);
    // Without dX the same call is fine: every parameter gradient is finite.
    expect(Number.isFinite(torchBinding().sequentialForwardBackward(Float32Array.from([1e-30]), Int32Array.from([1]), 1, s2.kinds, s2.widths, p, g, null, 0, false))).toBe(true);
    expect(torchBinding().sequentialStatus()).toEqual([STAGE.ok, 0]);
  });

  it('the process survives: a good call after all of the above gives the same answer as before', () => {
    const g1 = grads();
    const before = fb([X, y, B, s.kinds, s.widths, params, g1, null, 1, false]);
    for (const c of CASES) thrown(() => fb(c.args));
    for (const c of FORWARD_CASES) thrown(() => fwd(c.args));
    const g2 = grads();
    expect(fb([X, y, B, s.kinds, s.widths, params, g2, null, 1, false])).toBe(before);
    for (let i = 0; i < g1.length; i++) expect(sameBits(g2[i], g1[i])).toBe(true);
  });
});
