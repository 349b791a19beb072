// bench/floor_counters.hpp — the counters every benchmark result carries, CPU and GPU alike:
// the work it states, the floors it was held to, and how close it came.
//   floor_us        max(bytes / bandwidth, FLOPs / peak) per iteration
//   floor_frac      floor / measured time per iteration (1 = at the floor)
//   compute_bound   1 when the FLOP floor is the larger one, 0 when the bandwidth floor is
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>

// The floors a point was held to (bench/plot.py's machine table reads these two).
inline void write_floors_held_to(benchmark::State& state, double copy_bytes_per_second, double gemm_flops_per_second) {
  state.counters["floor_copy_GBps"] = copy_bytes_per_second * 1e-9;
  state.counters["floor_gemm_GFLOPs"] = gemm_flops_per_second * 1e-9;
}

inline void write_floor_counters(benchmark::State& state, double copy_bytes_per_second, double gemm_flops_per_second,
                                 double seconds_per_iteration, double bytes, double flops) {
  const double memory_floor = bytes / copy_bytes_per_second, compute_floor = flops / gemm_flops_per_second;
  const double floor = std::max(memory_floor, compute_floor);
  const double seconds = seconds_per_iteration;
  write_floors_held_to(state, copy_bytes_per_second, gemm_flops_per_second);
  state.counters["bytes"] = bytes;
  state.counters["flops"] = flops;
  state.counters["floor_us"] = 1e6 * floor;
  state.counters["floor_frac"] = seconds > 0.0 ? floor / seconds : 0.0;
  state.counters["compute_bound"] = compute_floor > memory_floor ? 1.0 : 0.0;
  state.counters["GFLOPs"] = seconds > 0.0 ? flops / seconds * 1e-9 : 0.0;
  state.counters["GBps"] = seconds > 0.0 ? bytes / seconds * 1e-9 : 0.0;
}
