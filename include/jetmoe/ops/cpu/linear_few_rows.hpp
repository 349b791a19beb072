// jetmoe/ops/cpu/linear_few_rows.hpp — ops::linear on the CPU for a few rows of x (T ≤ 8:
// decoding, small expert tiles), where reading the weights from memory is the cost.
//
// A task owns OutRows consecutive weight rows and runs along the whole of K once, widening
// 16 weights at a time straight into registers (no buffer) and multiplying them with the same
// 16 elements of every x row: OutRows × T accumulators of 16 lanes stay in registers, so each
// weight is read from memory exactly once and each x load feeds OutRows multiply-adds. Several
// rows per task also keep several memory streams in flight, which the weight-bound loop needs:
// on a 2-core AMD EPYC (Zen 5) one row per task read the weights of a T = 4 call at 14 GB/s,
// six rows at 37 GB/s. y[t, o] is dot.hpp's order (16 lanes, fold, tail), whatever T, the
// thread count or the task a row falls in.
#pragma once

#include <algorithm>
#include <type_traits>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/dot.hpp"
#include "jetmoe/ops/cpu/simd.hpp"
#include "jetmoe/ops/cpu/widen.hpp"

namespace jetmoe::ops::cpu_detail {

struct few_rows_tuning {
  static constexpr index_t max_rows = 8;    // T at or below this takes this path
  static constexpr index_t chunk = 512;     // portable path: weight elements widened at a time (2 KiB)
};

// Portable version (any compiler): per output feature, widen a chunk of its weight row into a
// stack buffer and dot it with every x row while it is in L1.
template <class W>
void linear_few_rows_portable(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                              tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);        // T
  const index_t in_features = x.extent(1); // K
  exec::parallel_for(policy, w.extent(0), rows * in_features, [&](std::ptrdiff_t o) {
    float acc[few_rows_tuning::max_rows] = {};
    float widened[few_rows_tuning::chunk];  // (chunk) one piece of weight row o, as float
    const W* w_row = &w(o, 0);
    for (index_t k0 = 0; k0 < in_features; k0 += few_rows_tuning::chunk) {
      const index_t n = std::min(few_rows_tuning::chunk, in_features - k0);
      const float* w_chunk;
      if constexpr (std::is_same_v<W, float>) {
        w_chunk = w_row + k0;
      } else {
        widen(w_row + k0, widened, n);
        w_chunk = widened;
      }
      index_t t = 0;
      for (; t + 2 <= rows; t += 2) {
        float first, second;
        dot_pair(w_chunk, &x(t, k0), &x(t + 1, k0), n, first, second);
        acc[t] += first;
        acc[t + 1] += second;
      }
      if (t < rows) acc[t] += dot(w_chunk, &x(t, k0), n);
    }
    for (index_t t = 0; t < rows; ++t) y(t, o) = acc[t];
  });
}

#if defined(JETMOE_CPU_VECTORS)
// Weight rows per task for T tokens. One row for T = 1: a single stream already reads at full
// speed there and is the simplest pattern. Otherwise as many as the accumulators allow (about
// the register file's worth of 16-lane vectors) but at most six; measured best on AVX-512.
template <int Tokens>
constexpr int few_rows_out_rows() {
  constexpr int accumulators = simd_traits::registers * simd_traits::lanes / dot_lanes;  // AVX-512: 32
  return Tokens == 1 ? 1 : std::clamp(accumulators / Tokens, 1, 6);
}

// y[t, o + r] = Σ_k x[t, k] · w[o + r, k] for r < OutRows, t < Tokens, in dot.hpp's order.
// w: (OutRows, K) with row stride w_stride; x: (Tokens, K) with row stride x_stride.
template <int OutRows, int Tokens, class W>
void few_rows_tile(const W* w, index_t w_stride, const float* x, index_t x_stride, index_t in_features, float* y,
                   index_t y_stride) {
  dot_vector acc[OutRows][Tokens] = {};
  index_t k = 0;
  for (; k + dot_lanes <= in_features; k += dot_lanes) {
    dot_vector w_k[OutRows];
    JETMOE_CPU_UNROLL
    for (int r = 0; r < OutRows; ++r) load_widened(w + r * w_stride + k, w_k[r]);
    JETMOE_CPU_UNROLL
    for (int t = 0; t < Tokens; ++t) {
      dot_vector x_k;
      load_vector(x + t * x_stride + k, x_k);
      keep_in_register(x_k);  // one load per x vector, not one per multiply-add: 15 % faster
      JETMOE_CPU_UNROLL
      for (int r = 0; r < OutRows; ++r) acc[r][t] += w_k[r] * x_k;
    }
  }
  for (int r = 0; r < OutRows; ++r)
    for (int t = 0; t < Tokens; ++t) {
      float total = fold(acc[r][t]);
      for (index_t i = k; i < in_features; ++i) total += widen_one(w[r * w_stride + i]) * x[t * x_stride + i];
      y[t * y_stride + r] = total;
    }
}

template <int Tokens, class W>
void linear_few_rows_vectors(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                             tensor_view<float, 2> y) {
  constexpr int out_rows = few_rows_out_rows<Tokens>();
  const index_t in_features = x.extent(1), out_features = w.extent(0);
  const index_t groups = (out_features + out_rows - 1) / out_rows;
  exec::parallel_for(policy, groups, out_rows * Tokens * in_features, [&](std::ptrdiff_t group) {
    const index_t first = group * out_rows;
    const index_t count = std::min<index_t>(out_rows, out_features - first);
    if (count == out_rows) {
      few_rows_tile<out_rows, Tokens>(&w(first, 0), w.stride(0), &x(0, 0), x.stride(0), in_features, &y(0, first),
                                      y.stride(0));
    } else {  // the last, partial group: one row at a time (same sums)
      for (index_t r = first; r < out_features; ++r)
        few_rows_tile<1, Tokens>(&w(r, 0), w.stride(0), &x(0, 0), x.stride(0), in_features, &y(0, r), y.stride(0));
    }
  });
}
#endif  // JETMOE_CPU_VECTORS

// y[t, o] = Σ_k x[t, k] · w[o, k] for 1 ≤ T ≤ few_rows_tuning::max_rows.
template <class W>
void linear_few_rows(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                     tensor_view<float, 2> y) {
  check(x.extent(0) >= 1 && x.extent(0) <= few_rows_tuning::max_rows, "ops::linear: the few-rows kernel got ",
        x.extent(0), " rows");
#if defined(JETMOE_CPU_VECTORS)
  static_assert(few_rows_tuning::max_rows == 8, "one instantiation per row count below");
  switch (x.extent(0)) {
    case 1: return linear_few_rows_vectors<1>(policy, x, w, y);
    case 2: return linear_few_rows_vectors<2>(policy, x, w, y);
    case 3: return linear_few_rows_vectors<3>(policy, x, w, y);
    case 4: return linear_few_rows_vectors<4>(policy, x, w, y);
    case 5: return linear_few_rows_vectors<5>(policy, x, w, y);
    case 6: return linear_few_rows_vectors<6>(policy, x, w, y);
    case 7: return linear_few_rows_vectors<7>(policy, x, w, y);
    default: return linear_few_rows_vectors<8>(policy, x, w, y);  // 8
  }
#else
  linear_few_rows_portable(policy, x, w, y);
#endif
}

}  // namespace jetmoe::ops::cpu_detail
