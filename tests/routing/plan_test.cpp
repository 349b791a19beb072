// The routing plan: invariants on random routing, and capacity/drop behaviour on hand-made
// cases. All checks are exact (integer bookkeeping and row copies).
#include <catch2/catch.hpp>

#include <cstring>

#include "routing_test_helpers.hpp"

using namespace routing_test;
namespace routing = jetmoe::routing;

namespace {

using plan_type = routing::routing_plan<jetmoe::exec::cpu>;

void check_invariants(const plan_type& plan) {
  const index_t tokens = plan.num_tokens(), slots = plan.slots_per_token(), experts = plan.num_experts();
  const auto ids = plan.expert_ids();
  const auto counts = plan.counts();
  const auto routed = plan.routed_counts();
  const auto offsets = plan.offsets();
  const auto sorted_slot = plan.sorted_slot();
  const auto sorted_token = plan.sorted_token();
  const auto to_sorted = plan.slot_to_sorted();

  index_t empty = 0, kept = 0, routed_total = 0;
  for (index_t s = 0; s < tokens * slots; ++s) empty += ids(s / slots, s % slots) == routing::no_expert;
  REQUIRE(plan.num_empty_slots() == empty);
  REQUIRE(offsets(0) == 0);
  for (index_t e = 0; e < experts; ++e) {
    REQUIRE(offsets(e + 1) - offsets(e) == counts(e));
    REQUIRE(counts(e) <= routed(e));
    REQUIRE(counts(e) <= plan.capacity().per_expert);
    kept += counts(e);
    routed_total += routed(e);
  }
  // Counts sum to T·S minus the empty and the dropped slots.
  REQUIRE(kept == plan.num_sorted_rows());
  REQUIRE(kept == tokens * slots - empty - plan.num_dropped());
  REQUIRE(routed_total == tokens * slots - empty);

  for (index_t e = 0; e < experts; ++e)
    for (index_t i = offsets(e); i < offsets(e + 1); ++i) {
      const std::int32_t s = sorted_slot(i);
      REQUIRE(ids(s / slots, s % slots) == e);          // the row belongs to its expert's range
      REQUIRE(sorted_token(i) == s / slots);
      REQUIRE(to_sorted(s) == i);                       // inverse on kept slots
      if (i > offsets(e)) REQUIRE(sorted_slot(i - 1) < s);  // stable: ascending within an expert
    }
  index_t unmapped = 0;
  for (index_t s = 0; s < tokens * slots; ++s) unmapped += to_sorted(s) < 0;
  REQUIRE(unmapped == empty + plan.num_dropped());
  for (index_t d = 0; d < plan.num_dropped(); ++d) {
    const std::int32_t s = plan.dropped_slots()(d);
    REQUIRE(to_sorted(s) == -1);
    REQUIRE(ids(s / slots, s % slots) != routing::no_expert);
  }
}

// Builds a plan from explicit (T, S) choices.
void plan_from(plan_type& plan, const std::vector<std::vector<std::int32_t>>& ids,
               const std::vector<std::vector<float>>& gates, index_t experts, routing::capacity_limit capacity) {
  const index_t tokens = static_cast<index_t>(ids.size()), slots = static_cast<index_t>(ids[0].size());
  const auto out = plan.prepare(one_thread(), tokens, slots, experts);
  for (index_t t = 0; t < tokens; ++t)
    for (index_t j = 0; j < slots; ++j) {
      out.expert_ids(t, j) = ids[t][j];
      out.gates(t, j) = gates.empty() ? 1.0f : gates[t][j];
    }
  routing::build_plan(one_thread(), plan, capacity);
}

std::vector<std::int32_t> kept_tokens_of(const plan_type& plan, index_t expert) {
  std::vector<std::int32_t> tokens;
  for (index_t i = plan.offsets()(expert); i < plan.offsets()(expert + 1); ++i) tokens.push_back(plan.sorted_token()(i));
  return tokens;
}

}  // namespace

