// jetmoe/ops/top_k.hpp — the k largest entries of each row, in descending order.
//
// Tie rule: equal values are ordered by index, lower index first. NaN ranks below every
// number (so a NaN logit is only chosen when fewer than k numbers remain).
#pragma once

#include <cstdint>
#include <limits>

#include "jetmoe/core/error.hpp"
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
  const index_t rows = x.extent(0), n = x.extent(1), k = values.extent(1);
  check(values.extent(0) == rows, "ops::top_k: values ", values.extents(), " must have as many rows as x ", x.extents());
  check_shape(indices, values.extents(), "ops::top_k: indices (T, k) must match values");
  check(k >= 1, "ops::top_k: k = ", k, " must be at least 1");
  check(k <= n, "ops::top_k: k = ", k, " > N = ", n, " (x is ", x.extents(), ")");
  check(n <= std::numeric_limits<std::int32_t>::max(), "ops::top_k: N = ", n, " does not fit int32 indices");
  top_k_impl<Policy>::run(policy, x, values, indices);  // backends receive checked arguments
}

}  // namespace jetmoe::ops
