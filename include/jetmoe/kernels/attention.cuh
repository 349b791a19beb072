// jetmoe/kernels/attention.cuh — causal scaled-dot-product attention, fp32, online softmax.
//
// Two kernels, both exact up to fp32 summation order (no approximations):
//  * attention_tiles — one block per (query tile of 16, query head, batch row). Keys and values
//    stream through shared memory 32 at a time; each warp keeps 4 queries' running max, sum and
//    output (lane owns dims lane, lane + 32, …), so each K/V tile read from memory serves 16
//    queries.
//  * attention_decode — for Tq = 1: blocks (splits, query head, batch row), each split a range
//    of keys (flash-decoding, so that a batch-1 decode still fills the GPU), its 8 warps taking
//    4 keys per step; lanes split the head dimension, so every key row is read coalesced. Each
//    warp keeps a running state, the block merges its warps, attention_decode_merge the splits.
// Both: key j is visible to query i iff (not causal or j ≤ q_offset + i) and key_mask[b, j] ≠ 0;
// a query that sees no key writes zeros, one with a NaN score NaNs (the CPU backend's rules).
// With a key count on the device (attention_args::key_count) the key range and q_offset come
// from it when the kernel runs.
#pragma once

#include <cstdint>
#include <limits>

#include "jetmoe/core/view.hpp"
#include "jetmoe/kernels/common.cuh"

