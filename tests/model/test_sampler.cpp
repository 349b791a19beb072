// The sampler against a brute-force statement of what it should draw from.
//
// The reference distribution is written plainly here: logits / temperature, sort, keep the top
// k, softmax, keep the shortest prefix whose probability reaches top_p, renormalise. The
// sampler is then run many times with a fixed seed and every empirical frequency must sit
// within 5 standard errors of the reference probability (binomial: sqrt(p(1-p)/n)); a token
// outside the kept set must never appear. With a fixed seed the test is deterministic; 5σ is
// wide enough that a correct sampler passes for any seed, and narrow enough (±0.5 percentage
// points at n = 100k) that a wrong temperature, a cut in the wrong place or an off-by-one in
// the nucleus fails.
#include <catch2/catch.hpp>

#include <jetmoe/generation/sampler.hpp>
#include <jetmoe/ops/cpu/top_k.hpp>
#include <jetmoe/core/tensor.hpp>
#include <jetmoe/exec/cpu.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

using jetmoe::generation::sampler;
using jetmoe::generation::sampling_options;

namespace {

jetmoe::tensor_view<const float, 1> row(const std::vector<float>& logits) {
  return jetmoe::make_view(logits.data(), static_cast<jetmoe::index_t>(logits.size()));
}

// (V) probabilities the options define, computed the obvious way.
std::vector<double> reference_distribution(const std::vector<float>& logits, const sampling_options& o) {
  const std::size_t V = logits.size();
  std::vector<std::size_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
  std::size_t keep = V;
  if (o.top_k > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(o.top_k));
  std::vector<double> p(keep);
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i) total += p[i] = std::exp(logits[order[i]] / static_cast<double>(o.temperature));
  for (double& x : p) x /= total;
  std::size_t nucleus = keep;
  if (o.top_p < 1.0f) {
    double mass = 0;
    for (nucleus = 0; nucleus < keep && mass < o.top_p;) mass += p[nucleus++];
  }
  const double kept = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(nucleus), 0.0);
  std::vector<double> out(V, 0.0);
  for (std::size_t i = 0; i < nucleus; ++i) out[order[i]] = p[i] / kept;
  return out;
}

void check_frequencies(const std::vector<float>& logits, const sampling_options& o, int draws) {
  const std::vector<double> want = reference_distribution(logits, o);
  std::vector<int> seen(logits.size(), 0);
  sampler s(o);
  int out_of_range = 0;
  for (int i = 0; i < draws; ++i) {
    const std::int64_t id = s.next(row(logits));
    if (id < 0 || id >= static_cast<std::int64_t>(logits.size()))
      ++out_of_range;
    else
      ++seen[static_cast<std::size_t>(id)];
  }
  REQUIRE(out_of_range == 0);
  for (std::size_t v = 0; v < logits.size(); ++v) {
    const double got = static_cast<double>(seen[v]) / draws;
    const double sigma = std::sqrt(want[v] * (1 - want[v]) / draws);
    INFO("token " << v << ": drawn " << got << ", reference " << want[v] << " (T=" << o.temperature
                  << " top_k=" << o.top_k << " top_p=" << o.top_p << ")");
    if (want[v] == 0.0)
      CHECK(seen[v] == 0);
    else
      CHECK(std::abs(got - want[v]) <= 5 * sigma);
  }
}

const std::vector<float> logits_8 = {1.0f, 2.5f, -0.5f, 2.0f, 0.0f, 3.0f, 1.5f, -2.0f};

}  // namespace

