// Each built-in router against a brute-force reference (full sort, double-precision gates) on
// random logits, including rows full of exact ties.
//
// Tolerances: expert ids must match exactly. Gates are fp32 softmax/sigmoid values in [0, 1];
// a handful of fp32 roundings (exp, the sum, the division) keep them within a few ulp of 1, so
// 1e-6 absolute against the double reference has ample margin.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <set>

#include "routing_test_helpers.hpp"

using namespace routing_test;
namespace routing = jetmoe::routing;

static_assert(routing::router<routing::top_k_then_softmax>);
static_assert(routing::router<routing::softmax_then_top_k>);
static_assert(routing::router<routing::sigmoid_top_k>);
static_assert(routing::router<routing::switch_top1>);
static_assert(routing::router<routing::expert_choice>);
static_assert(routing::router<routing::noisy_top_k>);
static_assert(!routing::router<int>);
static_assert(!routing::router<routing::capacity_limit>);

namespace {

constexpr double gate_tolerance = 1e-6;

// top-k by full sort, then the gates a rule derives from the chosen indices.
template <class GateRule>
void check_against_reference(const route_result& got, const tensor<float, 2>& logits, index_t k, GateRule gates_for) {
  for (index_t t = 0; t < logits.extent(0); ++t) {
    const std::vector<float> row = row_of(logits, t);
    const std::vector<std::int32_t> order = rank_by_sort(row);
    const std::vector<double> expected = gates_for(row, std::vector<std::int32_t>(order.begin(), order.begin() + k));
    for (index_t j = 0; j < k; ++j) {
      INFO("token " << t << ", slot " << j);
      REQUIRE(got.ids(t, j) == order[j]);
      REQUIRE(got.gates(t, j) == Approx(expected[j]).margin(gate_tolerance).epsilon(0));
    }
  }
}

std::vector<double> softmax_over_chosen(const std::vector<float>& row, const std::vector<std::int32_t>& chosen) {
  std::vector<float> values;
  for (auto e : chosen) values.push_back(row[e]);
  return softmax_double(values);
}

}  // namespace

TEST_CASE("top_k_then_softmax matches a full sort and a softmax over the chosen k", "[routing][routers]") {
  std::mt19937 rng(11);
  for (index_t k : {1, 2, 3, 8}) {
    for (bool ties : {false, true}) {
      const auto logits = ties ? grid_logits(rng, 97, 8) : random_matrix(rng, 97, 8, 3.0f);
      const auto got = run_router(routing::top_k_then_softmax{}, two_threads(), logits, k);
      check_against_reference(got, logits, k, softmax_over_chosen);
    }
  }
}

TEST_CASE("ties go to the lower expert index, and a NaN is chosen last", "[routing][routers]") {
  tensor<float, 2> logits(jetmoe::make_dims(3, 4));
  const float nan = std::nanf("");
  const float rows[3][4] = {{1, 1, 1, 1}, {0.5f, 2, 0.5f, 2}, {nan, 1, nan, 0}};
  for (int t = 0; t < 3; ++t)
    for (int e = 0; e < 4; ++e) logits(t, e) = rows[t][e];
  const auto got = run_router(routing::top_k_then_softmax{}, one_thread(), logits, 3);
  CHECK(got.ids(0, 0) == 0);
  CHECK(got.ids(0, 1) == 1);
  CHECK(got.ids(0, 2) == 2);
  CHECK(got.gates(0, 0) == got.gates(0, 2));
  CHECK(got.ids(1, 0) == 1);
  CHECK(got.ids(1, 1) == 3);
  CHECK(got.ids(1, 2) == 0);
  CHECK(got.ids(2, 0) == 1);
  CHECK(got.ids(2, 1) == 3);
  CHECK(got.ids(2, 2) == 0);  // of the two NaNs, the lower index
}

