// jetmoe/ops/activations.hpp — SiLU and the gated-linear-unit product used by GLU experts.
#pragma once

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct activations_impl {
  JETMOE_NO_BACKEND("ops::silu / ops::glu");
};

// x: (T, N) float; x ← x · sigmoid(x), in place.
template <class Policy>
void silu(const Policy& policy, tensor_view<float, 2> x) {
  activations_impl<Policy>::silu(policy, x);
}

// h: (T, 2I) float; u: (T, I) float. u = silu(h[:, :I]) ⊙ h[:, I:] — the FIRST half is gated.
template <class Policy>
void glu(const Policy& policy, tensor_view<const float, 2> h, tensor_view<float, 2> u) {
  activations_impl<Policy>::glu(policy, h, u);
}

}  // namespace jetmoe::ops
