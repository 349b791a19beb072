// jetmoe/models/jetmoe/weights.hpp — JetMoE's parameters: loaded from a Hugging Face
// checkpoint, or drawn at random for any shape (benchmarks, tests).
//
// W is the storage type of every weight (float, bf16 or half); compute is fp32 whatever W is.
// Loading converts the checkpoint's dtype to W (exact when widening, round-to-nearest-even
// when narrowing).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "jetmoe/core/tensor.hpp"
#include "jetmoe/exec/transfer.hpp"
#include "jetmoe/io/checkpoint.hpp"
#include "jetmoe/models/jetmoe/config.hpp"
#include "jetmoe/routing/mixture_of_attention.hpp"
#include "jetmoe/routing/moe_mlp.hpp"

namespace jetmoe::models::jetmoe {

// Policy says where the tensors live: host memory (exec::cpu, what loading produces) or a
// device's (place_weights copies them there once).
template <class W, exec::execution_policy Policy = exec::cpu>
struct layer_weights {
  tensor<W, 1, Policy> input_norm;           // (H)
  tensor<W, 2, Policy> attention_router;     // (E, H)
  tensor<W, 3, Policy> attention_input;      // (E, Dq, H)   per-expert query projection
  tensor<W, 3, Policy> attention_output;     // (E, H, Dq)   per-expert output projection
  tensor<W, 1, Policy> attention_bias;       // (H)
  tensor<W, 2, Policy> kv_proj;              // (2·Dq, H)    shared keys then values
  tensor<W, 1, Policy> post_attention_norm;  // (H)
  tensor<W, 2, Policy> mlp_router;           // (E, H)
  tensor<W, 3, Policy> mlp_input;            // (E, 2I, H)
  tensor<W, 3, Policy> mlp_output;           // (E, H, I)
  tensor<W, 1, Policy> mlp_bias;             // (H)

  routing::moa_weights<W> moa() const {
    return {attention_router.view(), attention_input.view(), attention_output.view(), attention_bias.view()};
  }
  routing::moe_mlp_weights<W> mlp() const {
    return {mlp_router.view(), mlp_input.view(), mlp_output.view(), mlp_bias.view()};
  }
};

template <class W, exec::execution_policy Policy = exec::cpu>
struct weights {
  using policy_type = Policy;
  tensor<W, 2, Policy> embed_tokens;                  // (V, H)
  std::vector<layer_weights<W, Policy>> layers;       // L
  tensor<W, 1, Policy> final_norm;                    // (H)
  std::optional<tensor<W, 2, Policy>> lm_head;        // (V, H), only when embeddings are not tied
  std::optional<tensor<W, 2, Policy>> score;          // (num_labels, H), sequence-classification head

  // Whether next-token logits can be computed: tied embeddings, or an lm_head.
  bool tied = true;
  bool has_lm_head() const { return tied || lm_head.has_value(); }
  // The matrix the logits are computed with: lm_head, or the embeddings when tied.
  tensor_view<const W, 2> output_embedding() const {
    check(has_lm_head(), "jetmoe weights: untied embeddings without lm_head.weight (a classifier checkpoint) give no LM logits");
    return lm_head ? lm_head->view() : embed_tokens.view();
  }