TEST_CASE("plan invariants hold for every router on random logits", "[routing][plan]") {
  std::mt19937 rng(21);
  plan_type plan;  // reused across sizes on purpose: buffers must be resized correctly
  const auto policy = two_threads();
  for (index_t tokens : {1, 7, 64, 300, 5}) {
    const auto logits = grid_logits(rng, tokens, 6);
    routing::plan_routing(policy, routing::top_k_then_softmax{}, logits.view(), 2, plan);
    check_invariants(plan);
    routing::plan_routing(policy, routing::softmax_then_top_k{}, logits.view(), 3, plan);
    check_invariants(plan);
    routing::plan_routing(policy, routing::switch_top1{1.0}, logits.view(), 1, plan);
    check_invariants(plan);
    routing::plan_routing(policy, routing::expert_choice{0.75}, logits.view(), 2, plan);
    check_invariants(plan);
    REQUIRE(plan.slots_per_token() == 6);
    {  // its capacity is exactly what each expert takes: a row bound that drops nothing
      const index_t per_expert = routing::expert_choice{0.75}.tokens_per_expert(tokens, 2, 6);
      CHECK(plan.capacity().per_expert == per_expert);
      CHECK(plan.num_dropped() == 0);
      for (index_t e = 0; e < 6; ++e) CHECK(plan.counts()(e) == per_expert);
    }
    routing::plan_routing(policy, routing::noisy_top_k{}, logits.view(), 2, plan);
    check_invariants(plan);
  }
  SECTION("an empty batch gives an empty plan") {
    const tensor<float, 2> none(jetmoe::make_dims(0, 6));
    routing::plan_routing(policy, routing::top_k_then_softmax{}, none.view(), 2, plan);
    CHECK(plan.num_sorted_rows() == 0);
    check_invariants(plan);
  }
}

TEST_CASE("gather through the plan, then its inverse, gives back every routed row", "[routing][plan]") {
  std::mt19937 rng(22);
  const index_t tokens = 45, hidden = 13;
  const auto x = random_matrix(rng, tokens, hidden);
  const auto logits = grid_logits(rng, tokens, 5);
  plan_type plan;
  routing::plan_routing(two_threads(), routing::switch_top1{1.0}, logits.view(), 1, plan);  // with drops
  REQUIRE(plan.num_dropped() > 0);
  tensor<float, 2> sorted(jetmoe::make_dims(plan.num_sorted_rows(), hidden));
  routing::gather(two_threads(), x.view(), plan.sorted_token(), sorted.view());
  tensor<float, 3> slots(jetmoe::make_dims(tokens, plan.slots_per_token(), hidden));
  routing::scatter_to_slots(two_threads(), plan, sorted.view(), slots.view());
  for (index_t t = 0; t < tokens; ++t)
    for (index_t h = 0; h < hidden; ++h)
      REQUIRE(slots(t, 0, h) == (plan.slot_to_sorted()(t) >= 0 ? x(t, h) : 0.0f));
}

TEST_CASE("capacity by position keeps first choices first, then earlier tokens", "[routing][plan]") {
  plan_type plan;
  // 4 tokens, 2 slots, 3 experts. Expert 0 is everyone's favourite.
  const std::vector<std::vector<std::int32_t>> ids = {{0, 1}, {0, 2}, {1, 0}, {0, 1}};
  plan_from(plan, ids, {}, 3, {2, routing::drop_policy::by_position});
  check_invariants(plan);
  // Expert 0 is asked for by first choices of tokens 0, 1, 3 and the second choice of token 2:
  // the first two first choices fit.
  CHECK(plan.routed_counts()(0) == 4);
  CHECK(plan.counts()(0) == 2);
  CHECK(kept_tokens_of(plan, 0) == std::vector<std::int32_t>{0, 1});
  // Expert 1: first choice of token 2, then second choices of tokens 0 and 3 — token 3 misses.
  CHECK(kept_tokens_of(plan, 1) == std::vector<std::int32_t>{0, 2});
  CHECK(kept_tokens_of(plan, 2) == std::vector<std::int32_t>{1});
  REQUIRE(plan.num_dropped() == 3);
  // Dropped in priority order: token 3's first choice, then token 2's and 3's second choices.
  CHECK(plan.dropped_slots()(0) == 3 * 2 + 0);
  CHECK(plan.dropped_slots()(1) == 2 * 2 + 1);
  CHECK(plan.dropped_slots()(2) == 3 * 2 + 1);
}

TEST_CASE("capacity by gate keeps the largest gates", "[routing][plan]") {
  plan_type plan;
  const std::vector<std::vector<std::int32_t>> ids = {{0}, {0}, {0}, {0}, {1}};
  const std::vector<std::vector<float>> gates = {{0.1f}, {0.9f}, {0.5f}, {0.9f}, {0.2f}};
  plan_from(plan, ids, gates, 2, {2, routing::drop_policy::by_gate});
  check_invariants(plan);
  CHECK(kept_tokens_of(plan, 0) == std::vector<std::int32_t>{1, 3});  // the two 0.9s
  CHECK(kept_tokens_of(plan, 1) == std::vector<std::int32_t>{4});
  CHECK(plan.num_dropped() == 2);
  // The same case by position keeps tokens 0 and 1 instead.
  plan_from(plan, ids, gates, 2, {2, routing::drop_policy::by_position});
  CHECK(kept_tokens_of(plan, 0) == std::vector<std::int32_t>{0, 1});
}

