// Node-API glue of the LibTorch addon (handgrad_torch.node): the same exports, positions and
// argument checks as the core addon (native/addon/addon.cc), so lib/backends/torch.ts can call it
// exactly as the native backend calls the core; plus optimizerRun (torch::optim over a sequence of
// gradients, the check of lib/train/optimizer.ts), which only this addon has. Export names equal
// lib/backends/torch.ts.
#include <napi.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../addon/step_args.h"
#include "optim.h"
#include "reference.h"

namespace hg {
namespace {

// Per-instance state (each worker_thread that loads the addon has its own): the intra-op thread
// count asked for. It is applied on every entry because LibTorch's CPU backend here is OpenMP,
// whose thread count belongs to the calling OS thread, not the process. 1 by default: LibTorch's
// threads on top of OpenBLAS's own oversubscribe a small machine (2 on 2 cores measured 7–11× slower).
struct TorchAddon {
  int threads = 1;
};

constexpr int kMaxThreads = 256;

void applyThreads(Napi::Env env) {
  const int want = env.GetInstanceData<TorchAddon>()->threads;
  if (torchThreads() != want) setTorchThreads(want);
}

// LibTorch's message without the C++ backtrace that follows it.
std::string withoutBacktrace(const std::string& what) {
  std::string msg = what.substr(0, what.find("Exception raised from"));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

// Every export runs inside this: argument errors (Napi::Error) pass through; anything LibTorch or
// the standard library throws becomes a JS error instead of terminating the process.
template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    applyThreads(env);
    return fn(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::TypeError& e) {
    throw Napi::TypeError::New(env, withoutBacktrace(e.what_without_backtrace()));
  } catch (const c10::IndexError& e) {
    throw Napi::RangeError::New(env, withoutBacktrace(e.what_without_backtrace()));
  } catch (const c10::ValueError& e) {
    throw Napi::RangeError::New(env, withoutBacktrace(e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, withoutBacktrace(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, withoutBacktrace(e.what()));
  }
}

template <typename T>
Napi::Value forwardBackwardT(const Napi::CallbackInfo& info) {
  const StepArgs<T> a = readStepArgs<T>(info);
  double loss = 0;
  const Status status = torchForwardBackward(a.d, a.X, a.y, a.p, a.act, a.red, a.w, a.g, a.accumulate, &loss);
  if (status != Status::Ok) explainNonFinite(info.Env(), status, a.d, a.X, a.p, &a.g);
  return Napi::Number::New(info.Env(), loss);
}

Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    return isFloat32(i) ? forwardBackwardT<float>(i) : forwardBackwardT<double>(i);
  });
}

template <typename T>
Napi::Value forwardT(const Napi::CallbackInfo& info) {
  const ForwardArgs<T> a = readForwardArgs<T>(info);
  const Status status = torchForward(a.d, a.X, a.p, a.act, a.w);
  if (status != Status::Ok) explainNonFinite(info.Env(), status, a.d, a.X, a.p);
  return info.Env().Undefined();
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    return isFloat32(i) ? forwardT<float>(i) : forwardT<double>(i);
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), torchThreads()); });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    const int n = dimArg(i, 0, "threads");
    // OpenMP aborts the process when it cannot create the threads asked for: refuse absurd counts.
    if (n > kMaxThreads)
      throwRange(i.Env(), "Expected at most " + std::to_string(kMaxThreads) + " for threads but received " + std::to_string(n));
    i.Env().GetInstanceData<TorchAddon>()->threads = n;
    setTorchThreads(n);
    return i.Env().Undefined();
  });
}

// --- optimizerRun(name, W, grads, lr, momentum, beta1, beta2, epsilon, weightDecay) ---------------

// The shortest of %.15g / %.17g that reads back as v, for "but received …".
std::string numberText(double v) {
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

// What came, in the words of lib/validate.ts describe(): enough to see the mistake.
std::string describeValue(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return numberText(v.As<Napi::Number>().DoubleValue());
  if (v.IsBoolean()) return "boolean";
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsTypedArray()) {
    napi_typedarray_type kind;
    size_t length = 0;
    napi_get_typedarray_info(env, v, &kind, &length, nullptr, nullptr, nullptr);
    return std::string(typedArrayName(kind)) + " of length " + std::to_string(length);
  }
  if (v.IsArray()) return "Array of length " + std::to_string(v.As<Napi::Array>().Length());
  if (v.IsFunction()) return "function";
  return "object";
}

[[noreturn]] void failArg(Napi::Env env, bool type, const std::string& what, const std::string& name,
                          const std::string& actual) {
  const std::string msg = "Expected " + what + " for " + name + " but received " + actual;
  if (type) throwType(env, msg);
  throwRange(env, msg);
}

// A finite number in [lo, hi] (hi excluded when hiOpen), as optimizerConfig in lib/train/optimizer.ts.
double numberArg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, bool hiOpen,
                 const char* what) {
  Napi::Env env = info.Env();
  const Napi::Value v = i < info.Length() ? info[i] : env.Undefined();
  if (!v.IsNumber()) failArg(env, true, "a number", name, describeValue(env, v));
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(std::isfinite(x) && x >= lo && (hiOpen ? x < hi : x <= hi))) failArg(env, false, what, name, numberText(x));
  return x;
}

