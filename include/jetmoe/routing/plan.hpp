// jetmoe/routing/plan.hpp — the routing plan: who goes to which expert, in what order.
//
// Plain data shared by dispatch, the grouped expert linear and combine, and handed back to
// callers so that they can log expert load. A "slot" is one (token t, choice j) pair, flat
// index s = t·S + j. The plan sorts the kept slots by expert with a stable counting sort, so
// within an expert tokens stay in ascending order:
//
//   expert_ids, gates   (T, S)   what the router chose (no_expert = empty slot)
//   routed_counts       (E)      slots each expert was chosen for, before capacity
//   counts              (E)      slots each expert processes, after capacity
//   offsets             (E+1)    expert e owns sorted rows [offsets[e], offsets[e+1])
//   sorted_slot         (R)      sorted row → flat slot s      (N = Σ counts ≤ R)
//   sorted_token        (R)      sorted row → token s / S
//   slot_to_sorted      (T·S)    flat slot → sorted row, or -1 when empty or dropped
//   dropped_slots       (D)      flat slots removed by the capacity, in the order dropped
//
// Invariant: N = T·S − (empty slots) − D, and sorted_slot / slot_to_sorted are inverse on the
// kept slots. The plan owns its arrays and reuses them across calls.
//
// Row count and row capacity. A host policy knows N as soon as the plan is built, and R = N.
// A device policy leaves N on the device, so that routing queues work without waiting for it
// (a decode step can then be captured in a CUDA graph): consumers size their sorted arrays for
// R = max_sorted_rows(), a bound known on the host (T·S, or E·capacity when smaller). Rows
// N … R−1 are padding: the grouped linears read N from offsets[E] on the device and skip
// them, combine and scatter_to_slots never read them, and their sorted_token is 0 and their
// sorted_slot a valid slot, so a gather over all R rows stays in bounds. The exact counts
// (num_sorted_rows, num_dropped, num_empty_slots, dropped_slots) are read back — one wait —
// each time one of them is asked for; that wait also reports a bad expert id found on the
// device.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
#include "jetmoe/exec/transfer.hpp"
#include "jetmoe/routing/buffer.hpp"
#include "jetmoe/routing/capacity.hpp"
#include "jetmoe/routing/router.hpp"

namespace jetmoe::routing {

template <class Policy>
struct build_plan_impl {
  JETMOE_NO_BACKEND("routing::build_plan");
};

// Where a router writes its choices: views into the plan's own arrays.
struct router_output {
  tensor_view<std::int32_t, 2> expert_ids;  // (T, S)
  tensor_view<float, 2> gates;              // (T, S)
};

template <exec::execution_policy Policy = exec::cpu>
class routing_plan {
 public:
  using index_view = tensor_view<const std::int32_t, 1>;

  // Sizes the plan for T tokens × S slots over E experts and returns the arrays the router
  // fills. Call build_plan afterwards.
  router_output prepare(const Policy& policy, index_t tokens, index_t slots, index_t experts) {
    check(tokens >= 0 && slots >= 1 && experts >= 1, "routing_plan::prepare: invalid sizes T = ", tokens,
          ", S = ", slots, ", E = ", experts);
    tokens_ = tokens;
    slots_ = slots;
    experts_ = experts;
    sorted_rows_ = 0;
    row_capacity_ = 0;
    dropped_ = 0;
    empty_slots_ = 0;
    counts_pending_ = false;
    built_ = false;
    return {expert_ids_.matrix(policy, tokens, slots), gates_.matrix(policy, tokens, slots)};
  }

  index_t num_tokens() const { return tokens_; }
  index_t slots_per_token() const { return slots_; }
  index_t num_experts() const { return experts_; }
  // Exact counts. A device plan waits for them on each call (see above).
  index_t num_sorted_rows() const { return settled().sorted_rows_; }  // N: slots that reach an expert
  index_t num_dropped() const { return settled().dropped_; }          // removed by the capacity
  index_t num_empty_slots() const { return settled().empty_slots_; }  // left without an expert by the router
  // R: rows that sorted arrays (expert inputs and outputs) are sized for; known without waiting.
  // N on a host policy.
  index_t max_sorted_rows() const { return row_capacity_; }
  capacity_limit capacity() const { return capacity_; }
  bool is_built() const { return built_; }

