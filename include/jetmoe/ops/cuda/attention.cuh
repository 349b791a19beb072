// jetmoe/ops/cuda/attention.cuh — CUDA backend of ops::attention.
//
// q, k, v and out must be device memory (k and v are typically strided views of a KV cache).
// The key mask may be host or device memory; a host mask is uploaded first (a pageable copy,
// which waits for the stream — keep the mask on the device in a decode loop). The KV head
// mapper must be callable on host and device (JETMOE_HD): the host checks every head's kv head
// once, the kernels call it again per block.
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/attention.cuh"
#include "jetmoe/ops/attention.hpp"
#include "jetmoe/ops/cuda/launch.cuh"

namespace jetmoe::ops {

template <>
struct attention_impl<exec::cuda> {
  // The CUDA backend's head-dimension limit (8 dims per lane).
  static constexpr index_t max_head_dim = 256;
  static constexpr index_t decode_min_keys = 64;  // shortest key range worth its own block

  template <class KvHeadMap>
  static void run(const exec::cuda& policy, tensor_view<const float, 4> q, tensor_view<const float, 4> k,
                  tensor_view<const float, 4> v, tensor_view<float, 4> out, const attention_options& options,
                  KvHeadMap kv_head_of) {
    cuda_detail::check_operands(policy, "ops::attention", {{"q", q}, {"k", k}, {"v", v}, {"the output", out}});
    const index_t batch = q.extent(0), q_heads = q.extent(2), head_dim = q.extent(3);
    check(head_dim <= max_head_dim, "ops::attention: head dimension ", head_dim, " exceeds the CUDA backend's ",
          max_head_dim);
    tensor_view<const std::uint8_t, 2> mask = options.key_mask;  // (B, Tk)
    const bool has_mask = mask.data() != nullptr || !(mask.extents() == dims<2>{});
    check(q_heads <= 65535 && batch <= 65535, "ops::attention: ", batch, " rows × ", q_heads,
          " heads exceed the CUDA grid");
    cuda_detail::check_on_device(options.key_count, "ops::attention", "key_count");  // read when the kernels run
    if (out.empty()) return;

    tensor<std::uint8_t, 2, exec::cuda> uploaded_mask;  // (B, Tk), only for a host mask
    if (has_mask && mask.size() > 0 && !cuda_detail::is_device_pointer(mask.data())) {
      uploaded_mask = exec::to_device(policy, mask);
      mask = uploaded_mask.view();
    }
    const kernels::attention_args args{q, k, v, out, has_mask ? mask : tensor_view<const std::uint8_t, 2>{},
                                       options.scale, static_cast<long long>(options.q_offset), options.causal,
                                       options.key_count};
    if (head_dim <= 64) launch<2>(policy, args, kv_head_of);
    else if (head_dim <= 128) launch<4>(policy, args, kv_head_of);
    else launch<8>(policy, args, kv_head_of);
  }

 private:
  template <int DimsPerLane, class KvHeadMap>
  static void launch(const exec::cuda& policy, const kernels::attention_args& a, KvHeadMap kv_head_of) {
    const index_t batch = a.q.extent(0), q_len = a.q.extent(1), q_heads = a.q.extent(2);
    if (q_len == 1) {
      // Enough splits for about two blocks per SM of an H100 (132), none shorter than 64 keys.
      const index_t keys = a.k.extent(1), heads = batch * q_heads;
      const index_t wanted = (264 + heads - 1) / heads, most = (keys + decode_min_keys - 1) / decode_min_keys;
      const int splits = static_cast<int>(std::max<index_t>(1, std::min<index_t>({wanted, most, 256})));
      kernels::decode_partials partials;
      partials.splits = splits;
      tensor<float, 1, exec::cuda> workspace;  // (B·Hq·splits·(D + 2)) partial m, l and outputs
      if (splits > 1) {
        const index_t slots = heads * splits;
        workspace = tensor<float, 1, exec::cuda>(policy, make_dims(slots * (a.q.extent(3) + 2)));
        partials.m = workspace.data();
        partials.l = partials.m + slots;
        partials.acc = partials.l + slots;
      }
      const dim3 grid(static_cast<unsigned int>(splits), static_cast<unsigned int>(q_heads),
                      static_cast<unsigned int>(batch));
      kernels::attention_decode<DimsPerLane, KvHeadMap>
          <<<grid, kernels::attention_decode_warps * 32, 0, policy.stream()>>>(a, kv_head_of, partials);
      JETMOE_CUDA_CHECK_LAUNCH();
      if (splits > 1) {
        const dim3 merge_grid(static_cast<unsigned int>(q_heads), static_cast<unsigned int>(batch));
        kernels::attention_decode_merge<><<<merge_grid, 128, 0, policy.stream()>>>(a, partials);
        JETMOE_CUDA_CHECK_LAUNCH();
      }
      return;  // `workspace` goes back to the pool, ordered after the merge on the stream
    }
    const index_t tiles = (q_len + kernels::attention_query_tile - 1) / kernels::attention_query_tile;
    check(tiles < (index_t{1} << 31), "ops::attention: ", q_len, " queries exceed the CUDA grid");
    const std::size_t shared = kernels::attention_tiles_shared_bytes(a.q.extent(3));
    auto kernel = kernels::attention_tiles<DimsPerLane, KvHeadMap>;
    if (shared > 48 * 1024)  // above the default limit the kernel must opt in
      JETMOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(shared)));
    const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(q_heads),
                    static_cast<unsigned int>(batch));
    kernel<<<grid, kernels::attention_warps * 32, shared, policy.stream()>>>(a, kv_head_of);
    JETMOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace jetmoe::ops
