// jetmoe/routing/combine.hpp — the weighted k-way reduce back to token order.
//
//   y[t] = Σ_{j < S} gate[t, j] · z[slot_to_sorted[t·S + j]]  (+ bias)
//
// Each token reads its own S rows and sums them in slot order j = 0, 1, …, then adds the
// bias: no atomics, no dependence on the thread count, bit-identical run to run. Empty and
// dropped slots contribute nothing (a token with none left gets just the bias).
#pragma once

#include <type_traits>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <class Policy>
struct combine_impl {
  JETMOE_NO_BACKEND("routing::combine");
};

// z: (N, H) expert outputs in the plan's order; bias: (H) float/bf16/half or empty; y: (T, H).
template <class Policy, class B = const float>
void combine(const Policy& policy, const routing_plan<Policy>& plan, tensor_view<const float, 2> z,
             tensor_view<float, 2> y, tensor_view<B, 1> bias = {}) {
  using V = std::remove_cv_t<B>;
  static_assert(floating_dtype<V>, "jetmoe::routing::combine: the bias must be float, bf16 or half");
  check(plan.is_built(), "routing::combine: the plan has not been built");
  check_shape(z, make_dims(plan.max_sorted_rows(), y.extent(1)), "routing::combine: expert outputs z (R, H)");
  check_shape(y, make_dims(plan.num_tokens(), y.extent(1)), "routing::combine: output y (T, H)");
  check(bias.empty() || bias.extent(0) == y.extent(1), "routing::combine: bias has ", bias.extent(0),
        " entries for H = ", y.extent(1));
  combine_impl<Policy>::run(policy, plan, z, y, tensor_view<const V, 1>(bias));
}

}  // namespace jetmoe::routing
