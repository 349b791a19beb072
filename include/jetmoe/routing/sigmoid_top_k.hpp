// jetmoe/routing/sigmoid_top_k.hpp — sigmoid scores with a selection bias (DeepSeek-V3 style).
//
//   s_e      = sigmoid(l_e)                       the affinity, which becomes the gate
//   c_e      = s_e + bias_e                       the choice score; bias steers load balance
//   groups   : experts split into `groups` equal contiguous groups; a group scores the sum of
//              its two best c_e; only the `groups_kept` best groups stay eligible
//   choice   : top-k of c_e over eligible experts (tie rule: lower index first)
//   gate_j   = s_j (/ Σ_chosen s  when normalize) · scaling
//
// The bias changes which experts are chosen but never the gate values, which is what lets
// DeepSeek-V3 balance load without an auxiliary loss. Experts of dropped groups are excluded
// outright (transformers fills their scores with 0.0, which a negative biased score could
// lose to; -∞ is the intent).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

struct sigmoid_top_k {
  tensor_view<const float, 1> selection_bias{};  // (E) or empty for none
  index_t groups = 1;                            // n_group; must divide E; at most 64
  index_t groups_kept = 1;                       // topk_group
  bool normalize = true;                         // norm_topk_prob
  float scaling = 1.0f;                          // routed_scaling_factor

  struct row_rule {
    const float* bias;  // (E) or null
    index_t groups, groups_kept;
    bool normalize;
    float scaling;

    index_t scratch_floats(index_t experts) const { return 2 * experts + groups; }
    // Memory the rule reads through pointers: a device backend checks it is device memory.
    std::array<const void*, 1> input_pointers() const { return {bias}; }

    JETMOE_HD void operator()(index_t /*token*/, const float* logits, index_t experts, index_t k, float* scratch,
                              std::int32_t* ids, float* gates) const {
      float* affinity = scratch;                // (E) sigmoid(l)
      float* choice = scratch + experts;        // (E) affinity + bias, -inf when excluded
      float* group_score = choice + experts;    // (groups)
      for (index_t e = 0; e < experts; ++e) {
        affinity[e] = rules::sigmoid(logits[e]);
        choice[e] = affinity[e] + (bias ? bias[e] : 0.0f);
      }
      if (groups > 1 && groups_kept < groups) exclude_weak_groups(choice, group_score, experts);
      rules::select_top_k(choice, experts, k, ids, gates);
      float sum = 0.0f;
      for (index_t j = 0; j < k; ++j) {
        gates[j] = affinity[ids[j]];
        sum += gates[j];
      }
      const float factor = normalize ? scaling / (sum + 1e-20f) : scaling;
      for (index_t j = 0; j < k; ++j) gates[j] *= factor;
    }

    JETMOE_HD void exclude_weak_groups(float* choice, float* group_score, index_t experts) const {
      const index_t size = experts / groups;
      for (index_t g = 0; g < groups; ++g) {
        std::int32_t best_ids[2];
        float best[2];
        const index_t take = size < 2 ? size : 2;
        rules::select_top_k(choice + g * size, size, take, best_ids, best);
        group_score[g] = take == 2 ? best[0] + best[1] : best[0];
      }
      std::uint64_t kept = 0;  // bit g set: group g stays eligible
      for (index_t round = 0; round < groups_kept; ++round) {
        index_t pick = -1;
        for (index_t g = 0; g < groups; ++g) {
          if ((kept >> g) & 1u) continue;
          if (pick < 0 || rules::ranks_before(group_score[g], g, group_score[pick], pick)) pick = g;
        }
        kept |= std::uint64_t{1} << pick;
      }
      for (index_t e = 0; e < experts; ++e)
        if (!((kept >> (e / size)) & 1u)) choice[e] = -std::numeric_limits<float>::infinity();
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    const char* who = "routing::sigmoid_top_k";
    check_route_arguments(who, logits, k, k, expert_ids, gates);
    const index_t experts = logits.extent(1);
    check(groups >= 1 && groups <= 64 && experts % groups == 0, who, ": groups = ", groups,
          " must be between 1 and 64 and divide E = ", experts);
    check(groups_kept >= 1 && groups_kept <= groups, who, ": groups_kept = ", groups_kept,
          " must be between 1 and groups = ", groups);
    check(groups_kept * (experts / groups) >= k, who, ": the ", groups_kept, " kept groups hold only ",
          groups_kept * (experts / groups), " experts, fewer than k = ", k);
    check(selection_bias.empty() || selection_bias.extent(0) == experts, who, ": selection_bias has ",
          selection_bias.extent(0), " entries for E = ", experts, " experts");
    check(selection_bias.extent(0) <= 1 || selection_bias.stride(0) == 1, who, ": selection_bias must be contiguous");
    check(std::isfinite(scaling), who, ": scaling = ", scaling, " must be finite");
    const float* bias = selection_bias.empty() ? nullptr : selection_bias.data();
    route_rows(policy, logits, k, expert_ids, gates, row_rule{bias, groups, groups_kept, normalize, scaling});
  }
};

}  // namespace jetmoe::routing
