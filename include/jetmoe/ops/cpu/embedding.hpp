// jetmoe/ops/cpu/embedding.hpp — CPU backend of ops::embedding: out[t] = float(table[ids[t]]).
#pragma once

#include <cstdint>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/widen.hpp"
#include "jetmoe/ops/embedding.hpp"

namespace jetmoe::ops {

template <>
struct embedding_impl<exec::cpu> {
  // table: (V, H); ids: (T); out: (T, H).
  template <class W>
  static void run(const exec::cpu& policy, tensor_view<const W, 2> table, tensor_view<const std::int64_t, 1> ids,
                  tensor_view<float, 2> out) {
    // Every id is checked before any row is written, so a bad batch leaves `out` untouched.
    const index_t vocab = table.extent(0);
    for (index_t t = 0; t < ids.extent(0); ++t)
      check(0 <= ids(t) && ids(t) < vocab, "ops::embedding: token id ", ids(t), " at position ", t,
            " is outside the vocabulary [0, ", vocab, ")");
    const index_t width = table.extent(1);
    if (out.empty()) return;
    exec::parallel_for(policy, ids.extent(0), width, [&](std::ptrdiff_t t) {
      const W* source = &table(ids(t), 0);  // (H)
      float* target = &out(t, 0);           // (H)
      if (table.stride(1) == 1 && out.stride(1) == 1) {
        cpu_detail::widen(source, target, width);
      } else {
        for (index_t c = 0; c < width; ++c)
          target[c * out.stride(1)] = cpu_detail::widen_one(source[c * table.stride(1)]);
      }
    });
  }
};

}  // namespace jetmoe::ops
