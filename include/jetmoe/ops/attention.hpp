// jetmoe/ops/attention.hpp — causal scaled-dot-product attention with grouped KV heads.
#pragma once

#include <cstdint>

#include "jetmoe/core/error.hpp"
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
  // Optional: where the policy computes (device memory on a device policy), the count K of
  // keys that hold data, read when the work runs rather than when it is queued. Keys K … Tk−1
  // are invisible and the queries are the last Tq of the K positions (q_offset = K − Tq; the
  // field above is then ignored). With k and v viewing a whole KV cache, one queued decode
  // step is right at every length, so it can be captured once in a CUDA graph and replayed.
  // K must lie in [Tq, Tk]: a host policy checks it, a device clamps it into [0, Tk].
  const std::int32_t* key_count = nullptr;
};

template <class Policy>
struct attention_impl {
  JETMOE_NO_BACKEND("ops::attention");
};

// q: (B, Tq, Hq, D); k, v: (B, Tk, Hkv, D); out: (B, Tq, Hq, D). All float, any strides with
// the last dimension contiguous. Hq must be a multiple of Hkv. Softmax in fp32.
// Backends (attention_impl<Policy>::run) receive arguments already checked here.
template <class Policy, class KvHeadMap = kv_head_modulo>
void attention(const Policy& policy, tensor_view<const float, 4> q, tensor_view<const float, 4> k,
               tensor_view<const float, 4> v, tensor_view<float, 4> out, const attention_options& options,
               KvHeadMap kv_head_of = {}) {
  // What every backend needs of its arguments, checked once here; backends add only their own
  // limits.
  const index_t batch = q.extent(0), q_heads = q.extent(2), head_dim = q.extent(3);
  const index_t k_len = k.extent(1), kv_heads = k.extent(2);
  check(k.extent(0) == batch && k.extent(3) == head_dim, "ops::attention: k ", k.extents(), " does not match q ",
        q.extents(), " (need the same batch and head dimension)");
  check_shape(v, k.extents(), "ops::attention: v must have the shape of k");
  check_shape(out, q.extents(), "ops::attention: out must have the shape of q");
  check(kv_heads >= 1 || q_heads == 0, "ops::attention: k ", k.extents(), " has no kv heads");
  check(kv_heads == 0 || q_heads % kv_heads == 0, "ops::attention: ", q_heads, " query heads are not a multiple of ",
        kv_heads, " kv heads");
  check(head_dim <= 1 || (q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1),
        "ops::attention: the head dimension must be contiguous in q, k, v and out");
  if (options.key_mask.data() != nullptr || !(options.key_mask.extents() == dims<2>{})) {
    check_shape(options.key_mask, make_dims(batch, k_len), "ops::attention: key_mask (B, Tk)");
    check(options.key_mask.data() != nullptr || options.key_mask.size() == 0, "ops::attention: key_mask ",
          options.key_mask.extents(), " has no data");
  }
  for (index_t h = 0; h < q_heads; ++h) {  // a mapper must stay inside the kv heads
    const index_t g = kv_head_of(static_cast<int>(h), static_cast<int>(q_heads), static_cast<int>(kv_heads));
    check(0 <= g && g < kv_heads, "ops::attention: query head ", h, " maps to kv head ", g, ", outside [0, ",
          kv_heads, ")");
  }
  attention_impl<Policy>::run(policy, q, k, v, out, options, kv_head_of);
}

}  // namespace jetmoe::ops
