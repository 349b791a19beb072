// jetmoe/kernels/routing.cuh — kernels of the routing primitives: row rules, the plan's
// counting-sort helpers, gather/scatter, the k-way combine, and the loss reductions.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/kernels/common.cuh"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::kernels {

// ---- routers: one thread per token runs the (JETMOE_HD) row rule -----------------------------------
// scratch: (T, scratch_per_row) floats, or null when the rule needs none.
template <class RowRule>
__global__ void route_rows(tensor_view<const float, 2> logits, index_t k, tensor_view<std::int32_t, 2> ids,
                           tensor_view<float, 2> gates, const RowRule rule, float* scratch, index_t scratch_per_row) {
  const index_t experts = logits.extent(1);
  for (index_t t = global_thread(); t < logits.extent(0); t += grid_threads()) {
    float* own = scratch != nullptr ? scratch + t * scratch_per_row : nullptr;
    rule(t, logits.data() + t * logits.stride(0), experts, k, own, ids.data() + t * ids.stride(0),
         gates.data() + t * gates.stride(0));
  }
}

// ---- plan ------------------------------------------------------------------------------------------
// Sort key of a slot: its expert, or E for an empty slot (sorted after every expert). A bad id is
// reported and treated as empty; build_plan throws it after its synchronisation.
template <class Ignored = void>
__global__ void plan_keys(const std::int32_t* ids, index_t total, int experts, std::int32_t* keys,
                          std::int32_t* values, device_status* status) {
  for (index_t s = global_thread(); s < total; s += grid_threads()) {
    const std::int32_t e = ids[s];
    std::int32_t key = e;
    if (e < -1 || e >= experts) {
      report(status, bad_expert_id, s, e, experts);
      key = experts;
    } else if (e < 0) {
      key = experts;
    }
    keys[s] = key;
    values[s] = static_cast<std::int32_t>(s);
  }
}

// The capacity's priority order, GShard's: every token's choice j before any token's choice
// j + 1, tokens in order within a choice. list[p] = flat slot of priority p.
template <class Ignored = void>
__global__ void priority_by_position(index_t tokens, index_t slots, std::int32_t* list) {
  const index_t total = tokens * slots;
  for (index_t p = global_thread(); p < total; p += grid_threads())
    list[p] = static_cast<std::int32_t>((p % tokens) * slots + p / tokens);
}

