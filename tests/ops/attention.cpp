// ops::attention on the CPU against a double reference of causal softmax attention.
//
// Tolerance: each score is an fp32 dot of D terms (error ≤ D·u·Σ|q_d·k_d|·scale); exp turns
// an absolute score error δ into a relative weight error ≈ δ, and the weighted sum of ≤ Tk
// value rows adds ≤ (Tk + 2)·u relative. So |out − ref| ≤ (2δ_max + (Tk + 4)·FLT_EPSILON)·max|v|,
// with δ_max = D·FLT_EPSILON·scale·max Σ|q·k|, which the check computes per query.
#include <catch2/catch.hpp>

#include <cfloat>
#include <optional>
#include <string>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {

struct case_shape {
  index_t batch, q_len, k_len, q_heads, kv_heads, head_dim;
};

template <class KvHeadMap>
void check_attention(tensor_view<const float, 4> q, tensor_view<const float, 4> k, tensor_view<const float, 4> v,
                     tensor_view<const float, 4> out, const ops::attention_options& options, KvHeadMap kv_head_of) {
  const index_t batch = q.extent(0), q_len = q.extent(1), q_heads = q.extent(2), head_dim = q.extent(3);
  const index_t k_len = k.extent(1), kv_heads = k.extent(2);
  const bool has_mask = options.key_mask.data() != nullptr;
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < q_len; ++i)
      for (index_t h = 0; h < q_heads; ++h) {
        const index_t g = kv_head_of(static_cast<int>(h), static_cast<int>(q_heads), static_cast<int>(kv_heads));
        std::vector<double> scores(static_cast<std::size_t>(k_len));
        std::vector<bool> visible(static_cast<std::size_t>(k_len));
        double best = -1e300, score_error = 0.0, v_max = 0.0;
        bool any = false;
        for (index_t j = 0; j < k_len; ++j) {
          visible[j] = (!options.causal || j <= options.q_offset + i) && (!has_mask || options.key_mask(b, j) != 0);
          if (!visible[j]) continue;
          double dot = 0.0, magnitude = 0.0;
          for (index_t d = 0; d < head_dim; ++d) {
            dot += static_cast<double>(q(b, i, h, d)) * k(b, j, g, d);
            magnitude += std::abs(static_cast<double>(q(b, i, h, d)) * k(b, j, g, d));
          }
          scores[j] = options.scale * dot;
          score_error = std::max(score_error, static_cast<double>(head_dim) * FLT_EPSILON * options.scale * magnitude);
          for (index_t d = 0; d < head_dim; ++d) v_max = std::max(v_max, std::abs(static_cast<double>(v(b, j, g, d))));
          best = std::max(best, scores[j]);
          any = true;
        }
        INFO("b=" << b << " query " << i << " head " << h << " (kv head " << g << ")");
        if (!any) {
          for (index_t d = 0; d < head_dim; ++d) REQUIRE(out(b, i, h, d) == 0.0f);
          continue;
        }
        double sum = 0.0;
        for (index_t j = 0; j < k_len; ++j)
          if (visible[j]) sum += std::exp(scores[j] - best);
        const double tolerance = (2.0 * score_error + static_cast<double>(k_len + 4) * FLT_EPSILON) * v_max + 1e-30;
        for (index_t d = 0; d < head_dim; ++d) {
          double expected = 0.0;
          for (index_t j = 0; j < k_len; ++j)
            if (visible[j]) expected += std::exp(scores[j] - best) / sum * v(b, j, g, d);
          REQUIRE(std::abs(out(b, i, h, d) - expected) <= tolerance);
        }
      }
}

template <class KvHeadMap = ops::kv_head_modulo>
void run_case(const case_shape& s, ops::attention_options options, std::uint32_t seed, KvHeadMap map = {}) {
  std::mt19937 rng(seed);
  tensor<float, 4> q({s.batch, s.q_len, s.q_heads, s.head_dim});    // (B, Tq, Hq, D)
  tensor<float, 4> k({s.batch, s.k_len, s.kv_heads, s.head_dim});   // (B, Tk, Hkv, D)
  tensor<float, 4> v({s.batch, s.k_len, s.kv_heads, s.head_dim});   // (B, Tk, Hkv, D)
  tensor<float, 4> out({s.batch, s.q_len, s.q_heads, s.head_dim});  // (B, Tq, Hq, D)
  op_test::fill_normal(q.view(), rng);
  op_test::fill_normal(k.view(), rng);
  op_test::fill_normal(v.view(), rng);
  ops::attention(op_test::two_threads, std::as_const(q).view(), std::as_const(k).view(), std::as_const(v).view(),
                 out.view(), options, map);
  check_attention(q.view(), k.view(), v.view(), out.view(), options, map);
}

}  // namespace

