// bench/model_cost.hpp — what the end-to-end benchmarks (CPU bench_e2e, GPU bench_cuda) share:
// the JetMoE-8B shape, the work and bytes of prefill and decode from a config alone (for the
// floors every result is compared with), and seeded random prompts.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "jetmoe/models/jetmoe/config.hpp"

namespace jetmoe_bench {

namespace jm = jetmoe::models::jetmoe;
using jetmoe::index_t;

// jetmoe/jetmoe-8b's config.json: 8.5B parameters, 2.2B active per token.
inline jm::config jetmoe_8b_config() {
  jm::config c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.num_layers = 24;
  c.num_experts = 8;
  c.top_k = 2;
  c.num_kv_heads = 16;
  c.kv_channels = 128;
  c.intermediate_size = 5632;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  return c;
}


// Parameter counts and the work of prefill / decode, from the config alone.
struct model_cost {
  double H, E, k, Dq, I, V, L, Hkv, D;
  explicit model_cost(const jm::config& c)
      : H(c.hidden_size), E(c.num_experts), k(c.top_k), Dq(c.query_width()), I(c.intermediate_size), V(c.vocab_size),
        L(c.num_layers), Hkv(c.num_kv_heads), D(c.kv_channels) {}

  double moa_expert_params() const { return 2.0 * Dq * H; }  // query + output projection
  double mlp_expert_params() const { return 3.0 * H * I; }    // W_in (2I × H) + W_out (H × I)
  double shared_layer_params() const { return 2.0 * E * H + 2.0 * Dq * H + 4.0 * H; }  // routers, kv_proj, norms, biases
  double total_params() const {
    return V * H + H + L * (shared_layer_params() + E * (moa_expert_params() + mlp_expert_params()));
  }
  // Multiply-adds per token in the layers' matrices (k experts per routed block).
  double active_matrix_params() const { return L * (shared_layer_params() + k * (moa_expert_params() + mlp_expert_params())); }
  // FLOPs of query–key and probability–value products for one query against `keys` keys.
  double attention_flops(double keys) const { return L * 4.0 * k * Hkv * D * keys; }

  double prefill_flops(double batch, double prompt) const {
    const double key_pairs = prompt * (prompt + 1.0) / 2.0;  // causal
    return batch * (2.0 * active_matrix_params() * prompt + attention_flops(key_pairs) + 2.0 * V * H);
  }
  double distinct_experts(double batch) const { return E * (1.0 - std::pow(1.0 - k / E, batch)); }
  // Bytes one decode step must read: every shared weight, the experts the batch's tokens
  // select, the tied output embedding, and the KV cache so far, kv_bytes per element (4: the
  // library's fp32 cache, what the CPU suite holds it to; bench_cuda passes 2, a bf16 cache, the
  // least any GPU implementation compared here keeps, so that one floor serves all of them).
  double decode_bytes(double batch, double cached, double kv_bytes = 4.0) const {
    const double weights = L * (shared_layer_params() + distinct_experts(batch) * (moa_expert_params() + mlp_expert_params())) + V * H;
    return 2.0 * weights + kv_bytes * L * batch * cached * 2.0 * Dq;
  }
  double decode_flops(double batch, double cached) const {
    return batch * (2.0 * active_matrix_params() + attention_flops(cached + 1.0) + 2.0 * V * H);
  }
};

// `batch` prompts of `length` tokens: BOS, then ids drawn from [3, vocab) with a fixed seed.
inline std::vector<std::vector<std::int64_t>> random_prompts(index_t batch, index_t length, index_t vocab) {
  std::mt19937_64 rng(7);
  std::vector<std::vector<std::int64_t>> prompts(static_cast<std::size_t>(batch));
  for (auto& p : prompts) {
    p.push_back(1);  // BOS
    while (static_cast<index_t>(p.size()) < length) p.push_back(3 + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(vocab - 3)));
  }
  return prompts;
}

}  // namespace jetmoe_bench
