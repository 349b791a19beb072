// jetmoe/routing/cuda/row_rules.cuh — CUDA backend of routing::route_rows: a thread per token
// runs the router's JETMOE_HD row rule, so every row-wise router (top-k-then-softmax,
// softmax-then-top-k, sigmoid with groups and bias, Switch, noisy top-k, the expert-choice
// first pass) runs on the device unchanged.
//
// The rule is copied to the device by value: pointers inside it (sigmoid_top_k's selection
// bias) must be device memory. A rule names them in input_pointers(), and a host pointer there
// is a jetmoe::error here rather than an illegal-address fault in the kernel. Its per-token
// scratch is one pooled (T, scratch_floats(E)) buffer, released to the pool (stream-ordered)
// when the call returns.
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/routing.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/routing/row_rules.hpp"

namespace jetmoe::routing {

template <>
struct route_rows_impl<exec::cuda> {
  template <class RowRule>
  static void run(const exec::cuda& policy, tensor_view<const float, 2> logits, index_t k,
                  tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates, const RowRule& rule) {
    static_assert(std::is_trivially_copyable_v<RowRule>, "jetmoe::routing: a row rule run on CUDA is copied to the "
                                                         "device, so it must be trivially copyable");
    const index_t tokens = logits.extent(0), experts = logits.extent(1);
    if (tokens == 0) return;
    ops::cuda_detail::check_operands(policy, "routing::route_rows",
                                      {{"the logits", logits}, {"the expert ids", expert_ids}, {"the gates", gates}});
    check(experts <= 1 || logits.stride(1) == 1, "routing::route_rows: rows of the logits must be contiguous");
    if constexpr (requires { rule.input_pointers(); })
      for (const void* input : rule.input_pointers())
        ops::cuda_detail::check_on_device(input, "routing::route_rows",
                                          "a pointer input of the router's row rule (e.g. sigmoid_top_k::selection_bias)");
    const index_t per_row = std::max<index_t>(rule.scratch_floats(experts), 0);
    tensor<float, 2, exec::cuda> scratch;  // (T, scratch_floats(E))
    if (per_row > 0) scratch = tensor<float, 2, exec::cuda>(policy, make_dims(tokens, per_row));
    // 128 threads: a row rule keeps E-sized loops in registers/local memory; few per SM is plenty.
    constexpr int block = 128;
    kernels::route_rows<RowRule><<<kernels::blocks_for(tokens, block), block, 0, policy.stream()>>>(
        logits, k, expert_ids, gates, rule, per_row > 0 ? scratch.data() : nullptr, per_row);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::routing
