// jetmoe/ops/cuda/rope.cuh — CUDA backend of ops::rope (NeoX rotate-half).
//
// inv_freq is computed on the host with the CPU backend's exact expression and passed to the
// kernel by value, so both backends rotate by the same fp32 angles; the kernel's sincosf is
// the accurate (non-fast-math) one.
#pragma once

#include <cmath>
#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/rope.hpp"

namespace jetmoe::ops {

template <>
struct rope_impl<exec::cuda> {
  // x: (T, heads, D), device, rotated in place. positions: (T), device or host memory; host
  // positions are uploaded first (a pageable copy, which waits for the stream: pass device
  // positions in a decode loop).
  static void run(const exec::cuda& policy, tensor_view<float, 3> x, tensor_view<const std::int64_t, 1> positions,
                  float theta) {
    cuda_detail::check_operands(policy, "ops::rope", {{"x", x}});
    const index_t half_width = x.extent(2) / 2;
    check(half_width <= kernels::rope_max_half_width, "ops::rope: D = ", x.extent(2), " exceeds the CUDA backend's ",
          2 * kernels::rope_max_half_width);
    if (x.empty()) return;
    kernels::rope_frequencies freq{};
    const float width = static_cast<float>(x.extent(2));
    for (index_t i = 0; i < half_width; ++i) freq.inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / width);

    tensor<std::int64_t, 1, exec::cuda> uploaded;  // (T), only for host positions
    if (!cuda_detail::is_device_pointer(positions.data())) {
      uploaded = exec::to_device(policy, positions);
      positions = uploaded.view();
    }
    constexpr int block = 256;
    const index_t n = x.extent(0) * x.extent(1) * half_width;
    kernels::rope_rotate<float><<<kernels::blocks_for(n, block), block, 0, policy.stream()>>>(x, positions, freq);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
