// jetmoe/ops/cuda/softmax.cuh — CUDA backend of ops::softmax: one block per row, fp32.
#pragma once

#include <algorithm>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/softmax.hpp"

namespace jetmoe::ops {

template <>
struct softmax_impl<exec::cuda> {
  // x: (T, N), in place. A row of all −Inf becomes NaN, as on the CPU.
  static void run(const exec::cuda& policy, tensor_view<float, 2> x) {
    cuda_detail::check_operands(policy, "ops::softmax", {{"x", x}});
    if (x.empty()) return;
    // Rows are short in this library (experts, or a vocabulary at sampling): 128 threads.
    constexpr int block = 128;
    const auto grid = static_cast<unsigned int>(std::min<index_t>(x.extent(0), 65535));
    kernels::softmax_rows<float><<<grid, block, 0, policy.stream()>>>(x);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
