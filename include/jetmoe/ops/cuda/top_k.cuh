// jetmoe/ops/cuda/top_k.cuh — CUDA backend of ops::top_k: one warp per row.
//
// Meant for the short rows of routing (N = E ≤ a few hundred) and for sampling over a
// vocabulary with small k; the cost is O(k·N/32) per lane.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/top_k.hpp"

namespace jetmoe::ops {

template <>
struct top_k_impl<exec::cuda> {
  // x: (T, N); values, indices: (T, k). Device memory.
  static void run(const exec::cuda& policy, tensor_view<const float, 2> x, tensor_view<float, 2> values,
                  tensor_view<std::int32_t, 2> indices) {
    cuda_detail::check_operands(policy, "ops::top_k", {{"x", x}, {"values", values}, {"indices", indices}});
    const index_t rows = x.extent(0);
    if (rows == 0) return;
    constexpr int block = 256;  // 8 rows per block
    const auto grid = static_cast<unsigned int>(std::min<index_t>((rows + 7) / 8, 65535));
    kernels::top_k_rows<float><<<grid, block, 0, policy.stream()>>>(x, values, indices);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
