// jetmoe/routing/buffer.hpp — growable_buffer: scratch memory that is reused across calls.
//
// Routing runs once per layer per step; during generation that is every token. Allocating the
// plan and the expert activations on every call would cost more than the routing itself, so
// each scratch array grows to the largest size it has been asked for and then stays.
#pragma once

#include <algorithm>
#include <cstddef>

#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::routing {

template <class T, exec::execution_policy Policy>
class growable_buffer {
 public:
  // At least `count` elements; contents are NOT kept when the buffer grows.
  T* reserve(const Policy& policy, index_t count) {
    check(count >= 0, "routing::growable_buffer: negative size ", count);
    if (count > storage_.size()) {
      // Grow by half again so that a slowly rising T (prefill chunks) reallocates rarely.
      const index_t grown = std::max<index_t>(count, storage_.size() + storage_.size() / 2);
      storage_ = tensor<T, 1, Policy>(policy, make_dims(grown));
    }
    return storage_.data();
  }

  // Contiguous views of the first elements, reserving them first.
  tensor_view<T, 1> vector(const Policy& policy, index_t n) { return {reserve(policy, n), make_dims(n)}; }
  tensor_view<T, 2> matrix(const Policy& policy, index_t rows, index_t cols) {
    return {reserve(policy, rows * cols), make_dims(rows, cols)};
  }
  tensor_view<T, 3> cube(const Policy& policy, index_t d0, index_t d1, index_t d2) {
    return {reserve(policy, d0 * d1 * d2), make_dims(d0, d1, d2)};
  }

  T* data() { return storage_.data(); }
  const T* data() const { return storage_.data(); }
  index_t capacity() const { return storage_.size(); }
  std::size_t bytes() const { return storage_.bytes(); }

 private:
  tensor<T, 1, Policy> storage_;
};

}  // namespace jetmoe::routing
