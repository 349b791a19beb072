// jetmoe/exec/transfer.hpp — moving data between the host and a policy's memory: the calls
// generic code makes, and their exec::cpu versions.
//
// Code that is generic over the policy (the model, generation) reads its inputs from the host
// and hands results back to it through four calls:
//   copy_to_device(policy, host_view, policy_view)   host → policy memory
//   copy_to_host(policy, policy_view, host_view)     policy memory → host (waits for the work)
//   to_device(policy, host_view) / to_host(policy, policy_view)   the same into new tensors
// exec/cuda.cuh defines copy_to_device, copy_to_host and staged for exec::cuda; to_device and
// to_host below serve every policy. For exec::cpu both sides are host memory, so the copies
// are element copies that honour strides, and `staged` hands back the host view itself.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe::exec {

namespace transfer_detail {
// dst = src element by element, both host views of equal extents, any strides.
template <class T, std::size_t Rank>
void host_copy(tensor_view<const T, Rank> src, tensor_view<T, Rank> dst, const char* who) {
  check(src.extents() == dst.extents(), who, ": source ", src.extents(), " and destination ", dst.extents(),
        " differ");
  if (src.empty()) return;
  if (src.is_contiguous() && dst.is_contiguous()) {
    std::copy_n(src.data(), src.size(), dst.data());
    return;
  }
  dims<Rank> index{};
  for (index_t n = 0; n < src.size(); ++n) {
    index_t from = 0, to = 0;
    for (std::size_t d = 0; d < Rank; ++d) {
      from += index[d] * src.stride(d);
      to += index[d] * dst.stride(d);
    }
    dst.data()[to] = src.data()[from];
    for (std::size_t d = Rank; d-- > 0;) {
      if (++index[d] < src.extent(d)) break;
      index[d] = 0;
    }
  }
}
}  // namespace transfer_detail

template <class T, std::size_t Rank>
void copy_to_device(const cpu&, tensor_view<const T, Rank> host, tensor_view<T, Rank> device) {
  transfer_detail::host_copy(host, device, "exec::copy_to_device");
}

template <class T, std::size_t Rank>
void copy_to_host(const cpu&, tensor_view<const T, Rank> device, tensor_view<T, Rank> host) {
  transfer_detail::host_copy(device, host, "exec::copy_to_host");
}

// For every policy: a new contiguous tensor in the policy's memory holding the host view's
// elements, and a new host tensor holding a policy view's elements (for a device policy it waits
// for the work queued before it). They call the policy's copy_to_device / copy_to_host.
template <execution_policy Policy, class T, std::size_t Rank>
tensor<std::remove_cv_t<T>, Rank, Policy> to_device(const Policy& policy, tensor_view<T, Rank> host) {
  using V = std::remove_cv_t<T>;
  tensor<V, Rank, Policy> out(policy, host.extents());
  copy_to_device(policy, tensor_view<const V, Rank>(host), out.view());
  return out;
}

template <execution_policy Policy, class T, std::size_t Rank>
tensor<std::remove_cv_t<T>, Rank> to_host(const Policy& policy, tensor_view<T, Rank> device) {
  using V = std::remove_cv_t<T>;
  tensor<V, Rank> out(device.extents());
  copy_to_host(policy, tensor_view<const V, Rank>(device), out.view());
  return out;
}

// A view of `host`'s elements that the policy's ops can read: for exec::cpu the host view
// itself (no copy). exec/cuda.cuh's overload copies into `buffer` (a contiguous policy
// buffer of at least host.size() elements) and returns a view of it.
template <class T, std::size_t Rank, class Buffer>
tensor_view<const T, Rank> staged(const cpu&, tensor_view<const T, Rank> host, Buffer&) {
  return host;
}

}  // namespace jetmoe::exec
