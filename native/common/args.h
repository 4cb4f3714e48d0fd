// Argument reading for every addon's Node-API glue (the core, the LibTorch reference): typed
// arrays, dims, enums and booleans, and the one error wording "Expected {what} for {name} but
// received {actual}". The JS layer checks first and builds the friendly errors; these are the
// second line, so a caller who reaches a raw export gets a TypeError/RangeError, never a read past
// a buffer. node-addon-api is built with C++ exceptions: a throw here unwinds to the export.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

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

// Indexed by napi_typedarray_type (its values are part of the Node-API ABI).
inline const char* typedArrayName(napi_typedarray_type t) {
  static const char* const kNames[] = {"Int8Array",    "Uint8Array",   "Uint8ClampedArray", "Int16Array",
                                       "Uint16Array",  "Int32Array",   "Uint32Array",       "Float32Array",
                                       "Float64Array", "BigInt64Array", "BigUint64Array"};
  return size_t(t) < sizeof kNames / sizeof *kNames ? kNames[t] : "TypedArray";
}

[[noreturn]] inline void throwType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] inline void throwRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

// "Expected {what} for {name} but received {actual}", a TypeError when `type`, else a RangeError.
[[noreturn]] inline void failArg(Napi::Env env, bool type, const std::string& what, const std::string& name,
                                 const std::string& actual) {
  const std::string msg = "Expected " + what + " for " + name + " but received " + actual;
  if (type) throwType(env, msg);
  throwRange(env, msg);
}

// The shortest of %.15g / %.17g that reads back as v.
inline std::string numberText(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  for (int precision : {15, 17}) {
    std::ostringstream os;
    os.precision(precision);
    os << v;
    if (precision == 17 || std::stod(os.str()) == v) return os.str();
  }
  return std::to_string(v);
}

// A typed array's kind, length and data (null when detached or empty); false for anything else.
// Runs no JS.
struct TypedInfo {
  napi_typedarray_type kind;
  size_t length = 0;
  void* data = nullptr;
};
inline bool typedInfo(Napi::Env env, napi_value v, TypedInfo* out) {
  return napi_get_typedarray_info(env, v, &out->kind, &out->length, &out->data, nullptr, nullptr) == napi_ok;
}

// What came, in the words of lib/validate.ts describe(): enough to see the mistake.
inline std::string describeValue(Napi::Env env, const Napi::Value& v) {
  TypedInfo t;
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return numberText(v.As<Napi::Number>().DoubleValue());
  if (v.IsBoolean()) return "boolean";
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsTypedArray() && typedInfo(env, v, &t))
    return std::string(typedArrayName(t.kind)) + " of length " + std::to_string(t.length);
  if (v.IsArray()) return "Array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "function";
  return "object";
}

inline Napi::Value argOrUndefined(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

// The data of a typed array as a T* of exactly `length` elements: a view into the caller's
// ArrayBuffer (byteOffset applied by Node-API), not a copy. One napi_get_typedarray_info call per
// argument: at the smallest sizes the argument checks cost more than the arithmetic.
template <typename T>
T* typedValue(Napi::Env env, napi_value v, const char* name, size_t length) {
  TypedInfo t;
  if (v == nullptr || !typedInfo(env, v, &t)) throwType(env, std::string("Expected ") + DtypeOf<T>::name + " for " + name);
  if (t.kind != DtypeOf<T>::kind) failArg(env, true, DtypeOf<T>::name, name, typedArrayName(t.kind));
  if (t.length != length) failArg(env, false, std::to_string(length) + " elements", name, std::to_string(t.length));
  // A detached buffer reports length 0, so only an empty tensor can get here without data.
  if (t.data == nullptr && length != 0) throwType(env, std::string("Expected a live buffer for ") + name + " but it is detached");
  return static_cast<T*>(t.data);
}

// Whether no other thread can write a typed array's bytes during a synchronous call: its buffer is
// an ArrayBuffer (napi_is_arraybuffer is false for a SharedArrayBuffer, which a Worker may hold).
// False for anything else, so the answer is never a guess in the trusting direction.
inline bool privateMemory(napi_env env, napi_value v) {
  napi_value buffer;
  bool plain = false;
  return napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &buffer, nullptr) == napi_ok &&
         napi_is_arraybuffer(env, buffer, &plain) == napi_ok && plain;
}

// Whether the tensor at argument i is a Float32Array (else a Float64Array; anything else throws).
inline bool isFloat32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  TypedInfo t;
  const std::string expected = std::string("Expected Float64Array or Float32Array for ") + name;
  if (i >= info.Length() || !typedInfo(env, info[i], &t)) throwType(env, expected);
  if (t.kind != napi_float64_array && t.kind != napi_float32_array)
    throwType(env, expected + " but received " + typedArrayName(t.kind));
  return t.kind == napi_float32_array;
}

