// `handgrad verify`: a seeded problem at the seed's realistic size, a candidate's gradients against
// the torch (or finite-difference) reference, printed as a table. Exit 0 when every tensor
// matches, 1 on a mismatch (with the diagnosis), 2 on bad usage.
import { resolve } from 'node:path';
import { HandgradError } from '../errors';
import { Sequential } from '../layers/sequential';
import { initParams } from '../params';
import { Rng } from '../rng';
import type { BackendName, Dtype } from '../types';
import * as v from '../validate';
import { formatVerifyReport } from '../verify/format';
import { verify, DEFAULT_TOLERANCE_EPS, type Candidate, type GradFunction, type SequentialCandidate } from '../verify/verify';
import { type Command, flags, numberFlag, seedFlag, STRING } from './command';

const HELP = `usage: handgrad verify [options]

Checks a candidate's loss and gradients (dX, dW1, db1, dW2, db2) against a reference on a seeded
random problem, tensor by tensor, and explains the first failure in backward order.

  --B N, --D N, --H N, --C N   sizes (default 64, 128, 256, 10: the seed's realistic size)
  --layers W1,W2,…             a Sequential instead of the two-layer network: Sequential.mlp([D,
                               W1, W2, …, C]) with the activation between its Linear layers
                               (gradients dW1, db1, … per Linear; not with --H). Against fd this
                               takes a while at these sizes (every entry's change runs through
                               every later layer); --B, --D make it quick
  --dtype float64|float32      (default float64)
  --activation relu|sigmoid|tanh, --reduction mean|sum
  --seed N                     (default 0)
  --candidate native|ts|torch|wasm|FILE.js
                               a backend's hand-derived backward (default native), or a module whose
                               default export (or export \`grads\`) is (params, X, y, opts) => grads
                               (with --layers: (seq, X, y, opts) => grads)
  --reference torch|fd|auto    LibTorch autograd or float64 finite differences (default auto: torch
                               when built, otherwise fd)
  --tolerance EPS              pass when max|Δ|/max|ref| ≤ EPS × epsilon of the dtype (default
                               ${DEFAULT_TOLERANCE_EPS.torch} against torch, ${DEFAULT_TOLERANCE_EPS.fd} against fd)
  --exact                      fail on any bit that differs from LibTorch autograd in the dtype
                               (needs the torch reference)
  --json                       print the report as JSON
`;

// A size is a 32-bit dimension (v.dim's range), checked here so that the error names the flag, not dims.C.
const positiveInt = (name: string, s: string) => {
  const n = numberFlag(name, s, 'a positive integer', (n) => /^\d+$/.test(s.trim()) && n >= 1);
  return numberFlag(name, s, 'a positive integer ≤ 2^31 − 1 (a size is a 32-bit dimension)', () => n <= 0x7fffffff);
};

/** fn(), with an allocation the sizes make impossible (a RangeError naming no flag) put in terms of the flags. */
function sizedByFlags<T>(fn: () => T, sizes: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError && /allocation failed|Invalid typed array length|Invalid array length/.test(err.message)) {
      v.fail(RangeError, 'sizes whose tensors fit in memory', '--B, --D, --H/--layers and --C', new v.Received(`${sizes} (${err.message})`));
    }
    throw err;
  }
}

/** The user function exported by FILE (module.exports = fn, a default export, or an export named grads). */
function loadCandidate(file: string): GradFunction {
  const path = resolve(file);
  let mod: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(path);
  } catch (cause) {
    const why = (cause as Error)?.message?.split('\n')[0] ?? String(cause);
    throw new HandgradError('ERR_FILE', `Expected a loadable JavaScript module for --candidate but received ${path} (${why})`, { cause });
  }
  const m = mod as { default?: unknown; grads?: unknown };
  const fn = [mod, m?.default, m?.grads].find((f) => typeof f === 'function');
  if (fn === undefined) {
    v.fail(TypeError, 'a module whose default export or `grads` export is a gradient function', '--candidate', new v.Received(`${file} exporting ${Object.keys(m ?? {}).join(', ') || 'nothing'}`));
  }
  return fn as GradFunction;
}

export const verifyCommand: Command = {
  summary: 'check a candidate backward against torch autograd or finite differences (exit 1 on a mismatch)',
  help: HELP,
  run(argv) {
    const { values } = flags('verify', argv, {
      B: { type: 'string', default: '64' }, D: { type: 'string', default: '128' }, H: STRING, layers: STRING,
      C: { type: 'string', default: '10' }, dtype: { type: 'string', default: 'float64' },
      activation: { type: 'string', default: 'relu' }, reduction: { type: 'string', default: 'mean' },
      seed: { type: 'string', default: '0' },
      candidate: { type: 'string', default: 'native' }, reference: { type: 'string', default: 'auto' }, tolerance: STRING,
      json: { type: 'boolean', default: false }, exact: { type: 'boolean', default: false },
    });
    if (values.layers !== undefined && values.H !== undefined) v.fail(TypeError, 'either --H (two layers) or --layers (a Sequential), not both', '--H', values.H);
    const [B, D, C] = (['B', 'D', 'C'] as const).map((k) => positiveInt(`--${k}`, values[k]));
    const H = positiveInt('--H', values.H ?? '256');
    const hidden = values.layers === undefined ? null : values.layers.split(',').map((w, i) => positiveInt(`--layers[${i}]`, w));
    const dtype = v.oneOf('--dtype', values.dtype, ['float64', 'float32'] as const, 'float64') as Dtype;
    const activation = v.oneOf('--activation', values.activation, v.ACTIVATIONS, 'relu');
    const reduction = v.oneOf('--reduction', values.reduction, v.REDUCTIONS, 'mean');
    const reference = v.oneOf('--reference', values.reference, ['auto', 'torch', 'fd'] as const, 'auto');
    const seed = seedFlag(values.seed);
    const tolerance = values.tolerance === undefined
      ? undefined : numberFlag('--tolerance', values.tolerance, 'a positive number of epsilons', (t) => t > 0 && Number.isFinite(t));
    const c = values.candidate;
    const candidate = (v.BACKENDS as readonly string[]).includes(c) ? (c as BackendName) : loadCandidate(c);

    // A seeded problem: He-initialised weights, X ~ N(0, 1), labels uniform over the classes.
    const rng = new Rng((seed + 1) >>> 0); // the data draw, after the weights (seed): 2^32 − 1 wraps to 0, as the generator always took it
    const { X, y } = sizedByFlags(() => {
      const X = dtype === 'float64' ? new Float64Array(B * D) : new Float32Array(B * D);
      for (let i = 0; i < X.length; i++) X[i] = rng.normal();
      return { X, y: Int32Array.from({ length: B }, () => rng.int(C)) };
    }, `--B ${B}, --D ${D}`);
    const sizes = `--B ${B}, --D ${D}, ${hidden === null ? `--H ${H}` : `--layers ${hidden.join(',')}`}, --C ${C}`;
    const report = sizedByFlags(() => (hidden === null
      ? verify(initParams({ D, H, C }, { seed, dtype }), X, y, { activation, reduction, candidate: candidate as Candidate, reference, tolerance, exact: values.exact })
      : verify(Sequential.mlp([D, ...hidden, C], { activation, dtype, seed }), X, y, { reduction, candidate: candidate as SequentialCandidate, reference, tolerance, exact: values.exact })), sizes);
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatVerifyReport(report)}\n`);
    return report.ok ? 0 : 1;
  },
};
