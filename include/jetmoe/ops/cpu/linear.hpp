// jetmoe/ops/cpu/linear.hpp — CPU backend of ops::linear: y = x · Wᵀ, fp32 accumulation.
//
// Two shapes of work:
//  * few rows (T ≤ small_batch_rows, i.e. decoding): memory-bound on the weights. Each task
//    owns output features; it widens a chunk of a weight row into a stack buffer and dots it
//    with every x row while the chunk is in L1. Weights are read exactly once.
//  * many rows (prefill, expert tiles): compute-bound. x is copied once into token panels,
//    (K, P·V) each: V SIMD vectors of P consecutive tokens per k. A task multiplies a few
//    weight rows by one panel with every product in a register: per k it loads the panel's V
//    vectors, broadcasts each weight row's element (widened from bf16/half a chunk at a time
//    into an L1 buffer) and does rows · V multiply-adds. The weights are never repacked, so
//    a weight row used by only 16 tokens (an expert tile) costs little more than one used by
//    256; Eigen's GEMM, which packs the weight panel for every call, ran at half its speed on
//    16 rows. Measured on a 2-core AMD EPYC (AVX-512): 1.3–2.4× Eigen's speed for 9…2048
//    rows. Compilers without GCC vector extensions get the Eigen GEMM instead.
// Tiles depend only on the shapes, never on the thread count, and each output element is
// produced by exactly one task, so results are identical for any number of threads. On the
// panel path every y[t, o] is the same k-ordered sum whichever tile holds it, so a row's
// result does not depend on how many other rows share the call either.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/eigen_map.hpp"
#include "jetmoe/ops/cpu/widen.hpp"
#include "jetmoe/ops/linear.hpp"

