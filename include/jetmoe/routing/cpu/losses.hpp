// jetmoe/routing/cpu/losses.hpp — CPU backend of the auxiliary losses. Serial: a few hundred
// thousand rows of E logits at most, far from anything worth threading.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/losses.hpp"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

template <>
struct losses_impl<exec::cpu> {
  // log Σ exp(l), stable, in double.
  static double log_sum_exp(const float* logits, index_t experts) {
    double max_value = logits[0];
    for (index_t e = 1; e < experts; ++e) max_value = std::max<double>(max_value, logits[e]);
    double sum = 0.0;
    for (index_t e = 0; e < experts; ++e) sum += std::exp(static_cast<double>(logits[e]) - max_value);
    return max_value + std::log(sum);
  }

  // Calls body(row pointer) for every row of every tensor the mask keeps; returns that count.
  template <class Mask, class Body>
  static index_t for_each_kept_row(router_logits_list logits, tensor_view<const Mask, 2> mask, Body&& body) {
    index_t kept = 0;
    for (const auto& tensor : logits)
      for (index_t r = 0; r < tensor.extent(0); ++r) {
        if (mask.data() != nullptr && mask(r / mask.extent(1), r % mask.extent(1)) == Mask{0}) continue;
        body(&tensor(r, 0));
        ++kept;
      }
    return kept;
  }

  template <class Mask>
  static double load_balancing(const exec::cpu&, router_logits_list logits, index_t top_k,
                               tensor_view<const Mask, 2> mask) {
    const index_t experts = logits[0].extent(1);
    std::vector<double> chosen(static_cast<std::size_t>(top_k * experts), 0.0);  // (k, E) row counts
    std::vector<double> prob_sum(static_cast<std::size_t>(experts), 0.0);        // (E)
    std::vector<float> probs(static_cast<std::size_t>(experts));                 // (E) one row
    std::vector<std::int32_t> ids(static_cast<std::size_t>(top_k));              // (k)
    std::vector<float> values(static_cast<std::size_t>(top_k));                  // (k)
    // Softmax in fp32 like the reference, so the top-k choice sees the same numbers.
    const index_t rows = for_each_kept_row(logits, mask, [&](const float* row) {
      rules::softmax(row, probs.data(), experts);
      rules::select_top_k(probs.data(), experts, top_k, ids.data(), values.data());
      for (index_t j = 0; j < top_k; ++j) chosen[j * experts + ids[j]] += 1.0;
      for (index_t e = 0; e < experts; ++e) prob_sum[e] += probs[e];
    });
    check(rows > 0, "routing::load_balancing_loss: the attention mask keeps no rows");
    double total = 0.0;
    for (index_t j = 0; j < top_k; ++j)
      for (index_t e = 0; e < experts; ++e) total += (chosen[j * experts + e] / rows) * (prob_sum[e] / rows);
    return static_cast<double>(experts) * total;
  }

  template <class Mask>
  static double z_loss(const exec::cpu&, router_logits_list logits, tensor_view<const Mask, 2> mask) {
    const index_t experts = logits[0].extent(1);
    double sum = 0.0;
    const index_t rows = for_each_kept_row(logits, mask, [&](const float* row) {
      const double lse = log_sum_exp(row, experts);
      sum += lse * lse;
    });
    check(rows > 0, "routing::router_z_loss: the attention mask keeps no rows");
    return sum / static_cast<double>(rows);
  }

  static double switch_plus_z(const exec::cpu&, tensor_view<const float, 2> logits, index_t top_k, double z_weight) {
    const index_t tokens = logits.extent(0), experts = logits.extent(1);
    check(tokens > 0, "routing::switch_plus_z_loss: no rows of logits");
    std::vector<double> prob_sum(static_cast<std::size_t>(experts), 0.0);  // (E)
    std::vector<double> chosen(static_cast<std::size_t>(experts), 0.0);    // (E)
    std::vector<float> probs(static_cast<std::size_t>(experts));           // (E)
    std::vector<std::int32_t> ids(static_cast<std::size_t>(top_k));        // (k)
    std::vector<float> values(static_cast<std::size_t>(top_k));            // (k)
    double z = 0.0;
    for (index_t t = 0; t < tokens; ++t) {
      const float* row = &logits(t, 0);
      rules::softmax(row, probs.data(), experts);
      rules::select_top_k(row, experts, top_k, ids.data(), values.data());
      for (index_t j = 0; j < top_k; ++j) chosen[ids[j]] += 1.0;
      for (index_t e = 0; e < experts; ++e) prob_sum[e] += probs[e];
      const double lse = log_sum_exp(row, experts);
      z += lse * lse;
    }
    double prob_total = 0.0, chosen_total = 0.0;
    for (index_t e = 0; e < experts; ++e) {
      prob_total += prob_sum[e];
      chosen_total += chosen[e];
    }
    double switch_loss = 0.0;
    for (index_t e = 0; e < experts; ++e) switch_loss += (prob_sum[e] / prob_total) * (chosen[e] / chosen_total);
    return static_cast<double>(experts) * switch_loss + z_weight * (z / static_cast<double>(tokens));
  }
};

}  // namespace jetmoe::routing
