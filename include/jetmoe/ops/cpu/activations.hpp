// jetmoe/ops/cpu/activations.hpp — CPU backend of ops::silu and ops::glu.
#pragma once

#include <cmath>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/activations.hpp"

namespace jetmoe::ops {

namespace cpu_detail {
// x · sigmoid(x). For very negative x, exp(−x) overflows to Inf and the result is −0, the limit.
inline float silu_one(float x) { return x / (1.0f + std::exp(-x)); }
}  // namespace cpu_detail

template <>
struct activations_impl<exec::cpu> {
  // x: (T, N), in place.
  static void silu(const exec::cpu& policy, tensor_view<float, 2> x) {
    const index_t width = x.extent(1);
    if (x.empty()) return;
    exec::parallel_for(policy, x.extent(0), 8 * width, [&](std::ptrdiff_t t) {
      float* row = &x(t, 0);  // (N)
      const index_t step = x.stride(1);
      for (index_t i = 0; i < width; ++i) row[i * step] = cpu_detail::silu_one(row[i * step]);
    });
  }

  // h: (T, 2I); u: (T, I). u = silu(h[:, :I]) ⊙ h[:, I:]. u must not overlap h.
  static void glu(const exec::cpu& policy, tensor_view<const float, 2> h, tensor_view<float, 2> u) {
    check(h.extent(1) % 2 == 0, "ops::glu: h ", h.extents(), " must have an even width (gate half, then up half)");
    check_shape(u, make_dims(h.extent(0), h.extent(1) / 2), "ops::glu: output u (T, I) for h (T, 2I)");
    const index_t width = u.extent(1);  // I
    if (u.empty()) return;
    exec::parallel_for(policy, h.extent(0), 8 * width, [&](std::ptrdiff_t t) {
      const float* gate = &h(t, 0);  // (I), the first half: goes through SiLU
      const float* up = gate + width * h.stride(1);  // (I), the second half
      float* out = &u(t, 0);  // (I)
      const index_t h_step = h.stride(1), u_step = u.stride(1);
      for (index_t i = 0; i < width; ++i)
        out[i * u_step] = cpu_detail::silu_one(gate[i * h_step]) * up[i * h_step];
    });
  }
};

}  // namespace jetmoe::ops