namespace jetmoe::ops {

namespace cpu_detail {

// Σ a[i]·b[i] in a fixed order: 16 running lanes (Eigen packets: 4 SSE or 2 AVX registers),
// then a fixed pairwise fold, then the tail. The order does not depend on pointer alignment
// or on the SIMD width, so every build and every call site produces the same sums.
inline constexpr int dot_lanes = 16;
using dot_lane_array = Eigen::Array<float, dot_lanes, 1>;
using dot_lane_map = Eigen::Map<const dot_lane_array, Eigen::Unaligned>;

inline float fold_lanes(const dot_lane_array& lane) {
  const Eigen::Array<float, 8, 1> eight = lane.head<8>() + lane.tail<8>();
  const Eigen::Array<float, 4, 1> four = eight.head<4>() + eight.tail<4>();
  return (four[0] + four[2]) + (four[1] + four[3]);
}

inline float dot(const float* a, const float* b, index_t n) {
  dot_lane_array lane = dot_lane_array::Zero();
  index_t i = 0;
  for (; i + dot_lanes <= n; i += dot_lanes) lane += dot_lane_map(a + i) * dot_lane_map(b + i);
  float total = fold_lanes(lane);
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// {dot(w, x0, n), dot(w, x1, n)} with one pass over w (a third fewer loads than two dots),
// bit-identical to calling dot twice.
inline void dot_pair(const float* w, const float* x0, const float* x1, index_t n, float& out0, float& out1) {
  dot_lane_array lane0 = dot_lane_array::Zero(), lane1 = dot_lane_array::Zero();
  index_t i = 0;
  for (; i + dot_lanes <= n; i += dot_lanes) {
    const dot_lane_array wi = dot_lane_map(w + i);
    lane0 += wi * dot_lane_map(x0 + i);
    lane1 += wi * dot_lane_map(x1 + i);
  }
  float total0 = fold_lanes(lane0), total1 = fold_lanes(lane1);
  for (; i < n; ++i) {
    total0 += w[i] * x0[i];
    total1 += w[i] * x1[i];
  }
  out0 = total0;
  out1 = total1;
}

struct linear_tuning {
  static constexpr index_t small_batch_rows = 8;       // T at or below this takes the GEMV path
  static constexpr index_t gemv_chunk = 512;           // weight elements widened at a time (2 KiB)
  static constexpr index_t block_bytes = 1024 * 1024;  // target size of one widened weight block
  static constexpr index_t min_block_rows = 16;
  static constexpr index_t max_block_rows = 256;
  static constexpr index_t min_tasks = 8;              // split x's rows when W has fewer blocks
  static constexpr index_t min_chunk_rows = 16;        // ... but not into slivers

  // Rows of W per GEMM block: about block_bytes of floats, a multiple of 16 rows. Larger
  // blocks amortise Eigen's packing of x, which is redone for every block.
  static index_t block_rows(index_t in_features) {
    const index_t fit = block_bytes / (static_cast<index_t>(sizeof(float)) * std::max<index_t>(in_features, 1));
    return std::clamp<index_t>(fit / 16 * 16, min_block_rows, max_block_rows);
  }
  // How many pieces x's rows are cut into: 1 unless W gives too few blocks to keep the
  // threads busy (a router or a narrow projection over a long prompt).
  static index_t row_chunks(index_t rows, index_t weight_blocks) {
    if (weight_blocks >= min_tasks) return 1;
    const index_t wanted = (min_tasks + weight_blocks - 1) / weight_blocks;
    return std::clamp<index_t>(std::min(wanted, rows / min_chunk_rows), 1, rows);
  }
};

// y[t, o] = Σ_k x[t, k] · w[o, k] for T ≤ small_batch_rows.
template <class W>
void linear_few_rows(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                     tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);        // T
  const index_t in_features = x.extent(1); // K
  exec::parallel_for(policy, w.extent(0), rows * in_features, [&](std::ptrdiff_t o) {
    float acc[linear_tuning::small_batch_rows] = {};
    float widened[linear_tuning::gemv_chunk];  // (chunk) one piece of weight row o, as float
    const W* w_row = &w(o, 0);
    for (index_t k0 = 0; k0 < in_features; k0 += linear_tuning::gemv_chunk) {
      const index_t n = std::min(linear_tuning::gemv_chunk, in_features - k0);
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

// y = x · Wᵀ by tiles (a block of output features × a chunk of x's rows), one serial Eigen
// GEMM per tile. Tiles depend only on the shapes.
template <class W>
void linear_eigen_tiles(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                      tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);
  const index_t in_features = x.extent(1);
  const index_t out_features = w.extent(0);
  const index_t block = linear_tuning::block_rows(in_features);
  const index_t blocks = (out_features + block - 1) / block;
  const index_t chunks = linear_tuning::row_chunks(rows, blocks);
  const index_t chunk = (rows + chunks - 1) / chunks;

  // Every tile is one serial Eigen GEMM. Inside a parallel region Eigen would not thread anyway;
  // a lone tile (a router's few outputs over a short prompt) runs outside one, where Eigen
  // would otherwise start its own team, whose busy-waiting costs far more than such a GEMM.
  if (Eigen::nbThreads() != 1) Eigen::setNbThreads(1);
  // Consecutive tasks share a weight block, so a thread's static share touches few blocks.
  exec::parallel_for(policy, blocks * chunks, [&](std::ptrdiff_t task) {
    const index_t first = task / chunks * block;
    const index_t count = std::min(block, out_features - first);
    const index_t first_row = task % chunks * chunk;
    const index_t row_count = std::min(chunk, rows - first_row);
    if (row_count <= 0) return;
    const auto x_rows = map_matrix(x.slice(0, first_row, first_row + row_count));  // (rows, K)
    auto y_rows = map_matrix(y.slice(0, first_row, first_row + row_count));  // (rows, out)
    auto y_tile = y_rows.middleCols(first, count);                            // (rows, count)
    if constexpr (std::is_same_v<W, float>) {
      const const_matrix_map w_block(&w(first, 0), count, in_features, row_stride_of(w));  // (count, K)
      y_tile.noalias() = x_rows * w_block.transpose();
    } else {
      thread_local std::vector<float> widened;  // (count, K), reused across calls on this thread
      widened.resize(static_cast<std::size_t>(count * in_features));
      for (index_t r = 0; r < count; ++r) widen(&w(first + r, 0), widened.data() + r * in_features, in_features);
      const Eigen::Map<const row_major_matrix> w_block(widened.data(), count, in_features);  // (count, K)
      y_tile.noalias() = x_rows * w_block.transpose();
    }
  });
}

#if defined(__GNUC__)  // GCC and Clang: vector extensions for the register-blocked panel kernel
#define JETMOE_LINEAR_PANELS 1
// Full unrolling keeps the tile's accumulators in registers. nvcc's front end, which sees this
// header in CUDA translation units, does not know the pragma (its CPU results are only
// references for the GPU tests).
#if defined(__CUDACC__)
#define JETMOE_PANEL_UNROLL
#else
#define JETMOE_PANEL_UNROLL _Pragma("GCC unroll 32")
#endif

// The panel kernel's SIMD vector: P floats, the width Eigen's packets have in this build
// (16 with AVX-512, 8 with AVX, 4 with SSE/NEON), so the tile fits the register file.
struct panel_tuning {
  static constexpr int lanes = Eigen::internal::packet_traits<float>::size;  // P
  static constexpr int registers = lanes >= 16 ? 32 : 16;                   // vector registers
  static constexpr index_t k_chunk = 256;  // weight elements widened at a time, per row (1 KiB)
  // Weight rows per tile for V vectors of tokens: rows·V accumulators + V panel vectors + one
  // broadcast (+1 spare) fill the registers.
  static constexpr int rows_for(int vectors) { return (registers - vectors - 2) / vectors; }
};
typedef float panel_vector __attribute__((vector_size(panel_tuning::lanes * sizeof(float))));

inline panel_vector load_panel_vector(const float* p) {
  panel_vector v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[r·(V·P) + t] = Σ_k w[r, k] · panel[k, t] for Rows weight rows and one panel of V·P tokens,
// summed in k order. w: (Rows, K) with row stride w_stride; panel: (K, V·P).
template <int Rows, int Vectors, class W>
void panel_tile(const W* w, index_t w_stride, const float* panel, index_t in_features, float* out) {
  constexpr index_t width = Vectors * panel_tuning::lanes;
  panel_vector acc[Rows][Vectors] = {};
  alignas(64) float widened[std::is_same_v<W, float> ? 1 : Rows * panel_tuning::k_chunk];  // (Rows, chunk)
  for (index_t k0 = 0; k0 < in_features; k0 += panel_tuning::k_chunk) {
    const index_t n = std::min(panel_tuning::k_chunk, in_features - k0);
    const float* w_chunk;  // (Rows, n) with row stride chunk_stride
    index_t chunk_stride;
    if constexpr (std::is_same_v<W, float>) {
      w_chunk = w + k0;
      chunk_stride = w_stride;
    } else {
      for (int r = 0; r < Rows; ++r) widen(w + r * w_stride + k0, widened + r * panel_tuning::k_chunk, n);
      w_chunk = widened;
      chunk_stride = panel_tuning::k_chunk;
    }
    const float* tokens = panel + k0 * width;  // (n, width)
    for (index_t k = 0; k < n; ++k, tokens += width) {
      panel_vector x_k[Vectors];
      JETMOE_PANEL_UNROLL
      for (int v = 0; v < Vectors; ++v) x_k[v] = load_panel_vector(tokens + v * panel_tuning::lanes);
      JETMOE_PANEL_UNROLL
      for (int r = 0; r < Rows; ++r) {
        const float w_rk = w_chunk[r * chunk_stride + k];
        JETMOE_PANEL_UNROLL
        for (int v = 0; v < Vectors; ++v) acc[r][v] += w_rk * x_k[v];
      }
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Vectors; ++v) std::memcpy(out + r * width + v * panel_tuning::lanes, &acc[r][v], sizeof(panel_vector));
}

// y = x · Wᵀ through token panels of V vectors (see the header comment).
template <int Vectors, class W>
void linear_panels(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                   tensor_view<float, 2> y) {
  constexpr int rows_per_tile = panel_tuning::rows_for(Vectors);
  constexpr index_t width = Vectors * panel_tuning::lanes;  // tokens per panel
  const index_t rows = x.extent(0), in_features = x.extent(1), out_features = w.extent(0);
  const index_t panels = (rows + width - 1) / width;
  const index_t row_groups = (out_features + rows_per_tile - 1) / rows_per_tile;

  // (panels, K, width): x transposed panel by panel, missing tokens zero. Kept per calling
  // thread, so steady-state calls allocate nothing.
  // (The workers must use this pointer: inside the loop body the name would be their own.)
  thread_local std::vector<float> panel_storage;
  panel_storage.resize(static_cast<std::size_t>(panels * in_features * width));
  float* const panel_base = panel_storage.data();
  exec::parallel_for(policy, panels, in_features * width, [&](std::ptrdiff_t p) {
    float* panel = panel_base + p * in_features * width;  // (K, width)
    for (index_t t = 0; t < width; ++t) {
      const index_t row = p * width + t;
      if (row < rows) {
        const float* x_row = &x(row, 0);
        for (index_t k = 0; k < in_features; ++k) panel[k * width + t] = x_row[k];
      } else {
        for (index_t k = 0; k < in_features; ++k) panel[k * width + t] = 0.0f;
      }
    }
  });

  // Panel-major: consecutive tasks share a panel (L2-resident) and stream weight rows.
  exec::parallel_for(policy, panels * row_groups, width * in_features * rows_per_tile, [&](std::ptrdiff_t task) {
    const index_t p = task / row_groups;
    const index_t first = task % row_groups * rows_per_tile;
    const index_t count = std::min<index_t>(rows_per_tile, out_features - first);
    const index_t first_row = p * width, row_count = std::min(width, rows - first_row);
    const float* panel = panel_base + p * in_features * width;  // (K, width)
    alignas(64) float out[rows_per_tile * width];               // (rows_per_tile, width): yᵀ tile
    if (count == rows_per_tile) {
      panel_tile<rows_per_tile, Vectors>(&w(first, 0), w.stride(0), panel, in_features, out);
    } else {  // the last, partial group of output features: one row at a time
      for (index_t r = 0; r < count; ++r)
        panel_tile<1, Vectors>(&w(first + r, 0), w.stride(0), panel, in_features, out + r * width);
    }
    for (index_t t = 0; t < row_count; ++t)
      for (index_t r = 0; r < count; ++r) y(first_row + t, first + r) = out[r * width + t];
  });
}
#undef JETMOE_PANEL_UNROLL  // expanded where the templates were defined; nothing else uses it
#endif  // __GNUC__

// T > small_batch_rows: the panel kernel (one vector of tokens per panel when that holds them
// all), or Eigen where the compiler lacks vector extensions.
template <class W>
void linear_many_rows(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                      tensor_view<float, 2> y) {
#if defined(JETMOE_LINEAR_PANELS)
  if (x.extent(0) <= panel_tuning::lanes)
    linear_panels<1>(policy, x, w, y);
  else
    linear_panels<2>(policy, x, w, y);
#else
  linear_eigen_tiles(policy, x, w, y);
#endif
}

}  // namespace cpu_detail

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
    if (x.extent(0) <= cpu_detail::linear_tuning::small_batch_rows)
      cpu_detail::linear_few_rows(policy, x, w, y);
    else
      cpu_detail::linear_many_rows(policy, x, w, y);
  }
};

}  // namespace jetmoe::ops
