// Node-API glue of the stack executor (native/core/stack.h): a prepared net is an External that
// owns its checked description; each step reads and checks its tensors (dtype, length, aliasing;
// the labels are copied and range-checked by the core) and runs forward, loss and backward in one
// call. Export names and argument order equal lib/binding.ts.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/checks.h"
#include "../core/exact.h"
#include "../core/stack.h"

namespace hg {
namespace {

// The exact mode refused here (exact::refusal): an Error with code ERR_EXACT_UNAVAILABLE, which
// lib/engine/native.ts rethrows as the HandgradError of that code — a state of this process (the
// CPU's kernels, OpenBLAS's thread count), not a bad argument.
[[noreturn]] void throwExactRefusal(Napi::Env env, const std::string& why) {
  Napi::Error e = Napi::Error::New(env, why);
  e.Set("code", Napi::String::New(env, "ERR_EXACT_UNAVAILABLE"));
  throw e;
}

// Params, then grads, as pointers of the handle's dtype (the other vector stays empty).
struct Tensors {
  std::vector<double*> t64;
  std::vector<float*> t32;
  template <typename T>
  std::vector<T*>& tensors() {
    if constexpr (std::is_same_v<T, float>) return t32;
    else return t64;
  }
};

// What stackPrepare checked once, and the last call's outcome (read by stackStatus). Per handle,
// so per environment: nothing is shared between worker threads. The tensors and spans are
// per-call scratch, sized once: no JS runs during a call, so no second call reuses them early.
struct PreparedStack : StackArgs, Tensors {
  bool f32 = false;
  bool exact = false;  // stackExact: steps run native/core/exact.h (LibTorch's bits)
  std::vector<Span> spans;
  StackStatus status{Stage::Ok, 0};
};

// Tags on the Externals made here, so that any other External is refused as a handle.
constexpr napi_type_tag kStackTag = {0x68616e6467726164ULL, 0x737461636b6e6574ULL};
constexpr napi_type_tag kBoundTag = {0x68616e6467726164ULL, 0x626f756e64737470ULL};

template <typename H>
Napi::Value newTagged(Napi::Env env, std::unique_ptr<H> p, const napi_type_tag& tag, const char* what) {
  auto e = Napi::External<H>::New(env, p.release(), [](Napi::Env, H* q) { delete q; });
  if (napi_type_tag_object(env, e, &tag) != napi_ok) throwType(env, std::string("Expected a taggable ") + what);
  return e;
}

template <typename H>
H& tagged(Napi::Env env, napi_value v, const napi_type_tag& tag, const char* what, const char* name) {
  bool ours = false;
  void* data = nullptr;
  // An External first (that check sets no pending exception), then ours by its tag.
  if (napi_get_value_external(env, v, &data) != napi_ok ||
      napi_check_object_type_tag(env, v, &tag, &ours) != napi_ok || !ours)
    failArg(env, true, what, name, describeValue(env, Napi::Value(env, v)));
  return *static_cast<H*>(data);
}

PreparedStack& handleArg(const Napi::CallbackInfo& info) {
  return tagged<PreparedStack>(info.Env(), argOrUndefined(info, 0), kStackTag, "a handle from stackPrepare", "handle");
}

// stackPrepare(kinds, widths, float32): the description, checked once. Gradients are named as the
// caller passed them (opts.out of forwardBackward), so an aliasing error reads as lib/validate.ts's.
Napi::Value StackPrepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = std::make_unique<PreparedStack>();
  readStackArgs(info, 0, "out.d", s.get());
  s->f32 = arg<boolValue>(info, 2, "float32");
  if (s->f32) s->t32.resize(2 * s->params());
  else s->t64.resize(2 * s->params());
  s->spans.resize(4 + 2 * s->params());
  return newTagged(env, std::move(s), kStackTag, "handle");
}

// stackLayout(handle, B) → [offset of each layer's output …, of probs, workspace length].
Napi::Value StackLayout(const Napi::CallbackInfo& info) {
  const PreparedStack& s = handleArg(info);
  const int B = arg<dimValue>(info, 1, "B");
  return s.f32 ? layoutValue<float>(info.Env(), s, B) : layoutValue<double>(info.Env(), s, B);
}

// Tensors j in [from, to) (params, then grads) from argument first + j into t[j], and their spans:
// a param's at spans[j], a grad's at spans[j + gap], after the other tensors between them.
template <typename T>
void readTensors(const Napi::CallbackInfo& info, const StackArgs& s, T** t, Span* spans, size_t first, size_t from,
                 size_t to, size_t gap) {
  for (size_t j = from; j < to; ++j) {
    const size_t n = s.counts[j % s.params()];
    t[j] = arg<typedValue<T>>(info, first + j, s.names[j].c_str(), n);
    spans[j < s.params() ? j : j + gap] = {t[j], n * sizeof(T), s.names[j].c_str()};
  }
}

// The tensors shared by both steps: ws (at the layout for B; its span at spans[wsAt]), X (at spans[P])
// and the params (first at argument `first`).
template <typename T>
struct Common {
  T* ws;
  const T* X;
  size_t nX, nWs;  // B·D ≤ the workspace's length
};

template <typename T>
Common<T> readCommon(const Napi::CallbackInfo& info, PreparedStack& s, int B, size_t xArg, size_t first, size_t wsAt) {
  Common<T> c{nullptr, nullptr, size_t(B) * size_t(s.widths[0]), size_t(s.layout<T>(info.Env(), B, nullptr).total)};
  c.ws = arg<typedValue<T>>(info, 1, "workspace", c.nWs);
  c.X = arg<typedValue<T>>(info, xArg, "X", c.nX);
  readTensors<T>(info, s, s.tensors<T>().data(), s.spans.data(), first, 0, s.params(), 0);
  s.spans[s.params()] = {c.X, c.nX * sizeof(T), "X"};
  s.spans[wsAt] = {c.ws, c.nWs * sizeof(T), "workspace"};
  return c;
}

// Step::xPrivate for X: whether no other thread can rewrite it (not a SharedArrayBuffer), asked of
// Node-API only where the core would use the answer (inputScanPays: a scan of X proves dW1 finite).
inline bool xPrivate(napi_env env, const PreparedStack& s, int B, napi_value X) {
  return inputScanPays(s.net(), uint64_t(B)) && privateMemory(env, X);
}

// One step on the core: a label outside [0, C) (the core's copy, in ws) throws; any other failure is NaN.
template <typename T>
double step(Napi::Env env, PreparedStack& s, const Step<T>& a) {
  double loss = 0;
  if (s.exact) {
    const std::string why = exact::refusal();
    if (!why.empty()) throwExactRefusal(env, why);
    if (const char* why = exactUnsupportedLoss(a.loss)) throwType(env, why);
  }
  s.status = s.exact ? exactForwardBackward(s.net(), a, &loss) : stackForwardBackward(s.net(), a, &loss);
  if (s.status.stage == Stage::Labels) {
    const auto* copy = reinterpret_cast<const int32_t*>(a.ws + s.layout<T>(env, a.B, nullptr).labels);
    throwLabel(env, copy[s.status.layer], size_t(s.status.layer), s.widths.back());
  }
  if (s.status.stage == Stage::EmptyMean) throwEmptyMean(env, s.status.layer, a.loss.ignoreIndex);
  return s.status.stage == Stage::Ok ? loss : std::nan("");
}

// stackForwardBackward(handle, ws, X, y, B, dX|null, reduction, accumulate, ...params, ...grads):
// the default loss (reduction 0 mean or 1 sum). stackForwardBackwardLoss(handle, ws, X, y|null, B,
// dX|null, accumulate, reduction, weight|null, ignoreIndex, labelSmoothing, targets|null,
// gradOutput|null, ...params, ...grads): every option of F.cross_entropy (checks.h readLossSpec).
template <typename T>
Napi::Value forwardBackwardT(const Napi::CallbackInfo& info, PreparedStack& s, bool options) {
  Napi::Env env = info.Env();
  const int B = arg<dimValue>(info, 4, "B");
  const size_t first = options ? 13 : 8, C = size_t(s.widths.back());
  Span lossSpans[3];
  LossSpec<T> loss;
  if (options) loss = readLossSpec<T>(info, {7, 8, 9, 10, 11, 12}, size_t(B), C, lossSpans);
  else loss.reduction = static_cast<Reduction>(arg<enumValue>(info, 6, "reduction", 2));
  const bool accumulate = arg<boolValue>(info, options ? 6 : 7, "accumulate");
  const Common<T> c = readCommon<T>(info, s, B, 2, first, s.params() + 2);
  const int32_t* y = loss.targets ? nullptr : arg<typedValue<int32_t>>(info, 3, "y", size_t(B));
  const Napi::Value dXArg = argOrUndefined(info, 5);  // null/undefined: dX not asked for
  T* dX = dXArg.IsNull() || dXArg.IsUndefined() ? nullptr : arg<typedValue<T>>(info, 5, "out.dX", c.nX);
  const size_t P = s.params();
  T** t = s.tensors<T>().data();
  readTensors<T>(info, s, t, s.spans.data(), first, P, 2 * P, 4);
  s.spans[P + 1] = {y, y ? size_t(B) * sizeof(int32_t) : 0, "y"};
  s.spans[P + 3] = {dX, c.nX * sizeof(T), "out.dX"};
  requireDisjoint(env, s.spans.data(), s.spans.size(), P + 2);
  if (options) {
    // The loss's arrays against every output: the core copies them into ws first, then writes.
    std::vector<Span> v(lossSpans, lossSpans + 3);
    v.insert(v.end(), s.spans.begin() + long(P + 2), s.spans.end());
    requireDisjoint(env, v.data(), v.size(), 3, 3);
  }
  return Napi::Number::New(env, step(env, s, Step<T>{B, c.X, y, t, t + P, dX, loss, accumulate, c.ws, xPrivate(env, s, B, info[2])}));
}

// stackForward(handle, ws, X, B, ...params) → true, or false with stackStatus set.
template <typename T>
Napi::Value forwardT(const Napi::CallbackInfo& info, PreparedStack& s) {
  const int B = arg<dimValue>(info, 3, "B");
  const Common<T> c = readCommon<T>(info, s, B, 2, 4, s.params() + 1);
  const size_t P = s.params();
  requireDisjoint(info.Env(), s.spans.data(), P + 2, P + 1);
  if (s.exact) {
    const std::string why = exact::refusal();
    if (!why.empty()) throwExactRefusal(info.Env(), why);
  }
  s.status = s.exact ? exactForward(s.net(), B, c.X, s.tensors<T>().data(), c.ws)
                     : stackForward(s.net(), B, c.X, s.tensors<T>().data(), c.ws);
  return Napi::Boolean::New(info.Env(), s.status.stage == Stage::Ok);
}

Napi::Value StackForwardBackward(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  return s.f32 ? forwardBackwardT<float>(info, s, false) : forwardBackwardT<double>(info, s, false);
}

Napi::Value StackForwardBackwardLoss(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  return s.f32 ? forwardBackwardT<float>(info, s, true) : forwardBackwardT<double>(info, s, true);
}

Napi::Value StackForward(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  return s.f32 ? forwardT<float>(info, s) : forwardT<double>(info, s);
}

// ---- The prepared step: tensors registered once ---------------------------------------------
// stackBind(handle, ws, dX|null, ...params, ...grads) checks what stays the same from step to
// step once (dtypes, lengths, disjointness) and pins it; stackRun(bound, X, y, B, reduction,
// accumulate) then reads only X and y. Its data pointers stay valid while the bound buffers keep
// their bytes: a strong reference to each view keeps it from the GC (released by the finalizer),
// and reading each view's data once at bind moved a small on-heap array's bytes off the heap,
// where the GC never moves them. A transfer (detach) or a shrink of a resizable ArrayBuffer is
// what no reference can stop: the caller compares each bound view's byteLength with the bound
// one before every run, in the same synchronous turn (lib/engine/native.ts), and binds again.
struct BoundStep : Tensors {
  napi_env env;
  PreparedStack* s;             // kept alive by refs[0]
  std::vector<napi_ref> refs;   // the handle, then each bound view
  void* ws = nullptr;
  void* dX = nullptr;           // null: no input gradient
  size_t nWs = 0, nDX = 0;      // elements
  std::vector<Span> spans;      // X, y (set by each run), then ws, dX, grads: the outputs they must not overlap
  int lastB = 0;                // the batch size whose layout fits ws was checked for
  ~BoundStep() {
    for (napi_ref r : refs) napi_delete_reference(env, r);
  }
};

void pin(BoundStep& k, napi_value v) {
  napi_ref r;
  if (napi_create_reference(k.env, v, 1, &r) != napi_ok)
    throwType(Napi::Env(k.env), "Expected a value that can be referenced");
  k.refs.push_back(r);
}

template <typename T>
TypedInfo anyLength(Napi::Env env, const Napi::Value& v, const char* name) {
  TypedInfo t;
  if (!typedInfo(env, v, &t) || t.kind != DtypeOf<T>::kind)
    failArg(env, true, DtypeOf<T>::name, name, describeValue(env, v));
  return t;
}

template <typename T>
void bindT(const Napi::CallbackInfo& info, PreparedStack& s, BoundStep& k) {
  Napi::Env env = info.Env();
  const size_t P = s.params();
  const int D = s.widths[0];
  auto& t = k.tensors<T>();
  t.resize(2 * P);
  std::vector<Span> spans(P + 2 + P);  // params (inputs), then ws, dX, grads (outputs)
  readTensors<T>(info, s, t.data(), spans.data(), 3, 0, 2 * P, 2);
  const TypedInfo w = anyLength<T>(env, argOrUndefined(info, 1), "workspace");  // the run checks its B's layout
  k.nWs = w.length;
  k.ws = w.data;
  const Napi::Value dXArg = argOrUndefined(info, 2);
  if (!dXArg.IsNull() && !dXArg.IsUndefined()) {
    const TypedInfo x = anyLength<T>(env, dXArg, "out.dX");
    if (x.length == 0 || x.length % size_t(D) != 0)
      failArg(env, false, "a multiple of " + std::to_string(D) + " elements ([B, D])", "out.dX",
              std::to_string(x.length));
    k.nDX = x.length;
    k.dX = x.data;
  }
  spans[P] = {k.ws, k.nWs * sizeof(T), "workspace"};
  spans[P + 1] = {k.dX, k.nDX * sizeof(T), "out.dX"};
  requireDisjoint(env, spans.data(), spans.size(), P);
  k.spans.resize(2);
  k.spans.insert(k.spans.end(), spans.begin() + P, spans.end());
  for (size_t i = 1; i < 3 + 2 * P; ++i)
    if (i != 2 || k.dX) pin(k, info[i]);
}

Napi::Value StackBind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PreparedStack& s = handleArg(info);
  auto k = std::make_unique<BoundStep>();
  k->env = env;
  k->s = &s;
  pin(*k, info[0]);
  if (s.f32) bindT<float>(info, s, *k);
  else bindT<double>(info, s, *k);
  return newTagged(env, std::move(k), kBoundTag, "bound step");
}

