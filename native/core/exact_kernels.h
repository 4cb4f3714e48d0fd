// The exact mode's kernels: each one LibTorch 1.13's CPU kernel for the op autograd runs, with the
// same lane layout, reduction order and roundings, so the results are its bits (exact.h chains them).
// Sources are named per kernel (aten/src/ATen/native/...); read there, reproduced here, not copied.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "exact_lanes.h"

namespace hg::exact {

// Whether GCC fused a multiply feeding an add into one FMA when it built LibTorch's AVX2 kernels
// (Debian's build leaves -ffp-contract at GCC's default, fast). Measured by test/exact/probe.
struct Fusion {
  bool logSoftmaxBackward;  // x − exp(y)·Σ  as fnmadd
  bool tanhBackward;        // 1 − b·b       as fnmadd
};
inline Fusion fusionFor(Capability cap) {
  const bool fma = cap != Capability::Default;
#ifdef HG_EXACT_PROBE
  // test/exact/probe tries the other choices: HG_EXACT_FUSION=<0|1><0|1>.
  if (const char* f = std::getenv("HG_EXACT_FUSION")) return {f[0] == '1', f[1] == '1'};
#endif
  return {fma, fma};
}

// ---- reduce_all / map_reduce_all (aten/src/ATen/cpu/vec/functional_base.h) ----------------------
// A row of n values, mapped lane-wise by map (identity or exp(x − m)), summed as ATen does: under
// one vector, lane 0 absorbs lanes 1..n−1; otherwise a vector accumulator over full vectors, the
// tail blended into its first n % V lanes, then vec_reduce_all.
template <int W, typename T, typename Map>
T rowSum(Capability cap, const T* x, size_t n, const Map& map) {
  constexpr int V = kLanes<T, W>;
  T acc[V], v[V];
  if (n < size_t(V)) {
    for (int i = 0; i < V; ++i) v[i] = size_t(i) < n ? x[i] : T(0);
    map(v);
    T s = v[0];
    for (size_t i = 1; i < n; ++i) s = s + v[i];
    return s;
  }
  std::copy(x, x + V, acc);
  map(acc);
  size_t d = V;
  for (; d < n - n % V; d += V) {
    std::copy(x + d, x + d + V, v);
    map(v);
    for (int i = 0; i < V; ++i) acc[i] = acc[i] + v[i];
  }
  if (d < n) {
    const size_t r = n - d;
    for (int i = 0; i < V; ++i) v[i] = size_t(i) < r ? x[d + i] : T(0);
    map(v);
    for (size_t i = 0; i < r; ++i) acc[i] = acc[i] + v[i];
  }
  return reduceLanesSum<W>(cap, acc);
}

// ---- log_softmax over the last dim (aten/src/ATen/native/cpu/SoftMaxKernel.cpp,
// _vec_log_softmax_lastdim): per row m = max, s = Σ exp(x − m) (map_reduce_all), then log(s) with
// Vectorized::log, and out = (x − m) − log(s) in that order. Rows are independent (the CHUNK_SIZE
// grouping only batches the log calls, which are lane-wise).
template <int W, typename T>
void logSoftmax(Capability cap, const T* z, T* logp, size_t B, size_t C) {
  constexpr int V = kLanes<T, W>;
  for (size_t b = 0; b < B; ++b) {
    const T* x = z + b * C;
    T m = x[0];
    for (size_t c = 1; c < C; ++c) m = x[c] > m ? x[c] : m;
    const T s = rowSum<W>(cap, x, C, [&](T* v) {
      for (int i = 0; i < V; ++i) v[i] = v[i] - m;
      lanes<W>(cap, Fn::Exp, v);
    });
    T l[V] = {};
    l[0] = s;
    lanes<W>(cap, Fn::Log, l);
    T* o = logp + b * C;
    for (size_t c = 0; c < C; ++c) o[c] = (x[c] - m) - l[0];
  }
}

// ---- log_softmax backward (SoftMaxKernel.cpp _vec_host_softmax_backward_lastdim<log_softmax =
// true>): per row Σg by reduce_all, then dz = g − exp(logp)·Σg with Vectorized::exp on every lane
// (map2's tail is a partial vector too). In place: g becomes dz.
template <int W, typename T>
void logSoftmaxBackward(Capability cap, Fusion fuse, const T* logp, T* g, size_t B, size_t C) {
  constexpr int V = kLanes<T, W>;
  for (size_t b = 0; b < B; ++b) {
    T* d = g + b * C;
    const T s = rowSum<W>(cap, d, C, [](T*) {});
    const T* o = logp + b * C;
    for (size_t c0 = 0; c0 < C; c0 += V) {
      T e[V] = {};
      const size_t r = std::min(size_t(V), C - c0);
      for (size_t i = 0; i < r; ++i) e[i] = o[c0 + i];
      lanes<W>(cap, Fn::Exp, e);
      for (size_t i = 0; i < r; ++i) d[c0 + i] = fuse.logSoftmaxBackward ? std::fma(-e[i], s, d[c0 + i]) : d[c0 + i] - e[i] * s;
    }
  }
}

// ---- the bias gradient: sum over dim 0 of dZ [B,out] (autograd's sum_to; aten/src/ATen/native/
// cpu/SumKernel.cpp cascade_sum). Every column is one of two orders over the rows:
//   multiRowSum: one accumulator per 4-level cascade (level 0 takes 2^p rows, then each level
//     is added into the next until one is not full), the levels added at the end;
//   rowSumIlp: rows split round-robin over 4 accumulators, each a multiRowSum over B/4 rows, the
//     leftover rows added into the first, then the four added in order.
template <typename T>
T multiRowSum(const T* x, size_t stride, size_t n) {
  constexpr int kLevels = 4;
  int ceilLog2 = 0;
  while ((uint64_t(1) << ceilLog2) < uint64_t(n)) ++ceilLog2;
  const int power = std::max(4, ceilLog2 / kLevels);
  const uint64_t step = uint64_t(1) << power, mask = step - 1;
  T acc[kLevels] = {};
  uint64_t i = 0;
  while (i + step <= n) {
    for (uint64_t j = 0; j < step; ++j, ++i) acc[0] += x[i * stride];
    for (int j = 1; j < kLevels; ++j) {
      acc[j] += acc[j - 1];
      acc[j - 1] = T(0);
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < n; ++i) acc[0] += x[i * stride];
  for (int j = 1; j < kLevels; ++j) acc[0] += acc[j];
  return acc[0];
}
template <typename T>
T rowSumIlp(const T* x, size_t stride, size_t n) {
  constexpr size_t kIlp = 4;
  const size_t m = n / kIlp;
  T part[kIlp];
  for (size_t k = 0; k < kIlp; ++k) part[k] = multiRowSum(x + k * stride, stride * kIlp, m);
  for (size_t i = m * kIlp; i < n; ++i) part[0] += x[i * stride];
  for (size_t k = 1; k < kIlp; ++k) part[0] += part[k];
  return part[0];
}

// at::sum over n contiguous values (a 1-D tensor, or a reduction over the last dim): SumKernel's
// contiguous inner reduction — vectorized_inner_sum when n ≥ V (rowSumIlp over whole vectors, one
// sum per lane, the leftover values summed from 0, then each lane added), else row_sum. Returns
// what lands in the zero-filled output: 0 + sum.
template <int W, typename T>
T innerSum(const T* x, size_t n) {
  constexpr size_t V = size_t(kLanes<T, W>);
  if (n < V) return T(0) + rowSumIlp(x, 1, n);
  const size_t vecs = n / V;
  T lane[V];
  for (size_t l = 0; l < V; ++l) lane[l] = rowSumIlp(x + l, V, vecs);
  T s = T(0);
  for (size_t k = vecs * V; k < n; ++k) s += x[k];
  for (size_t l = 0; l < V; ++l) s += lane[l];
  return T(0) + s;
}

// db[j] = Σ_b dZ[b, j] in the order cascade_sum takes for column j: with out ≥ V columns,
// vectorized_outer_sum (blocks of 4 vectors by multiRowSum, then single vectors by rowSumIlp, then
// the last columns by rowSumIlp); with fewer, scalar_outer_sum (groups of 4 by multiRowSum, the
// rest by rowSumIlp). One column is a contiguous inner reduction instead (innerSum). The result is
// added to the zero-filled output: 0 + sum.
template <int W, typename T>
void columnSums(const T* dZ, size_t B, size_t out, T* db) {
  constexpr size_t V = size_t(kLanes<T, W>);
  if (out == 1) {
    db[0] = innerSum<W>(dZ, B);
    return;
  }
  size_t j = 0;
  if (out >= V) {
    for (const size_t e = out / (4 * V) * (4 * V); j < e; ++j) db[j] = T(0) + multiRowSum(dZ + j, out, B);
    for (const size_t e = out / V * V; j < e; ++j) db[j] = T(0) + rowSumIlp(dZ + j, out, B);
  } else {
    for (const size_t e = out / 4 * 4; j < e; ++j) db[j] = T(0) + multiRowSum(dZ + j, out, B);
  }
  for (; j < out; ++j) db[j] = T(0) + rowSumIlp(dZ + j, out, B);
}

// ---- activations, as autograd runs them ---------------------------------------------------------
// Elementwise ops through cpu_kernel_vec (aten/src/ATen/native/cpu/Loops.h vectorized_loop): the
// vector lambda on each whole pair of vectors, the scalar lambda on the last n % 2V elements.
// sigmoid (UnaryOpsKernel.cpp sigmoid_kernel): vector 1/((0 − x).exp() + 1), scalar 1/(1 + exp(−x)).
// tanh (UnaryOpsKernel.cpp through vml::vtanh = vec::map): Vectorized::tanh on every lane.
// relu = clamp_min(x, 0): max(x, 0).
template <int W, typename T>
void sigmoidForward(Capability cap, const T* z, T* a, size_t n) {
  constexpr size_t V = size_t(kLanes<T, W>);
  const size_t pairs = n / (2 * V) * (2 * V);
  for (size_t i = 0; i < pairs; i += V) {
    T v[V];
    for (size_t l = 0; l < V; ++l) v[l] = T(0) - z[i + l];
    lanes<W>(cap, Fn::Exp, v);
    for (size_t l = 0; l < V; ++l) a[i + l] = T(1) / (v[l] + T(1));
  }
  for (size_t i = pairs; i < n; ++i) a[i] = T(1) / (T(1) + std::exp(-z[i]));
}
template <int W, typename T>
void tanhForward(Capability cap, const T* z, T* a, size_t n) {
  constexpr size_t V = size_t(kLanes<T, W>);
  for (size_t i = 0; i < n; i += V) {
    T v[V] = {};
    const size_t r = std::min(V, n - i);
    std::copy(z + i, z + i + r, v);
    lanes<W>(cap, Fn::Tanh, v);
    std::copy(v, v + r, a + i);
  }
}

// Backward through cpu_kernel_vec too, a = upstream gradient, b = the layer's output:
// sigmoid_backward a·(1 − b)·b, tanh_backward a·(1 − b·b) (BinaryOpsKernel.cpp), threshold_backward
// for relu: b ≤ 0 ? 0 : a (Activation.cpp). In place on a.
template <typename T>
void sigmoidBackward(const T* b, T* a, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] = a[i] * (T(1) - b[i]) * b[i];
}
template <typename T>
void tanhBackward(Fusion fuse, const T* b, T* a, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] = a[i] * (fuse.tanhBackward ? std::fma(-b[i], b[i], T(1)) : T(1) - b[i] * b[i]);
}
template <typename T>
void reluBackward(const T* b, T* a, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] = b[i] <= T(0) ? T(0) : a[i];
}

}  // namespace hg::exact
