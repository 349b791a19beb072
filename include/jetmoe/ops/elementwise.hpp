// jetmoe/ops/elementwise.hpp — residual add and strided copies, the glue between blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct elementwise_impl {
  JETMOE_NO_BACKEND("ops::add_inplace / ops::copy / ops::copy_to_positions");
};

// x += y. x, y: (T, H) float, rows contiguous.
template <class Policy>
void add_inplace(const Policy& policy, tensor_view<float, 2> x, tensor_view<const float, 2> y) {
  elementwise_impl<Policy>::add_inplace(policy, x, y);
}

// dst = src for views of the same extents; any strides, last dimension contiguous.
template <class Policy, std::size_t Rank>
void copy(const Policy& policy, tensor_view<const float, Rank> src, tensor_view<float, Rank> dst) {
  elementwise_impl<Policy>::copy(policy, src, dst);
}

// dst[b, e − T + t] = src[b, t] for t < T, where the end position e = *end is read where the
// policy computes (device memory on a device policy) when the work runs, not when it is
// queued: a KV-cache append that a captured decode step can replay at every length.
//   src: (B, T, H, D); dst: (B, C, H, D); last dimension contiguous; needs T ≤ e ≤ C (a host
//   policy throws otherwise; a device records the error, writes nothing and the next wait throws).
template <class Policy>
void copy_to_positions(const Policy& policy, tensor_view<const float, 4> src, tensor_view<float, 4> dst,
                       const std::int32_t* end) {
  check(src.extent(0) == dst.extent(0) && src.extent(2) == dst.extent(2) && src.extent(3) == dst.extent(3),
        "ops::copy_to_positions: source ", src.extents(), " and destination ", dst.extents(),
        " differ outside dimension 1");
  check(src.extent(1) <= dst.extent(1), "ops::copy_to_positions: ", src.extent(1), " positions do not fit in ",
        dst.extent(1));
  check(src.extent(3) <= 1 || (src.stride(3) == 1 && dst.stride(3) == 1),
        "ops::copy_to_positions: the last dimension must be contiguous");
  check(end != nullptr, "ops::copy_to_positions: no end position");
  elementwise_impl<Policy>::copy_to_positions(policy, src, dst, end);
}

}  // namespace jetmoe::ops
