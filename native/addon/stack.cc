// Node-API glue of the stack executor (native/core/stack.h): a prepared net is an External that
// owns its checked description; each step reads and checks its tensors (dtype, length, aliasing;
// the labels are copied and range-checked by the core) and runs forward, loss and backward in one
// call. Export names and argument order equal lib/binding.ts.
#include <napi.h>

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
struct PreparedStack : StackArgs {
  bool f32 = false;
  // Per-call scratch, sized once: a step allocates nothing. No JS runs during a call, so no
  // second call can reuse them before the first is done.
  std::vector<double*> tensors64;  // params, then grads (the vector of the handle's dtype)
  std::vector<float*> tensors32;
  std::vector<Span> spans;
  StackStatus status{Stage::Ok, 0};
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

// stackPrepare(kinds, widths, float32): the description, checked once. Gradients are named as the
// caller passed them (opts.out of forwardBackward), so an aliasing error reads as lib/validate.ts's.
Napi::Value StackPrepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = std::make_unique<PreparedStack>();
  readStackArgs(info, 0, "out.d", s.get());
  s->f32 = boolArg(info, 2, "float32");
  if (s->f32) s->tensors32.resize(2 * s->params());
  else s->tensors64.resize(2 * s->params());
  s->spans.resize(4 + 2 * s->params());
  auto handle = Napi::External<PreparedStack>::New(env, s.release(), [](Napi::Env, PreparedStack* p) { delete p; });
  if (napi_type_tag_object(env, handle, &kStackTag) != napi_ok) throwType(env, "Expected a taggable handle");
  return handle;
}

// stackLayout(handle, B) → [offset of each layer's output …, of probs, workspace length].
Napi::Value StackLayout(const Napi::CallbackInfo& info) {
  const PreparedStack& s = handleArg(info);
  const int B = dimArg(info, 1, "B");
  return s.f32 ? layoutValue<float>(info.Env(), s, B) : layoutValue<double>(info.Env(), s, B);
}

// The tensors shared by both steps: ws (at the layout for B), X and the params (first at argument `first`).
template <typename T>
struct Common {
  Layout l;
  T* ws;
  const T* X;
  size_t nX, nWs;  // B·D ≤ the workspace's length
};

template <typename T>
Common<T> readCommon(const Napi::CallbackInfo& info, PreparedStack& s, int B, size_t xArg, size_t first) {
  const Layout l = s.layout<T>(info.Env(), B, nullptr);
  Common<T> c{l, nullptr, nullptr, size_t(B) * size_t(s.widths[0]), size_t(l.total)};
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
  const Napi::Value dXArg = argOrUndefined(info, 5);  // null/undefined: dX not asked for
  T* dX = dXArg.IsNull() || dXArg.IsUndefined() ? nullptr : typedArg<T>(info, 5, "out.dX", c.nX);
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
    const int32_t* copy = reinterpret_cast<const int32_t*>(c.ws + c.l.labels);
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
  return statusValue(info.Env(), handleArg(info).status);
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
