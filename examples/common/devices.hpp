// examples/common/devices.hpp — the execution policies the tools can run on, chosen by name.
//
// The CPU is always there. CUDA is there when the tool was compiled by nvcc against
// jetmoe::cuda, which the build does when CUDA is enabled (JETMOE_TOOLS_WITH_CUDA). This is the
// one place a tool looks at that: below it, the model code is the same for both policies.
#pragma once

#include <string>
#include <string_view>

#include <jetmoe/core/error.hpp>
#include <jetmoe/exec/cpu.hpp>

#if defined(JETMOE_TOOLS_WITH_CUDA)
#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include <jetmoe/cuda.cuh>
#pragma nv_diagnostic pop
#endif

namespace jetmoe::tools {

// Returns an empty string when `device` can run here (in this build, on this machine), else the
// message to print. The tools ask before reading anything.
inline std::string unsupported_device(std::string_view device) {
  if (device == "cpu") return {};
  if (device != "cuda") return "unknown device '" + std::string(device) + "' (choose cpu or cuda)";
#if defined(JETMOE_TOOLS_WITH_CUDA)
  const exec::cuda::device_report devices = exec::cuda::probe_devices();
  if (devices.presence == exec::cuda::device_presence::usable) return {};
  return "--device cuda: " + devices.reason;
#else
  return "--device cuda is not available in this build (configure with the cuda preset, where nvcc is installed)";
#endif
}

// Calls body(policy) with exec::cpu{threads} for "cpu", or a CUDA policy on device 0 for "cuda"
// (after checking that a GPU is visible). Returns what body returns.
template <class Body>
auto with_policy(std::string_view device, int threads, Body&& body) {
#if defined(JETMOE_TOOLS_WITH_CUDA)
  if (device == "cuda") {
    const std::string problem = unsupported_device(device);
    check(problem.empty(), problem);
    return body(exec::cuda::create());
  }
#endif
  check(device == "cpu", unsupported_device(device));
  return body(exec::cpu{.threads = threads});
}

// "threads: 8" or "device: cuda:0", for the tools' load line.
inline std::string describe(const exec::cpu& policy) { return "threads: " + std::to_string(policy.threads); }
#if defined(JETMOE_TOOLS_WITH_CUDA)
inline std::string describe(const exec::cuda& policy) { return "device: cuda:" + std::to_string(policy.device()); }
#endif

}  // namespace jetmoe::tools
