// jetmoe/routing/cpu/grouped_linear.hpp — CPU backend of the grouped expert linear layers.
//
// Experts run one after another; each tile is a dense ops::linear, which spreads its output
// features over the policy's threads (so even one expert with one token keeps every core
// busy reading weights). A tile is at most tile_rows rows of a single expert, split evenly so
// that an expert with 600 rows and tile_rows 512 runs two GEMMs of 300, not 512 + 88.
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/ops/activations.hpp"
#include "jetmoe/ops/cpu/activations.hpp"
#include "jetmoe/ops/cpu/linear.hpp"
#include "jetmoe/ops/linear.hpp"
#include "jetmoe/routing/cpu/dispatch.hpp"
#include "jetmoe/routing/grouped_linear.hpp"

namespace jetmoe::routing {

template <>
struct grouped_linear_impl<exec::cpu> {
  using policy_type = exec::cpu;
  using plan_type = routing_plan<exec::cpu>;
  using scratch_type = expert_scratch<exec::cpu>;

  // Calls body(expert, first sorted row, row count) for every tile, in sorted order.
  template <class Body>
  static void for_each_tile(const plan_type& plan, index_t tile_rows, Body&& body) {
    check(tile_rows >= 1, "routing::expert_scratch: tile_rows = ", tile_rows, " must be at least 1");
    const auto offsets = plan.offsets();  // (E+1)
    for (index_t e = 0; e < plan.num_experts(); ++e) {
      const index_t begin = offsets(e), count = offsets(e + 1) - begin;
      if (count == 0) continue;
      const index_t tiles = (count + tile_rows - 1) / tile_rows;
      const index_t rows_per_tile = (count + tiles - 1) / tiles;
      for (index_t first = begin; first < begin + count; first += rows_per_tile)
        body(e, first, std::min(rows_per_tile, begin + count - first));
    }
  }

  // Rows [first, first + n) of the input in sorted order: a slice, or a gathered tile.
  static tensor_view<const float, 2> input_tile(const policy_type& policy, const expert_input& in, index_t first,
                                                index_t n, scratch_type& scratch) {
    if (!in.through_index) return in.rows.slice(0, first, first + n);
    const tensor_view<float, 2> tile = scratch.input.matrix(policy, n, in.rows.extent(1));  // (n, in)
    dispatch_impl<exec::cpu>::gather(policy, in.rows, in.index.slice(0, first, first + n), tile);
    return tile;
  }

  template <class W>
  static void linear(const policy_type& policy, const plan_type& plan, const expert_input& in,
                     tensor_view<const W, 3> w, tensor_view<float, 2> ys, scratch_type& scratch) {
    for_each_tile(plan, scratch.tile_rows, [&](index_t e, index_t first, index_t n) {
      ops::linear(policy, input_tile(policy, in, first, n, scratch), w.select(e), ys.slice(0, first, first + n));
    });
  }

  template <class W>
  static void glu(const policy_type& policy, const plan_type& plan, const expert_input& in, tensor_view<const W, 3> w,
                  tensor_view<float, 2> u, scratch_type& scratch) {
    for_each_tile(plan, scratch.tile_rows, [&](index_t e, index_t first, index_t n) {
      const tensor_view<float, 2> hidden = scratch.hidden.matrix(policy, n, w.extent(1));  // (n, 2I)
      ops::linear(policy, input_tile(policy, in, first, n, scratch), w.select(e), hidden);
      ops::glu(policy, hidden, u.slice(0, first, first + n));
    });
  }

  template <class W>
  static void glu_mlp(const policy_type& policy, const plan_type& plan, const expert_input& in,
                      tensor_view<const W, 3> w_in, tensor_view<const W, 3> w_out, tensor_view<float, 2> z,
                      scratch_type& scratch) {
    for_each_tile(plan, scratch.tile_rows, [&](index_t e, index_t first, index_t n) {
      const tensor_view<float, 2> hidden = scratch.hidden.matrix(policy, n, w_in.extent(1));        // (n, 2I)
      const tensor_view<float, 2> activated = scratch.activated.matrix(policy, n, w_out.extent(2)); // (n, I)
      ops::linear(policy, input_tile(policy, in, first, n, scratch), w_in.select(e), hidden);
      ops::glu(policy, hidden, activated);
      ops::linear(policy, activated, w_out.select(e), z.slice(0, first, first + n));
    });
  }
};

}  // namespace jetmoe::routing
