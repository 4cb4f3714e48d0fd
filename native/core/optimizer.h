// The Trainer's update rules in C++, operation for operation as torch.optim 1.13's single-tensor
// path (SGD with momentum, dampening, Nesterov; Adam and AdamW with AMSGrad) and as
// lib/train/optimizer.ts, computed in the parameters' own dtype with the roundings ATen's CPU
// kernels make, so that a run ends with torch.optim's bits. A JS loop over a 784×256 weight takes
// ~0.5 ms here, several times this.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pool.h"
#include "exact_lanes.h"  // exact::atenCapability: which of ATen's kernel sets LibTorch runs here

namespace hg {

enum class Optimizer : int { Sgd = 0, Momentum = 1, Nesterov = 2, Adam = 3, AdamW = 4 };

struct OptimizerConfig {
  Optimizer kind;
  double lr, momentum, beta1, beta2, epsilon, weightDecay;
  double dampening = 0;  // SGD's: the buffer adds (1 − dampening)·g after the first step
  bool amsgrad = false;  // Adam's and AdamW's: the denominator takes the largest v so far (vmax)
};

// The exponent bits of x plus one exponent unit carry into the sign bit only when they are all
// set: ±Infinity or NaN. An AND, an add and an OR per value written, in the loop that writes it, so
// the Trainer learns of a non-finite step (and undoes it) without a second pass over memory;
// integer ops of the value's own width, so the loop vectorizes (a float compare-and-count does
// not, for double, with SSE2; and a double's bits narrowed to 32 did not either, with AVX2: the
// float64 SGD step over W1 [784,256] ran scalar, 236 µs against float32's 18 µs).
inline uint64_t exponentCarry(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7ff0000000000000u) + 0x0010000000000000u;
}
inline uint32_t exponentCarry(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) + 0x00800000u;
}
// Whether no carry reached the sign bit of T's width (every value written was finite).
template <typename C>
inline bool noCarry(C carry) {
  return (carry >> (8 * sizeof(C) - 1)) == 0;
}

// The roundings of ATen 1.13's CPU kernels, which depend on the kernel set LibTorch runs (its CPU
// capability, exact::atenCapability), measured against libtorch_cpu in the vectorized loop and the
// scalar tail alike (test/fixtures/optim/probe.py):
// - AVX2 and AVX512 (fused): add(a, b, alpha) is Vectorized::fmadd(b, alpha, a), a + α·b rounded
//   once (std::fma); addcmul(a, t1, t2, value) is a + value·t1·t2 with GCC contracting the last
//   multiply and the add, fma(round(value·t1), t2, a) — those kernels are built with -mfma;
// - DEFAULT (unfused: ATEN_CPU_CAPABILITY=default, or a CPU without AVX2/FMA): the same source built
//   for plain x86-64, where no FMA instruction exists: a + round(α·b), a + round(round(value·t1)·t2);
// - in all three: addcdiv(a, t1, t2, value) is a + round(round(value·t1) / t2) (a division cannot
//   fuse); mul, div, sqrt, maximum round once each.
// No product feeds an addition outside std::fma: the core addon builds with -ffp-contract=off
// (GCC's default for C++, fast, would fuse the unfused rule in the FMA build below); keep it so
// when editing, or the bits move (test/41 holds both).
template <bool Fused, typename T>
inline T addAlpha(T a, T alpha, T b) {
  if constexpr (Fused) return std::fma(alpha, b, a);
  else return a + T(alpha * b);
}
template <bool Fused, typename T>
inline T addcmul(T a, T value, T t1, T t2) {
  if constexpr (Fused) return std::fma(T(value * t1), t2, a);
  else return a + T(T(value * t1) * t2);
}

