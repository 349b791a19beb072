// jetmoe/models/jetmoe/sequence_classification.hpp — JetMoE with a classification head:
// logits = score.weight · h at the last non-padding token of each row (no bias).
//
// The pooled position is the last one whose id differs from pad_token_id, as transformers
// picks it (so right padding is skipped; a row with no padding pools its last token). Without
// a pad_token_id every row pools its last token.
#pragma once

#include <cstdint>

#include "jetmoe/core/tensor.hpp"
#include "jetmoe/models/jetmoe/model.hpp"

namespace jetmoe::models::jetmoe {

// input_ids: (B, S). Returns (B, num_labels) logits. The model's weights must hold score.weight.
template <class Model>
tensor<float, 2> classify(Model& m, tensor_view<const std::int64_t, 2> input_ids) {
  const auto& score = m.params().score;
  check(score.has_value(), "jetmoe classify: the checkpoint has no score.weight (not a sequence-classification model)");
  const index_t B = input_ids.extent(0), S = input_ids.extent(1), H = m.cfg().hidden_size;
  const index_t labels = score->extent(0);

  using policy_type = typename Model::policy_type;
  const policy_type& policy = m.policy();
  const tensor_view<const float, 2> hidden = m.forward(input_ids);  // (B·S, H) model's memory
  tensor<float, 2, policy_type> pooled(policy, make_dims(B, H));    // (B, H)
  for (index_t b = 0; b < B; ++b) {
    index_t last = S - 1;
    if (const auto pad = m.cfg().pad_token_id) {
      last = 0;
      for (index_t s = 0; s < S; ++s)
        if (input_ids(b, s) != *pad) last = s;
    }
    ops::copy<policy_type, 2>(policy, hidden.slice(0, b * S + last, b * S + last + 1), pooled.view().slice(0, b, b + 1));
  }
  tensor<float, 2, policy_type> logits(policy, make_dims(B, labels));  // (B, num_labels)
  ops::linear(policy, tensor_view<const float, 2>(pooled.view()), score->view(), logits.view());
  return to_host(policy, tensor_view<const float, 2>(logits.view()));
}

}  // namespace jetmoe::models::jetmoe