// The one dtype idiom: fn(float{}) or fn(double{}) as the tensor at argument i is f32 or f64, so
// a template body is written once: dispatchFloat(info, 0, "X", [&](auto t) { return f<decltype(t)>(info); }).
template <typename Fn>
auto dispatchFloat(const Napi::CallbackInfo& info, size_t i, const char* name, Fn fn) {
  return isFloat32Arg(info, i, name) ? fn(float{}) : fn(double{});
}

inline double numberValue(Napi::Env env, napi_value v, const char* name) {
  double d;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok) throwType(env, std::string("Expected a number for ") + name);
  return d;
}

// A positive integer that fits a 32-bit BLAS index.
inline int dimValue(Napi::Env env, napi_value arg, const char* name) {
  const double v = numberValue(env, arg, name);
  if (!(v >= 1 && v <= std::numeric_limits<int32_t>::max() && std::floor(v) == v))
    throwRange(env, std::string("Expected a positive 32-bit integer for ") + name + " but received " + std::to_string(v));
  return static_cast<int>(v);
}

inline int enumValue(Napi::Env env, napi_value arg, const char* name, int count) {
  const double v = numberValue(env, arg, name);
  if (!(v >= 0 && v < count && std::floor(v) == v))
    throwRange(env, std::string("Expected an integer in [0, ") + std::to_string(count) + ") for " + name);
  return static_cast<int>(v);
}

inline bool boolValue(Napi::Env env, napi_value v, const char* name) {
  bool b;
  if (v == nullptr || napi_get_value_bool(env, v, &b) != napi_ok) throwType(env, std::string("Expected a boolean for ") + name);
  return b;
}

// A typed array of exactly `length` elements, or null for a null/undefined argument (an option not given).
template <typename T>
const T* optionalTyped(Napi::Env env, napi_value v, const char* name, size_t length) {
  napi_valuetype t;
  if (v == nullptr || (napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined))) return nullptr;
  return typedValue<T>(env, v, name, length);
}

// A 32-bit integer (any sign): PyTorch's ignore_index.
inline int32_t int32Value(Napi::Env env, napi_value arg, const char* name) {
  const double v = numberValue(env, arg, name);
  if (!(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max() && std::floor(v) == v))
    throwRange(env, std::string("Expected a 32-bit integer for ") + name + " but received " + numberText(v));
  return static_cast<int32_t>(v);
}

// Argument i (undefined past the last) read by one of the readers above, e.g. arg<dimValue>(info, 1, "B").
template <auto Reader, typename... Rest>
auto arg(const Napi::CallbackInfo& info, size_t i, Rest... rest) {
  return Reader(info.Env(), argOrUndefined(info, i), rest...);
}

// Element count of a [rows, cols] tensor, refusing products that overflow size_t or exceed what a
// typed array can hold (so a later pointer offset can never wrap).
inline size_t elements(Napi::Env env, const char* name, size_t rows, size_t cols) {
  constexpr size_t kMax = size_t(1) << 53;
  if (cols != 0 && rows > kMax / cols)
    throwRange(env, std::string("Expected a size that fits in memory for ") + name + " but received " +
                        std::to_string(rows) + "×" + std::to_string(cols));
  return rows * cols;
}

// An Int32Array of any length, copied (a description of a few entries; a copy cannot be changed
// or detached by JS that runs later in the call).
inline std::vector<int32_t> int32Copy(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  const Napi::Value v = argOrUndefined(info, i);
  TypedInfo t;
  if (!typedInfo(env, v, &t) || t.kind != napi_int32_array) failArg(env, true, "an Int32Array", name, describeValue(env, v));
  const auto* p = static_cast<const int32_t*>(t.data);
  return p ? std::vector<int32_t>(p, p + t.length) : std::vector<int32_t>();
}

// The elements of the JS Array argument i, `count` of them, all read (a getter may run JS, even
// detach a buffer) before the caller takes any data pointer.
inline std::vector<Napi::Value> arrayArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t count,
                                         const std::string& countWhat) {
  Napi::Env env = info.Env();
  const Napi::Value v = argOrUndefined(info, i);
  if (!v.IsArray()) failArg(env, true, "an Array of typed arrays", name, describeValue(env, v));
  const Napi::Array list = v.As<Napi::Array>();
  if (list.Length() != count) failArg(env, false, countWhat, name, describeValue(env, v));
  std::vector<Napi::Value> items;
  items.reserve(count);
  for (uint32_t k = 0; k < count; ++k) items.push_back(list.Get(k));
  return items;
}

}  // namespace hg
