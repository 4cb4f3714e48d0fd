// Central finite differences in float64 of the loss of a stack of Linear layers and elementwise
// activations (the two-layer network, or any Sequential), entry by entry or along a direction.
//
// The loss is a sum over rows, L = s·Σ_b ℓ_b (s = 1/B for mean), and every parameter entry moves
// each row through one narrow path, so a perturbation is propagated as a *change* rather than by a
// full forward pass (the same function, evaluated incrementally):
//   W_k[p,q] ± t  → Z_k[b,q] moves by ±t·A_{k−1}[b,p] (one unit) → through each later layer:
//                   a Linear moves the next Z by ΔA·W (compensated sums), an activation by
//                   act(z + δ) − act(z), until the logits
//   X[b,d] ± t    → row b of X moves at one entry, the rest of the batch not at all
// so for the two-layer network: W2 O(B) per entry, W1 O(B·C), X O(H·C). The change of a row's
// loss for a logit shift δ is computed without cancellation:
//   ℓ_b(z+δ) − ℓ_b(z) = log Σ_c p_c e^{δ_c} − δ_y = log1p(Σ_c p_c·expm1(δ_c)) − δ_y
// (ΔA likewise: tanh(z+δ) − tanh(z) = tanh(δ)(1 − tanh z · tanh(z+δ)); σ via tanh(x/2)). The
// quotient (Δℓ(+t) − Δℓ(−t)) / 2t then carries no rounding from subtracting two nearly equal
// losses, only the O(t²) truncation of the central difference. (The textbook quotient of two full
// losses loses the digits to that subtraction: measured 2·10⁶ eps off at its best step.)
//
// ReLU kinks: a row in which some ReLU's input changes sign between the +t and −t evaluations
// makes the quotient meaningless. Policy 'report' (gradcheck) flags the entry as a kink; policy
// 'avoid' (the verifier's reference) shrinks that row's step until it stays on one side, and
// treats an input exactly 0 as PyTorch does (relu'(0) = 0: that unit passes no change on).
import { gemm, targetWeights } from '../kernels/ts';
import type { Activation } from '../types';
import { matmulInto, stackForward64, twoLayerStack, type Stack64, type StackForward64, type TwoLayer64 } from './stack64';

/** X, or a Linear layer's W_k / b_k by its number. */
export type FdTensor = 'X' | `W${number}` | `b${number}`;
export type KinkPolicy = 'report' | 'avoid';

export interface FdValue {
  value: number;
  /** A ReLU pre-activation changed sign between the +step and −step evaluations. */
  kink: boolean;
}