TEST_CASE("Sampler: greedy is argmax, ties to the lower id, NaN never wins", "[model][generation][sampler]") {
  sampler greedy(sampling_options{});
  CHECK(greedy.next(row(logits_8)) == 5);
  CHECK(greedy.next(row({0.5f, 2.0f, 2.0f, 1.0f})) == 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(greedy.next(row({nan, -1.0f, nan, 0.5f})) == 3);
  CHECK(greedy.next(row({-std::numeric_limits<float>::infinity(), -5.0f})) == 1);
}

TEST_CASE("Sampler: draws follow temperature, top-k and top-p as a brute-force reference says", "[model][generation][sampler]") {
  constexpr int draws = 100000;
  SECTION("temperature only") {
    check_frequencies(logits_8, {.temperature = 1.0f, .seed = 1}, draws);
    check_frequencies(logits_8, {.temperature = 0.5f, .seed = 2}, draws);
    check_frequencies(logits_8, {.temperature = 2.0f, .seed = 3}, draws);
  }
  SECTION("top-k") {
    check_frequencies(logits_8, {.temperature = 1.0f, .top_k = 3, .seed = 4}, draws);
    check_frequencies(logits_8, {.temperature = 1.0f, .top_k = 1, .seed = 5}, draws);
    check_frequencies(logits_8, {.temperature = 1.0f, .top_k = 100, .seed = 6}, draws);  // k > V: no cut
  }
  SECTION("top-p: the token that crosses p is kept") {
    check_frequencies(logits_8, {.temperature = 1.0f, .top_p = 0.5f, .seed = 7}, draws);
    check_frequencies(logits_8, {.temperature = 1.0f, .top_p = 0.9f, .seed = 8}, draws);
    check_frequencies(logits_8, {.temperature = 1.0f, .top_p = 1e-6f, .seed = 9}, draws);  // argmax only
  }
  SECTION("all three, top-p applied after the top-k cut") {
    check_frequencies(logits_8, {.temperature = 0.7f, .top_k = 5, .top_p = 0.8f, .seed = 10}, draws);
  }
}

TEST_CASE("Sampler: a seed repeats its draws and another seed does not", "[model][generation][sampler]") {
  const sampling_options o{.temperature = 1.5f, .top_k = 6, .seed = 42};
  sampler a(o), b(o), c({.temperature = 1.5f, .top_k = 6, .seed = 43});
  std::vector<std::int64_t> from_a, from_b, from_c;
  for (int i = 0; i < 64; ++i) {
    from_a.push_back(a.next(row(logits_8)));
    from_b.push_back(b.next(row(logits_8)));
    from_c.push_back(c.next(row(logits_8)));
  }
  CHECK(from_a == from_b);
  CHECK(from_a != from_c);
}

TEST_CASE("Sampler: choosing from a row's top-k candidates draws exactly what the whole row draws",
          "[model][generation][sampler]") {
  // What a device hands back instead of V logits: ops::top_k's candidates. Same options, same
  // seed, same row → the same token at every draw, including greedy (k = 1). The row has many
  // exact ties (values on a grid) so the order of equal logits matters.
  std::mt19937 rng(2);
  std::uniform_int_distribution<int> grid(-12, 12);
  std::vector<float> logits(300);
  const sampling_options cases[] = {
      {},                                                      // greedy
      {.temperature = 1.0f, .top_k = 1, .seed = 3},
      {.temperature = 0.8f, .top_k = 20, .seed = 4},
      {.temperature = 1.3f, .top_k = 50, .top_p = 0.7f, .seed = 5},
      {.temperature = 1.0f, .top_k = 300, .top_p = 0.95f, .seed = 6},  // k = V
  };
  for (const sampling_options& o : cases) {
    sampler whole(o), narrowed(o);
    const auto k = static_cast<jetmoe::index_t>(narrowed.candidates_needed());
    REQUIRE(k >= 1);
    jetmoe::tensor<float, 2> values(jetmoe::make_dims(1, k));
    jetmoe::tensor<std::int32_t, 2> ids(jetmoe::make_dims(1, k));
    int differ = 0;
    for (int draw = 0; draw < 200; ++draw) {
      for (float& v : logits) v = static_cast<float>(grid(rng)) * 0.25f;
      jetmoe::ops::top_k(jetmoe::exec::cpu{1}, jetmoe::make_view<const float>(logits.data(), 1, 300), values.view(),
                         ids.view());
      const std::int64_t want = whole.next(row(logits));
      const std::int64_t got = narrowed.next_from_candidates(
          jetmoe::tensor_view<const float, 2>(values.view()).select(0),
          jetmoe::tensor_view<const std::int32_t, 2>(ids.view()).select(0));
      differ += got != want;
    }
    INFO("T=" << o.temperature << " top_k=" << o.top_k << " top_p=" << o.top_p);
    CHECK(differ == 0);
  }
  sampler plain({.temperature = 1.0f});  // no cut: it needs the whole row
  CHECK(plain.candidates_needed() == 0);
}

TEST_CASE("Sampler: invalid options are clear errors", "[model][generation][sampler][errors]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(sampler({.temperature = -1.0f}), Contains("temperature"));
  CHECK_THROWS_WITH(sampler({.temperature = std::numeric_limits<float>::quiet_NaN()}), Contains("temperature"));
  CHECK_THROWS_WITH(sampler({.temperature = 1.0f, .top_k = -2}), Contains("top_k"));
  CHECK_THROWS_WITH(sampler({.temperature = 1.0f, .top_p = 0.0f}), Contains("top_p"));
  CHECK_THROWS_WITH(sampler({.temperature = 1.0f, .top_p = 1.5f}), Contains("top_p"));
  sampler s({.temperature = 1.0f});
  const std::vector<float> empty;
  CHECK_THROWS_WITH(s.next(jetmoe::make_view(empty.data(), jetmoe::index_t{0})), Contains("empty"));
}
