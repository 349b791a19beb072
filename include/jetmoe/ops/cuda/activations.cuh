// jetmoe/ops/cuda/activations.cuh — CUDA backend of ops::silu and ops::glu.
#pragma once

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/activations.hpp"
#include "jetmoe/ops/cuda/launch.cuh"

namespace jetmoe::ops {

template <>
struct activations_impl<exec::cuda> {
  // x: (T, N), in place.
  static void silu(const exec::cuda& policy, tensor_view<float, 2> x) {
    cuda_detail::check_operands(policy, "ops::silu", {{"x", x}});
    if (x.empty()) return;
    constexpr int block = 256;
    kernels::silu_elements<float><<<kernels::blocks_for(x.size(), block), block, 0, policy.stream()>>>(x);
    JETMOE_CUDA_CHECK_LAUNCH();
  }

  // h: (T, 2I); u: (T, I), must not overlap h.
  static void glu(const exec::cuda& policy, tensor_view<const float, 2> h, tensor_view<float, 2> u) {
    cuda_detail::check_operands(policy, "ops::glu", {{"h", h}, {"u", u}});
    check(h.extent(1) % 2 == 0, "ops::glu: h ", h.extents(), " must have an even width (gate half, then up half)");
    check_shape(u, make_dims(h.extent(0), h.extent(1) / 2), "ops::glu: output u (T, I) for h (T, 2I)");
    if (u.empty()) return;
    constexpr int block = 256;
    kernels::glu_elements<float><<<kernels::blocks_for(u.size(), block), block, 0, policy.stream()>>>(h, u);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
