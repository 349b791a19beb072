// jetmoe/ops/attention.hpp — causal scaled-dot-product attention with grouped KV heads.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

// Which KV head a query head reads. JetMoE lays its K·Hkv query heads out slot-major, so
// query head j reads kv head j mod Hkv; Llama-style GQA groups consecutive heads instead.
struct kv_head_modulo {
  JETMOE_HD int operator()(int q_head, int /*num_q_heads*/, int num_kv_heads) const { return q_head % num_kv_heads; }
};
struct kv_head_grouped {
  JETMOE_HD int operator()(int q_head, int num_q_heads, int num_kv_heads) const {
    return q_head / (num_q_heads / num_kv_heads);
  }
};

struct attention_options {
  float scale = 1.0f;             // usually 1/√D
  std::int64_t q_offset = 0;      // query i sits at key position q_offset + i (the cached length)
  bool causal = true;             // key j is visible to query i iff j ≤ q_offset + i
  // Optional (B, Tk) mask, nonzero = attend. A query that sees no key outputs zeros.
  tensor_view<const std::uint8_t, 2> key_mask{};
};

template <class Policy>
struct attention_impl {
  JETMOE_NO_BACKEND("ops::attention");
};

// q: (B, Tq, Hq, D); k, v: (B, Tk, Hkv, D); out: (B, Tq, Hq, D). All float, any strides with
// the last dimension contiguous. Hq must be a multiple of Hkv. Softmax in fp32.
template <class Policy, class KvHeadMap = kv_head_modulo>
void attention(const Policy& policy, tensor_view<const float, 4> q, tensor_view<const float, 4> k,
               tensor_view<const float, 4> v, tensor_view<float, 4> out, const attention_options& options,
               KvHeadMap kv_head_of = {}) {
  attention_impl<Policy>::run(policy, q, k, v, out, options, kv_head_of);
}

}  // namespace jetmoe::ops
