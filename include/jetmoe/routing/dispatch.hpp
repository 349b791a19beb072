// jetmoe/routing/dispatch.hpp — moving rows between token order and the plan's expert order.
//
//   gather:           out[i] = rows[index[i]]       tokens → expert-sorted rows (dispatch)
//   scatter_to_slots: out[s] = sorted[slot_to_sorted[s]], zero for empty/dropped slots
//                     expert-sorted rows → token-major, slot-major (T, S, D) layout
//
// The index arrays come from the plan: plan.sorted_token() gathers a (T, H) activation,
// plan.sorted_slot() gathers a per-slot (T·S, D) activation such as attention heads.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <class Policy>
struct dispatch_impl {
  JETMOE_NO_BACKEND("routing::gather / routing::scatter_to_slots");
};

// rows: (R, D); index: (N) values in [0, R); out: (N, D). Rows of each view contiguous.
template <class Policy>
void gather(const Policy& policy, tensor_view<const float, 2> rows, tensor_view<const std::int32_t, 1> index,
            tensor_view<float, 2> out) {
  check_shape(out, make_dims(index.extent(0), rows.extent(1)), "routing::gather: out (N, D)");
  dispatch_impl<Policy>::gather(policy, rows, index, out);
}

// sorted: (N, D) rows in the plan's order; out: (T, S, D), every slot written.
template <class Policy>
void scatter_to_slots(const Policy& policy, const routing_plan<Policy>& plan, tensor_view<const float, 2> sorted,
                      tensor_view<float, 3> out) {
  check(plan.is_built(), "routing::scatter_to_slots: the plan has not been built");
  check_shape(sorted, make_dims(plan.max_sorted_rows(), out.extent(2)), "routing::scatter_to_slots: sorted (R, D)");
  check_shape(out, make_dims(plan.num_tokens(), plan.slots_per_token(), out.extent(2)),
              "routing::scatter_to_slots: out (T, S, D)");
  dispatch_impl<Policy>::scatter_to_slots(policy, plan, sorted, out);
}

}  // namespace jetmoe::routing
