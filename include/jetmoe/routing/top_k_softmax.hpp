// jetmoe/routing/top_k_softmax.hpp — top-k of the logits, then softmax over the k chosen.
//
// JetMoE's and Mixtral's router: gate_j = exp(l_j) / Σ_{i in top-k} exp(l_i). (Mixtral's
// "softmax over all, top-k, renormalise" is the same function.) The default router of the
// library's MoE blocks.
#pragma once

#include <cstdint>

#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

struct top_k_then_softmax {
  struct row_rule {
    index_t scratch_floats(index_t /*experts*/) const { return 0; }
    JETMOE_HD void operator()(index_t /*token*/, const float* logits, index_t experts, index_t k, float* /*scratch*/,
                              std::int32_t* ids, float* gates) const {
      rules::select_top_k(logits, experts, k, ids, gates);  // gates hold the chosen logits for now
      rules::softmax(gates, gates, k);
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    check_route_arguments("routing::top_k_then_softmax", logits, k, k, expert_ids, gates);
    route_rows(policy, logits, k, expert_ids, gates, row_rule{});
  }
};

}  // namespace jetmoe::routing
