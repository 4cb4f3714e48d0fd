// Update rules, written to match torch.optim step for step (same order of operations), so a
// LibTorch run over the same gradients can check them.
import type { FloatArray } from '../types';
import { torchBinding } from '../backends/torch';
import { available, coreBinding } from '../binding';
import { fma32, fma64 } from './fma';
import { powWhole } from './pow';
import * as v from '../validate';

export type OptimizerName = 'sgd' | 'momentum' | 'nesterov' | 'adam' | 'adamw';
export const OPTIMIZERS: readonly OptimizerName[] = ['sgd', 'momentum', 'nesterov', 'adam', 'adamw'];
/** The codes of native/core/optimizer.h's Optimizer enum. */
export const OPTIMIZER_CODE: Record<OptimizerName, number> = { sgd: 0, momentum: 1, nesterov: 2, adam: 3, adamw: 4 };

export interface OptimizerOptions {
  /**
   * 'sgd' (torch.optim.SGD: plain, or with momentum/dampening/nesterov), 'adam', 'adamw'.
   * 'momentum' and 'nesterov' are this package's older names: 'sgd' with momentum (default 0.9),
   * and with nesterov: true.
   */
  optimizer?: OptimizerName;
  /** SGD's momentum μ (default 0, torch.optim.SGD's; 0.9 under the names 'momentum'/'nesterov'). */
  momentum?: number;
  /** SGD's dampening (default 0): the buffer adds (1 − dampening)·g after the first step. */
  dampening?: number;
  /** Nesterov momentum for SGD (default false; needs momentum > 0 and dampening 0, as torch). */
  nesterov?: boolean;
  /** Adam's β1, β2 (default 0.9, 0.999) and ε (1e-8). */
  beta1?: number; beta2?: number; epsilon?: number;
  /** L2 penalty added to the gradient (SGD, Adam) or decoupled decay (AdamW). Default 0; 0.01 for AdamW, as torch.optim.AdamW. */
  weightDecay?: number;
  /** Adam/AdamW's AMSGrad (default false): the denominator uses the largest v seen so far. */
  amsgrad?: boolean;
}

/**
 * The settings resolved: `name` is the rule ('sgd' with momentum > 0 is 'momentum', with nesterov
 * 'nesterov'), so the Trainer allocates the buffers the rule needs.
 */
export type OptimizerConfig = { name: OptimizerName } & Required<Omit<OptimizerOptions, 'optimizer'>>;

/** The options each family takes, as torch.optim.SGD and torch.optim.Adam/AdamW take them. */
const SGD_KEYS = ['momentum', 'dampening', 'nesterov'] as const;
const ADAM_KEYS = ['beta1', 'beta2', 'epsilon', 'amsgrad'] as const;

/**
 * The optimizer's settings (lr is the Trainer's), checked as torch.optim checks them (μ ≥ 0,
 * 0 ≤ β < 1, ε ≥ 0, weight decay ≥ 0, Nesterov needs μ > 0 and dampening 0, and an option of the
 * other family is a TypeError, as torch.optim's unexpected keyword argument), plus finiteness and
 * this package's caps (μ ≤ 1: a larger μ only amplifies; dampening ≤ 1; ε ≤ 1). `prefix` names
 * them in errors ('opts', or where a checkpoint keeps them); `kindName` names the optimizer's own
 * key; `nameOf` an option's (the CLI's --momentum, --betas[0], …).
 * @throws {TypeError|RangeError}
 */
