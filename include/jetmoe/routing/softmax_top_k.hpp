// jetmoe/routing/softmax_top_k.hpp — softmax over all experts, then the k most probable.
//
// Qwen-MoE style: p = softmax(l) over all E experts, choose the top-k of p, gate_j = p_j.
// With `renormalize` (Qwen's norm_topk_prob) the k gates are divided by their sum, which makes
// the rule equal to top_k_then_softmax; without it the gates sum to less than one, so the
// expert output shrinks when the router is unsure.
#pragma once

#include <cstdint>

#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

struct softmax_then_top_k {
  bool renormalize = false;

  struct row_rule {
    bool renormalize;
    index_t scratch_floats(index_t experts) const { return experts; }
    JETMOE_HD void operator()(index_t /*token*/, const float* logits, index_t experts, index_t k, float* probs,
                              std::int32_t* ids, float* gates) const {
      rules::softmax(logits, probs, experts);  // (E)
      rules::select_top_k(probs, experts, k, ids, gates);
      if (!renormalize) return;
      float sum = 0.0f;
      for (index_t j = 0; j < k; ++j) sum += gates[j];
      for (index_t j = 0; j < k; ++j) gates[j] /= sum;
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    check_route_arguments("routing::softmax_then_top_k", logits, k, k, expert_ids, gates);
    route_rows(policy, logits, k, expert_ids, gates, row_rule{renormalize});
  }
};

}  // namespace jetmoe::routing
