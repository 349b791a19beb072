// jetmoe/ops/cpu/rope.hpp — CPU backend of ops::rope (NeoX rotate-half form).
//
// Angles follow transformers bit for bit where it matters: inv_freq_i = 1 / theta^(2i/D) in
// fp32, angle = float(position) · inv_freq_i in fp32, then fp32 cos and sin.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/rope.hpp"

namespace jetmoe::ops {

template <>
struct rope_impl<exec::cpu> {
  // x: (T, heads, D), rotated in place; positions: (T).
  static void run(const exec::cpu& policy, tensor_view<float, 3> x, tensor_view<const std::int64_t, 1> positions,
                  float theta) {
    if (x.empty()) return;
    const index_t heads = x.extent(1);
    const index_t half_width = x.extent(2) / 2;  // D/2
    const float width = static_cast<float>(x.extent(2));

    std::vector<float> inv_freq(static_cast<std::size_t>(half_width));  // (D/2)
    for (index_t i = 0; i < half_width; ++i)
      inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / width);

    exec::parallel_for(policy, x.extent(0), 4 * heads * half_width + 40 * half_width, [&](std::ptrdiff_t t) {
      const float position = static_cast<float>(positions(t));
      for (index_t i = 0; i < half_width; ++i) {
        const float angle = position * inv_freq[i];
        const float cos_a = std::cos(angle), sin_a = std::sin(angle);
        for (index_t h = 0; h < heads; ++h) {
          float& first = x(t, h, i);                 // x[i]
          float& second = x(t, h, i + half_width);   // x[i + D/2]
          const float a = first, b = second;
          first = a * cos_a - b * sin_a;
          second = b * cos_a + a * sin_a;
        }
      }
    });
  }
};

}  // namespace jetmoe::ops
