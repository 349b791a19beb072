// jetmoe/routing/noisy_top_k.hpp — noisy top-k gating for training (Shazeer et al., 2017).
//
//   n_e  = l_e + noise_std · N(0, 1)
//   choice = top-k of n;  gate_j = softmax over the k chosen noisy values
//
// The noise is a pure function of (seed, step, token, expert) — a counter-based generator —
// so a call is reproducible, independent of the thread count, and computable on a device.
// Advance `step` between batches to draw fresh noise. With noise_std = 0 this is exactly
// top_k_then_softmax. (The paper learns a per-expert noise scale from x; here it is a
// constant, the usual simplification once the router only sees logits.)
#pragma once

#include <cmath>
#include <cstdint>

#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

namespace rules {
// SplitMix64's finaliser: a strong 64-bit mix, the usual building block of counter RNGs.
JETMOE_HD inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A standard normal draw determined by the counter (Box–Muller on two 24-bit uniforms).
JETMOE_HD inline float standard_normal(std::uint64_t counter) {
  const std::uint64_t bits = mix64(counter);
  const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
  const float u2 = static_cast<float>((bits >> 8) & 0xFFFFFFu) * (1.0f / 16777216.0f);  // [0, 1)
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530717958647692f * u2);
}
}  // namespace rules

struct noisy_top_k {
  float noise_std = 1.0f;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;  // advance between batches

  struct row_rule {
    float noise_std;
    std::uint64_t stream;  // seed and step folded together

    index_t scratch_floats(index_t experts) const { return experts; }
    JETMOE_HD void operator()(index_t token, const float* logits, index_t experts, index_t k, float* noisy,
                              std::int32_t* ids, float* gates) const {
      for (index_t e = 0; e < experts; ++e) {
        const auto counter = stream ^ rules::mix64(static_cast<std::uint64_t>(token * experts + e));
        noisy[e] = logits[e] + noise_std * rules::standard_normal(counter);
      }
      rules::select_top_k(noisy, experts, k, ids, gates);
      rules::softmax(gates, gates, k);
    }
  };

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    check(std::isfinite(noise_std), "routing::noisy_top_k: noise_std = ", noise_std, " must be finite");
    check_route_arguments("routing::noisy_top_k", logits, k, k, expert_ids, gates);
    const std::uint64_t stream = rules::mix64(seed ^ rules::mix64(step + 0x5EEDull));
    route_rows(policy, logits, k, expert_ids, gates, row_rule{noise_std, stream});
  }
};

}  // namespace jetmoe::routing
