// jetmoe/ops/cuda/linear.cuh — CUDA backend of ops::linear (y = x · Wᵀ), and the launcher of
// the row-GEMM kernels that the grouped expert linears share.
//
// Paths, by weight type and row count T:
//   T ≤ 8 (decoding)            kernels::gemv_segments: weight-read bound, fp32 activations.
//   float weights               cuBLAS SGEMM-equivalent (cublasGemmEx, fp32 compute, no TF32).
//   bf16/half, tensor_cores     x rounded to the weight type in a pooled buffer, then cublasGemmEx
//                               on tensor cores with fp32 accumulation and fp32 output.
//   bf16/half, !tensor_cores    kernels::tiled_gemm: fp32 activations, weights widened.
// The grouped expert linears (routing/cuda/grouped_linear.cuh) use launch_row_gemm below, whose
// tensor-core path is our own WMMA kernel (kernels/gemm_wmma.cuh) with the gather fused in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/gemm.cuh"
#include "jetmoe/kernels/gemm_wmma.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/linear.hpp"

namespace jetmoe::ops {

namespace cuda_detail {

template <class W>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<W, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<W, bf16>) return CUDA_R_16BF;
  else return CUDA_R_16F;
}

// Whether every row the GEMV or the WMMA kernel reads starts on a 16-byte boundary and K is a
// whole number of 16-byte vectors (true for the usual contiguous weights with K a multiple of 8).
template <class W>
bool vectorizable(const kernels::gemm_args<W>& a) {
  constexpr index_t vec = kernels::vector_width<W>;
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  return a.k % vec == 0 && a.w_row_stride % vec == 0 && a.w_expert_stride % vec == 0 && aligned(a.w) &&
         a.ldx % 4 == 0 && aligned(a.x);
}

