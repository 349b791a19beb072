// jetmoe/ops/rms_norm.hpp — y = x · rsqrt(mean(x²) + eps) · weight, per row, in fp32.
#pragma once

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct rms_norm_impl {
  JETMOE_NO_BACKEND("ops::rms_norm");
};

// x: (T, H) float; weight: (H) float/bf16/half; y: (T, H) float (may be the same memory as x).
template <class Policy, class W>
void rms_norm(const Policy& policy, tensor_view<const float, 2> x, tensor_view<W, 1> weight, float eps,
              tensor_view<float, 2> y) {
  static_assert(floating_dtype<W>, "jetmoe::ops::rms_norm: the weight must be float, bf16 or half");
  check_shape(weight, make_dims(x.extent(1)), "ops::rms_norm: weight (H) for x (T, H)");
  check_shape(y, x.extents(), "ops::rms_norm: output y (T, H)");
  rms_norm_impl<Policy>::run(policy, x, tensor_view<const std::remove_cv_t<W>, 1>(weight), eps, y);
}

}  // namespace jetmoe::ops
