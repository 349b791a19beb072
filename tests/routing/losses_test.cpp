// Auxiliary losses: the load-balancing loss reproduces transformers' aux_loss from the
// reference router logits; the z-loss and JetMoE's switch + 0.1·z against direct formulas.
//
// Tolerance: the reference is an fp32 torch computation (means over ≤ 153·3 rows); ours sums
// in double. Both start from the same fp32 probabilities, so they differ by fp32 rounding of
// the reference only: a few ulp of a value near 2, i.e. ~1e-7 relative. We require 1e-6.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "routing_test_helpers.hpp"

using namespace routing_test;
namespace routing = jetmoe::routing;

namespace {

// Just enough safetensors to read the reference: u64 LE header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the data. Only F32 and I64 are needed.
class reference_file {
 public:
  explicit reference_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    std::uint64_t header_size = 0;
    in.read(reinterpret_cast<char*>(&header_size), 8);
    std::string header(header_size, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_size));
    header_ = nlohmann::json::parse(header);
    data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  bool has(const std::string& name) const { return header_.contains(name); }

  std::vector<index_t> shape(const std::string& name) const { return header_.at(name).at("shape").get<std::vector<index_t>>(); }

  template <class T>
  std::vector<T> values(const std::string& name, const char* dtype) const {
    const auto& entry = header_.at(name);
    REQUIRE(entry.at("dtype").get<std::string>() == dtype);
    const auto begin = entry.at("data_offsets")[0].get<std::size_t>(), end = entry.at("data_offsets")[1].get<std::size_t>();
    std::vector<T> out((end - begin) / sizeof(T));
    std::memcpy(out.data(), data_.data() + begin, end - begin);
    return out;
  }

 private:
  nlohmann::json header_;
  std::vector<char> data_;
};

struct reference_logits {
  std::vector<std::vector<float>> storage;
  std::vector<jetmoe::tensor_view<const float, 2>> views;  // 3L tensors, (B·S, E) each
  float aux_loss = 0.0f;
  index_t top_k = 0, experts = 0;
};

reference_logits load(const std::string& model) {
  const std::string dir = std::string(JETMOE_TEST_DATA_DIR) + "/" + model;
  std::ifstream config_file(dir + "/config.json");
  const auto config = nlohmann::json::parse(config_file);
  reference_file file(dir + "/reference.safetensors");
  reference_logits out;
  out.top_k = config.at("num_experts_per_tok").get<index_t>();
  out.experts = config.at("num_local_experts").get<index_t>();
  out.aux_loss = file.values<float>("aux_loss", "F32").at(0);
  for (int j = 0; file.has("router_logits." + std::to_string(j)); ++j) {
    const std::string name = "router_logits." + std::to_string(j);
    out.storage.push_back(file.values<float>(name, "F32"));
  }
  for (int j = 0; j < static_cast<int>(out.storage.size()); ++j) {
    const auto shape = file.shape("router_logits." + std::to_string(j));
    out.views.emplace_back(out.storage[j].data(), jetmoe::make_dims(shape[0], shape[1]));
  }
  REQUIRE(out.views.size() == 3 * static_cast<std::size_t>(config.at("num_hidden_layers").get<int>()));
  return out;
}

}  // namespace

TEST_CASE("load_balancing_loss reproduces transformers' aux_loss on the reference models", "[routing][losses]") {
  for (const char* model : {"tiny", "small-untied"}) {
    INFO(model);
    const auto ref = load(model);
    REQUIRE(ref.views[0].extent(1) == ref.experts);
    // The list as transformers records it: per layer the attention router twice, then the MLP router.
    const double loss = routing::load_balancing_loss(one_thread(), ref.views, ref.top_k);
    CHECK(loss == Approx(ref.aux_loss).epsilon(1e-6));
  }
}

