// jetmoe/ops/cpu/attention.hpp — CPU backend of ops::attention.
//
// One task per (batch, query head, query): scores against the visible keys, fp32 softmax,
// then the probability-weighted sum of value rows. Every row's arithmetic is sequential in key
// order, so results do not depend on the thread count. K and V may be strided views of a KV
// cache; only the head dimension has to be contiguous.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/attention.hpp"
#include "jetmoe/ops/cpu/dot.hpp"

namespace jetmoe::ops {

template <>
struct attention_impl<exec::cpu> {
  // q: (B, Tq, Hq, D); k, v: (B, Tk, Hkv, D); out: (B, Tq, Hq, D).
  template <class KvHeadMap>
  static void run(const exec::cpu& policy, tensor_view<const float, 4> q, tensor_view<const float, 4> k,
                  tensor_view<const float, 4> v, tensor_view<float, 4> out, const attention_options& options,
                  KvHeadMap kv_head_of) {
    const index_t batch = q.extent(0), q_len = q.extent(1), q_heads = q.extent(2), head_dim = q.extent(3);
    const index_t kv_heads = k.extent(2);
    index_t k_len = k.extent(1), q_offset = options.q_offset;
    if (options.key_count != nullptr) {  // host memory here: read it now
      const index_t count = *options.key_count;
      check(q_len <= count && count <= k_len, "ops::attention: key_count ", count, " is outside [Tq, Tk] = [", q_len,
            ", ", k_len, "]");
      k_len = count;
      q_offset = count - q_len;
    }
    const auto& mask = options.key_mask;  // (B, Tk), nonzero = attend
    const bool has_mask = mask.data() != nullptr || !(mask.extents() == dims<2>{});

    // Resolve the head mapping once (ops::attention checked it stays inside the kv heads).
    std::vector<index_t> kv_head(static_cast<std::size_t>(q_heads));  // (Hq)
    for (index_t h = 0; h < q_heads; ++h)
      kv_head[h] = kv_head_of(static_cast<int>(h), static_cast<int>(q_heads), static_cast<int>(kv_heads));
    if (out.empty()) return;

    exec::parallel_for(policy, batch * q_heads * q_len, 4 * k_len * head_dim, [&](std::ptrdiff_t task) {
      const index_t i = task % q_len;  // query
      const index_t h = (task / q_len) % q_heads;
      const index_t b = task / (q_len * q_heads);
      const index_t g = kv_head[h];
      const float* query = &q(b, i, h, 0);  // (D)
      float* result = &out(b, i, h, 0);     // (D)

      // Keys j < visible_end may be seen: causality cuts at q_offset + i (inclusive).
      index_t visible_end = k_len;
      if (options.causal) visible_end = std::clamp<index_t>(q_offset + i + 1, 0, k_len);

      thread_local std::vector<float> scores;  // (Tk) scaled q·k, then exp(· − max)
      scores.resize(static_cast<std::size_t>(std::max<index_t>(visible_end, 1)));
      float max_score = -std::numeric_limits<float>::infinity();
      bool any_visible = false;
      for (index_t j = 0; j < visible_end; ++j) {
        if (has_mask && mask(b, j) == 0) continue;
        scores[j] = options.scale * cpu_detail::dot(query, &k(b, j, g, 0), head_dim);
        max_score = any_visible ? std::max(max_score, scores[j]) : scores[j];
        any_visible = true;
      }
      for (index_t d = 0; d < head_dim; ++d) result[d] = 0.0f;
      if (!any_visible) return;  // a query that sees no key outputs zeros

      float sum = 0.0f;
      for (index_t j = 0; j < visible_end; ++j) {
        if (has_mask && mask(b, j) == 0) continue;
        const float weight = std::exp(scores[j] - max_score);
        sum += weight;
        const float* value = &v(b, j, g, 0);  // (D)
        for (index_t d = 0; d < head_dim; ++d) result[d] += weight * value[d];
      }
      const float inverse_sum = 1.0f / sum;
      for (index_t d = 0; d < head_dim; ++d) result[d] *= inverse_sum;
    });
  }
};

}  // namespace jetmoe::ops
