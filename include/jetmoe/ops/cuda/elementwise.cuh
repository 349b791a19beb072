// jetmoe/ops/cuda/elementwise.cuh — CUDA backend of ops::add_inplace, ops::copy and
// ops::copy_to_positions.
#pragma once

#include <cstddef>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/copy.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/elementwise.hpp"

namespace jetmoe::ops {

template <>
struct elementwise_impl<exec::cuda> {
  // x: (T, H) += y: (T, H); rows contiguous, device memory.
  static void add_inplace(const exec::cuda& policy, tensor_view<float, 2> x, tensor_view<const float, 2> y) {
    cuda_detail::check_operands(policy, "ops::add_inplace", {{"x", x}, {"y", y}});
    check(x.extents() == y.extents(), "ops::add_inplace: x ", x.extents(), " and y ", y.extents(), " differ");
    check(x.extent(1) <= 1 || (x.stride(1) == 1 && y.stride(1) == 1), "ops::add_inplace: rows must be contiguous");
    if (x.empty()) return;
    constexpr int block = 256;
    kernels::add_rows<float><<<kernels::blocks_for(x.size(), block), block, 0, policy.stream()>>>(x, y);
    JETMOE_CUDA_CHECK_LAUNCH();
  }

  // dst = src, device views of the same extents, any strides (the CPU backend's rule that the
  // last dimension be contiguous is kept so that both backends accept the same calls).
  template <std::size_t Rank>
  static void copy(const exec::cuda& policy, tensor_view<const float, Rank> src, tensor_view<float, Rank> dst) {
    cuda_detail::check_operands(policy, "ops::copy", {{"the source", src}, {"the destination", dst}});
    check(src.extents() == dst.extents(), "ops::copy: source ", src.extents(), " and destination ", dst.extents(),
          " differ");
    const index_t width = src.extent(Rank - 1);
    check(width <= 1 || (src.stride(Rank - 1) == 1 && dst.stride(Rank - 1) == 1),
          "ops::copy: the last dimension must be contiguous");
    exec::cuda_detail::device_copy<float, Rank>(policy, src, dst);
  }
  // The end position is read by the kernel (device memory), so a captured launch writes at
  // whatever position the cache holds when it is replayed.
  static void copy_to_positions(const exec::cuda& policy, tensor_view<const float, 4> src, tensor_view<float, 4> dst,
                                const std::int32_t* end) {
    cuda_detail::check_on_device(end, "ops::copy_to_positions", "the end position");
    cuda_detail::check_operands(policy, "ops::copy_to_positions", {{"the source", src}, {"the destination", dst}});
    if (src.empty()) return;
    constexpr int block = 256;
    kernels::copy_to_positions<float><<<kernels::blocks_for(src.size(), block), block, 0, policy.stream()>>>(
        src, dst, end, policy.status());
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
