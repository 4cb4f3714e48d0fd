// The arguments of the LibTorch reference's two-layer forwardBackward/forward, unpacked and checked
// in the words the core's two-layer exports used (the stack exports have since replaced those).
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "../common/checks.h"
#include "reference.h"

namespace hg {

// A non-finite result: name the input that caused it, or say what overflowed. g is needed only
// for Status::NonFiniteGrads (forward() never returns it).
template <typename T>
[[noreturn]] void explainNonFinite(Napi::Env env, Status status, const Dims& d, const T* X, const Params<T>& p,
                                   const Grads<T>* g = nullptr) {
  if (status == Status::NonFiniteZ1) {
    requireFinite(env, "X", X, size_t(d.B) * size_t(d.D));
    requireFinite(env, "W1", p.W1, size_t(d.D) * size_t(d.H));
    requireFinite(env, "b1", p.b1, size_t(d.H));
    throwRange(env, "Expected a finite forward pass but Z1 = X·W1 + b1 overflowed (inputs or weights too large for the dtype)");
  }
  if (status == Status::NonFiniteLogits) {
    requireFinite(env, "W2", p.W2, size_t(d.H) * size_t(d.C));
    requireFinite(env, "b2", p.b2, size_t(d.C));
    throwRange(env, "Expected a finite forward pass but logits = A1·W2 + b2 overflowed (weights too large for the dtype)");
  }
  if (status == Status::NonFiniteLoss || !g)
    throwRange(env, "Expected a finite loss but it overflowed (logits too far apart for the dtype)");
  const char* name = g->dX && !allFinite(g->dX, size_t(d.B) * size_t(d.D)) ? "dX"
                     : !allFinite(g->dW1, size_t(d.D) * size_t(d.H))      ? "dW1"
                     : !allFinite(g->db1, size_t(d.H))                     ? "db1"
                     : !allFinite(g->dW2, size_t(d.H) * size_t(d.C))      ? "dW2"
                                                                           : "db2";
  throwRange(env, std::string("Expected finite gradients but ") + name +
                      " overflowed (inputs or weights too large for the dtype)");
}

// B, D, H, C from four consecutive arguments.
inline Dims readDims(const Napi::CallbackInfo& info, size_t first) {
  return {dimArg(info, first, "B"), dimArg(info, first + 1, "D"), dimArg(info, first + 2, "H"),
          dimArg(info, first + 3, "C")};
}

// Element counts of a call's tensors, refusing products that do not fit in memory.
struct Counts {
  size_t X, W1, W2, ws;
};

inline Counts countsOf(Napi::Env env, const Dims& d) {
  const Counts n{elements(env, "X", d.B, d.D), elements(env, "W1", d.D, d.H), elements(env, "W2", d.H, d.C),
                 workspaceLength(d)};
  elements(env, "Z1", d.B, d.H);
  elements(env, "logits", d.B, d.C);
  return n;
}

// W1, b1, W2, b2 from four consecutive arguments.
template <typename T>
Params<T> readParams(const Napi::CallbackInfo& info, size_t first, const Dims& d, const Counts& n) {
  return {typedArg<T>(info, first, "W1", n.W1), typedArg<T>(info, first + 1, "b1", d.H),
          typedArg<T>(info, first + 2, "W2", n.W2), typedArg<T>(info, first + 3, "b2", d.C)};
}

template <typename T>
struct StepArgs {
  Dims d;
  Activation act;
  Reduction red;
  bool accumulate;
  const T* X;
  const int32_t* y;
  Params<T> p;
  Workspace<T> w;
  Grads<T> g;
};

// forwardBackward(X, y, W1, b1, W2, b2, ws, dX|null, dW1, db1, dW2, db2,
//                 B, D, H, C, activation, reduction, accumulate)
template <typename T>
StepArgs<T> readStepArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Dims d = readDims(info, 12);
  const auto act = static_cast<Activation>(enumArg(info, 16, "activation", 3));
  const auto red = static_cast<Reduction>(enumArg(info, 17, "reduction", 2));
  const bool accumulate = boolArg(info, 18, "accumulate");
  const Counts n = countsOf(env, d);
  const size_t nX = n.X, nW1 = n.W1, nW2 = n.W2, nWs = n.ws;

  const T* X = typedArg<T>(info, 0, "X", nX);
  const int32_t* y = typedArg<int32_t>(info, 1, "y", d.B);
  const Params<T> p = readParams<T>(info, 2, d, n);
  T* ws = typedArg<T>(info, 6, "workspace", nWs);
  const Grads<T> g{optionalTypedArg<T>(info, 7, "dX", nX), typedArg<T>(info, 8, "dW1", nW1),
                   typedArg<T>(info, 9, "db1", d.H), typedArg<T>(info, 10, "dW2", nW2),
                   typedArg<T>(info, 11, "db2", d.C)};

  const Span spans[] = {{X, nX * sizeof(T), "X"},          {y, d.B * sizeof(int32_t), "y"},
                        {p.W1, nW1 * sizeof(T), "W1"},     {p.b1, d.H * sizeof(T), "b1"},
                        {p.W2, nW2 * sizeof(T), "W2"},     {p.b2, d.C * sizeof(T), "b2"},
                        {ws, nWs * sizeof(T), "workspace"}, {g.dX, nX * sizeof(T), "dX"},
                        {g.dW1, nW1 * sizeof(T), "dW1"},   {g.db1, d.H * sizeof(T), "db1"},
                        {g.dW2, nW2 * sizeof(T), "dW2"},   {g.db2, d.C * sizeof(T), "db2"}};
  requireDisjoint(env, spans, 6);
  requireLabels(env, y, size_t(d.B), d.C);
  return {d, act, red, accumulate, X, y, p, carveWorkspace(ws, d), g};
}

template <typename T>
struct ForwardArgs {
  Dims d;
  Activation act;
  const T* X;
  Params<T> p;
  Workspace<T> w;
};

// forward(X, W1, b1, W2, b2, ws, B, D, H, C, activation): Z1, A1 and logits go to ws.
template <typename T>
ForwardArgs<T> readForwardArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Dims d = readDims(info, 6);
  const auto act = static_cast<Activation>(enumArg(info, 10, "activation", 3));
  const Counts n = countsOf(env, d);
  const size_t nX = n.X, nW1 = n.W1, nW2 = n.W2, nWs = n.ws;
  const T* X = typedArg<T>(info, 0, "X", nX);
  const Params<T> p = readParams<T>(info, 1, d, n);
  T* ws = typedArg<T>(info, 5, "workspace", nWs);
  const Span spans[] = {{X, nX * sizeof(T), "X"},      {p.W1, nW1 * sizeof(T), "W1"},
                        {p.b1, d.H * sizeof(T), "b1"}, {p.W2, nW2 * sizeof(T), "W2"},
                        {p.b2, d.C * sizeof(T), "b2"}, {ws, nWs * sizeof(T), "workspace"}};
  requireDisjoint(env, spans, 5);
  return {d, act, X, p, carveWorkspace(ws, d)};
}

}  // namespace hg
