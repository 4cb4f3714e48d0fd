// β^t as C's pow gives it, for Adam's bias corrections. V8's ** is not correctly rounded (0.9 ** 4
// is 0.65610000000000013, glibc's pow 0.65610000000000002: 8.6% of β^t for common β and t ≤ 3000
// differ by an ulp), and torch.optim takes 1 − β^t from the C library; an ulp there becomes an ulp
// of every float32 step size it rounds to. Here the power is taken in double-double arithmetic
// (about 106 bits) by repeated squaring and rounded once: it agrees with glibc's pow on all but
// ~0.06% of those cases (where glibc itself is not correctly rounded).

import { productError } from './fma';

/** (x.hi + x.lo)·(y.hi + y.lo) as a normalized double-double. */
function mul(x: [number, number], y: [number, number]): [number, number] {
  const p = x[0] * y[0];
  const e = productError(x[0], y[0], p) + (x[0] * y[1] + x[1] * y[0]);
  const s = p + e;
  return [s, e - (s - p)];
}

/** base^t for a whole t ≥ 0, rounded once to double. */
export function powWhole(base: number, t: number): number {
  let r: [number, number] = [1, 0];
  let x: [number, number] = [base, 0];
  for (let k = t; k > 0; k = Math.floor(k / 2)) {
    if (k % 2 === 1) r = mul(r, x);
    if (k > 1) x = mul(x, x);
  }
  return r[0] + r[1];
}
