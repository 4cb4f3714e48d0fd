// Node-API glue of the LibTorch addon (handgrad_torch.node): sequential* (autograd over a layer
// stack, the check of the hand-derived Sequential, reporting as the core's stack exports do),
// optimizerRun (torch::optim, the check of lib/train/optimizer.ts) and the thread count. Arguments
// are read with native/common, in the core addon's words. Export names equal lib/backends/torch.ts.
#include <napi.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "../common/checks.h"
#include "optim.h"
#include "sequential.h"

namespace hg {
namespace {

// Per-instance state (each worker_thread that loads the addon has its own): the last stack call's
// outcome (sequentialStatus) and the intra-op thread count asked for, applied on every entry:
// LibTorch's CPU backend here is OpenMP, whose thread count belongs to the calling OS thread. 1 by
// default: LibTorch's threads on top of OpenBLAS's oversubscribe a small machine (2 on 2 cores: 7–11× slower).
struct TorchAddon {
  int threads = 1;
  StackStatus status{Stage::Ok, 0};
};

constexpr int kMaxThreads = 256;

std::string withoutBacktrace(const std::string& what) {
  std::string msg = what.substr(0, what.find("Exception raised from"));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

// Every export runs inside this, on the instance's thread count: argument errors (Napi::Error) pass
// through; what LibTorch or the standard library throws becomes a JS error, not a dead process.
template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    const int threads = env.GetInstanceData<TorchAddon>()->threads;
    if (torchThreads() != threads) setTorchThreads(threads);
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

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) { return Napi::Number::New(i.Env(), torchThreads()); });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    const int n = arg<dimValue>(i, 0, "threads");
    // OpenMP aborts the process when it cannot create the threads asked for: refuse absurd counts.
    if (n > kMaxThreads)
      throwRange(i.Env(), "Expected at most " + std::to_string(kMaxThreads) + " for threads but received " + std::to_string(n));
    i.Env().GetInstanceData<TorchAddon>()->threads = n;
    setTorchThreads(n);
    return i.Env().Undefined();
  });
}

// A float tensor of the call's dtype T (X's, or W's for optimizerRun) with exactly `length` elements
// (`size` says why), in place.
template <typename T>
T* floatValue(Napi::Env env, const Napi::Value& v, const std::string& name, size_t length, const std::string& size,
              const std::string& dtype = std::string(DtypeOf<T>::name) + " (the dtype of X)") {
  TypedInfo t;
  if (!typedInfo(env, v, &t) || t.kind != DtypeOf<T>::kind) failArg(env, true, dtype, name, describeValue(env, v));
  if (t.length != length)
    failArg(env, false, std::to_string(length) + " elements (" + size + ")", name, describeValue(env, v));
  if (t.data == nullptr && length != 0) throwType(env, "Expected a live buffer for " + name + " but it is detached");
  return static_cast<T*>(t.data);
}

// --- optimizerRun(name, W, grads, lr, momentum, beta1, beta2, epsilon, weightDecay[, dampening[, amsgrad]])

// A finite number in [lo, hi] (hi excluded when hiOpen), as optimizerConfig in lib/train/optimizer.ts.
double rangeArg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, bool hiOpen,
                 const char* what) {
  Napi::Env env = info.Env();
  const Napi::Value v = argOrUndefined(info, i);
  if (!v.IsNumber()) failArg(env, true, "a number", name, describeValue(env, v));
  const double x = v.As<Napi::Number>().DoubleValue();
  if (!(std::isfinite(x) && x >= lo && (hiOpen ? x < hi : x <= hi))) failArg(env, false, what, name, numberText(x));
  return x;
}

Optimizer optimizerArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  static const char* const kNames[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
  static const char* const kWhat = "one of 'sgd', 'momentum', 'nesterov', 'adam', 'adamw'";
  const Napi::Value v = argOrUndefined(info, i);
  if (!v.IsString()) failArg(env, true, kWhat, "name", describeValue(env, v));
  const std::string s = v.As<Napi::String>().Utf8Value();
  for (int k = 0; k < 5; ++k)
    if (s == kNames[k]) return Optimizer(k);
  failArg(env, false, kWhat, "name", describeValue(env, v));
}

