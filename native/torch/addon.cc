// Node-API glue of the LibTorch addon (handgrad_torch.node): sequentialForwardBackward,
// sequentialForward, sequentialLayout, sequentialStatus (autograd over a layer stack of any depth,
// the check of the hand-derived Sequential, reporting as the core's stack exports do), optimizerRun (torch::optim over a sequence of gradients, the check of
// lib/train/optimizer.ts) and the thread count. Arguments are read with native/common, in the
// words of the core addon. Export names equal lib/backends/torch.ts.
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
// outcome (sequentialStatus) and the intra-op thread count asked for. It is applied on every entry because LibTorch's CPU backend here is OpenMP,
// whose thread count belongs to the calling OS thread, not the process. 1 by default: LibTorch's
// threads on top of OpenBLAS's own oversubscribe a small machine (2 on 2 cores measured 7–11× slower).
struct TorchAddon {
  int threads = 1;
  StackStatus status{Stage::Ok, 0};
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

// A finite number in [lo, hi] (hi excluded when hiOpen), as optimizerConfig in lib/train/optimizer.ts.
double rangeArg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, bool hiOpen,
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
  h.lr = rangeArg(info, 3, "lr", 0, kInf, false, "a finite number >= 0");
  h.momentum = rangeArg(info, 4, "momentum", 0, 1, false, "a number in [0, 1]");
  h.beta1 = rangeArg(info, 5, "beta1", 0, 1, true, "a number in [0, 1)");
  h.beta2 = rangeArg(info, 6, "beta2", 0, 1, true, "a number in [0, 1)");
  h.epsilon = rangeArg(info, 7, "epsilon", 0, 1, false, "a number in [0, 1]");
  h.weightDecay = rangeArg(info, 8, "weightDecay", 0, kInf, false, "a finite number >= 0");
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

// --- the layer stack ---------------------------------------------------------------------------
// sequentialForwardBackward(X, y, B, kinds, sizes, params, grads, dX|null, reduction, accumulate, ws?)
//   → the loss, or NaN with sequentialStatus set (as the core's stackForwardBackward)
// sequentialForward(X, B, kinds, sizes, params, logits) → true, or false with sequentialStatus set
// sequentialLayout(X, B, kinds, sizes) → [offset of each layer's output …, of probs, ws length]
// sequentialStatus() → [stage, layer] of this thread's last step (native/core/stack.h Stage)

// A float tensor of the call's dtype T (X's) with exactly `length` elements, in place.
template <typename T>
T* floatValue(Napi::Env env, const Napi::Value& v, const std::string& name, size_t length, const std::string& shape) {
  TypedInfo t;
  if (!typedInfo(env, v, &t) || t.kind != DtypeOf<T>::kind)
    failArg(env, true, std::string(DtypeOf<T>::name) + " (the dtype of X)", name, describeValue(env, v));
  if (t.length != length)
    failArg(env, false, std::to_string(length) + " elements (" + shape + ")", name, describeValue(env, v));
  // A detached buffer reports length 0, and no tensor here is empty.
  if (t.data == nullptr) throwType(env, "Expected a live buffer for " + name + " but it is detached");
  return static_cast<T*>(t.data);
}

// floatValue, or nullptr for null/undefined (an output not asked for).
template <typename T>
T* optionalFloat(const Napi::CallbackInfo& info, size_t i, const std::string& name, size_t length, const std::string& shape) {
  const Napi::Value v = argOrUndefined(info, i);
  return v.IsNull() || v.IsUndefined() ? nullptr : floatValue<T>(info.Env(), v, name, length, shape);
}

// The stack's description, checked: layer codes, widths, chaining; C is the width at the end.
struct StackShape {
  int64_t B = 0, D = 0, C = 0;
  std::vector<LayerKind> kinds;
  std::vector<int32_t> widths;  // widths[l] flows into layer l (native/core/stack.h Net)
  size_t linears = 0;
  std::vector<std::string> names;  // W1, b1, W2, b2, ...
  std::vector<std::string> shapes;  // "[in, out]", "[out]"
  std::vector<size_t> counts;       // elements of each param

