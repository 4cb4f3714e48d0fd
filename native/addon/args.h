// Argument unpacking for the Node-API glue. The JS layer validates first and builds the friendly
// errors; these checks are the second line, so that a caller who reaches the raw exports (or a JS
// bug) gets a TypeError/RangeError instead of a read past the end of a buffer.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "../core/kernels.h"

namespace hg {

template <typename T> struct DtypeOf;
template <> struct DtypeOf<double> {
  static constexpr napi_typedarray_type kind = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <> struct DtypeOf<float> {
  static constexpr napi_typedarray_type kind = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <> struct DtypeOf<int32_t> {
  static constexpr napi_typedarray_type kind = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};

inline const char* typedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
  }
  return "TypedArray";
}

// A throwing helper: node-addon-api is built with C++ exceptions, so a throw unwinds to the
// export's boundary and becomes the JS error.
[[noreturn]] inline void throwType(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}
[[noreturn]] inline void throwRange(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

// The data of argument i as a T* of exactly `length` elements (not a copy: the view into the
// caller's ArrayBuffer, byteOffset applied by Node-API). One napi_get_typedarray_info call per
// argument: at the smallest sizes the argument checks cost more than the arithmetic.
template <typename T>
T* typedArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t length) {
  Napi::Env env = info.Env();
  napi_typedarray_type kind;
  size_t actual = 0;
  void* data = nullptr;
  // Fails with napi_invalid_arg for anything that is not a typed array.
  if (i >= info.Length() ||
      napi_get_typedarray_info(env, info[i], &kind, &actual, &data, nullptr, nullptr) != napi_ok)
    throwType(env, std::string("Expected ") + DtypeOf<T>::name + " for " + name);
  if (kind != DtypeOf<T>::kind)
    throwType(env, std::string("Expected ") + DtypeOf<T>::name + " for " + name + " but received " +
                       typedArrayName(kind));
  if (actual != length)
    throwRange(env, std::string("Expected ") + std::to_string(length) + " elements for " + name +
                        " but received " + std::to_string(actual));
  // A detached buffer reports length 0, so only an empty tensor can get here without data.
  if (data == nullptr && length != 0)
    throwType(env, std::string("Expected a live buffer for ") + name + " but it is detached");
  return static_cast<T*>(data);
}

// Like typedArg, but null/undefined give nullptr (an output that was not asked for).
template <typename T>
T* optionalTypedArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t length) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return typedArg<T>(info, i, name, length);
}

// A positive integer that fits a 32-bit BLAS index.
inline int dimArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsNumber()) throwType(env, std::string("Expected a number for ") + name);
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 1 && v <= std::numeric_limits<int32_t>::max() && std::floor(v) == v))
    throwRange(env, std::string("Expected a positive 32-bit integer for ") + name + " but received " +
                        std::to_string(v));
  return static_cast<int>(v);
}

inline int enumArg(const Napi::CallbackInfo& info, size_t i, const char* name, int count) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsNumber()) throwType(env, std::string("Expected a number for ") + name);
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v < count && std::floor(v) == v))
    throwRange(env, std::string("Expected an integer in [0, ") + std::to_string(count) + ") for " + name);
  return static_cast<int>(v);
}

inline bool boolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsBoolean())
    throwType(info.Env(), std::string("Expected a boolean for ") + name);
  return info[i].As<Napi::Boolean>().Value();
}

// Element count of a [rows, cols] tensor, refusing products that overflow size_t or exceed
// what a typed array can hold (so a later pointer offset can never wrap).
inline size_t elements(Napi::Env env, const char* name, size_t rows, size_t cols) {
  constexpr size_t kMax = size_t(1) << 53;
  if (cols != 0 && rows > kMax / cols)
    throwRange(env, std::string("Expected a size that fits in memory for ") + name + " but received " +
                        std::to_string(rows) + "×" + std::to_string(cols));
  return rows * cols;
}

// Labels index rows of probs and dZ: one outside [0, C) would read or write out of bounds.
inline void requireLabels(Napi::Env env, const int32_t* y, size_t B, int64_t C) {
  for (size_t b = 0; b < B; ++b)
    if (y[b] < 0 || y[b] >= C)
      throwRange(env, "Expected labels in [0, " + std::to_string(C) + ") for y but received " + std::to_string(y[b]) +
                          " at index " + std::to_string(b));
}

// NaN or ±Infinity in an input gives a wrong answer, not a crash, so it must be an error.
template <typename T>
void requireFinite(Napi::Env env, const char* name, const T* p, size_t n) {
  if (allFinite(p, n)) return;
  const size_t at = firstNonFinite(p, n);
  const double v = static_cast<double>(p[at]);
  throwRange(env, std::string("Expected finite values in ") + name + " but received " +
                      (std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity") + " at index " +
                      std::to_string(at));
}

}  // namespace hg
