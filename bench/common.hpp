// bench/common.hpp — what the CPU benchmark suites share: the thread policy, deterministic
// fills, and the hardware floors every result is compared with.
//
// Floors (measured at start-up and again between groups of benchmarks, keeping the best; on
// the same threads the library uses):
//   copy bandwidth  a STREAM-like copy between two 256 MiB buffers, bytes counted as read +
//                   written (STREAM's convention), best of 10 passes
//   GEMM peak       the faster of Eigen's fp32 GEMM and the library's own fp32 ops::linear
//                   on 2048³ (the library widens bf16 weights to fp32 and multiplies in fp32,
//                   so this is the arithmetic it can at best reach; its panel kernel beats
//                   Eigen on this shape), best of 10 runs each (on a shared machine a floor
//                   measured during someone else's burst comes out low, and everything would
//                   look closer to it than it is)
// A benchmark states the bytes it must move and the FLOPs it must do; its floor is
//   max(bytes / bandwidth, FLOPs / peak)
// and it reports floor_frac = floor / measured time (1.0 = at the hardware floor).
#pragma once

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "floor_counters.hpp"
#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/cpu/linear.hpp"
#include "jetmoe/ops/linear.hpp"

namespace jetmoe_bench {

using jetmoe::index_t;

inline int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && std::atoi(value) > 0 ? std::atoi(value) : fallback;
}

inline bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

// The policy every suite runs with: one thread per hardware thread, or JETMOE_BENCH_THREADS.
inline const jetmoe::exec::cpu& policy() {
  static const jetmoe::exec::cpu cpu = [] {
    jetmoe::exec::cpu p;
    p.threads = env_int("JETMOE_BENCH_THREADS", p.threads);
    return p;
  }();
  return cpu;
}

// Uniform values in [-scale, scale] from a seed; filled in parallel by fixed chunks, so the
// values never depend on the thread count, and page first-touch is spread over the threads.
template <class T>
void fill_uniform(T* data, index_t n, float scale, std::uint64_t seed) {
  constexpr index_t chunk = 1 << 16;
  jetmoe::exec::parallel_for(policy(), (n + chunk - 1) / chunk, [&](std::ptrdiff_t block) {
    std::uint64_t state = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(block) + 1) * 0xBF58476D1CE4E5B9ull;
    const index_t end = std::min<index_t>(n, (block + 1) * chunk);
    for (index_t i = block * chunk; i < end; ++i) {
      state ^= state << 13;  // xorshift64: plenty for benchmark data
      state ^= state >> 7;
      state ^= state << 17;
      const float unit = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // [0, 1)
      data[i] = jetmoe::from_float<T>(scale * (2.0f * unit - 1.0f));
    }
  });
}

template <class T, std::size_t R>
void fill_uniform(jetmoe::tensor<T, R>& t, float scale, std::uint64_t seed) {
  fill_uniform(t.data(), t.size(), scale, seed);
}

// Evicts the caches by writing a buffer twice the size of the L3 of the machines we use
// (32 MiB): called before each timed call of a block that reads weights, so the weights come
// from memory as they do in a model, where the other layers' weights evict them between calls.
inline void flush_caches() {
  constexpr index_t bytes = index_t{64} << 20, chunk = index_t{1} << 20;
  static char* buffer = static_cast<char*>(policy().allocate(bytes));
  static int generation = 0;
  const int value = ++generation & 0x7f;
  jetmoe::exec::parallel_for(policy(), bytes / chunk, [&](std::ptrdiff_t c) { std::memset(buffer + c * chunk, value, chunk); });
  benchmark::ClobberMemory();
}

// ---- hardware floors ---------------------------------------------------------------------------

