// jetmoe/ops/cpu/elementwise.hpp — CPU backend of ops::add_inplace and ops::copy.
#pragma once

#include <cstring>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/elementwise.hpp"

namespace jetmoe::ops {

template <>
struct elementwise_impl<exec::cpu> {
  static void add_inplace(const exec::cpu& policy, tensor_view<float, 2> x, tensor_view<const float, 2> y) {
    check(x.extents() == y.extents(), "ops::add_inplace: x ", x.extents(), " and y ", y.extents(), " differ");
    check(x.extent(1) <= 1 || (x.stride(1) == 1 && y.stride(1) == 1), "ops::add_inplace: rows must be contiguous");
    const index_t width = x.extent(1);
    exec::parallel_for(policy, x.extent(0), width, [&](std::ptrdiff_t t) {
      float* out = &x(t, 0);
      const float* in = &y(t, 0);
      for (index_t i = 0; i < width; ++i) out[i] += in[i];
    });
  }

  template <std::size_t Rank>
  static void copy(const exec::cpu& /*policy*/, tensor_view<const float, Rank> src, tensor_view<float, Rank> dst) {
    check(src.extents() == dst.extents(), "ops::copy: source ", src.extents(), " and destination ", dst.extents(),
          " differ");
    const index_t width = src.extent(Rank - 1);
    check(width <= 1 || (src.stride(Rank - 1) == 1 && dst.stride(Rank - 1) == 1),
          "ops::copy: the last dimension must be contiguous");
    if (src.empty()) return;
    // Walk every row (all indices but the last) with an odometer over the leading dimensions.
    index_t index[Rank] = {};
    const index_t rows = src.size() / width;
    for (index_t r = 0; r < rows; ++r) {
      index_t from = 0, to = 0;
      for (std::size_t d = 0; d + 1 < Rank; ++d) {
        from += index[d] * src.stride(d);
        to += index[d] * dst.stride(d);
      }
      std::memcpy(dst.data() + to, src.data() + from, static_cast<std::size_t>(width) * sizeof(float));
      for (std::size_t d = Rank - 1; d-- > 0;) {
        if (++index[d] < src.extent(d)) break;
        index[d] = 0;
      }
    }
  }
  // The end position is host memory here: read it now and copy into that window.
  static void copy_to_positions(const exec::cpu& policy, tensor_view<const float, 4> src, tensor_view<float, 4> dst,
                                const std::int32_t* end) {
    const index_t count = src.extent(1), last = *end;
    check(count <= last && last <= dst.extent(1), "ops::copy_to_positions: end position ", last, " is outside [",
          count, ", ", dst.extent(1), "]");
    copy<4>(policy, src, dst.slice(1, last - count, last));
  }
};

}  // namespace jetmoe::ops