// An unsigned key whose order is the float order, with −0 = +0 and NaN below everything: sorting
// it descending (stable) ranks floats as the library does (larger first, NaN last).
__device__ __forceinline__ unsigned int descending_float_key(float v) {
  if (v != v) return 0u;
  if (v == 0.0f) v = 0.0f;  // −0 → +0
  const unsigned int bits = __float_as_uint(v);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

template <class Ignored = void>
__global__ void gate_keys_of(const std::int32_t* list, index_t total, const float* gates, unsigned int* keys) {
  for (index_t p = global_thread(); p < total; p += grid_threads()) keys[p] = descending_float_key(gates[list[p]]);
}

// keys_out[p] = flat_keys[list[p]], values_out[p] = list[p]: the expert keys in another order.
template <class Ignored = void>
__global__ void keys_in_order(const std::int32_t* list, index_t total, const std::int32_t* flat_keys,
                              std::int32_t* keys_out, std::int32_t* values_out) {
  for (index_t p = global_thread(); p < total; p += grid_threads()) {
    const std::int32_t s = list[p];
    keys_out[p] = flat_keys[s];
    values_out[p] = s;
  }
}

__device__ __forceinline__ index_t lower_bound(const std::int32_t* sorted, index_t n, std::int32_t value) {
  index_t lo = 0, hi = n;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// From keys sorted ascending (values in [0, E]): offsets[e] = first position of key e, counts[e]
// = how many. One thread per e ≤ E, each with its own two binary searches (no cross-thread
// dependency, so any grid works). offsets[E] = slots with an expert. Either output may be null.
template <class Ignored = void>
__global__ void plan_bounds(const std::int32_t* sorted_keys, index_t total, int experts, std::int32_t* offsets,
                            std::int32_t* counts, std::int32_t* assigned) {
  for (index_t e = global_thread(); e <= experts; e += grid_threads()) {
    const index_t begin = lower_bound(sorted_keys, total, static_cast<std::int32_t>(e));
    if (offsets != nullptr) offsets[e] = static_cast<std::int32_t>(begin);
    if (e < experts) {
      const index_t end = lower_bound(sorted_keys, total, static_cast<std::int32_t>(e + 1));
      if (counts != nullptr) counts[e] = static_cast<std::int32_t>(end - begin);
    } else if (assigned != nullptr) {
      *assigned = static_cast<std::int32_t>(begin);
    }
  }
}

// Capacity: in (expert, priority) order, keep the first `capacity` slots of every expert.
// keep[s] = 1 kept, 0 dropped or empty.
template <class Ignored = void>
__global__ void plan_mark_kept(const std::int32_t* sorted_keys, const std::int32_t* sorted_slots, index_t total,
                               int experts, const std::int32_t* expert_begin, long long capacity, std::int32_t* keep) {
  for (index_t i = global_thread(); i < total; i += grid_threads()) {
    const std::int32_t e = sorted_keys[i];
    keep[sorted_slots[i]] = e < experts && static_cast<long long>(i - expert_begin[e]) < capacity ? 1 : 0;
  }
}

// flags[p] = slot list[p] had an expert and was dropped; final_keys[s] = the key after capacity.
template <class Ignored = void>
__global__ void plan_drop_flags(const std::int32_t* list, index_t total, int experts, const std::int32_t* flat_keys,
                                const std::int32_t* keep, std::int32_t* flags, std::int32_t* final_keys,
                                std::int32_t* final_values) {
  for (index_t p = global_thread(); p < total; p += grid_threads()) {
    const std::int32_t s = list[p];
    flags[p] = flat_keys[s] < experts && keep[s] == 0 ? 1 : 0;
    final_keys[p] = keep[p] != 0 ? flat_keys[p] : experts;  // indexed by flat slot p
    final_values[p] = static_cast<std::int32_t>(p);
  }
}

// sorted_slot (total, a permutation of the slots, kept ones first) → sorted_token (token 0 for
// the padding rows past N, so that a gather over every row stays in bounds) and slot_to_sorted
// for every slot (−1 past N).
template <class Ignored = void>
__global__ void plan_finish(const std::int32_t* sorted_slot, index_t total, index_t slots, const std::int32_t* kept_rows,
                            std::int32_t* sorted_token, std::int32_t* slot_to_sorted) {
  const index_t n = *kept_rows;
  for (index_t i = global_thread(); i < total; i += grid_threads()) {
    const std::int32_t s = sorted_slot[i];
    if (i < n) {
      sorted_token[i] = static_cast<std::int32_t>(s / slots);
      slot_to_sorted[s] = static_cast<std::int32_t>(i);
    } else {
      sorted_token[i] = 0;
      slot_to_sorted[s] = -1;
    }
  }
}

// ---- dispatch ----------------------------------------------------------------------------------------
// out[i] = rows[index[i]]; an index outside [0, R) is reported and its row zeroed.
template <class T>
__global__ void gather_rows(tensor_view<const T, 2> rows, tensor_view<const std::int32_t, 1> index,
                            tensor_view<T, 2> out, device_status* status) {
  const index_t width = out.extent(1), n = out.size(), available = rows.extent(0);
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t i = flat / width, c = flat % width;
    const index_t source = index.data()[i * index.stride(0)];
    T* target = out.data() + i * out.stride(0) + c;
    if (source < 0 || source >= available) {
      if (c == 0) report(status, bad_gather_index, i, source, available);
      *target = T{};
    } else {
      *target = rows.data()[source * rows.stride(0) + c];
    }
  }
}

// out[t, j] = sorted[slot_to_sorted[t·S + j]], zero for empty and dropped slots.
template <class T>
__global__ void scatter_to_slots(tensor_view<const T, 2> sorted, const std::int32_t* slot_to_sorted,
                                 tensor_view<T, 3> out) {
  const index_t slots = out.extent(1), width = out.extent(2), n = out.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t c = flat % width, s = flat / width;
    const std::int32_t row = slot_to_sorted[s];
    out.data()[(s / slots) * out.stride(0) + (s % slots) * out.stride(1) + c] =
        row >= 0 ? sorted.data()[row * sorted.stride(0) + c] : T{};
  }
}

// ---- combine: y[t] = Σ_j gate[t, j] · z[row(t, j)] + bias, in slot order, no atomics ------------------
template <class B>
__global__ void combine_rows(tensor_view<const float, 2> z, const float* gates, const std::int32_t* slot_to_sorted,
                             index_t slots, const B* bias, tensor_view<float, 2> y) {
  const index_t width = y.extent(1), n = y.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t t = flat / width, h = flat % width;
    float total = 0.0f;
    for (index_t j = 0; j < slots; ++j) {
      const std::int32_t row = slot_to_sorted[t * slots + j];
      if (row < 0) continue;
      total += gates[t * slots + j] * z.data()[row * z.stride(0) + h];
    }
    if (bias != nullptr) total += widen(bias[h]);
    y.data()[t * y.stride(0) + h] = total;
  }
}