OptimizerKind optimizerKindArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  static const char* const kWhat = "one of 'sgd', 'momentum', 'nesterov', 'adam', 'adamw'";
  const Napi::Value v = i < info.Length() ? info[i] : env.Undefined();
  if (!v.IsString()) failArg(env, true, kWhat, "name", describeValue(env, v));
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "sgd") return OptimizerKind::Sgd;
  if (s == "momentum") return OptimizerKind::Momentum;
  if (s == "nesterov") return OptimizerKind::Nesterov;
  if (s == "adam") return OptimizerKind::Adam;
  if (s == "adamw") return OptimizerKind::AdamW;
  failArg(env, false, kWhat, "name", describeValue(env, v));
}

template <typename T>
Napi::Value optimizerRunT(const Napi::CallbackInfo& info, OptimizerKind kind) {
  Napi::Env env = info.Env();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  OptimizerHyper h{};
  h.lr = numberArg(info, 3, "lr", 0, kInf, false, "a finite number >= 0");
  h.momentum = numberArg(info, 4, "momentum", 0, 1, false, "a number in [0, 1]");
  h.beta1 = numberArg(info, 5, "beta1", 0, 1, true, "a number in [0, 1)");
  h.beta2 = numberArg(info, 6, "beta2", 0, 1, true, "a number in [0, 1)");
  h.epsilon = numberArg(info, 7, "epsilon", 0, 1, false, "a number in [0, 1]");
  h.weightDecay = numberArg(info, 8, "weightDecay", 0, kInf, false, "a finite number >= 0");
  // torch::optim::SGD refuses Nesterov without momentum; say so in this project's words.
  if (kind == OptimizerKind::Nesterov && h.momentum == 0)
    failArg(env, false, "a momentum > 0 (Nesterov needs one)", "momentum", "0");

  if (info.Length() < 3 || !info[2].IsArray())
    failArg(env, true, "an Array of typed arrays", "grads", describeValue(env, info.Length() < 3 ? env.Undefined() : info[2]));
  const Napi::Array list = info[2].As<Napi::Array>();
  const uint32_t steps = list.Length();
  // Every element is read (a getter may run JS, even detach a buffer) before any data pointer is
  // taken; after this loop no JS runs until the call returns, so the pointers stay valid.
  std::vector<Napi::Value> items;
  items.reserve(steps);
  for (uint32_t s = 0; s < steps; ++s) {
    Napi::Value g = list.Get(s);
    napi_typedarray_type kind2;
    if (!g.IsTypedArray() ||
        napi_get_typedarray_info(env, g, &kind2, nullptr, nullptr, nullptr, nullptr) != napi_ok ||
        kind2 != DtypeOf<T>::kind)
      failArg(env, true, std::string("a ") + DtypeOf<T>::name + " (the dtype of W)", "grads[" + std::to_string(s) + "]",
              describeValue(env, g));
    items.push_back(g);
  }

  size_t n = 0;
  void* wData = nullptr;
  napi_get_typedarray_info(env, info[1], nullptr, &n, &wData, nullptr, nullptr);
  if (wData == nullptr && n != 0) throwType(env, "Expected a live buffer for W but it is detached");
  T* W = static_cast<T*>(wData);
  requireFinite(env, "W", W, n);
  const auto* wBegin = reinterpret_cast<const uint8_t*>(W);
  std::vector<const T*> grads(steps);
  for (uint32_t s = 0; s < steps; ++s) {
    const std::string name = "grads[" + std::to_string(s) + "]";
    size_t length = 0;
    void* data = nullptr;
    napi_get_typedarray_info(env, items[s], nullptr, &length, &data, nullptr, nullptr);
    if (length != n)
      failArg(env, false, std::to_string(n) + " elements (the length of W)", name, describeValue(env, items[s]));
    if (data == nullptr && n != 0) throwType(env, "Expected a live buffer for " + name + " but it is detached");
    // W is written between steps, so a gradient over W's memory would be read after it changed.
    const auto* gBegin = static_cast<const uint8_t*>(data);
    if (n != 0 && gBegin < wBegin + n * sizeof(T) && wBegin < gBegin + n * sizeof(T))
      throwRange(env, "Expected " + name + " not to share memory with W");
    grads[s] = static_cast<const T*>(data);
    requireFinite(env, name.c_str(), grads[s], n);
  }
  if (n != 0 && steps != 0) torchOptimizerRun<T>(kind, h, W, n, grads.data(), steps);
  return env.Undefined();
}

Napi::Value OptimizerRun(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    Napi::Env env = i.Env();
    const OptimizerKind kind = optimizerKindArg(i, 0);
    napi_typedarray_type t;
    if (i.Length() < 2 || !i[1].IsTypedArray() ||
        napi_get_typedarray_info(env, i[1], &t, nullptr, nullptr, nullptr, nullptr) != napi_ok ||
        (t != napi_float64_array && t != napi_float32_array))
      failArg(env, true, "a Float64Array or Float32Array", "W", describeValue(env, i.Length() < 2 ? env.Undefined() : i[1]));
    return t == napi_float32_array ? optimizerRunT<float>(i, kind) : optimizerRunT<double>(i, kind);
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Owned by the environment: node-addon-api deletes it when this instance unloads.
  env.SetInstanceData(new TorchAddon());
  exports.Set("forwardBackward", Napi::Function::New(env, ForwardBackward, "forwardBackward"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("optimizerRun", Napi::Function::New(env, OptimizerRun, "optimizerRun"));
  return exports;
}

}  // namespace
}  // namespace hg

static Napi::Object InitHandgradTorch(Napi::Env env, Napi::Object exports) { return hg::Init(env, exports); }
NODE_API_MODULE(handgrad_torch, InitHandgradTorch)
