// jetmoe/ops/cuda/launch.cuh — small host-side helpers shared by the CUDA op backends.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <initializer_list>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cuda.cuh"

namespace jetmoe::ops::cuda_detail {

// Whether the device can dereference `ptr` directly (device or managed memory). Plain and
// pinned host memory answer false: ops that accept either read such inputs on the host.
inline bool is_device_pointer(const void* ptr) {
  if (ptr == nullptr) return false;
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, ptr);
  if (status != cudaSuccess) {
    cudaGetLastError();  // older drivers fail on unregistered host memory: that is a host pointer
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

// Rejects a host pointer where the op needs device memory, with a message saying which input.
inline void check_on_device(const void* ptr, const char* who, const char* what) {
  check(ptr == nullptr || is_device_pointer(ptr), who, ": host memory passed as ", what,
        "; the CUDA backend needs device memory (exec::to_device)");
}

// One input or output of an op, for check_operands: its name and where its data is (none for
// an empty view, which the op never dereferences).
struct operand {
  const char* what;
  const void* ptr;
  template <class T, std::size_t Rank>
  operand(const char* name, tensor_view<T, Rank> view) : what(name), ptr(view.empty() ? nullptr : view.data()) {}
};

// The debug check of exec::cuda::check_pointers: with it on, an operand in host memory is a
// jetmoe::error naming the op and the operand, where it would otherwise be an illegal-address
// fault in the kernel, which ends the CUDA context. Off (the default) it costs nothing; on,
// one cudaPointerGetAttributes per operand per call (host time only: a replayed CUDA graph
// runs none of it).
inline void check_operands(const exec::cuda& policy, const char* who, std::initializer_list<operand> operands) {
  if (!policy.check_pointers) return;
  for (const operand& o : operands) check_on_device(o.ptr, who, o.what);
}

// The distance between consecutive rows of `v` along dimension `dim`, as the kernels and
// cuBLAS take it: the view's stride, or for a single row, whose stride means nothing, at least
// the row length (cuBLAS's rule for a leading dimension). Overlapping rows never get here: the
// front ends (ops::linear, the routing::grouped_* calls, the only callers of the CUDA impls)
// reject them with check_rows_disjoint.
template <class T, std::size_t Rank>
index_t row_pitch(const tensor_view<T, Rank>& v, std::size_t dim) {
  const index_t length = v.extent(Rank - 1);
  return v.extent(dim) <= 1 ? std::max(v.stride(dim), length) : v.stride(dim);
}

}  // namespace jetmoe::ops::cuda_detail