// ---- expert choice ---------------------------------------------------------------------------------
// keys (E, T) of the probabilities column by column, values the token ids; segment e = column e.
template <class Ignored = void>
__global__ void expert_choice_keys(tensor_view<const float, 2> gates, unsigned int* keys, std::int32_t* tokens,
                                   std::int32_t* segment_offsets) {
  const index_t n_tokens = gates.extent(0), experts = gates.extent(1), n = n_tokens * experts;
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t e = flat / n_tokens, t = flat % n_tokens;
    keys[flat] = descending_float_key(gates.data()[t * gates.stride(0) + e * gates.stride(1)]);
    tokens[flat] = static_cast<std::int32_t>(t);
    if (t == 0) segment_offsets[e] = static_cast<std::int32_t>(e * n_tokens);
    if (flat == 0) segment_offsets[experts] = static_cast<std::int32_t>(n);
  }
}

// Expert e takes the first `per_expert` tokens of its sorted column; gates of untaken slots → 0.
template <class Ignored = void>
__global__ void expert_choice_take(const std::int32_t* sorted_tokens, index_t per_expert,
                                   tensor_view<std::int32_t, 2> ids, tensor_view<float, 2> gates) {
  const index_t n_tokens = ids.extent(0), experts = ids.extent(1), n = n_tokens * experts;
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t e = flat / n_tokens, r = flat % n_tokens;
    const std::int32_t t = sorted_tokens[flat];
    std::int32_t* id = ids.data() + t * ids.stride(0) + e * ids.stride(1);
    float* gate = gates.data() + t * gates.stride(0) + e * gates.stride(1);
    if (r < per_expert) *id = static_cast<std::int32_t>(e);
    else *gate = 0.0f;  // the row rule left ids at no_expert; each (t, e) is visited once
  }
}

// ---- losses -------------------------------------------------------------------------------------------
// Per row of one logits tensor (rows offset by `first_row` in the concatenated list): kept flag,
// softmax probabilities, the top-k choice (of the probabilities, or of the logits), and
// logsumexp² in double. The selection is routing::rules::select_top_k, so the tie rule is the
// library's and the choices match the CPU backend's.
template <class Mask>
__global__ void loss_rows(tensor_view<const float, 2> logits, index_t first_row, tensor_view<const Mask, 2> mask,
                          int k, bool top_k_of_probabilities, float* probs, std::int32_t* chosen, float* chosen_values,
                          double* lse_squared, std::int32_t* kept) {
  const index_t experts = logits.extent(1);
  for (index_t r = global_thread(); r < logits.extent(0); r += grid_threads()) {
    const index_t row = first_row + r;
    bool keep = true;
    if (mask.data() != nullptr) {
      const index_t width = mask.extent(1);
      keep = mask.data()[(r / width) * mask.stride(0) + (r % width) * mask.stride(1)] != Mask{0};
    }
    kept[row] = keep ? 1 : 0;
    const float* in = logits.data() + r * logits.stride(0);
    float* p = probs + row * experts;
    routing::rules::softmax(in, p, experts);
    routing::rules::select_top_k(top_k_of_probabilities ? p : in, experts, k, chosen + row * k, chosen_values + row * k);
    double max_value = in[0];
    for (index_t e = 1; e < experts; ++e) max_value = fmax(max_value, static_cast<double>(in[e]));
    double sum = 0.0;
    for (index_t e = 0; e < experts; ++e) sum += exp(static_cast<double>(in[e]) - max_value);
    const double lse = max_value + log(sum);
    lse_squared[row] = lse * lse;
  }
}

// One block per expert e < E: out[e] = Σ kept probs[:, e]; out[E + j·E + e] = kept rows whose
// j-th choice is e. Block E: out[E + k·E] = Σ kept lse², out[E + k·E + 1] = kept rows.
// Fixed block size and fixed reduction order: the same sums every run.
template <class Ignored = void>
__global__ void loss_reduce(const float* probs, const std::int32_t* chosen, const double* lse_squared,
                            const std::int32_t* kept, index_t rows, int experts, int k, double* out) {
  __shared__ double partial[32];
  const int e = blockIdx.x;
  if (e < experts) {
    double sum = 0.0;
    for (index_t r = threadIdx.x; r < rows; r += blockDim.x)
      if (kept[r]) sum += probs[r * experts + e];
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) out[e] = sum;
    for (int j = 0; j < k; ++j) {
      double count = 0.0;
      for (index_t r = threadIdx.x; r < rows; r += blockDim.x)
        if (kept[r] && chosen[r * k + j] == e) count += 1.0;
      count = block_sum(count, partial);
      if (threadIdx.x == 0) out[experts + j * experts + e] = count;
    }
  } else {
    double z = 0.0, count = 0.0;
    for (index_t r = threadIdx.x; r < rows; r += blockDim.x)
      if (kept[r]) {
        z += lse_squared[r];
        count += 1.0;
      }
    z = block_sum(z, partial);
    count = block_sum(count, partial);
    if (threadIdx.x == 0) {
      out[experts + k * experts] = z;
      out[experts + k * experts + 1] = count;
    }
  }
}

}  // namespace jetmoe::kernels