TEST_CASE("attention: prefill, decode and chunked shapes with both head mappings", "[ops][attention]") {
  const case_shape shapes[] = {
      {1, 1, 1, 1, 1, 4},    // single token
      {2, 9, 9, 4, 2, 16},   // prefill, Tq = Tk
      {2, 1, 13, 8, 4, 32},  // decode: one query at the end of the cache
      {1, 3, 7, 6, 3, 8},    // a chunk of 3 queries after 4 cached tokens
      {3, 5, 5, 2, 2, 5},    // odd head dimension, Hq = Hkv
  };
  std::uint32_t seed = 60;
  for (const auto& s : shapes) {
    ops::attention_options options;
    options.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    options.q_offset = s.k_len - s.q_len;
    run_case(s, options, ++seed, ops::kv_head_modulo{});
    run_case(s, options, ++seed, ops::kv_head_grouped{});
    options.causal = false;
    run_case(s, options, ++seed);
  }
}

TEST_CASE("attention: key mask, fully masked rows and queries before any key give zeros", "[ops][attention]") {
  const case_shape s{2, 4, 6, 4, 2, 8};
  tensor<std::uint8_t, 2> mask({2, 6});  // (B, Tk): batch 0 pads its first two keys, batch 1 sees nothing
  const std::uint8_t bits[2][6] = {{0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0}};
  for (index_t b = 0; b < 2; ++b)
    for (index_t j = 0; j < 6; ++j) mask(b, j) = bits[b][j];
  ops::attention_options options;
  options.scale = 0.35f;
  options.q_offset = 2;
  options.key_mask = std::as_const(mask).view();
  run_case(s, options, 71);

  // q_offset = −2: queries 0 and 1 come before every key, so causality hides all of them.
  ops::attention_options early;
  early.scale = 0.5f;
  early.q_offset = -2;
  run_case(s, early, 72);
}

TEST_CASE("attention reads K and V through strided cache views", "[ops][attention]") {
  // The KV cache stores (B, Hkv, Smax, D); attention sees (B, S, Hkv, D) via transpose + slice.
  const index_t batch = 2, kv_heads = 3, max_len = 16, used = 11, head_dim = 8, q_heads = 6, q_len = 2;
  std::mt19937 rng(80);
  tensor<float, 4> k_cache({batch, kv_heads, max_len, head_dim});  // (B, Hkv, Smax, D)
  tensor<float, 4> v_cache({batch, kv_heads, max_len, head_dim});  // (B, Hkv, Smax, D)
  op_test::fill_normal(k_cache.view(), rng);
  op_test::fill_normal(v_cache.view(), rng);
  const auto k = std::as_const(k_cache).view().transpose(1, 2).slice(1, 0, used);  // (B, S, Hkv, D)
  const auto v = std::as_const(v_cache).view().transpose(1, 2).slice(1, 0, used);  // (B, S, Hkv, D)
  // Queries strided too: a (B, Hq, Tq, D) buffer seen as (B, Tq, Hq, D).
  tensor<float, 4> q_buffer({batch, q_heads, q_len, head_dim});
  op_test::fill_normal(q_buffer.view(), rng);
  const auto q = std::as_const(q_buffer).view().transpose(1, 2);
  tensor<float, 4> out({batch, q_len, q_heads, head_dim});
  ops::attention_options options;
  options.scale = 1.0f / std::sqrt(8.0f);
  options.q_offset = used - q_len;
  ops::attention(op_test::two_threads, q, k, v, out.view(), options);
  check_attention(q, k, v, std::as_const(out).view(), options, ops::kv_head_modulo{});
}

TEST_CASE("attention with a key count attends over the first K keys of a whole cache", "[ops][attention]") {
  // A (B, C, Hkv, D) store of which K positions hold data; the queries are the last Tq of them.
  const index_t batch = 2, capacity = 12, kv_heads = 2, q_heads = 4, head_dim = 8;
  std::mt19937 rng(82);
  tensor<float, 4> k({batch, capacity, kv_heads, head_dim}), v({batch, capacity, kv_heads, head_dim});
  op_test::fill_normal(k.view(), rng);
  op_test::fill_normal(v.view(), rng);
  tensor<std::uint8_t, 2> mask = tensor<std::uint8_t, 2>::zeros({batch, capacity});  // (B, C)
  for (index_t j = 0; j < capacity; ++j) mask(0, j) = mask(1, j) = 1;
  mask(1, 0) = 0;  // row 1 left-padded by one position
  for (const index_t q_len : {1, 3}) {
    for (const std::int32_t count : {3, 7, 12}) {
      INFO("Tq = " << q_len << ", K = " << count);
      tensor<float, 4> q({batch, q_len, q_heads, head_dim}), out({batch, q_len, q_heads, head_dim});
      op_test::fill_normal(q.view(), rng);
      ops::attention_options options;
      options.scale = 0.3f;
      options.q_offset = 12345;  // ignored when a key count is given
      options.key_mask = std::as_const(mask).view();
      options.key_count = &count;
      ops::attention(op_test::two_threads, std::as_const(q).view(), std::as_const(k).view(), std::as_const(v).view(),
                     out.view(), options);
      // The reference sees only the first K keys, with the queries at K − Tq.
      ops::attention_options plain;
      plain.scale = options.scale;
      plain.q_offset = count - q_len;
      plain.key_mask = std::as_const(mask).view().slice(1, 0, count);
      check_attention(std::as_const(q).view(), std::as_const(k).view().slice(1, 0, count),
                      std::as_const(v).view().slice(1, 0, count), std::as_const(out).view(), plain,
                      ops::kv_head_modulo{});
    }
  }
  // A count outside [Tq, Tk] is an error, not a read past the cache.
  tensor<float, 4> q({batch, 2, q_heads, head_dim}), out({batch, 2, q_heads, head_dim});
  for (const std::int32_t bad : {1, 13}) {
    ops::attention_options options;
    options.key_count = &bad;
    REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q).view(), std::as_const(k).view(),
                                       std::as_const(v).view(), out.view(), options),
                        Catch::Contains("key_count " + std::to_string(bad)));
  }
}