  std::size_t parameter_count() const {
    std::size_t total = embed_tokens.size() + final_norm.size();
    if (lm_head) total += lm_head->size();
    if (score) total += score->size();
    for (const auto& l : layers)
      total += l.input_norm.size() + l.attention_router.size() + l.attention_input.size() +
               l.attention_output.size() + l.attention_bias.size() + l.kv_proj.size() + l.post_attention_norm.size() +
               l.mlp_router.size() + l.mlp_input.size() + l.mlp_output.size() + l.mlp_bias.size();
    return total;
  }
};

// Shapes every tensor must have, from the config: one place, used by loading, random
// weights and placement.
struct weight_shapes {
  index_t V, H, E, Dq, I;
  explicit weight_shapes(const config& c)
      : V(c.vocab_size), H(c.hidden_size), E(c.num_experts), Dq(c.query_width()), I(c.intermediate_size) {}
};

namespace detail {
inline std::string layer_prefix(std::int64_t l) { return "model.layers." + std::to_string(l) + "."; }

// Visits every (tensor, checkpoint name, shape) of the model in a fixed order, so loading,
// random weights and placement share one list of names and shapes. On non-const weights it
// adds each layer as it reaches it (and drops any past the config's), so a config that claims
// two billion layers fails at the first tensor the checkpoint lacks, not in a huge allocation.
template <class Weights, class Visit>
void for_each_weight(Weights& w, const config& c, Visit&& visit) {
  const weight_shapes s(c);
  visit(w.embed_tokens, "model.embed_tokens.weight", make_dims(s.V, s.H));
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    if constexpr (!std::is_const_v<Weights>)
      if (w.layers.size() <= static_cast<std::size_t>(l)) w.layers.emplace_back();
    auto& lw = w.layers.at(static_cast<std::size_t>(l));
    const std::string p = layer_prefix(l);
    visit(lw.input_norm, p + "input_layernorm.weight", make_dims(s.H));
    visit(lw.attention_router, p + "self_attention.experts.router.layer.weight", make_dims(s.E, s.H));
    visit(lw.attention_input, p + "self_attention.experts.input_linear.weight", make_dims(s.E, s.Dq, s.H));
    visit(lw.attention_output, p + "self_attention.experts.output_linear.weight", make_dims(s.E, s.H, s.Dq));
    visit(lw.attention_bias, p + "self_attention.experts.bias", make_dims(s.H));
    visit(lw.kv_proj, p + "self_attention.kv_proj.weight", make_dims(2 * s.Dq, s.H));
    visit(lw.post_attention_norm, p + "post_attention_layernorm.weight", make_dims(s.H));
    visit(lw.mlp_router, p + "mlp.router.layer.weight", make_dims(s.E, s.H));
    visit(lw.mlp_input, p + "mlp.input_linear.weight", make_dims(s.E, 2 * s.I, s.H));
    visit(lw.mlp_output, p + "mlp.output_linear.weight", make_dims(s.E, s.H, s.I));
    visit(lw.mlp_bias, p + "mlp.bias", make_dims(s.H));
  }
  visit(w.final_norm, "model.norm.weight", make_dims(s.H));
  if constexpr (!std::is_const_v<Weights>) w.layers.resize(static_cast<std::size_t>(c.num_layers));
}
}  // namespace detail

// Reads every tensor the config calls for; a missing tensor or a wrong shape is a jetmoe::error
// naming the tensor and the file. `lm_head.weight` is required when embeddings are untied;
// `score.weight` (num_labels, H) is loaded when present.
template <class W>
weights<W> load_weights(const io::checkpoint& ckpt, const config& c) {
  c.validate(ckpt.directory().string());
  weights<W> w;
  w.tied = c.tie_word_embeddings;
  detail::for_each_weight(w, c, [&](auto& target, const std::string& name, const auto& shape) {
    using tensor_type = std::remove_reference_t<decltype(target)>;
    target = ckpt.template read<W, tensor_type::rank>(name, shape);
  });
  const weight_shapes s(c);
  if (ckpt.contains("score.weight")) {
    // (num_labels, H), as transformers requires: a head of another width would silently give
    // logits for labels the config does not name.
    w.score = ckpt.template read<W, 2>("score.weight", make_dims(c.num_labels, s.H));
  }
  if (!c.tie_word_embeddings) {
    // A classifier checkpoint has score.weight instead of an LM head.
    check(ckpt.contains("lm_head.weight") || w.score.has_value(), ckpt.directory().string(),
          ": tie_word_embeddings is false but the checkpoint has neither lm_head.weight nor score.weight");
    if (ckpt.contains("lm_head.weight")) w.lm_head = ckpt.template read<W, 2>("lm_head.weight", make_dims(s.V, s.H));
  }
  return w;
}