// stackRun(bound, X, y, B, reduction, accumulate) → the loss, or NaN with stackStatus(handle) set.
// Six arguments read with napi_get_cb_info into an array on the stack; X and y are the only
// typed arrays read, their lengths checked against B and their bytes against the bound outputs.
template <typename T>
napi_value runT(Napi::Env env, const napi_value* argv, BoundStep& k) {
  PreparedStack& s = *k.s;
  const int B = dimValue(env, argv[3], "B");
  const auto red = static_cast<Reduction>(enumValue(env, argv[4], "reduction", 2));
  const bool accumulate = boolValue(env, argv[5], "accumulate");
  const size_t nX = size_t(B) * size_t(s.widths[0]);
  const T* X = typedValue<T>(env, argv[1], "X", nX);
  const int32_t* y = typedValue<int32_t>(env, argv[2], "y", size_t(B));
  if (B != k.lastB) {
    if (k.dX && nX != k.nDX)
      failArg(env, false, std::to_string(k.nDX / size_t(s.widths[0])) + " (the rows of the bound out.dX)", "B",
              std::to_string(B));
    const Layout l = s.layout<T>(env, B, nullptr);
    if (l.total > k.nWs)
      failArg(env, false, "a batch whose workspace fits the bound one (" + std::to_string(k.nWs) + " elements)", "B",
              std::to_string(B) + " (" + std::to_string(l.total) + " elements)");
    k.lastB = B;
  }
  k.spans[0] = {X, nX * sizeof(T), "X"};
  k.spans[1] = {y, size_t(B) * sizeof(int32_t), "y"};
  requireDisjoint(env, k.spans.data(), k.spans.size(), 2, 2);
  T** t = k.tensors<T>().data();
  LossSpec<T> loss;
  loss.reduction = red;
  const Step<T> a{B, X, y, t, t + s.params(), static_cast<T*>(k.dX), loss, accumulate, static_cast<T*>(k.ws), xPrivate(env, s, B, argv[1])};
  napi_value result;
  napi_create_double(env, step(env, s, a), &result);
  return result;
}

