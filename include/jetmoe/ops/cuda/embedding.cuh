// jetmoe/ops/cuda/embedding.cuh — CUDA backend of ops::embedding: out[t] = float(table[ids[t]]).
//
// ids may live on the host or on the device:
//  * host ids are checked on the host before anything is queued, so a bad id throws right
//    here and nothing is written, exactly like the CPU backend; they are then uploaded (a
//    pageable copy, which waits for the stream).
//  * device ids are checked on the device (no host wait): a bad id means nothing is written,
//    and the error is thrown by the next API boundary that synchronises
//    (policy.synchronize(), to_host, build_plan).
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/rowwise.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/embedding.hpp"

namespace jetmoe::ops {

template <>
struct embedding_impl<exec::cuda> {
  // table: (V, H) device; ids: (T) host or device; out: (T, H) device.
  template <class W>
  static void run(const exec::cuda& policy, tensor_view<const W, 2> table, tensor_view<const std::int64_t, 1> ids,
                  tensor_view<float, 2> out) {
    cuda_detail::check_operands(policy, "ops::embedding", {{"the table", table}, {"the output", out}});
    const index_t vocab = table.extent(0), tokens = ids.extent(0);
    if (tokens == 0) return;
    constexpr int block = 256;
    const auto grid = static_cast<unsigned int>(std::min<index_t>(tokens, 65535));

    if (!cuda_detail::is_device_pointer(ids.data())) {
      for (index_t t = 0; t < tokens; ++t)
        check(0 <= ids(t) && ids(t) < vocab, "ops::embedding: token id ", ids(t), " at position ", t,
              " is outside the vocabulary [0, ", vocab, ")");
      if (out.extent(1) == 0) return;
      const auto uploaded = exec::to_device(policy, ids);  // (T)
      kernels::gather_embeddings<W, std::int64_t>
          <<<grid, block, 0, policy.stream()>>>(table, uploaded.view(), out, nullptr);
      JETMOE_CUDA_CHECK_LAUNCH();
      return;
    }

    tensor<unsigned int, 1, exec::cuda> failed = tensor<unsigned int, 1, exec::cuda>::zeros(policy, make_dims(1));
    kernels::check_ids<std::int64_t><<<kernels::blocks_for(tokens, block), block, 0, policy.stream()>>>(
        ids, vocab, policy.status(), failed.data());
    JETMOE_CUDA_CHECK_LAUNCH();
    if (out.extent(1) == 0) return;
    kernels::gather_embeddings<W, std::int64_t><<<grid, block, 0, policy.stream()>>>(table, ids, out, failed.data());
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
