// The checks every addon makes on the data itself, after args.h has read the arguments: outputs
// disjoint from inputs and from each other, labels in [0, C), values finite.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "../core/kernels.h"
#include "args.h"

namespace hg {

struct Span {
  const void* begin;  // null: absent (an output not asked for), never overlaps
  size_t bytes;
  const char* name;
};

// Refuses an output (spans[firstOutput..n)) that shares memory with an input or an earlier output:
// the math reads inputs after it has started writing outputs, so aliasing would give a silent
// wrong answer.
inline void requireDisjoint(Napi::Env env, const Span* spans, size_t n, size_t firstOutput) {
  for (size_t o = firstOutput; o < n; ++o) {
    if (!spans[o].begin) continue;
    const auto* a = static_cast<const uint8_t*>(spans[o].begin);
    for (size_t i = 0; i < o; ++i) {
      const auto* b = static_cast<const uint8_t*>(spans[i].begin);
      if (b && a < b + spans[i].bytes && b < a + spans[o].bytes)
        throwRange(env, std::string("Expected ") + spans[o].name + " not to share memory with " + spans[i].name);
    }
  }
}
template <size_t N>
void requireDisjoint(Napi::Env env, const Span (&spans)[N], size_t firstOutput) {
  requireDisjoint(env, spans, N, firstOutput);
}

[[noreturn]] inline void throwLabel(Napi::Env env, int32_t label, size_t at, int64_t C) {
  throwRange(env, "Expected labels in [0, " + std::to_string(C) + ") for y but received " + std::to_string(label) +
                      " at index " + std::to_string(at));
}

// Labels index rows of probs and dZ: one outside [0, C) would read or write out of bounds. Reads y
// once into `copy` (B entries), which is what the math must use afterwards.
inline void copyLabels(Napi::Env env, const int32_t* y, size_t B, int64_t C, int32_t* copy) {
  const size_t bad = copyLabels(y, B, int32_t(C), copy);
  if (bad != B) throwLabel(env, copy[bad], bad, C);
}

// NaN or ±Infinity in an input gives a wrong answer, not a crash, so it must be an error.
template <typename T>
void requireFinite(Napi::Env env, const char* name, const T* p, size_t n) {
  if (allFinite(p, n)) return;
  const size_t at = firstNonFinite(p, n);
  const double v = static_cast<double>(p[at]);
  throwRange(env, std::string("Expected finite values in ") + name + " but received " +
                      (std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity") + " at index " + std::to_string(at));
}

}  // namespace hg
