// jetmoe/ops/elementwise.hpp — residual add and strided copy, the glue between blocks.
#pragma once

#include <cstddef>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct elementwise_impl {
  JETMOE_NO_BACKEND("ops::add_inplace / ops::copy");
};

// x += y. x, y: (T, H) float, rows contiguous.
template <class Policy>
void add_inplace(const Policy& policy, tensor_view<float, 2> x, tensor_view<const float, 2> y) {
  elementwise_impl<Policy>::add_inplace(policy, x, y);
}

// dst = src for views of the same extents; any strides, last dimension contiguous.
template <class Policy, std::size_t Rank>
void copy(const Policy& policy, tensor_view<const float, Rank> src, tensor_view<float, Rank> dst) {
  elementwise_impl<Policy>::copy(policy, src, dst);
}

}  // namespace jetmoe::ops
