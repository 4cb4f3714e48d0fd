// Node-API glue for the kernel primitives (see kernels_glue.h). Argument order and names equal
// lib/binding.ts. The dtype of a call is the dtype of its first float tensor; the others must match.
#include "kernels_glue.h"

#include <cstdint>
#include <string>

#include "../core/kernels.h"
#include "../common/checks.h"

namespace hg {
namespace {

// The length of the typed array at argument i (its type is checked by typedArg afterwards).
size_t lengthOf(const Napi::CallbackInfo& info, size_t i, const char* name) {
  size_t n = 0;
  if (i >= info.Length() || napi_get_typedarray_info(info.Env(), info[i], nullptr, &n, nullptr, nullptr, nullptr) != napi_ok)
    throwType(info.Env(), std::string("Expected a typed array for ") + name);
  return n;
}

// broadcastRows(bias, out, rows, cols): out[r, :] = bias.
template <typename T>
Napi::Value broadcastRowsT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int rows = dimArg(info, 2, "rows"), cols = dimArg(info, 3, "cols");
  const size_t n = elements(env, "out", rows, cols);
  const T* bias = typedArg<T>(info, 0, "bias", size_t(cols));
  T* out = typedArg<T>(info, 1, "out", n);
  const Span spans[] = {{bias, cols * sizeof(T), "bias"}, {out, n * sizeof(T), "out"}};
  requireDisjoint(env, spans, 1);
  broadcastRows(bias, out, size_t(rows), size_t(cols));
  return env.Undefined();
}

// sumRows(dZ, db, rows, cols, accumulate): db (+)= Σ_r dZ[r, :].
template <typename T>
Napi::Value sumRowsT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int rows = dimArg(info, 2, "rows"), cols = dimArg(info, 3, "cols");
  const bool accumulate = boolArg(info, 4, "accumulate");
  const size_t n = elements(env, "dZ", rows, cols);
  const T* dZ = typedArg<T>(info, 0, "dZ", n);
  T* db = typedArg<T>(info, 1, "db", size_t(cols));
  const Span spans[] = {{dZ, n * sizeof(T), "dZ"}, {db, cols * sizeof(T), "db"}};
  requireDisjoint(env, spans, 1);
  sumRows(dZ, db, size_t(rows), size_t(cols), accumulate);
  return env.Undefined();
}

// activationForward(act, Z, A): A = act(Z).
template <typename T>
Napi::Value activationForwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto act = static_cast<Activation>(enumArg(info, 0, "activation", 3));
  const size_t n = lengthOf(info, 1, "Z");
  const T* Z = typedArg<T>(info, 1, "Z", n);
  T* A = typedArg<T>(info, 2, "A", n);
  const Span spans[] = {{Z, n * sizeof(T), "Z"}, {A, n * sizeof(T), "A"}};
  requireDisjoint(env, spans, 1);
  activationForward(act, Z, A, n);
  return env.Undefined();
}

// activationBackward(act, Z, A, dA): dA ⊙= act'(Z), in place.
template <typename T>
Napi::Value activationBackwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto act = static_cast<Activation>(enumArg(info, 0, "activation", 3));
  const size_t n = lengthOf(info, 1, "Z");
  const T* Z = typedArg<T>(info, 1, "Z", n);
  const T* A = typedArg<T>(info, 2, "A", n);
  T* dA = typedArg<T>(info, 3, "dA", n);
  const Span spans[] = {{Z, n * sizeof(T), "Z"}, {A, n * sizeof(T), "A"}, {dA, n * sizeof(T), "dA"}};
  requireDisjoint(env, spans, 2);
  activationBackward(act, Z, A, dA, n);
  return env.Undefined();
}

