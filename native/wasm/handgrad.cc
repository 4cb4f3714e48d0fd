// The WebAssembly entry points: the stack executor of native/core/stack.h, with hg::gemm from
// gemm.h (SIMD128) in place of OpenBLAS, and that GEMM alone. Pointers are byte offsets into the
// module's one linear memory; lib/engine/wasm.ts lays the tensors out there. Element counts are
// ints: the memory is at most 4 GiB, so a tensor has fewer than 2^31 entries.
#include "../core/stack.h"

#define HG_EXPORT(name) extern "C" __attribute__((export_name(#name), visibility("default")))

// ---- the stack executor (lib/engine/wasm.ts) -------------------------------------------------
// net points at kinds[layers] then widths[layers + 1] (int32); tensors at the pointers of W1, b1,
// …, then of dW1, db1, … (wasm32 pointers are 32-bit). The stage and layer of a failure go to
// status[0..1] (StackStatus; Labels with the index of the first label outside [0, C)).
namespace {

hg::Net netAt(const int32_t* net, int layers) {
  return {reinterpret_cast<const hg::LayerKind*>(net), net + layers, layers};
}

// Writes s to status; whether the step succeeded.
bool report(hg::StackStatus s, int32_t* status) {
  status[0] = int32_t(s.stage);
  status[1] = s.layer;
  return s.stage == hg::Stage::Ok;
}

template <typename T>
double stackForwardBackwardT(const int32_t* net, int layers, T* ws, const T* X, const int32_t* y, int B, T* dX,
                             int red, int accumulate, T* const* tensors, int params, int32_t* status) {
  hg::LossSpec<T> spec;
  spec.reduction = static_cast<hg::Reduction>(red);
  // X is the module's copy (lib/engine/wasm.ts copies it in before the call): no one else writes it.
  const hg::Step<T> a{B, X, y, tensors, tensors + params, dX, spec, accumulate != 0, ws, true};
  double loss = 0;
  return report(hg::stackForwardBackward(netAt(net, layers), a, &loss), status) ? loss : __builtin_nan("");
}

// Every option of F.cross_entropy (kernels.h LossSpec): weight [C], targets [B,C] and gradOutput [B]
// are pointers into the module's memory, 0 when not given (y is then unused with targets).
template <typename T>
double stackForwardBackwardLossT(const int32_t* net, int layers, T* ws, const T* X, const int32_t* y, int B, T* dX,
                                 int accumulate, T* const* tensors, int params, int32_t* status, int red,
                                 const T* weight, int ignoreIndex, double labelSmoothing, const T* targets,
                                 const T* gradOutput) {
  hg::LossSpec<T> spec;
  spec.reduction = static_cast<hg::Reduction>(red);
  spec.weight = weight;
  spec.ignoreIndex = ignoreIndex;
  spec.labelSmoothing = labelSmoothing;
  spec.targets = targets;
  spec.gradOutput = gradOutput;
  const hg::Step<T> a{B, X, targets ? nullptr : y, tensors, tensors + params, dX, spec, accumulate != 0, ws, true};  // X: as above
  double loss = 0;
  return report(hg::stackForwardBackward(netAt(net, layers), a, &loss), status) ? loss : __builtin_nan("");
}

}  // namespace

HG_EXPORT(stackForwardBackwardLossF64)
double stackForwardBackwardLossF64(const int32_t* net, int layers, double* ws, const double* X, const int32_t* y, int B,
                                   double* dX, int accumulate, double* const* tensors, int params, int32_t* status, int red,
                                   const double* weight, int ignoreIndex, double labelSmoothing, const double* targets,
                                   const double* gradOutput) {
  return stackForwardBackwardLossT(net, layers, ws, X, y, B, dX, accumulate, tensors, params, status, red, weight,
                                   ignoreIndex, labelSmoothing, targets, gradOutput);
}

HG_EXPORT(stackForwardBackwardLossF32)
double stackForwardBackwardLossF32(const int32_t* net, int layers, float* ws, const float* X, const int32_t* y, int B,
                                   float* dX, int accumulate, float* const* tensors, int params, int32_t* status, int red,
                                   const float* weight, int ignoreIndex, double labelSmoothing, const float* targets,
                                   const float* gradOutput) {
  return stackForwardBackwardLossT(net, layers, ws, X, y, B, dX, accumulate, tensors, params, status, red, weight,
                                   ignoreIndex, labelSmoothing, targets, gradOutput);
}