TEST_CASE("softmax_then_top_k: gates are the full-softmax probabilities, optionally renormalised",
          "[routing][routers]") {
  std::mt19937 rng(12);
  for (bool renormalize : {false, true}) {
    for (index_t k : {1, 2, 4}) {
      const auto logits = grid_logits(rng, 64, 6);
      const auto got = run_router(routing::softmax_then_top_k{renormalize}, two_threads(), logits, k);
      check_against_reference(got, logits, k, [&](const std::vector<float>& row, const std::vector<std::int32_t>& chosen) {
        const auto p = softmax_double(row);
        std::vector<double> g;
        double sum = 0.0;
        for (auto e : chosen) sum += p[e];
        for (auto e : chosen) g.push_back(renormalize ? p[e] / sum : p[e]);
        return g;
      });
    }
  }
  SECTION("with renormalisation it equals top_k_then_softmax") {
    const auto logits = random_matrix(rng, 40, 8, 2.0f);
    const auto a = run_router(routing::softmax_then_top_k{true}, one_thread(), logits, 2);
    const auto b = run_router(routing::top_k_then_softmax{}, one_thread(), logits, 2);
    for (index_t i = 0; i < a.ids.size(); ++i) {
      REQUIRE(a.ids.data()[i] == b.ids.data()[i]);
      REQUIRE(a.gates.data()[i] == Approx(b.gates.data()[i]).margin(gate_tolerance));
    }
  }
}

TEST_CASE("sigmoid_top_k: the bias steers the choice, never the gate; groups limit the choice",
          "[routing][routers]") {
  std::mt19937 rng(13);
  const index_t experts = 8;
  const auto bias = grid_logits(rng, 1, experts);  // (1, E): grid values, so biased scores tie too
  const jetmoe::tensor_view<const float, 1> bias_view(bias.data(), jetmoe::make_dims(experts));

  struct setting {
    index_t groups, kept;
    bool normalize;
    float scaling;
  };
  for (const setting s : {setting{1, 1, true, 1.0f}, setting{1, 1, false, 2.5f}, setting{4, 2, true, 1.5f},
                          setting{2, 1, true, 1.0f}}) {
    for (index_t k : {1, 2, 3}) {
      if (s.kept * (experts / s.groups) < k) continue;
      const routing::sigmoid_top_k router{bias_view, s.groups, s.kept, s.normalize, s.scaling};
      const auto logits = grid_logits(rng, 50, experts);
      const auto got = run_router(router, two_threads(), logits, k);
      for (index_t t = 0; t < logits.extent(0); ++t) {
        // Reference: choice scores in fp32 (the ranking is what matters), full sorts.
        std::vector<float> affinity(experts), choice(experts);
        for (index_t e = 0; e < experts; ++e) {
          affinity[e] = 1.0f / (1.0f + std::exp(-logits(t, e)));
          choice[e] = affinity[e] + bias(0, e);
        }
        const index_t size = experts / s.groups;
        std::vector<float> group_score(s.groups);
        for (index_t g = 0; g < s.groups; ++g) {
          std::vector<float> members(choice.begin() + g * size, choice.begin() + (g + 1) * size);
          std::sort(members.rbegin(), members.rend());
          group_score[g] = members[0] + members[1];
        }
        const auto group_order = rank_by_sort(group_score);
        std::set<index_t> kept_groups(group_order.begin(), group_order.begin() + s.kept);
        std::vector<float> eligible = choice;
        for (index_t e = 0; e < experts; ++e)
          if (!kept_groups.count(e / size)) eligible[e] = -INFINITY;
        const auto order = rank_by_sort(eligible);
        double sum = 0.0;
        for (index_t j = 0; j < k; ++j) sum += 1.0 / (1.0 + std::exp(-static_cast<double>(logits(t, order[j]))));
        for (index_t j = 0; j < k; ++j) {
          INFO("token " << t << " slot " << j << " groups " << s.groups);
          REQUIRE(got.ids(t, j) == order[j]);
          const double a = 1.0 / (1.0 + std::exp(-static_cast<double>(logits(t, order[j]))));
          const double expected = (s.normalize ? a / sum : a) * s.scaling;
          REQUIRE(got.gates(t, j) == Approx(expected).margin(gate_tolerance * s.scaling));
        }
      }
    }
  }
  SECTION("a large bias wins the choice while the gate stays sigmoid(logit)") {
    tensor<float, 2> logits(jetmoe::make_dims(1, 4));
    for (int e = 0; e < 4; ++e) logits(0, e) = static_cast<float>(e);  // expert 3 has the best logit
    const float strong[4] = {10.0f, 0.0f, 0.0f, 0.0f};
    const routing::sigmoid_top_k router{jetmoe::make_view(strong, 4), 1, 1, false, 1.0f};
    const auto got = run_router(router, one_thread(), logits, 1);
    CHECK(got.ids(0, 0) == 0);
    CHECK(got.gates(0, 0) == Approx(0.5f));
  }
}

