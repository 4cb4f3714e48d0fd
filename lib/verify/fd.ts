// Central finite differences of the two-layer loss in float64, entry by entry or along a direction.
//
// The loss is a sum over rows, L = s·Σ_b ℓ_b (s = 1/B for mean), and every parameter entry moves
// each row through one narrow path, so a perturbation is propagated as a *change* rather than by a
// full forward pass (the same function, evaluated incrementally):
//   W2[h,c] ± t   → logits[b,c] moves by ±t·A1[b,h]                                    O(B) per entry
//   W1[d,h] ± t   → Z1[b,h] moves by ±t·X[b,d] → A1[b,h] by ΔA → logits[b,:] by ΔA·W2[h,:]  O(B·C)
//   X[b,d] ± t    → Z1[b,:] moves by ±t·W1[d,:] → logits[b,:] by ΔA·W2                 O(H·C)
// and the change of a row's loss for a logit shift δ is computed without cancellation:
//   ℓ_b(z+δ) − ℓ_b(z) = log Σ_c p_c e^{δ_c} − δ_y = log1p(Σ_c p_c·expm1(δ_c)) − δ_y
// (ΔA likewise: tanh(z+δ) − tanh(z) = tanh(δ)(1 − tanh z · tanh(z+δ)); σ via tanh(x/2)). The
// quotient (Δℓ(+t) − Δℓ(−t)) / 2t then carries no rounding from subtracting two nearly equal
// losses, only the O(t²) truncation of the central difference.
//
// ReLU kinks: a row whose Z1 entry changes sign between the +t and −t evaluations makes the
// quotient meaningless. Policy 'report' (gradcheck) flags the entry as a kink; policy 'avoid'
// (the verifier's reference) shrinks that row's step until it stays on one side, and treats
// Z1 == 0 exactly as PyTorch does (relu'(0) = 0, so that row contributes nothing).
import type { Problem64, Forward64 } from './model64';
import { forward64 } from './model64';

export type FdTensor = 'X' | 'W1' | 'b1' | 'W2' | 'b2';
export type KinkPolicy = 'report' | 'avoid';

export interface FdValue {
  value: number;
  /** A ReLU pre-activation changed sign between the +step and −step evaluations. */
  kink: boolean;
}

/** Neumaier's compensated sum: the B row contributions add without losing their low bits. */
class Sum {
  private s = 0;
  private c = 0;
  add(x: number): void {
    const t = this.s + x;
    this.c += Math.abs(this.s) >= Math.abs(x) ? this.s - t + x : x - t + this.s;
    this.s = t;
  }
  get value(): number {
    return this.s + this.c;
  }
}

export class FiniteDifferences {
  readonly p: Problem64;
  readonly f: Forward64;
  private readonly scale: number;
  private readonly delta: Float64Array;
  private readonly dA: Float64Array;
  private readonly dAm: Float64Array;
  private readonly deltaM: Float64Array;
  private readonly comp: Float64Array;
  /** Σ_{c≠y_b} p_bc per row: 1 − p_y without the cancellation. */
  private readonly otherMass: Float64Array;

