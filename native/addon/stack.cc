// Node-API glue of the stack executor (native/core/stack.h): a prepared net is an External that
// owns its checked description; each step reads and checks its tensors (dtype, length, aliasing;
// the labels are copied and range-checked by the core) and runs forward, loss and backward in one
// call. Export names and argument order equal lib/binding.ts.
#include "stack.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../common/checks.h"
#include "../core/stack.h"

namespace hg {
namespace {

// What stackPrepare checked once, and the last call's outcome (read by stackStatus). Per handle,
// so per environment: nothing is shared between worker threads.
struct PreparedStack {
  std::vector<LayerKind> kinds;
  std::vector<int32_t> widths;
  bool f32 = false;
  std::vector<size_t> counts;      // elements of W1, b1, W2, b2, …
  std::vector<std::string> names;  // W1, b1, …, then dW1, db1, …
  // Per-call scratch, sized once: a step allocates nothing. No JS runs during a call, so no
  // second call can reuse them before the first is done.
  std::vector<double*> tensors64;  // params, then grads (the vector of the handle's dtype)
  std::vector<float*> tensors32;
  std::vector<Span> spans;
  StackStatus status{Stage::Ok, 0};
  Net net() const { return {kinds.data(), widths.data(), int(kinds.size())}; }
  size_t params() const { return counts.size(); }
  template <typename T> std::vector<T*>& tensors();
};
template <> std::vector<double*>& PreparedStack::tensors<double>() { return tensors64; }
template <> std::vector<float*>& PreparedStack::tensors<float>() { return tensors32; }

// Tags the Externals made here, so that any other External is refused as a handle.
constexpr napi_type_tag kStackTag = {0x68616e6467726164ULL, 0x737461636b6e6574ULL};

PreparedStack& handleArg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ours = false;
  if (info.Length() < 1 || !info[0].IsExternal() ||
      napi_check_object_type_tag(env, info[0], &kStackTag, &ours) != napi_ok || !ours)
    failArg(env, true, "a handle from stackPrepare", "handle", describeValue(env, argOrUndefined(info, 0)));
  return *info[0].As<Napi::External<PreparedStack>>().Data();
}

// stackPrepare(kinds, widths, float32): the description, checked once.
Napi::Value StackPrepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = std::make_unique<PreparedStack>();
  const std::vector<int32_t> codes = int32Copy(info, 0, "kinds");
  s->widths = int32Copy(info, 1, "widths");
  s->f32 = boolArg(info, 2, "float32");
  const size_t L = codes.size();
  if (L == 0) failArg(env, false, "at least one layer", "kinds", "Int32Array of length 0");
  if (s->widths.size() != L + 1)
    failArg(env, false, std::to_string(L + 1) + " elements (one more than kinds)", "widths",
            "Int32Array of length " + std::to_string(s->widths.size()));
  for (size_t i = 0; i <= L; ++i)
    if (s->widths[i] < 1)
      failArg(env, false, "a positive width", "widths[" + std::to_string(i) + "]", std::to_string(s->widths[i]));
  for (size_t i = 0; i < L; ++i) {
    if (codes[i] < 0 || codes[i] >= kLayerKinds)
      failArg(env, false, "layer codes in [0, 4) (0 Linear, 1 ReLU, 2 Sigmoid, 3 Tanh)", "kinds",
              std::to_string(codes[i]) + " at index " + std::to_string(i));
    s->kinds.push_back(LayerKind(codes[i]));
    const std::string w = "widths[" + std::to_string(i + 1) + "]";
    if (s->kinds[i] != LayerKind::Linear) {
      if (s->widths[i + 1] != s->widths[i])
        failArg(env, false, std::to_string(s->widths[i]) + " (an activation keeps the width of widths[" + std::to_string(i) + "])",
                w, std::to_string(s->widths[i + 1]));
      continue;
    }
    const std::string k = std::to_string(s->counts.size() / 2 + 1);
    s->counts.push_back(elements(env, ("W" + k).c_str(), size_t(s->widths[i]), size_t(s->widths[i + 1])));
    s->counts.push_back(size_t(s->widths[i + 1]));
    s->names.push_back("W" + k);
    s->names.push_back("b" + k);
  }
  if (s->counts.empty()) failArg(env, false, "at least one Linear layer (code 0)", "kinds", "none");
  // Gradients are named as the caller passed them (opts.out of forwardBackward), so an aliasing
  // error here reads as the one lib/validate.ts gives on the other backends.
  for (size_t j = 0, n = s->counts.size(); j < n; ++j) s->names.push_back("out.d" + s->names[j]);
  if (s->f32) s->tensors32.resize(2 * s->params());
  else s->tensors64.resize(2 * s->params());
  s->spans.resize(4 + 2 * s->params());
  auto handle = Napi::External<PreparedStack>::New(env, s.release(), [](Napi::Env, PreparedStack* p) { delete p; });
  if (napi_type_tag_object(env, handle, &kStackTag) != napi_ok) throwType(env, "Expected a taggable handle");
  return handle;
}

// The workspace layout for B rows, or a RangeError when it cannot exist.
template <typename T>
Layout layoutArg(const Napi::CallbackInfo& info, const PreparedStack& s, int B, uint64_t* outputs) {
  Layout l;
  if (!stackLayout<T>(s.net(), uint64_t(B), outputs, &l))
    failArg(info.Env(), false, "a batch whose workspace fits in a typed array (2^32 − 1 elements)", "B", std::to_string(B));
  return l;
}