TEST_CASE("attention gives the same bits for any thread count", "[ops][attention]") {
  std::mt19937 rng(81);
  // 40 positions: enough work that parallel_for really splits it over 2 and 3 threads.
  tensor<float, 4> q({2, 40, 4, 16}), k({2, 40, 2, 16}), v({2, 40, 2, 16});
  op_test::fill_normal(q.view(), rng);
  op_test::fill_normal(k.view(), rng);
  op_test::fill_normal(v.view(), rng);
  ops::attention_options options;
  options.scale = 0.25f;
  std::vector<std::vector<float>> results;
  for (const int threads : {1, 2, 3}) {
    tensor<float, 4> out({2, 40, 4, 16});
    ops::attention(exec::cpu{threads}, std::as_const(q).view(), std::as_const(k).view(), std::as_const(v).view(),
                   out.view(), options);
    results.emplace_back(out.data(), out.data() + out.size());
  }
  REQUIRE(results[0] == results[1]);
  REQUIRE(results[0] == results[2]);
}

TEST_CASE("attention rejects inconsistent shapes", "[ops][attention][errors]") {
  tensor<float, 4> q = tensor<float, 4>::zeros({1, 2, 3, 8});
  tensor<float, 4> k = tensor<float, 4>::zeros({1, 2, 2, 8});
  tensor<float, 4> out({1, 2, 3, 8});
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q).view(), std::as_const(k).view(),
                                     std::as_const(k).view(), out.view(), {}),
                      Catch::Contains("ops::attention") && Catch::Contains("not a multiple"));
  tensor<float, 4> q4 = tensor<float, 4>::zeros({1, 2, 4, 8});
  tensor<float, 4> k_wrong_d = tensor<float, 4>::zeros({1, 2, 2, 4});
  tensor<float, 4> out4({1, 2, 4, 8});
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q4).view(), std::as_const(k_wrong_d).view(),
                                     std::as_const(k_wrong_d).view(), out4.view(), {}),
                      Catch::Contains("ops::attention") && Catch::Contains("[1,2,2,4]") && Catch::Contains("[1,2,4,8]"));
  tensor<float, 4> k_ok = tensor<float, 4>::zeros({1, 2, 2, 8});
  tensor<float, 4> v_short = tensor<float, 4>::zeros({1, 1, 2, 8});
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q4).view(), std::as_const(k_ok).view(),
                                     std::as_const(v_short).view(), out4.view(), {}),
                      Catch::Contains("ops::attention") && Catch::Contains("[1,1,2,8]"));
  tensor<std::uint8_t, 2> mask = tensor<std::uint8_t, 2>::zeros({1, 3});
  ops::attention_options masked;
  masked.key_mask = std::as_const(mask).view();
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q4).view(), std::as_const(k_ok).view(),
                                     std::as_const(k_ok).view(), out4.view(), masked),
                      Catch::Contains("key_mask") && Catch::Contains("[1,2]") && Catch::Contains("[1,3]"));
  // A mask of the right shape but no data is reported, not dereferenced.
  ops::attention_options dangling;
  dangling.key_mask = tensor_view<const std::uint8_t, 2>(nullptr, make_dims(1, 2));
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q4).view(), std::as_const(k_ok).view(),
                                     std::as_const(k_ok).view(), out4.view(), dangling),
                      Catch::Contains("key_mask") && Catch::Contains("has no data"));
  // A head mapper that points outside the kv heads is caught, not read out of bounds.
  auto broken = [](int q_head, int, int) { return q_head; };
  REQUIRE_THROWS_WITH(ops::attention(op_test::two_threads, std::as_const(q4).view(), std::as_const(k_ok).view(),
                                     std::as_const(k_ok).view(), out4.view(), {}, broken),
                      Catch::Contains("maps to kv head 2"));
}
