// jetmoe/kernels/gemm.cuh — grouped row GEMMs: y_r = W[e(r)] · x_{index(r)}, fp32 accumulation.
//
// One description (gemm_args) covers the dense linear (one segment, identity rows) and the
// grouped expert linear (segments = the plan's expert offsets, rows read through the plan's
// index, so the gather is fused into the operand loads). Two epilogues: plain, and GLU, where
// the weights hold 2I rows (gate half, then up half) and the kernel writes
// silu(gate) ⊙ up, I wide, without materialising h.
//
// Kernels:
//  * gemv_segments — up to gemv_max_rows rows per segment (decoding). Weight-read bound: one
//    warp per output feature streams the weight row once, coalesced, and dots it with every row
//    of its segment; activations stay fp32.
//  * tiled_gemm — any row count. 64×64 output tiles, fp32 CUDA-core FMAs, weights widened to
//    fp32 in shared memory.
//  * wmma_gemm (kernels/gemm_wmma.cuh) — bf16/half tensor cores.
// The row → (segment, tile) assignment is computed on the device from the offsets, so the host
// never reads them: a launch over `row_tiles_upper_bound` row tiles is always enough.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/kernels/common.cuh"

namespace jetmoe::kernels {

template <class W>
struct gemm_args {
  const float* x = nullptr;              // input rows, fp32
  index_t ldx = 0;                       // elements between input rows
  const std::int32_t* index = nullptr;   // (N) sorted row → input row, or null: input row = r − x_row_offset
  index_t x_row_offset = 0;
  index_t x_rows = 0;                    // rows available to the index; an index outside [0, x_rows) reads zeros
  device_status* status = nullptr;       // … and is reported here
  const std::int32_t* offsets = nullptr;  // (E+1) segment bounds over sorted rows, or null: one segment [0, rows)
  int segments = 1;                      // E
  index_t rows = 0;                      // N, used when offsets is null
  index_t row_begin = 0, row_end = 0;    // only sorted rows in [row_begin, row_end) are computed
  const W* w = nullptr;                  // (E, out rows, K), rows contiguous
  index_t w_expert_stride = 0, w_row_stride = 0;
  index_t k = 0;                         // input features
  index_t out = 0;                       // output features (I for the GLU epilogue, whose W has 2I rows)
  float* y = nullptr;                    // output row for sorted row r: y + (r − y_row_offset) · ldy
  index_t ldy = 0;
  index_t y_row_offset = 0;
  // The host sets this when every weight row and input row starts 16-byte aligned and K is a
  // multiple of the vector width (16 bytes of W): the GEMV and the WMMA kernel then load 16
  // bytes at a time.
  bool vectorized = false;
};

// Elements of W in one 16-byte load.
template <class W>
inline constexpr int vector_width = 16 / static_cast<int>(sizeof(W));

// Widens the 16 bytes at `p` (16-byte aligned) to fp32.
__device__ __forceinline__ void load_widened(const float* p, float (&out)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load_widened(const bf16* p, float (&out)[8]) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const unsigned int words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // little-endian: element 2i is the low half
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
  }
}
__device__ __forceinline__ void load_widened(const half* p, float (&out)[8]) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const unsigned int words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] & 0xFFFFu)));
    out[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
  }
}

// Rows [begin, end) of segment `s`, clipped to the args' row window.
template <class W>
__device__ __forceinline__ void segment_rows(const gemm_args<W>& a, int s, index_t& begin, index_t& end) {
  index_t b = 0, e = a.rows;
  if (a.offsets != nullptr) {
    b = a.offsets[s];
    e = a.offsets[s + 1];
  }
  begin = b > a.row_begin ? b : a.row_begin;
  end = e < a.row_end ? e : a.row_end;
  if (end < begin) end = begin;
}

// Input row of sorted row r, or null (read as zeros) when the index points outside the input.
template <class W>
__device__ __forceinline__ const float* input_row(const gemm_args<W>& a, index_t r) {
  if (a.index == nullptr) return a.x + (r - a.x_row_offset) * a.ldx;
  const index_t source = a.index[r];
  if (source < 0 || source >= a.x_rows) {
    report(a.status, bad_gather_index, r, source, a.x_rows);
    return nullptr;
  }
  return a.x + source * a.ldx;
}

// Host side: row tiles enough for any split of `window_rows` rows into `segments` segments
// (each segment wastes at most one partial tile).
inline index_t row_tiles_upper_bound(index_t window_rows, int segments, int tile_rows) {
  return (window_rows + tile_rows - 1) / tile_rows + segments;
}

// ---- decode: one warp per output feature ------------------------------------------------------
inline constexpr int gemv_max_rows = 8;
inline constexpr int gemv_warps = 8;  // per block

