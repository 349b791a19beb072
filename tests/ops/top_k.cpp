// ops::top_k on the CPU against a plain stable sort. Selection is exact (no arithmetic), so
// values and indices must match the reference bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();

// Indices of row t sorted best first: numbers descending, then NaNs; ties keep index order
// because the sort is stable and starts from ascending indices.
std::vector<std::int32_t> reference_order(tensor_view<const float, 2> x, index_t t) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(x.extent(1)));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const float va = x(t, a), vb = x(t, b);
    if (std::isnan(va) || std::isnan(vb)) return !std::isnan(va) && std::isnan(vb);
    return va > vb;
  });
  return order;
}

void check_top_k(tensor_view<const float, 2> x, index_t k) {
  tensor<float, 2> values({x.extent(0), k});
  tensor<std::int32_t, 2> indices({x.extent(0), k});
  ops::top_k(op_test::two_threads, x, values.view(), indices.view());
  for (index_t t = 0; t < x.extent(0); ++t) {
    const auto order = reference_order(x, t);
    for (index_t s = 0; s < k; ++s) {
      INFO("N=" << x.extent(1) << " k=" << k << " row " << t << " slot " << s);
      REQUIRE(indices(t, s) == order[s]);
      const float expected = x(t, order[s]);
      if (std::isnan(expected))
        REQUIRE(std::isnan(values(t, s)));
      else
        REQUIRE(values(t, s) == expected);
    }
  }
}

}  // namespace

TEST_CASE("top_k agrees with a stable sort, on random rows with many ties", "[ops][top_k]") {
  std::mt19937 rng(41);
  std::uniform_int_distribution<int> few_values(-3, 3);  // lots of equal entries
  for (const index_t n : {1, 2, 8, 17, 64, 300})
    for (const index_t rows : {1, 5}) {
      tensor<float, 2> x({rows, n});
      for (index_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(few_values(rng)) * 0.25f;
      for (const index_t k : {index_t{1}, std::min<index_t>(n, 2), std::min<index_t>(n, 8), std::min<index_t>(n, 16),
                              std::min<index_t>(n, 17), std::min<index_t>(n, 40), n})
        check_top_k(std::as_const(x).view(), k);  // k ≤ 16 uses insertion, larger k partial_sort
    }
}

TEST_CASE("top_k ranks NaN below every number and treats -0 and +0 as equal", "[ops][top_k]") {
  const float inf = std::numeric_limits<float>::infinity();
  tensor<float, 2> x({3, 6});
  const float rows[3][6] = {{nan_value, 1.0f, -inf, nan_value, 2.0f, 1.0f},
                            {-0.0f, 0.0f, nan_value, -1.0f, -0.0f, nan_value},
                            {nan_value, nan_value, nan_value, -inf, nan_value, nan_value}};
  for (index_t t = 0; t < 3; ++t)
    for (index_t i = 0; i < 6; ++i) x(t, i) = rows[t][i];
  for (const index_t k : {1, 3, 4, 6}) check_top_k(std::as_const(x).view(), k);

  tensor<float, 2> values({3, 4});
  tensor<std::int32_t, 2> indices({3, 4});
  ops::top_k(op_test::two_threads, std::as_const(x).view(), values.view(), indices.view());
  REQUIRE((indices(0, 0) == 4 && indices(0, 1) == 1 && indices(0, 2) == 5 && indices(0, 3) == 2));
  REQUIRE((indices(1, 0) == 0 && indices(1, 1) == 1 && indices(1, 2) == 4 && indices(1, 3) == 3));
  REQUIRE((indices(2, 0) == 3 && indices(2, 1) == 0 && indices(2, 2) == 1 && indices(2, 3) == 2));
}

TEST_CASE("top_k reads a strided input", "[ops][top_k]") {
  std::mt19937 rng(42);
  tensor<float, 2> buffer({12, 3});  // (N, T): top_k over columns through a transpose
  op_test::fill_normal(buffer.view(), rng);
  check_top_k(std::as_const(buffer).view().transpose(0, 1), 4);
  check_top_k(std::as_const(buffer).view().transpose(0, 1), 12);
}

TEST_CASE("top_k rejects k outside [1, N] and mismatched outputs", "[ops][top_k][errors]") {
  tensor<float, 2> x = tensor<float, 2>::zeros({2, 4});
  tensor<float, 2> values({2, 5});
  tensor<std::int32_t, 2> indices({2, 5});
  REQUIRE_THROWS_WITH(ops::top_k(op_test::two_threads, std::as_const(x).view(), values.view(), indices.view()),
                      Catch::Contains("top_k: k = 5 > N = 4"));
  tensor<float, 2> no_values({2, 0});
  tensor<std::int32_t, 2> no_indices({2, 0});
  REQUIRE_THROWS_WITH(ops::top_k(op_test::two_threads, std::as_const(x).view(), no_values.view(), no_indices.view()),
                      Catch::Contains("k = 0"));
  tensor<float, 2> values_ok({2, 2});
  tensor<std::int32_t, 2> indices_bad({2, 3});
  REQUIRE_THROWS_WITH(ops::top_k(op_test::two_threads, std::as_const(x).view(), values_ok.view(), indices_bad.view()),
                      Catch::Contains("ops::top_k") && Catch::Contains("[2,2]") && Catch::Contains("[2,3]"));
  tensor<float, 2> values_rows({3, 2});
  tensor<std::int32_t, 2> indices_rows({3, 2});
  REQUIRE_THROWS_AS(ops::top_k(op_test::two_threads, std::as_const(x).view(), values_rows.view(), indices_rows.view()),
                    jetmoe::error);
}
