// jetmoe/routing/cuda/plan.cuh — CUDA backend of routing::build_plan: stable counting sorts
// with CUB.
//
// Every slot gets the key "its expert" (E when empty), and one stable radix sort over
// ceil(log2(E + 1)) bits — a counting scatter, which keeps tokens in ascending order within an
// expert — puts the kept slots in the plan's order. Per-expert counts and offsets come from
// binary searches over the sorted keys (one thread per expert, no atomics). With a capacity,
// two more passes run first: the slots in priority order (by_gate: a stable descending radix
// sort of the gates), sorted stably by expert, give each slot its rank within its expert; the
// first `capacity` of each expert are kept, and DeviceSelect lists the dropped ones in priority
// order, as the CPU backend does.
//
// Workspace: the plan's own scratch array (grown to the largest call, then reused), so steady
// state allocates nothing.
//
// Nothing here waits for the device: the row count N, the dropped and the empty counts stay in
// the plan's summary array until a caller asks for one (routing_plan::settled), and consumers
// size their arrays for the host bound max_sorted_rows(). So a routed layer queues all its work
// without a host synchronisation and can be captured in a CUDA graph. An expert id outside
// [no_expert, E) is recorded in the policy's error word (that slot is treated as empty) and
// thrown by the next wait.
#pragma once

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <>
struct build_plan_impl<exec::cuda> {
  static void run(const exec::cuda& policy, routing_plan<exec::cuda>& plan, capacity_limit capacity) {
    const index_t tokens = plan.tokens_, slots = plan.slots_, experts = plan.experts_;
    const index_t total = tokens * slots;
    check(total < std::numeric_limits<std::int32_t>::max() && experts < std::numeric_limits<std::int32_t>::max() / 2,
          "routing::build_plan: ", total, " slots over ", experts, " experts exceed the CUDA backend's 32-bit indices");
    const int num_experts = static_cast<int>(experts);
    const int items = static_cast<int>(total);
    const cudaStream_t stream = policy.stream();

    std::int32_t* routed = plan.routed_counts_.reserve(policy, experts);        // (E)
    std::int32_t* counts = plan.counts_.reserve(policy, experts);               // (E)
    std::int32_t* offsets = plan.offsets_.reserve(policy, experts + 1);         // (E+1)
    std::int32_t* to_sorted = plan.slot_to_sorted_.reserve(policy, total);      // (T·S)
    std::int32_t* sorted_slot = plan.sorted_slot_.reserve(policy, total);       // (T·S) kept first, then the rest
    std::int32_t* sorted_token = plan.sorted_token_.reserve(policy, total);     // (T·S), first N meaningful
    std::int32_t* dropped_out = capacity.is_limited() ? plan.dropped_slots_.reserve(policy, total) : nullptr;  // (D)
    const std::int32_t* ids = plan.expert_ids_.data();  // (T·S)
    const float* gates = plan.gates_.data();             // (T·S)

    // Radix sorts look only at the bits that can be set: keys are in [0, E].
    const int key_bits = std::max(1, static_cast<int>(std::bit_width(static_cast<unsigned int>(experts))));

    // ---- scratch, carved from the plan's int32 array in 256-byte aligned pieces ----
    std::size_t temp_bytes = 0, bytes = 0;
    JETMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const std::int32_t*>(nullptr),
                                                      static_cast<std::int32_t*>(nullptr),
                                                      static_cast<const std::int32_t*>(nullptr),
                                                      static_cast<std::int32_t*>(nullptr), items, 0, key_bits, stream));
    temp_bytes = std::max(temp_bytes, bytes);
    if (capacity.is_limited()) {
      JETMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
          nullptr, bytes, static_cast<const unsigned int*>(nullptr), static_cast<unsigned int*>(nullptr),
          static_cast<const std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr), items, 0, 32, stream));
      temp_bytes = std::max(temp_bytes, bytes);
      JETMOE_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, bytes, static_cast<const std::int32_t*>(nullptr),
                                                   static_cast<const std::int32_t*>(nullptr),
                                                   static_cast<std::int32_t*>(nullptr),
                                                   static_cast<std::int32_t*>(nullptr), items, stream));
      temp_bytes = std::max(temp_bytes, bytes);
    }
    constexpr index_t align = 64;  // int32 words = 256 bytes
    const auto words = [&](index_t n) { return (n + align - 1) / align * align; };
    const index_t arrays = capacity.is_limited() ? 8 : 3;
    const index_t temp_words = words(static_cast<index_t>((temp_bytes + 3) / 4));
    std::int32_t* base = plan.scratch_.reserve(policy, arrays * words(total) + temp_words);
    std::int32_t* cursor = base;
    const auto take = [&](index_t n) {
      std::int32_t* piece = cursor;
      cursor += words(n);
      return piece;
    };
    std::int32_t* flat_keys = take(total);    // (T·S) expert or E, by flat slot
    std::int32_t* sorted_keys = take(total);  // (T·S) sort output keys
    std::int32_t* flat_values = take(total);  // (T·S) 0 … T·S−1
    std::int32_t* summary = plan.summary_.reserve(policy, 4);  // [assigned slots, kept rows N, dropped D, unused]
    void* temp = take(static_cast<index_t>((temp_bytes + 3) / 4));

    constexpr int block = 256;
    const unsigned int grid = kernels::blocks_for(total, block);
    JETMOE_CUDA_CHECK(cudaMemsetAsync(summary, 0, 4 * sizeof(std::int32_t), stream));
    if (total > 0) {
      kernels::plan_keys<><<<grid, block, 0, stream>>>(ids, total, num_experts, flat_keys, flat_values, policy.status());
      JETMOE_CUDA_CHECK_LAUNCH();
    }

    const std::int32_t* final_keys = flat_keys;      // keys after the capacity, by flat slot
    const std::int32_t* final_values = flat_values;
    if (capacity.is_limited() && total > 0) {
      std::int32_t* list = take(total);          // (T·S) slots in priority order
      std::int32_t* keys = take(total);          // (T·S) scratch keys / gate keys
      std::int32_t* values = take(total);        // (T·S) scratch values
      std::int32_t* by_expert = take(total);     // (T·S) slots by (expert, priority)
      std::int32_t* keep = take(total);          // (T·S) 1 when the slot keeps its expert
      // Reuse: `sorted_keys` receives the (expert, priority) keys; flags and the final keys go to
      // `values`/`keys` once they are free again (see below).

      kernels::priority_by_position<><<<grid, block, 0, stream>>>(tokens, slots, list);
      JETMOE_CUDA_CHECK_LAUNCH();
      if (capacity.policy == drop_policy::by_gate) {
        auto* gate_keys = reinterpret_cast<unsigned int*>(keys);
        kernels::gate_keys_of<><<<grid, block, 0, stream>>>(list, total, gates, gate_keys);
        JETMOE_CUDA_CHECK_LAUNCH();
        JETMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(temp, temp_bytes, gate_keys,
                                                                    reinterpret_cast<unsigned int*>(sorted_keys), list,
                                                                    values, items, 0, 32, stream));
        JETMOE_CUDA_CHECK(cudaMemcpyAsync(list, values, static_cast<std::size_t>(total) * sizeof(std::int32_t),
                                          cudaMemcpyDeviceToDevice, stream));
      }
      kernels::keys_in_order<><<<grid, block, 0, stream>>>(list, total, flat_keys, keys, values);
      JETMOE_CUDA_CHECK_LAUNCH();
      JETMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, sorted_keys, values, by_expert, items, 0,
                                                        key_bits, stream));
      // Where each expert's run starts in (expert, priority) order; routed counts are its lengths.
      kernels::plan_bounds<><<<kernels::blocks_for(experts + 1, block), block, 0, stream>>>(
          sorted_keys, total, num_experts, offsets, routed, summary + 0);
      JETMOE_CUDA_CHECK_LAUNCH();
      kernels::plan_mark_kept<><<<grid, block, 0, stream>>>(sorted_keys, by_expert, total, num_experts, offsets,
                                                            static_cast<long long>(capacity.per_expert), keep);
      JETMOE_CUDA_CHECK_LAUNCH();
      std::int32_t* flags = by_expert;  // free again
      std::int32_t* kept_keys = keys;   // free again
      kernels::plan_drop_flags<><<<grid, block, 0, stream>>>(list, total, num_experts, flat_keys, keep, flags, kept_keys,
                                                             values);
      JETMOE_CUDA_CHECK_LAUNCH();
      JETMOE_CUDA_CHECK(cub::DeviceSelect::Flagged(temp, temp_bytes, list, flags, dropped_out, summary + 2, items, stream));
      final_keys = kept_keys;
      final_values = values;
    }

    if (total > 0) {
      JETMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, final_keys, sorted_keys, final_values,
                                                        sorted_slot, items, 0, key_bits, stream));
      std::int32_t* routed_or_null = capacity.is_limited() ? nullptr : routed;
      std::int32_t* assigned_or_kept = capacity.is_limited() ? summary + 1 : summary + 0;
      kernels::plan_bounds<><<<kernels::blocks_for(experts + 1, block), block, 0, stream>>>(
          sorted_keys, total, num_experts, offsets, counts, assigned_or_kept);
      JETMOE_CUDA_CHECK_LAUNCH();
      if (routed_or_null != nullptr) {  // no capacity: routed = counts, N = assigned
        JETMOE_CUDA_CHECK(cudaMemcpyAsync(routed, counts, static_cast<std::size_t>(experts) * sizeof(std::int32_t),
                                          cudaMemcpyDeviceToDevice, stream));
        JETMOE_CUDA_CHECK(cudaMemcpyAsync(summary + 1, summary + 0, sizeof(std::int32_t), cudaMemcpyDeviceToDevice, stream));
      }
      kernels::plan_finish<><<<grid, block, 0, stream>>>(sorted_slot, total, slots, summary + 1, sorted_token, to_sorted);
      JETMOE_CUDA_CHECK_LAUNCH();
    } else {
      // No slots: every expert is empty.
      JETMOE_CUDA_CHECK(cudaMemsetAsync(routed, 0, static_cast<std::size_t>(experts) * sizeof(std::int32_t), stream));
      JETMOE_CUDA_CHECK(cudaMemsetAsync(counts, 0, static_cast<std::size_t>(experts) * sizeof(std::int32_t), stream));
      JETMOE_CUDA_CHECK(cudaMemsetAsync(offsets, 0, static_cast<std::size_t>(experts + 1) * sizeof(std::int32_t), stream));
    }

    // N, D and the empty count stay on the device until asked for; R bounds N on the host.
    index_t bound = total;
    if (capacity.is_limited() && capacity.per_expert < total / std::max<index_t>(experts, 1) + 1)
      bound = std::min(total, capacity.per_expert * experts);  // no overflow: per_expert·E ≤ total + E
    plan.row_capacity_ = bound;
    plan.policy_ = policy;
    plan.counts_pending_ = true;
    plan.capacity_ = capacity;
    plan.built_ = true;
  }
};

}  // namespace jetmoe::routing