// softmaxCrossEntropy(logits, y, probs, B, C) → Σ_b loss_b.
template <typename T>
Napi::Value softmaxCrossEntropyT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int B = dimArg(info, 3, "B"), C = dimArg(info, 4, "C");
  const size_t n = elements(env, "logits", B, C);
  const T* logits = typedArg<T>(info, 0, "logits", n);
  const int32_t* y = typedArg<int32_t>(info, 1, "y", size_t(B));
  T* probs = typedArg<T>(info, 2, "probs", n);
  const Span spans[] = {{logits, n * sizeof(T), "logits"}, {y, B * sizeof(int32_t), "y"}, {probs, n * sizeof(T), "probs"}};
  requireDisjoint(env, spans, 2);
  requireLabels(env, y, size_t(B), C);
  return Napi::Number::New(env, softmaxCrossEntropy(logits, y, probs, size_t(B), size_t(C)));
}

// softmaxCrossEntropyBackward(probs, y, dZ, B, C, reduction): dZ = (probs − onehot(y))·lossScale.
template <typename T>
Napi::Value softmaxCrossEntropyBackwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int B = dimArg(info, 3, "B"), C = dimArg(info, 4, "C");
  const auto red = static_cast<Reduction>(enumArg(info, 5, "reduction", 2));
  const size_t n = elements(env, "probs", B, C);
  const T* probs = typedArg<T>(info, 0, "probs", n);
  const int32_t* y = typedArg<int32_t>(info, 1, "y", size_t(B));
  T* dZ = typedArg<T>(info, 2, "dZ", n);
  const Span spans[] = {{probs, n * sizeof(T), "probs"}, {y, B * sizeof(int32_t), "y"}, {dZ, n * sizeof(T), "dZ"}};
  requireDisjoint(env, spans, 2);
  requireLabels(env, y, size_t(B), C);
  softmaxCrossEntropyBackward(probs, y, dZ, size_t(B), size_t(C), lossScale<T>(red, size_t(B)));
  return env.Undefined();
}

template <typename T>
Napi::Value allFiniteT(const Napi::CallbackInfo& info) {
  const size_t n = lengthOf(info, 0, "x");
  return Napi::Boolean::New(info.Env(), allFinite(typedArg<T>(info, 0, "x", n), n));
}

// One export per kernel, dispatched on the dtype of the float tensor at argument `at`.
template <Napi::Value (*F64)(const Napi::CallbackInfo&), Napi::Value (*F32)(const Napi::CallbackInfo&)>
Napi::Value dispatch(const Napi::CallbackInfo& info, size_t at, const char* name) {
  return isFloat32Arg(info, at, name) ? F32(info) : F64(info);
}

}  // namespace

void addKernelExports(Napi::Env env, Napi::Object exports) {
  const auto add = [&](const char* name, Napi::Function::Callback fn) { exports.Set(name, Napi::Function::New(env, fn, name)); };
  add("broadcastRows", [](const Napi::CallbackInfo& i) { return dispatch<broadcastRowsT<double>, broadcastRowsT<float>>(i, 0, "bias"); });
  add("sumRows", [](const Napi::CallbackInfo& i) { return dispatch<sumRowsT<double>, sumRowsT<float>>(i, 0, "dZ"); });
  add("activationForward", [](const Napi::CallbackInfo& i) { return dispatch<activationForwardT<double>, activationForwardT<float>>(i, 1, "Z"); });
  add("activationBackward", [](const Napi::CallbackInfo& i) { return dispatch<activationBackwardT<double>, activationBackwardT<float>>(i, 1, "Z"); });
  add("softmaxCrossEntropy", [](const Napi::CallbackInfo& i) { return dispatch<softmaxCrossEntropyT<double>, softmaxCrossEntropyT<float>>(i, 0, "logits"); });
  add("softmaxCrossEntropyBackward", [](const Napi::CallbackInfo& i) { return dispatch<softmaxCrossEntropyBackwardT<double>, softmaxCrossEntropyBackwardT<float>>(i, 0, "probs"); });
  add("allFinite", [](const Napi::CallbackInfo& i) { return dispatch<allFiniteT<double>, allFiniteT<float>>(i, 0, "x"); });
}

}  // namespace hg