namespace jetmoe::kernels {

struct attention_args {
  tensor_view<const float, 4> q;  // (B, Tq, Hq, D)
  tensor_view<const float, 4> k;  // (B, Tk, Hkv, D)
  tensor_view<const float, 4> v;  // (B, Tk, Hkv, D)
  tensor_view<float, 4> out;      // (B, Tq, Hq, D)
  tensor_view<const std::uint8_t, 2> key_mask;  // (B, Tk) or data null for none
  float scale;
  long long q_offset;
  bool causal;
  const std::int32_t* key_count;  // (1) device memory or null: see ops::attention_options::key_count
};

// The key range every query of a call may see, and where query 0 sits: from the extents and
// q_offset, or, with a key count on the device, from that count (read when the kernel runs).
struct visible_keys {
  index_t length;       // keys past this are never visible
  long long q_offset;   // query i sits at key position q_offset + i
};
__device__ __forceinline__ visible_keys visible_keys_of(const attention_args& a) {
  const index_t k_len = a.k.extent(1);
  if (a.key_count == nullptr) return {k_len, a.q_offset};
  index_t count = *a.key_count;
  count = count < 0 ? 0 : (count > k_len ? k_len : count);
  return {count, static_cast<long long>(count - a.q.extent(1))};
}

inline constexpr int attention_key_chunk = 32;
inline constexpr int attention_warps = 4;
inline constexpr int attention_queries_per_warp = 4;
inline constexpr int attention_query_tile = attention_warps * attention_queries_per_warp;  // 16

// Row stride of the shared K tile: odd, so the 32 lanes reading one element of 32 key rows hit
// 32 different banks (D + 1 would be even, and 2-way conflicted, for odd D).
__host__ __device__ constexpr index_t key_tile_stride(index_t head_dim) { return head_dim | 1; }

// Dynamic shared memory of attention_tiles for head dimension D.
inline std::size_t attention_tiles_shared_bytes(index_t head_dim) {
  const index_t floats = attention_key_chunk * key_tile_stride(head_dim)  // K tile, padded against bank conflicts
                         + attention_key_chunk * head_dim                  // V tile
                         + attention_query_tile * head_dim;                // Q tile
  return static_cast<std::size_t>(floats) * sizeof(float) + attention_key_chunk * sizeof(int);
}

// DimsPerLane = ceil(D / 32) rounded up to the instantiated 2, 4 or 8.
template <int DimsPerLane, class KvHeadMap>
__global__ void __launch_bounds__(attention_warps * 32) attention_tiles(const attention_args a, KvHeadMap kv_head_of) {
  extern __shared__ float shared[];
  const int head_dim = static_cast<int>(a.q.extent(3));
  const int key_stride = static_cast<int>(key_tile_stride(head_dim));
  float* ks = shared;                                          // (32, key_stride ≥ D)
  float* vs = ks + attention_key_chunk * key_stride;           // (32, D)
  float* qs = vs + attention_key_chunk * head_dim;             // (16, D)
  int* visible_key = reinterpret_cast<int*>(qs + attention_query_tile * head_dim);  // (32)

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const index_t b = blockIdx.z, h = blockIdx.y, q0 = static_cast<index_t>(blockIdx.x) * attention_query_tile;
  const index_t q_len = a.q.extent(1);
  const visible_keys range = visible_keys_of(a);
  const index_t k_len = range.length;
  const long long q_offset = range.q_offset;
  const int q_heads = static_cast<int>(a.q.extent(2)), kv_heads = static_cast<int>(a.k.extent(2));
  const index_t g = kv_head_of(static_cast<int>(h), q_heads, kv_heads);
  const bool has_mask = a.key_mask.data() != nullptr;

  for (int idx = tid; idx < attention_query_tile * head_dim; idx += blockDim.x) {
    const int qi = idx / head_dim, d = idx % head_dim;
    const index_t i = q0 + qi;
    qs[idx] = i < q_len ? a.q(b, i, h, d) : 0.0f;
  }

  // Keys past key_end are invisible to every query of the tile.
  const index_t last_query = (q0 + attention_query_tile < q_len ? q0 + attention_query_tile : q_len) - 1;
  index_t key_end = k_len;
  if (a.causal) {
    key_end = q_offset + last_query + 1;
    key_end = key_end < 0 ? 0 : (key_end > k_len ? k_len : key_end);
  }

  float m[attention_queries_per_warp], l[attention_queries_per_warp];
  float acc[attention_queries_per_warp][DimsPerLane];
#pragma unroll
  for (int qq = 0; qq < attention_queries_per_warp; ++qq) {
    m[qq] = -std::numeric_limits<float>::infinity();
    l[qq] = 0.0f;
#pragma unroll
    for (int t = 0; t < DimsPerLane; ++t) acc[qq][t] = 0.0f;
  }

  for (index_t c0 = 0; c0 < key_end; c0 += attention_key_chunk) {
    __syncthreads();  // the previous chunk is no longer read (and, first time, qs is written)
    for (int idx = tid; idx < attention_key_chunk * head_dim; idx += blockDim.x) {
      const int j = idx / head_dim, d = idx % head_dim;
      const index_t key = c0 + j;
      const bool in_range = key < key_end;
      ks[j * key_stride + d] = in_range ? a.k(b, key, g, d) : 0.0f;
      vs[j * head_dim + d] = in_range ? a.v(b, key, g, d) : 0.0f;
    }
    if (tid < attention_key_chunk) {
      const index_t key = c0 + tid;
      visible_key[tid] = key < key_end && (!has_mask || a.key_mask(b, key) != 0);
    }
    __syncthreads();

#pragma unroll
    for (int qq = 0; qq < attention_queries_per_warp; ++qq) {
      const int qi = warp * attention_queries_per_warp + qq;
      const index_t i = q0 + qi;
      if (i >= q_len) continue;  // warp-uniform
      const index_t key = c0 + lane;
      const bool visible = visible_key[lane] != 0 && (!a.causal || key <= q_offset + i);
      float score = -std::numeric_limits<float>::infinity();
      if (visible) {
        const float* query = qs + qi * head_dim;
        const float* key_row = ks + lane * key_stride;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot = fmaf(query[d], key_row[d], dot);
        score = a.scale * dot;
      }
      const float chunk_max = warp_max(score);  // fmaxf: a NaN score does not count …
      const float m_new = fmaxf(m[qq], chunk_max);
      // Nothing visible yet (m_new is warp-uniform) — unless the scores were NaN (… so the vote
      // catches them): those carry on, exp(NaN) poisons l and acc, and the output is NaN, as on
      // the CPU. The vote runs only on this rare branch.
      if (m_new == -std::numeric_limits<float>::infinity() && !__any_sync(0xFFFFFFFFu, visible && isnan(score)))
        continue;
      const float correction = expf(m[qq] - m_new);  // 0 when m was −∞
      const float p = visible ? expf(score - m_new) : 0.0f;
      l[qq] = l[qq] * correction + warp_sum(p);
#pragma unroll
      for (int t = 0; t < DimsPerLane; ++t) acc[qq][t] *= correction;
      for (int j = 0; j < attention_key_chunk; ++j) {
        const float pj = __shfl_sync(0xFFFFFFFFu, p, j);
        if (pj == 0.0f) continue;  // the same value in every lane: uniform branch
#pragma unroll
        for (int t = 0; t < DimsPerLane; ++t) {
          const int d = lane + 32 * t;
          if (d < head_dim) acc[qq][t] = fmaf(pj, vs[j * head_dim + d], acc[qq][t]);
        }
      }
      m[qq] = m_new;
    }
  }

#pragma unroll
  for (int qq = 0; qq < attention_queries_per_warp; ++qq) {
    const index_t i = q0 + warp * attention_queries_per_warp + qq;
    if (i >= q_len) continue;
    const float inverse = l[qq] != 0.0f ? 1.0f / l[qq] : 0.0f;  // l is 0 (nothing seen), > 0 or NaN
#pragma unroll
    for (int t = 0; t < DimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) a.out(b, i, h, d) = acc[qq][t] * inverse;
    }
  }
}

