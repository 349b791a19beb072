// jetmoe/ops/embedding.hpp — row lookup: out[t] = table[ids[t]], widened to float.
#pragma once

#include <cstdint>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::ops {

template <class Policy>
struct embedding_impl {
  JETMOE_NO_BACKEND("ops::embedding");
};

// table: (V, H) float/bf16/half; ids: (T) int64; out: (T, H) float.
// An id outside [0, V) is a jetmoe::error naming the position and the id (nothing is written).
template <class Policy, class W>
void embedding(const Policy& policy, tensor_view<W, 2> table, tensor_view<const std::int64_t, 1> ids,
               tensor_view<float, 2> out) {
  static_assert(floating_dtype<W>, "jetmoe::ops::embedding: the table must be float, bf16 or half");
  check_shape(out, make_dims(ids.extent(0), table.extent(1)), "ops::embedding: output (T, H)");
  embedding_impl<Policy>::run(policy, tensor_view<const std::remove_cv_t<W>, 2>(table), ids, out);
}

}  // namespace jetmoe::ops
