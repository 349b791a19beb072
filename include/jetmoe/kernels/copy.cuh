// jetmoe/kernels/copy.cuh — elementwise kernels over views: strided copy, copy to positions
// read on the device, in-place add.
#pragma once

#include <cstddef>
#include <cstdint>

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

// dst[b, e − T + t, h, d] = src[b, t, h, d] with e = *end read here, on the device. An end
// outside [T, C] is reported (bad_position) and nothing is written.
template <class T>
__global__ void copy_to_positions(tensor_view<const T, 4> src, tensor_view<T, 4> dst, const std::int32_t* end,
                                  device_status* status) {
  const index_t count = src.extent(1), last = *end;
  if (last < count || last > dst.extent(1)) {
    if (global_thread() == 0) report(status, bad_position, 0, last, dst.extent(1));
    return;
  }
  const index_t first = last - count, n = src.size();
  const index_t heads = src.extent(2), width = src.extent(3);
  for (index_t flat = global_thread(); flat < n; flat += grid_threads()) {
    const index_t d = flat % width, h = (flat / width) % heads, t = (flat / (width * heads)) % count;
    const index_t b = flat / (width * heads * count);
    dst(b, first + t, h, d) = src(b, t, h, d);
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
