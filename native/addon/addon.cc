// Node-API glue of the core addon: unpack and check arguments, run the C++ core, return.
// Inputs are read in place from the caller's typed arrays (no copies); outputs are written into
// buffers the caller allocated, so nothing here allocates JS objects on the hot path.
// Export names equal lib/binding.ts.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "../common/checks.h"
#include "../core/data.h"
#include "../core/optimizer.h"
#include "../core/stack.h"

namespace hg {

void addStackExports(Napi::Env env, Napi::Object exports);  // stack.cc: stackPrepare, stackLayout, …

namespace {

// gemm(transA, transB, M, N, K, alpha, A, B, beta, C): C = alpha·op(A)·op(B) + beta·C, row-major.
// Exposed so the benchmark measures this machine's BLAS peak through the very same library.
template <typename T>
Napi::Value gemmT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool tA = arg<boolValue>(info, 0, "transA"), tB = arg<boolValue>(info, 1, "transB");
  const int M = arg<dimValue>(info, 2, "M"), N = arg<dimValue>(info, 3, "N"), K = arg<dimValue>(info, 4, "K");
  const T alpha = T(arg<numberValue>(info, 5, "alpha")), beta = T(arg<numberValue>(info, 8, "beta"));
  const size_t nA = elements(env, "A", M, K), nB = elements(env, "B", K, N), nC = elements(env, "C", M, N);
  const T* A = arg<typedValue<T>>(info, 6, "A", nA);
  const T* B = arg<typedValue<T>>(info, 7, "B", nB);
  T* C = arg<typedValue<T>>(info, 9, "C", nC);
  const Span spans[] = {{A, nA * sizeof(T), "A"}, {B, nB * sizeof(T), "B"}, {C, nC * sizeof(T), "C"}};
  requireDisjoint(env, spans, 3, 2);
  gemm(tA, tB, M, N, K, alpha, A, tA ? M : K, B, tB ? K : N, beta, C, N);
  return env.Undefined();
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return dispatchFloat(info, 6, "A", [&](auto t) { return gemmT<decltype(t)>(info); });
}

// optimizerUpdate(W, g, m|null, v|null, kind, lr, t, momentum, beta1, beta2, epsilon, weightDecay
//                 [, dampening[, vmax|null[, savedW, savedM|null, savedV|null, savedVmax|null]]]): one
// Trainer step on one tensor, in place; with savedW, the values before the step are copied into the
// saved buffers (each the tensor's length, one for each slot the step has) as they are overwritten. m is needed
// from momentum on, v for Adam/AdamW; vmax (AMSGrad's largest v) turns AMSGrad on; dampening is
// SGD's (default 0). Returns whether every value written is finite (the Trainer undoes the step
// when not).
template <typename T>
Napi::Value optimizerUpdateT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto kind = static_cast<Optimizer>(arg<enumValue>(info, 4, "kind", 5));
  double nums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const char* names[] = {"lr", "t", "momentum", "beta1", "beta2", "epsilon", "weightDecay", "dampening"};
  const size_t given = info.Length() > 12 && !info[12].IsUndefined() ? 8 : 7;
  for (size_t k = 0; k < given; ++k) {
    nums[k] = arg<numberValue>(info, 5 + k, names[k]);
    if (!std::isfinite(nums[k])) throwRange(env, std::string("Expected a finite number for ") + names[k]);
  }
  if (!(nums[1] >= 1)) throwRange(env, "Expected a step count t ≥ 1");
  if (!(nums[7] >= 0 && nums[7] <= 1)) throwRange(env, "Expected a number in [0, 1] for dampening");
  TypedInfo w;
  typedInfo(env, info[0], &w);  // dispatchFloat checked it is a float typed array
  const size_t n = w.length;
  T* W = arg<typedValue<T>>(info, 0, "W", n);
  const T* g = arg<typedValue<T>>(info, 1, "g", n);
  const bool needM = kind != Optimizer::Sgd, needV = kind == Optimizer::Adam || kind == Optimizer::AdamW;
  T* m = needM ? arg<typedValue<T>>(info, 2, "m", n) : nullptr;
  T* v = needV ? arg<typedValue<T>>(info, 3, "v", n) : nullptr;
  const bool amsgrad = needV && info.Length() > 13 && !info[13].IsNull() && !info[13].IsUndefined();
  T* vmax = amsgrad ? arg<typedValue<T>>(info, 13, "vmax", n) : nullptr;
  Saved<T> saved;
  const Napi::Value savedW = argOrUndefined(info, 14);
  if (!savedW.IsUndefined() && !savedW.IsNull()) {
    saved.W = arg<typedValue<T>>(info, 14, "savedW", n);
    if (m) saved.m = arg<typedValue<T>>(info, 15, "savedM", n);
    if (v) saved.v = arg<typedValue<T>>(info, 16, "savedV", n);
    if (vmax) saved.vmax = arg<typedValue<T>>(info, 17, "savedVmax", n);
  }
  const Span spans[] = {{g, n * sizeof(T), "g"}, {W, n * sizeof(T), "W"}, {m, n * sizeof(T), "m"}, {v, n * sizeof(T), "v"}, {vmax, n * sizeof(T), "vmax"},
                        {saved.W, n * sizeof(T), "savedW"}, {saved.m, n * sizeof(T), "savedM"}, {saved.v, n * sizeof(T), "savedV"}, {saved.vmax, n * sizeof(T), "savedVmax"}};
  requireDisjoint(env, spans, 9, 1);
  OptimizerConfig c{kind, nums[0], nums[2], nums[3], nums[4], nums[5], nums[6]};
  c.dampening = nums[7];
  c.amsgrad = amsgrad;
  const bool finite = optimizerUpdate(c, W, g, m, v, vmax, n, nums[1], saved, blasThreads());
  return Napi::Boolean::New(env, finite);
}

