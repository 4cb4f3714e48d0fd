// Node-API glue of the core addon: unpack and check arguments, run the C++ core, return.
// Inputs are read in place from the caller's typed arrays (no copies); outputs are written into
// buffers the caller allocated, so nothing here allocates JS objects on the hot path.
// Export names equal lib/binding.ts.
#include <napi.h>

#include <cstdint>
#include <string>

#include "../core/mlp.h"
#include "../core/optimizer.h"
#include "kernels_glue.h"
#include "step_args.h"

namespace hg {
namespace {

template <typename T>
Napi::Value forwardBackwardT(const Napi::CallbackInfo& info) {
  const StepArgs<T> a = readStepArgs<T>(info);
  double loss = 0;
  const Status status = forwardBackward(a.d, a.X, a.y, a.p, a.act, a.red, a.w, a.g, a.accumulate, &loss);
  if (status != Status::Ok) explainNonFinite(info.Env(), status, a.d, a.X, a.p, &a.g);
  return Napi::Number::New(info.Env(), loss);
}

Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
  return isFloat32(info) ? forwardBackwardT<float>(info) : forwardBackwardT<double>(info);
}

template <typename T>
Napi::Value forwardT(const Napi::CallbackInfo& info) {
  const ForwardArgs<T> a = readForwardArgs<T>(info);
  const Status status = forward(a.d, a.X, a.p, a.act, a.w.Z1, a.w.A1, a.w.logits);
  if (status != Status::Ok) explainNonFinite(info.Env(), status, a.d, a.X, a.p);
  return info.Env().Undefined();
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  return isFloat32(info) ? forwardT<float>(info) : forwardT<double>(info);
}

// gemm(transA, transB, M, N, K, alpha, A, B, beta, C): C = alpha·op(A)·op(B) + beta·C, row-major.
// Exposed so the benchmark measures this machine's BLAS peak through the very same library.
template <typename T>
Napi::Value gemmT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool tA = boolArg(info, 0, "transA"), tB = boolArg(info, 1, "transB");
  const int M = dimArg(info, 2, "M"), N = dimArg(info, 3, "N"), K = dimArg(info, 4, "K");
  if (info.Length() < 9 || !info[5].IsNumber() || !info[8].IsNumber()) throwType(env, "Expected numbers for alpha and beta");
  const T alpha = static_cast<T>(info[5].As<Napi::Number>().DoubleValue());
  const T beta = static_cast<T>(info[8].As<Napi::Number>().DoubleValue());
  const size_t nA = elements(env, "A", M, K), nB = elements(env, "B", K, N), nC = elements(env, "C", M, N);
  const T* A = typedArg<T>(info, 6, "A", nA);
  const T* B = typedArg<T>(info, 7, "B", nB);
  T* C = typedArg<T>(info, 9, "C", nC);
  const Span spans[] = {{A, nA * sizeof(T), "A"}, {B, nB * sizeof(T), "B"}, {C, nC * sizeof(T), "C"}};
  requireDisjoint(env, spans, 2);
  gemm(tA, tB, M, N, K, alpha, A, tA ? M : K, B, tB ? K : N, beta, C, N);
  return env.Undefined();
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  if (info.Length() < 7 || !info[6].IsTypedArray()) throwType(info.Env(), "Expected Float64Array or Float32Array for A");
  const auto t = info[6].As<Napi::TypedArray>().TypedArrayType();
  if (t == napi_float32_array) return gemmT<float>(info);
  if (t == napi_float64_array) return gemmT<double>(info);
  throwType(info.Env(), std::string("Expected Float64Array or Float32Array for A but received ") + typedArrayName(t));
}

// optimizerUpdate(W, g, m|null, v|null, kind, lr, t, momentum, beta1, beta2, epsilon, weightDecay):
// one Trainer step on one tensor, in place. m is needed from momentum on, v for Adam/AdamW.
template <typename T>
Napi::Value optimizerUpdateT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const OptimizerConfig c{static_cast<Optimizer>(enumArg(info, 4, "kind", 5)), 0, 0, 0, 0, 0, 0};
  double nums[7];
  const char* names[] = {"lr", "t", "momentum", "beta1", "beta2", "epsilon", "weightDecay"};
  for (size_t k = 0; k < 7; ++k) {
    if (info.Length() <= 5 + k || !info[5 + k].IsNumber()) throwType(env, std::string("Expected a number for ") + names[k]);
    nums[k] = info[5 + k].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(nums[k])) throwRange(env, std::string("Expected a finite number for ") + names[k]);
  }
  if (!(nums[1] >= 1)) throwRange(env, "Expected a step count t ≥ 1");
  napi_typedarray_type kind;
  size_t n = 0;
  if (napi_get_typedarray_info(env, info[0], &kind, &n, nullptr, nullptr, nullptr) != napi_ok)
    throwType(env, "Expected Float64Array or Float32Array for W");
  T* W = typedArg<T>(info, 0, "W", n);
  const T* g = typedArg<T>(info, 1, "g", n);
  const bool needM = c.kind != Optimizer::Sgd, needV = c.kind == Optimizer::Adam || c.kind == Optimizer::AdamW;
  T* m = needM ? typedArg<T>(info, 2, "m", n) : nullptr;
  T* v = needV ? typedArg<T>(info, 3, "v", n) : nullptr;
  const Span spans[] = {{g, n * sizeof(T), "g"}, {W, n * sizeof(T), "W"}, {m, n * sizeof(T), "m"}, {v, n * sizeof(T), "v"}};
  requireDisjoint(env, spans, 1);
  const OptimizerConfig cfg{c.kind, nums[0], nums[2], nums[3], nums[4], nums[5], nums[6]};
  optimizerUpdate(cfg, W, g, m, v, n, nums[1]);
  return env.Undefined();
}

Napi::Value OptimizerUpdate(const Napi::CallbackInfo& info) {
  napi_typedarray_type t;
  if (info.Length() < 1 || napi_get_typedarray_info(info.Env(), info[0], &t, nullptr, nullptr, nullptr, nullptr) != napi_ok ||
      (t != napi_float64_array && t != napi_float32_array))
    throwType(info.Env(), "Expected Float64Array or Float32Array for W");
  return t == napi_float32_array ? optimizerUpdateT<float>(info) : optimizerUpdateT<double>(info);
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), blasThreads());
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  setBlasThreads(dimArg(info, 0, "threads"));
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("forwardBackward", Napi::Function::New(env, ForwardBackward, "forwardBackward"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("optimizerUpdate", Napi::Function::New(env, OptimizerUpdate, "optimizerUpdate"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  addKernelExports(env, exports);
  return exports;
}

}  // namespace
}  // namespace hg

// Node-API modules are context-aware: each worker_thread that loads this file gets its own
// exports, and no state is shared between them (the core holds none).
static Napi::Object InitHandgrad(Napi::Env env, Napi::Object exports) { return hg::Init(env, exports); }
NODE_API_MODULE(handgrad, InitHandgrad)
