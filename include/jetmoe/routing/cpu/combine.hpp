// jetmoe/routing/cpu/combine.hpp — CPU backend of routing::combine.
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/widen.hpp"
#include "jetmoe/routing/combine.hpp"

namespace jetmoe::routing {

template <>
struct combine_impl<exec::cpu> {
  // A token is ~2·S·H multiply-adds, about a microsecond at H = 2048: 64 per task keep the
  // parallel region worth its start-up; decoding batches stay on the calling thread.
  static constexpr index_t tokens_per_task = 64;

  template <class B>
  static void run(const exec::cpu& policy, const routing_plan<exec::cpu>& plan, tensor_view<const float, 2> z,
                  tensor_view<float, 2> y, tensor_view<const B, 1> bias) {
    const index_t tokens = plan.num_tokens(), slots = plan.slots_per_token(), width = y.extent(1);
    check(width <= 1 || (z.stride(1) == 1 && y.stride(1) == 1), "routing::combine: rows of z and y must be contiguous");
    check(bias.extent(0) <= 1 || bias.stride(0) == 1, "routing::combine: the bias must be contiguous");
    if (width == 0) return;
    const auto gates = plan.gates();               // (T, S)
    const auto to_sorted = plan.slot_to_sorted();  // (T·S)
    const B* bias_data = bias.empty() ? nullptr : bias.data();  // (H)
    const index_t tasks = (tokens + tokens_per_task - 1) / tokens_per_task;
    exec::parallel_for(policy, tasks, [&](std::ptrdiff_t task) {
      const index_t end = std::min(tokens, (task + 1) * tokens_per_task);
      for (index_t t = task * tokens_per_task; t < end; ++t) {
        float* out = &y(t, 0);  // (H)
        std::fill(out, out + width, 0.0f);
        for (index_t j = 0; j < slots; ++j) {
          const std::int32_t row = to_sorted(t * slots + j);
          if (row < 0) continue;
          const float gate = gates(t, j);
          const float* expert_out = &z(row, 0);  // (H)
          for (index_t h = 0; h < width; ++h) out[h] += gate * expert_out[h];
        }
        if (bias_data)
          for (index_t h = 0; h < width; ++h) out[h] += ops::cpu_detail::widen_one(bias_data[h]);
      }
    });
  }
};

}  // namespace jetmoe::routing