// One step on W[n] with gradient g; m and v are the optimizer's slots (m for momentum/Adam, v for
// Adam), vmax AMSGrad's, t the 1-based step count. Returns whether every value written is finite.
//
// The constants are torch.optim's: each scalar computed in double as Python computes it (1 − β,
// lr / (1 − β1^t), √(1 − β2^t), 1 − lr·wd, −lr, 1 − dampening) and rounded once to the tensor's
// dtype, which is how ATen applies a Scalar to a float tensor. Rounding β to float and subtracting
// in float instead (1f − 0.999f = 0.00099998713, torch's 0.00100000005) drifted the f32 update to
// 50 eps of torch.optim in ten steps.
// Where the values before the step go (Keep): W, and m, v, vmax where the optimizer has them. Each is
// copied in the loop that overwrites it, the element just before its write — one pass over the
// tensor where a copy first (TypedArray.set) and the update after it were two (lib/train/update.ts:
// the all-or-nothing step puts these back when a value written is not finite).
template <typename T>
struct Saved {
  T *W = nullptr, *m = nullptr, *v = nullptr, *vmax = nullptr;
};

template <bool Fused, bool Keep, typename T>
inline __attribute__((always_inline)) bool optimizerUpdateBody(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, T* vmax, size_t n, double t,
                                                               const Saved<T>& saved) {
  const T negLr = T(-c.lr), wd = T(c.weightDecay);
  // Read once into locals: a store to W[i] could alias c as far as the compiler knows, so a test of
  // c.weightDecay inside a loop is re-read every element, and that branch kept the loops scalar.
  const bool hasDecay = c.weightDecay != 0;
  decltype(exponentCarry(T(0))) carry = 0;
  switch (c.kind) {
    case Optimizer::Sgd:
      // torch: d = g.add(W, alpha=wd); W.add_(d, alpha=−lr)
      for (size_t i = 0; i < n; ++i) {
        if constexpr (Keep) saved.W[i] = W[i];
        W[i] = addAlpha<Fused>(W[i], negLr, !hasDecay ? g[i] : addAlpha<Fused>(g[i], wd, W[i]));
        carry |= exponentCarry(W[i]);
      }
      return noCarry(carry);
    case Optimizer::Momentum:
    case Optimizer::Nesterov: {
      const T mu = T(c.momentum), keep = T(1 - c.dampening);
      const bool nesterov = c.kind == Optimizer::Nesterov;
      for (size_t i = 0; i < n; ++i) {
        if constexpr (Keep) {
          saved.W[i] = W[i];
          saved.m[i] = m[i];
        }
        const T gi = !hasDecay ? g[i] : addAlpha<Fused>(g[i], wd, W[i]);
        // torch: buf = g on the first step, then buf.mul_(μ).add_(g, alpha=1 − dampening)
        m[i] = t == 1 ? gi : addAlpha<Fused>(T(mu * m[i]), keep, gi);
        // Nesterov: d = g.add(buf, alpha=μ); W.add_(d, alpha=−lr)
        W[i] = addAlpha<Fused>(W[i], negLr, nesterov ? addAlpha<Fused>(gi, mu, m[i]) : m[i]);
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]);
      }
      return noCarry(carry);
    }
    case Optimizer::Adam:
    case Optimizer::AdamW: {
      const T b1 = T(c.beta1), b2 = T(c.beta2), a1 = T(1 - c.beta1), a2 = T(1 - c.beta2), eps = T(c.epsilon);
      const T negStepSize = T(-(c.lr / (1 - std::pow(c.beta1, t))));
      const T bc2Sqrt = T(std::sqrt(1 - std::pow(c.beta2, t)));
      const T decay = T(1 - c.lr * c.weightDecay);
      const bool decoupled = c.kind == Optimizer::AdamW;
      for (size_t i = 0; i < n; ++i) {
        if constexpr (Keep) {
          saved.W[i] = W[i];
          saved.m[i] = m[i];
          saved.v[i] = v[i];
          if (vmax) saved.vmax[i] = vmax[i];
        }
        if (decoupled && hasDecay) W[i] *= decay;  // torch: W.mul_(1 − lr·wd)
        const T gi = !decoupled && hasDecay ? addAlpha<Fused>(g[i], wd, W[i]) : g[i];
        m[i] = addAlpha<Fused>(T(b1 * m[i]), a1, gi);          // m.mul_(β1).add_(g, alpha=1 − β1)
        v[i] = addcmul<Fused>(T(b2 * v[i]), a2, gi, gi);        // v.mul_(β2).addcmul_(g, g, value=1 − β2)
        // AMSGrad: torch.maximum(vmax, v, out=vmax), whose square root then stands for v's.
        const T vd = vmax ? (vmax[i] = std::max(vmax[i], v[i])) : v[i];
        // torch: denom = (sqrt(v) / sqrt(bias_correction2)).add_(eps); W.addcdiv_(m, denom, value=−step_size)
        const T denom = T(T(std::sqrt(vd)) / bc2Sqrt) + eps;
        W[i] += T(T(negStepSize * m[i]) / denom);
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]) | exponentCarry(v[i]) | exponentCarry(vd);
      }
      return noCarry(carry);
    }
  }
  return false;  // not reached: the glue checked the kind
}

