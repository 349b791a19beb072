// jetmoe/ops/linear.hpp — y = x · Wᵀ with W stored [out, in] (the Hugging Face layout).
#pragma once

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct linear_impl {
  JETMOE_NO_BACKEND("ops::linear");
};

// x: (T, in) float, rows may be strided (never overlapping) but each row contiguous.
// w: (out, in) float, bf16 or half weights, each row contiguous.
// y: (T, out) float, overwritten. Accumulation is fp32 whatever the weight type.
template <class Policy, class W>
void linear(const Policy& policy, tensor_view<const float, 2> x, tensor_view<W, 2> w, tensor_view<float, 2> y) {
  static_assert(floating_dtype<W>, "jetmoe::ops::linear: weights must be float, bf16 or half");
  check(x.extent(1) == w.extent(1), "ops::linear: x ", x.extents(), " has ", x.extent(1),
        " input features but the weight ", w.extents(), " expects ", w.extent(1));
  check_shape(y, make_dims(x.extent(0), w.extent(0)), "ops::linear: output y (T, out)");
  check(x.extent(1) <= 1 || x.stride(1) == 1, "ops::linear: rows of x must be contiguous (strides ", x.strides(), ")");
  check(w.extent(1) <= 1 || w.stride(1) == 1, "ops::linear: rows of the weight must be contiguous (strides ",
        w.strides(), ")");
  check(y.extent(1) <= 1 || y.stride(1) == 1, "ops::linear: rows of y must be contiguous (strides ", y.strides(), ")");
  check_rows_disjoint(x, 0, "ops::linear: x");
  check_rows_disjoint(w, 0, "ops::linear: the weight");
  check_rows_disjoint(y, 0, "ops::linear: y");
  linear_impl<Policy>::run(policy, x, tensor_view<const std::remove_cv_t<W>, 2>(w), y);
}

}  // namespace jetmoe::ops