Napi::Value OptimizerUpdate(const Napi::CallbackInfo& info) {
  return dispatchFloat(info, 0, "W", [&](auto t) { return optimizerUpdateT<decltype(t)>(info); });
}

// gatherRows(X, D, order, start, B, Xb, y, yb): rows order[start … start + B) of X [N, D] into
// Xb [≥ B·D] and their labels from y [N] into yb [≥ B] — the Trainer's minibatch. One call a step
// where a view and a copy per row in JS cost ~1 µs a row (15% of an MNIST epoch). Each index is
// read once and checked before its row is copied.
template <typename T>
Napi::Value gatherRowsT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TypedInfo x, o, xb, y, yb;
  typedInfo(env, info[0], &x);  // dispatchFloat checked it is a float typed array
  const size_t D = size_t(arg<dimValue>(info, 1, "D")), B = size_t(arg<dimValue>(info, 4, "B"));
  const double start = arg<numberValue>(info, 3, "start");
  const auto need = [&](size_t i, napi_typedarray_type kind, const char* name, TypedInfo* t) {
    if (!typedInfo(env, info[i], t) || t->kind != kind || (t->data == nullptr && t->length != 0))
      failArg(env, true, kind == napi_int32_array ? "an Int32Array" : DtypeOf<T>::name, name, describeValue(env, info[i]));
  };
  need(2, napi_int32_array, "order", &o);
  need(5, DtypeOf<T>::kind, "Xb", &xb);
  need(6, napi_int32_array, "y", &y);
  need(7, napi_int32_array, "yb", &yb);
  const size_t N = x.length / D;
  if (x.length % D != 0 || y.length != N) throwRange(env, "Expected X of N·D elements and y of N");
  if (!(start >= 0 && std::floor(start) == start && start + double(B) <= double(o.length)))
    throwRange(env, "Expected start and B within order");
  if (xb.length < B * D || yb.length < B) throwRange(env, "Expected Xb of at least B·D elements and yb of B");
  const Span spans[] = {{x.data, x.length * sizeof(T), "X"}, {o.data, o.length * sizeof(int32_t), "order"}, {y.data, y.length * sizeof(int32_t), "y"},
                        {xb.data, B * D * sizeof(T), "Xb"}, {yb.data, B * sizeof(int32_t), "yb"}};
  requireDisjoint(env, spans, 5, 3);
  const T* X = static_cast<const T*>(x.data);
  const int32_t* order = static_cast<const int32_t*>(o.data) + size_t(start);
  T* Xb = static_cast<T*>(xb.data);
  const int32_t* labels = static_cast<const int32_t*>(y.data);
  int32_t* out = static_cast<int32_t*>(yb.data);
  // The indices are read once, into `rows`, a chunk at a time; each is checked there, and only the
  // checked copy is used (order may be shared memory another thread writes).
  constexpr size_t kChunk = 512;
  int32_t rows[kChunk];
  for (size_t b0 = 0; b0 < B; b0 += kChunk) {
    const size_t n = std::min(kChunk, B - b0);
    for (size_t b = 0; b < n; ++b) {
      const int32_t row = order[b0 + b];
      if (row < 0 || size_t(row) >= N) throwRange(env, "Expected a row index in [0, " + std::to_string(N) + ") but received " + std::to_string(row));
      rows[b] = row;
      out[b0 + b] = labels[row];
    }
    gatherRows(X, D, rows, n, Xb + b0 * D, blasThreads());
  }
  return env.Undefined();
}

Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  return dispatchFloat(info, 0, "X", [&](auto t) { return gatherRowsT<decltype(t)>(info); });
}

