// jetmoe/routing/switch_top1.hpp — Switch Transformer routing: one expert per token, with a
// capacity.
//
//   p = softmax(l) over all E experts;  expert = argmax p (lower index on ties);  gate = p_expert
//
// Each expert accepts at most ceil(capacity_factor · T / E) tokens per call; the plan drops
// the rest according to `drop` (dropped tokens get a zero expert output). k is ignored: Switch
// is top-1 by definition, so the layer uses one slot per token whatever k the model asks for.
#pragma once

#include <cstdint>

#include "jetmoe/routing/capacity.hpp"
#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

struct switch_top1 {
  double capacity_factor = 1.25;  // ≤ 0: no capacity
  drop_policy drop = drop_policy::by_position;

  index_t slots_per_token(index_t /*k*/, index_t /*experts*/) const { return 1; }

  capacity_limit capacity(index_t tokens, index_t /*k*/, index_t experts) const {
    return capacity_limit::from_factor(capacity_factor, tokens, experts, drop);
  }

  struct row_rule {
    index_t scratch_floats(index_t experts) const { return experts; }
    JETMOE_HD void operator()(index_t /*token*/, const float* logits, index_t experts, index_t /*k*/, float* probs,
                              std::int32_t* ids, float* gates) const {
      rules::softmax(logits, probs, experts);  // (E)
      rules::select_top_k(probs, experts, 1, ids, gates);
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    check_route_arguments("routing::switch_top1", logits, k, 1, expert_ids, gates);
    route_rows(policy, logits, 1, expert_ids, gates, row_rule{});
  }
};

}  // namespace jetmoe::routing
