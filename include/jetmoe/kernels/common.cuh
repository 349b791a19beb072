// jetmoe/kernels/common.cuh — what every kernel of the CUDA backend shares: element loads that
// widen float/bf16/half to fp32, warp reductions, grid sizing, and the device-side error word.
//
// Kernels live in jetmoe::kernels and are only included by the CUDA backends (ops/cuda,
// routing/cuda, exec/cuda.cuh); a CPU-only build never sees this folder.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/shape.hpp"

namespace jetmoe::kernels {

// ---- device-side errors ----------------------------------------------------------------------
// A kernel that finds bad input (an id outside its range) cannot throw. It records the first
// such problem here and skips the bad element; the host reads the word at the next API
// boundary that synchronises anyway (exec::cuda::synchronize(), build_plan, the losses) and
// throws a jetmoe::error from it. One word per policy context, in device memory.
enum device_error_code : unsigned int {
  no_device_error = 0,
  bad_embedding_id = 1,  // where = position, value = id, bound = vocabulary size
  bad_gather_index = 2,  // where = output row, value = index, bound = input rows
  bad_expert_id = 3,     // where = flat slot, value = expert id, bound = experts
  bad_position = 4,      // where = 0, value = end position read on the device, bound = positions
};

struct device_status {
  unsigned int code;  // device_error_code of the first problem, 0 when none
  unsigned int unused;
  long long where;
  long long value;
  long long bound;
};

// Only the first reporter writes the details; later ones see a nonzero code and stop. The host
// reads the record after a stream synchronisation, so plain stores suffice for the details.
__device__ inline void report(device_status* status, unsigned int code, long long where, long long value,
                              long long bound) {
  if (status == nullptr) return;
  if (atomicCAS(&status->code, 0u, code) == 0u) {
    status->where = where;
    status->value = value;
    status->bound = bound;
  }
}

// ---- element loads ---------------------------------------------------------------------------
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(bf16 v) { return __uint_as_float(static_cast<unsigned int>(v.bits) << 16); }
__device__ __forceinline__ float widen(half v) { return __half2float(__ushort_as_half(v.bits)); }

// ---- warp reductions (all 32 lanes take part and all get the result) ------------------------
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024), T float or double.
// `shared` holds 32 T. The order is fixed by the block size, so the result is the same run to
// run. Every thread gets the total. Contains __syncthreads: call it from all threads of the block.
template <class T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}
__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = lane < warps ? shared[lane] : -std::numeric_limits<float>::infinity();
  return warp_max(total);
}

// ---- grid sizing -----------------------------------------------------------------------------
// Blocks for a grid-stride loop over n items: enough to fill an H100 many times over, capped so
// that huge n never exceeds the grid limit (the loop picks up the rest).
inline unsigned int blocks_for(index_t n, int block_size, index_t cap = index_t{1} << 20) {
  const index_t blocks = (n + block_size - 1) / block_size;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Thread index and stride of a 1-D grid-stride loop, in 64-bit so that n may exceed 2^31.
__device__ __forceinline__ index_t global_thread() {
  return static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ index_t grid_threads() { return static_cast<index_t>(gridDim.x) * blockDim.x; }

}  // namespace jetmoe::kernels
