// jetmoe/routing/cuda/dispatch.cuh — CUDA backend of routing::gather and scatter_to_slots.
//
// gather checks its indices on the device: an index outside [0, R) zeroes that row and is
// thrown by the next synchronising call (policy.synchronize(), to_host, build_plan).
#pragma once

#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/routing/dispatch.hpp"

namespace jetmoe::routing {

template <>
struct dispatch_impl<exec::cuda> {
  // rows: (R, D); index: (N); out: (N, D). Device memory, rows contiguous.
  static void gather(const exec::cuda& policy, tensor_view<const float, 2> rows,
                     tensor_view<const std::int32_t, 1> index, tensor_view<float, 2> out) {
    ops::cuda_detail::check_operands(policy, "routing::gather",
                                      {{"the rows", rows}, {"the index", index}, {"the output", out}});
    check(rows.extent(1) <= 1 || rows.stride(1) == 1, "routing::gather: rows must be contiguous");
    check(out.extent(1) <= 1 || out.stride(1) == 1, "routing::gather: rows must be contiguous");
    if (out.empty()) return;
    constexpr int block = 256;
    kernels::gather_rows<float><<<kernels::blocks_for(out.size(), block), block, 0, policy.stream()>>>(
        rows, index, out, policy.status());
    JETMOE_CUDA_CHECK_LAUNCH();
  }

  // sorted: (N, D); out: (T, S, D), every slot written.
  static void scatter_to_slots(const exec::cuda& policy, const routing_plan<exec::cuda>& plan,
                               tensor_view<const float, 2> sorted, tensor_view<float, 3> out) {
    ops::cuda_detail::check_operands(policy, "routing::scatter_to_slots",
                                      {{"the sorted rows", sorted}, {"the output", out}});
    check(sorted.extent(1) <= 1 || sorted.stride(1) == 1, "routing::scatter_to_slots: rows must be contiguous");
    check(out.extent(2) <= 1 || out.stride(2) == 1, "routing::scatter_to_slots: rows must be contiguous");
    if (out.empty()) return;
    constexpr int block = 256;
    kernels::scatter_to_slots<float><<<kernels::blocks_for(out.size(), block), block, 0, policy.stream()>>>(
        sorted, plan.slot_to_sorted().data(), out);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::routing
