// jetmoe/routing/losses.hpp — auxiliary router losses (values only; this library does not
// train, but reports what a trainer would add, e.g. transformers' `aux_loss`).
//
// load_balancing_loss — Switch/GShard, exactly as transformers' load_balancing_loss_func:
//   all router-logit tensors of the list are taken as one batch of rows (concatenated);
//   p = softmax over all E experts per row; top-k of p per row (tie rule: lower index first);
//   f[j, e]  = fraction of rows whose j-th choice is e;   P[e] = mean of p[:, e];
//   loss     = E · Σ_{j,e} f[j, e] · P[e].
//   With an attention mask (B, S) every tensor must have B·S rows; the mask is applied to each
//   tensor alike and both means run over unmasked rows only.
//
// router_z_loss — ST-MoE: mean over rows of logsumexp(l)², same list and mask convention.
//
// switch_plus_z_loss — the per-router loss JetMoE was trained with, for one router's logits:
//   switch = E · Σ_e (P_e / Σ P) · (c_e / Σ c), P_e = Σ_t p[t, e], c_e = times e is among the
//            top-k logits of a row;   z = mean logsumexp(l)²;   loss = switch + z_weight · z.
//
// Sums run in double, so results are at least as accurate as the fp32 reference.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::routing {

template <class Policy>
struct losses_impl {
  JETMOE_NO_BACKEND("routing::load_balancing_loss / router_z_loss / switch_plus_z_loss");
};

// A list of router-logit tensors, each (rows, E) fp32, with the same E.
using router_logits_list = std::span<const tensor_view<const float, 2>>;

namespace detail {
template <class Mask>
void check_loss_inputs(const char* who, router_logits_list logits, tensor_view<Mask, 2> mask) {
  static_assert(std::is_arithmetic_v<std::remove_cv_t<Mask>>, "jetmoe::routing: the attention mask must be numeric or bool");
  check(!logits.empty(), who, ": the list of router logits is empty");
  const index_t experts = logits[0].extent(1);
  check(experts >= 1, who, ": router logits have no experts");
  for (std::size_t i = 0; i < logits.size(); ++i) {
    check(logits[i].extent(1) == experts, who, ": tensor ", i, " has ", logits[i].extent(1), " experts, tensor 0 has ",
          experts);
    check(experts <= 1 || logits[i].stride(1) == 1, who, ": rows of tensor ", i, " must be contiguous");
    if (mask.data() != nullptr)
      check(logits[i].extent(0) == mask.size(), who, ": tensor ", i, " has ", logits[i].extent(0),
            " rows but the attention mask ", mask.extents(), " covers ", mask.size());
  }
}
}  // namespace detail

// attention_mask: (B, S), nonzero = real token; leave empty for none.
template <class Policy, class Mask = const std::int64_t>
double load_balancing_loss(const Policy& policy, router_logits_list router_logits, index_t top_k,
                           tensor_view<Mask, 2> attention_mask = {}) {
  detail::check_loss_inputs("routing::load_balancing_loss", router_logits, attention_mask);
  check(top_k >= 1 && top_k <= router_logits[0].extent(1), "routing::load_balancing_loss: top_k = ", top_k,
        " must be between 1 and E = ", router_logits[0].extent(1));
  return losses_impl<Policy>::load_balancing(policy, router_logits, top_k,
                                             tensor_view<const std::remove_cv_t<Mask>, 2>(attention_mask));
}

template <class Policy, class Mask = const std::int64_t>
double router_z_loss(const Policy& policy, router_logits_list router_logits, tensor_view<Mask, 2> attention_mask = {}) {
  detail::check_loss_inputs("routing::router_z_loss", router_logits, attention_mask);
  return losses_impl<Policy>::z_loss(policy, router_logits, tensor_view<const std::remove_cv_t<Mask>, 2>(attention_mask));
}

// logits: (T, E) of one router.
template <class Policy>
double switch_plus_z_loss(const Policy& policy, tensor_view<const float, 2> logits, index_t top_k,
                          double z_weight = 0.1) {
  const tensor_view<const float, 2> one[] = {logits};
  detail::check_loss_inputs("routing::switch_plus_z_loss", one, tensor_view<const std::int64_t, 2>{});
  check(top_k >= 1 && top_k <= logits.extent(1), "routing::switch_plus_z_loss: top_k = ", top_k,
        " must be between 1 and E = ", logits.extent(1));
  return losses_impl<Policy>::switch_plus_z(policy, logits, top_k, z_weight);
}

}  // namespace jetmoe::routing
