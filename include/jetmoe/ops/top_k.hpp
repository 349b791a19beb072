// jetmoe/ops/top_k.hpp — the k largest entries of each row, in descending order.
//
// Tie rule: equal values are ordered by index, lower index first. NaN ranks below every
// number (so a NaN logit is only chosen when fewer than k numbers remain).
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct top_k_impl {
  JETMOE_NO_BACKEND("ops::top_k");
};

// x: (T, N) float; values: (T, k) float; indices: (T, k) int32. Requires 1 ≤ k ≤ N.
template <class Policy>
void top_k(const Policy& policy, tensor_view<const float, 2> x, tensor_view<float, 2> values,
           tensor_view<std::int32_t, 2> indices) {
  top_k_impl<Policy>::run(policy, x, values, indices);
}

}  // namespace jetmoe::ops