#if defined(__x86_64__) && defined(__GNUC__)
// The same loops compiled for FMA hardware: std::fma becomes one vfmadd (and the loops vectorize)
// instead of a libm call per element. Chosen at run time, so the addon still loads on an x86-64
// without FMA, where libm's fma gives the same bits, slower.
template <bool Fused, bool Keep, typename T>
__attribute__((target("avx2,fma"))) bool optimizerUpdateFma(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, T* vmax, size_t n, double t,
                                                            const Saved<T>& saved) {
  return optimizerUpdateBody<Fused, Keep>(c, W, g, m, v, vmax, n, t, saved);
}
#endif

// The kernel set is ATen's choice as the exact mode sees it (the same function), read at every
// call as exact::atenCapability reads ATEN_CPU_CAPABILITY: one getenv per tensor and step.
template <bool Fused, bool Keep, typename T>
bool optimizerUpdateAs(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, T* vmax, size_t n, double t, const Saved<T>& saved) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2")) return optimizerUpdateFma<Fused, Keep>(c, W, g, m, v, vmax, n, t, saved);
#endif
  return optimizerUpdateBody<Fused, Keep>(c, W, g, m, v, vmax, n, t, saved);
}

// saved.W null: nothing is copied. Otherwise saved has a buffer of n for W and for each of m, v,
// vmax that is given.
template <typename T>
bool optimizerUpdateRange(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, T* vmax, size_t n, double t, const Saved<T>& saved, bool fused) {
  if (saved.W) return fused ? optimizerUpdateAs<true, true>(c, W, g, m, v, vmax, n, t, saved) : optimizerUpdateAs<false, true>(c, W, g, m, v, vmax, n, t, saved);
  return fused ? optimizerUpdateAs<true, false>(c, W, g, m, v, vmax, n, t, saved) : optimizerUpdateAs<false, false>(c, W, g, m, v, vmax, n, t, saved);
}

// Tensors of fewer elements than this update on the caller alone: a pool job costs a few µs.
constexpr size_t kParallelUpdate = size_t(1) << 15;

// The update on `threads` threads (the pool's, pool.h), each on its own range of elements. Every
// element's arithmetic is its own, in the vector loop or the scalar tail alike (std::fma, no
// contraction), so the bits do not depend on the cut. On one thread the float32 SGD pass over
// W1 [784,256] took 45 µs a step, 8% of an MNIST epoch (bench:train's phases).
template <typename T>
bool optimizerUpdate(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, T* vmax, size_t n, double t, const Saved<T>& saved = {}, int threads = 1) {
  const bool fused = exact::atenCapability() != exact::Capability::Default;
  if (threads <= 1 || n < kParallelUpdate) return optimizerUpdateRange(c, W, g, m, v, vmax, n, t, saved, fused);
  bool finite[Pool::kMaxParts];
  const auto at = [](T* p, size_t i) { return p ? p + i : nullptr; };
  const int parts = Pool::chunks(n, 64, kParallelUpdate / 4, threads, [&](int part, size_t i0, size_t i1) {
    const Saved<T> s{at(saved.W, i0), at(saved.m, i0), at(saved.v, i0), at(saved.vmax, i0)};
    finite[part] = optimizerUpdateRange(c, W + i0, g + i0, at(m, i0), at(v, i0), at(vmax, i0), i1 - i0, t, s, fused);
  });
  bool all = true;
  for (int i = 0; i < parts; ++i) all &= finite[i];
  return all;
}

}  // namespace hg
