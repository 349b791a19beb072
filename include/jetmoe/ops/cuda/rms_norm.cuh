// jetmoe/ops/cuda/rms_norm.cuh — CUDA backend of ops::rms_norm: one block per row, fp32.
#pragma once

#include <algorithm>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/rms_norm.hpp"

namespace jetmoe::ops {

template <>
struct rms_norm_impl<exec::cuda> {
  // x: (T, H); weight: (H); y: (T, H), may be x itself. Device memory.
  template <class W>
  static void run(const exec::cuda& policy, tensor_view<const float, 2> x, tensor_view<const W, 1> weight, float eps,
                  tensor_view<float, 2> y) {
    cuda_detail::check_operands(policy, "ops::rms_norm", {{"x", x}, {"the weight", weight}, {"y", y}});
    if (x.empty()) return;
    // 256 threads cover H = 2048 in 8 loads each; one block per row up to the grid cap.
    constexpr int block = 256;
    const auto grid = static_cast<unsigned int>(std::min<index_t>(x.extent(0), 65535));
    kernels::rms_norm_rows<W><<<grid, block, 0, policy.stream()>>>(x, weight, eps, y);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
