// jetmoe/routing/capacity.hpp — per-expert capacity and what happens to slots beyond it.
//
// A capacity bounds how many token slots one expert processes in a call (Switch Transformer,
// GShard). Slots over the limit are dropped: they get no expert output, so in a residual
// network the token passes through that block unchanged. The plan applies the limit, so any
// router can be combined with one; Switch routing asks for it by default.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/shape.hpp"

namespace jetmoe::routing {

// Which slots an over-full expert keeps.
enum class drop_policy : std::uint8_t {
  // Every token's first choice before any token's second choice, then in token order
  // (GShard's priority). Causal: a token's fate never depends on later tokens.
  by_position,
  // Highest gate first (V-MoE's "batch prioritized routing"); ties by the by_position order.
  // Not causal: a later token with a larger gate can evict an earlier one.
  by_gate,
};

struct capacity_limit {
  static constexpr index_t unlimited = std::numeric_limits<index_t>::max();

  index_t per_expert = unlimited;  // slots one expert accepts in a call
  drop_policy policy = drop_policy::by_position;

  bool is_limited() const { return per_expert != unlimited; }

  // ceil(factor · slots / experts), the usual definition; factor ≤ 0 means no limit. A NaN
  // factor is an error.
  static capacity_limit from_factor(double factor, index_t slots, index_t experts,
                                    drop_policy policy = drop_policy::by_position) {
    check(!std::isnan(factor), "routing: capacity_factor is NaN");
    if (factor <= 0.0 || experts <= 0) return {unlimited, policy};
    return {ceil_at_most(factor * static_cast<double>(slots) / static_cast<double>(experts), slots), policy};
  }

  // ceil(exact) for 0 ≤ exact, but at most `most`. The clamp comes first: converting a double
  // past int64's range (a huge or infinite factor) to an integer is undefined. A capacity of
  // all the slots drops nothing, so clamping changes no result.
  static index_t ceil_at_most(double exact, index_t most) {
    return exact < static_cast<double>(most) ? static_cast<index_t>(std::ceil(exact)) : most;
  }
};

}  // namespace jetmoe::routing