  Net net() const { return {kinds.data(), widths.data(), int(kinds.size())}; }
  // The core's workspace layout (outputs: one offset per layer, or null), or a RangeError.
  template <typename T>
  Layout layout(Napi::Env env, uint64_t* outputs) const {
    Layout l;
    if (!stackLayout<T>(net(), uint64_t(B), outputs, &l))
      failArg(env, false, "a batch whose workspace fits in a typed array (2^32 − 1 elements)", "B", std::to_string(B));
    return l;
  }
};

// B (argument bArg), D from X's length, kinds and sizes (two consecutive arguments from kindsArg).
StackShape readStackShape(const Napi::CallbackInfo& info, size_t bArg, size_t kindsArg) {
  Napi::Env env = info.Env();
  StackShape s;
  s.B = dimArg(info, bArg, "B");
  TypedInfo x;
  typedInfo(env, info[0], &x);  // isFloat32 checked it is a float typed array
  if (x.length == 0 || x.length % size_t(s.B) != 0 || x.length / size_t(s.B) > size_t(INT32_MAX))
    failArg(env, false, "a positive multiple of B = " + std::to_string(s.B) + " elements (B rows of D)", "X",
            describeValue(env, info[0]));
  s.D = static_cast<int64_t>(x.length / size_t(s.B));

  const std::vector<int32_t> codes = int32Copy(info, kindsArg, "kinds");
  if (codes.empty()) failArg(env, false, "at least one layer", "kinds", "Int32Array of length 0");
  std::vector<size_t> linearAt;  // each Linear's position in kinds
  for (size_t l = 0; l < codes.size(); ++l) {
    if (codes[l] < 0 || codes[l] >= kLayerKinds)
      throwRange(env, "Expected layer codes in [0, " + std::to_string(kLayerKinds) +
                          ") (0 Linear, 1 ReLU, 2 Sigmoid, 3 Tanh) for kinds but received " +
                          std::to_string(codes[l]) + " at index " + std::to_string(l));
    s.kinds.push_back(static_cast<LayerKind>(codes[l]));
    if (s.kinds.back() == LayerKind::Linear) linearAt.push_back(l);
  }
  s.linears = linearAt.size();

  const std::vector<int32_t> sizes = int32Copy(info, kindsArg + 1, "sizes");
  if (sizes.size() != 2 * s.linears)
    failArg(env, false,
            std::to_string(2 * s.linears) + " elements (in, out for each of the " + std::to_string(s.linears) +
                " Linear layers in kinds)",
            "sizes", "Int32Array of length " + std::to_string(sizes.size()));
  int64_t width = s.D;
  for (size_t k = 0; k < s.linears; ++k) {
    const std::string layer = "layer " + std::to_string(linearAt[k]) + " (Linear, W" + std::to_string(k + 1) + ")";
    for (size_t j = 0; j < 2; ++j)
      if (sizes[2 * k + j] < 1)
        throwRange(env, "Expected a positive width for sizes[" + std::to_string(2 * k + j) + "] (the " +
                            (j == 0 ? "in" : "out") + " of " + layer + ") but received " +
                            std::to_string(sizes[2 * k + j]));
    const int64_t in = sizes[2 * k], out = sizes[2 * k + 1];
    if (in != width)
      throwRange(env, "Expected in = " + std::to_string(width) + " (the width flowing into " + layer + ") for sizes[" +
                          std::to_string(2 * k) + "] but received " + std::to_string(in));
    const std::string n = std::to_string(k + 1);
    s.names.push_back("W" + n);
    s.names.push_back("b" + n);
    s.shapes.push_back("[" + std::to_string(in) + ", " + std::to_string(out) + "]");
    s.shapes.push_back("[" + std::to_string(out) + "]");
    s.counts.push_back(elements(env, s.names[2 * k].c_str(), size_t(in), size_t(out)));
    s.counts.push_back(size_t(out));
    // Every layer's output [B, out] must fit too.
    elements(env, ("the output of " + layer).c_str(), size_t(s.B), size_t(out));
    width = out;
  }
  s.C = width;
  s.widths.push_back(int32_t(s.D));
  for (size_t l = 0, k = 0; l < s.kinds.size(); ++l)
    s.widths.push_back(s.kinds[l] == LayerKind::Linear ? sizes[2 * k++ + 1] : s.widths.back());
  return s;
}

std::string paramsCount(const StackShape& s) {
  return std::to_string(2 * s.linears) + " typed arrays (W, b for each of the " + std::to_string(s.linears) +
         " Linear layers in kinds)";
}

StackStatus& lastStatus(Napi::Env env) { return env.GetInstanceData<TorchAddon>()->status; }

template <typename T>
Napi::Value sequentialForwardBackwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StackShape s = readStackShape(info, 2, 3);
  // JS may run while the Arrays are read: before any pointer is taken.
  const std::vector<Napi::Value> pv = arrayArg(info, 5, "params", 2 * s.linears, paramsCount(s));
  const std::vector<Napi::Value> gv = arrayArg(info, 6, "grads", 2 * s.linears, paramsCount(s));
  const auto red = static_cast<Reduction>(enumArg(info, 8, "reduction", 2));
  const bool accumulate = boolArg(info, 9, "accumulate");

  const size_t nX = size_t(s.B) * size_t(s.D);
  const std::string xShape = "[" + std::to_string(s.B) + ", " + std::to_string(s.D) + "]";
  const T* X = floatValue<T>(env, info[0], "X", nX, xShape);
  const int32_t* y = typedArg<int32_t>(info, 1, "y", size_t(s.B));
  std::vector<const T*> params;
  std::vector<T*> grads;
  for (size_t i = 0; i < pv.size(); ++i) params.push_back(floatValue<T>(env, pv[i], s.names[i], s.counts[i], s.shapes[i]));
  for (size_t i = 0; i < gv.size(); ++i)
    grads.push_back(floatValue<T>(env, gv[i], "d" + s.names[i], s.counts[i], s.shapes[i]));
  T* dX = optionalFloat<T>(info, 7, "dX", nX, xShape);
  const size_t nWs = argOrUndefined(info, 10).IsObject() ? size_t(s.layout<T>(env, nullptr).total) : 0;
  T* ws = optionalFloat<T>(info, 10, "workspace", nWs, "sequentialLayout's length");

