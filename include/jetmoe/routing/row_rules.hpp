// jetmoe/routing/row_rules.hpp — routers that decide each token on its own, and the one
// backend kernel that runs them.
//
// Most routing rules read one token's E logits and write that token's S slots. Such a rule
// is a small functor (a "row rule"); `route_rows` applies it to every token. A backend only
// has to implement route_rows once (CPU: a parallel loop; CUDA: a thread per token) and every
// row-wise router runs on it. The helpers here are plain loops marked JETMOE_HD so that the
// same rule compiles for the device.
//
// A row rule provides:
//   index_t scratch_floats(index_t E) const;              // per-token scratch it needs
//   void operator()(index_t token, const float* logits,   // (E)
//                   index_t E, index_t k, float* scratch,
//                   std::int32_t* ids, float* gates) const; // (S) each
#pragma once

#include <cmath>
#include <cstdint>

#include "jetmoe/config.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::routing {

template <class Policy>
struct route_rows_impl {
  JETMOE_NO_BACKEND("routing::route_rows");
};

// logits: (T, E); expert_ids, gates: (T, S), rows contiguous. Applies `rule` to every token.
template <class Policy, class RowRule>
void route_rows(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
                tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates, const RowRule& rule) {
  route_rows_impl<Policy>::run(policy, logits, k, expert_ids, gates, rule);
}

namespace rules {

// Does score a (at index ia) rank before score b (at ib)? Higher first, NaN last, and on
// equal scores the lower index first: the library-wide tie rule.
JETMOE_HD inline bool ranks_before(float a, index_t ia, float b, index_t ib) {
  const bool a_nan = a != a, b_nan = b != b;
  if (a_nan || b_nan) return !a_nan || (b_nan && ia < ib);
  if (a != b) return a > b;
  return ia < ib;
}

// The k best of scores[0..n) in rank order: ids[j] and values[j] for j < k. Insertion into a
// sorted list of k: O(n·k), which beats sorting for the small k routers use, and visiting
// candidates in index order makes the tie rule fall out (an equal later score never moves up).
JETMOE_HD inline void select_top_k(const float* scores, index_t n, index_t k, std::int32_t* ids, float* values) {
  index_t filled = 0;
  for (index_t e = 0; e < n; ++e) {
    const float v = scores[e];
    if (filled == k && !ranks_before(v, e, values[k - 1], ids[k - 1])) continue;
    index_t pos = filled < k ? filled++ : k - 1;
    while (pos > 0 && ranks_before(v, e, values[pos - 1], ids[pos - 1])) {
      values[pos] = values[pos - 1];
      ids[pos] = ids[pos - 1];
      --pos;
    }
    values[pos] = v;
    ids[pos] = static_cast<std::int32_t>(e);
  }
}

// out[i] = exp(in[i] − max) / Σ exp(in[j] − max), the stable form torch uses. in may be out.
JETMOE_HD inline void softmax(const float* in, float* out, index_t n) {
  float max_value = in[0];
  for (index_t i = 1; i < n; ++i) max_value = in[i] > max_value ? in[i] : max_value;
  float sum = 0.0f;
  for (index_t i = 0; i < n; ++i) {
    out[i] = std::exp(in[i] - max_value);
    sum += out[i];
  }
  const float inv = 1.0f / sum;
  for (index_t i = 0; i < n; ++i) out[i] *= inv;
}

JETMOE_HD inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Unused slots beyond the first `used`.
JETMOE_HD inline void clear_slots(std::int32_t* ids, float* gates, index_t used, index_t slots) {
  for (index_t j = used; j < slots; ++j) {
    ids[j] = -1;
    gates[j] = 0.0f;
  }
}

}  // namespace rules
}  // namespace jetmoe::routing
