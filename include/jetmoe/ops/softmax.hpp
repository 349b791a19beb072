// jetmoe/ops/softmax.hpp — numerically stable softmax along the last dimension, in place.
#pragma once

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct softmax_impl {
  JETMOE_NO_BACKEND("ops::softmax");
};

// x: (T, N) float; each row becomes exp(x − max) / Σ exp(x − max).
template <class Policy>
void softmax(const Policy& policy, tensor_view<float, 2> x) {
  softmax_impl<Policy>::run(policy, x);
}

}  // namespace jetmoe::ops
