// a·b + c rounded once (a fused multiply-add), in JavaScript, which has none: ATen's add(alpha)
// and addcmul are FMAs in the AVX2 and AVX512 kernels LibTorch runs on any x86-64 with AVX2
// (native/core/optimizer.h; its DEFAULT kernels do not fuse, and the rule then does not call
// these), and an unfused a·b + c differs from them in about one entry in ten, an ulp that later
// steps carry on.

/**
 * The rounding error of p = fl(a·b) (Dekker's TwoProduct): a·b = p + error exactly. Each factor is
 * split in two halves of 26 bits (Veltkamp: c = (2^27 + 1)·a, hi = c − (c − a)) so the partial
 * products are exact; written without arrays, which the update loops would allocate per element.
 */
export function productError(a: number, b: number, p: number): number {
  const ca = 134217729 * a;
  const ah = ca - (ca - a);
  const al = a - ah;
  const cb = 134217729 * b;
  const bh = cb - (cb - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

/** The rounding error of s = fl(a + b) (Knuth's TwoSum): a + b = s + error exactly. */
export function sumError(a: number, b: number, s: number): number {
  const bb = s - a;
  return (a - (s - bb)) + (b - bb);
}

const scratch = new Float64Array(1);
// The significand's low and high words (little-endian, as every platform Node runs on).
const low = new Uint32Array(scratch.buffer, 0, 1);
const high = new Uint32Array(scratch.buffer, 4, 1);

/**
 * fma(a, b, c) for doubles, correctly rounded: the exact product p + pe and the exact sum s + se of
 * p and c (Dekker, Knuth), so a·b + c = s + se + pe exactly; then s + v with v = se + pe rounded.
 * That last sum is the FMA unless rounding v moved s + v across, or onto, a halfway point. When v
 * is small beside the result (|v| ≤ |z|/4, nearly always), s + v lies on v's ulp grid, which
 * holds z's halfway points, so only an exact halfway s + v can be decided wrong: then the sign of
 * v's rounding error decides. Otherwise (cancellation) Boldo and Melquiond's emulation: v rounded
 * to odd ("Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd",
 * IEEE TC 2008). In the normal range (no subnormal products or sums; a gradient step has none).
 * ~10–20 ns against ~2 ns for a·b + c (Node 20, this machine).
 */
export function fma64(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  if (!Number.isFinite(s)) return s;
  const pe = productError(a, b, p);
  const se = sumError(p, c, s);
  let v = se + pe;
  const ve = sumError(se, pe, v);
  const z = s + v;
  if (ve === 0) return z; // s + v is a·b + c exactly, rounded once
  if (4 * Math.abs(v) <= Math.abs(z)) {
    const e2 = sumError(s, v, z);
    if (e2 === 0) return z;
    const w = z + 2 * e2; // exact when s + v is halfway between z and its neighbour w
    if (w - z !== 2 * e2) return z; // not halfway: at least an ulp of v from it, farther than v's error
    return ve > 0 === e2 > 0 ? w : z; // halfway: the exact value lies past it on the side of v's error
  }
  // v rounded to odd: an inexact v that is even takes its odd neighbour toward the exact sum
  // (v ≠ 0 here: a sum rounds to 0 only when exact).
  scratch[0] = v;
  if ((low[0] & 1) === 0) {
    if (v > 0 === ve > 0) low[0] += 1; // away from zero (an even low word cannot overflow)
    else if (low[0] === 0) {
      low[0] = 0xffffffff;
      high[0] -= 1; // toward zero, borrowing from the high word
    } else low[0] -= 1;
    v = scratch[0];
  }
  return s + v;
}

/**
 * fma(a, b, c) for float32 values a, b, c, rounded once to float32: the product of two floats is
 * exact in double, so p + c in double rounded to float is the FMA except where the double sum
 * falls exactly halfway between two floats and was itself rounded (a double rounding): then the
 * exact sum's side of the halfway point decides.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s) return r; // s is a float (or ±Infinity): within half a double ulp of the exact sum, so its rounding
  const d = s - r;
  const other = r + 2 * d; // exact: the neighbour of r beyond s, if s is halfway
  if (Math.fround(other) !== other) return r; // not halfway (NaN too)
  const e = sumError(p, c, s);
  if (e === 0) return r; // an exact tie: fround's ties-to-even is the FMA's
  return e > 0 === d > 0 ? other : r;
}
