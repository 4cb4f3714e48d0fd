// Node-API glue of the LibTorch addon (handgrad_torch.node): the same exports, positions and
// argument checks as the core addon (native/addon/addon.cc), so lib/backends/torch.ts can call it
// exactly as the native backend calls the core. Export names equal lib/backends/torch.ts.
#include <napi.h>

#include <c10/util/Exception.h>

#include <cstdint>
#include <exception>
#include <string>

#include "../addon/step_args.h"
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
  if (status != Status::Ok) explainNonFinite(info.Env(), status, a.d, a.X, a.p);
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Owned by the environment: node-addon-api deletes it when this instance unloads.
  env.SetInstanceData(new TorchAddon());
  exports.Set("forwardBackward", Napi::Function::New(env, ForwardBackward, "forwardBackward"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  return exports;
}

}  // namespace
}  // namespace hg

static Napi::Object InitHandgradTorch(Napi::Env env, Napi::Object exports) { return hg::Init(env, exports); }
NODE_API_MODULE(handgrad_torch, InitHandgradTorch)
