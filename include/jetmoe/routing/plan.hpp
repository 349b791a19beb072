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
//   sorted_slot         (N)      sorted row → flat slot s      (N = Σ counts)
//   sorted_token        (N)      sorted row → token s / S
//   slot_to_sorted      (T·S)    flat slot → sorted row, or -1 when empty or dropped
//   dropped_slots       (D)      flat slots removed by the capacity, in the order dropped
//
// Invariant: N = T·S − (empty slots) − D, and sorted_slot / slot_to_sorted are inverse on the
// kept slots. The plan owns its arrays and reuses them across calls.
#pragma once

#include <cstdint>

#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
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
    dropped_ = 0;
    empty_slots_ = 0;
    built_ = false;
    return {expert_ids_.matrix(policy, tokens, slots), gates_.matrix(policy, tokens, slots)};
  }

  index_t num_tokens() const { return tokens_; }
  index_t slots_per_token() const { return slots_; }
  index_t num_experts() const { return experts_; }
  index_t num_sorted_rows() const { return sorted_rows_; }  // N: slots that reach an expert
  index_t num_dropped() const { return dropped_; }           // removed by the capacity
  index_t num_empty_slots() const { return empty_slots_; }   // left without an expert by the router
  capacity_limit capacity() const { return capacity_; }
  bool is_built() const { return built_; }

  tensor_view<const std::int32_t, 2> expert_ids() const { return view2(expert_ids_, tokens_, slots_); }  // (T, S)
  tensor_view<const float, 2> gates() const { return view2(gates_, tokens_, slots_); }                  // (T, S)
  index_view routed_counts() const { return view1(routed_counts_, experts_); }    // (E)
  index_view counts() const { return view1(counts_, experts_); }                  // (E)
  index_view offsets() const { return view1(offsets_, experts_ + 1); }            // (E+1)
  index_view sorted_slot() const { return view1(sorted_slot_, sorted_rows_); }    // (N)
  index_view sorted_token() const { return view1(sorted_token_, sorted_rows_); }  // (N)
  index_view slot_to_sorted() const { return view1(slot_to_sorted_, tokens_ * slots_); }  // (T·S)
  index_view dropped_slots() const { return view1(dropped_slots_, dropped_); }    // (D)

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

  index_t tokens_ = 0, slots_ = 0, experts_ = 0;
  index_t sorted_rows_ = 0, dropped_ = 0, empty_slots_ = 0;
  capacity_limit capacity_{};
  bool built_ = false;

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
};

// Sorts the router's choices (already in plan.prepare()'s arrays) into the plan, enforcing
// `capacity`. Throws jetmoe::error when an expert id is outside [no_expert, E).
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
