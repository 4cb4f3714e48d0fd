// The exact mode's view of ATen's vector unit (PyTorch 1.13, aten/src/ATen/cpu/vec): which kernels
// LibTorch runs on this CPU (its CPU capability), what one Vectorized<T> holds, and the lane-wise
// exp/log/tanh it computes them with (Sleef's vectorized functions, the ones LibTorch links).
// Plain C++ on raw arrays of lanes; only the Sleef calls need AVX, in functions that ask for it.
// Native only: the WebAssembly build never includes this (it has no Sleef).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>

extern "C" {
// libsleef3's runtime-dispatched entry points, the symbols vec256_float.h/vec256_double.h call.
__m256 Sleef_expf8_u10(__m256);
__m256 Sleef_logf8_u10(__m256);
__m256 Sleef_tanhf8_u10(__m256);
__m256d Sleef_expd4_u10(__m256d);
__m256d Sleef_logd4_u10(__m256d);
__m256d Sleef_tanhd4_u10(__m256d);
}

namespace hg::exact {

// ATen's CPUCapability (aten/src/ATen/native/DispatchStub.cpp, compute_cpu_capability, 1.13).
enum class Capability : int { Default = 0, Avx2 = 1, Avx512 = 2 };

// What ATen picks: ATEN_CPU_CAPABILITY when it names one ("default", "avx2", "avx512"; anything else
// is ignored with a warning there), else AVX2 when the CPU has AVX2 and FMA3. 1.13 keeps AVX512
// opt-in ("AVX512 can be slower than AVX2", the `&& false` in its detection), so a CPU with
// AVX-512 still runs the AVX2 kernels unless the variable asks. Read at every call: ATen reads it
// once per process, so a caller changing it mid-run would already disagree with LibTorch.
inline Capability atenCapability() {
  if (const char* env = std::getenv("ATEN_CPU_CAPABILITY")) {
    if (std::strcmp(env, "avx512") == 0) return Capability::Avx512;
    if (std::strcmp(env, "avx2") == 0) return Capability::Avx2;
    if (std::strcmp(env, "default") == 0) return Capability::Default;
  }
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Capability::Avx2 : Capability::Default;
}

inline const char* capabilityName(Capability c) {
  return c == Capability::Avx2 ? "AVX2" : c == Capability::Avx512 ? "AVX512" : "DEFAULT";
}

// Null when exact mode reproduces the capability ATen runs here, else why not (the glue throws it).
inline const char* exactUnsupported() {
  switch (atenCapability()) {
    case Capability::Avx2:
    case Capability::Default:
      return nullptr;
    case Capability::Avx512:
      return "exact mode reproduces LibTorch's DEFAULT and AVX2 CPU kernels; ATEN_CPU_CAPABILITY=avx512 selects "
             "its AVX512 kernels, which it does not reproduce (unset the variable or set it to avx2)";
  }
  return "unknown ATen CPU capability";
}

// Lanes of one Vectorized<T>: 32 bytes in both the AVX2 and the DEFAULT build (vec_base.h).
template <typename T>
constexpr int kLanes = 32 / int(sizeof(T));

enum class Fn : int { Exp, Log, Tanh };

__attribute__((target("avx2,fma"))) inline void sleefLanes(Fn f, float* x) {
  const __m256 v = _mm256_loadu_ps(x);
  _mm256_storeu_ps(x, f == Fn::Exp ? Sleef_expf8_u10(v) : f == Fn::Log ? Sleef_logf8_u10(v) : Sleef_tanhf8_u10(v));
}
__attribute__((target("avx2,fma"))) inline void sleefLanes(Fn f, double* x) {
  const __m256d v = _mm256_loadu_pd(x);
  _mm256_storeu_pd(x, f == Fn::Exp ? Sleef_expd4_u10(v) : f == Fn::Log ? Sleef_logd4_u10(v) : Sleef_tanhd4_u10(v));
}

// Vectorized<T>::exp()/log()/tanh() on one vector's lanes, in place: Sleef's u10 functions on AVX2
// (vec256_float.h), the scalar std:: function per lane on DEFAULT (vec_base.h's map()).
template <typename T>
void lanes(Capability cap, Fn f, T* x) {
  if (cap != Capability::Default) return sleefLanes(f, x);
  for (int i = 0; i < kLanes<T>; ++i) x[i] = f == Fn::Exp ? std::exp(x[i]) : f == Fn::Log ? std::log(x[i]) : std::tanh(x[i]);
}

// vec_reduce_all(+) over a full accumulator vector (functional_base.h): on AVX2 float, the
// VecReduceAllSIMD shuffles (128-bit halves, then 64-bit, then 32-bit pairs); otherwise lane 0
// absorbs lanes 1, 2, … in turn.
template <typename T>
T reduceLanesSum(Capability cap, const T* acc) {
  if constexpr (sizeof(T) == 4) {
    if (cap == Capability::Avx2) {
      const T s0 = acc[0] + acc[4], s1 = acc[1] + acc[5], s2 = acc[2] + acc[6], s3 = acc[3] + acc[7];
      return (s0 + s2) + (s1 + s3);
    }
  }
  T s = acc[0];
  for (int i = 1; i < kLanes<T>; ++i) s = s + acc[i];
  return s;
}

}  // namespace hg::exact
