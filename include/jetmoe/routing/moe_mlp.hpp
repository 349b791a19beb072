// jetmoe/routing/moe_mlp.hpp — a mixture of GLU MLP experts: router, experts, combine, bias.
//
//   logits = x · W_routerᵀ                     (T, E) fp32
//   plan   = router(logits, k)                 slots (expert, gate) per token, sorted by expert
//   z_s    = W_out[e_s] · (silu(h[:I]) ⊙ h[I:]),  h = W_in[e_s] · x_t      per kept slot s
//   y_t    = Σ_s gate_s · z_s + bias
//
// Generic over the router (any routing::router), the weight type (float, bf16 or half,
// always with fp32 accumulation) and the execution policy. Example:
//
//   routing::moe_mlp<> moe{.top_k = 2};                      // JetMoE's top-k-then-softmax
//   routing::routing_workspace<> ws;                         // reuse across layers and steps
//   routing::moe_mlp_weights<bf16> w{router, w_in, w_out, bias};
//   const auto& plan = moe.forward(policy, w, x, y, ws, logits);  // logits optional
//   plan.counts();                                           // (E) tokens per expert
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

// Views of one MoE MLP's weights (the Hugging Face [E, out, in] layout).
template <class W>
struct moe_mlp_weights {
  tensor_view<const W, 2> router;         // (E, H)
  tensor_view<const W, 3> input_linear;   // (E, 2I, H): gate half, then up half
  tensor_view<const W, 3> output_linear;  // (E, H, I)
  tensor_view<const W, 1> bias{};         // (H), or empty for none
};

template <class Router = top_k_then_softmax>
struct moe_mlp {
  Router router{};
  index_t top_k = 2;
  expert_input_path input = expert_input_path::indexed;

  // x: (T, H); y: (T, H), must not overlap x; router_logits: (T, E) or empty. Returns the
  // plan (in ws), valid until ws routes again.
  template <class Policy, class W>
    requires routing::router<Router, Policy>
  const routing_plan<Policy>& forward(const Policy& policy, const moe_mlp_weights<W>& weights,
                                      tensor_view<const float, 2> x, tensor_view<float, 2> y,
                                      routing_workspace<Policy>& ws, tensor_view<float, 2> router_logits = {}) const {
    static_assert(floating_dtype<W>, "jetmoe::routing::moe_mlp: weights must be float, bf16 or half");
    const index_t tokens = x.extent(0), hidden = x.extent(1), experts = weights.router.extent(0);
    const index_t inner = weights.output_linear.extent(2);  // I
    const char* who = "routing::moe_mlp";
    check_shape(weights.router, make_dims(experts, hidden), "routing::moe_mlp: router weight (E, H)");
    check_shape(weights.input_linear, make_dims(experts, 2 * inner, hidden),
                "routing::moe_mlp: input_linear (E, 2I, H)");
    check_shape(weights.output_linear, make_dims(experts, hidden, inner), "routing::moe_mlp: output_linear (E, H, I)");
    check(weights.bias.empty() || weights.bias.extent(0) == hidden, who, ": bias has ", weights.bias.extent(0),
          " entries for H = ", hidden);
    check_shape(y, make_dims(tokens, hidden), "routing::moe_mlp: output y (T, H)");

    tensor_view<float, 2> logits = router_logits;  // (T, E)
    if (logits.data() == nullptr) logits = ws.logits.matrix(policy, tokens, experts);
    check_shape(logits, make_dims(tokens, experts), "routing::moe_mlp: router_logits (T, E)");
    ops::linear(policy, x, weights.router, logits);

    const routing_plan<Policy>& plan = plan_routing(policy, router, logits, top_k, ws.plan);
    const tensor_view<float, 2> z = ws.expert_out.matrix(policy, plan.max_sorted_rows(), hidden);  // (R, H)
    expert_input in = expert_input::indexed(x, plan.sorted_token());
    if (input == expert_input_path::gathered) {
      const tensor_view<float, 2> gathered = ws.gathered.matrix(policy, plan.max_sorted_rows(), hidden);  // (R, H)
      gather(policy, x, plan.sorted_token(), gathered);
      in = expert_input::sorted(gathered);
    }
    grouped_glu_mlp(policy, plan, in, weights.input_linear, weights.output_linear, z, ws.experts);
    combine(policy, plan, z, y, weights.bias);
    return plan;
  }
};

}  // namespace jetmoe::routing