TEST_CASE("switch_top1 takes the most probable expert with its probability as the gate", "[routing][routers]") {
  std::mt19937 rng(14);
  const auto logits = grid_logits(rng, 80, 5);
  const routing::switch_top1 router{};
  REQUIRE(routing::slots_per_token(router, 2, 5) == 1);  // k is ignored
  const auto got = run_router(router, two_threads(), logits, 2);
  for (index_t t = 0; t < logits.extent(0); ++t) {
    const auto row = row_of(logits, t);
    const auto order = rank_by_sort(row);
    REQUIRE(got.ids(t, 0) == order[0]);
    REQUIRE(got.gates(t, 0) == Approx(softmax_double(row)[order[0]]).margin(gate_tolerance));
  }
  CHECK(routing::capacity_of(router, 80, 1, 5).per_expert == 20);  // ceil(1.25 · 80 / 5)
  CHECK(!routing::capacity_of(routing::switch_top1{0.0}, 80, 1, 5).is_limited());
}

TEST_CASE("expert_choice: each expert takes its C best tokens, lower token index on ties", "[routing][routers]") {
  std::mt19937 rng(15);
  const index_t tokens = 30, experts = 4, k = 2;
  for (double factor : {1.0, 0.5, 2.0}) {
    const routing::expert_choice router{factor};
    const index_t per_expert = router.tokens_per_expert(tokens, k, experts);
    CHECK(per_expert == std::min<index_t>(tokens, static_cast<index_t>(std::ceil(factor * tokens * k / experts))));
    const auto logits = grid_logits(rng, tokens, experts);
    const auto got = run_router(router, two_threads(), logits, k);
    REQUIRE(got.ids.extent(1) == experts);
    // Reference probabilities with the same fp32 formula, so exact ties stay exact.
    tensor<float, 2> probs(jetmoe::make_dims(tokens, experts));
    for (index_t t = 0; t < tokens; ++t) routing::rules::softmax(&logits(t, 0), &probs(t, 0), experts);
    for (index_t e = 0; e < experts; ++e) {
      std::vector<std::int32_t> order(tokens);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs(a, e) > probs(b, e); });
      std::set<std::int32_t> taken(order.begin(), order.begin() + per_expert);
      for (index_t t = 0; t < tokens; ++t) {
        INFO("expert " << e << " token " << t << " factor " << factor);
        const bool is_taken = taken.count(static_cast<std::int32_t>(t)) > 0;
        REQUIRE(got.ids(t, e) == (is_taken ? e : routing::no_expert));
        REQUIRE(got.gates(t, e) == (is_taken ? probs(t, e) : 0.0f));
      }
    }
  }
}

