// jetmoe/ops/cuda/launch.cuh — small host-side helpers shared by the CUDA op backends.
#pragma once

#include <cuda_runtime.h>

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
  check(ptr == nullptr || is_device_pointer(ptr), who, ": ", what,
        " is in host memory; the CUDA backend needs device memory (exec::to_device)");
}

}  // namespace jetmoe::ops::cuda_detail
