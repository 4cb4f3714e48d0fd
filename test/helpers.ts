// Shared by the tests: which backends run here (one skip policy for every suite), the golden
// fixtures, an error measure in units of epsilon, and an independent float64 loss for finite
// differences (plain loops, written apart from lib/).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { createServer } from 'node:net';
import { available } from '../lib/binding';
import { distributedAddonPath, distributedBinding } from '../lib/distributed/binding';
import { HandgradError } from '../lib/errors';
import { optimizerConfig, type OptimizerOptions } from '../lib/train/optimizer';
import { allocateState } from '../lib/train/state';
import { applyUpdate } from '../lib/train/update';
import { torchAvailable } from '../lib/backends/torch';
import { wasmModulePath } from '../lib/backends/wasm';
import type { Activation, BackendName, FloatArray, Reduction } from '../lib/types';

export const FIXTURES = join(__dirname, 'fixtures');

export interface JsonCase {
  name: string;
  dtype: 'float64' | 'float32';
  activation: Activation;
  reduction: Reduction;
  dims: { B: number; D: number; H: number; C: number };
  inputs: { X: number[]; y: number[]; W1: number[]; b1: number[]; W2: number[]; b2: number[] };
  expected: { loss: number[]; dX: number[]; dW1: number[]; db1: number[]; dW2: number[]; db2: number[] };
}

export function jsonCases(): JsonCase[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as JsonCase);
}

/** The two fixtures at the seed's realistic size (B=64 D=128 H=256 C=10), as safetensors files. */
export const REALISTIC = ['seed-realistic-64x128x256x10', 'seed-realistic-64x128x256x10-float32'] as const;

/** A safetensors file, read here from its definition (8-byte LE header length, JSON header, raw LE data). */
export function readSafetensorsFile(path: string): { tensors: Record<string, FloatArray | Int32Array>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const tensors: Record<string, FloatArray | Int32Array> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, data_offsets: [a, b] } = info as { dtype: string; data_offsets: [number, number] };
    // A copy into a fresh (aligned) ArrayBuffer; x86 is little-endian like the file.
    const bytes = new Uint8Array(buf.subarray(8 + n + a, 8 + n + b)).buffer;
    tensors[name] = dtype === 'F64' ? new Float64Array(bytes) : dtype === 'F32' ? new Float32Array(bytes) : new Int32Array(bytes);
  }
  return { tensors, metadata: (header.__metadata__ ?? {}) as Record<string, string> };
}

export const EPS = { float64: 2 ** -52, float32: 2 ** -23 } as const;

/** max|got − want| / max|want|, in units of the dtype's epsilon (normwise, as the fixtures' README asks). */
export function errEps(got: ArrayLike<number>, want: ArrayLike<number>, dtype: 'float64' | 'float32'): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} ≠ ${want.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (Number.isNaN(diff)) return Infinity;
  return scale === 0 ? (diff === 0 ? 0 : Infinity) : diff / scale / EPS[dtype];
}

export const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

/**
 * max|a − b| / max(max|b|, floor) (NaN anywhere: Infinity). The floor (in test/05, a hundredth of
 * the largest gradient entry of the call) covers tensors that are themselves the result of
 * cancellation — with D = H = 1, dW1 is one sum whose terms are much larger than the result — where
 * rounding is relative to the terms.
 */
