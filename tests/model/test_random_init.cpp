// random_weights / random_init: the weights benchmarks and experiments build models from.
// What they promise: every tensor of the config's shape; matrices uniform(−a, a) with
// a = stddev·√3, norms 1, biases 0; the same seed gives the same bits whatever the thread
// count; another seed gives other weights; the model runs.
#include <catch2/catch.hpp>

#include "model/reference_data.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace jm = jetmoe::models::jetmoe;
using jetmoe::index_t;

namespace {

struct named_tensor {
  std::string name;
  const float* data;
  index_t size;
};

// Every (name, values) of the weights, through the list loading uses.
std::vector<named_tensor> tensors_of(jm::weights<float>& w, const jm::config& c) {
  std::vector<named_tensor> out;
  jm::detail::for_each_weight(w, c, [&](auto& t, const std::string& name, const auto&) {
    out.push_back({name, t.data(), t.size()});
  });
  return out;
}

bool same_bits(const std::vector<named_tensor>& a, const std::vector<named_tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size != b[i].size || !std::equal(a[i].data, a[i].data + a[i].size, b[i].data)) return false;
  return true;
}

}  // namespace

TEST_CASE("random_weights: shapes, distribution, seeds and thread counts", "[model][random]") {
  jm::config c = jm::load_config(jetmoe_test::data_dir("small-untied") / "config.json");
  constexpr float stddev = 0.05f;
  auto one_thread = jm::random_weights<float>(c, 11, stddev, jetmoe::exec::cpu{.threads = 1});
  auto two_threads = jm::random_weights<float>(c, 11, stddev, jetmoe::exec::cpu{.threads = 2});
  auto other_seed = jm::random_weights<float>(c, 12, stddev, jetmoe::exec::cpu{.threads = 2});
  const auto a = tensors_of(one_thread, c), b = tensors_of(two_threads, c), other = tensors_of(other_seed, c);

  CHECK(same_bits(a, b));
  CHECK_FALSE(same_bits(a, other));
  REQUIRE(one_thread.lm_head.has_value());  // the fixture is untied
  CHECK(one_thread.lm_head->size() == one_thread.embed_tokens.size());

  const double half_width = stddev * std::sqrt(3.0);
  for (const auto& t : a) {
    INFO(t.name);
    const bool is_norm = t.name.ends_with("layernorm.weight") || t.name == "model.norm.weight";
    const bool is_bias = t.name.ends_with(".bias");
    if (is_norm || is_bias) {
      const float want = is_norm ? 1.0f : 0.0f;
      CHECK(std::all_of(t.data, t.data + t.size, [&](float x) { return x == want; }));
      continue;
    }
    double sum = 0, squares = 0, largest = 0;
    for (index_t i = 0; i < t.size; ++i) {
      sum += t.data[i];
      squares += double(t.data[i]) * t.data[i];
      largest = std::max(largest, std::fabs(double(t.data[i])));
    }
    const double n = static_cast<double>(t.size), mean = sum / n, sd = std::sqrt(squares / n - mean * mean);
    // Uniform(−a, a): mean 0 with standard error σ/√n; the sample σ has relative standard
    // error about 0.45/√n (kurtosis 1.8). 5 standard errors either way, plus the bound.
    CHECK(std::fabs(mean) <= 5 * stddev / std::sqrt(n));
    CHECK(std::fabs(sd - stddev) <= 5 * 0.45 * stddev / std::sqrt(n));
    CHECK(largest <= half_width);
  }
}

TEST_CASE("random_init builds a model that runs, the same for the same seed", "[model][random]") {
  const jm::config c = jm::load_config(jetmoe_test::data_dir("tiny") / "config.json");
  auto first = jm::random_init<float>(c, 3, jetmoe::exec::cpu{.threads = 2});
  auto again = jm::random_init<float>(c, 3, jetmoe::exec::cpu{.threads = 1});
  std::vector<std::int64_t> ids = {1, 5, 9, 2, 7, 3};
  jm::causal_lm_request request;
  request.input_ids = jetmoe::make_view(static_cast<const std::int64_t*>(ids.data()), index_t{1}, index_t{6});
  const auto out = jm::causal_lm_forward(first, request);
  const auto out_again = jm::causal_lm_forward(again, request);
  REQUIRE(out.logits.size() == 6 * c.vocab_size);
  CHECK(std::all_of(out.logits.data(), out.logits.data() + out.logits.size(), [](float x) { return std::isfinite(x); }));
  CHECK(jetmoe_test::max_abs_diff(out.logits, out_again.logits) == 0.0);
}
