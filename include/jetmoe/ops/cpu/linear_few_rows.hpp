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
// The tiles run with AVX-512 (a 16-lane accumulator is one register) and AVX2 (two registers
// holding lanes 0…7 and 8…15, so the sums are the same; T ≤ 6, as many weight rows as the 16
// registers leave room for, and software prefetch). AVX2 (-march=x86-64-v3) on the Zen 5
// host, bf16 weights of the four expert projections in bench_moe, against the panel kernel in
// the same run: 2.2–2.9× at T = 1, 1.8–2.3× at 2, 1.5–2.2× at 3, 1.7–1.9× at 4, 1.4–1.7× at 5,
// 1.2–1.5× at 6. The portable loop that AVX2 builds ran before got 1.9–2.8× at T = 1 but only
// 0.65–0.8× at 7 and 8, which now go to the panel kernel. SSE and NEON builds run the portable
// loop below for T ≤ 8.
//
// With AVX-512, above 8 tokens the accumulators no longer fit, so 9…23 tokens run as several passes over
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
#include <cstring>
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
// Registers per dot.hpp lane group (16 floats): 1 with AVX-512, 2 with AVX2, 4 with SSE or NEON.
inline constexpr int few_rows_splits = dot_lanes / simd_traits::lanes;
// The register tiles below run where a 16-lane accumulator spans at most two registers
// (AVX-512, AVX2). SSE and NEON builds (four registers per accumulator) keep the portable loop.
inline constexpr bool few_rows_register_tiles = few_rows_splits <= 2;
// With AVX-512 the tiles take up to 23 rows in passes (see above), and ragged panel remainders.
inline constexpr bool few_rows_wide_tiles = few_rows_splits == 1;
#else
inline constexpr int few_rows_splits = 0;
inline constexpr bool few_rows_register_tiles = false;
inline constexpr bool few_rows_wide_tiles = false;
#endif

struct few_rows_tuning {
  // Tokens of one pass over the weights (registers): AVX-512 8; AVX2 6 (2·6 accumulator
  // registers, a weight and an x register).
  static constexpr int max_pass_rows = few_rows_wide_tiles ? 8 : few_rows_register_tiles ? 6 : 8;
  static constexpr int min_last_pass_rows = 4;
  // Rows the portable loop takes: it keeps one accumulator per row of x on the stack.
  static constexpr index_t portable_max_rows = 8;
  // T at or below this takes this path: with AVX-512 9…23 too, in passes; with AVX2 up to 6
  // (at 7 and 8 the panel kernel was as fast); else the portable loop's 8.
  static constexpr index_t max_rows = few_rows_wide_tiles ? 23 : few_rows_register_tiles ? 6 : portable_max_rows;
  // AVX2 tiles: weight elements ahead of the loads that each row prefetches. With one or two
  // rows per task (T ≥ 3) the hardware prefetcher alone kept too few misses in flight:
  // 1024 (2 KiB of bf16) gave 1.2–1.6× at T = 4…6 on the Zen 5 host, 256 about half of that.
  static constexpr index_t prefetch_distance = 1024;
  static constexpr index_t chunk = 512;     // portable path: weight elements widened at a time (2 KiB)
};

// Portable version (any compiler, and builds without AVX-512): per output feature, widen a chunk
// of its weight row into a stack buffer and dot it with every x row while it is in L1.
template <class W>
void linear_few_rows_portable(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                              tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);        // T
  const index_t in_features = x.extent(1); // K
  check(rows >= 1 && rows <= few_rows_tuning::portable_max_rows, "ops::linear: the portable few-rows loop got ", rows,
        " rows");
  exec::parallel_for(policy, w.extent(0), rows * in_features, [&](std::ptrdiff_t o) {
    float acc[few_rows_tuning::portable_max_rows] = {};  // (T) sums of row o with every row of x
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
// Weight rows per task for T tokens. With AVX-512: one row for T = 1 (a single stream already
// reads at full speed there and is the simplest pattern), otherwise as many as 32 16-lane
// accumulators allow, at most six. With AVX2 (16 registers): as many as fit next to the
// 2·rows·T accumulator registers, a weight register per row and one for x. Measured best.
template <int Tokens>
constexpr int few_rows_out_rows() {
  if constexpr (few_rows_splits == 1)
    return Tokens == 1 ? 1 : std::clamp(simd_traits::registers / Tokens, 1, 6);
  else
    return std::clamp((simd_traits::registers - 1) / (few_rows_splits * Tokens + 1), 1, 6);
}

// y[t, o + r] = Σ_k x[t, k] · w[o + r, k] for r < OutRows, t < Tokens, in dot.hpp's order:
// each 16-lane accumulator is few_rows_splits registers, register s holding lanes
// s·lanes … (s + 1)·lanes − 1.
// w: (OutRows, K) with row stride w_stride; x: (Tokens, K) with row stride x_stride.
template <int OutRows, int Tokens, class W>
void few_rows_tile(const W* w, index_t w_stride, const float* x, index_t x_stride, index_t in_features, float* y,
                   index_t y_stride) {
  constexpr int splits = few_rows_splits, lanes = simd_traits::lanes;
  panel_vector acc[splits][OutRows][Tokens] = {};
  index_t k = 0;
  for (; k + dot_lanes <= in_features; k += dot_lanes) {
    if constexpr (splits == 2) {  // see few_rows_tuning::prefetch_distance
      JETMOE_CPU_UNROLL
      for (int r = 0; r < OutRows; ++r) __builtin_prefetch(w + r * w_stride + k + few_rows_tuning::prefetch_distance);
    }
    JETMOE_CPU_UNROLL
    for (int s = 0; s < splits; ++s) {
      panel_vector w_k[OutRows];
      JETMOE_CPU_UNROLL
      for (int r = 0; r < OutRows; ++r) load_widened(w + r * w_stride + k + s * lanes, w_k[r]);
      JETMOE_CPU_UNROLL
      for (int t = 0; t < Tokens; ++t) {
        panel_vector x_k;
        load_vector(x + t * x_stride + k + s * lanes, x_k);
        keep_in_register(x_k);  // one load per x vector, not one per multiply-add: 15 % faster
        JETMOE_CPU_UNROLL
        for (int r = 0; r < OutRows; ++r) acc[s][r][t] += w_k[r] * x_k;
      }
    }
  }
  for (int r = 0; r < OutRows; ++r)
    for (int t = 0; t < Tokens; ++t) {
      dot_lane_array lane;
      for (int s = 0; s < splits; ++s) std::memcpy(lane.data() + s * lanes, &acc[s][r][t], sizeof(panel_vector));
      float total = fold_lanes(lane);
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