// stackLayout(handle, B) → [offset of each layer's output …, of probs, workspace length].
Napi::Value StackLayout(const Napi::CallbackInfo& info) {
  const PreparedStack& s = handleArg(info);
  const int B = dimArg(info, 1, "B");
  std::vector<uint64_t> at(s.kinds.size());
  const Layout l = s.f32 ? layoutArg<float>(info, s, B, at.data()) : layoutArg<double>(info, s, B, at.data());
  auto out = Napi::Float64Array::New(info.Env(), at.size() + 2);
  for (size_t i = 0; i < at.size(); ++i) out[i] = double(at[i]);
  out[at.size()] = double(l.probs);
  out[at.size() + 1] = double(l.total);
  return out;
}

// The tensors shared by both steps: ws, X and the params (first at argument `first`).
template <typename T>
struct Common {
  T* ws;
  const T* X;
  size_t nX, nWs;
};

template <typename T>
Common<T> readCommon(const Napi::CallbackInfo& info, PreparedStack& s, int B, size_t xArg, size_t first) {
  const Layout l = layoutArg<T>(info, s, B, nullptr);
  Common<T> c{nullptr, nullptr, size_t(B) * size_t(s.widths[0]), size_t(l.total)};  // B·D ≤ l.total
  c.ws = typedArg<T>(info, 1, "workspace", c.nWs);
  c.X = typedArg<T>(info, xArg, "X", c.nX);
  for (size_t j = 0; j < s.params(); ++j) {
    s.tensors<T>()[j] = typedArg<T>(info, first + j, s.names[j].c_str(), s.counts[j]);
    s.spans[j] = {s.tensors<T>()[j], s.counts[j] * sizeof(T), s.names[j].c_str()};
  }
  return c;
}

// stackForwardBackward(handle, ws, X, y, B, dX|null, reduction, accumulate, ...params, ...grads)
template <typename T>
Napi::Value forwardBackwardT(const Napi::CallbackInfo& info, PreparedStack& s) {
  Napi::Env env = info.Env();
  const int B = dimArg(info, 4, "B");
  const auto red = static_cast<Reduction>(enumArg(info, 6, "reduction", 2));
  const bool accumulate = boolArg(info, 7, "accumulate");
  const Common<T> c = readCommon<T>(info, s, B, 2, 8);
  const int32_t* y = typedArg<int32_t>(info, 3, "y", size_t(B));
  T* dX = optionalTypedArg<T>(info, 5, "out.dX", c.nX);
  const size_t P = s.params();
  for (size_t j = 0; j < P; ++j) {
    s.tensors<T>()[P + j] = typedArg<T>(info, 8 + P + j, s.names[P + j].c_str(), s.counts[j]);
    s.spans[P + 4 + j] = {s.tensors<T>()[P + j], s.counts[j] * sizeof(T), s.names[P + j].c_str()};
  }
  s.spans[P] = {c.X, c.nX * sizeof(T), "X"};
  s.spans[P + 1] = {y, size_t(B) * sizeof(int32_t), "y"};
  s.spans[P + 2] = {c.ws, c.nWs * sizeof(T), "workspace"};
  s.spans[P + 3] = {dX, c.nX * sizeof(T), "out.dX"};
  requireDisjoint(env, s.spans.data(), s.spans.size(), P + 2);

  T** t = s.tensors<T>().data();
  const Step<T> a{B, c.X, y, t, t + P, dX, red, accumulate, c.ws};
  double loss = 0;
  s.status = stackForwardBackward(s.net(), a, &loss);
  if (s.status.stage == Stage::Labels) {
    Layout l;
    stackLayout<T>(s.net(), uint64_t(B), static_cast<uint64_t*>(nullptr), &l);
    const int32_t* copy = reinterpret_cast<const int32_t*>(c.ws + l.labels);
    throwLabel(env, copy[s.status.layer], size_t(s.status.layer), s.widths.back());
  }
  return Napi::Number::New(env, s.status.stage == Stage::Ok ? loss : std::nan(""));
}

// stackForward(handle, ws, X, B, ...params) → true, or false with stackStatus set.
template <typename T>
Napi::Value forwardT(const Napi::CallbackInfo& info, PreparedStack& s) {
  const int B = dimArg(info, 3, "B");
  const Common<T> c = readCommon<T>(info, s, B, 2, 4);
  const size_t P = s.params();
  s.spans[P] = {c.X, c.nX * sizeof(T), "X"};
  s.spans[P + 1] = {c.ws, c.nWs * sizeof(T), "workspace"};
  requireDisjoint(info.Env(), s.spans.data(), P + 2, P + 1);
  s.status = stackForward(s.net(), B, c.X, s.tensors<T>().data(), c.ws);
  return Napi::Boolean::New(info.Env(), s.status.stage == Stage::Ok);
}

Napi::Value StackForwardBackward(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  return s.f32 ? forwardBackwardT<float>(info, s) : forwardBackwardT<double>(info, s);
}

Napi::Value StackForward(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  return s.f32 ? forwardT<float>(info, s) : forwardT<double>(info, s);
}

// stackStatus(handle) → [stage, layer] of the last step on this handle.
Napi::Value LastStatus(const Napi::CallbackInfo& info) {
  const PreparedStack& s = handleArg(info);
  auto out = Napi::Array::New(info.Env(), 2);
  out[uint32_t(0)] = int(s.status.stage);
  out[uint32_t(1)] = s.status.layer;
  return out;
}

}  // namespace

void addStackExports(Napi::Env env, Napi::Object exports) {
  exports.Set("stackPrepare", Napi::Function::New(env, StackPrepare, "stackPrepare"));
  exports.Set("stackLayout", Napi::Function::New(env, StackLayout, "stackLayout"));
  exports.Set("stackForwardBackward", Napi::Function::New(env, StackForwardBackward, "stackForwardBackward"));
  exports.Set("stackForward", Napi::Function::New(env, StackForward, "stackForward"));
  exports.Set("stackStatus", Napi::Function::New(env, LastStatus, "stackStatus"));
}

}  // namespace hg
