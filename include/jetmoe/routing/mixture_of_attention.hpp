// jetmoe/routing/mixture_of_attention.hpp — the routed halves of a mixture-of-attention-heads
// layer (MoA): per-expert query projection before attention, per-expert output projection
// after it. The attention itself (and the shared key/value projection) is the caller's.
//
//   map:    logits = x · W_routerᵀ (T, E);  plan = router(logits, k);
//           q[t, s] = W_q[e_s] · x_t   → q (T, S, Dq), token-major then slot-major; an empty
//           or dropped slot gets zeros.
//   reduce: y_t = Σ_s gate_s · W_o[e_s] · o[t, s] + bias   from o (T, S, Dq)
//
// A caller lays the S·Dq query values of a token out as S·heads heads of width Dq/heads, so
// head h of slot s is query head s·heads + h. reduce must get the plan map returned:
//
//   routing::mixture_of_attention<> moa{.top_k = 2};
//   const auto& plan = moa.map(policy, w, x, q, ws, logits);  // q: (T, S, Dq)
//   ... attention from q into o (T, S, Dq) ...
//   moa.reduce(policy, w, plan, o, y, ws);                     // y: (T, H)
#pragma once

#include <cstdint>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/ops/linear.hpp"
#include "jetmoe/routing/combine.hpp"
#include "jetmoe/routing/dispatch.hpp"
#include "jetmoe/routing/grouped_linear.hpp"
#include "jetmoe/routing/plan.hpp"
#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/top_k_softmax.hpp"
#include "jetmoe/routing/workspace.hpp"

namespace jetmoe::routing {

template <class W>
struct moa_weights {
  tensor_view<const W, 2> router;         // (E, H)
  tensor_view<const W, 3> input_linear;   // (E, Dq, H)
  tensor_view<const W, 3> output_linear;  // (E, H, Dq)
  tensor_view<const W, 1> bias{};         // (H), or empty for none
};

template <class Router = top_k_then_softmax>
struct mixture_of_attention {
  Router router{};
  index_t top_k = 2;

  // S, the slot count of q and o, for E experts (k for most routers).
  index_t slots(index_t experts) const { return slots_per_token(router, top_k, experts); }

  // x: (T, H); q: (T, S, Dq), contiguous; router_logits: (T, E) or empty.
  template <class Policy, class W>
    requires routing::router<Router, Policy>
  const routing_plan<Policy>& map(const Policy& policy, const moa_weights<W>& weights, tensor_view<const float, 2> x,
                                  tensor_view<float, 3> q, routing_workspace<Policy>& ws,
                                  tensor_view<float, 2> router_logits = {}) const {
    static_assert(floating_dtype<W>, "jetmoe::routing::mixture_of_attention: weights must be float, bf16 or half");
    const index_t tokens = x.extent(0), hidden = x.extent(1), experts = weights.router.extent(0);
    const index_t width = weights.input_linear.extent(1);  // Dq
    check_weights(weights, hidden, experts, width);
    check_shape(q, make_dims(tokens, slots(experts), width), "routing::mixture_of_attention::map: q (T, S, Dq)");

    tensor_view<float, 2> logits = router_logits;  // (T, E)
    if (logits.data() == nullptr) logits = ws.logits.matrix(policy, tokens, experts);
    check_shape(logits, make_dims(tokens, experts), "routing::mixture_of_attention::map: router_logits (T, E)");
    ops::linear(policy, x, weights.router, logits);

    const routing_plan<Policy>& plan = plan_routing(policy, router, logits, top_k, ws.plan);
    const tensor_view<float, 2> queries = ws.expert_out.matrix(policy, plan.max_sorted_rows(), width);  // (R, Dq)
    grouped_linear(policy, plan, expert_input::indexed(x, plan.sorted_token()), weights.input_linear, queries,
                   ws.experts);
    scatter_to_slots(policy, plan, queries, q);
    return plan;
  }

  // o: (T, S, Dq), contiguous; y: (T, H).
  template <class Policy, class W>
  void reduce(const Policy& policy, const moa_weights<W>& weights, const routing_plan<Policy>& plan,
              tensor_view<const float, 3> o, tensor_view<float, 2> y, routing_workspace<Policy>& ws) const {
    const index_t tokens = plan.num_tokens(), slots_used = plan.slots_per_token();
    const index_t hidden = weights.output_linear.extent(1), width = weights.output_linear.extent(2);
    check_weights(weights, hidden, weights.router.extent(0), width);
    check(plan.is_built() && plan.num_experts() == weights.router.extent(0),
          "routing::mixture_of_attention::reduce: the plan does not come from map with these weights");
    check_shape(o, make_dims(tokens, slots_used, width), "routing::mixture_of_attention::reduce: o (T, S, Dq)");
    check(o.is_contiguous(), "routing::mixture_of_attention::reduce: o must be contiguous");
    check_shape(y, make_dims(tokens, hidden), "routing::mixture_of_attention::reduce: y (T, H)");

    const tensor_view<const float, 2> slot_rows = o.reshape(make_dims(tokens * slots_used, width));  // (T·S, Dq)
    const tensor_view<float, 2> z = ws.expert_out.matrix(policy, plan.max_sorted_rows(), hidden);    // (R, H)
    grouped_linear(policy, plan, expert_input::indexed(slot_rows, plan.sorted_slot()), weights.output_linear, z,
                   ws.experts);
    combine(policy, plan, z, y, weights.bias);
  }

 private:
  template <class W>
  static void check_weights(const moa_weights<W>& weights, index_t hidden, index_t experts, index_t width) {
    check_shape(weights.router, make_dims(experts, hidden), "routing::mixture_of_attention: router weight (E, H)");
    check_shape(weights.input_linear, make_dims(experts, width, hidden),
                "routing::mixture_of_attention: input_linear (E, Dq, H)");
    check_shape(weights.output_linear, make_dims(experts, hidden, width),
                "routing::mixture_of_attention: output_linear (E, H, Dq)");
    check(weights.bias.empty() || weights.bias.extent(0) == hidden, "routing::mixture_of_attention: bias has ",
          weights.bias.extent(0), " entries for H = ", hidden);
  }
};

}  // namespace jetmoe::routing
