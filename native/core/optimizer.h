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
  // torch.optim's SGD dampening and Adam's amsgrad: read by the LibTorch reference (native/torch);
  // the Trainer runs these two through lib/train/optimizer.ts, which has the max-v buffer.
  double dampening = 0;
  bool amsgrad = false;
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

// a + α·b rounded once, as ATen's vectorized add(a, b, alpha) computes it (Vectorized::fmadd, an
// FMA on AVX2): for float, the product of two floats is exact in double and the double sum is
// rounded to float (twice rounded, which differs from the FMA only on a tie, rarely); for double,
// an unfused a + α·b (no exact FMA without -mfma: within an ulp).
inline float addScaled(float a, float alpha, float b) { return float(double(a) + double(alpha) * double(b)); }
inline double addScaled(double a, double alpha, double b) { return a + alpha * b; }

// One step on W[n] with gradient g; m and v are the optimizer's slots (m for momentum/Adam, v for
// Adam), t the 1-based step count. Returns whether every value written (W, m, v) is finite.
//
// The constants are torch.optim's (1.13, the single-tensor path): each scalar computed in double
// as Python computes it (1 − β, lr / (1 − β1^t), √(1 − β2^t), 1 − lr·wd, −lr) and rounded once to
// the tensor's dtype, which is how ATen applies a Scalar to a float tensor. Rounding β to float and
// subtracting in float instead (1f − 0.999f = 0.00099998713, torch's 0.00100000005) drifted the f32
// update to 50 eps of torch.optim in ten steps.
template <typename T>
bool optimizerUpdate(const OptimizerConfig& c, T* W, const T* g, T* m, T* v, size_t n, double t) {
  const T negLr = T(-c.lr), wd = T(c.weightDecay);
  uint32_t carry = 0;
  switch (c.kind) {
    case Optimizer::Sgd:
      // torch: d = g.add(W, alpha=wd); W.add_(d, alpha=−lr)
      for (size_t i = 0; i < n; ++i) {
        W[i] = addScaled(W[i], negLr, c.weightDecay == 0 ? g[i] : addScaled(g[i], wd, W[i]));
        carry |= exponentCarry(W[i]);
      }
      return (carry >> 31) == 0;
    case Optimizer::Momentum:
    case Optimizer::Nesterov: {
      const T mu = T(c.momentum);
      const bool nesterov = c.kind == Optimizer::Nesterov;
      for (size_t i = 0; i < n; ++i) {
        const T gi = c.weightDecay == 0 ? g[i] : addScaled(g[i], wd, W[i]);
        // torch: buf = g on the first step, then buf.mul_(μ).add_(g, alpha=1 − dampening (0))
        m[i] = t == 1 ? gi : addScaled(T(mu * m[i]), T(1), gi);
        W[i] = addScaled(W[i], negLr, nesterov ? addScaled(gi, mu, m[i]) : m[i]);
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]);
      }
      return (carry >> 31) == 0;
    }
    case Optimizer::Adam:
    case Optimizer::AdamW: {
      const T b1 = T(c.beta1), b2 = T(c.beta2), a1 = T(1 - c.beta1), a2 = T(1 - c.beta2), eps = T(c.epsilon);
      const T negStepSize = T(-(c.lr / (1 - std::pow(c.beta1, t))));
      const T bc2Sqrt = T(std::sqrt(1 - std::pow(c.beta2, t)));
      const T decay = T(1 - c.lr * c.weightDecay);
      const bool decoupled = c.kind == Optimizer::AdamW;
      for (size_t i = 0; i < n; ++i) {
        if (decoupled && c.weightDecay != 0) W[i] *= decay;  // torch: W.mul_(1 − lr·wd)
        const T gi = !decoupled && c.weightDecay != 0 ? addScaled(g[i], wd, W[i]) : g[i];
        m[i] = addScaled(T(b1 * m[i]), a1, gi);  // m.mul_(β1).add_(g, alpha=1 − β1)
        v[i] = T(b2 * v[i]) + T(a2 * gi) * gi;   // v.mul_(β2).addcmul_(g, g, value=1 − β2)
        // torch: denom = (sqrt(v) / sqrt(bias_correction2)).add_(eps); W.addcdiv_(m, denom, value=−step_size)
        const T denom = T(std::sqrt(v[i]) / bc2Sqrt) + eps;
        W[i] += T(negStepSize * m[i]) / denom;
        carry |= exponentCarry(W[i]) | exponentCarry(m[i]) | exponentCarry(v[i]);
      }
      return (carry >> 31) == 0;
    }
  }
  return false;  // not reached: the glue checked the kind
}

}  // namespace hg
