// jetmoe/generation/kv_cache.hpp — keys and values of past positions, per layer.
//
// Stored (B, Hkv, capacity, D) so that one head's keys are contiguous for attention; the
// attention op receives them as a strided (B, C, Hkv, D) view. A (B, capacity) mask marks which
// positions hold real tokens (0 for left padding), so batched prompts of different lengths
// share one cache. Keys and values live in the policy's memory; the mask is written on the
// host and, for a device policy, mirrored to the device a window at a time.
//
// It is addressed position-free, so that work queued once can be replayed (a decode step in a
// CUDA graph): key_store / value_store / full_key_mask view every position, and end_of_step()
// points at the count length() + count in the policy's memory, which reserve_positions writes
// and which ops::copy_to_positions and ops::attention (key_count) read when they run.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/exec/transfer.hpp"

namespace jetmoe::generation {

template <exec::execution_policy Policy = exec::cpu>
class kv_cache {
 public:
  kv_cache() = default;
  kv_cache(const Policy& policy, int layers, index_t batch, index_t kv_heads, index_t capacity, index_t head_dim)
      : policy_(policy),
        capacity_(capacity),
        mask_(tensor<std::uint8_t, 2>::zeros(make_dims(batch, capacity))),
        end_of_step_(tensor<std::int32_t, 1, Policy>::zeros(policy, make_dims(1))),
        serial_(next_serial()) {
    check(capacity > 0, "kv_cache: capacity must be positive");
    check(capacity < (index_t{1} << 31), "kv_cache: capacity ", capacity, " exceeds 32-bit positions");
    if constexpr (!Policy::is_host) device_mask_ = tensor<std::uint8_t, 2, Policy>::zeros(policy, make_dims(batch, capacity));
    for (int l = 0; l < layers; ++l) {
      keys_.emplace_back(policy, make_dims(batch, kv_heads, capacity, head_dim));  // (B, Hkv, C, D)
      values_.emplace_back(policy, make_dims(batch, kv_heads, capacity, head_dim));
    }
  }

  const Policy& policy() const { return policy_; }
  index_t length() const { return length_; }
  index_t capacity() const { return capacity_; }
  index_t batch() const { return mask_.extent(0); }
  int layers() const { return static_cast<int>(keys_.size()); }
  // Tells caches apart for the lifetime of the process (a new cache may reuse an old address).
  std::uint64_t serial() const { return serial_; }

  // Makes room for `count` new positions; `real` (B, count) says which are tokens (1) or padding (0).
  void reserve_positions(index_t count, tensor_view<const std::uint8_t, 2> real) {
    check(length_ + count <= capacity_, "kv_cache: ", length_, " cached + ", count, " new positions exceed the capacity ",
          capacity_, " (the model's context length or the cache size asked for)");
    check_shape(real, make_dims(batch(), count), "kv_cache::reserve_positions mask");
    for (index_t b = 0; b < batch(); ++b)
      for (index_t i = 0; i < count; ++i) mask_(b, length_ + i) = real(b, i);
    if constexpr (!Policy::is_host) {
      const tensor_view<const std::uint8_t, 2> host = mask_.view();
      for (index_t b = 0; b < batch(); ++b)  // each row's new window is contiguous on both sides
        copy_to_device(policy_, host.select(b).slice(0, length_, length_ + count),
                       device_mask_.view().select(b).slice(0, length_, length_ + count));
    }
    const std::int32_t end = static_cast<std::int32_t>(length_ + count);
    copy_to_device(policy_, make_view<const std::int32_t>(&end, 1), end_of_step_.view());
  }
  // Marks the positions reserved above as written by every layer.
  void commit_positions(index_t count) { length_ += count; }

  // Position-free views: (B, C, Hkv, D) every position, and the (B, C) mask of all of them.
  tensor_view<float, 4> key_store(int layer) { return positions_first(keys_.at(layer)); }
  tensor_view<float, 4> value_store(int layer) { return positions_first(values_.at(layer)); }
  tensor_view<const std::uint8_t, 2> full_key_mask() const {
    if constexpr (Policy::is_host)
      return mask_.view();
    else
      return device_mask_.view();
  }
  // (1) in the policy's memory: length() + the positions reserved last, i.e. where the step
  // being run ends. Valid from reserve_positions until the next one.
  const std::int32_t* end_of_step() const { return end_of_step_.data(); }

  void clear() {
    length_ = 0;
    mask_ = tensor<std::uint8_t, 2>::zeros(mask_.extents());
    if constexpr (!Policy::is_host) policy_.fill_zero(device_mask_.data(), device_mask_.bytes());
  }

 private:
  static tensor_view<float, 4> positions_first(tensor<float, 4, Policy>& store) {
    return store.view().transpose(1, 2);  // (B, Hkv, C, D) → (B, C, Hkv, D)
  }
  static std::uint64_t next_serial() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }

  Policy policy_{};
  index_t capacity_ = 0;
  index_t length_ = 0;
  std::vector<tensor<float, 4, Policy>> keys_;    // per layer (B, Hkv, C, D)
  std::vector<tensor<float, 4, Policy>> values_;  // per layer (B, Hkv, C, D)
  tensor<std::uint8_t, 2> mask_;                  // (B, C), host
  tensor<std::uint8_t, 2, Policy> device_mask_;   // (B, C), a device policy's copy of mask_ (empty on the CPU)
  tensor<std::int32_t, 1, Policy> end_of_step_;   // (1) length_ + reserved count, in the policy's memory
  std::uint64_t serial_ = 0;                      // 0: a default-constructed cache
};

}  // namespace jetmoe::generation