TEST_CASE("load_balancing_loss: a mask removes rows from both means; an all-ones mask changes nothing",
          "[routing][losses]") {
  std::mt19937 rng(51);
  const index_t batch = 2, seq = 5, experts = 4, k = 2;
  const auto a = random_matrix(rng, batch * seq, experts, 2.0f);
  const auto b = random_matrix(rng, batch * seq, experts, 2.0f);
  const std::vector<jetmoe::tensor_view<const float, 2>> list = {a.view(), b.view()};

  tensor<std::int64_t, 2> ones(jetmoe::make_dims(batch, seq));
  for (index_t i = 0; i < ones.size(); ++i) ones.data()[i] = 1;
  const double unmasked = routing::load_balancing_loss(one_thread(), list, k);
  CHECK(routing::load_balancing_loss(one_thread(), list, k, ones.view()) == Approx(unmasked).epsilon(1e-12));

  // Masking rows equals dropping them from every tensor of the list.
  tensor<std::uint8_t, 2> mask(jetmoe::make_dims(batch, seq));
  for (index_t i = 0; i < mask.size(); ++i) mask.data()[i] = i % 3 != 0;
  std::vector<float> a_kept, b_kept;
  for (index_t r = 0; r < batch * seq; ++r)
    if (mask.data()[r]) {
      a_kept.insert(a_kept.end(), &a(r, 0), &a(r, 0) + experts);
      b_kept.insert(b_kept.end(), &b(r, 0), &b(r, 0) + experts);
    }
  const index_t kept = static_cast<index_t>(a_kept.size()) / experts;
  const std::vector<jetmoe::tensor_view<const float, 2>> kept_list = {
      jetmoe::make_view(a_kept.data(), kept, experts), jetmoe::make_view(static_cast<const float*>(b_kept.data()), kept, experts)};
  CHECK(routing::load_balancing_loss(one_thread(), list, k, mask.view()) ==
        Approx(routing::load_balancing_loss(one_thread(), kept_list, k)).epsilon(1e-12));

  tensor<std::int64_t, 2> wrong(jetmoe::make_dims(batch, seq + 1));
  REQUIRE_THROWS_AS(routing::load_balancing_loss(one_thread(), list, k, wrong.view()), jetmoe::error);
  REQUIRE_THROWS_AS(routing::load_balancing_loss(one_thread(), list, experts + 1), jetmoe::error);
}

TEST_CASE("uniform routing gives a load-balancing loss of exactly k", "[routing][losses]") {
  // All-equal logits: p = 1/E everywhere and the tie rule sends every row to experts 0..k-1,
  // so f[j, j] = 1: loss = E · Σ_j 1 · (1/E) = k.
  tensor<float, 2> flat(jetmoe::make_dims(12, 4));
  for (index_t i = 0; i < flat.size(); ++i) flat.data()[i] = 0.5f;
  const std::vector<jetmoe::tensor_view<const float, 2>> list = {flat.view()};
  CHECK(routing::load_balancing_loss(one_thread(), list, 2) == Approx(2.0).epsilon(1e-7));
}

TEST_CASE("router_z_loss and switch_plus_z_loss follow their formulas", "[routing][losses]") {
  std::mt19937 rng(52);
  const index_t tokens = 33, experts = 5, k = 2;
  const auto logits = random_matrix(rng, tokens, experts, 3.0f);
  double z = 0.0;
  std::vector<double> prob_sum(experts, 0.0), chosen(experts, 0.0);
  for (index_t t = 0; t < tokens; ++t) {
    const auto row = row_of(logits, t);
    double sum = 0.0;
    for (float v : row) sum += std::exp(static_cast<double>(v));
    z += std::log(sum) * std::log(sum);
    const auto p = softmax_double(row);
    const auto order = rank_by_sort(row);
    for (index_t e = 0; e < experts; ++e) prob_sum[e] += p[e];
    for (index_t j = 0; j < k; ++j) chosen[order[j]] += 1.0;
  }
  z /= tokens;
  double switch_loss = 0.0;
  for (index_t e = 0; e < experts; ++e) switch_loss += (prob_sum[e] / tokens) * (chosen[e] / (tokens * k));
  switch_loss *= experts;

  const std::vector<jetmoe::tensor_view<const float, 2>> list = {logits.view()};
  // The z-loss is computed in double throughout: agreement to 1e-9. The switch term sums fp32
  // probabilities (as the reference implementations do): agreement to fp32 precision, 1e-6.
  CHECK(routing::router_z_loss(one_thread(), list) == Approx(z).epsilon(1e-9));
  CHECK(routing::switch_plus_z_loss(one_thread(), logits.view(), k) == Approx(switch_loss + 0.1 * z).epsilon(1e-6));
  CHECK(routing::switch_plus_z_loss(one_thread(), logits.view(), k, 0.0) == Approx(switch_loss).epsilon(1e-6));
}
