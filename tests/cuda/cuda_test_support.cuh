// tests/cuda/cuda_test_support.cuh — what every CUDA test file shares: the CUDA headers, the
// skip for machines without a GPU, and the one policy the whole binary runs on.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string_view>

#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include <jetmoe/cuda.cuh>
#pragma nv_diagnostic pop

// First statement of every test that needs a GPU. On a machine without one (no driver, or no
// device) it prints why and returns, so the binary starts and passes anywhere (CTest discovers
// the tests by running it at build time). It fails instead where a GPU machine cannot run us
// (the runtime does not start: an old driver, a withheld device), and everywhere when the
// environment sets JETMOE_REQUIRE_GPU=1, as the GPU session does (scripts/gpu-run.sh): there a
// skipped test would be a green run that checked nothing.
#define SKIP_WITHOUT_GPU()                                                                  \
  do {                                                                                      \
    const auto& jetmoe_devices = ::jetmoe_cuda_test::devices();                             \
    using jetmoe_presence = ::jetmoe::exec::cuda::device_presence;                          \
    if (jetmoe_devices.presence == jetmoe_presence::broken) FAIL(jetmoe_devices.reason);    \
    if (jetmoe_devices.presence == jetmoe_presence::absent) {                               \
      if (::jetmoe_cuda_test::gpu_required())                                               \
        FAIL("JETMOE_REQUIRE_GPU is set, but " << jetmoe_devices.reason);                  \
      WARN("no CUDA device: skipped; " << jetmoe_devices.reason);                            \
      return;                                                                               \
    }                                                                                       \
  } while (false)

namespace jetmoe_cuda_test {

// The runtime's answer, asked once per binary.
inline const jetmoe::exec::cuda::device_report& devices() {
  static const jetmoe::exec::cuda::device_report report = jetmoe::exec::cuda::probe_devices();
  return report;
}

inline bool gpu_required() {
  const char* value = std::getenv("JETMOE_REQUIRE_GPU");
  return value != nullptr && value[0] != '\0' && std::string_view(value) != "0";
}

// One context for the whole binary: every test shares its stream and pool, as a program would.
inline const jetmoe::exec::cuda& gpu() {
  static const jetmoe::exec::cuda policy = jetmoe::exec::cuda::create();
  return policy;
}

}  // namespace jetmoe_cuda_test
