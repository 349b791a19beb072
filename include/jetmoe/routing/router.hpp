// jetmoe/routing/router.hpp — the router concept: what any routing rule must be able to do.
//
// A router turns fp32 logits (T, E) into, for every token, S slots of (expert id, gate):
//
//   router.route(policy, logits /*(T, E)*/, k, expert_ids /*(T, S) int32*/, gates /*(T, S)*/);
//
// S is k for most routers. A router that needs another width says so with
// `slots_per_token(k, E)` (Switch: 1; expert choice: E). A slot that received no expert holds
// `no_expert` and gate 0. A router that wants a per-expert capacity says so with
// `capacity(T, k, E) -> capacity_limit`; the plan then drops the overflow.
//
// Tie rule shared by every built-in router: when two experts score exactly the same, the one
// with the lower index is chosen first (and occupies the earlier slot). NaN scores rank below
// every number.
#pragma once

#include <concepts>
#include <cstdint>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/capacity.hpp"

namespace jetmoe::routing {

inline constexpr std::int32_t no_expert = -1;

// The concept checks the operation itself (a router is anything that can route on this
// policy), not a marker typedef: a user's type qualifies by having a fitting `route`.
template <class R, class Policy = exec::cpu>
concept router = std::copy_constructible<R> &&
                 requires(const R& r, const Policy& policy, tensor_view<const float, 2> logits, index_t k,
                          tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) {
                   r.route(policy, logits, k, expert_ids, gates);
                 };

// Slots per token the router fills: its own answer if it has one, else k.
template <class R>
index_t slots_per_token(const R& r, index_t k, index_t num_experts) {
  if constexpr (requires { { r.slots_per_token(k, num_experts) } -> std::convertible_to<index_t>; })
    return r.slots_per_token(k, num_experts);
  else
    return k;
}

// The capacity the router asks the plan to enforce: its own answer if it has one, else none.
template <class R>
capacity_limit capacity_of(const R& r, index_t tokens, index_t k, index_t num_experts) {
  if constexpr (requires { { r.capacity(tokens, k, num_experts) } -> std::convertible_to<capacity_limit>; })
    return r.capacity(tokens, k, num_experts);
  else
    return {};
}

// Argument checks every built-in router starts with; user routers are welcome to call it.
inline void check_route_arguments(const char* who, tensor_view<const float, 2> logits, index_t k, index_t slots,
                                  tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) {
  const index_t experts = logits.extent(1);
  check(k >= 1, who, ": k = ", k, " must be at least 1");
  check(k <= experts, who, ": k = ", k, " exceeds the number of experts E = ", experts,
        " (a token cannot choose more distinct experts than exist)");
  check(logits.extent(1) <= 1 || logits.stride(1) == 1, who, ": rows of the logits must be contiguous");
  check_shape(expert_ids, make_dims(logits.extent(0), slots), who);
  check_shape(gates, make_dims(logits.extent(0), slots), who);
  check(slots <= 1 || (expert_ids.stride(1) == 1 && gates.stride(1) == 1), who,
        ": rows of expert_ids and gates must be contiguous");
}

}  // namespace jetmoe::routing
