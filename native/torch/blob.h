// Torch tensors over memory the caller owns, shared by the two-layer reference (reference.cc) and
// the layer stack's (sequential.cc). Included only by .cc files: it brings in torch/torch.h.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace hg {

template <typename T> constexpr torch::ScalarType scalarType();
template <> constexpr torch::ScalarType scalarType<double>() { return torch::kFloat64; }
template <> constexpr torch::ScalarType scalarType<float>() { return torch::kFloat32; }
template <> constexpr torch::ScalarType scalarType<int32_t>() { return torch::kInt32; }

// A tensor over the caller's buffer (no copy). from_blob takes void*: inputs are only read
// (autograd never writes a leaf's data), so dropping const is safe.
template <typename T>
torch::Tensor view(const T* data, torch::IntArrayRef shape) {
  return torch::from_blob(const_cast<T*>(data), shape, torch::TensorOptions().dtype(scalarType<T>()));
}

}  // namespace hg
