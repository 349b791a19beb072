// jetmoe/routing/cuda/combine.cuh — CUDA backend of routing::combine.
//
// One thread per output element sums its token's S slots in slot order, then adds the bias:
// the CPU backend's order, no atomics, bit-identical run to run.
#pragma once

#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/routing/combine.hpp"

namespace jetmoe::routing {

template <>
struct combine_impl<exec::cuda> {
  // z: (N, H); y: (T, H); bias: (H) or empty. Device memory.
  template <class B>
  static void run(const exec::cuda& policy, const routing_plan<exec::cuda>& plan, tensor_view<const float, 2> z,
                  tensor_view<float, 2> y, tensor_view<const B, 1> bias) {
    ops::cuda_detail::check_operands(policy, "routing::combine", {{"z", z}, {"y", y}, {"the bias", bias}});
    check(y.extent(1) <= 1 || (z.stride(1) == 1 && y.stride(1) == 1), "routing::combine: rows of z and y must be contiguous");
    check(bias.extent(0) <= 1 || bias.stride(0) == 1, "routing::combine: the bias must be contiguous");
    if (y.empty()) return;
    constexpr int block = 256;
    kernels::combine_rows<B><<<kernels::blocks_for(y.size(), block), block, 0, policy.stream()>>>(
        z, plan.gates().data(), plan.slot_to_sorted().data(), plan.slots_per_token(),
        bias.empty() ? nullptr : bias.data(), y);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::routing
