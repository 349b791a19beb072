// jetmoe/ops/cpu/linear_many_rows.hpp — ops::linear on the CPU for many rows of x (more than
// linear_few_rows.hpp takes: prefill, expert tiles), where the multiply-adds are the cost.
//
// x is copied once into token panels, (K, P·V) each: V SIMD vectors of P consecutive tokens
// per k. A task multiplies a few weight rows by one panel with every product in a register:
// per k it loads the panel's V vectors, broadcasts each weight row's element (widened from
// bf16/half a chunk at a time into an L1 buffer) and does rows · V multiply-adds. The weights
// are never repacked, so a weight row used by only 16 tokens (an expert tile) costs little
// more than one used by 256; Eigen's GEMM, which packs the weight panel for every call, ran at
// half its speed on 16 rows. Measured on a 2-core AMD EPYC (AVX-512): 1.3–2.4× Eigen's speed
// for 9…2048 rows. Compilers without GCC vector extensions get the Eigen GEMM instead.
//
// A ragged last panel would multiply zeros: 66 rows fill two 32-token panels and put 2 tokens
// in a third that costs as much as a full one (each panel streams all the weights). A
// remainder of up to few_rows_tuning::max_rows rows (23 with AVX-512, 6 with AVX2) goes to the
// few-rows kernel instead, whose cost follows the row count. On four expert projections of the
// same host: AVX-512, T = 33…270, 1.05–1.75× the all-panel speed, most where the last panel is
// emptiest; AVX2 (16-token panels), bench_moe linear_rows: 1.56–1.70× at T = 17, 1.46–1.56× at
// 20, 1.31–1.42× at 22, 1.26–1.32× at 33, 1.09–1.20× at 38.
//
// Tiles depend only on the shapes, never on the thread count, and each output element is
// produced by exactly one task, so results are identical for any number of threads. Every
// y[t, o] in a full panel is the same k-ordered sum whichever tile holds it; the remainder's
// rows have dot.hpp's order. So a row's bits depend on the values and on whether it falls in
// the panels or the remainder, which T alone decides (ragged_rows), not on the other rows' values.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/eigen_map.hpp"
#include "jetmoe/ops/cpu/linear_few_rows.hpp"
#include "jetmoe/ops/cpu/simd.hpp"
#include "jetmoe/ops/cpu/widen.hpp"

namespace jetmoe::ops::cpu_detail {

struct eigen_tiles_tuning {
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

// y = x · Wᵀ by tiles (a block of output features × a chunk of x's rows), one serial Eigen
// GEMM per tile. Tiles depend only on the shapes.
template <class W>
void linear_eigen_tiles(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                      tensor_view<float, 2> y) {
  const index_t rows = x.extent(0);
  const index_t in_features = x.extent(1);
  const index_t out_features = w.extent(0);
  const index_t block = eigen_tiles_tuning::block_rows(in_features);
  const index_t blocks = (out_features + block - 1) / block;
  const index_t chunks = eigen_tiles_tuning::row_chunks(rows, blocks);
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

#if defined(JETMOE_CPU_VECTORS)
struct panel_tuning {
  static constexpr index_t k_chunk = 256;  // weight elements widened at a time, per row (1 KiB)
  // Weight rows per tile for V vectors of tokens: rows·V accumulators + V panel vectors + one
  // broadcast (+1 spare) fill the registers.
  static constexpr int rows_for(int vectors) { return (simd_traits::registers - vectors - 2) / vectors; }
};

// out[r·(V·P) + t] = Σ_k w[r, k] · panel[k, t] for Rows weight rows and one panel of V·P tokens,
// summed in k order. w: (Rows, K) with row stride w_stride; panel: (K, V·P).
template <int Rows, int Vectors, class W>
void panel_tile(const W* w, index_t w_stride, const float* panel, index_t in_features, float* out) {
  constexpr index_t width = Vectors * simd_traits::lanes;
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
      JETMOE_CPU_UNROLL
      for (int v = 0; v < Vectors; ++v) load_vector(tokens + v * simd_traits::lanes, x_k[v]);
      JETMOE_CPU_UNROLL
      for (int r = 0; r < Rows; ++r) {
        const float w_rk = w_chunk[r * chunk_stride + k];
        JETMOE_CPU_UNROLL
        for (int v = 0; v < Vectors; ++v) acc[r][v] += w_rk * x_k[v];
      }
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Vectors; ++v) std::memcpy(out + r * width + v * simd_traits::lanes, &acc[r][v], sizeof(panel_vector));
}

// y = x · Wᵀ through token panels of V vectors (see the header comment).
template <int Vectors, class W>
void linear_panels(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                   tensor_view<float, 2> y) {
  constexpr int rows_per_tile = panel_tuning::rows_for(Vectors);
  constexpr index_t width = Vectors * simd_traits::lanes;  // tokens per panel
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
#endif  // JETMOE_CPU_VECTORS

#if defined(JETMOE_CPU_VECTORS)
// Tokens of a two-vector panel, the shape linear_many_rows uses above one vector.
inline constexpr index_t wide_panel_tokens = 2 * simd_traits::lanes;

// The last rows of a T-row call that linear_many_rows hands to the few-rows kernel: the
// partial last two-vector panel when the few-rows register tiles can take it, else none.
inline index_t ragged_rows(index_t rows) {
  if (!few_rows_register_tiles || rows <= wide_panel_tokens) return 0;
  const index_t ragged = rows % wide_panel_tokens;
  return ragged <= few_rows_tuning::max_rows ? ragged : 0;
}

// All T rows in token panels: one-vector panels up to one vector of tokens (through
// ops::linear only AVX2's T = 7 and 8), two-vector panels above. The benchmarks compare the
// few-rows kernel and the ragged split with this.
template <class W>
void linear_token_panels(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                         tensor_view<float, 2> y) {
  if (x.extent(0) <= simd_traits::lanes)
    linear_panels<1>(policy, x, w, y);
  else
    linear_panels<2>(policy, x, w, y);
}
#endif

// T > few_rows_tuning::max_rows (23 with AVX-512, 6 with AVX2, else 8): token panels with the
// ragged remainder in the few-rows kernel, or Eigen where the compiler lacks vector extensions.
template <class W>
void linear_many_rows(const exec::cpu& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                      tensor_view<float, 2> y) {
#if defined(JETMOE_CPU_VECTORS)
  const index_t rows = x.extent(0);
  const index_t paneled = rows - ragged_rows(rows);
  linear_token_panels(policy, x.slice(0, 0, paneled), w, y.slice(0, 0, paneled));
  if (paneled < rows) linear_few_rows(policy, x.slice(0, paneled, rows), w, y.slice(0, paneled, rows));
#else
  linear_eigen_tiles(policy, x, w, y);
#endif
}

}  // namespace jetmoe::ops::cpu_detail
