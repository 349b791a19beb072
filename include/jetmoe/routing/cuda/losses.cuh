// jetmoe/routing/cuda/losses.cuh — CUDA backend of the auxiliary router losses.
//
// A thread per row computes what the row contributes (kept flag, softmax, top-k choice with
// the library's tie rule, logsumexp² in double); then one block per expert reduces the columns
// in a fixed order, in double. The few resulting sums are copied back and combined on the host
// with the CPU backend's formulas. Returning a double is an API boundary: these calls
// synchronise the stream. Logits and the mask must be device memory (a host mask is uploaded).
#pragma once

#include <cstdint>
#include <vector>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/routing/losses.hpp"

namespace jetmoe::routing {

template <>
struct losses_impl<exec::cuda> {
  // Sums over the kept rows of every tensor: prob_sum (E), chosen (k, E), z, kept rows.
  struct sums {
    std::vector<double> prob_sum, chosen;
    double z = 0.0, kept_rows = 0.0;
  };

  template <class Mask>
  static sums reduce(const exec::cuda& policy, router_logits_list logits, index_t top_k,
                     tensor_view<const Mask, 2> mask, bool top_k_of_probabilities) {
    const index_t experts = logits[0].extent(1);
    index_t rows = 0;
    for (const auto& t : logits) rows += t.extent(0);
    for (const auto& t : logits)
      ops::cuda_detail::check_operands(policy, "routing losses", {{"a layer's router logits", t}});
    check(rows < (index_t{1} << 31), "routing losses (CUDA): too many rows");

    tensor<Mask, 2, exec::cuda> uploaded_mask;  // (B, S), only for a host mask
    if (mask.data() != nullptr && !ops::cuda_detail::is_device_pointer(mask.data())) {
      uploaded_mask = exec::to_device(policy, mask);
      mask = uploaded_mask.view();
    }
    const index_t safe_rows = rows > 0 ? rows : 1;
    tensor<float, 2, exec::cuda> probs(policy, make_dims(safe_rows, experts));                 // (R, E)
    tensor<std::int32_t, 2, exec::cuda> chosen(policy, make_dims(safe_rows, top_k));          // (R, k)
    tensor<float, 2, exec::cuda> chosen_values(policy, make_dims(safe_rows, top_k));          // (R, k)
    tensor<double, 1, exec::cuda> lse_squared(policy, make_dims(safe_rows));                  // (R)
    tensor<std::int32_t, 1, exec::cuda> kept(policy, make_dims(safe_rows));                   // (R)
    const index_t outputs = experts + top_k * experts + 2;
    tensor<double, 1, exec::cuda> totals = tensor<double, 1, exec::cuda>::zeros(policy, make_dims(outputs));

    constexpr int block = 128;
    index_t first = 0;
    for (const auto& t : logits) {
      if (t.extent(0) > 0) {
        kernels::loss_rows<Mask><<<kernels::blocks_for(t.extent(0), block), block, 0, policy.stream()>>>(
            t, first, mask, static_cast<int>(top_k), top_k_of_probabilities, probs.data(), chosen.data(),
            chosen_values.data(), lse_squared.data(), kept.data());
        JETMOE_CUDA_CHECK_LAUNCH();
      }
      first += t.extent(0);
    }
    if (rows > 0) {
      kernels::loss_reduce<><<<static_cast<unsigned int>(experts + 1), 256, 0, policy.stream()>>>(
          probs.data(), chosen.data(), lse_squared.data(), kept.data(), rows, static_cast<int>(experts),
          static_cast<int>(top_k), totals.data());
      JETMOE_CUDA_CHECK_LAUNCH();
    }
    const auto host = exec::to_host(policy, totals.view());  // synchronises
    sums out;
    out.prob_sum.assign(host.data(), host.data() + experts);
    out.chosen.assign(host.data() + experts, host.data() + experts + top_k * experts);
    out.z = host.data()[experts + top_k * experts];
    out.kept_rows = host.data()[experts + top_k * experts + 1];
    return out;
  }

  template <class Mask>
  static double load_balancing(const exec::cuda& policy, router_logits_list logits, index_t top_k,
                               tensor_view<const Mask, 2> mask) {
    const index_t experts = logits[0].extent(1);
    const sums s = reduce(policy, logits, top_k, mask, true);
    check(s.kept_rows > 0, "routing::load_balancing_loss: the attention mask keeps no rows");
    double total = 0.0;
    for (index_t j = 0; j < top_k; ++j)
      for (index_t e = 0; e < experts; ++e)
        total += (s.chosen[j * experts + e] / s.kept_rows) * (s.prob_sum[e] / s.kept_rows);
    return static_cast<double>(experts) * total;
  }

  template <class Mask>
  static double z_loss(const exec::cuda& policy, router_logits_list logits, tensor_view<const Mask, 2> mask) {
    const sums s = reduce(policy, logits, 1, mask, true);
    check(s.kept_rows > 0, "routing::router_z_loss: the attention mask keeps no rows");
    return s.z / s.kept_rows;
  }

  static double switch_plus_z(const exec::cuda& policy, tensor_view<const float, 2> logits, index_t top_k,
                              double z_weight) {
    check(logits.extent(0) > 0, "routing::switch_plus_z_loss: no rows of logits");
    const index_t experts = logits.extent(1);
    const tensor_view<const float, 2> one[] = {logits};
    // JetMoE's loss counts the top-k of the logits (not of the probabilities).
    const sums s = reduce(policy, one, top_k, tensor_view<const std::int64_t, 2>{}, false);
    double prob_total = 0.0, chosen_total = 0.0;
    std::vector<double> chosen(static_cast<std::size_t>(experts), 0.0);
    for (index_t j = 0; j < top_k; ++j)
      for (index_t e = 0; e < experts; ++e) chosen[e] += s.chosen[j * experts + e];
    for (index_t e = 0; e < experts; ++e) {
      prob_total += s.prob_sum[e];
      chosen_total += chosen[e];
    }
    double switch_loss = 0.0;
    for (index_t e = 0; e < experts; ++e) switch_loss += (s.prob_sum[e] / prob_total) * (chosen[e] / chosen_total);
    return static_cast<double>(experts) * switch_loss + z_weight * (s.z / static_cast<double>(logits.extent(0)));
  }
};

}  // namespace jetmoe::routing
