// bench/routing_distributions.hpp — the routing distributions every MoE benchmark imposes
// (CPU bench_moe and GPU bench_cuda; bench/peers_gpu.py draws the same ones in PyTorch).
//
//   uniform     each token draws k distinct experts uniformly
//   zipf        expert e is drawn with weight 1/(e+1) (Zipf, s = 1), k distinct per token
//   one-expert  every token picks experts 0 … k−1 (top-k picks are distinct, so this is all the
//               load on the fewest experts possible; expert 0 is each token's first choice)
//
// The suites impose the drawn ids on JetMoE's real top-k-then-softmax rule by adding a large
// bias (steering_bias) to the router logits of each token's drawn experts, so the router, the
// plan and every later stage do their normal work on the skewed assignment. Plain C++: no
// Eigen, no CUDA, so both suites can include it.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "jetmoe/core/shape.hpp"

namespace jetmoe_bench {

using jetmoe::index_t;

// Far above the spread of the router logits of random weights and inputs: the drawn experts
// always win. Equal for all k chosen experts, so it cancels in the softmax over them.
inline constexpr float steering_bias = 64.0f;

enum class distribution { uniform, zipf, one_expert };
inline constexpr distribution distributions[] = {distribution::uniform, distribution::zipf, distribution::one_expert};

inline const char* name_of(distribution d) {
  switch (d) {
    case distribution::uniform: return "uniform";
    case distribution::zipf: return "zipf";
    case distribution::one_expert: return "one-expert";
  }
  return "?";
}

// (T, k) distinct expert ids per token, row-major, drawn from the distribution.
inline std::vector<std::int32_t> draw_experts(distribution d, index_t tokens, index_t experts, index_t k,
                                              std::uint64_t seed) {
  std::vector<std::int32_t> chosen(static_cast<std::size_t>(tokens * k));
  std::mt19937_64 rng(seed);
  const auto unit = [&] { return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0); };  // [0, 1)
  std::vector<double> weight(static_cast<std::size_t>(experts));
  for (index_t e = 0; e < experts; ++e)
    weight[static_cast<std::size_t>(e)] = d == distribution::zipf ? 1.0 / static_cast<double>(e + 1) : 1.0;
  std::vector<std::int32_t> pool(static_cast<std::size_t>(experts));
  for (index_t t = 0; t < tokens; ++t) {
    std::int32_t* row = &chosen[static_cast<std::size_t>(t * k)];
    if (d == distribution::one_expert) {
      for (index_t j = 0; j < k; ++j) row[j] = static_cast<std::int32_t>(j);
      continue;
    }
    // Weighted draws without replacement: remove each pick from the pool.
    for (index_t e = 0; e < experts; ++e) pool[static_cast<std::size_t>(e)] = static_cast<std::int32_t>(e);
    index_t remaining = experts;
    for (index_t j = 0; j < k; ++j) {
      double total = 0.0;
      for (index_t i = 0; i < remaining; ++i) total += weight[static_cast<std::size_t>(pool[static_cast<std::size_t>(i)])];
      double target = unit() * total;
      index_t pick = remaining - 1;
      for (index_t i = 0; i < remaining; ++i) {
        target -= weight[static_cast<std::size_t>(pool[static_cast<std::size_t>(i)])];
        if (target < 0.0) {
          pick = i;
          break;
        }
      }
      row[j] = pool[static_cast<std::size_t>(pick)];
      pool[static_cast<std::size_t>(pick)] = pool[static_cast<std::size_t>(remaining - 1)];
      --remaining;
    }
  }
  return chosen;
}

// Rows each expert receives under `chosen` (E), and how many experts receive any.
inline std::vector<index_t> expert_counts(const std::vector<std::int32_t>& chosen, index_t experts) {
  std::vector<index_t> counts(static_cast<std::size_t>(experts), 0);
  for (const std::int32_t e : chosen) ++counts[static_cast<std::size_t>(e)];
  return counts;
}
inline index_t experts_receiving(const std::vector<index_t>& counts) {
  index_t used = 0;
  for (const index_t c : counts) used += c > 0 ? 1 : 0;
  return used;
}

// (T, E) row-major: steering_bias at each token's drawn experts, 0 elsewhere.
inline std::vector<float> steering_logit_bias(const std::vector<std::int32_t>& chosen, index_t tokens, index_t experts,
                                              index_t k) {
  std::vector<float> bias(static_cast<std::size_t>(tokens * experts), 0.0f);
  for (index_t t = 0; t < tokens; ++t)
    for (index_t j = 0; j < k; ++j)
      bias[static_cast<std::size_t>(t * experts + chosen[static_cast<std::size_t>(t * k + j)])] += steering_bias;
  return bias;
}

}  // namespace jetmoe_bench