napi_value StackRun(napi_env raw, napi_callback_info cb) {
  Napi::Env env(raw);
  try {
    size_t argc = 6;
    napi_value argv[6];  // past the last argument: undefined
    if (napi_get_cb_info(raw, cb, &argc, argv, nullptr, nullptr) != napi_ok) throwType(env, "Expected arguments");
    BoundStep& k = tagged<BoundStep>(env, argv[0], kBoundTag, "a bound step from stackBind", "bound");
    return k.s->f32 ? runT<float>(env, argv, k) : runT<double>(env, argv, k);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  }
}

// stackExact(handle, on) → [the ATen CPU capability reproduced ("AVX2", "DEFAULT"), OpenBLAS's
// kernel family]: what the bits depend on. The handle's steps run the exact mode from now on (or no
// longer); an Error saying why when it cannot reproduce LibTorch here (exact::refusal), then and
// at every step.
Napi::Value StackExact(const Napi::CallbackInfo& info) {
  PreparedStack& s = handleArg(info);
  const bool on = arg<boolValue>(info, 1, "exact");
  const std::string why = on ? exact::refusal() : std::string();
  if (!why.empty()) throwExactRefusal(info.Env(), why);
  s.exact = on;
  Napi::Array machine = Napi::Array::New(info.Env(), 2);
  machine.Set(uint32_t(0), exact::capabilityName(exact::atenCapability()));
  machine.Set(uint32_t(1), openblas_get_corename());
  return machine;
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
  exports.Set("stackForwardBackwardLoss",
              Napi::Function::New(env, StackForwardBackwardLoss, "stackForwardBackwardLoss"));
  exports.Set("stackForward", Napi::Function::New(env, StackForward, "stackForward"));
  exports.Set("stackStatus", Napi::Function::New(env, LastStatus, "stackStatus"));
  exports.Set("stackExact", Napi::Function::New(env, StackExact, "stackExact"));
  exports.Set("stackBind", Napi::Function::New(env, StackBind, "stackBind"));
  napi_value run;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, "stackRun", NAPI_AUTO_LENGTH, StackRun, nullptr, &run));
  exports.Set("stackRun", run);
}

}  // namespace hg