TEST_CASE("a zero capacity drops everything; an unlimited one nothing", "[routing][plan]") {
  plan_type plan;
  const std::vector<std::vector<std::int32_t>> ids = {{0, 1}, {1, routing::no_expert}};
  plan_from(plan, ids, {}, 2, {0, routing::drop_policy::by_position});
  check_invariants(plan);
  CHECK(plan.num_sorted_rows() == 0);
  CHECK(plan.num_dropped() == 3);
  CHECK(plan.num_empty_slots() == 1);
  plan_from(plan, ids, {}, 2, {});
  check_invariants(plan);
  CHECK(plan.num_sorted_rows() == 3);
  CHECK(plan.num_dropped() == 0);
}

TEST_CASE("switch_top1 drops over-capacity tokens in token order", "[routing][plan]") {
  // 8 tokens, 2 experts, factor 1.0 → capacity 4; six tokens prefer expert 1.
  tensor<float, 2> logits(jetmoe::make_dims(8, 2));
  const int favourite[8] = {1, 1, 0, 1, 1, 1, 0, 1};
  for (int t = 0; t < 8; ++t) {
    logits(t, 0) = favourite[t] == 0 ? 1.0f : 0.0f;
    logits(t, 1) = favourite[t] == 1 ? 1.0f : 0.0f;
  }
  plan_type plan;
  routing::plan_routing(one_thread(), routing::switch_top1{1.0}, logits.view(), 1, plan);
  check_invariants(plan);
  CHECK(plan.capacity().per_expert == 4);
  CHECK(plan.routed_counts()(1) == 6);
  CHECK(plan.counts()(1) == 4);
  CHECK(kept_tokens_of(plan, 1) == std::vector<std::int32_t>{0, 1, 3, 4});
  CHECK(kept_tokens_of(plan, 0) == std::vector<std::int32_t>{2, 6});
  CHECK(plan.num_dropped() == 2);
}

TEST_CASE("a router that names a nonexistent expert is reported", "[routing][plan]") {
  plan_type plan;
  const std::vector<std::vector<std::int32_t>> ids = {{0, 3}};
  REQUIRE_THROWS_AS(plan_from(plan, ids, {}, 3, {}), jetmoe::error);
  const std::vector<std::vector<std::int32_t>> negative = {{-2, 0}};
  REQUIRE_THROWS_WITH(plan_from(plan, negative, {}, 3, {}), Catch::Contains("names expert -2"));
}

TEST_CASE("large batches: routing, gather, scatter and combine are the same on 1 and 2 threads", "[routing][plan]") {
  // Enough tokens that every CPU kernel splits its work into several parallel tasks.
  std::mt19937 rng(23);
  const index_t tokens = 1500, experts = 6, hidden = 40;
  const auto logits = random_matrix(rng, tokens, experts, 2.0f);
  const auto x = random_matrix(rng, tokens, hidden);
  struct outputs {
    plan_type plan;
    tensor<float, 2> sorted, y;
    tensor<float, 3> slots;
  };
  const auto run_with = [&](const jetmoe::exec::cpu& policy, outputs& out) {
    routing::plan_routing(policy, routing::noisy_top_k{0.5f, 3, 1}, logits.view(), 2, out.plan);
    out.sorted = tensor<float, 2>(jetmoe::make_dims(out.plan.num_sorted_rows(), hidden));
    routing::gather(policy, x.view(), out.plan.sorted_token(), out.sorted.view());
    out.slots = tensor<float, 3>(jetmoe::make_dims(tokens, 2, hidden));
    routing::scatter_to_slots(policy, out.plan, out.sorted.view(), out.slots.view());
    out.y = tensor<float, 2>(jetmoe::make_dims(tokens, hidden));
    routing::combine(policy, out.plan, out.sorted.view(), out.y.view());
  };
  outputs serial, parallel;
  run_with(one_thread(), serial);
  run_with(two_threads(), parallel);
  check_invariants(parallel.plan);
  for (index_t i = 0; i < tokens * 2; ++i) {
    REQUIRE(serial.plan.expert_ids().data()[i] == parallel.plan.expert_ids().data()[i]);
    REQUIRE(serial.plan.gates().data()[i] == parallel.plan.gates().data()[i]);
  }
  REQUIRE(std::memcmp(serial.slots.data(), parallel.slots.data(), serial.slots.bytes()) == 0);
  REQUIRE(std::memcmp(serial.y.data(), parallel.y.data(), serial.y.bytes()) == 0);
}