export function optimizerConfig(
  o: OptimizerOptions, prefix = 'opts', kindName = `${prefix}.optimizer`, nameOf = (key: string) => `${prefix}.${key}`,
): OptimizerConfig {
  const num = (key: string, x: unknown, fallback: number, lo: number, hi: number, hiOpen = false) => {
    if (x === undefined) return fallback;
    const name = nameOf(key);
    if (typeof x !== 'number') v.fail(TypeError, 'a number', name, x);
    const inside = x >= lo && (hiOpen ? x < hi : x <= hi) && Number.isFinite(x);
    if (!inside) v.fail(RangeError, hi === Infinity ? `a finite number ≥ ${lo}` : `a finite number in [${lo}, ${hi}${hiOpen ? ')' : ']'}`, name, x);
    return x;
  };
  const given = v.oneOf(kindName, o.optimizer, OPTIMIZERS, 'sgd');
  const adam = given === 'adam' || given === 'adamw';
  // torch.optim.Adam(momentum=0.9) is a TypeError (an unexpected keyword argument): an option of the
  // other family would otherwise be accepted and change nothing.
  for (const key of adam ? SGD_KEYS : ADAM_KEYS) {
    if (o[key] !== undefined) v.fail(TypeError, `nothing with optimizer '${given}' (${key} is ${adam ? "SGD's" : "Adam's and AdamW's"}, as in torch.optim)`, nameOf(key), o[key]);
  }
  const momentum = num('momentum', o.momentum, given === 'momentum' || given === 'nesterov' ? 0.9 : 0, 0, 1);
  const dampening = num('dampening', o.dampening, 0, 0, 1);
  const nesterov = v.bool(nameOf('nesterov'), o.nesterov, given === 'nesterov');
  if (given === 'nesterov' && !nesterov) v.fail(RangeError, "true or nothing with optimizer 'nesterov' (it is 'sgd' with nesterov: true)", nameOf('nesterov'), nesterov);
  // torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening".
  if (nesterov && momentum === 0) v.fail(RangeError, 'momentum > 0 (Nesterov needs it, as torch.optim.SGD does)', nameOf('momentum'), momentum);
  if (nesterov && dampening !== 0) v.fail(RangeError, 'dampening 0 (Nesterov needs it, as torch.optim.SGD does)', nameOf('dampening'), dampening);
  const amsgrad = v.bool(nameOf('amsgrad'), o.amsgrad, false);
  const name: OptimizerName = nesterov ? 'nesterov' : given === 'sgd' && momentum > 0 ? 'momentum' : given;
  return {
    name, momentum, dampening, nesterov, amsgrad,
    beta1: num('beta1', o.beta1, 0.9, 0, 1, true),
    beta2: num('beta2', o.beta2, 0.999, 0, 1, true),
    epsilon: num('epsilon', o.epsilon, 1e-8, 0, 1),
    weightDecay: num('weightDecay', o.weightDecay, given === 'adamw' ? 0.01 : 0, 0, Infinity),
  };
}

/** The options of `cfg`'s own family (what torch.optim's constructor for it takes), for a caller that passes them on. */
export function familyOptions(cfg: OptimizerConfig): OptimizerOptions {
  const adam = cfg.name === 'adam' || cfg.name === 'adamw';
  const keys = adam ? ADAM_KEYS : SGD_KEYS;
  const out: Record<string, unknown> = { optimizer: cfg.name, weightDecay: cfg.weightDecay };
  for (const k of keys) out[k] = cfg[k];
  return out as OptimizerOptions;
}

/** Per-tensor state buffers: momentum's buffer, or Adam's moments (and AMSGrad's largest v). */
export interface SlotState { m: FloatArray | null; v: FloatArray | null; vmax?: FloatArray | null }

/** The buffers one tensor needs under this optimizer (allocated once, by the caller's allocator). */
export function slotLengths(name: OptimizerName, n: number, amsgrad = false): { m: number; v: number; vmax: number } {
  if (name === 'sgd') return { m: 0, v: 0, vmax: 0 };
  if (name === 'momentum' || name === 'nesterov') return { m: n, v: 0, vmax: 0 };
  return { m: n, v: n, vmax: amsgrad ? n : 0 };
}

const same = (x: number) => x;

/** LibTorch's CPU kernel sets (ATen's CPUCapability), as native/core/exact_lanes.h names them. */
export type AtenCapability = 'DEFAULT' | 'AVX2' | 'AVX512';
const CAPABILITY_NAMES: Record<string, AtenCapability> = { default: 'DEFAULT', avx2: 'AVX2', avx512: 'AVX512' };

/**
 * The kernel set LibTorch runs here, which decides whether its add(alpha) and addcmul fuse (AVX2,
 * AVX512) or round the product first (DEFAULT). From the core addon when it loads (the detection
 * the C++ rule and the exact mode use: ATEN_CPU_CAPABILITY, else the CPU's AVX2 and FMA). Without
 * the addon (the pure-TS package): ATEN_CPU_CAPABILITY when it names a kernel set, as ATen reads
 * it, else AVX2 — what LibTorch picks on any x86-64 with AVX2 and FMA (since 2013); on a CPU
 * without them, set ATEN_CPU_CAPABILITY=default to get torch.optim's bits there.
 */