export function normwise(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} ≠ ${b.length}`);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  if (Number.isNaN(diff)) return Infinity;
  const scale = Math.max(maxAbs(b), floor);
  return scale === 0 ? diff : diff / scale;
}

export function typed(dtype: 'float64' | 'float32', a: ArrayLike<number>): FloatArray {
  return dtype === 'float64' ? Float64Array.from(a) : Float32Array.from(a);
}

export function caseParams(c: JsonCase) {
  return {
    W1: typed(c.dtype, c.inputs.W1),
    b1: typed(c.dtype, c.inputs.b1),
    W2: typed(c.dtype, c.inputs.W2),
    b2: typed(c.dtype, c.inputs.b2),
  };
}

export interface Net {
  W1: ArrayLike<number>;
  b1: ArrayLike<number>;
  W2: ArrayLike<number>;
  b2: ArrayLike<number>;
}

/** The loss, from the definition, in float64 — the function finite differences differentiate. */
export function referenceLoss(p: Net, X: ArrayLike<number>, y: ArrayLike<number>, act: Activation, red: Reduction): number {
  const H = p.b1.length;
  const C = p.b2.length;
  const D = p.W1.length / H;
  const B = y.length;
  let total = 0;
  for (let b = 0; b < B; b++) {
    const a1: number[] = [];
    for (let h = 0; h < H; h++) {
      let z = p.b1[h];
      for (let d = 0; d < D; d++) z += X[b * D + d] * p.W1[d * H + h];
      a1.push(act === 'relu' ? Math.max(z, 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-z)) : Math.tanh(z));
    }
    const z2: number[] = [];
    for (let c = 0; c < C; c++) {
      let z = p.b2[c];
      for (let h = 0; h < H; h++) z += a1[h] * p.W2[h * C + c];
      z2.push(z);
    }
    const m = Math.max(...z2);
    const lse = m + Math.log(z2.reduce((s, z) => s + Math.exp(z - m), 0));
    total += lse - z2[y[b]];
  }
  return red === 'mean' ? total / B : total;
}

/** Central differences of referenceLoss with respect to every entry of one tensor. */
export function numericalGrad(
  tensor: Float64Array,
  loss: () => number,
  step = 1e-6,
): Float64Array {
  const g = new Float64Array(tensor.length);
  for (let i = 0; i < tensor.length; i++) {
    const keep = tensor[i];
    tensor[i] = keep + step;
    const plus = loss();
    tensor[i] = keep - step;
    const minus = loss();
    tensor[i] = keep;
    g[i] = (plus - minus) / (2 * step);
  }
  return g;
}

/** A deterministic pseudo-random array (a small LCG, so the tests do not depend on lib/rng). */
export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0 || 1;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

export function randomLabels(B: number, C: number, seed: number): Int32Array {
  const r = randomArray(B, seed);
  return Int32Array.from(r, (v) => Math.min(C - 1, Math.floor(((v + 1) / 2) * C)));
}

/** The two-layer params, X and y of one seeded problem, weights scaled by 1/√fan_in. */
export function randomProblem(dtype: 'float64' | 'float32', B: number, D: number, H: number, C: number, seed: number) {
  const make = (n: number, s: number, scale: number) => typed(dtype, randomArray(n, s, scale));
  return {
    params: { W1: make(D * H, seed + 1, 1 / Math.sqrt(D)), b1: make(H, seed + 2, 0.1), W2: make(H * C, seed + 3, 1 / Math.sqrt(H)), b2: make(C, seed + 4, 0.1) },
    X: make(B * D, seed + 5, 1),
    y: randomLabels(B, C, seed + 6),
  };
}

// ---- which backends run here: the one skip policy ----------------------------------------------

export const BACKENDS: readonly BackendName[] = ['native', 'ts', 'wasm', 'torch'];

/** The first of `names` that runs with --version (as scripts/build-wasm.mjs looks for its tools). */
function onPath(names: string[]): string | null {
  for (const name of names) {
    const r = spawnSync(name, ['--version'], { stdio: 'ignore' });
    if (!r.error && r.status === 0) return name;
  }
  return null;
}
const withVersions = (base: string) => [base, ...[20, 19, 18, 17, 16, 15, 14].map((v) => `${base}-${v}`)];

/** The Debian packages of `names` that are not installed, or null where there is no dpkg to ask. */
function missingDebs(names: string[]): string[] | null {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Status}\n', ...names], { encoding: 'utf8' });
  if (r.error) return null;
  const ok = new Set(r.stdout.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0].split(':')[0]));
  return names.filter((n) => !ok.has(n));
}

function wasmSkipReason(): string | null {
  if (existsSync(wasmModulePath())) return null;
  const clang = process.env.CLANG || onPath(withVersions('clang'));
  const ld = process.env.WASM_LD || onPath(withVersions('wasm-ld'));
  if (!clang) return 'clang not installed';
  if (!ld) return 'wasm-ld not installed (package lld)';
  const targets = spawnSync(clang, ['-print-targets'], { encoding: 'utf8' });
  if (targets.status === 0 && !/\bwasm32\b/.test(targets.stdout)) return `${clang} has no wasm32 target`;
  return null; // the toolchain is here: setup builds the module, and a missing one is a failure
}

function torchSkipReason(): string | null {
  if (torchAvailable()) return null;
  const missing = missingDebs(['cmake', 'libtorch-dev']);
  if (missing === null) return 'the LibTorch addon is not built, and there is no dpkg to ask for LibTorch';
  if (missing.length > 0) return `${missing.join(' and ')} not installed`;
  return null; // LibTorch is here: setup builds the addon, and a missing one is a failure
}

const reasons = new Map<BackendName, string | null>();

/**
 * Why the tests of a backend are skipped here, or null when they must run. native and ts always
 * run. wasm runs where build-wasm/handgrad.wasm exists or clang (with its wasm32 target) and wasm-ld
 * are installed; torch where the LibTorch addon loads or cmake and libtorch-dev are installed. Setup
 * builds them wherever their toolchain is, so there a missing module or addon is a failure, never a
 * skip.
 */
export function skipReason(backend: BackendName): string | null {
  if (!reasons.has(backend)) {
    reasons.set(backend, backend === 'wasm' ? wasmSkipReason() : backend === 'torch' ? torchSkipReason() : null);
  }
  return reasons.get(backend)!;
}

/** Each backend with null (it must run) or the reason it is skipped here: what every suite iterates over. */
export function backendCases(only: readonly BackendName[] = BACKENDS): [BackendName, string | null][] {
  return only.map((b) => [b, skipReason(b)]);
}

/** `title [backend]`, with `(skipped: reason)` when the backend does not run here. */
export function backendTitle(title: string, backend: BackendName, skip = skipReason(backend)): string {
  return `${title} [${backend}]${skip === null ? '' : ` (skipped: ${skip})`}`;
}

/**
 * describe.each(backendCases(only)), one suite per backend titled `title [backend]`; a backend that
 * does not run here is a skipped suite whose title says why. (describe.each itself cannot skip one
 * of its cases.) The body runs at collection even when skipped: it must not call the backend there.
 */
export function describeBackends(title: string, body: (backend: BackendName) => void, only: readonly BackendName[] = BACKENDS): void {
  for (const [backend, skip] of backendCases(only)) describe.skipIf(skip !== null)(backendTitle(title, backend, skip), () => body(backend));
}

/** What fn throws (a test of the error's type and words); an Error when it returns instead. */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

/** Equality to the bit, element by element (−0 against 0 and NaN against NaN count as they are). */
export function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

// ---- bits (the exact mode's goldens, test/39 and test/44; torch.optim's, test/39 and test/41) ----

/** Hex bit strings (8 digits a float32, 16 a float64) → the dtype's values, bit for bit. */
export function fromBits(dtype: 'float32' | 'float64', hex: readonly string[]): FloatArray {
  if (dtype === 'float32') return new Float32Array(Uint32Array.from(hex, (h) => parseInt(h, 16)).buffer);
  return new Float64Array(BigUint64Array.from(hex, (h) => BigInt(`0x${h}`)).buffer);
}

/** Row-major [rows, cols] → [cols, rows]: nn.Linear's weight [out, in] ↔ this package's W [in, out]. */
export function transposeRows(a: FloatArray, rows: number, cols: number): FloatArray {
  const t = new (a.constructor as new (n: number) => FloatArray)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

/** How many entries differ in any bit (−0 against 0 counts). */
export function differingEntries(got: FloatArray, want: FloatArray): number {
  const a = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  const b = new Uint8Array(want.buffer, want.byteOffset, want.byteLength);
  const size = got.BYTES_PER_ELEMENT;
  let n = 0;
  for (let i = 0; i < got.length; i++) {
    for (let k = 0; k < size; k++) {
      if (a[i * size + k] !== b[i * size + k]) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** Runs fn with ATEN_CPU_CAPABILITY set (or unset: null) in this process, as the core's rules and exact mode read it. */
export function withCapability<R>(value: string | null, fn: () => R): R {
  const saved = process.env.ATEN_CPU_CAPABILITY;
  if (value === null) delete process.env.ATEN_CPU_CAPABILITY;
  else process.env.ATEN_CPU_CAPABILITY = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.ATEN_CPU_CAPABILITY;
    else process.env.ATEN_CPU_CAPABILITY = saved;
  }
}

/** The error thrown by fn, which must be a HandgradError with code ERR_FILE. */
export function fileError(fn: () => unknown): HandgradError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HandgradError);
    expect((e as HandgradError).code).toBe('ERR_FILE');
    return e as HandgradError;
  }
  throw new Error('expected an ERR_FILE HandgradError, but nothing was thrown');
}

// ---- PyTorch Python and LibTorch's CPU kernel sets (tests 39, 40, 41) ----

/** Debian's interpreter, where python3-torch installs torch (`python3` on PATH may be another). */
export const TORCH_PYTHON = '/usr/bin/python3';

/** Why the live PyTorch Python tests skip here (TORCH_PYTHON cannot import `modules`), or null. */
export function torchPythonSkip(modules = 'torch'): string | null {
  const r = spawnSync(TORCH_PYTHON, ['-c', `import ${modules}`], { stdio: 'ignore' });
  return r.error || r.status !== 0 ? `${TORCH_PYTHON} cannot import ${modules} (apt install python3-torch)` : null;
}

/** Which of LibTorch's CPU kernel sets (ATEN_CPU_CAPABILITY) this CPU can run, from /proc/cpuinfo (Linux; elsewhere DEFAULT only). */
export const atenKernelSetsHere: Readonly<Record<'default' | 'avx2' | 'avx512', boolean>> = (() => {
  let flags = new Set<string>();
  try {
    flags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/));
  } catch {
    // not Linux: none assumed
  }
  return {
    default: true,
    avx2: flags.has('avx2') && flags.has('fma'),
    avx512: ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'fma'].every((f) => flags.has(f)),
  };
})();

/**
 * The Trainer's own update path (lib/train/update.ts over a one-tensor TrainState), one step per
 * gradient: the C++ rule on the native backend where it has one, TypeScript's otherwise.
 */
export function trainerUpdateRun(opts: OptimizerOptions, backend: 'native' | 'ts', W0: FloatArray, grads: FloatArray[], lr: number): FloatArray {
  const dtype = W0 instanceof Float32Array ? 'float32' : 'float64';
  const s = allocateState({ dtype, D: 1, C: 1, batchSize: 1, lr, seed: 0, backend, optimizer: optimizerConfig(opts), schedule: 'constant', layers: [] }, { W: W0 });
  for (const g of grads) {
    s.grads.W.set(g);
    applyUpdate(s, lr);
  }
  return s.params.W.slice();
}

// ---- local process-group jobs (tests 42, 52) ----

/** Why a job of local ranks cannot run here (the distributed addon or dist/ not built), or null. */
export function distributedSkip(): string | null {
  if (!available(distributedBinding)) return `the distributed addon is not built (${distributedAddonPath()}; npm run setup with cmake, libtorch-dev and libgloo-dev)`;
  if (!existsSync(join(__dirname, '..', 'dist', 'lib', 'index.js'))) return 'dist/ is not built (npm run setup)';
  return null;
}

/** A TCP port free on 127.0.0.1 now (the OS's choice), for a job's master. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** How a process run by runBounded ended. */
export interface BoundedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** SIGKILLed by runBounded after limitMs: a hang is a result, not a stuck test. */
  killedByTest: boolean;
}

/**
 * Runs `cmd args` to its end with `env` over this process's environment, SIGKILLed after limitMs;
 * `started` sees the child (to signal it). The distributed tests' ranks and launches.
 */
export function runBounded(cmd: string, args: string[], env: NodeJS.ProcessEnv, limitMs: number, started?: (c: ChildProcess) => void): Promise<BoundedExit> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killedByTest = false;
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      killedByTest = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, killedByTest });
    });
    started?.(child);
  });
}
