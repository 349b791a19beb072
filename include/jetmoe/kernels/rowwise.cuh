// jetmoe/kernels/rowwise.cuh — kernels that work one row at a time: RMSNorm, softmax, SiLU,
// the GLU product, RoPE, embedding lookup, top-k.
#pragma once

#include <cstdint>
#include <limits>

#include "jetmoe/core/view.hpp"
#include "jetmoe/kernels/common.cuh"

namespace jetmoe::kernels {

// ---- RMSNorm: one block per row ---------------------------------------------------------------
// y = x · rsqrt(mean(x²) + eps) · w. y may be x: each thread reads the elements it later writes,
// and no other thread writes them.
template <class W>
__global__ void rms_norm_rows(tensor_view<const float, 2> x, tensor_view<const W, 1> weight, float eps,
                              tensor_view<float, 2> y) {
  __shared__ float partial[32];
  const index_t width = x.extent(1);
  for (index_t t = blockIdx.x; t < x.extent(0); t += gridDim.x) {
    const float* row = x.data() + t * x.stride(0);  // (H), step x.stride(1)
    float sum = 0.0f;
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) {
      const float v = row[c * x.stride(1)];
      sum += v * v;
    }
    sum = block_sum(sum, partial);
    const float inverse_rms = 1.0f / sqrtf(sum / static_cast<float>(width) + eps);
    float* out = y.data() + t * y.stride(0);  // (H), step y.stride(1)
    for (index_t c = threadIdx.x; c < width; c += blockDim.x)
      out[c * y.stride(1)] = widen(weight.data()[c * weight.stride(0)]) * (row[c * x.stride(1)] * inverse_rms);
  }
}

// ---- softmax along rows, in place: one block per row -------------------------------------------
template <class T>
__global__ void softmax_rows(tensor_view<T, 2> x) {
  __shared__ float partial[32];
  const index_t width = x.extent(1);
  for (index_t t = blockIdx.x; t < x.extent(0); t += gridDim.x) {
    T* row = x.data() + t * x.stride(0);
    const index_t step = x.stride(1);
    float row_max = -std::numeric_limits<float>::infinity();
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) row_max = fmaxf(row_max, row[c * step]);
    row_max = block_max(row_max, partial);
    float sum = 0.0f;
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) {
      const float e = expf(row[c * step] - row_max);
      row[c * step] = e;
      sum += e;
    }
    sum = block_sum(sum, partial);
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) row[c * step] = row[c * step] / sum;
  }
}

// ---- SiLU and the GLU product -----------------------------------------------------------------
__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

template <class T>
__global__ void silu_elements(tensor_view<T, 2> x) {
  const index_t width = x.extent(1), n = x.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    T& v = x.data()[(flat / width) * x.stride(0) + (flat % width) * x.stride(1)];
    v = silu(v);
  }
}

// u = silu(h[:, :I]) ⊙ h[:, I:]; h: (T, 2I), u: (T, I).
template <class T>
__global__ void glu_elements(tensor_view<const T, 2> h, tensor_view<T, 2> u) {
  const index_t width = u.extent(1), n = u.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t t = flat / width, i = flat % width;
    const T* row = h.data() + t * h.stride(0);
    u.data()[t * u.stride(0) + i * u.stride(1)] = silu(row[i * h.stride(1)]) * row[(i + width) * h.stride(1)];
  }
}

// ---- RoPE (NeoX rotate-half) ---------------------------------------------------------------------
// The inverse frequencies are computed on the host exactly as the CPU backend does and passed
// by value, so both backends rotate by the same fp32 angles.
inline constexpr int rope_max_half_width = 256;  // D ≤ 512
struct rope_frequencies {
  float inv_freq[rope_max_half_width];
};

// One thread per (t, head, i < D/2).
template <class T>
__global__ void rope_rotate(tensor_view<T, 3> x, tensor_view<const std::int64_t, 1> positions,
                            const rope_frequencies freq) {
  const index_t heads = x.extent(1), half_width = x.extent(2) / 2;
  const index_t n = x.extent(0) * heads * half_width;
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t i = flat % half_width;
    const index_t h = (flat / half_width) % heads;
    const index_t t = flat / (half_width * heads);
    const float angle = static_cast<float>(positions.data()[t * positions.stride(0)]) * freq.inv_freq[i];
    float sin_a, cos_a;
    sincosf(angle, &sin_a, &cos_a);
    T* head = x.data() + t * x.stride(0) + h * x.stride(1);
    T& first = head[i * x.stride(2)];
    T& second = head[(i + half_width) * x.stride(2)];
    const float a = first, b = second;
    first = a * cos_a - b * sin_a;
    second = b * cos_a + a * sin_a;
  }
}