  constructor(p: Problem64, f: Forward64 = forward64(p)) {
    this.p = p;
    this.f = f;
    this.scale = p.reduction === 'mean' ? 1 / p.dims.B : 1;
    this.delta = new Float64Array(p.dims.C);
    this.deltaM = new Float64Array(p.dims.C);
    this.comp = new Float64Array(p.dims.C);
    const { B, C } = p.dims;
    this.otherMass = new Float64Array(B);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) if (c !== p.y[b]) this.otherMass[b] += f.probs[b * C + c];
    this.dA = new Float64Array(p.dims.H);
    this.dAm = new Float64Array(p.dims.H);
  }

  /** The shape of a tensor. */
  shape(t: FdTensor): number[] {
    const { B, D, H, C } = this.p.dims;
    return { X: [B, D], W1: [D, H], b1: [H], W2: [H, C], b2: [C] }[t];
  }

  /**
   * ℓ_b(logits_b + δ) − ℓ_b(logits_b) = log Σ_c p_c·e^{δ_c − δ_y} = log1p(Σ_{c≠y} p_c·expm1(δ_c − δ_y)):
   * the label's own term drops out exactly, so nothing cancels even when p_y ≈ 1.
   */
  private rowDelta(b: number, delta: Float64Array): number {
    const C = this.p.dims.C;
    const pr = this.f.probs;
    const y = this.p.y[b];
    const dy = delta[y];
    let s = 0;
    for (let c = 0; c < C; c++) if (c !== y) s += pr[b * C + c] * Math.expm1(delta[c] - dy);
    return Math.log1p(s);
  }

  /** act(z + dz) − act(z), without subtracting two nearly equal numbers. */
  private actDelta(z: number, a: number, dz: number): number {
    if (dz === 0) return 0;
    const act = this.p.activation;
    if (act === 'relu') {
      const zp = z + dz;
      if (z > 0 && zp > 0) return dz;
      if (z <= 0 && zp <= 0) return 0;
      return (zp > 0 ? zp : 0) - (z > 0 ? z : 0);
    }
    if (act === 'tanh') return Math.tanh(dz) * (1 - a * Math.tanh(z + dz));
    return 0.5 * Math.tanh(dz / 2) * (1 - Math.tanh(z / 2) * Math.tanh((z + dz) / 2));
  }

  /** ∂L/∂θ at one entry of one tensor (flat row-major index), by central differences with step `step`. */
  entry(tensor: FdTensor, index: number, step: number, policy: KinkPolicy = 'report'): FdValue {
    if (tensor === 'W2' || tensor === 'b2') return this.entryLayer2(tensor, index, step);
    if (tensor === 'X') return this.entryX(index, step, policy);
    return this.entryLayer1(tensor, index, step, policy);
  }

  private entryLayer2(tensor: 'W2' | 'b2', index: number, t: number): FdValue {
    const { B, C } = this.p.dims;
    const h = tensor === 'W2' ? Math.floor(index / C) : -1;
    const c = tensor === 'W2' ? index % C : index;
    const H = this.p.dims.H;
    const sum = new Sum();
    for (let b = 0; b < B; b++) {
      const a = h < 0 ? 1 : this.f.A1[b * H + h];
      if (a === 0) continue;
      const d = t * a;
      // Only logit c moves: for c ≠ y the row changes by log1p(p_c·expm1(±d)); for c = y every
      // other logit moves by ∓d relative to it, log1p(q·expm1(∓d)) with q = Σ_{c'≠y} p_c' (not 1 − p_y).
      const y = this.p.y[b];
      const p = y === c ? this.otherMass[b] : this.f.probs[b * C + c];
      const sign = y === c ? -1 : 1;
      const plus = Math.log1p(p * Math.expm1(sign * d));
      const minus = Math.log1p(p * Math.expm1(-sign * d));
      sum.add((plus - minus) / (2 * t));
    }
    return { value: this.scale * sum.value, kink: false };
  }

  private entryLayer1(tensor: 'W1' | 'b1', index: number, step: number, policy: KinkPolicy): FdValue {
    const { B, D, H, C } = this.p.dims;
    const d = tensor === 'W1' ? Math.floor(index / H) : -1;
    const h = tensor === 'W1' ? index % H : index;
    const relu = this.p.activation === 'relu';
    const sum = new Sum();
    let kink = false;
    for (let b = 0; b < B; b++) {
      const x = d < 0 ? 1 : this.p.X[b * D + d];
      if (x === 0) continue;
      const z = this.f.Z1[b * H + h];
      const a = this.f.A1[b * H + h];
      let t = step;
      if (relu) {
        if (policy === 'avoid') {
          if (z === 0) continue; // relu'(0) = 0, as PyTorch
          if (Math.abs(z) <= t * Math.abs(x)) t = Math.abs(z) / (2 * Math.abs(x));
          if (!(t > 0)) {
            kink = true;
            continue;
          }
        } else if (z + t * x > 0 !== z - t * x > 0) {
          kink = true;
        }
      }
      const dAp = this.actDelta(z, a, t * x);
      const dAm = this.actDelta(z, a, -t * x);
      if (dAp === 0 && dAm === 0) continue;
      for (let c = 0; c < C; c++) {
        const w = this.p.W2[h * C + c];
        this.delta[c] = dAp * w;
        this.deltaM[c] = dAm * w;
      }
      sum.add((this.rowDelta(b, this.delta) - this.rowDelta(b, this.deltaM)) / (2 * t));
    }
    return { value: this.scale * sum.value, kink };
  }

  private entryX(index: number, step: number, policy: KinkPolicy): FdValue {
    const { D, H } = this.p.dims;
    const b = Math.floor(index / D);
    const d = index % D;
    const relu = this.p.activation === 'relu';
    const { Z1 } = this.f;
    const W1 = this.p.W1;
    let t = step;
    let kink = false;
    if (relu) {
      for (let h = 0; h < H; h++) {
        const w = W1[d * H + h];
        const z = Z1[b * H + h];
        if (w === 0) continue;
        if (policy === 'avoid') {
          if (z !== 0 && Math.abs(z) <= t * Math.abs(w)) t = Math.abs(z) / (2 * Math.abs(w));
        } else if (z + t * w > 0 !== z - t * w > 0) {
          kink = true;
        }
      }
      if (!(t > 0)) return { value: NaN, kink: true };
    }
    const forceZero = relu && policy === 'avoid';
    this.fillRowShift(b, d, t, 1, forceZero, this.dA);
    this.fillRowShift(b, d, t, -1, forceZero, this.dAm);
    this.logitShift(this.dA, this.delta);
    this.logitShift(this.dAm, this.deltaM);
    const value = (this.rowDelta(b, this.delta) - this.rowDelta(b, this.deltaM)) / (2 * t);
    return { value: this.scale * value, kink };
  }

  /** ΔA1[b,:] when X[b,d] moves by sign·t (Z1[b,h] moves by sign·t·W1[d,h]). */
  private fillRowShift(b: number, d: number, t: number, sign: number, forceZero: boolean, out: Float64Array): void {
    const H = this.p.dims.H;
    for (let h = 0; h < H; h++) {
      const z = this.f.Z1[b * H + h];
      out[h] = forceZero && z === 0 ? 0 : this.actDelta(z, this.f.A1[b * H + h], sign * t * this.p.W1[d * H + h]);
    }
  }

  /** δ[c] = Σ_h ΔA[h]·W2[h,c]. */
  private logitShift(dA: Float64Array, out: Float64Array): void {
    const { H, C } = this.p.dims;
    const comp = this.comp;
    out.fill(0);
    comp.fill(0);
    // Compensated (Neumaier) sums over the H hidden units, so δ is as exact as its inputs.
    for (let h = 0; h < H; h++) {
      const a = dA[h];
      if (a === 0) continue;
      for (let c = 0; c < C; c++) {
        const x = a * this.p.W2[h * C + c];
        const s = out[c];
        const t = s + x;
        comp[c] += Math.abs(s) >= Math.abs(x) ? s - t + x : x - t + s;
        out[c] = t;
      }
    }
    for (let c = 0; c < C; c++) out[c] += comp[c];
  }

  /**
   * The directional derivative ∇_θL · u for a direction u over a whole tensor (fast mode), by
   * central differences with step `step`; `kink` when any Z1 entry changes sign.
   */
  direction(tensor: FdTensor, u: Float64Array, step: number): FdValue {
    const { B, D, H, C } = this.p.dims;
    const t = step;
    let kink = false;
    const sum = new Sum();
    const relu = this.p.activation === 'relu';
    if (tensor === 'W2' || tensor === 'b2') {
      for (let b = 0; b < B; b++) {
        for (let c = 0; c < C; c++) {
          let g = 0;
          if (tensor === 'b2') g = u[c];
          else for (let h = 0; h < H; h++) g += this.f.A1[b * H + h] * u[h * C + c];
          this.delta[c] = t * g;
          this.deltaM[c] = -t * g;
        }
        sum.add((this.rowDelta(b, this.delta) - this.rowDelta(b, this.deltaM)) / (2 * t));
      }
      return { value: this.scale * sum.value, kink };
    }
    // The change of Z1 per unit step: X·U (W1), u broadcast (b1), U·W1 (X).
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        let g = 0;
        if (tensor === 'b1') g = u[h];
        else if (tensor === 'W1') for (let d = 0; d < D; d++) g += this.p.X[b * D + d] * u[d * H + h];
        else for (let d = 0; d < D; d++) g += u[b * D + d] * this.p.W1[d * H + h];
        const z = this.f.Z1[b * H + h];
        const a = this.f.A1[b * H + h];
        if (relu && z + t * g > 0 !== z - t * g > 0) kink = true;
        this.dA[h] = this.actDelta(z, a, t * g);
        this.dAm[h] = this.actDelta(z, a, -t * g);
      }
      this.logitShift(this.dA, this.delta);
      this.logitShift(this.dAm, this.deltaM);
      sum.add((this.rowDelta(b, this.delta) - this.rowDelta(b, this.deltaM)) / (2 * t));
    }
    return { value: this.scale * sum.value, kink };
  }

  /**
   * Every entry of a tensor's gradient; `onEntry(done)` is called as entries complete (for
   * progress reports on long runs).
   */
  gradient(tensor: FdTensor, step: number, policy: KinkPolicy, onEntry?: (done: number, total: number) => void): { grad: Float64Array; kinks: Uint8Array } {
    const n = this.shape(tensor).reduce((a, b) => a * b, 1);
    const grad = new Float64Array(n);
    const kinks = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const r = this.entry(tensor, i, step, policy);
      grad[i] = r.value;
      kinks[i] = r.kink ? 1 : 0;
      if (onEntry) onEntry(i + 1, n);
    }
    return { grad, kinks };
  }
}
