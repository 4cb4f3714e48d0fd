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
__m512 Sleef_expf16_u10(__m512);
__m512 Sleef_logf16_u10(__m512);
__m512 Sleef_tanhf16_u10(__m512);
__m512d Sleef_expd8_u10(__m512d);
__m512d Sleef_logd8_u10(__m512d);
__m512d Sleef_tanhd8_u10(__m512d);
}

namespace hg::exact {

// ATen's CPUCapability (aten/src/ATen/native/DispatchStub.cpp, compute_cpu_capability, 1.13).
enum class Capability : int { Default = 0, Avx2 = 1, Avx512 = 2 };

// What ATen picks: ATEN_CPU_CAPABILITY when it names one ("default", "avx2", "avx512"; anything else
// is ignored with a warning there), else AVX2 when the CPU has AVX2 and FMA3. 1.13 keeps AVX512
// opt-in ("AVX512 can be slower than AVX2", the `&& false` in its detection), so a CPU with
// AVX-512 still runs the AVX2 kernels unless the variable asks. Read at every call: ATen reads it
// once per process, so a caller changing it mid-run would already disagree with LibTorch.
// A capability named but beyond this CPU is reported as such (avx512Usable, exactUnsupported).
inline Capability atenCapability() {
  if (const char* env = std::getenv("ATEN_CPU_CAPABILITY")) {
    if (std::strcmp(env, "avx512") == 0) return Capability::Avx512;
    if (std::strcmp(env, "avx2") == 0) return Capability::Avx2;
    if (std::strcmp(env, "default") == 0) return Capability::Default;
  }
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Capability::Avx2 : Capability::Default;
}

// Whether this CPU runs what each capability's kernels execute (the Sleef variants included).
inline bool capabilityUsable(Capability c) {
  __builtin_cpu_init();
  switch (c) {
    case Capability::Default: return true;
    case Capability::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Capability::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma");
  }
  return false;
}

inline const char* capabilityName(Capability c) {
  return c == Capability::Avx2 ? "AVX2" : c == Capability::Avx512 ? "AVX512" : "DEFAULT";
}

// Null when exact mode reproduces the capability ATen runs here, else why not (the glue throws it).
// All three are reproduced; one named by ATEN_CPU_CAPABILITY that this CPU cannot run is refused
// (LibTorch itself would crash there with an illegal instruction).
inline const char* exactUnsupported() {
  switch (atenCapability()) {
    case Capability::Default: return nullptr;
    case Capability::Avx2:
      return capabilityUsable(Capability::Avx2) ? nullptr
                                                : "ATEN_CPU_CAPABILITY=avx2 names AVX2 kernels, but this CPU lacks AVX2 or FMA";
    case Capability::Avx512:
      return capabilityUsable(Capability::Avx512)
                 ? nullptr
                 : "ATEN_CPU_CAPABILITY=avx512 names AVX512 kernels, but this CPU lacks AVX-512 F/BW/VL/DQ";
  }
  return "unknown ATen CPU capability";
}

// One Vectorized<T>'s width in bytes: 32 in the DEFAULT and AVX2 builds (vec_base.h, vec256), 64 in
// the AVX512 one (vec512). The kernels are templates on it.
inline int vectorBytes(Capability c) { return c == Capability::Avx512 ? 64 : 32; }
template <typename T, int W>
constexpr int kLanes = W / int(sizeof(T));

enum class Fn : int { Exp, Log, Tanh };

__attribute__((target("avx2,fma"))) inline void sleefLanes(Fn f, float* x) {
  const __m256 v = _mm256_loadu_ps(x);
  _mm256_storeu_ps(x, f == Fn::Exp ? Sleef_expf8_u10(v) : f == Fn::Log ? Sleef_logf8_u10(v) : Sleef_tanhf8_u10(v));
}
__attribute__((target("avx2,fma"))) inline void sleefLanes(Fn f, double* x) {
  const __m256d v = _mm256_loadu_pd(x);
  _mm256_storeu_pd(x, f == Fn::Exp ? Sleef_expd4_u10(v) : f == Fn::Log ? Sleef_logd4_u10(v) : Sleef_tanhd4_u10(v));
}

__attribute__((target("avx512f"))) inline void sleefLanes512(Fn f, float* x) {
  const __m512 v = _mm512_loadu_ps(x);
  _mm512_storeu_ps(x, f == Fn::Exp ? Sleef_expf16_u10(v) : f == Fn::Log ? Sleef_logf16_u10(v) : Sleef_tanhf16_u10(v));
}
__attribute__((target("avx512f"))) inline void sleefLanes512(Fn f, double* x) {
  const __m512d v = _mm512_loadu_pd(x);
  _mm512_storeu_pd(x, f == Fn::Exp ? Sleef_expd8_u10(v) : f == Fn::Log ? Sleef_logd8_u10(v) : Sleef_tanhd8_u10(v));
}

// Vectorized<T>::exp()/log()/tanh() on one vector's lanes, in place: Sleef's u10 functions on AVX2
// and AVX512 (vec256_float.h, vec512_float.h, …), the scalar std:: function per lane on DEFAULT
// (vec_base.h's map()).
template <int W, typename T>
void lanes(Capability cap, Fn f, T* x) {
  if (cap == Capability::Default) {
    for (int i = 0; i < kLanes<T, W>; ++i) x[i] = f == Fn::Exp ? std::exp(x[i]) : f == Fn::Log ? std::log(x[i]) : std::tanh(x[i]);
  } else if constexpr (W == 64) {
    sleefLanes512(f, x);
  } else {
    sleefLanes(f, x);
  }
}

// vec_reduce_all(+) over a full accumulator vector (functional_base.h): for float on AVX2 and
// AVX512, VecReduceAllSIMD's shuffles — lane i meets lane i ^ h for h = V/2, …, 2, 1 (256-bit, 128-bit,
// 64-bit, 32-bit swaps), lane 0's sum is the result; otherwise lane 0 absorbs lanes 1, 2, … in turn.
template <int W, typename T>
T reduceLanesSum(Capability cap, const T* acc) {
  constexpr int V = kLanes<T, W>;
  if constexpr (sizeof(T) == 4) {
    if (cap != Capability::Default) {
      T v[V];
      for (int i = 0; i < V; ++i) v[i] = acc[i];
      for (int h = V / 2; h >= 1; h /= 2) {
        T next[V];
        for (int i = 0; i < V; ++i) next[i] = v[i] + v[i ^ h];
        for (int i = 0; i < V; ++i) v[i] = next[i];
      }
      return v[0];
    }
  }
  T s = acc[0];
  for (int i = 1; i < V; ++i) s = s + acc[i];
  return s;
}

}  // namespace hg::exact