  std::vector<std::string> gradNames;
  for (const std::string& n : s.names) gradNames.push_back("d" + n);
  std::vector<Span> spans = {{X, nX * sizeof(T), "X"}, {y, size_t(s.B) * sizeof(int32_t), "y"}};
  for (size_t i = 0; i < params.size(); ++i) spans.push_back({params[i], s.counts[i] * sizeof(T), s.names[i].c_str()});
  const size_t firstOutput = spans.size();
  for (size_t i = 0; i < grads.size(); ++i) spans.push_back({grads[i], s.counts[i] * sizeof(T), gradNames[i].c_str()});
  spans.push_back({dX, nX * sizeof(T), "dX"});
  spans.push_back({ws, nWs * sizeof(T), "workspace"});
  requireDisjoint(env, spans.data(), spans.size(), firstOutput);

  std::vector<int32_t> labels(size_t(s.B));  // read once: y may be shared with another thread
  copyLabels(env, y, size_t(s.B), s.C, labels.data());
  requireFinite(env, "X", X, nX);
  for (size_t i = 0; i < params.size(); ++i) requireFinite(env, s.names[i].c_str(), params[i], s.counts[i]);

  double loss = 0;
  const Step<T> a{int(s.B), X, labels.data(), params.data(), grads.data(), dX, red, accumulate, ws};
  lastStatus(env) = torchForwardBackward<T>(s.net(), a, &loss);
  return Napi::Number::New(env, lastStatus(env).stage == Stage::Ok ? loss : std::nan(""));
}

template <typename T>
Napi::Value sequentialForwardT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StackShape s = readStackShape(info, 1, 2);
  const std::vector<Napi::Value> pv = arrayArg(info, 4, "params", 2 * s.linears, paramsCount(s));

  const size_t nX = size_t(s.B) * size_t(s.D), nOut = size_t(s.B) * size_t(s.C);
  const T* X = floatValue<T>(env, info[0], "X", nX, "[" + std::to_string(s.B) + ", " + std::to_string(s.D) + "]");
  std::vector<const T*> params;
  for (size_t i = 0; i < pv.size(); ++i) params.push_back(floatValue<T>(env, pv[i], s.names[i], s.counts[i], s.shapes[i]));
  T* logits = floatValue<T>(env, argOrUndefined(info, 5), "logits", nOut,
                            "[" + std::to_string(s.B) + ", " + std::to_string(s.C) + "]");

  std::vector<Span> spans = {{X, nX * sizeof(T), "X"}};
  for (size_t i = 0; i < params.size(); ++i) spans.push_back({params[i], s.counts[i] * sizeof(T), s.names[i].c_str()});
  const size_t firstOutput = spans.size();
  spans.push_back({logits, nOut * sizeof(T), "logits"});
  requireDisjoint(env, spans.data(), spans.size(), firstOutput);

  requireFinite(env, "X", X, nX);
  for (size_t i = 0; i < params.size(); ++i) requireFinite(env, s.names[i].c_str(), params[i], s.counts[i]);

  lastStatus(env) = torchForward<T>(s.net(), int(s.B), X, params.data(), logits);
  return Napi::Boolean::New(env, lastStatus(env).stage == Stage::Ok);
}

template <typename T>
Napi::Value sequentialLayoutT(const Napi::CallbackInfo& info) {
  const StackShape s = readStackShape(info, 1, 2);
  std::vector<uint64_t> at(s.kinds.size());
  const Layout l = s.layout<T>(info.Env(), at.data());
  at.insert(at.end(), {l.probs, l.total});
  auto out = Napi::Float64Array::New(info.Env(), at.size());
  for (size_t i = 0; i < at.size(); ++i) out[i] = double(at[i]);
  return out;
}

// Each export of the stack, run for X's dtype inside guarded.
template <Napi::Value (*F64)(const Napi::CallbackInfo&), Napi::Value (*F32)(const Napi::CallbackInfo&)>
Napi::Value byDtype(const Napi::CallbackInfo& info) {
  return guarded(info, [](const Napi::CallbackInfo& i) { return isFloat32Arg(i, 0, "X") ? F32(i) : F64(i); });
}

Napi::Value SequentialStatus(const Napi::CallbackInfo& info) {
  const StackStatus st = lastStatus(info.Env());
  auto out = Napi::Array::New(info.Env(), 2);
  out[uint32_t(0)] = int(st.stage);
  out[uint32_t(1)] = st.layer;
  return out;
}

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