template <typename T>
Napi::Value optimizerRunT(const Napi::CallbackInfo& info, Optimizer kind) {
  Napi::Env env = info.Env();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  OptimizerConfig h{kind, 0, 0, 0, 0, 0, 0};
  h.lr = rangeArg(info, 3, "lr", 0, kInf, false, "a finite number >= 0");
  h.momentum = rangeArg(info, 4, "momentum", 0, 1, false, "a number in [0, 1]");
  h.beta1 = rangeArg(info, 5, "beta1", 0, 1, true, "a number in [0, 1)");
  h.beta2 = rangeArg(info, 6, "beta2", 0, 1, true, "a number in [0, 1)");
  h.epsilon = rangeArg(info, 7, "epsilon", 0, 1, false, "a number in [0, 1]");
  h.weightDecay = rangeArg(info, 8, "weightDecay", 0, kInf, false, "a finite number >= 0");
  // Optional, as LibTorch's defaults: dampening 0, amsgrad false.
  if (!argOrUndefined(info, 9).IsUndefined()) h.dampening = rangeArg(info, 9, "dampening", 0, 1, false, "a number in [0, 1]");
  const Napi::Value ams = argOrUndefined(info, 10);
  if (!ams.IsUndefined() && !ams.IsBoolean()) failArg(env, true, "a boolean", "amsgrad", describeValue(env, ams));
  h.amsgrad = !ams.IsUndefined() && ams.As<Napi::Boolean>().Value();
  // torch::optim::SGD refuses Nesterov without momentum, or with dampening; say so in this project's words.
  if (kind == Optimizer::Nesterov && h.momentum == 0)
    failArg(env, false, "a momentum > 0 (Nesterov needs one)", "momentum", "0");
  if (kind == Optimizer::Nesterov && h.dampening != 0)
    failArg(env, false, "dampening 0 (Nesterov needs it)", "dampening", numberText(h.dampening));

  // Every element is read (a getter may run JS, even detach a buffer) before any data pointer is
  // taken; after this no JS runs until the call returns, so the pointers stay valid.
  const Napi::Value list = argOrUndefined(info, 2);
  const std::vector<Napi::Value> items = arrayArg(info, 2, "grads", list.IsArray() ? list.As<Napi::Array>().Length() : 0, "");
  TypedInfo w;
  typedInfo(env, info[1], &w);  // OptimizerRun checked it is a float typed array
  const size_t n = w.length, steps = items.size();
  T* W = static_cast<T*>(w.data);  // null only when empty (a detached buffer reports length 0)
  requireFinite(env, "W", W, n);
  const std::string dtype = std::string("a ") + DtypeOf<T>::name + " (the dtype of W)";
  std::vector<const T*> grads;
  for (size_t s = 0; s < steps; ++s) {
    const std::string name = "grads[" + std::to_string(s) + "]";
    grads.push_back(floatValue<T>(env, items[s], name, n, "the length of W", dtype));
    // W is written between steps, so a gradient over W's memory would be read after it changed.
    const Span spans[] = {{W, n * sizeof(T), "W"}, {grads[s], n * sizeof(T), name.c_str()}};
    requireDisjoint(env, spans, 2, 1);
    requireFinite(env, name.c_str(), grads[s], n);
  }
  if (n != 0 && steps != 0) torchOptimizerRun<T>(h, W, n, grads.data(), steps);
  return env.Undefined();
}

Napi::Value OptimizerRun(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) {
    const Optimizer kind = optimizerArg(i, 0);
    const Napi::Value W = argOrUndefined(i, 1);
    TypedInfo t;
    if (!typedInfo(i.Env(), W, &t) || (t.kind != napi_float64_array && t.kind != napi_float32_array))
      failArg(i.Env(), true, "a Float64Array or Float32Array", "W", describeValue(i.Env(), W));
    return t.kind == napi_float32_array ? optimizerRunT<float>(i, kind) : optimizerRunT<double>(i, kind);
  });
}