/** How often 'avoid' may shrink a row's step before it gives the row up as a kink. */
const MAX_SHRINKS = 64;

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
  readonly stack: Stack64;
  readonly f: StackForward64;
  private readonly scale: number;
  /** Σ_{c≠y_b} p_bc per row: 1 − p_y without the cancellation. */
  private readonly otherMass: Float64Array;
  /**
   * With F.cross_entropy's options (stack.loss): each row's target weights t_b [B,C] (the
   * reduction's scale folded in) and their sums S_b; null for the default loss.
   */
  private readonly T: Float64Array | null = null;
  private readonly S: Float64Array | null = null;
  /** plus[l], minus[l]: one row's change at level l (0: X, l: the output of layers[l − 1]) for +t and −t. */
  private readonly plus: Float64Array[];
  private readonly minus: Float64Array[];
  private readonly comp: Float64Array;
  /** The index in layers of Linear k, by k. */
  private readonly linearAt: Map<number, number>;
  /** Per layer, monomorphic for the inner loops: its activation (null for a Linear) and its W (empty for an activation). */
  private readonly acts: (Activation | null)[];
  private readonly weights: Float64Array[];

  /** The stack (with its forward pass, if already computed), or the two-layer problem written out. */
  constructor(p: Stack64 | TwoLayer64, f?: StackForward64) {
    this.stack = 'layers' in p ? p : twoLayerStack(p);
    this.f = f ?? stackForward64(this.stack);
    const { B, y, widths, layers, reduction } = this.stack;
    const C = widths[widths.length - 1];
    this.scale = reduction === 'mean' ? 1 / B : 1;
    if (this.stack.loss) {
      this.T = targetWeights(y, this.stack.loss, B, C);
      this.S = new Float64Array(B);
      for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) this.S[b] += this.T[b * C + c];
      this.scale = 1; // in T
    }
    this.otherMass = new Float64Array(B);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) if (c !== y[b]) this.otherMass[b] += this.f.probs[b * C + c];
    this.plus = widths.map((w) => new Float64Array(w));
    this.minus = widths.map((w) => new Float64Array(w));
    this.comp = new Float64Array(Math.max(...widths));
    this.linearAt = new Map(layers.flatMap((l, i) => (l.kind === 'linear' ? [[l.k, i]] : [])));
    this.acts = layers.map((l) => (l.kind === 'linear' ? null : l.kind));
    this.weights = layers.map((l) => (l.kind === 'linear' ? l.W : new Float64Array(0)));
  }

  /** The index in layers of the Linear W_k / b_k belong to, and that layer. */
  private linear(t: FdTensor): { i: number; in: number; out: number } {
    const i = this.linearAt.get(Number(t.slice(1)));
    if (i === undefined || !/^[Wb][1-9]\d*$/.test(t)) throw new RangeError(`Expected X, or W_k or b_k of a Linear layer of the stack, but received ${t}`);
    return { i, ...(this.stack.layers[i] as { in: number; out: number }) };
  }

  /** The input of layers[i] (X, or the output of layers[i − 1]), all rows. */
  private inputOf(i: number): Float64Array {
    return i === 0 ? this.stack.X : this.f.outputs[i - 1];
  }

  /**
   * ℓ_b(logits_b + δ) − ℓ_b(logits_b) = log Σ_c p_c·e^{δ_c − δ_y} = log1p(Σ_{c≠y} p_c·expm1(δ_c − δ_y)):
   * the label's own term drops out exactly, so nothing cancels even when p_y ≈ 1.
   */
  private rowDelta(b: number, delta: Float64Array): number {
    const C = delta.length;
    const pr = this.f.probs;
    if (this.T !== null) {
      // ℓ_b = S_b·lse_b − Σ_c t_bc z_bc, so Δℓ_b = S_b·(log Σ_c p_c e^{δ_c − m} ), m = Σ_c (t_bc/S_b)·δ_c,
      // = S_b·log1p(Σ_c p_c·expm1(δ_c − m)) (Σ p_c = 1): the shift by the targets' mean drops out exactly.
      const S = this.S![b];
      if (S === 0) return 0;
      let m = 0;
      for (let c = 0; c < C; c++) m += (this.T[b * C + c] / S) * delta[c];
      let s = 0;
      for (let c = 0; c < C; c++) s += pr[b * C + c] * Math.expm1(delta[c] - m);
      return S * Math.log1p(s);
    }
    const y = this.stack.y[b];
    const dy = delta[y];
    let s = 0;
    for (let c = 0; c < C; c++) if (c !== y) s += pr[b * C + c] * Math.expm1(delta[c] - dy);
    return Math.log1p(s);
  }

  /**
   * The same when only logit c moves, by d: for c ≠ y the row changes by log1p(p_c·expm1(d)); for
   * c = y every other logit moves by −d relative to it, log1p(q·expm1(−d)) with q = Σ_{c'≠y} p_c' (not 1 − p_y).
   */
  private rowDeltaAt(b: number, c: number, d: number): number {
    const C = this.f.probs.length / this.stack.B;
    if (this.T !== null) {
      // rowDelta with δ = d at c alone: m = q_c·d, q = t_b/S_b; the other logits' mass is Σ_{c'≠c} p_c'.
      const S = this.S![b];
      if (S === 0) return 0;
      const m = (this.T[b * C + c] / S) * d;
      let other = 0;
      for (let k = 0; k < C; k++) if (k !== c) other += this.f.probs[b * C + k];
      return S * Math.log1p(this.f.probs[b * C + c] * Math.expm1(d - m) + other * Math.expm1(-m));
    }
    return this.stack.y[b] === c ? Math.log1p(this.otherMass[b] * Math.expm1(-d)) : Math.log1p(this.f.probs[b * C + c] * Math.expm1(d));
  }

  /** act(z + dz) − act(z), without subtracting two nearly equal numbers. */
  private actDelta(act: Activation, z: number, a: number, dz: number): number {
    if (dz === 0) return 0;
    if (act === 'relu') {
      const zp = z + dz;
      if (z > 0 && zp > 0) return dz;
      if (z <= 0 && zp <= 0) return 0;
      return (zp > 0 ? zp : 0) - (z > 0 ? z : 0);
    }
    if (act === 'tanh') return Math.tanh(dz) * (1 - a * Math.tanh(z + dz));
    return 0.5 * Math.tanh(dz / 2) * (1 - Math.tanh(z / 2) * Math.tanh((z + dz) / 2));
  }

  /** Whether the last rowQuotient met a kink. */
  private rowKink = false;

  /**
   * (ℓ_b(+t) − ℓ_b(−t)) / 2t for row b when the output of layers[at] (at = −1: the row of X) moves
   * by ±t·g at one index (a W or b entry, an X entry; dense = null) or by ±t·dense (fast mode's
   * direction), propagated through every later layer as a change. ReLU: under 'report' a unit whose
   * input lands on different sides of 0 for +t and −t marks a kink (rowKink; the value is still
   * computed); under 'avoid' a unit exactly at 0 passes nothing on (relu'(0) = 0, as PyTorch) and a
   * unit the step would carry across 0 shrinks this row's step until none is (a row that cannot be
   * kept on one side is left out, 0, and marked a kink).
   */
  private rowQuotient(b: number, at: number, index: number, g: number, dense: Float64Array | null, step: number, policy: KinkPolicy): number {
    const { layers, widths } = this.stack;
    let t = step;
    shrink: for (let attempt = 0; attempt < MAX_SHRINKS && t > 0; attempt++) {
      this.rowKink = false;
      // The change so far: one index j moving by (vp, vm), or whole rows plus[level], minus[level].
      let j = -1;
      let vp = 0;
      let vm = 0;
      let level = at + 1;
      if (dense === null) {
        j = index;
        vp = t * g;
        vm = -t * g;
      } else {
        const dp = this.plus[level];
        const dm = this.minus[level];
        for (let h = 0; h < dp.length; h++) {
          dp[h] = t * dense[h];
          dm[h] = -t * dense[h];
        }
      }
      for (let i = level; i < layers.length; i++, level++) {
        const w = widths[i];
        const inP = this.plus[level];
        const inM = this.minus[level];
        const outP = this.plus[level + 1];
        const outM = this.minus[level + 1];
        const act = this.acts[i];
        if (act === null) {
          // ΔZ = ΔA·W: the bias drops out.
          const W = this.weights[i];
          const out = widths[i + 1];
          if (j >= 0) {
            for (let c = 0; c < out; c++) {
              outP[c] = vp * W[j * out + c];
              outM[c] = vm * W[j * out + c];
            }
            j = -1;
          } else {
            // Compensated over the inputs, so the change is as exact as its inputs.
            matmulInto(inP, W, 1, w, out, outP, this.comp);
            matmulInto(inM, W, 1, w, out, outM, this.comp);
          }
          continue;
        }
        const Z = this.inputOf(i);
        const A = this.f.outputs[i];
        this.unitRatio = Infinity;
        if (j >= 0) {
          this.unit(act, policy, Z[b * w + j], A[b * w + j], vp, vm);
          vp = this.outP;
          vm = this.outM;
        } else {
          for (let h = 0; h < w; h++) {
            this.unit(act, policy, Z[b * w + h], A[b * w + h], inP[h], inM[h]);
            outP[h] = this.outP;
            outM[h] = this.outM;
          }
        }
        if (this.unitRatio < Infinity) {
          t = (t * this.unitRatio) / 2; // 'avoid': try again with the step that keeps every unit on its side
          continue shrink;
        }
        if (j >= 0 && vp === 0 && vm === 0) return 0;
      }
      const q = j >= 0 ? this.rowDeltaAt(b, j, vp) - this.rowDeltaAt(b, j, vm) : this.rowDelta(b, this.plus[level]) - this.rowDelta(b, this.minus[level]);
      return q / (2 * t);
    }
    this.rowKink = true;
    return 0;
  }

  // What unit() found: the unit's change for +t and −t, and the largest fraction of the step that
  // keeps it on its side of 0 ('avoid'); a kink ('report') goes to rowKink.
  private outP = 0;
  private outM = 0;
  private unitRatio = Infinity;

  /** One unit of an activation: its input z, output a, and input changes dP (for +t), dM (for −t). */
  private unit(act: Activation, policy: KinkPolicy, z: number, a: number, dP: number, dM: number): void {
    if (act === 'relu') {
      if (policy === 'report') {
        if (z + dP > 0 !== z + dM > 0) this.rowKink = true;
      } else if (z === 0) {
        this.outP = this.outM = 0;
        return;
      } else if (z + dP > 0 !== z > 0 || z + dM > 0 !== z > 0) {
        this.unitRatio = Math.min(this.unitRatio, Math.abs(z) / Math.max(Math.abs(dP), Math.abs(dM)));
      }
    }
    this.outP = this.actDelta(act, z, a, dP);
    this.outM = this.actDelta(act, z, a, dM);
  }

  /** ∂L/∂θ at one entry of one tensor (flat row-major index), by central differences with step `step`. */
  entry(tensor: FdTensor, index: number, step: number, policy: KinkPolicy): FdValue {
    if (tensor === 'X') {
      const D = this.stack.widths[0];
      const value = this.rowQuotient(Math.floor(index / D), -1, index % D, 1, null, step, policy);
      return { value: this.scale * value, kink: this.rowKink };
    }
    const l = this.linear(tensor);
    // W[p,q] moves Z[b,q] by ±t·A[b,p] (A the layer's input); b[q] moves Z[b,q] by ±t in every row.
    const p = tensor[0] === 'W' ? Math.floor(index / l.out) : -1;
    const q = tensor[0] === 'W' ? index % l.out : index;
    const A = this.inputOf(l.i);
    const sum = new Sum();
    let kink = false;
    for (let b = 0; b < this.stack.B; b++) {
      const g = p < 0 ? 1 : A[b * l.in + p];
      if (g === 0) continue;
      sum.add(this.rowQuotient(b, l.i, q, g, null, step, policy));
      kink ||= this.rowKink;
    }
    return { value: this.scale * sum.value, kink };
  }

  /**
   * The directional derivative ∇_θL · u for a direction u over a whole tensor (fast mode), by
   * central differences with step `step`; `kink` when any ReLU pre-activation changes sign.
   */
  direction(tensor: FdTensor, u: Float64Array, step: number): FdValue {
    const { B } = this.stack;
    const sum = new Sum();
    let kink = false;
    const add = (b: number, at: number, dense: Float64Array) => {
      sum.add(this.rowQuotient(b, at, 0, 0, dense, step, 'report'));
      kink ||= this.rowKink;
    };
    if (tensor === 'X') {
      const D = this.stack.widths[0];
      for (let b = 0; b < B; b++) add(b, -1, u.subarray(b * D, (b + 1) * D));
      return { value: this.scale * sum.value, kink };
    }
    const l = this.linear(tensor);
    // The change of Z per unit step: A·U (W), u broadcast (b).
    const A = this.inputOf(l.i);
    const g = new Float64Array(l.out);
    for (let b = 0; b < B; b++) {
      if (tensor[0] === 'b') g.set(u);
      else gemm(false, false, 1, l.out, l.in, 1, A.subarray(b * l.in, (b + 1) * l.in), u, 0, g);
      add(b, l.i, g);
    }
    return { value: this.scale * sum.value, kink };
  }

  /** Every entry of a tensor's gradient (verify's reference: gradcheck walks the entries itself, for their kinks and its progress). */
  gradient(tensor: FdTensor, step: number, policy: KinkPolicy): { grad: Float64Array } {
    const l = tensor === 'X' ? { in: this.stack.B, out: this.stack.widths[0] } : this.linear(tensor);
    const grad = new Float64Array(tensor[0] === 'b' ? l.out : l.in * l.out);
    for (let i = 0; i < grad.length; i++) grad[i] = this.entry(tensor, i, step, policy).value;
    return { grad };
  }
}