inline constexpr int attention_decode_warps = 8;
inline constexpr int attention_decode_unroll = 4;  // keys in flight per warp step

// Partial results of a split decode: per (b, h, split) the running max m, the sum l of
// exp(score − m), and the unnormalised output Σ exp(score − m)·v.
struct decode_partials {
  float* m = nullptr;    // (B, Hq, splits)
  float* l = nullptr;    // (B, Hq, splits)
  float* acc = nullptr;  // (B, Hq, splits, D)
  int splits = 1;
};

// grid: (splits, Hq, B), Tq = 1. Block `split` takes keys [split·chunk, (split + 1)·chunk) of
// the visible range; its 8 warps take every 8th key of that, 4 keys per step so that the four
// dot-product reductions overlap. With one split the block writes the output directly;
// otherwise it writes its partials and attention_decode_merge combines them.
template <int DimsPerLane, class KvHeadMap>
__global__ void __launch_bounds__(attention_decode_warps * 32) attention_decode(const attention_args a,
                                                                                 KvHeadMap kv_head_of,
                                                                                 const decode_partials partials) {
  __shared__ float warp_m[attention_decode_warps], warp_l[attention_decode_warps];
  __shared__ float warp_acc[attention_decode_warps][DimsPerLane * 32];
  constexpr float minus_infinity = -std::numeric_limits<float>::infinity();
  constexpr int W = attention_decode_warps, U = attention_decode_unroll;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.x;
  const index_t i = 0, h = blockIdx.y, b = blockIdx.z;
  const int head_dim = static_cast<int>(a.q.extent(3));
  const visible_keys range = visible_keys_of(a);
  const index_t k_len = range.length;
  const index_t g = kv_head_of(static_cast<int>(h), static_cast<int>(a.q.extent(2)), static_cast<int>(a.k.extent(2)));
  const bool has_mask = a.key_mask.data() != nullptr;

  float query[DimsPerLane];
#pragma unroll
  for (int t = 0; t < DimsPerLane; ++t) {
    const int d = lane + 32 * t;
    query[t] = d < head_dim ? a.q(b, i, h, d) : 0.0f;
  }
  index_t key_end = k_len;
  if (a.causal) {
    key_end = range.q_offset + i + 1;
    key_end = key_end < 0 ? 0 : (key_end > k_len ? k_len : key_end);
  }
  // Splits share out the keys visible now (a count read on the device moves with each replay).
  const index_t chunk = (key_end + partials.splits - 1) / partials.splits;
  const index_t first_key = split * chunk;
  const index_t last_key = first_key + chunk < key_end ? first_key + chunk : key_end;

  float m = minus_infinity, l = 0.0f, acc[DimsPerLane];
#pragma unroll
  for (int t = 0; t < DimsPerLane; ++t) acc[t] = 0.0f;
  for (index_t j0 = first_key + warp; j0 < last_key; j0 += W * U) {
    float score[U];
    bool visible[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {  // U independent partial dots …
      const index_t j = j0 + u * W;
      visible[u] = j < last_key && (!has_mask || a.key_mask(b, j) != 0);  // warp-uniform
      float partial = 0.0f;
      if (visible[u]) {
        const float* key_row = &a.k(b, j, g, 0);
#pragma unroll
        for (int t = 0; t < DimsPerLane; ++t) {
          const int d = lane + 32 * t;
          if (d < head_dim) partial = fmaf(query[t], key_row[d], partial);
        }
      }
      score[u] = partial;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {  // … reduced side by side
#pragma unroll
      for (int u = 0; u < U; ++u) score[u] += __shfl_xor_sync(0xFFFFFFFFu, score[u], offset);
    }
    float step_max = minus_infinity;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      score[u] = visible[u] ? a.scale * score[u] : minus_infinity;
      step_max = fmaxf(step_max, score[u]);  // fmaxf skips NaN: see below
    }
    const float m_new = fmaxf(m, step_max);
    // Nothing visible yet (warp-uniform: the butterfly leaves every lane the same sums) — unless
    // the scores were NaN: those carry on and poison l and acc, so the output is NaN, as on the
    // CPU; the merges below keep any l ≠ 0, NaN included. Only this rare branch looks for NaN.
    if (m_new == minus_infinity) {
      bool nan_score = false;
#pragma unroll
      for (int u = 0; u < U; ++u) nan_score = nan_score || isnan(score[u]);
      if (!nan_score) continue;
    }
    const float correction = expf(m - m_new);
    float p[U];
    l *= correction;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      p[u] = visible[u] ? expf(score[u] - m_new) : 0.0f;
      l += p[u];
    }
#pragma unroll
    for (int t = 0; t < DimsPerLane; ++t) {
      const int d = lane + 32 * t;
      float value = acc[t] * correction;
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (visible[u] && d < head_dim) value = fmaf(p[u], a.v(b, j0 + u * W, g, d), value);
      acc[t] = value;
    }
    m = m_new;
  }

  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < DimsPerLane; ++t) warp_acc[warp][lane + 32 * t] = acc[t];
  __syncthreads();

  float block_m = minus_infinity;
  for (int w = 0; w < W; ++w) block_m = fmaxf(block_m, warp_m[w]);
  float block_l = 0.0f;  // a warp that saw nothing has l = 0; one that saw a NaN score, l = NaN
  for (int w = 0; w < W; ++w)
    if (warp_l[w] != 0.0f) block_l += warp_l[w] * expf(warp_m[w] - block_m);
  const index_t slot = (b * a.q.extent(2) + h) * partials.splits + split;  // (b, h, split)
  if (partials.splits > 1 && tid == 0) {
    partials.m[slot] = block_m;
    partials.l[slot] = block_l;
  }
  for (int d = tid; d < head_dim; d += blockDim.x) {
    float value = 0.0f;
    if (block_l != 0.0f)
      for (int w = 0; w < W; ++w)
        if (warp_l[w] != 0.0f) value += warp_acc[w][d] * expf(warp_m[w] - block_m);
    if (partials.splits > 1) partials.acc[slot * head_dim + d] = value;
    else a.out(b, i, h, d) = block_l != 0.0f ? value / block_l : 0.0f;
  }
}

// grid: (Hq, B). Combines the splits of attention_decode in split order (deterministic).
template <class Ignored = void>
__global__ void attention_decode_merge(const attention_args a, const decode_partials partials) {
  constexpr float minus_infinity = -std::numeric_limits<float>::infinity();
  const index_t h = blockIdx.x, b = blockIdx.y;
  const int head_dim = static_cast<int>(a.q.extent(3));
  const index_t base = (b * a.q.extent(2) + h) * partials.splits;
  float m = minus_infinity;
  for (int s = 0; s < partials.splits; ++s) m = fmaxf(m, partials.m[base + s]);
  float l = 0.0f;  // as in the block merge: l = 0 is a split that saw nothing, NaN is kept
  for (int s = 0; s < partials.splits; ++s)
    if (partials.l[base + s] != 0.0f) l += partials.l[base + s] * expf(partials.m[base + s] - m);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float value = 0.0f;
    if (l != 0.0f) {
      for (int s = 0; s < partials.splits; ++s)
        if (partials.l[base + s] != 0.0f) value += partials.acc[(base + s) * head_dim + d] * expf(partials.m[base + s] - m);
      value /= l;
    }
    a.out(b, 0, h, d) = value;
  }
}

}  // namespace jetmoe::kernels