// ---- embedding ---------------------------------------------------------------------------------
// Pass 1 (device ids only): every id is checked before any row is written; a bad one is reported
// and sets `failed`, which pass 2 reads to write nothing at all, as the CPU backend does.
template <class I>
__global__ void check_ids(tensor_view<const I, 1> ids, index_t vocab, device_status* status, unsigned int* failed) {
  for (index_t t = global_thread(); t < ids.extent(0); t += grid_threads()) {
    const long long id = static_cast<long long>(ids.data()[t * ids.stride(0)]);
    if (id < 0 || id >= vocab) {
      report(status, bad_embedding_id, t, id, vocab);
      atomicOr(failed, 1u);
    }
  }
}

// Pass 2: out[t] = widen(table[ids[t]]), one block-row of threads per token.
template <class W, class I>
__global__ void gather_embeddings(tensor_view<const W, 2> table, tensor_view<const I, 1> ids,
                                  tensor_view<float, 2> out, const unsigned int* failed) {
  if (failed != nullptr && *failed != 0u) return;
  const index_t width = table.extent(1);
  for (index_t t = blockIdx.x; t < ids.extent(0); t += gridDim.x) {
    const index_t id = static_cast<index_t>(ids.data()[t * ids.stride(0)]);
    const W* source = table.data() + id * table.stride(0);
    float* target = out.data() + t * out.stride(0);
    for (index_t c = threadIdx.x; c < width; c += blockDim.x) target[c * out.stride(1)] = widen(source[c * table.stride(1)]);
  }
}

// ---- top-k: one warp per row ------------------------------------------------------------------
// The library's order: larger first, equal values by lower index, NaN after every number (NaNs
// among themselves by index). It is a strict total order on (value, index), so round r can pick
// "the best entry ranking after the one picked in round r − 1" with no per-lane lists: each lane
// scans its strided share, the warp keeps the best, k rounds in all. O(k·N/32) per lane, no limit
// on k.
__device__ __forceinline__ bool ranks_before(float a, int ia, float b, int ib) {
  const bool a_nan = a != a, b_nan = b != b;
  if (a_nan || b_nan) return !a_nan || (b_nan && ia < ib);
  if (a != b) return a > b;
  return ia < ib;
}

template <class T>
__global__ void top_k_rows(tensor_view<const T, 2> x, tensor_view<float, 2> values,
                           tensor_view<std::int32_t, 2> indices) {
  const int lane = threadIdx.x & 31;
  const index_t warps_per_grid = static_cast<index_t>(gridDim.x) * (blockDim.x >> 5);
  const int n = static_cast<int>(x.extent(1)), k = static_cast<int>(values.extent(1));
  for (index_t t = static_cast<index_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); t < x.extent(0);
       t += warps_per_grid) {
    const T* row = x.data() + t * x.stride(0);
    float last_value = 0.0f;
    int last_index = -1;  // nothing picked yet
    for (int r = 0; r < k; ++r) {
      float best_value = 0.0f;
      int best_index = -1;
      for (int j = lane; j < n; j += 32) {
        const float v = row[j * x.stride(1)];
        if (last_index >= 0 && !ranks_before(last_value, last_index, v, j)) continue;  // already picked
        if (best_index < 0 || ranks_before(v, j, best_value, best_index)) {
          best_value = v;
          best_index = j;
        }
      }
      for (int offset = 16; offset > 0; offset >>= 1) {
        const float other_value = __shfl_xor_sync(0xFFFFFFFFu, best_value, offset);
        const int other_index = __shfl_xor_sync(0xFFFFFFFFu, best_index, offset);
        if (other_index >= 0 && (best_index < 0 || ranks_before(other_value, other_index, best_value, best_index))) {
          best_value = other_value;
          best_index = other_index;
        }
      }
      if (lane == 0) {
        values.data()[t * values.stride(0) + r * values.stride(1)] = best_value;
        indices.data()[t * indices.stride(0) + r * indices.stride(1)] = best_index;
      }
      last_value = best_value;
      last_index = best_index;
    }
  }
}

}  // namespace jetmoe::kernels