// allFinite(a) → whether every entry of the float typed array a is finite: fit's check of its
// whole X (lib/train/trainer.ts), on the pool's threads (an MNIST-size X is 188 MB). A false is
// followed there by the JS scan that names the first non-finite entry.
template <typename T>
Napi::Value allFiniteT(const Napi::CallbackInfo& info) {
  TypedInfo a;
  typedInfo(info.Env(), info[0], &a);  // dispatchFloat checked it is a float typed array
  return Napi::Boolean::New(info.Env(), a.length == 0 || allFiniteOn(static_cast<const T*>(a.data), a.length, blasThreads()));
}

Napi::Value AllFinite(const Napi::CallbackInfo& info) {
  return dispatchFloat(info, 0, "a", [&](auto t) { return allFiniteT<decltype(t)>(info); });
}

// atenCapability() → "DEFAULT", "AVX2" or "AVX512": LibTorch's CPU kernel set as ATen picks it here
// (exact::atenCapability, the detection optimizerUpdate and the exact mode use), read at every
// call; the TypeScript update rule fuses as those kernels do (lib/train/optimizer.ts).
Napi::Value AtenCapability(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), exact::capabilityName(exact::atenCapability()));
}

// blasKernels() → [OpenBLAS's kernel family, whether this CPU runs the SkylakeX family's AVX-512
// (F, BW, DQ, VL, which those kernels use)]. OpenBLAS 0.3.21 names AMD's AVX-512 CPUs (Zen 4, 5)
// "Zen" and runs its 256-bit Haswell kernels there; OPENBLAS_CORETYPE=SkylakeX, read when the
// library loads, picks the AVX-512 ones (README, "OpenBLAS's kernels"). Reported, never changed
// here: LibTorch shares the library, and PyTorch's bits (the exact mode) depend on the family.
Napi::Value BlasKernels(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(uint32_t(0), openblas_get_corename());
  out.Set(uint32_t(1), exact::capabilityUsable(exact::Capability::Avx512));
  return out;
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), blasThreads());
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  setBlasThreads(arg<dimValue>(info, 0, "threads"));
  return info.Env().Undefined();
}

// getSparseInput() → whether a mostly-zero X takes the sparse first layer; setSparseInput(on).
Napi::Value GetSparseInput(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), sparseInputOn());
}

Napi::Value SetSparseInput(const Napi::CallbackInfo& info) {
  sparseInputSwitch().store(arg<boolValue>(info, 0, "on"));
  return info.Env().Undefined();
}

// getKernelSet() → the instruction set the loops over a layer's values run ("portable", "avx2",
// "avx512"; kernels.h: the finite scans, the activations, sparse.h's products); setKernelSet(name),
// one of those, at most the CPU's widest: for tests of the loops a CPU without AVX-512 (or AVX2)
// runs, which give the same bits.
const char* const kKernelSetNames[] = {"portable", "avx2", "avx512"};

Napi::Value GetKernelSet(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kKernelSetNames[int(kernelSet())]);
}