struct hardware_floors {
  double copy_bytes_per_second = 0.0;
  double gemm_flops_per_second = 0.0;
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The shortest of `runs` timed calls of run() (a floor measured during someone else's burst
// would come out low).
template <class Run>
double best_seconds(int runs, Run&& run) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

inline double measure_copy_bandwidth() {
  constexpr index_t bytes = index_t{256} << 20;  // far beyond the 32 MiB L3 of the machines we use
  constexpr index_t chunk = index_t{1} << 20;
  constexpr index_t chunks = bytes / chunk;
  // Allocate untouched, then first-touch in parallel so pages land where the threads run.
  auto* src = static_cast<char*>(policy().allocate(bytes));
  auto* dst = static_cast<char*>(policy().allocate(bytes));
  jetmoe::exec::parallel_for(policy(), chunks, [&](std::ptrdiff_t c) {
    std::memset(src + c * chunk, 1, chunk);
    std::memset(dst + c * chunk, 0, chunk);
  });
  const double best = best_seconds(10, [&] {
    jetmoe::exec::parallel_for(policy(), chunks, [&](std::ptrdiff_t c) { std::memcpy(dst + c * chunk, src + c * chunk, chunk); });
    benchmark::DoNotOptimize(dst);
    benchmark::ClobberMemory();
  });
  policy().deallocate(src, bytes);
  policy().deallocate(dst, bytes);
  return 2.0 * static_cast<double>(bytes) / best;
}

inline double measure_gemm_peak() {
  constexpr int n = 2048;
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
  policy().apply_to_eigen();  // Eigen's own threading, with the library's thread count
  c.noalias() = a * b;        // warm-up: packing buffers, page faults, clocks
  const double eigen = best_seconds(10, [&] {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  });
  // The same product through ops::linear: y (n, n) = x (n, n) · wᵀ, fp32 weights.
  const jetmoe::tensor_view<const float, 2> x(a.data(), jetmoe::make_dims(n, n)), w(b.data(), jetmoe::make_dims(n, n));
  const jetmoe::tensor_view<float, 2> y(c.data(), jetmoe::make_dims(n, n));
  jetmoe::ops::linear(policy(), x, w, y);  // warm-up: its panel buffer
  const double library = best_seconds(10, [&] {
    jetmoe::ops::linear(policy(), x, w, y);
    benchmark::DoNotOptimize(c.data());
  });
  return 2.0 * n * static_cast<double>(n) * n / std::min(eigen, library);
}

// The best floors measured so far in this process. A shared VM's speed drifts over minutes, so
// the suites measure again between groups of benchmarks (remeasure_floors) and keep the best:
// a floor caught during someone else's burst would make everything look closer to it.
inline hardware_floors& best_floors() {
  static hardware_floors best;
  return best;
}

inline void remeasure_floors() {
  hardware_floors& best = best_floors();
  best.copy_bytes_per_second = std::max(best.copy_bytes_per_second, measure_copy_bandwidth());
  best.gemm_flops_per_second = std::max(best.gemm_flops_per_second, measure_gemm_peak());
}

inline const hardware_floors& floors() {
  if (best_floors().gemm_flops_per_second == 0.0) {
    remeasure_floors();  // twice: the first pass also pays for thread start-up and clock ramp-up
    remeasure_floors();
  }
  return best_floors();
}

inline double floor_seconds(double bytes, double flops) {
  const hardware_floors& f = floors();
  return std::max(bytes / f.copy_bytes_per_second, flops / f.gemm_flops_per_second);
}

// The shared counters (bench/floor_counters.hpp), on the CPU floors.
inline void set_floor_counters(benchmark::State& state, double seconds_per_iteration, double bytes, double flops) {
  const hardware_floors& f = floors();
  write_floor_counters(state, f.copy_bytes_per_second, f.gemm_flops_per_second, seconds_per_iteration, bytes, flops);
}

// min and max across repetitions, next to Google Benchmark's mean / median / stddev / cv.
inline void add_spread_statistics(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  b->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

// Context lines every suite writes into its JSON: machine, threads, floors, build caveat.
inline std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

inline void add_common_context() {
  const hardware_floors& f = floors();
  std::ostringstream copy, gemm;
  copy << f.copy_bytes_per_second * 1e-9;
  gemm << f.gemm_flops_per_second * 1e-9;
  benchmark::AddCustomContext("cpu_model", cpu_model_name());
  benchmark::AddCustomContext("jetmoe_threads", std::to_string(policy().threads));
  benchmark::AddCustomContext("floor_copy_GBps_at_start", copy.str());
  benchmark::AddCustomContext("floor_gemm_GFLOPs_at_start", gemm.str());
  benchmark::AddCustomContext("note",
                              "Debian's libbenchmark is a DEBUG build of Google Benchmark; the timed jetmoe code is "
                              "compiled by this project (Release for published numbers)");
}

}  // namespace jetmoe_bench
