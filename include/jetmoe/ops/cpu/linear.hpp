// jetmoe/ops/cpu/linear.hpp — CPU backend of ops::linear: y = x · Wᵀ, fp32 accumulation.
//
// Two shapes of work, one header each:
//  * few rows (decoding, small expert tiles: T ≤ 23 with AVX-512, 6 with AVX2, else 8): memory-bound
//    on the weights — linear_few_rows.hpp.
//  * many rows (prefill, expert tiles): compute-bound — linear_many_rows.hpp.
// Both produce each output element in exactly one task, with tiles that depend only on the
// shapes, so results are identical for any number of threads. Each y[t, o] is summed in a
// fixed order that depends only on T and t, never on the other rows' values (with vector
// extensions: k order in a token panel, dot.hpp's 16 lanes in the few-rows code).
#pragma once

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/linear_few_rows.hpp"
#include "jetmoe/ops/cpu/linear_many_rows.hpp"
#include "jetmoe/ops/linear.hpp"

namespace jetmoe::ops {

template <>
struct linear_impl<exec::cpu> {
  // x: (T, in); w: (out, in); y: (T, out). y must not overlap x or w.
  template <class W>
  static void run(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                  tensor_view<float, 2> y) {
    if (y.empty()) return;
    if (x.extent(1) == 0) {  // an empty sum
      for (index_t t = 0; t < y.extent(0); ++t)
        for (index_t o = 0; o < y.extent(1); ++o) y(t, o) = 0.0f;
      return;
    }
    if (x.extent(0) <= cpu_detail::few_rows_tuning::max_rows)
      cpu_detail::linear_few_rows(policy, x, w, y);
    else
      cpu_detail::linear_many_rows(policy, x, w, y);
  }
};

}  // namespace jetmoe::ops
