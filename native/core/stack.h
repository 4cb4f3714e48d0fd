// The stack executor: a Sequential of Linear/ReLU/Sigmoid/Tanh layers with softmax cross-entropy,
// forward, loss and hand-derived backward in one call, on the kernels of kernels.h and hg::gemm.
// Kernel for kernel and argument for argument what lib/layers runs, so the results are those bits.
// Callers have validated the description and every buffer; nothing here allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

// hg::gemm is OpenBLAS's (blas.h) unless the build names a header with the same overloads:
// the WebAssembly build passes -DHG_GEMM_HEADER='"gemm.h"', the sanitizer job a bounds probe.
#ifdef HG_GEMM_HEADER
#include HG_GEMM_HEADER
#else
#include "blas.h"
#endif
#include "kernels.h"
#include "overflow.h"
#include "sparse.h"

namespace hg {

// Where a call stopped. Labels and EmptyMean are never a StepFailure: the glue turns them into a
// RangeError. EmptyMean: reduction Mean over class labels whose denominator Σ_valid weight[y] is 0
// (every row ignored, or their weights sum to 0), where PyTorch returns NaN (0/0).
enum class Stage : int { Ok = 0, Input = 1, Forward = 2, Loss = 3, Grads = 4, Labels = 5, EmptyMean = 6 };
struct StackStatus {
  Stage stage;
  int layer;  // the layer that failed; for Labels the index of the bad label; for EmptyMean the non-ignored rows
};

// A stack description: kinds[layers], widths[layers + 1] (widths[i] enters layer i, widths[layers] = C).
struct Net {
  const LayerKind* kinds;
  const int32_t* widths;
  int layers;
};

// Each workspace tensor starts on a 64-byte boundary (relative to the workspace).
template <typename T>
constexpr uint64_t padded(uint64_t n) {
  constexpr uint64_t k = 64 / sizeof(T);
  return (n + k - 1) / k * k;
}

// Largest element count of one tensor or of the workspace: a typed array holds at most 2^32 − 1.
constexpr uint64_t kMaxElements = 0xffffffffu;

// The workspace, in elements of T: every layer's output (the last one is the logits), probs, two
// gradient buffers that backward alternates between (layer i writes its input gradient into
// grad[i % 2] while reading grad[(i + 1) % 2]), the private copy of the labels (int32), and the
// loss options' private copies (weight [C], probability targets [B,C], gradOutput [B]) with the
// rows' losses [B] for reduction None (read there by the caller); then, when the first layer is a
// Linear, room for X's nonzeros (sparse.h: row starts, columns and values by rows with `in` spare
// slots, column starts, rows and values by columns), sparseCap of them at most.
// 64-bit offsets: the same arithmetic on wasm32, whose size_t could wrap.
struct Layout {
  uint64_t probs, grad[2], labels, weight, targets, gradOutput, losses, total;
  uint64_t rowStart, cols, vals, colStart, rows, colVals, sparseCap;
};

// The layout for B rows, outputs[i] the offset of layer i's output (layers entries of any number
// type, or null); false when a tensor or the whole would exceed kMaxElements (each product is
// checked before it is formed, so nothing wraps).
template <typename T, typename O = uint64_t>
bool stackLayout(const Net& n, uint64_t B, O* outputs, Layout* l) {
  uint64_t at = 0, widest = uint64_t(n.widths[0]);
  const auto take = [&](uint64_t rows, uint64_t cols, uint64_t* where) {
    if (cols != 0 && rows > kMaxElements / cols) return false;
    *where = at;
    at += padded<T>(rows * cols);
    return at <= kMaxElements;
  };
  for (int i = 0; i < n.layers; ++i) {
    uint64_t where;
    if (!take(B, uint64_t(n.widths[i + 1]), &where)) return false;
    if (outputs) outputs[i] = O(where);
    if (uint64_t(n.widths[i + 1]) > widest) widest = uint64_t(n.widths[i + 1]);
  }
  const uint64_t C = uint64_t(n.widths[n.layers]);
  const auto ints = [](uint64_t count) { return (count * sizeof(int32_t) + sizeof(T) - 1) / sizeof(T); };
  if (!(take(B, C, &l->probs) && take(B, widest, &l->grad[0]) && take(B, widest, &l->grad[1]) &&
        take(ints(B), 1, &l->labels) && take(1, C, &l->weight) &&
        take(B, C, &l->targets) && take(B, 1, &l->gradOutput) && take(B, 1, &l->losses)))
    return false;
  // The sparse region, when the first layer is a Linear and the region fits: its positions are
  // int32 (cap + in below 2^31) and the whole workspace within kMaxElements. A net too wide for it
  // runs the dense path, as before the region existed — never a workspace refused on its account.
  // B·in < 2^62: each factor is below 2^31.
  const uint64_t in = uint64_t(n.widths[0]), before = at;
  uint64_t cap = n.kinds[0] == LayerKind::Linear ? B * in / kSparseShare : 0;
  if (cap + in > uint64_t(0x7fffffff)) cap = 0;
  if (cap == 0 || !(take(1, ints(B + 1), &l->rowStart) && take(1, ints(cap + in), &l->cols) && take(1, cap + in, &l->vals) &&
                    take(1, ints(in + 1), &l->colStart) && take(1, ints(cap), &l->rows) && take(1, cap, &l->colVals))) {
    at = before;
    cap = 0;
    l->rowStart = l->cols = l->vals = l->colStart = l->rows = l->colVals = before;
  }
  l->sparseCap = cap;
  l->total = at;
  return true;
}

// The workspace's views of X's nonzeros (Layout).
template <typename T>
SparseInput<T> sparseInputOf(const Layout& l, T* ws) {
  const auto ints = [&](uint64_t at) { return reinterpret_cast<int32_t*>(ws + at); };
  return {ints(l.rowStart), ints(l.cols), ws + l.vals, ints(l.colStart), ints(l.rows), ws + l.colVals, l.sparseCap};
}

// The sparse kernels' threads: OpenBLAS's count (setNumThreads sets both; the sanitizer's bounds
// probe wraps the same blas.h); one in the WebAssembly build, whose GEMM has no OpenBLAS.
inline int sparseThreads() {
#ifdef __wasm__
  return 1;
#else
  return blasThreads();
#endif
}

// ---- Linear: Z [B,out] = A [B,in] · W [in,out] + b ------------------------------------------
// Bias rows first, then the GEMM adds into them (beta = 1): one pass over Z fewer.
template <typename T>
void linearForward(int B, int in, int out, const T* A, const T* W, const T* b, T* Z) {
  broadcastRows(b, Z, size_t(B), size_t(out));
  gemm(false, false, B, out, in, T(1), A, in, W, out, T(1), Z, out);
}
// What the backward found of the gradients as it wrote them, for gradsStatus not to read them again:
// per Linear (its place among the Linears, the first kMax of them) whether its dW was scanned, and
// found finite; the same for dX. 0: not scanned (gradsStatus scans), 1: finite, −1: not finite.
struct GradScans {
  static constexpr int kMax = 64;
  int8_t weight[kMax] = {};
  int8_t dX = 0;
  void setWeight(int linear, bool finite) {
    if (linear < kMax) weight[linear] = finite ? 1 : -1;
  }
};

// Bounds on the magnitude of each layer's input (the first kMax layers), from the forward's passes
// over the Linears' outputs; infinite where no pass gave one. The backward proves a Linear's dW
// finite from its input's bound and its dZ's (overflow.h) instead of reading dW again.
template <typename T>
struct InputBounds {
  static constexpr int kMax = 64;
  T input[kMax];
  int count;  // entries [0, count) are set: the net's layers (a step's setup writes no more)
  explicit InputBounds(int layers) : count(layers < kMax ? layers : kMax) {
    for (int i = 0; i < count; ++i) input[i] = std::numeric_limits<T>::infinity();
  }
  T of(int layer) const { return layer < count ? input[layer] : std::numeric_limits<T>::infinity(); }
  void set(int layer, T bound) {
    if (layer < count) input[layer] = bound;
  }
};

// A bound on |act(z)| from one on |z|: ReLU passes z or 0 unchanged; σ and tanh stay within 1 (1
// rather than min(|z|, 1) for tanh: a libm tanh within an ulp may round a tiny z up past it).
template <typename T>
T activationBound(Activation act, T z) {
  return act == Activation::Relu ? z : T(1);
}

// ∂Z/∂W contracts over the batch: dW = Aᵀ·dZ [in,out]; ∂Z/∂b is a row of ones: db = Σ_b dZ;
// ∂Z/∂A = Wᵀ: dA = dZ·Wᵀ [B,in] (skipped when dA is null). accumulate adds into dW, db
// (PyTorch's .grad); betaA is 1 only for an accumulated dX.
// db is left alone when null: the activation above summed it while masking dZ (activationBackwardSum).
// sparse (the first layer's input compressed by the forward) gives dW from A's nonzeros alone,
// checked as it is written; scratch (B·out free elements: at the first layer, the workspace's
// other gradient buffer, which no later layer reads) takes dZ's panels for that kernel.
// Where dW and dA run side by side (gemmPair), each block of dW — and of dA when it is dX
// (isInput) — is scanned for NaN/±Infinity by the thread that wrote it, in its cache and in
// parallel (gradsStatus scanned them after the whole backward: 4% of a (256,784,1024,10) float64
// step). What was scanned goes into *scans at `linear`. dW is not read at all when `finiteByBound`:
// the caller proved it finite from its factors' magnitudes (overflow.h); reading it back, half of
// it from the other core's cache, was 3% of a (64,128,256,10) step in either dtype.
template <typename T>
void linearBackward(int B, int in, int out, const T* A, const T* W, const T* dZ, T* dW, T* db,
                    bool accumulate, T* dA, T betaA, int linear, bool isInput, GradScans* scans,
                    const SparseInput<T>* sparse = nullptr, T* scratch = nullptr, bool finiteByBound = false) {
  const Product<T> weight{true, false, in, out, B, T(1), A, in, dZ, out, accumulate ? T(1) : T(0), dW, out};
  const Product<T> input{false, true, B, in, out, T(1), dZ, out, W, out, betaA, dA, in};
  if (sparse) {
    scans->setWeight(linear, !sparseWeightGrad(size_t(B), size_t(in), size_t(out), *sparse, dZ, scratch, dW, accumulate, sparseThreads()));
    if (dA) gemm(input);
  } else if (dA) {
    // dW and dA take the same multiply-adds (in·out·B) and neither reads the other: side by side.
    // One flag per block, each written by the thread that wrote the block and read after the pair.
    bool finite[2][kMaxBlocks];
    for (auto& f : finite)
      for (bool& b : f) b = true;
    gemmPair(weight, input, [&](const Product<T>& block, int which, int part) {
      if (which == 1 ? !isInput : finiteByBound) return;
      finite[which][part] = allFiniteRows(block.C, size_t(block.M), size_t(block.N), size_t(block.ldc));
    });
    const auto all = [](const bool* f) {
      bool ok = true;
      for (int i = 0; i < kMaxBlocks; ++i) ok &= f[i];
      return ok;
    };
    scans->setWeight(linear, all(finite[0]));
    if (isInput) scans->dX = all(finite[1]) ? 1 : -1;
  } else {
    gemm(weight);
    if (finiteByBound) scans->setWeight(linear, true);
  }
  if (db) sumRows(dZ, db, size_t(B), size_t(out), accumulate);
}

// A first Linear whose input is mostly zeros (at most 1/kSparseShare of it nonzero, in a product
// of more than kSparseMinProduct multiply-adds) runs on X's nonzeros (sparse.h), kept in ws for the
// backward; true when it does, with *s the workspace's views of them (by rows; the forward job
// compresses them by columns, sparseFirstLayerForward).
template <typename T>
bool sparseFirstLayer(const Net& n, int B, const T* X, T* ws, SparseInput<T>* s) {
  if (n.kinds[0] != LayerKind::Linear || !sparseInputOn()) return false;
  const size_t in = size_t(n.widths[0]), out = size_t(n.widths[1]);
  if (double(B) * double(in) * double(out) <= double(kSparseMinProduct)) return false;
  Layout l;
  stackLayout<T>(n, uint64_t(B), static_cast<uint64_t*>(nullptr), &l);
  *s = sparseInputOf(l, ws);
  return s->cap > 0 && compressRows(X, size_t(B), in, *s);
}

// Z = b + X·W over X's nonzeros; false when a row of W that no x multiplies is not finite.
// Skipping x = 0 also skips 0·NaN and 0·Infinity, so those rows are checked: a non-finite weight
// fails the forward on either path. The check reads the compression by columns (for the
// backward's dW), and both run as one more part of the forward's job: on the second thread while
// the first multiplies, where before the two ran alone ahead of it (timed inside an MNIST step:
// 30 and 10 µs of its 330).
// Z is workspace, written before the check's answer is known; a false fails the step.
template <typename T>
bool sparseFirstLayerForward(size_t B, size_t in, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
  bool unusedFinite = false;
  sparseForward(B, out, s, W, b, Z, sparseThreads(), [&] {
    compressColumns(B, in, s);
    unusedFinite = unusedRowsFinite(in, out, s, W);
  });
  return unusedFinite;
}

// Forward through every layer into ws. A Linear's output is checked for NaN/±Infinity: it is
// where a non-finite X, W or b shows (times a finite factor) before an activation could hide it;
// X itself is checked when an activation comes first (ReLU maps −Infinity to 0). An activation
// right after a Linear runs in the same pass over Z as that check.
// *sparse (when given) is the compressed X the sparse first layer ran on, for the backward; null
// when the first layer ran dense. *bounds (when given) takes what the checks found of each layer's
// input magnitude (the check is that the largest magnitude is finite: the same pass).
template <typename T>
StackStatus stackForward(const Net& n, int B, const T* X, const T* const* params, T* ws,
                         const SparseInput<T>** sparse = nullptr, SparseInput<T>* views = nullptr,
                         InputBounds<T>* bounds = nullptr) {
  const auto note = [bounds](int layer, T b) {
    if (bounds) bounds->set(layer, b);
  };
  if (n.kinds[0] != LayerKind::Linear && !allFinite(X, size_t(B) * size_t(n.widths[0]))) return {Stage::Input, 0};
  SparseInput<T> own;
  SparseInput<T>& s = views ? *views : own;
  const bool first = sparseFirstLayer(n, B, X, ws, &s);
  if (sparse) *sparse = first ? &s : nullptr;
  const T* A = X;
  size_t at = 0;
  for (int i = 0, p = 0; i < n.layers; ++i) {
    const int in = n.widths[i], out = n.widths[i + 1];
    T* Z = ws + at;
    if (n.kinds[i] == LayerKind::Linear) {
      if (i == 0 && first) {
        if (!sparseFirstLayerForward(size_t(B), size_t(in), size_t(out), s, params[0], params[1], Z)) return {Stage::Forward, 0};
      } else {
        linearForward(B, in, out, A, params[p], params[p + 1], Z);
      }
      p += 2;
      const size_t count = size_t(B) * size_t(out);
      if (i + 1 < n.layers && n.kinds[i + 1] != LayerKind::Linear) {
        at += padded<T>(count);  // the activation's output, as wide as Z
        const Activation act = activationOf(n.kinds[i + 1]);
        const T z = activationForwardChecked(act, Z, ws + at, count);
        if (!std::isfinite(z)) return {Stage::Forward, i};
        note(i + 2, activationBound(act, z));
        A = ws + at;
        at += padded<T>(count);
        ++i;
        continue;
      }
      const T z = maxMagnitude(Z, count);
      if (!std::isfinite(z)) return {Stage::Forward, i};
      note(i + 1, z);
    } else {
      activationForward(activationOf(n.kinds[i]), A, Z, size_t(B) * size_t(out));
      if (bounds) note(i + 1, activationBound(activationOf(n.kinds[i]), bounds->of(i)));
    }
    A = Z;
    at += padded<T>(size_t(B) * size_t(out));
  }
  return {Stage::Ok, 0};
}

// The written gradients scanned for NaN/±Infinity: dX first (layer 0), then each Linear's dW, db
// (that layer); the LibTorch reference (native/torch) reports through this too. scans: what the
// backward scanned as it wrote (GradScans), not read again.
template <typename T>
StackStatus gradsStatus(const Net& n, int B, T* const* grads, const T* dX, const GradScans* scans = nullptr) {
  const auto scanned = [](int8_t s, const auto& scan) { return s != 0 ? s > 0 : scan(); };
  if (dX && !scanned(scans ? scans->dX : 0, [&] { return allFinite(dX, size_t(B) * size_t(n.widths[0])); }))
    return {Stage::Grads, 0};
  for (int i = 0, k = 0; i < n.layers; ++i) {
    if (n.kinds[i] != LayerKind::Linear) continue;
    const size_t in = size_t(n.widths[i]), o = size_t(n.widths[i + 1]);
    const int8_t s = scans && k / 2 < GradScans::kMax ? scans->weight[k / 2] : 0;
    if (!scanned(s, [&] { return allFinite(grads[k], in * o); }) || !allFinite(grads[k + 1], o)) return {Stage::Grads, i};
    k += 2;
  }
  return {Stage::Ok, 0};
}

template <typename T>
struct Step {
  int B;
  const T* X;
  const int32_t* y;  // read once, into the workspace's labels
  const T* const* params;  // W1, b1, W2, b2, …
  T* const* grads;         // dW1, db1, … in params' order
  T* dX;                   // null when the input gradient is not wanted
  LossSpec<T> loss;  // its arrays are read once, into the workspace, before use
  bool accumulate;
  T* ws;  // stackLayout<T>(n, B) elements
  // No other thread can write X during the call (the glue saw memory that is not shared): what a
  // scan of X finds then holds for the products that read it later.
  bool xPrivate = false;
};

// A step's inputs that another thread may write during the call — y, and the loss's weight,
// targets and gradOutput — copied into the workspace before anything else; only the copies are read
// after. `own` is the loss over the copies; `general` (always, for the exact mode) is whether the
// loss's arrays are needed at all (F.cross_entropy's default with no row ignored needs only y).
// Stage::Labels names a label outside [0, C) that is not ignoreIndex; Stage::EmptyMean a 'mean'
// with nothing to divide by (every row ignored, or a zero total weight).
template <typename T>
StackStatus copyStepInputs(const Net& n, const Step<T>& a, const Layout& l, bool always, LossSpec<T>* own, bool* general) {
  const size_t B = size_t(a.B), C = size_t(n.widths[n.layers]);
  const LossSpec<T>& spec = a.loss;
  int32_t* y = reinterpret_cast<int32_t*>(a.ws + l.labels);
  size_t ignored = 0;
  if (!spec.targets) {
    const size_t bad = copyLabels(a.y, B, int32_t(C), y, spec.ignoreIndex, &ignored);
    if (bad != B) return {Stage::Labels, int(bad)};
  }
  *general = always || !isDefaultLoss(spec) || ignored != 0;
  *own = spec;
  if (!*general) return {Stage::Ok, 0};
  const auto copy = [&](const T* from, uint64_t at, size_t count) {
    if (!from) return static_cast<const T*>(nullptr);
    std::memcpy(a.ws + at, from, count * sizeof(T));
    return static_cast<const T*>(a.ws + at);
  };
  own->weight = copy(spec.weight, l.weight, C);
  own->targets = copy(spec.targets, l.targets, B * C);
  own->gradOutput = copy(spec.gradOutput, l.gradOutput, B);
  if (!own->targets && own->reduction == Reduction::Mean && labelWeightSum(y, B, own->weight, own->ignoreIndex) == 0.0)
    return {Stage::EmptyMean, int(B - ignored)};
  return {Stage::Ok, 0};
}

// A dW of fewer entries than this is scanned: the scan costs less than the proof's bookkeeping.
constexpr uint64_t kProofMinWeights = 4096;

// Whether the dW of layer i (a Linear) is large enough to be worth proving finite.
inline bool proofPays(const Net& n, int i) {
  return uint64_t(n.widths[i]) * uint64_t(n.widths[i + 1]) >= kProofMinWeights;
}

// Whether a scan of X could stand in for the first layer's dW scan: a first Linear whose dW is worth
// proving, and X no longer than dW (B ≤ out: the scan must cost less than the one it saves). The
// glue asks whether X is private (Step::xPrivate, a Node-API call) only then.
inline bool inputScanPays(const Net& n, uint64_t B) {
  return n.kinds[0] == LayerKind::Linear && proofPays(n, 0) && B <= uint64_t(n.widths[1]);
}

// Whether layer i's (a Linear's) dW = Aᵀ·dZ is proven finite before it is computed (overflow.h), so
// that no one reads it back: only when it is large enough to be worth it, not added into (the old
// dW would need a bound too), a bound on dZ is known (gBound) and one on A: the forward's for a
// hidden layer's input; for X, a scan of it, when X is this call's alone (Step::xPrivate) and the
// scan pays (inputScanPays). The sparse first layer checks its dW as it writes it.
template <typename T>
bool weightGradProven(const Net& n, const Step<T>& a, size_t B, int i, const InputBounds<T>& bounds, T gBound, bool sparseFirst) {
  if (a.accumulate || !std::isfinite(gBound) || !proofPays(n, i)) return false;
  if (i > 0) return weightGradFinite(double(B), bounds.of(i), gBound);
  if (sparseFirst || !a.xPrivate || !inputScanPays(n, B)) return false;
  return weightGradFinite(double(B), maxMagnitude(a.X, B * size_t(n.widths[0])), gBound);
}

// Forward, loss and every gradient; the loss (in T, widened) into *loss. Nothing is written to
// grads or dX unless the loss is finite. With accumulate, grads and dX are added into.
template <typename T>
StackStatus stackForwardBackward(const Net& n, const Step<T>& a, double* loss) {
  Layout l;
  stackLayout<T>(n, uint64_t(a.B), static_cast<uint64_t*>(nullptr), &l);
  const size_t B = size_t(a.B), C = size_t(n.widths[n.layers]);
  const LossSpec<T>& spec = a.loss;
  const int32_t* y = reinterpret_cast<const int32_t*>(a.ws + l.labels);
  LossSpec<T> own;
  bool general;
  const StackStatus in = copyStepInputs(n, a, l, false, &own, &general);
  if (in.stage != Stage::Ok) return in;
  SparseInput<T> views;
  const SparseInput<T>* sparse;
  InputBounds<T> bounds(n.layers);
  const StackStatus f = stackForward(n, a.B, a.X, a.params, a.ws, &sparse, &views, &bounds);
  if (f.stage != Stage::Ok) return f;
  const T* logits = a.ws + (l.probs - padded<T>(B * C));
  // ∂loss/∂logits into grad[0]; a Linear writes its input gradient into the other buffer, an
  // activation works in place.
  int cur = 0;
  T* g = a.ws + l.grad[cur];
  if (!general) {
    // Probabilities, loss and (softmax(logits) − onehot(y)) · scale in one row pass; g is only
    // workspace, so writing it before the loss is known to be finite leaks nothing.
    const double total = softmaxCrossEntropyWithGrad(logits, y, a.ws + l.probs, g, B, C, lossScale<T>(spec.reduction, B));
    *loss = double(T(spec.reduction == Reduction::Mean ? total / double(B) : total));
    if (!std::isfinite(*loss)) return {Stage::Loss, n.layers - 1};
  } else {
    const bool none = own.reduction == Reduction::None;
    const double total = crossEntropyGeneral(logits, own.targets ? nullptr : y, own, B, C, a.ws + l.probs, g,
                                             none ? a.ws + l.losses : nullptr);
    *loss = none ? total : double(T(total));
    if (!std::isfinite(*loss) || !std::isfinite(total)) return {Stage::Loss, n.layers - 1};
  }

  int firstLinear = 0, p = 0;
  while (n.kinds[firstLinear] != LayerKind::Linear) ++firstLinear;
  for (int i = 0; i < n.layers; ++i) p += n.kinds[i] == LayerKind::Linear ? 2 : 0;
  uint64_t end = l.probs;  // where layer i's output ends
  bool dbSummed = false;   // the activation above the Linear at hand summed its db already
  GradScans scans;         // the gradients scanned as they were written
  // A bound on |g| where the pass that wrote g gave one (activationBackwardSum), else infinite.
  T gBound = std::numeric_limits<T>::infinity();
  for (int i = n.layers - 1; i >= 0; --i) {
    const size_t in = size_t(n.widths[i]);
    const uint64_t at = end - padded<T>(B * size_t(n.widths[i + 1]));
    const T* input = i == 0 ? a.X : a.ws + (at - padded<T>(B * in));
    // Layers at or before the first Linear need an input gradient only for dX.
    const bool wanted = i == 0 ? a.dX != nullptr : a.dX || i > firstLinear;
    if (n.kinds[i] == LayerKind::Linear) {
      p -= 2;
      T* gIn = !wanted ? nullptr : i == 0 ? a.dX : a.ws + l.grad[1 - cur];
      linearBackward(a.B, n.widths[i], n.widths[i + 1], input, a.params[p], g, a.grads[p], dbSummed ? nullptr : a.grads[p + 1],
                     a.accumulate, gIn, i == 0 && a.accumulate ? T(1) : T(0), p / 2, i == 0, &scans, i == 0 ? sparse : nullptr,
                     i == 0 ? a.ws + l.grad[1 - cur] : nullptr, weightGradProven(n, a, B, i, bounds, gBound, sparse != nullptr));
      dbSummed = false;
      gBound = std::numeric_limits<T>::infinity();
      cur = 1 - cur;
      g = gIn;
    } else if (wanted && i > 0 && n.kinds[i - 1] == LayerKind::Linear) {
      // The Linear below takes this dZ: its db is summed in the same pass as the mask (p − 1 is
      // that Linear's bias gradient: p counts the params of the layers below this one).
      // The bound on dZ only where the Linear below may be proven (weightGradProven), else +∞.
      const bool bound = !a.accumulate && proofPays(n, i - 1);
      // In bands of columns where the GEMM header has threads for them (wasm's pool): each column's
      // entries and sum are computed as in one pass, and the largest magnitude is order-free.
      T tops[kColumnBlocks];
      const Activation act = activationOf(n.kinds[i]);
      const int bands = forColumnBlocks(size_t(B), in, [&](size_t c0, size_t c1, int band) {
        tops[band] = activationBackwardSum(act, input + c0, a.ws + at + c0, g + c0, B, c1 - c0, in, a.grads[p - 1] + c0, a.accumulate, bound);
      });
      gBound = tops[0];
      for (int band = 1; band < bands; ++band) gBound = largerBound(gBound, tops[band]);
      dbSummed = true;
    } else if (wanted) {
      // In place over g, the workspace's own buffer, which no one reads after; at layer 0 it is then
      // copied or added into dX (float + float rounds alike in C++ and in JS).
      activationBackward(activationOf(n.kinds[i]), input, a.ws + at, g, B * in);
      if (i == 0 && a.accumulate)
        for (size_t j = 0; j < B * in; ++j) a.dX[j] += g[j];
      else if (i == 0)
        std::memcpy(a.dX, g, B * in * sizeof(T));
    }
    if (!wanted) break;
    end = at;
  }

  // What the backward did not scan as it wrote: hot in cache here, a few percent of the GEMMs at most.
  return gradsStatus(n, a.B, a.grads, a.dX, &scans);
}

}  // namespace hg
