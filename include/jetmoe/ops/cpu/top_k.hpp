// jetmoe/ops/cpu/top_k.hpp — CPU backend of ops::top_k.
//
// Order: larger value first; equal values (including +0 and −0) by lower index; NaN after every
// number, NaNs among themselves by index. That is a strict total order on (value, index), so
// the selection is unique and does not depend on the algorithm.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/top_k.hpp"

namespace jetmoe::ops {

namespace cpu_detail {
// True when entry (a, ia) ranks before entry (b, ib).
inline bool ranks_before(float a, std::int32_t ia, float b, std::int32_t ib) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a != b) return a > b;
  return ia < ib;
}
}  // namespace cpu_detail

template <>
struct top_k_impl<exec::cpu> {
  // Up to this k, a sorted insertion list beats sorting (router k is 1 to 8).
  static constexpr index_t insertion_limit = 16;

  // x: (T, N); values, indices: (T, k).
  static void run(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<float, 2> values,
                  tensor_view<std::int32_t, 2> indices) {
    const index_t rows = x.extent(0), n = x.extent(1), k = values.extent(1);

    exec::parallel_for(policy, rows, n * k, [&](std::ptrdiff_t t) {
      if (k <= insertion_limit) {
        // Keep the best k seen so far, sorted; a newcomer shifts worse entries down.
        float best_value[insertion_limit];
        std::int32_t best_index[insertion_limit];
        index_t filled = 0;
        for (index_t j = 0; j < n; ++j) {
          const float value = x(t, j);
          const auto index = static_cast<std::int32_t>(j);
          if (filled == k && !cpu_detail::ranks_before(value, index, best_value[k - 1], best_index[k - 1])) continue;
          index_t slot = filled < k ? filled++ : k - 1;
          while (slot > 0 && cpu_detail::ranks_before(value, index, best_value[slot - 1], best_index[slot - 1])) {
            best_value[slot] = best_value[slot - 1];
            best_index[slot] = best_index[slot - 1];
            --slot;
          }
          best_value[slot] = value;
          best_index[slot] = index;
        }
        for (index_t s = 0; s < k; ++s) {
          values(t, s) = best_value[s];
          indices(t, s) = best_index[s];
        }
      } else {
        thread_local std::vector<std::int32_t> order;  // (N) candidate indices
        order.resize(static_cast<std::size_t>(n));
        for (index_t j = 0; j < n; ++j) order[j] = static_cast<std::int32_t>(j);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
          return cpu_detail::ranks_before(x(t, a), a, x(t, b), b);
        });
        for (index_t s = 0; s < k; ++s) {
          values(t, s) = x(t, order[s]);
          indices(t, s) = order[s];
        }
      }
    });
  }
};

}  // namespace jetmoe::ops
