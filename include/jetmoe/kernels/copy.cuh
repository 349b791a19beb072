// jetmoe/kernels/copy.cuh — elementwise kernels over views: strided copy, in-place add.
#pragma once

#include <cstddef>

#include "jetmoe/core/view.hpp"
#include "jetmoe/kernels/common.cuh"

namespace jetmoe::kernels {

// dst = src for two views of the same extents and any strides. One thread per element; the
// flat index runs over the extents row-major, so consecutive threads touch consecutive
// elements of the last dimension (coalesced when that dimension is contiguous).
template <class T, std::size_t Rank>
__global__ void strided_copy(tensor_view<const T, Rank> src, tensor_view<T, Rank> dst) {
  const index_t n = src.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    index_t rest = flat, from = 0, to = 0;
    for (std::size_t d = Rank; d-- > 0;) {
      const index_t i = rest % src.extent(d);
      rest /= src.extent(d);
      from += i * src.stride(d);
      to += i * dst.stride(d);
    }
    dst.data()[to] = src.data()[from];
  }
}

// x += y over (T, H) views whose rows are contiguous. (Kernels are templates throughout, so a
// header included by several translation units defines no duplicate host stubs.)
template <class T>
__global__ void add_rows(tensor_view<T, 2> x, tensor_view<const T, 2> y) {
  const index_t width = x.extent(1), n = x.size();
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t t = flat / width, c = flat % width;
    x.data()[t * x.stride(0) + c] += y.data()[t * y.stride(0) + c];
  }
}

}  // namespace jetmoe::kernels
