// jetmoe/routing/cpu/plan.hpp — CPU backend of routing::build_plan: a stable counting sort.
//
// T·S is at most a few thousand slots per call, so this runs serially: a parallel histogram
// would cost more in thread start-up than it saves, and serial code is trivially stable.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <>
struct build_plan_impl<exec::cpu> {
  static void run(const exec::cpu& policy, routing_plan<exec::cpu>& plan, capacity_limit capacity) {
    const index_t tokens = plan.tokens_, slots = plan.slots_, experts = plan.experts_;
    const index_t total = tokens * slots;
    const std::int32_t* ids = plan.expert_ids_.data();  // (T·S)
    const float* gates = plan.gates_.data();             // (T·S)
    std::int32_t* routed = plan.routed_counts_.reserve(policy, experts);    // (E)
    std::int32_t* counts = plan.counts_.reserve(policy, experts);           // (E)
    std::int32_t* offsets = plan.offsets_.reserve(policy, experts + 1);     // (E+1)
    std::int32_t* to_sorted = plan.slot_to_sorted_.reserve(policy, total);  // (T·S)

    // 1. Histogram of what the router asked for.
    std::fill(routed, routed + experts, 0);
    index_t empty = 0;
    for (index_t s = 0; s < total; ++s) {
      const std::int32_t e = ids[s];
      check(e >= no_expert && e < experts, "routing::build_plan: slot ", s, " (token ", s / slots, ", choice ",
            s % slots, ") names expert ", e, ", outside [0, ", experts, ")");
      if (e == no_expert) ++empty;
      else ++routed[e];
    }

    // 2. Capacity. to_sorted temporarily marks each slot: 0 keep, -1 empty or dropped.
    for (index_t s = 0; s < total; ++s) to_sorted[s] = ids[s] == no_expert ? -1 : 0;
    std::copy(routed, routed + experts, counts);
    index_t dropped = 0;
    const bool overflow = std::any_of(routed, routed + experts, [&](std::int32_t c) { return c > capacity.per_expert; });
    if (overflow) {
      std::int32_t* dropped_out = plan.dropped_slots_.reserve(policy, total);
      // Priority order: choice rank first, then token (by_position); by_gate sorts that order
      // by descending gate, stably, so equal gates keep it.
      std::int32_t* order = plan.scratch_.reserve(policy, total - empty);  // (assigned slots) flat ids
      std::int32_t* order_end = order;
      for (index_t j = 0; j < slots; ++j)
        for (index_t t = 0; t < tokens; ++t)
          if (ids[t * slots + j] != no_expert) *order_end++ = static_cast<std::int32_t>(t * slots + j);
      if (capacity.policy == drop_policy::by_gate)
        std::stable_sort(order, order_end, [&](std::int32_t a, std::int32_t b) {  // larger first, NaN last
          return !std::isnan(gates[a]) && (std::isnan(gates[b]) || gates[a] > gates[b]);
        });
      std::fill(counts, counts + experts, 0);
      for (const std::int32_t* it = order; it != order_end; ++it) {
        const std::int32_t s = *it;
        std::int32_t& count = counts[ids[s]];
        if (count < capacity.per_expert) ++count;
        else {
          to_sorted[s] = -1;
          dropped_out[dropped++] = s;
        }
      }
    }

    // 3. Exclusive scan, then the stable scatter in flat slot order.
    offsets[0] = 0;
    for (index_t e = 0; e < experts; ++e) offsets[e + 1] = offsets[e] + counts[e];
    const index_t rows = offsets[experts];
    std::int32_t* sorted_slot = plan.sorted_slot_.reserve(policy, rows);    // (N)
    std::int32_t* sorted_token = plan.sorted_token_.reserve(policy, rows);  // (N)
    std::int32_t* cursor = plan.scratch_.reserve(policy, experts);          // (E) next free row per expert
    std::copy(offsets, offsets + experts, cursor);
    for (index_t s = 0; s < total; ++s) {
      if (to_sorted[s] < 0) continue;
      const std::int32_t row = cursor[ids[s]]++;
      sorted_slot[row] = static_cast<std::int32_t>(s);
      sorted_token[row] = static_cast<std::int32_t>(s / slots);
      to_sorted[s] = row;
    }

    plan.sorted_rows_ = rows;
    plan.row_capacity_ = rows;
    plan.dropped_ = dropped;
    plan.empty_slots_ = empty;
    plan.capacity_ = capacity;
    plan.built_ = true;
  }
};

}  // namespace jetmoe::routing
