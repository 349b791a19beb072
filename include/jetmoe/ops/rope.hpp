// jetmoe/ops/rope.hpp — rotary position embedding, NeoX "rotate half" form.
//
// For each head vector x of width D and position p, with inv_freq_i = theta^(-2i/D) (computed
// in fp32 as transformers does) and a = p · inv_freq_i, for i < D/2:
//   out[i]       = x[i] · cos a − x[i + D/2] · sin a
//   out[i + D/2] = x[i + D/2] · cos a + x[i] · sin a
#pragma once

#include <cstdint>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct rope_impl {
  JETMOE_NO_BACKEND("ops::rope");
};

// x: (T, heads, D) float, rotated in place (any strides; D even). positions: (T) int64.
template <class Policy>
void rope(const Policy& policy, tensor_view<float, 3> x, tensor_view<const std::int64_t, 1> positions, float theta) {
  check(x.extent(2) % 2 == 0, "ops::rope: the head dimension D must be even, x is ", x.extents());
  check_shape(positions, make_dims(x.extent(0)), "ops::rope: positions (T) for x (T, heads, D)");
  rope_impl<Policy>::run(policy, x, positions, theta);
}

}  // namespace jetmoe::ops
