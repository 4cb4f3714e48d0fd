// The checks every addon makes, after args.h has read the arguments: a layer stack's description,
// outputs disjoint from inputs and from each other, labels in [0, C), values finite.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../core/stack.h"
#include "args.h"

namespace hg {

// A layer stack's description, as both addons take it: kinds (layer codes) and widths (widths[i]
// enters layer i, widths[L] = C), with the names, shapes and element counts of the parameters it
// implies. names holds W1, b1, W2, b2, … then the gradients' (gradPrefix + each).
struct StackArgs {
  std::vector<LayerKind> kinds;
  std::vector<int32_t> widths;
  std::vector<size_t> counts;
  std::vector<std::string> names, shapes;
  Net net() const { return {kinds.data(), widths.data(), int(kinds.size())}; }
  size_t params() const { return counts.size(); }
  // The core's workspace layout for B rows (outputs: one offset per layer, or null), or a RangeError.
  template <typename T>
  Layout layout(Napi::Env env, int B, uint64_t* outputs) const {
    Layout l;
    if (!stackLayout<T>(net(), uint64_t(B), outputs, &l))
      failArg(env, false, "a batch whose workspace fits in a typed array (2^32 − 1 elements)", "B", std::to_string(B));
    return l;
  }
};

// kinds and widths from arguments k and k + 1 (copies), checked: codes in range, positive widths,
// activations keep the width, at least one Linear, every W's element count representable.
inline void readStackArgs(const Napi::CallbackInfo& info, size_t k, const char* gradPrefix, StackArgs* s) {
  Napi::Env env = info.Env();
  const std::vector<int32_t> codes = int32Copy(info, k, "kinds");
  s->widths = int32Copy(info, k + 1, "widths");
  const std::vector<int32_t>& w = s->widths;
  const size_t L = codes.size();
  if (L == 0) failArg(env, false, "at least one layer", "kinds", "Int32Array of length 0");
  if (w.size() != L + 1)
    failArg(env, false, std::to_string(L + 1) + " elements (one more than kinds)", "widths",
            "Int32Array of length " + std::to_string(w.size()));
  for (size_t i = 0; i <= L; ++i)
    if (w[i] < 1) failArg(env, false, "a positive width", "widths[" + std::to_string(i) + "]", std::to_string(w[i]));
  for (size_t i = 0; i < L; ++i) {
    if (codes[i] < 0 || codes[i] >= kLayerKinds)
      failArg(env, false, "layer codes in [0, 4) (0 Linear, 1 ReLU, 2 Sigmoid, 3 Tanh)", "kinds",
              std::to_string(codes[i]) + " at index " + std::to_string(i));
    s->kinds.push_back(LayerKind(codes[i]));
    const std::string in = std::to_string(w[i]), out = std::to_string(w[i + 1]);
    if (s->kinds[i] != LayerKind::Linear && w[i + 1] != w[i])
      failArg(env, false, in + " (an activation keeps the width of widths[" + std::to_string(i) + "])",
              "widths[" + std::to_string(i + 1) + "]", out);
    if (s->kinds[i] != LayerKind::Linear) continue;
    const std::string n = std::to_string(s->counts.size() / 2 + 1);
    s->names.insert(s->names.end(), {"W" + n, "b" + n});
    s->shapes.insert(s->shapes.end(), {"[" + in + ", " + out + "]", "[" + out + "]"});
    s->counts.push_back(elements(env, ("W" + n).c_str(), size_t(w[i]), size_t(w[i + 1])));
    s->counts.push_back(size_t(w[i + 1]));
  }
  if (s->counts.empty()) failArg(env, false, "at least one Linear layer (code 0)", "kinds", "none");
  for (size_t j = 0, n = s->params(); j < n; ++j) s->names.push_back(gradPrefix + s->names[j]);
}

// The answers of stackLayout and stackStatus: [offset of each layer's output …, of probs,
// workspace length, offset of the rows' losses (reduction none)] for B rows; [stage, layer] of a step.
template <typename T>
Napi::Value layoutValue(Napi::Env env, const StackArgs& s, int B) {
  std::vector<uint64_t> at(s.kinds.size());
  const Layout l = s.layout<T>(env, B, at.data());
  at.insert(at.end(), {l.probs, l.total, l.losses});
  auto out = Napi::Float64Array::New(env, at.size());
  for (size_t i = 0; i < at.size(); ++i) out[i] = double(at[i]);
  return out;
}
inline Napi::Value statusValue(Napi::Env env, StackStatus st) {
  auto out = Napi::Array::New(env, 2);
  out[uint32_t(0)] = int(st.stage);
  out[uint32_t(1)] = st.layer;
  return out;
}

struct Span {
  const void* begin;  // null: absent (an output not asked for), never overlaps
  size_t bytes;
  const char* name;
};

// Refuses an output (spans[firstOutput..n)) that shares memory with an input or an earlier output
// (only spans[0..against) when the outputs were checked before): the math reads inputs after it
// has started writing outputs, so aliasing would give a silent wrong answer.
inline void requireDisjoint(Napi::Env env, const Span* spans, size_t n, size_t firstOutput, size_t against = SIZE_MAX) {
  for (size_t o = firstOutput; o < n; ++o) {
    if (!spans[o].begin) continue;
    const auto* a = static_cast<const uint8_t*>(spans[o].begin);
    for (size_t i = 0; i < o && i < against; ++i) {
      const auto* b = static_cast<const uint8_t*>(spans[i].begin);
      if (b && a < b + spans[i].bytes && b < a + spans[o].bytes)
        throwRange(env, std::string("Expected ") + spans[o].name + " not to share memory with " + spans[i].name);
    }
  }
}

[[noreturn]] inline void throwLabel(Napi::Env env, int32_t label, size_t at, int64_t C) {
  throwRange(env, "Expected labels in [0, " + std::to_string(C) + ") for y but received " + std::to_string(label) +
                      " at index " + std::to_string(at));
}

// NaN or ±Infinity in an input gives a wrong answer, not a crash, so it must be an error.
// The memory may be shared with another thread that rewrites it between the fast scan and the
// search for the culprit: each entry is read once into v, so the one named is the one seen, and a
// search that finds none (the entry was rewritten to a finite value meanwhile) is refused as such.
template <typename T>
void requireFinite(Napi::Env env, const char* name, const T* p, size_t n) {
  if (allFinite(p, n)) return;
  for (size_t at = 0; at < n; ++at) {
    const double v = static_cast<double>(static_cast<const volatile T*>(p)[at]);
    if (!std::isfinite(v))
      throwRange(env, std::string("Expected finite values in ") + name + " but received " +
                          (std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity") + " at index " + std::to_string(at));
  }
  throwRange(env, std::string("Expected finite values in ") + name +
                      " but received a non-finite value that another thread rewrote while it was being checked");
}

// The loss options of F.cross_entropy as the stack exports take them:
// reduction (0 mean, 1 sum, 2 none), weight [C] | null, ignoreIndex, labelSmoothing in [0, 1],
// targets [B,C] | null (probability targets; then y is null), gradOutput [B] | null (only for
// none, and required there). The arrays' spans go to spans[0..3) (inputs the core copies into the
// workspace before use: they must not overlap an output, which the core writes after).
// at: the argument index of each, in that order; an undefined ignoreIndex or labelSmoothing is
// PyTorch's default (−100, 0).
template <typename T>
LossSpec<T> readLossSpec(const Napi::CallbackInfo& info, const size_t (&at)[6], size_t B, size_t C, Span* spans) {
  Napi::Env env = info.Env();
  LossSpec<T> s;
  s.reduction = static_cast<Reduction>(arg<enumValue>(info, at[0], "reduction", 3));
  s.weight = optionalTyped<T>(env, argOrUndefined(info, at[1]), "weight", C);
  if (!argOrUndefined(info, at[2]).IsUndefined()) s.ignoreIndex = arg<int32Value>(info, at[2], "ignoreIndex");
  const double eps = argOrUndefined(info, at[3]).IsUndefined() ? 0.0 : arg<numberValue>(info, at[3], "labelSmoothing");
  if (!(eps >= 0 && eps <= 1)) failArg(env, false, "a number in [0, 1]", "labelSmoothing", numberText(eps));
  s.labelSmoothing = eps;
  s.targets = optionalTyped<T>(env, argOrUndefined(info, at[4]), "targets", B * C);
  s.gradOutput = optionalTyped<T>(env, argOrUndefined(info, at[5]), "gradOutput", B);
  if (s.targets && s.ignoreIndex >= 0)
    failArg(env, false, "a negative ignoreIndex with probability targets (PyTorch: ignore_index is not supported for floating point target)", "ignoreIndex", std::to_string(s.ignoreIndex));
  if ((s.reduction == Reduction::None) != (s.gradOutput != nullptr))
    failArg(env, true, s.reduction == Reduction::None ? "a gradOutput [B] with reduction none" : "no gradOutput unless reduction is none",
            "gradOutput", describeValue(env, argOrUndefined(info, at[5])));
  if (s.weight) requireFinite(env, "weight", s.weight, C);
  spans[0] = {s.weight, s.weight ? C * sizeof(T) : 0, "weight"};
  spans[1] = {s.targets, s.targets ? B * C * sizeof(T) : 0, "targets"};
  spans[2] = {s.gradOutput, s.gradOutput ? B * sizeof(T) : 0, "gradOutput"};
  return s;
}

// 'mean' over class labels with nothing to divide by (Stage::EmptyMean): PyTorch's NaN (0/0), as a RangeError.
[[noreturn]] inline void throwEmptyMean(Napi::Env env, int validRows, int32_t ignoreIndex) {
  throwRange(env, validRows == 0
                      ? "Expected at least one row whose label is not ignoreIndex (" + std::to_string(ignoreIndex) +
                            ") for reduction 'mean' but every row is ignored (PyTorch returns NaN, 0/0)"
                      : "Expected a nonzero total weight Σ weight[y] over the non-ignored rows for reduction 'mean' but it is 0 (PyTorch returns NaN, 0/0)");
}

}  // namespace hg