// --- the layer stack ---------------------------------------------------------------------------
// sequentialForwardBackward(X, y|null, B, kinds, widths, params, grads, dX|null, reduction, accumulate, ws?,
//   weight?, ignoreIndex?, labelSmoothing?, targets?, gradOutput?) (the loss options: checks.h readLossSpec)
//   → the loss (for reduction none the sum of the rows', which land in ws's losses), or NaN with sequentialStatus set (as the core's stackForwardBackward)
// sequentialForward(X, B, kinds, widths, params, logits) → true, or false with sequentialStatus set
// sequentialLayout(X, B, kinds, widths) → [offset of each layer's output …, of probs, ws length]
// sequentialStatus() → [stage, layer] of this thread's last step (native/core/stack.h Stage)

template <typename T>
T* optionalFloat(const Napi::CallbackInfo& info, size_t i, const std::string& name, size_t length, const std::string& shape) {
  const Napi::Value v = argOrUndefined(info, i);
  return v.IsNull() || v.IsUndefined() ? nullptr : floatValue<T>(info.Env(), v, name, length, shape);
}

// B (argument bArg) and the description (kinds, widths from kindsArg), checked; X is [B, widths[0]].
struct StackShape : StackArgs {
  int B = 0;
  size_t nX = 0;
  std::string xShape;
  StackShape(const Napi::CallbackInfo& info, size_t bArg, size_t kindsArg) : B(arg<dimValue>(info, bArg, "B")) {
    readStackArgs(info, kindsArg, "d", this);
    nX = size_t(B) * size_t(widths[0]);
    xShape = "[" + std::to_string(B) + ", " + std::to_string(widths[0]) + "]";
  }
  // The tensors of an Array read by arrayArg: the params (names from 0) or the grads (from params()).
  template <typename T>
  std::vector<T*> tensors(Napi::Env env, const std::vector<Napi::Value>& list, size_t from) const {
    std::vector<T*> out;
    for (size_t j = 0; j < list.size(); ++j) out.push_back(floatValue<T>(env, list[j], names[from + j], counts[j], shapes[j]));
    return out;
  }
  std::string count() const {
    return std::to_string(params()) + " typed arrays (W, b for each of the " + std::to_string(params() / 2) +
           " Linear layers in kinds)";
  }
};

StackStatus& lastStatus(Napi::Env env) { return env.GetInstanceData<TorchAddon>()->status; }

template <typename T>
Napi::Value sequentialForwardBackwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StackShape s(info, 2, 3);
  const size_t P = s.params();
  // JS may run while the Arrays are read: before any pointer is taken.
  const std::vector<Napi::Value> pv = arrayArg(info, 5, "params", P, s.count());
  const std::vector<Napi::Value> gv = arrayArg(info, 6, "grads", P, s.count());
  Span lossSpans[3];
  const LossSpec<T> spec = readLossSpec<T>(info, {8, 11, 12, 13, 14, 15}, size_t(s.B), size_t(s.widths.back()), lossSpans);
  const bool accumulate = arg<boolValue>(info, 9, "accumulate");

  const T* X = floatValue<T>(env, info[0], "X", s.nX, s.xShape);
  const int32_t* y = spec.targets ? nullptr : arg<typedValue<int32_t>>(info, 1, "y", size_t(s.B));
  const std::vector<T*> params = s.tensors<T>(env, pv, 0), grads = s.tensors<T>(env, gv, P);
  T* dX = optionalFloat<T>(info, 7, "dX", s.nX, s.xShape);
  const size_t nWs = argOrUndefined(info, 10).IsObject() ? size_t(s.layout<T>(env, s.B, nullptr).total) : 0;
  T* ws = optionalFloat<T>(info, 10, "workspace", nWs, "sequentialLayout's length");

  std::vector<Span> spans = {{X, s.nX * sizeof(T), "X"}, {y, y ? size_t(s.B) * sizeof(int32_t) : 0, "y"}};
  spans.insert(spans.end(), lossSpans, lossSpans + 3);
  for (size_t i = 0; i < P; ++i) spans.push_back({params[i], s.counts[i] * sizeof(T), s.names[i].c_str()});
  for (size_t i = 0; i < P; ++i) spans.push_back({grads[i], s.counts[i] * sizeof(T), s.names[P + i].c_str()});
  spans.push_back({dX, s.nX * sizeof(T), "dX"});
  spans.push_back({ws, nWs * sizeof(T), "workspace"});
  requireDisjoint(env, spans.data(), spans.size(), 5 + P);

  // Labels index rows of probs: each read once (y may be shared with another thread), then range-checked.
  std::vector<int32_t> labels(size_t(s.B));
  if (y) {
    const size_t bad = copyLabels(y, size_t(s.B), s.widths.back(), labels.data(), spec.ignoreIndex);
    if (bad != size_t(s.B)) throwLabel(env, labels[bad], bad, s.widths.back());
  }
  requireFinite(env, "X", X, s.nX);
  for (size_t i = 0; i < P; ++i) requireFinite(env, s.names[i].c_str(), params[i], s.counts[i]);

  double loss = 0;
  const Step<T> a{s.B, X, labels.data(), params.data(), grads.data(), dX, spec, accumulate, ws};
  lastStatus(env) = torchForwardBackward<T>(s.net(), a, &loss);
  if (lastStatus(env).stage == Stage::EmptyMean) throwEmptyMean(env, lastStatus(env).layer, spec.ignoreIndex);
  return Napi::Number::New(env, lastStatus(env).stage == Stage::Ok ? loss : std::nan(""));
}