Napi::Value SetKernelSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value v = argOrUndefined(info, 0);
  if (!v.IsString()) failArg(env, true, "\"portable\", \"avx2\" or \"avx512\"", "name", describeValue(env, v));
  const std::string name = v.As<Napi::String>().Utf8Value();
  const int best = int(kernelSetBest());
  for (int code = 0; code <= best; ++code) {
    if (name != kKernelSetNames[code]) continue;
    kernelSetSwitch().store(code);
    return env.Undefined();
  }
  throwRange(env, std::string("Expected a kernel set this CPU runs (\"portable\" … \"") + kKernelSetNames[best] + "\") but received \"" + name + "\"");
}

// getBlasLanes() → whether products run on BLAS lanes (lanes.h); setBlasLanes(on); blasLanes() →
// empty where lanes load here, else why not (setBlasLanes(true) is then refused in lib/threads.ts).
Napi::Value GetBlasLanes(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), lanes::lanesOn());
}

Napi::Value SetBlasLanes(const Napi::CallbackInfo& info) {
  lanes::lanesSwitch().store(arg<boolValue>(info, 0, "on"));
  return info.Env().Undefined();
}

Napi::Value BlasLanes(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), lanes::Lanes::get().why());
}

// The enum codes of the C++ core, the one source for lib/ (a test holds lib's copies to these).
Napi::Object codes(Napi::Env env) {
  const auto group = [&](std::initializer_list<std::pair<const char*, int>> entries) {
    Napi::Object o = Napi::Object::New(env);
    for (const auto& [name, code] : entries) o.Set(name, code);
    return o;
  };
  Napi::Object c = Napi::Object::New(env);
  c.Set("layer", group({{"linear", int(LayerKind::Linear)}, {"relu", int(LayerKind::Relu)},
                        {"sigmoid", int(LayerKind::Sigmoid)}, {"tanh", int(LayerKind::Tanh)}}));
  c.Set("reduction", group({{"mean", int(Reduction::Mean)}, {"sum", int(Reduction::Sum)}, {"none", int(Reduction::None)}}));
  c.Set("optimizer", group({{"sgd", int(Optimizer::Sgd)}, {"momentum", int(Optimizer::Momentum)},
                            {"nesterov", int(Optimizer::Nesterov)}, {"adam", int(Optimizer::Adam)},
                            {"adamw", int(Optimizer::AdamW)}}));
  c.Set("stage", group({{"ok", int(Stage::Ok)}, {"input", int(Stage::Input)}, {"forward", int(Stage::Forward)},
                        {"loss", int(Stage::Loss)}, {"grads", int(Stage::Grads)}}));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("optimizerUpdate", Napi::Function::New(env, OptimizerUpdate, "optimizerUpdate"));
  exports.Set("atenCapability", Napi::Function::New(env, AtenCapability, "atenCapability"));
  exports.Set("gatherRows", Napi::Function::New(env, GatherRows, "gatherRows"));
  exports.Set("allFinite", Napi::Function::New(env, AllFinite, "allFinite"));
  exports.Set("blasKernels", Napi::Function::New(env, BlasKernels, "blasKernels"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("blasLanes", Napi::Function::New(env, BlasLanes, "blasLanes"));
  exports.Set("getBlasLanes", Napi::Function::New(env, GetBlasLanes, "getBlasLanes"));
  exports.Set("setBlasLanes", Napi::Function::New(env, SetBlasLanes, "setBlasLanes"));
  exports.Set("getSparseInput", Napi::Function::New(env, GetSparseInput, "getSparseInput"));
  exports.Set("setSparseInput", Napi::Function::New(env, SetSparseInput, "setSparseInput"));
  exports.Set("getKernelSet", Napi::Function::New(env, GetKernelSet, "getKernelSet"));
  exports.Set("setKernelSet", Napi::Function::New(env, SetKernelSet, "setKernelSet"));
  exports.Set("codes", codes(env));
  addStackExports(env, exports);
  return exports;
}

}  // namespace
}  // namespace hg

// Node-API modules are context-aware: each worker_thread that loads this file gets its own
// exports, and no state is shared between them (the core holds none).
static Napi::Object InitHandgrad(Napi::Env env, Napi::Object exports) { return hg::Init(env, exports); }
NODE_API_MODULE(handgrad, InitHandgrad)
