// jetmoe/models/jetmoe/causal_lm.hpp — JetMoE as a causal language model: logits for every
// position, optional hidden states and router logits, and the training loss transformers reports.
//
//   loss = mean next-token cross-entropy (labels shifted by one, −100 ignored)
//          + aux_loss_coef · aux_loss
//   aux_loss = Switch/GShard load balancing over the router logits, in the order transformers
//              5.17 records them: per layer the attention router TWICE, then the MLP router
//              (3L tensors). `aux_loss_over_routers` gives the loss over the 2L real routers.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "jetmoe/core/tensor.hpp"
#include "jetmoe/models/jetmoe/model.hpp"
#include "jetmoe/routing/losses.hpp"

namespace jetmoe::models::jetmoe {

inline constexpr std::int64_t ignore_label = -100;  // as in PyTorch's cross_entropy

struct causal_lm_request {
  tensor_view<const std::int64_t, 2> input_ids;            // (B, S)
  tensor_view<const std::int64_t, 2> attention_mask{};     // (B, S) 1 = token, 0 = padding; empty = all tokens
  tensor_view<const std::int64_t, 2> labels{};             // (B, S) usually input_ids; empty = no loss
  bool hidden_states = false;
  bool router_logits = false;
};

struct causal_lm_output {
  tensor<float, 3> logits;        // (B, S, V)
  forward_trace trace;            // hidden states / router logits when asked (and router logits for the loss)
  std::optional<double> loss;     // with labels
  std::optional<double> aux_loss; // with labels or router logits
};

namespace detail {
// (B, S) int64 mask → (B, S) uint8 "is a token".
inline std::vector<std::uint8_t> token_flags(tensor_view<const std::int64_t, 2> mask) {
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(mask.size()));
  for (index_t b = 0; b < mask.extent(0); ++b)
    for (index_t s = 0; s < mask.extent(1); ++s)
      flags[static_cast<std::size_t>(b * mask.extent(1) + s)] = mask(b, s) != 0;
  return flags;
}

// Mean cross-entropy of logits[b, s] predicting labels[b, s + 1], in double.
inline double next_token_cross_entropy(tensor_view<const float, 3> logits, tensor_view<const std::int64_t, 2> labels) {
  const index_t B = logits.extent(0), S = logits.extent(1), V = logits.extent(2);
  check_shape(labels, make_dims(B, S), "causal_lm: labels (B, S)");
  double total = 0.0;
  index_t counted = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s + 1 < S; ++s) {
      const std::int64_t target = labels(b, s + 1);
      if (target == ignore_label) continue;
      check(0 <= target && target < V, "causal_lm: label ", target, " at (", b, ", ", s + 1, ") is outside [0, ", V, ")");
      double top = -INFINITY;
      for (index_t v = 0; v < V; ++v) top = std::max(top, static_cast<double>(logits(b, s, v)));
      double sum = 0.0;
      for (index_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(logits(b, s, v)) - top);
      total += top + std::log(sum) - static_cast<double>(logits(b, s, target));
      ++counted;
    }
  check(counted > 0, "causal_lm: no label to predict (every shifted label is ignored)");
  return total / static_cast<double>(counted);
}
}  // namespace detail

// The load-balancing loss as transformers 5.17 reports it (attention routers counted twice).
template <class Policy = exec::cpu>
double aux_loss(const forward_trace& trace, index_t top_k, tensor_view<const std::int64_t, 2> attention_mask = {},
                const Policy& policy = {}) {
  std::vector<tensor_view<const float, 2>> list;
  for (std::size_t l = 0; l < trace.mlp_router_logits.size(); ++l) {
    list.push_back(trace.attention_router_logits[l].view());
    list.push_back(trace.attention_router_logits[l].view());
    list.push_back(trace.mlp_router_logits[l].view());
  }
  return routing::load_balancing_loss(policy, list, top_k, attention_mask);
}

// The same loss over the 2L real routers, each once.
template <class Policy = exec::cpu>
double aux_loss_over_routers(const forward_trace& trace, index_t top_k,
                             tensor_view<const std::int64_t, 2> attention_mask = {}, const Policy& policy = {}) {
  std::vector<tensor_view<const float, 2>> list;
  for (std::size_t l = 0; l < trace.mlp_router_logits.size(); ++l) {
    list.push_back(trace.attention_router_logits[l].view());
    list.push_back(trace.mlp_router_logits[l].view());
  }
  return routing::load_balancing_loss(policy, list, top_k, attention_mask);
}

template <class Model>
causal_lm_output causal_lm_forward(Model& m, const causal_lm_request& request) {
  const index_t B = request.input_ids.extent(0), S = request.input_ids.extent(1), V = m.cfg().vocab_size;
  std::vector<std::uint8_t> flags;
  tensor_view<const std::uint8_t, 2> real;
  if (request.attention_mask.data() != nullptr) {
    check_shape(request.attention_mask, make_dims(B, S), "causal_lm: attention_mask (B, S)");
    flags = detail::token_flags(request.attention_mask);
    real = make_view<const std::uint8_t>(flags.data(), B, S);
  }
  const bool want_loss = request.labels.data() != nullptr;

  causal_lm_output out;
  out.trace.keep_hidden_states = request.hidden_states;
  out.trace.keep_router_logits = request.router_logits || want_loss;
  const tensor_view<const float, 2> hidden = m.forward(request.input_ids, real, &out.trace);  // (B·S, H)
  out.logits = tensor<float, 3>(make_dims(B, S, V));
  m.logits_to_host(hidden, out.logits.view().reshape(make_dims(B * S, V)));

  if (out.trace.keep_router_logits) out.aux_loss = aux_loss(out.trace, m.cfg().top_k, request.attention_mask);
  if (want_loss)
    out.loss = detail::next_token_cross_entropy(out.logits.view(), request.labels) + m.cfg().aux_loss_coef * *out.aux_loss;
  return out;
}

}  // namespace jetmoe::models::jetmoe