TEST_CASE("noisy_top_k: seeded, reproducible, thread-count independent; zero noise is top-k-then-softmax",
          "[routing][routers]") {
  std::mt19937 rng(16);
  const auto logits = random_matrix(rng, 200, 8, 1.0f);
  const routing::noisy_top_k noisy{1.0f, 42, 7};
  const auto a = run_router(noisy, one_thread(), logits, 2);
  const auto b = run_router(noisy, two_threads(), logits, 2);
  for (index_t i = 0; i < a.ids.size(); ++i) {
    REQUIRE(a.ids.data()[i] == b.ids.data()[i]);
    REQUIRE(a.gates.data()[i] == b.gates.data()[i]);
  }
  const auto clean = run_router(routing::top_k_then_softmax{}, one_thread(), logits, 2);
  const auto next_step = run_router(routing::noisy_top_k{1.0f, 42, 8}, one_thread(), logits, 2);
  index_t differs_from_clean = 0, differs_between_steps = 0;
  for (index_t i = 0; i < a.ids.size(); ++i) {
    differs_from_clean += a.ids.data()[i] != clean.ids.data()[i];
    differs_between_steps += a.ids.data()[i] != next_step.ids.data()[i];
  }
  CHECK(differs_from_clean > 20);  // noise of std 1 on logits of spread 1 reorders many rows
  CHECK(differs_between_steps > 20);

  const auto silent = run_router(routing::noisy_top_k{0.0f, 42, 7}, one_thread(), logits, 2);
  for (index_t i = 0; i < silent.ids.size(); ++i) {
    REQUIRE(silent.ids.data()[i] == clean.ids.data()[i]);
    REQUIRE(silent.gates.data()[i] == clean.gates.data()[i]);
  }

  SECTION("the generator's draws look standard normal") {
    const int n = 200000;
    double sum = 0.0, sum_sq = 0.0;
    for (int i = 0; i < n; ++i) {
      const double v = routing::rules::standard_normal(static_cast<std::uint64_t>(i) * 7919u);
      sum += v;
      sum_sq += v * v;
    }
    const double mean = sum / n, variance = sum_sq / n - mean * mean;
    CHECK(std::abs(mean) < 0.01);  // 4.5 standard errors
    CHECK(std::abs(variance - 1.0) < 0.015);
  }
}

TEST_CASE("every router rejects k > E and k < 1 with a jetmoe::error", "[routing][routers]") {
  std::mt19937 rng(17);
  const auto logits = random_matrix(rng, 4, 3, 1.0f);
  const auto rejects = [&](const auto& router, index_t k) {
    const index_t slots = std::max<index_t>(1, routing::slots_per_token(router, k, 3));
    route_result out(4, slots);
    REQUIRE_THROWS_AS(router.route(one_thread(), logits.view(), k, out.ids.view(), out.gates.view()), jetmoe::error);
  };
  for (index_t k : {0, 4}) {
    rejects(routing::top_k_then_softmax{}, k);
    rejects(routing::softmax_then_top_k{}, k);
    rejects(routing::sigmoid_top_k{}, k);
    rejects(routing::switch_top1{}, k);
    rejects(routing::expert_choice{}, k);
    rejects(routing::noisy_top_k{}, k);
  }
  route_result out(4, 4);
  REQUIRE_THROWS_WITH(routing::top_k_then_softmax{}.route(one_thread(), logits.view(), 4, out.ids.view(),
                                                          out.gates.view()),
                      Catch::Contains("exceeds the number of experts E = 3"));
}

TEST_CASE("router parameters that are NaN or infinite are errors or clamped, never undefined", "[routing][routers]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  // A capacity factor converted to an integer unchecked was undefined behaviour past int64.
  REQUIRE_THROWS_WITH(routing::capacity_of(routing::switch_top1{nan}, 80, 1, 5), Catch::Contains("NaN"));
  for (double huge : {inf, 1e300}) {
    const auto limit = routing::capacity_of(routing::switch_top1{huge}, 80, 1, 5);
    CHECK(limit.per_expert == 80);  // all the slots: nothing can drop
    CHECK(routing::expert_choice{huge}.tokens_per_expert(30, 2, 4) == 30);
  }
  CHECK(routing::capacity_of(routing::switch_top1{8.0}, 80, 1, 5).per_expert == 80);  // ceil(128), clamped

  std::mt19937 rng(19);
  const auto logits = random_matrix(rng, 4, 6, 1.0f);
  route_result out(4, 2);
  route_result every_slot(4, 6);  // expert_choice fills one slot per expert
  REQUIRE_THROWS_WITH(routing::expert_choice{nan}.route(one_thread(), logits.view(), 2, every_slot.ids.view(),
                                                        every_slot.gates.view()),
                      Catch::Contains("capacity_factor"));
  REQUIRE_THROWS_WITH((routing::noisy_top_k{static_cast<float>(nan)}.route(one_thread(), logits.view(), 2,
                                                                           out.ids.view(), out.gates.view())),
                      Catch::Contains("noise_std"));
  routing::sigmoid_top_k sigmoid;
  sigmoid.scaling = static_cast<float>(inf);
  REQUIRE_THROWS_WITH(sigmoid.route(one_thread(), logits.view(), 2, out.ids.view(), out.gates.view()),
                      Catch::Contains("scaling"));
}