// out[0..layers) = each layer's output offset, out[layers] = probs', out[layers + 1] = the
// workspace length, out[layers + 2] = the rows' losses' (reduction none), in elements of the dtype; returns 0 when the workspace cannot exist.
HG_EXPORT(stackLayout)
int stackLayout(const int32_t* net, int layers, int B, int f32, double* out) {
  hg::Layout l;
  const hg::Net n = netAt(net, layers);
  if (!(f32 ? hg::stackLayout<float>(n, uint64_t(B), out, &l) : hg::stackLayout<double>(n, uint64_t(B), out, &l))) return 0;
  out[layers] = double(l.probs);
  out[layers + 1] = double(l.total);
  out[layers + 2] = double(l.losses);
  return 1;
}

HG_EXPORT(stackForwardBackwardF64)
double stackForwardBackwardF64(const int32_t* net, int layers, double* ws, const double* X, const int32_t* y, int B,
                               double* dX, int red, int accumulate, double* const* tensors, int params, int32_t* status) {
  return stackForwardBackwardT(net, layers, ws, X, y, B, dX, red, accumulate, tensors, params, status);
}

HG_EXPORT(stackForwardBackwardF32)
double stackForwardBackwardF32(const int32_t* net, int layers, float* ws, const float* X, const int32_t* y, int B,
                               float* dX, int red, int accumulate, float* const* tensors, int params, int32_t* status) {
  return stackForwardBackwardT(net, layers, ws, X, y, B, dX, red, accumulate, tensors, params, status);
}

HG_EXPORT(stackForwardF64)
int stackForwardF64(const int32_t* net, int layers, double* ws, const double* X, int B, double* const* params, int32_t* status) {
  return report(hg::stackForward(netAt(net, layers), B, X, params, ws), status);
}

HG_EXPORT(stackForwardF32)
int stackForwardF32(const int32_t* net, int layers, float* ws, const float* X, int B, float* const* params, int32_t* status) {
  return report(hg::stackForward(netAt(net, layers), B, X, params, ws), status);
}

// C = alpha·op(A)·op(B) + beta·C on the SIMD128 GEMM alone, for tests and benchmarks.
HG_EXPORT(gemmF64)
void gemmF64(int transA, int transB, int M, int N, int K, double alpha, const double* A, int lda,
             const double* B, int ldb, double beta, double* C, int ldc) {
  hg::gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

HG_EXPORT(gemmF32)
void gemmF32(int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
             const float* B, int ldb, float beta, float* C, int ldc) {
  hg::gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#ifdef HG_WASM_THREADS
// ---- the threaded build's pool (threads.h; lib/engine/wasm-threads.ts) -------------------------
namespace {
alignas(16) char workerStacks[hg::wasm::kMaxThreads][hg::wasm::kWorkerStackBytes];
}

// How many threads the GEMMs may use (1 + the workers started), at most kMaxThreads; returns it.
HG_EXPORT(setThreads)
int setThreads(int threads) {
  const int n = threads < 1 ? 1 : threads > hg::wasm::kMaxThreads ? hg::wasm::kMaxThreads : threads;
  hg::wasm::pool().threads = n;
  return n;
}

// The top of worker `thread`'s own stack (1 ≤ thread < kMaxThreads): its instance sets
// __stack_pointer here before workerLoop, since every instance starts on the linker's one stack.
HG_EXPORT(workerStack)
int workerStack(int thread) { return int(reinterpret_cast<uintptr_t>(workerStacks[thread] + hg::wasm::kWorkerStackBytes)); }

// How many GEMM blocks `thread` has computed since the module started (tests).
HG_EXPORT(threadBlocks)
int threadBlocks(int thread) { return int(__atomic_load_n(&hg::wasm::pool().blocksRun[thread], __ATOMIC_RELAXED)); }

// How many polls a waiting thread makes before it sleeps (threads.h kSpinPolls); returns it. 0: sleep
// at once, as before the polls (to compare the two in one process, and for test/55).
HG_EXPORT(setSpin)
int setSpin(int polls) {
  const uint32_t n = polls < 0 ? 0u : uint32_t(polls);
  __atomic_store_n(&hg::wasm::pool().spin, n, __ATOMIC_RELAXED);
  return int(n);
}

// A worker instance's whole life (never returns: Worker.terminate() ends it).
HG_EXPORT(workerLoop)
void workerLoop(int thread) { hg::wasm::workerLoop(thread); }
#endif
