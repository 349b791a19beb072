// jetmoe/routing/cpu/expert_choice.hpp — CPU backend of the expert-choice token selection.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/expert_choice.hpp"

namespace jetmoe::routing {

template <>
struct expert_choice_impl<exec::cpu> {
  // Column e of the probabilities (T, E): keep its `per_expert` best tokens (ids[t, e] = e),
  // zero the gates of the rest. Experts own disjoint columns, so they run in parallel.
  static void take_tokens(const exec::cpu& policy, index_t per_expert, tensor_view<std::int32_t, 2> expert_ids,
                          tensor_view<float, 2> gates) {
    const index_t tokens = gates.extent(0);
    const index_t experts = gates.extent(1);
    exec::parallel_for(policy, experts, [&](std::ptrdiff_t e) {
      std::vector<std::int32_t> order(static_cast<std::size_t>(tokens));  // (T) token ids, best first
      for (index_t t = 0; t < tokens; ++t) order[t] = static_cast<std::int32_t>(t);
      const auto better = [&](std::int32_t a, std::int32_t b) { return rules::ranks_before(gates(a, e), a, gates(b, e), b); };
      std::partial_sort(order.begin(), order.begin() + per_expert, order.end(), better);
      for (index_t r = 0; r < per_expert; ++r) expert_ids(order[r], e) = static_cast<std::int32_t>(e);
      for (index_t t = 0; t < tokens; ++t)
        if (expert_ids(t, e) == no_expert) gates(t, e) = 0.0f;
    });
  }
};

}  // namespace jetmoe::routing
