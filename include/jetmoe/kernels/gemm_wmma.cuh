// jetmoe/kernels/gemm_wmma.cuh — the grouped row GEMM of kernels/gemm.cuh on tensor cores
// (bf16 or half weights; sm_80 and newer).
//
// Same gemm_args, same row-tile assignment, same epilogues (plain, or GLU: silu(gate) ⊙ up).
// Input rows are read in fp32 through the index and rounded to the weight type on their way
// into shared memory (this is the precision change exec::cuda::tensor_cores documents); the
// products accumulate in fp32 WMMA fragments.
//
// Tile 64 rows × 64 weight rows × 32 k, 4 warps in a 2×2 arrangement, each warp 2×2 fragments
// of 16×16×16. Operands load 16 bytes at a time where gemm_args::vectorized allows, else one
// element at a time. Single-buffered shared memory, no cp.async pipeline yet.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/kernels/common.cuh"
#include "jetmoe/kernels/gemm.cuh"

namespace jetmoe::kernels {

inline constexpr int wmma_tile_m = 64;
inline constexpr int wmma_tile_n = 64;
inline constexpr int wmma_tile_k = 32;
inline constexpr int wmma_threads = 128;
inline constexpr int wmma_pad = 8;  // 16-bit elements: keeps ldm a multiple of 16 bytes, spreads banks

// jetmoe's 16-bit types and CUDA's share their bit layout; WMMA wants CUDA's.
template <class W>
using cuda_half_type = std::conditional_t<std::is_same_v<W, bf16>, __nv_bfloat16, __half>;

__device__ __forceinline__ std::uint16_t round_to_bits(float v, bf16*) { return bf16::round_from_float(v); }
__device__ __forceinline__ std::uint16_t round_to_bits(float v, half*) { return half::round_from_float(v); }

// grid: (row_tiles_upper_bound(window, E, 64), ceil(out / (Glu ? 32 : 64))).
template <class W, bool Glu>
__global__ void __launch_bounds__(wmma_threads) wmma_gemm(const gemm_args<W> a) {
  static_assert(std::is_same_v<W, bf16> || std::is_same_v<W, half>, "wmma_gemm: bf16 or half weights");
  using T = cuda_half_type<W>;
  namespace wmma = nvcuda::wmma;
  constexpr int ldk = wmma_tile_k + wmma_pad;     // 40 elements = 80 bytes per shared row
  constexpr int ldc = wmma_tile_n + 4;            // fp32 epilogue tile, 272 bytes per row

  __shared__ __align__(32) std::uint16_t xs[wmma_tile_m * ldk];  // (64 rows, 32 k) rounded input
  __shared__ __align__(32) std::uint16_t ws[wmma_tile_n * ldk];  // (64 weight rows, 32 k)
  __shared__ __align__(32) float cs[wmma_tile_m * ldc];          // (64, 64) accumulators for the epilogue
  __shared__ const float* x_row[wmma_tile_m];
  __shared__ const W* w_row[wmma_tile_n];

  const int tid = threadIdx.x, warp = tid >> 5;
  const block_rows mine = rows_of_block(a, blockIdx.x, wmma_tile_m);
  const int segment = mine.segment;
  const index_t first = mine.first, count = mine.count;
  if (segment < 0) return;  // block-uniform
  const index_t out0 = static_cast<index_t>(blockIdx.y) * (Glu ? wmma_tile_n / 2 : wmma_tile_n);

  if (tid < wmma_tile_m) x_row[tid] = tid < count ? input_row(a, first + tid) : nullptr;
  if (tid < wmma_tile_n) {
    index_t row = -1;  // tile column → weight row, −1 past the end
    if (Glu) {
      const index_t f = out0 + (tid % (wmma_tile_n / 2));
      if (f < a.out) row = tid < wmma_tile_n / 2 ? f : f + a.out;
    } else {
      const index_t f = out0 + tid;
      if (f < a.out) row = f;
    }
    w_row[tid] = row >= 0 ? a.w + segment * a.w_expert_stride + row * a.w_row_stride : nullptr;
  }

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * 32;

  for (index_t k0 = 0; k0 < a.k; k0 += wmma_tile_k) {
    __syncthreads();  // the previous step's fragments are loaded (and, first time, the row pointers set)
    if (a.vectorized) {
      // 16-byte loads (gemm_args::vectorized: K a multiple of 8, every row 16-byte aligned, so a
      // vector is wholly inside or wholly past K). Weights: 8 per load, 2 per thread; a warp
      // reads 64 contiguous bytes from each of 8 rows. Inputs: 4 floats per load, 4 per thread,
      // rounded and stored as 8 bytes (element kk in the low half, as the tile is laid out).
      constexpr int w_per_row = wmma_tile_k / 8, x_per_row = wmma_tile_k / 4;
#pragma unroll
      for (int i = 0; i < wmma_tile_n * w_per_row / wmma_threads; ++i) {
        const int v = tid + wmma_threads * i, r = v / w_per_row, kk = (v % w_per_row) * 8;
        const W* wr = w_row[r];
        uint4 bits = make_uint4(0u, 0u, 0u, 0u);
        if (wr != nullptr && k0 + kk < a.k) bits = *reinterpret_cast<const uint4*>(wr + k0 + kk);
        *reinterpret_cast<uint4*>(ws + r * ldk + kk) = bits;  // byte offset 80·r + 2·kk: 16-aligned
      }
#pragma unroll
      for (int i = 0; i < wmma_tile_m * x_per_row / wmma_threads; ++i) {
        const int v = tid + wmma_threads * i, r = v / x_per_row, kk = (v % x_per_row) * 4;
        const float* xr = x_row[r];
        float4 xv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (xr != nullptr && k0 + kk < a.k) xv = *reinterpret_cast<const float4*>(xr + k0 + kk);
        W* const tag = nullptr;
        uint2 packed;
        packed.x = static_cast<unsigned int>(round_to_bits(xv.x, tag)) |
                   (static_cast<unsigned int>(round_to_bits(xv.y, tag)) << 16);
        packed.y = static_cast<unsigned int>(round_to_bits(xv.z, tag)) |
                   (static_cast<unsigned int>(round_to_bits(xv.w, tag)) << 16);
        *reinterpret_cast<uint2*>(xs + r * ldk + kk) = packed;  // byte offset 80·r + 2·kk: 8-aligned
      }
    } else {
      // 2048 elements of each tile, 16 per thread: element e = tid + 128·i → (row e / 32, k e % 32),
      // so a warp reads 32 consecutive k of one row.
#pragma unroll 4
      for (int i = 0; i < (wmma_tile_m * wmma_tile_k) / wmma_threads; ++i) {
        const int e = tid + wmma_threads * i, r = e / wmma_tile_k, kk = e % wmma_tile_k;
        const index_t kg = k0 + kk;
        const float* xr = x_row[r];
        xs[r * ldk + kk] = round_to_bits(xr != nullptr && kg < a.k ? xr[kg] : 0.0f, static_cast<W*>(nullptr));
        const W* wr = w_row[r];
        ws[r * ldk + kk] = wr != nullptr && kg < a.k ? wr[kg].bits : std::uint16_t{0};
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < wmma_tile_k; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(fa[i], reinterpret_cast<const T*>(xs + (warp_m + 16 * i) * ldk + kk), ldk);
#pragma unroll
      for (int j = 0; j < 2; ++j)  // W tile rows are the columns of Wᵀ: column-major with ldm = ldk
        wmma::load_matrix_sync(fb[j], reinterpret_cast<const T*>(ws + (warp_n + 16 * j) * ldk + kk), ldk);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (warp_m + 16 * i) * ldc + warp_n + 16 * j, acc[i][j], ldc, wmma::mem_row_major);
  __syncthreads();

  // Epilogue: consecutive threads write consecutive outputs of a row.
  constexpr int width = Glu ? wmma_tile_n / 2 : wmma_tile_n;
  for (int e = tid; e < wmma_tile_m * width; e += wmma_threads) {
    const int r = e / width, c = e % width;
    const index_t f = out0 + c;
    if (r >= count || f >= a.out) continue;
    float* out = a.y + (first + r - a.y_row_offset) * a.ldy;
    if (Glu) {
      const float gate = cs[r * ldc + c];
      out[f] = gate / (1.0f + expf(-gate)) * cs[r * ldc + c + wmma_tile_n / 2];
    } else {
      out[f] = cs[r * ldc + c];
    }
  }
}

}  // namespace jetmoe::kernels