template <typename T>
Napi::Value sequentialForwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StackShape s(info, 1, 2);
  const size_t P = s.params();
  const std::vector<Napi::Value> pv = arrayArg(info, 4, "params", P, s.count());

  const size_t nOut = size_t(s.B) * size_t(s.widths.back());
  const T* X = floatValue<T>(env, info[0], "X", s.nX, s.xShape);
  const std::vector<T*> params = s.tensors<T>(env, pv, 0);
  T* logits = floatValue<T>(env, argOrUndefined(info, 5), "logits", nOut,
                            "[" + std::to_string(s.B) + ", " + std::to_string(s.widths.back()) + "]");

  std::vector<Span> spans = {{X, s.nX * sizeof(T), "X"}};
  for (size_t i = 0; i < P; ++i) spans.push_back({params[i], s.counts[i] * sizeof(T), s.names[i].c_str()});
  spans.push_back({logits, nOut * sizeof(T), "logits"});
  requireDisjoint(env, spans.data(), spans.size(), 1 + P);

  requireFinite(env, "X", X, s.nX);
  for (size_t i = 0; i < P; ++i) requireFinite(env, s.names[i].c_str(), params[i], s.counts[i]);

  lastStatus(env) = torchForward<T>(s.net(), s.B, X, params.data(), logits);
  return Napi::Boolean::New(env, lastStatus(env).stage == Stage::Ok);
}

template <typename T>
Napi::Value sequentialLayoutT(const Napi::CallbackInfo& info) {
  const StackShape s(info, 1, 2);
  return layoutValue<T>(info.Env(), s, s.B);
}

// Each export of the stack, run for X's dtype inside guarded.
template <Napi::Value (*F64)(const Napi::CallbackInfo&), Napi::Value (*F32)(const Napi::CallbackInfo&)>
Napi::Value byDtype(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) { return isFloat32Arg(i, 0, "X") ? F32(i) : F64(i); });
}

Napi::Value SequentialStatus(const Napi::CallbackInfo& info) { return statusValue(info.Env(), lastStatus(info.Env())); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Owned by the environment: node-addon-api deletes it when this instance unloads.
  env.SetInstanceData(new TorchAddon());
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("optimizerRun", Napi::Function::New(env, OptimizerRun, "optimizerRun"));
  exports.Set("sequentialForwardBackward",
              Napi::Function::New(env, byDtype<sequentialForwardBackwardT<double>, sequentialForwardBackwardT<float>>,
                                  "sequentialForwardBackward"));
  exports.Set("sequentialForward",
              Napi::Function::New(env, byDtype<sequentialForwardT<double>, sequentialForwardT<float>>, "sequentialForward"));
  exports.Set("sequentialLayout",
              Napi::Function::New(env, byDtype<sequentialLayoutT<double>, sequentialLayoutT<float>>, "sequentialLayout"));
  exports.Set("sequentialStatus", Napi::Function::New(env, SequentialStatus, "sequentialStatus"));
  return exports;
}

}  // namespace
}  // namespace hg

static Napi::Object InitHandgradTorch(Napi::Env env, Napi::Object exports) { return hg::Init(env, exports); }
NODE_API_MODULE(handgrad_torch, InitHandgradTorch)