// grid: (ceil(out / gemv_warps), segments). Built for segments of ≤ gemv_max_rows rows, but
// correct for any: a longer segment takes further passes of gemv_max_rows rows, each re-reading
// the warp's weight row (from L2 when the layer's weights fit there).
template <class W, bool Glu>
__global__ void __launch_bounds__(gemv_warps * 32) gemv_segments(const gemm_args<W> a) {
  const int lane = threadIdx.x & 31;
  const index_t feature = static_cast<index_t>(blockIdx.x) * gemv_warps + (threadIdx.x >> 5);
  const int s = static_cast<int>(blockIdx.y);
  index_t segment_begin, segment_end;
  segment_rows(a, s, segment_begin, segment_end);
  if (segment_end <= segment_begin || feature >= a.out) return;  // warp-uniform

  const W* w_row = a.w + s * a.w_expert_stride + feature * a.w_row_stride;  // (K) gate or plain row
  const W* w_up = Glu ? w_row + a.out * a.w_row_stride : nullptr;             // (K) up row
  for (index_t begin = segment_begin; begin < segment_end; begin += gemv_max_rows) {
    // n is the same for the whole warp, so every lane takes part in the shuffles below.
    const int n = static_cast<int>(segment_end - begin < gemv_max_rows ? segment_end - begin : gemv_max_rows);
    const float* x_rows[gemv_max_rows];
    float acc[gemv_max_rows], acc_up[gemv_max_rows];
#pragma unroll
    for (int r = 0; r < gemv_max_rows; ++r) {
      x_rows[r] = r < n ? input_row(a, begin + r) : nullptr;  // null past n, or for a bad index
      acc[r] = 0.0f;
      acc_up[r] = 0.0f;
    }
    if (a.vectorized) {
      // Each lane loads 16 bytes of the weight row per step: a warp streams 512 contiguous bytes.
      constexpr int vec = vector_width<W>;
      for (index_t c = static_cast<index_t>(lane) * vec; c < a.k; c += 32 * vec) {
        float wv[vec], wu[vec];
        load_widened(w_row + c, wv);
        if (Glu) load_widened(w_up + c, wu);
#pragma unroll
        for (int r = 0; r < gemv_max_rows; ++r) {
          if (r < n && x_rows[r] != nullptr) {
#pragma unroll
            for (int part = 0; part < vec; part += 4) {
              float xv[4];
              load_widened(x_rows[r] + c + part, xv);
#pragma unroll
              for (int i = 0; i < 4; ++i) {
                acc[r] = fmaf(wv[part + i], xv[i], acc[r]);
                if (Glu) acc_up[r] = fmaf(wu[part + i], xv[i], acc_up[r]);
              }
            }
          }
        }
      }
    } else {
      // Lanes take consecutive elements: each pass reads 32 consecutive weights (coalesced).
      for (index_t c = lane; c < a.k; c += 32) {
        const float wv = widen(w_row[c]);
        const float wu = Glu ? widen(w_up[c]) : 0.0f;
#pragma unroll
        for (int r = 0; r < gemv_max_rows; ++r) {
          if (r < n) {
            const float xv = x_rows[r] != nullptr ? x_rows[r][c] : 0.0f;
            acc[r] = fmaf(wv, xv, acc[r]);
            if (Glu) acc_up[r] = fmaf(wu, xv, acc_up[r]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < gemv_max_rows; ++r) {
      if (r >= n) break;
      const float total = warp_sum(acc[r]);
      const float total_up = Glu ? warp_sum(acc_up[r]) : 0.0f;
      if (lane == 0) {
        float* out = a.y + (begin + r - a.y_row_offset) * a.ldy;
        if (Glu) {
          const float gate = total;
          out[feature] = gate / (1.0f + expf(-gate)) * total_up;
        } else {
          out[feature] = total;
        }
      }
    }
  }
}

// ---- any size: 64×64 tiles on CUDA cores ---------------------------------------------------------
inline constexpr int tile_m = 64;   // rows per tile
inline constexpr int tile_n = 64;   // weight rows per tile (GLU: 32 gate + 32 up = 32 outputs)
inline constexpr int tile_k = 16;
inline constexpr int tile_threads = 256;

// grid: (row_tiles_upper_bound(window, E, tile_m), ceil(out / (Glu ? 32 : 64))).
// Thread (ty, tx), 16×16, owns rows ty + 16i and weight rows tx + 16j (i, j < 4): strided so
// that shared-memory reads are conflict-free and, for GLU, gate column j and up column j + 2
// (weight rows tx + 16j and tx + 16j + 32) land in the same thread for the epilogue.
// Which expert segment and sorted rows block `tile` covers, for every thread of the block:
// the first warp finds them (find_row_tile), shared memory hands them to the others.
// segment < 0: the block has no rows (the same for all its threads). Contains __syncthreads.
struct block_rows {
  int segment;
  index_t first, count;
};

// Called by one whole warp: finds row tile number `tile` — segment s holds
// ceil(rows_s / tile_rows) tiles, numbered in segment order — and lets one lane write it to
// `found` (segment −1 when the tile is past the last one). The lanes take 32 segments per
// step and a warp scan of their tile counts, so E = 128 is four steps, not 128 serial ones.
template <class W>
__device__ inline void find_row_tile(const gemm_args<W>& a, index_t tile, int tile_rows, block_rows& found) {
  constexpr unsigned int all_lanes = 0xFFFFFFFFu;
  const int lane = static_cast<int>(threadIdx.x & 31);
  index_t tiles_before_step = 0;  // tiles of the segments the previous steps covered
  for (int s0 = 0; s0 < a.segments; s0 += 32) {
    const int s = s0 + lane;
    index_t begin = 0, end = 0;
    if (s < a.segments) segment_rows(a, s, begin, end);
    const index_t tiles = (end - begin + tile_rows - 1) / tile_rows;
    index_t through = tiles;  // inclusive scan: tiles of segments s0 … s
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const index_t lower = __shfl_up_sync(all_lanes, through, offset);
      if (lane >= offset) through += lower;
    }
    const index_t first_tile = tiles_before_step + through - tiles;
    const bool mine = tile >= first_tile && tile < first_tile + tiles;  // true in at most one lane
    if (mine) {
      found.segment = s;
      found.first = begin + (tile - first_tile) * tile_rows;
      found.count = end - found.first < tile_rows ? end - found.first : tile_rows;
    }
    if (__ballot_sync(all_lanes, mine) != 0u) return;  // warp-uniform
    tiles_before_step += __shfl_sync(all_lanes, through, 31);
  }
  if (lane == 0) found.segment = -1;
}

template <class W>
__device__ inline block_rows rows_of_block(const gemm_args<W>& a, index_t tile, int tile_rows) {
  __shared__ block_rows shared;
  if (threadIdx.x < 32) find_row_tile(a, tile, tile_rows, shared);  // blocks are at least a warp
  __syncthreads();
  return shared;
}

template <class W, bool Glu>
__global__ void __launch_bounds__(tile_threads) tiled_gemm(const gemm_args<W> a) {
  __shared__ float xs[tile_k][tile_m + 1];  // (k, row) input tile, transposed
  __shared__ float ws[tile_k][tile_n + 1];  // (k, weight row) weight tile, widened

  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const block_rows mine = rows_of_block(a, blockIdx.x, tile_m);
  const int segment = mine.segment;
  const index_t first = mine.first, count = mine.count;
  if (segment < 0) return;  // block-uniform

  // Weight rows of this tile: plain, 64 consecutive outputs; GLU, 32 gate rows then the 32
  // matching up rows (I further down).
  const index_t out0 = static_cast<index_t>(blockIdx.y) * (Glu ? tile_n / 2 : tile_n);
  const W* w_base = a.w + segment * a.w_expert_stride;
  const auto weight_row = [&](int c) -> index_t {  // tile column → weight row, or −1 when out of range
    if (Glu) {
      const index_t f = out0 + (c % (tile_n / 2));
      if (f >= a.out) return -1;
      return c < tile_n / 2 ? f : f + a.out;
    }
    const index_t f = out0 + c;
    return f < a.out ? f : -1;
  };

  // Each thread loads 4 elements of each tile: element e = tid + 256·i → (row e / 16, k e % 16),
  // so 16 consecutive threads read 16 consecutive k of one row.
  const float* x_src[4];
  const W* w_src[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int e = tid + tile_threads * i, r = e / tile_k;
    x_src[i] = r < count ? input_row(a, first + r) : nullptr;
    const index_t wr = weight_row(r);
    w_src[i] = wr >= 0 ? w_base + wr * a.w_row_stride : nullptr;
  }

  float acc[4][4] = {};
  for (index_t k0 = 0; k0 < a.k; k0 += tile_k) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + tile_threads * i, r = e / tile_k, kk = e % tile_k;
      const index_t kg = k0 + kk;
      xs[kk][r] = (x_src[i] != nullptr && kg < a.k) ? x_src[i][kg] : 0.0f;
      ws[kk][r] = (w_src[i] != nullptr && kg < a.k) ? widen(w_src[i][kg]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < tile_k; ++kk) {
      float xv[4], wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xv[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wv[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = ty + 16 * i;
    if (r >= count) continue;
    float* out = a.y + (first + r - a.y_row_offset) * a.ldy;
    if (Glu) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const index_t f = out0 + tx + 16 * j;
        if (f < a.out) {
          const float gate = acc[i][j];
          out[f] = gate / (1.0f + expf(-gate)) * acc[i][j + 2];
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const index_t f = out0 + tx + 16 * j;
        if (f < a.out) out[f] = acc[i][j];
      }
    }
  }
}

// ---- activations rounded to the weight type (tensor-core paths) ----------------------------------
// out (rows, K) contiguous W = round(x[r]), x (rows, K) with row stride ldx.
template <class W>
__global__ void round_rows(const float* x, index_t ldx, index_t rows, index_t k, W* out) {
  const index_t n = rows * k;
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t r = flat / k, c = flat % k;
    out[flat] = W(x[r * ldx + c]);
  }
}

}  // namespace jetmoe::kernels