// Random weights of the config's shape: matrices uniform with standard deviation `stddev`
// (transformers' initializer_range is 0.02 for jetmoe-8b), norms 1, biases 0. Deterministic for
// a seed whatever the thread count: every tensor is cut into fixed chunks with their own streams.
template <class W>
weights<W> random_weights(const config& c, std::uint64_t seed, float stddev = 0.02f,
                          const exec::cpu& policy = exec::cpu{}) {
  c.validate("random_weights");
  weights<W> w;
  w.tied = c.tie_word_embeddings;
  std::uint64_t tensor_index = 0;
  const float half_width = stddev * std::sqrt(3.0f);  // uniform(−a, a) has stddev a/√3
  detail::for_each_weight(w, c, [&](auto& target, const std::string& name, const auto& shape) {
    using tensor_type = std::remove_reference_t<decltype(target)>;
    target = tensor_type(policy, shape);
    const bool is_norm = name.ends_with("layernorm.weight") || name == "model.norm.weight";
    const bool is_bias = name.ends_with(".bias");
    W* data = target.data();
    const index_t n = target.size();
    constexpr index_t chunk = 1 << 16;
    const std::uint64_t stream = seed * 0x9E3779B97F4A7C15ull + (++tensor_index) * 0xBF58476D1CE4E5B9ull;
    exec::parallel_for(policy, (n + chunk - 1) / chunk, [&](std::ptrdiff_t block) {
      std::uint64_t state = stream ^ (static_cast<std::uint64_t>(block) * 0x94D049BB133111EBull);
      const index_t end = std::min<index_t>(n, (block + 1) * chunk);
      for (index_t i = block * chunk; i < end; ++i) {
        float value = is_norm ? 1.0f : 0.0f;
        if (!is_norm && !is_bias) {
          state += 0x9E3779B97F4A7C15ull;  // splitmix64: fast and well mixed
          std::uint64_t z = state;
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          z ^= z >> 31;
          const float unit = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
          value = (2.0f * unit - 1.0f) * half_width;
        }
        data[i] = from_float<W>(value);
      }
    });
  });
  if (!c.tie_word_embeddings) {
    // Untied heads get the embedding values again: enough for shapes and timing.
    w.lm_head = w.embed_tokens.clone();
  }
  return w;
}

// The weights where `policy` computes. For exec::cpu they already are: returned as they are.
template <class W>
weights<W> place_weights(const exec::cpu&, weights<W> host, const config&) {
  return host;
}

// For a device policy: every tensor copied once into the policy's memory, in the order
// for_each_weight visits them. Unqualified transfer calls find the policy's own (exec/cuda.cuh).
template <class W, exec::execution_policy Policy>
  requires(!Policy::is_host)
weights<W, Policy> place_weights(const Policy& policy, const weights<W>& host, const config& c) {
  struct source {
    const W* data;
    index_t size;
  };
  std::vector<source> sources;  // each host tensor, in visiting order
  detail::for_each_weight(host, c, [&](const auto& t, const std::string&, const auto&) {
    sources.push_back({t.data(), t.size()});
  });
  weights<W, Policy> out;
  out.tied = host.tied;
  std::size_t next = 0;
  detail::for_each_weight(out, c, [&](auto& target, const std::string& name, const auto& shape) {
    const source from = sources.at(next++);
    check(from.size == shape.product(), "place_weights: host tensor ", name, " has ", from.size,
          " elements, the config's shape ", shape, " needs ", shape.product());
    target = to_device(policy, tensor_view<const W, std::remove_cvref_t<decltype(target)>::rank>(from.data, shape));
  });
  if (host.lm_head) out.lm_head = to_device(policy, host.lm_head->view());
  if (host.score) out.score = to_device(policy, host.score->view());
  return out;
}

}  // namespace jetmoe::models::jetmoe
