// jetmoe/ops/cpu/rms_norm.hpp — CPU backend of ops::rms_norm, in fp32 as transformers computes it:
// var = mean(x²) in fp32, x̂ = x · rsqrt(var + eps), y = weight · x̂.
#pragma once

#include <cmath>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/widen.hpp"
#include "jetmoe/ops/rms_norm.hpp"

namespace jetmoe::ops {

template <>
struct rms_norm_impl<exec::cpu> {
  // x: (T, H); weight: (H); y: (T, H). y may be x itself: each element is read before it is
  // written, and only by the task that writes it.
  template <class W>
  static void run(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 1> weight, float eps,
                  tensor_view<float, 2> y) {
    const index_t width = x.extent(1);  // H
    if (x.empty()) return;
    const index_t x_step = x.stride(1), y_step = y.stride(1), w_step = weight.stride(0);
    const W* w = weight.data();
    exec::parallel_for(policy, x.extent(0), 3 * width, [&](std::ptrdiff_t t) {
      const float* x_row = &x(t, 0);  // (H), step x_step
      float* y_row = &y(t, 0);        // (H), step y_step
      // Sum of squares in 16 running lanes, folded in a fixed order (as a SIMD reduction would).
      constexpr int lanes = 16;
      float lane[lanes] = {};
      index_t i = 0;
      for (; i + lanes <= width; i += lanes)
        for (int j = 0; j < lanes; ++j) {
          const float value = x_row[(i + j) * x_step];
          lane[j] += value * value;
        }
      for (int span = lanes / 2; span > 0; span /= 2)
        for (int j = 0; j < span; ++j) lane[j] += lane[j + span];
      float sum_of_squares = lane[0];
      for (; i < width; ++i) sum_of_squares += x_row[i * x_step] * x_row[i * x_step];
      const float inverse_rms = 1.0f / std::sqrt(sum_of_squares / static_cast<float>(width) + eps);
      for (index_t c = 0; c < width; ++c)
        y_row[c * y_step] = cpu_detail::widen_one(w[c * w_step]) * (x_row[c * x_step] * inverse_rms);
    });
  }
};

}  // namespace jetmoe::ops
