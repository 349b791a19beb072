// jetmoe/exec/cpu.hpp — the CPU execution policy: host memory, a thread count, Eigen for GEMMs.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "jetmoe/core/error.hpp"

namespace jetmoe::exec {

struct cpu {
  static constexpr bool is_host = true;
  static constexpr std::size_t alignment = 64;  // one cache line; what Eigen's packet loads like

  // Threads used by the library's own loops and by Eigen's GEMMs for calls made with this policy.
  int threads = default_threads();

  static int default_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

  void* allocate(std::size_t bytes) const {
    if (bytes == 0) return nullptr;
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (p == nullptr) throw error(detail::concat("jetmoe::exec::cpu: out of host memory allocating ", bytes, " bytes"));
    return p;
  }
  void deallocate(void* ptr, std::size_t /*bytes*/) const { std::free(ptr); }
  void fill_zero(void* ptr, std::size_t bytes) const {
    if (bytes) std::memset(ptr, 0, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) const {
    if (bytes) std::memcpy(dst, src, bytes);
  }

  // Eigen's GEMM reads a process-wide thread count; every Eigen call site sets it from here.
  void apply_to_eigen() const { Eigen::setNbThreads(threads); }
};

// Runs body(i) for i in [0, n) on the policy's threads (OpenMP when available, else serially).
// Iterations must be independent; the split is static, so results never depend on timing.
template <class Body>
void parallel_for(const cpu& policy, std::ptrdiff_t n, Body&& body) {
#if defined(_OPENMP)
  const int threads = static_cast<int>(std::min<std::ptrdiff_t>(policy.threads, std::max<std::ptrdiff_t>(n, 1)));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::ptrdiff_t i = 0; i < n; ++i) body(i);
#else
  (void)policy;
  for (std::ptrdiff_t i = 0; i < n; ++i) body(i);
#endif
}

}  // namespace jetmoe::exec
