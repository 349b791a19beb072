// jetmoe/routing/cpu/dispatch.hpp — CPU backend of gather and scatter_to_slots: row copies.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/dispatch.hpp"

namespace jetmoe::routing {

namespace cpu_detail {
// Copying a row is a few hundred nanoseconds: ~128 of them per task make a parallel region
// worth its start-up (and its wait for a descheduled thread on a busy machine).
inline constexpr index_t copy_rows_per_task = 128;

template <class Body>
void for_row_blocks(const exec::cpu& policy, index_t rows, Body&& body) {
  const index_t tasks = (rows + copy_rows_per_task - 1) / copy_rows_per_task;
  exec::parallel_for(policy, tasks, [&](std::ptrdiff_t task) {
    const index_t end = std::min(rows, (task + 1) * copy_rows_per_task);
    for (index_t r = task * copy_rows_per_task; r < end; ++r) body(r);
  });
}

inline void check_rows_contiguous(const char* who, index_t width, index_t stride) {
  check(width <= 1 || stride == 1, who, ": rows must be contiguous");
}
}  // namespace cpu_detail

template <>
struct dispatch_impl<exec::cpu> {
  static void gather(const exec::cpu& policy, tensor_view<const float, 2> rows,
                     tensor_view<const std::int32_t, 1> index, tensor_view<float, 2> out) {
    cpu_detail::check_rows_contiguous("routing::gather", rows.extent(1), rows.stride(1));
    cpu_detail::check_rows_contiguous("routing::gather", out.extent(1), out.stride(1));
    const index_t width = rows.extent(1), available = rows.extent(0);
    const auto bytes = static_cast<std::size_t>(width) * sizeof(float);
    for (index_t i = 0; i < index.extent(0); ++i)
      check(index(i) >= 0 && index(i) < available, "routing::gather: index ", index(i), " at ", i,
            " is outside the ", available, " input rows");
    if (width == 0) return;
    cpu_detail::for_row_blocks(policy, index.extent(0),
                               [&](index_t i) { std::memcpy(&out(i, 0), &rows(index(i), 0), bytes); });
  }

  static void scatter_to_slots(const exec::cpu& policy, const routing_plan<exec::cpu>& plan,
                               tensor_view<const float, 2> sorted, tensor_view<float, 3> out) {
    cpu_detail::check_rows_contiguous("routing::scatter_to_slots", sorted.extent(1), sorted.stride(1));
    cpu_detail::check_rows_contiguous("routing::scatter_to_slots", out.extent(2), out.stride(2));
    const index_t slots = plan.slots_per_token(), width = out.extent(2);
    const auto bytes = static_cast<std::size_t>(width) * sizeof(float);
    const auto to_sorted = plan.slot_to_sorted();  // (T·S)
    if (width == 0) return;
    cpu_detail::for_row_blocks(policy, plan.num_tokens() * slots, [&](index_t s) {
      float* dst = &out(s / slots, s % slots, 0);
      const std::int32_t row = to_sorted(s);
      if (row >= 0) std::memcpy(dst, &sorted(row, 0), bytes);
      else std::memset(dst, 0, bytes);
    });
  }
};

}  // namespace jetmoe::routing
