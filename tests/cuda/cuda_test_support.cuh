// tests/cuda/cuda_test_support.cuh — what every CUDA test file shares: the CUDA headers, the
// skip for machines without a GPU, and the one policy the whole binary runs on.
#pragma once

#include <catch2/catch.hpp>

#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include <jetmoe/cuda.cuh>
#pragma nv_diagnostic pop

// First statement of every test that needs a GPU: without a driver or a device it prints
// "no CUDA device: skipped" and returns, so the binary starts and passes anywhere (CTest
// discovers the tests by running it at build time).
#define SKIP_WITHOUT_GPU()                             \
  do {                                                 \
    if (!::jetmoe::exec::cuda::device_available()) {   \
      WARN("no CUDA device: skipped");                 \
      return;                                          \
    }                                                  \
  } while (false)

namespace jetmoe_cuda_test {

// One context for the whole binary: every test shares its stream and pool, as a program would.
inline const jetmoe::exec::cuda& gpu() {
  static const jetmoe::exec::cuda policy = jetmoe::exec::cuda::create();
  return policy;
}

}  // namespace jetmoe_cuda_test
