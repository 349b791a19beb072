// jetmoe/ops/cpu/linear_few_rows.hpp — ops::linear on the CPU for a few rows of x (T ≤ 23:
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
//
// These register tiles are used with AVX-512 only (few_rows_register_tiles); other builds run
// the portable loop below for T ≤ 8.
//
// Above 8 tokens the accumulators no longer fit, so 9…23 tokens run as several passes over
// the same weight rows, the later ones reading them from L1/L2: a pass takes all the tokens
// left up to 8, but of 9…12 left it takes all but 4 (9 → 5 + 4, 16 → 8 + 8, 17 → 8 + 5 + 4,
// 23 → 8 + 8 + 7). The panel kernel (linear_many_rows.hpp) would give them one 16-token
// vector, or two for 17…32, so its time moves in steps of 16 tokens, while passes cost in
// proportion to T. Measured on the same host, bf16 weights streamed from memory
// (fine-grained and JetMoE-8B expert shapes), passes against the panel kernel: 1.2–2.1× its
// speed for T = 9…15, 0.9–1.1× at 16, 1.4–1.7× at 17, 1.2–1.4× at 20, 1.0–1.3× at 23 and
// 0.96–1.1× at 24, where the panel kernel takes over. A balanced split (5 + 5, 6 + 6) was up
// to 25 % slower than leaving 4 tokens to the last pass.
#pragma once

#include <algorithm>
#include <type_traits>
#include <utility>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/dot.hpp"
#include "jetmoe/ops/cpu/simd.hpp"
#include "jetmoe/ops/cpu/widen.hpp"

namespace jetmoe::ops::cpu_detail {

#if defined(JETMOE_CPU_VECTORS)
// The register tiles below need a dot_vector (16 floats) to be one register, i.e. AVX-512.
// With narrower vectors GCC keeps the 64-byte accumulators in memory: on the same Zen 5 host,
// AVX2 and SSE2 builds of the tiles ran 1.2–5.5× slower than the portable loop (T = 1: 6.8
// against 37 GFLOP/s with AVX2), so those builds keep the portable loop.
inline constexpr bool few_rows_register_tiles = simd_traits::lanes >= dot_lanes;
#else
inline constexpr bool few_rows_register_tiles = false;
#endif

struct few_rows_tuning {
  static constexpr int max_pass_rows = 8;   // tokens of one pass over the weights (registers)
  static constexpr int min_last_pass_rows = 4;
  // T at or below this takes this path: with the register tiles 9…23 too, in passes; the
  // portable loop stops at 8 (it keeps one accumulator per row of x).
  static constexpr index_t max_rows = few_rows_register_tiles ? 23 : max_pass_rows;
  static constexpr index_t chunk = 512;     // portable path: weight elements widened at a time (2 KiB)
};

// Portable version (any compiler, and builds without AVX-512): per output feature, widen a chunk
// of its weight row into a stack buffer and dot it with every x row while it is in L1.
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

// Tokens of the first pass over the weights: all of them up to max_pass_rows, else
// min(max_pass_rows, T − min_last_pass_rows) (see the header comment).
template <int Tokens>
constexpr int few_rows_first_pass() {
  return Tokens <= few_rows_tuning::max_pass_rows
             ? Tokens
             : std::min(few_rows_tuning::max_pass_rows, Tokens - few_rows_tuning::min_last_pass_rows);
}

// few_rows_tile over the same OutRows weight rows for all Tokens rows of x, one pass after another.
template <int OutRows, int Tokens, class W>
void few_rows_passes(const W* w, index_t w_stride, const float* x, index_t x_stride, index_t in_features, float* y,
                     index_t y_stride) {
  constexpr int first_pass = few_rows_first_pass<Tokens>();
  static_assert(first_pass >= 1 && first_pass <= few_rows_tuning::max_pass_rows, "a pass holds 1…8 tokens");
  few_rows_tile<OutRows, first_pass>(w, w_stride, x, x_stride, in_features, y, y_stride);
  if constexpr (Tokens > first_pass)
    few_rows_passes<OutRows, Tokens - first_pass>(w, w_stride, x + first_pass * x_stride, x_stride, in_features,
                                                  y + first_pass * y_stride, y_stride);
}

template <int Tokens, class W>
void linear_few_rows_vectors(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                             tensor_view<float, 2> y) {
  constexpr int out_rows = few_rows_out_rows<few_rows_first_pass<Tokens>()>();
  const index_t in_features = x.extent(1), out_features = w.extent(0);
  const index_t groups = (out_features + out_rows - 1) / out_rows;
  exec::parallel_for(policy, groups, out_rows * Tokens * in_features, [&](std::ptrdiff_t group) {
    const index_t first = group * out_rows;
    const index_t count = std::min<index_t>(out_rows, out_features - first);
    if (count == out_rows) {
      few_rows_passes<out_rows, Tokens>(&w(first, 0), w.stride(0), &x(0, 0), x.stride(0), in_features, &y(0, first),
                                        y.stride(0));
    } else {  // the last, partial group: one row at a time (same sums)
      for (index_t r = first; r < out_features; ++r)
        few_rows_passes<1, Tokens>(&w(r, 0), w.stride(0), &x(0, 0), x.stride(0), in_features, &y(0, r), y.stride(0));
    }
  });
}

// Runs the instantiation for T = x.extent(0): one per row count 1…max_rows.
template <class W, int... TokensMinusOne>
void linear_few_rows_for_count(std::integer_sequence<int, TokensMinusOne...>, const exec::cpu& policy,
                               tensor_view<const float, 2> x, tensor_view<const W, 2> w, tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);
  ((rows == TokensMinusOne + 1 ? (linear_few_rows_vectors<TokensMinusOne + 1>(policy, x, w, y), true) : false) || ...);
}
#endif  // JETMOE_CPU_VECTORS

// y[t, o] = Σ_k x[t, k] · w[o, k] for 1 ≤ T ≤ few_rows_tuning::max_rows.
template <class W>
void linear_few_rows(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                     tensor_view<float, 2> y) {
  check(x.extent(0) >= 1 && x.extent(0) <= few_rows_tuning::max_rows, "ops::linear: the few-rows kernel got ",
        x.extent(0), " rows");
#if defined(JETMOE_CPU_VECTORS)
  if constexpr (few_rows_register_tiles) {
    linear_few_rows_for_count(std::make_integer_sequence<int, few_rows_tuning::max_rows>{}, policy, x, w, y);
    return;
  }
#endif
  linear_few_rows_portable(policy, x, w, y);
}

}  // namespace jetmoe::ops::cpu_detail
