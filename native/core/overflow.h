// What a product's inputs prove about its output: that a weight gradient dW = Aᵀ·dZ, summed by any
// GEMM, holds no NaN or ±Infinity, from a bound on |A| and one on |dZ| alone — so the backward
// need not read dW again to check it (stack.h). Plain C++, no BLAS.
#pragma once

#include <cmath>
#include <limits>

namespace hg {

// True when every entry of C = Aᵀ·G (K products a_k·g_k per entry, alpha 1, beta 0: C's old
// contents are not read, as BLAS defines beta = 0) is finite, given |a| ≤ maxA and |g| ≤ maxG
// for every entry of A and G (a non-finite bound proves nothing).
//
// Why: with round-to-nearest, every product and every sum of the GEMM — fused or not, in any
// order and blocking, in T or wider and then rounded to T — rounds once per operation, so each
// partial result v satisfies |v| ≤ (1 + u)^d · Σ_{its terms} (|a_k||g_k| + η), d ≤ K + 1 its depth,
// u = eps/2 and η = the smallest subnormal (a product that underflows is off by up to η/2, not
// relatively). Hence |c| ≤ (1 + u)^(K+1) · K · (maxA·maxG + η) ≤ exp((K + 2)·u) · K · (maxA·maxG + η)
// for every partial result too; when that is at most T's largest finite value, no operation
// overflows, and with finite inputs nothing makes a NaN (no ∞ − ∞, no 0·∞). exp(x) ≤ 1 + 2x for
// x ≤ 1, so the growth is taken as 1 + 2(K + 2)u where (K + 2)u ≤ 1/2 (K + 2 ≤ 2^23 in float32):
// no libm call in a step. The bound is computed in double, whose own rounding (a few parts in
// 2^53) the factor 1 + 2^-30 covers; a bound that overflows double is infinite and proves nothing.
template <typename T>
bool weightGradFinite(double K, T maxA, T maxG) {
  if (!(std::isfinite(maxA) && std::isfinite(maxG))) return false;
  constexpr double u = double(std::numeric_limits<T>::epsilon()) / 2;
  const double x = (K + 2) * u;
  if (!(x <= 0.5)) return false;
  const double eta = double(std::numeric_limits<T>::denorm_min());
  const double bound = (1 + 2 * x) * K * (double(maxA) * double(maxG) + eta) * (1 + 0x1p-30);
  return bound <= double(std::numeric_limits<T>::max());
}

}  // namespace hg