export function atenCapability(): AtenCapability {
  return available(coreBinding) ? coreBinding().atenCapability() : assumedCapability(process.env.ATEN_CPU_CAPABILITY);
}

/** The kernel set assumed without the addon, from ATEN_CPU_CAPABILITY's value (an unknown one is ignored, as ATen ignores it). */
export function assumedCapability(setting: string | undefined): AtenCapability {
  return CAPABILITY_NAMES[setting ?? ''] ?? 'AVX2';
}

/** a·b + c as ATen's DEFAULT kernels round it: the product, then the sum (float64; JavaScript never fuses). */
const mad64 = (a: number, b: number, c: number) => a * b + c;
/** The same in float32: each operation rounded once to float32. */
const mad32 = (a: number, b: number, c: number) => Math.fround(Math.fround(a * b) + c);

/**
 * One update of W in place from its gradient g. `t` is the 1-based step count (Adam's bias
 * correction; momentum's first step copies g, as torch.optim.SGD does). Returns whether every
 * value written (W, and m, v) is finite: x − x is 0 for a finite x and NaN otherwise, so one
 * subtraction and one addition per value, read back from the array (a float32 store can overflow
 * where the double did not), test them in the loop that writes them.
 *
 * Operation for operation torch.optim 1.13's single-tensor path, in W's dtype, with the roundings
 * of ATen's kernels, as native/core/optimizer.h: each scalar (1 − β, −lr / (1 − β1^t),
 * √(1 − β2^t), 1 − lr·wd) computed in double as Python computes it and rounded once to the dtype;
 * each tensor op rounded to the dtype (`r`, Math.fround for float32; a float32 sum, product,
 * quotient or square root taken in double and rounded once is the float32 operation); ATen's
 * add(a, b, alpha) and addcmul are fused multiply-adds in its AVX2 and AVX512 kernels (`fma`:
 * ./fma.ts, exact in both dtypes) and a rounded product plus a rounded sum in its DEFAULT ones
 * (`fused` false: ATEN_CPU_CAPABILITY=default, or a CPU without AVX2; native/core/optimizer.h
 * says what was measured). `fused` defaults to what atenCapability() says LibTorch runs here.
 * The exact FMAs cost: the update of a 784×256 tensor takes 5–11× the unfused rule's time for
 * float64 (5–11 ms a step against ~1 ms), 2.4–6× for float32 (measured on a loaded 2-core machine).
 * The native backend runs native/core/optimizer.h, where the FMA is one instruction.
 */
