// jetmoe/routing/cuda/expert_choice.cuh — CUDA backend of the expert-choice token selection.
//
// Each expert's column of probabilities is one segment of a CUB segmented radix sort (stable,
// descending, keys that order floats as the library does: NaN last, −0 = +0), so ties go to
// the lower token index exactly as on the CPU. The sort's scratch comes from the pool.
#pragma once

#include <cub/device/device_segmented_radix_sort.cuh>

#include <cstdint>
#include <limits>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/routing/expert_choice.hpp"

namespace jetmoe::routing {

template <>
struct expert_choice_impl<exec::cuda> {
  // expert_ids, gates: (T, E), the row rule's output (ids all no_expert, gates = probabilities).
  static void take_tokens(const exec::cuda& policy, index_t per_expert, tensor_view<std::int32_t, 2> expert_ids,
                          tensor_view<float, 2> gates) {
    ops::cuda_detail::check_operands(policy, "routing::expert_choice",
                                      {{"the expert ids", expert_ids}, {"the gates", gates}});
    const index_t tokens = gates.extent(0), experts = gates.extent(1), n = tokens * experts;
    if (n == 0) return;
    check(n < std::numeric_limits<std::int32_t>::max(), "routing::expert_choice (CUDA): ", n,
          " entries exceed 32-bit indices");
    const cudaStream_t stream = policy.stream();
    tensor<unsigned int, 1, exec::cuda> keys(policy, make_dims(n));           // (E·T) column-major keys
    tensor<unsigned int, 1, exec::cuda> sorted_keys(policy, make_dims(n));    // (E·T)
    tensor<std::int32_t, 1, exec::cuda> token_ids(policy, make_dims(n));      // (E·T)
    tensor<std::int32_t, 1, exec::cuda> sorted_tokens(policy, make_dims(n));  // (E·T) best first per expert
    tensor<std::int32_t, 1, exec::cuda> segments(policy, make_dims(experts + 1));  // (E+1)

    constexpr int block = 256;
    kernels::expert_choice_keys<><<<kernels::blocks_for(n, block), block, 0, stream>>>(gates, keys.data(),
                                                                                        token_ids.data(), segments.data());
    JETMOE_CUDA_CHECK_LAUNCH();
    std::size_t temp_bytes = 0;
    JETMOE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp_bytes, keys.data(), sorted_keys.data(), token_ids.data(), sorted_tokens.data(),
        static_cast<int>(n), static_cast<int>(experts), segments.data(), segments.data() + 1, 0, 32, stream));
    tensor<unsigned char, 1, exec::cuda> temp(policy, make_dims(static_cast<index_t>(temp_bytes > 0 ? temp_bytes : 1)));
    JETMOE_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp.data(), temp_bytes, keys.data(), sorted_keys.data(), token_ids.data(), sorted_tokens.data(),
        static_cast<int>(n), static_cast<int>(experts), segments.data(), segments.data() + 1, 0, 32, stream));
    kernels::expert_choice_take<><<<kernels::blocks_for(n, block), block, 0, stream>>>(sorted_tokens.data(), per_expert,
                                                                                       expert_ids, gates);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::routing
