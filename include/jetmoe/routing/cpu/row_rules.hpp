// jetmoe/routing/cpu/row_rules.hpp — CPU backend of routing::route_rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

template <>
struct route_rows_impl<exec::cpu> {
  // Tokens per task: a router row costs well under a microsecond, so small batches (decoding)
  // stay on the calling thread instead of paying for a parallel region.
  static constexpr index_t rows_per_task = 512;

  template <class RowRule>
  static void run(const exec::cpu& policy, tensor_view<const float, 2> logits, index_t k,
                  tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates, const RowRule& rule) {
    const index_t tokens = logits.extent(0);
    const index_t experts = logits.extent(1);
    const index_t tasks = (tokens + rows_per_task - 1) / rows_per_task;
    const auto scratch_size = static_cast<std::size_t>(std::max<index_t>(rule.scratch_floats(experts), 1));
    exec::parallel_for(policy, tasks, [&](std::ptrdiff_t task) {
      thread_local std::vector<float> scratch;  // (scratch_floats(E)), reused by this thread
      scratch.resize(scratch_size);
      const index_t end = std::min(tokens, (task + 1) * rows_per_task);
      for (index_t t = task * rows_per_task; t < end; ++t)
        rule(t, &logits(t, 0), experts, k, scratch.data(), &expert_ids(t, 0), &gates(t, 0));
    });
  }
};

}  // namespace jetmoe::routing
