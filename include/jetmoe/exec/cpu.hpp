// jetmoe/exec/cpu.hpp — the CPU execution policy: host memory, a thread count, Eigen for GEMMs.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <utility>

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

  // Eigen's GEMM reads a process-wide thread count. The library's own GEMMs are single-threaded
  // Eigen products inside its parallel tasks (ops/cpu/linear.hpp); this is for code that wants
  // Eigen to thread one large product itself (the benchmarks' GEMM floor).
  void apply_to_eigen() const { Eigen::setNbThreads(threads); }
};

// Below this much work per thread (≈ element operations or multiply-adds, some 20–40 µs on one
// core) a parallel region costs more than it saves: a fork and join takes microseconds on an
// idle machine, and up to a scheduler time slice (milliseconds) when other processes share the
// cores and a team member is descheduled. Small ops of a small model run on the calling thread.
// Tuned on the demo model, 2 cores: 2^15 left its decode at 900 tok/s (1,500 on one thread),
// 2^17 gives 1,500 and prefill 7,000 tok/s (one thread: 5,400), 2^18 loses prefill again.
inline constexpr std::ptrdiff_t min_work_per_thread = std::ptrdiff_t{1} << 17;

// Runs body(i) for i in [0, n) on up to the policy's threads (OpenMP when available, else
// serially): as many threads as the total work (n · work_per_item) keeps busy. Iterations must
// be independent; the split is static, so results never depend on timing or on the thread count.
template <class Body>
void parallel_for(const cpu& policy, std::ptrdiff_t n, std::ptrdiff_t work_per_item, Body&& body) {
#if defined(_OPENMP)
  const std::ptrdiff_t work = n * std::max<std::ptrdiff_t>(work_per_item, 1);
  const std::ptrdiff_t useful = std::max<std::ptrdiff_t>(1, std::min(n, work / min_work_per_thread));
  const int threads = static_cast<int>(std::min<std::ptrdiff_t>(policy.threads, useful));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::ptrdiff_t i = 0; i < n; ++i) body(i);
#else
  (void)policy;
  (void)work_per_item;
  for (std::ptrdiff_t i = 0; i < n; ++i) body(i);
#endif
}

// The same for iterations that are each worth a thread on their own (coarse tasks).
template <class Body>
void parallel_for(const cpu& policy, std::ptrdiff_t n, Body&& body) {
  parallel_for(policy, n, min_work_per_thread, std::forward<Body>(body));
}

}  // namespace jetmoe::exec
