// The Trainer's update rules in C++, operation for operation as lib/train/optimizer.ts and
// torch.optim (SGD with momentum/Nesterov, Adam, AdamW), computed in the parameters' own dtype as
// torch.optim does. A JS loop over a 784×256 weight takes ~0.5 ms here, several times this.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hg {

enum class Optimizer : int { Sgd = 0, Momentum = 1, Nesterov = 2, Adam = 3, AdamW = 4 };

struct OptimizerConfig {
  Optimizer kind;
  double lr, momentum, beta1, beta2, epsilon, weightDecay;
};

// The exponent bits of x (for a double, in its high 32 bits) plus one exponent unit carry into bit
// 31 only when they are all set: ±Infinity or NaN. An AND, an add and an OR per value written,
// in the loop that writes it, so the Trainer learns of a non-finite step (and undoes it) without a
// second pass over memory; integer ops, so the loop still vectorizes (a float compare-and-count
// does not, for double, with SSE2).
inline uint32_t exponentCarry(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (uint32_t(bits >> 32) & 0x7ff00000u) + 0x00100000u;
}
inline uint32_t exponentCarry(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) + 0x00800000u;
}

// One step on W[n] with gradient g; m and v are the optimizer's slots (m for momentum/Adam, v for
// Adam), t the 1-based step count. Returns whether every value written (W, m, v) is finite.
template <typename T>
bool optimizerUpdate(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, size_t n, double t) {
  const T lr = T(c.lr), wd = T(c.weightDecay);
  uint32_t carry = 0;
  switch (c.kind) {
    case Optimizer::Sgd:
      for (size_t i = 0; i < n; ++i) {
        W[i] -= lr * (wd == T(0) ? g[i] : g[i] + wd * W[i]);
        carry |= exponentCarry(W[i]);
      }
      return (carry >> 31) == 0;
    case Optimizer::Momentum:
    case Optimizer::Nesterov: {
      const T mu = T(c.momentum);
      const bool nesterov = c.kind == Optimizer::Nesterov;
      for (size_t i = 0; i < n; ++i) {
        const T gi = wd == T(0) ? g[i] : g[i] + wd * W[i];
        m[i] = t == 1 ? gi : mu * m[i] + gi;  // torch: buf = g on the first step
        W[i] -= lr * (nesterov ? gi + mu * m[i] : m[i]);
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]);
      }
      return (carry >> 31) == 0;
    }
    case Optimizer::Adam:
    case Optimizer::AdamW: {
      const T b1 = T(c.beta1), b2 = T(c.beta2), eps = T(c.epsilon);
      // The two bias-correction scalars stay in double: torch applies them as double scalars to
      // float tensors (each op computes in the scalar's precision, then rounds once).
      const double stepSize = c.lr / (1 - std::pow(c.beta1, t));
      const double bc2Sqrt = std::sqrt(1 - std::pow(c.beta2, t));
      const bool decoupled = c.kind == Optimizer::AdamW;
      for (size_t i = 0; i < n; ++i) {
        if (decoupled && wd != T(0)) W[i] *= T(1) - lr * wd;
        const T gi = !decoupled && wd != T(0) ? g[i] + wd * W[i] : g[i];
        m[i] = b1 * m[i] + (T(1) - b1) * gi;
        v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
        // torch: denom = sqrt(v) / sqrt(bias_correction2) + eps; W −= (lr / bias_correction1)·m / denom
        const T denom = T(std::sqrt(v[i]) / bc2Sqrt) + eps;
        W[i] -= T(stepSize * m[i] / denom);
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]) | exponentCarry(v[i]);
      }
      return (carry >> 31) == 0;
    }
  }
  return false;  // not reached: the glue checked the kind
}

}  // namespace hg
