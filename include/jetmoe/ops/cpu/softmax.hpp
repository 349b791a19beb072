// jetmoe/ops/cpu/softmax.hpp — CPU backend of ops::softmax: per row, max-subtracted, fp32.
#pragma once

#include <algorithm>
#include <cmath>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/softmax.hpp"

namespace jetmoe::ops {

template <>
struct softmax_impl<exec::cpu> {
  // x: (T, N), in place. Subtracting the row max keeps exp() ≤ 1, so nothing overflows; a row
  // of all −Inf has no defined distribution and becomes NaN (as in PyTorch).
  static void run(const exec::cpu& policy, tensor_view<float, 2> x) {
    const index_t width = x.extent(1);  // N
    if (x.empty()) return;
    const index_t step = x.stride(1);
    exec::parallel_for(policy, x.extent(0), 8 * width, [&](std::ptrdiff_t t) {
      float* row = &x(t, 0);  // (N), step `step`
      float row_max = row[0];
      for (index_t i = 1; i < width; ++i) row_max = std::max(row_max, row[i * step]);
      float sum = 0.0f;
      for (index_t i = 0; i < width; ++i) {
        row[i * step] = std::exp(row[i * step] - row_max);
        sum += row[i * step];
      }
      for (index_t i = 0; i < width; ++i) row[i * step] /= sum;
    });
  }
};

}  // namespace jetmoe::ops