  tensor_view<const std::int32_t, 2> expert_ids() const { return view2(expert_ids_, tokens_, slots_); }  // (T, S)
  tensor_view<const float, 2> gates() const { return view2(gates_, tokens_, slots_); }                  // (T, S)
  index_view routed_counts() const { return view1(routed_counts_, experts_); }    // (E)
  index_view counts() const { return view1(counts_, experts_); }                  // (E)
  index_view offsets() const { return view1(offsets_, experts_ + 1); }            // (E+1)
  index_view sorted_slot() const { return view1(sorted_slot_, row_capacity_); }    // (R)
  index_view sorted_token() const { return view1(sorted_token_, row_capacity_); }  // (R)
  index_view slot_to_sorted() const { return view1(slot_to_sorted_, tokens_ * slots_); }  // (T·S)
  index_view dropped_slots() const { return view1(dropped_slots_, num_dropped()); }  // (D)

 private:
  template <class>
  friend struct build_plan_impl;

  template <class T>
  static tensor_view<const T, 1> view1(const growable_buffer<T, Policy>& b, index_t n) {
    return {b.data(), make_dims(n)};
  }
  template <class T>
  static tensor_view<const T, 2> view2(const growable_buffer<T, Policy>& b, index_t rows, index_t cols) {
    return {b.data(), make_dims(rows, cols)};
  }

  // A device backend that leaves the counts on the device: its summary array holds
  // [slots with an expert, kept rows N, dropped D], read back by settled().
  // Read on every query, not once: a recorded step (exec::recorded_work) replays the build on
  // the device without the host seeing it, so the summary may have changed since the last
  // read. A device error reported by the wait (a bad expert id, or any earlier kernel's) leaves
  // the plan unbuilt, as a host backend's throw would. Never call it inside recorded work.
  const routing_plan& settled() const {
    if (counts_pending_) {
      try {
        const auto summary = exec::to_host(policy_, tensor_view<const std::int32_t, 1>(summary_.data(), make_dims(3)));
        sorted_rows_ = summary(1);
        dropped_ = capacity_.is_limited() ? summary(2) : 0;
        empty_slots_ = tokens_ * slots_ - summary(0);
      } catch (...) {
        counts_pending_ = false;
        built_ = false;
        sorted_rows_ = dropped_ = empty_slots_ = 0;
        throw;
      }
    }
    return *this;
  }

  index_t tokens_ = 0, slots_ = 0, experts_ = 0;
  index_t row_capacity_ = 0;
  mutable index_t sorted_rows_ = 0, dropped_ = 0, empty_slots_ = 0;
  mutable bool counts_pending_ = false;
  capacity_limit capacity_{};
  mutable bool built_ = false;
  Policy policy_{};  // what built the plan, to read pending counts back with

  growable_buffer<std::int32_t, Policy> expert_ids_;      // (T, S)
  growable_buffer<float, Policy> gates_;                  // (T, S)
  growable_buffer<std::int32_t, Policy> routed_counts_;   // (E)
  growable_buffer<std::int32_t, Policy> counts_;          // (E)
  growable_buffer<std::int32_t, Policy> offsets_;         // (E+1)
  growable_buffer<std::int32_t, Policy> sorted_slot_;     // (N)
  growable_buffer<std::int32_t, Policy> sorted_token_;    // (N)
  growable_buffer<std::int32_t, Policy> slot_to_sorted_;  // (T·S)
  growable_buffer<std::int32_t, Policy> dropped_slots_;   // (D)
  growable_buffer<std::int32_t, Policy> scratch_;         // backend's own use while building
  growable_buffer<std::int32_t, Policy> summary_;         // (4) a device backend's pending counts
};

// Sorts the router's choices (already in plan.prepare()'s arrays) into the plan, enforcing
// `capacity`. An expert id outside [no_expert, E) throws jetmoe::error: here on a host policy;
// on a device policy at the next wait (a count query, policy.synchronize(), to_host), the slot
// having been treated as empty meanwhile.
template <class Policy>
void build_plan(const Policy& policy, routing_plan<Policy>& plan, capacity_limit capacity = {}) {
  check(capacity.per_expert >= 0, "routing::build_plan: negative capacity ", capacity.per_expert);
  build_plan_impl<Policy>::run(policy, plan, capacity);
}

// The whole routing step: size the plan, let the router choose, sort into the plan with the
// capacity the router asks for. logits: (T, E) fp32.
template <class Policy, router<Policy> Router>
const routing_plan<Policy>& plan_routing(const Policy& policy, const Router& r, tensor_view<const float, 2> logits,
                                         index_t k, routing_plan<Policy>& plan) {
  const index_t tokens = logits.extent(0), experts = logits.extent(1);
  const index_t slots = slots_per_token(r, k, experts);
  const router_output out = plan.prepare(policy, tokens, slots, experts);
  r.route(policy, logits, k, out.expert_ids, out.gates);
  build_plan(policy, plan, capacity_of(r, tokens, k, experts));
  return plan;
}

}  // namespace jetmoe::routing