// Launches the row GEMM for `a` (its row window set): the GEMV form when
// `rows_per_segment_at_most` ≤ gemv_max_rows, else tensor cores (bf16/half weights with
// policy.tensor_cores) or the fp32 CUDA-core tiles. The bound only picks the kernel: every one
// computes any segment size correctly. GLU: a.out = I and the weights hold 2I rows. The
// caller's a.vectorized is replaced by what vectorizable() finds.
template <class W>
void launch_row_gemm(const exec::cuda& policy, kernels::gemm_args<W> a, bool glu, index_t rows_per_segment_at_most) {
  const index_t window = a.row_end - a.row_begin;
  if (window <= 0 || a.out == 0) return;
  a.vectorized = vectorizable(a);  // read by the GEMV and WMMA kernels
  // The GEMV has one grid row per segment (expert), and gridDim.y is limited to 65535; more
  // experts than that take the tiles, which grid over row tiles instead.
  if (rows_per_segment_at_most <= kernels::gemv_max_rows && a.segments <= 65535) {
    check(a.segments >= 1, "ops::linear (CUDA): ", a.segments, " expert segments");
    const dim3 grid(static_cast<unsigned int>((a.out + kernels::gemv_warps - 1) / kernels::gemv_warps),
                    static_cast<unsigned int>(a.segments));
    if (glu) kernels::gemv_segments<W, true><<<grid, kernels::gemv_warps * 32, 0, policy.stream()>>>(a);
    else kernels::gemv_segments<W, false><<<grid, kernels::gemv_warps * 32, 0, policy.stream()>>>(a);
    JETMOE_CUDA_CHECK_LAUNCH();
    return;
  }
  // Both tiled kernels cut 64 rows × 64 weight rows (GLU: 32 outputs).
  static_assert(kernels::tile_m == kernels::wmma_tile_m && kernels::tile_n == kernels::wmma_tile_n);
  const index_t row_tiles = kernels::row_tiles_upper_bound(window, a.segments, kernels::tile_m);
  const index_t out_per_tile = glu ? kernels::tile_n / 2 : kernels::tile_n;
  const index_t col_tiles = (a.out + out_per_tile - 1) / out_per_tile;
  check(row_tiles < (index_t{1} << 31) && col_tiles <= 65535, "ops::linear (CUDA): ", window, " rows × ", a.out,
        " outputs exceed one launch's grid");
  const dim3 grid(static_cast<unsigned int>(row_tiles), static_cast<unsigned int>(col_tiles));
  if constexpr (!std::is_same_v<W, float>) {
    if (policy.tensor_cores) {
      if (glu) kernels::wmma_gemm<W, true><<<grid, kernels::wmma_threads, 0, policy.stream()>>>(a);
      else kernels::wmma_gemm<W, false><<<grid, kernels::wmma_threads, 0, policy.stream()>>>(a);
      JETMOE_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  if (glu) kernels::tiled_gemm<W, true><<<grid, kernels::tile_threads, 0, policy.stream()>>>(a);
  else kernels::tiled_gemm<W, false><<<grid, kernels::tile_threads, 0, policy.stream()>>>(a);
  JETMOE_CUDA_CHECK_LAUNCH();
}

// y (rows, out) = x (rows, K) · Wᵀ with W (out, K) through cuBLAS. x, W: type T; y: fp32.
// Row-major y = x·Wᵀ is column-major yᵀ = W·xᵀ: W is a column-major (K × out) matrix used
// transposed, x a column-major (K × rows) one.
template <class T>
void cublas_linear(const exec::cuda& policy, const T* x, index_t ldx, const T* w, index_t ldw, float* y, index_t ldy,
                   index_t rows, index_t k, index_t out) {
  check(rows <= INT32_MAX && k <= INT32_MAX && out <= INT32_MAX && ldx <= INT32_MAX && ldw <= INT32_MAX &&
            ldy <= INT32_MAX,
        "ops::linear (CUDA): sizes exceed cuBLAS's 32-bit dimensions");
  const float alpha = 1.0f, beta = 0.0f;
  JETMOE_CUBLAS_CHECK(cublasGemmEx(policy.blas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out),
                                   static_cast<int>(rows), static_cast<int>(k), &alpha, w, cuda_type<T>(),
                                   static_cast<int>(ldw), x, cuda_type<T>(), static_cast<int>(ldx), &beta, y, CUDA_R_32F,
                                   static_cast<int>(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace cuda_detail

template <>
struct linear_impl<exec::cuda> {
  // x: (T, in); w: (out, in); y: (T, out); device memory, y must not overlap x or w.
  template <class W>
  static void run(const exec::cuda& policy, tensor_view<const float, 2> x, tensor_view<const W, 2> w,
                  tensor_view<float, 2> y) {
    if (y.empty()) return;
    cuda_detail::check_operands(policy, "ops::linear", {{"x", x}, {"the weight", w}, {"y", y}});
    const index_t rows = x.extent(0), k = x.extent(1), out = w.extent(0);
    // Leading dimensions as cuBLAS wants them: at least the row length, even for a single row.
    const index_t ldx = cuda_detail::row_pitch(x, 0), ldw = cuda_detail::row_pitch(w, 0);
    const index_t ldy = cuda_detail::row_pitch(y, 0);
    if (k == 0) {  // an empty sum
      JETMOE_CUDA_CHECK(cudaMemset2DAsync(y.data(), static_cast<std::size_t>(ldy) * sizeof(float), 0,
                                          static_cast<std::size_t>(out) * sizeof(float), static_cast<std::size_t>(rows),
                                          policy.stream()));
      return;
    }

    kernels::gemm_args<W> a;
    a.x = x.data();
    a.ldx = ldx;
    a.rows = rows;
    a.row_begin = 0;
    a.row_end = rows;
    a.w = w.data();
    a.w_row_stride = ldw;
    a.k = k;
    a.out = out;
    a.y = y.data();
    a.ldy = ldy;

    if (rows <= kernels::gemv_max_rows) {
      cuda_detail::launch_row_gemm(policy, a, false, rows);
    } else if constexpr (std::is_same_v<W, float>) {
      cuda_detail::cublas_linear<float>(policy, x.data(), ldx, w.data(), ldw, y.data(), ldy, rows, k, out);
    } else {
      if (policy.tensor_cores) {
        tensor<W, 2, exec::cuda> rounded(policy, make_dims(rows, k));  // (T, in) x in the weight type
        constexpr int block = 256;
        kernels::round_rows<W><<<kernels::blocks_for(rows * k, block), block, 0, policy.stream()>>>(
            x.data(), ldx, rows, k, rounded.data());
        JETMOE_CUDA_CHECK_LAUNCH();
        cuda_detail::cublas_linear<W>(policy, rounded.data(), k, w.data(), ldw, y.data(), ldy, rows, k, out);
      } else {
        cuda_detail::launch_row_gemm(policy, a, false, rows);
      }
    }
  }
};

}  // namespace jetmoe::ops