export function update(
  cfg: OptimizerConfig, W: FloatArray, g: FloatArray, s: SlotState, lr: number, t: number, fused = atenCapability() !== 'DEFAULT',
): boolean {
  const n = W.length;
  const f32 = W instanceof Float32Array;
  const r = f32 ? Math.fround : same;
  // fma(a, b, c): a·b + c as ATen's add(alpha)/addcmul kernels round it on this kernel set.
  const fma = fused ? (f32 ? fma32 : fma64) : f32 ? mad32 : mad64;
  const wdGiven = cfg.weightDecay;
  const wd = r(wdGiven);
  const negLr = r(-lr);
  let sum = 0;
  switch (cfg.name) {
    case 'sgd':
      // torch: d = g.add(W, alpha=wd); W.add_(d, alpha=−lr)
      for (let i = 0; i < n; i++) {
        W[i] = fma(negLr, wdGiven === 0 ? g[i] : fma(wd, W[i], g[i]), W[i]);
        sum += W[i] - W[i];
      }
      return sum === 0;
    case 'momentum':
    case 'nesterov': {
      const m = s.m!;
      const mu = r(cfg.momentum);
      const nesterov = cfg.name === 'nesterov';
      const keep = r(1 - cfg.dampening);
      for (let i = 0; i < n; i++) {
        const gi = wdGiven === 0 ? g[i] : fma(wd, W[i], g[i]);
        m[i] = t === 1 ? gi : fma(keep, gi, r(mu * m[i])); // torch: buf = g on the first step, then buf.mul_(μ).add_(g, alpha=1 − dampening)
        W[i] = fma(negLr, nesterov ? fma(mu, m[i], gi) : m[i], W[i]); // Nesterov: d = g.add(buf, alpha=μ)
        sum += W[i] - W[i] + (m[i] - m[i]);
      }
      return sum === 0;
    }
    case 'adam':
    case 'adamw': {
      const m = s.m!;
      const vv = s.v!;
      const vmax = cfg.amsgrad ? s.vmax! : null;
      const b1 = r(cfg.beta1), b2 = r(cfg.beta2), a1 = r(1 - cfg.beta1), a2 = r(1 - cfg.beta2), eps = r(cfg.epsilon);
      const negStepSize = r(-(lr / (1 - powWhole(cfg.beta1, t))));
      const bc2Sqrt = r(Math.sqrt(1 - powWhole(cfg.beta2, t)));
      const decay = r(1 - lr * wdGiven);
      const decoupled = cfg.name === 'adamw';
      for (let i = 0; i < n; i++) {
        if (decoupled && wdGiven !== 0) W[i] *= decay; // torch: W.mul_(1 − lr·wd)
        const gi = !decoupled && wdGiven !== 0 ? fma(wd, W[i], g[i]) : g[i];
        m[i] = fma(a1, gi, r(b1 * m[i])); // m.mul_(β1).add_(g, alpha=1 − β1)
        vv[i] = fma(r(a2 * gi), gi, r(b2 * vv[i])); // v.mul_(β2).addcmul_(g, g, value=1 − β2): AVX2/AVX512 fuse the last multiply and the add
        // AMSGrad: torch.maximum(vmax, v, out=vmax), whose square root then stands for v's.
        const vDenom = vmax ? (vmax[i] = Math.max(vmax[i], vv[i])) : vv[i];
        // torch: denom = (sqrt(v) / sqrt(bias_correction2)).add_(eps); W.addcdiv_(m, denom, value=−step_size)
        const denom = r(r(r(Math.sqrt(vDenom)) / bc2Sqrt) + eps);
        W[i] += r(r(negStepSize * m[i]) / denom);
        sum += W[i] - W[i] + (m[i] - m[i]) + (vv[i] - vv[i]) + (vDenom - vDenom);
      }
      return sum === 0;
    }
  }
}

/**
 * Runs LibTorch's own optimizer (torch::optim) over `grads`, one step per gradient, updating W in
 * place: the reference for lib/train/optimizer.ts. The options are the Trainer's (optimizerConfig:
 * same names, defaults and ranges); each call starts from fresh optimizer state.
 * @throws {TypeError} when W is not a Float64Array/Float32Array, grads is not an array of W's dtype, or an option has the wrong type
 * @throws {RangeError} when a gradient's length differs from W's, a value is non-finite or out of range, or a gradient shares W's memory
 * @throws {HandgradError} ERR_TORCH_UNAVAILABLE
 */
export function torchOptimizerRun(opts: OptimizerOptions, W: FloatArray, grads: readonly FloatArray[], lr: number): void {
  const cfg = optimizerConfig(opts);
  const dtype = v.dtypeOf('W', W);
  if (!Array.isArray(grads)) v.fail(TypeError, 'an Array of typed arrays', 'grads', grads);
  grads.forEach((g, i) => {
    const name = `grads[${i}]`;
    if (v.dtypeOf(name, g) !== dtype) v.fail(TypeError, `a ${W.constructor.name} (the dtype of W)`, name, g);
    if (g.length !== W.length) v.fail(RangeError, `${W.length} elements (the length of W)`, name, g);
  });
  if (typeof lr !== 'number') v.fail(TypeError, 'a number', 'lr', lr);
  if (!(Number.isFinite(lr) && lr >= 0)) v.fail(RangeError, 'a finite number >= 0', 'lr', lr);
  torchBinding().optimizerRun(cfg.name, W, grads, lr, cfg.momentum, cfg.beta1, cfg.beta2, cfg.epsilon, cfg.weightDecay, cfg.dampening, cfg.amsgrad);
}
