// jetmoe/routing/expert_choice.hpp — expert-choice routing (Zhou et al., 2022).
//
//   p = softmax(l) over experts, per token;  each expert e takes the C tokens with the largest
//   p[:, e] (lower token index first on ties), C = min(T, ceil(capacity_factor · T · k / E));
//   gate = p[t, e].
//
// Slot e of every token belongs to expert e (S = E): a slot holds e when expert e took the
// token, no_expert otherwise. A token may be taken by several experts or by none.
//
// NOT CAUSAL: whether expert e takes token t depends on the scores of every token in the
// call, later ones included. Use it for encoders or training on whole sequences; in
// autoregressive decoding the routing of a prefix changes as tokens are appended.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "jetmoe/routing/capacity.hpp"
#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

template <class Policy>
struct expert_choice_impl {
  JETMOE_NO_BACKEND("routing::expert_choice");
};

struct expert_choice {
  double capacity_factor = 1.0;  // average experts per token = capacity_factor · k

  index_t slots_per_token(index_t /*k*/, index_t experts) const { return experts; }

  index_t tokens_per_expert(index_t tokens, index_t k, index_t experts) const {
    const double exact = capacity_factor * static_cast<double>(tokens * k) / static_cast<double>(experts);
    return std::max<index_t>(capacity_limit::ceil_at_most(exact, tokens), 0);
  }

  // The plan's capacity: each expert is given exactly tokens_per_expert() slots, so the limit
  // drops nothing. It is there for the row bound: a device plan sizes its rows by
  // min(T·S, E·capacity) before it knows N, and with S = E an unlimited plan would reserve
  // T·E rows for E·C used ones (16× at E = 128, k = 8).
  capacity_limit capacity(index_t tokens, index_t k, index_t experts) const {
    return {tokens_per_expert(tokens, k, experts), drop_policy::by_position};
  }

  // First pass: the per-token probabilities, written straight into the (T, E) gates.
  struct row_rule {
    index_t scratch_floats(index_t /*experts*/) const { return 0; }
    JETMOE_HD void operator()(index_t /*token*/, const float* logits, index_t experts, index_t /*k*/,
                              float* /*scratch*/, std::int32_t* ids, float* gates) const {
      rules::softmax(logits, gates, experts);
      for (index_t e = 0; e < experts; ++e) ids[e] = no_expert;
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    check(capacity_factor > 0.0, "routing::expert_choice: capacity_factor = ", capacity_factor, " must be positive");
    check_route_arguments("routing::expert_choice", logits, k, logits.extent(1), expert_ids, gates);
    route_rows(policy, logits, k, expert_ids, gates, row_rule{});
    const index_t per_expert = tokens_per_expert(logits.extent(0), k, logits.extent(1));
    expert_choice_impl<Policy>::take_tokens(policy, per_expert, expert_ids, gates);
  }
};

}  // namespace jetmoe::routing
