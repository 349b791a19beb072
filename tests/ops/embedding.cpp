// ops::embedding on the CPU. A lookup is a copy plus an exact widening, so outputs must equal
// float(table[id]) bit for bit.
#include <catch2/catch.hpp>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

TEMPLATE_TEST_CASE("embedding copies and widens table rows", "[ops][embedding]", float, bf16, half) {
  std::mt19937 rng(51);
  const index_t vocab = 37, width = 19;
  tensor<TestType, 2> table({vocab, width});  // (V, H)
  op_test::fill_normal(table.view(), rng);
  tensor<std::int64_t, 1> ids({6});           // (T): repeats, first and last rows
  const std::int64_t chosen[] = {0, 36, 5, 5, 17, 0};
  for (index_t t = 0; t < 6; ++t) ids(t) = chosen[t];
  tensor<float, 2> out({6, width});           // (T, H)
  ops::embedding(op_test::two_threads, std::as_const(table).view(), std::as_const(ids).view(), out.view());
  for (index_t t = 0; t < 6; ++t)
    for (index_t c = 0; c < width; ++c) REQUIRE(out(t, c) == to_float(table(chosen[t], c)));

  // Strided: the table as a column slice of a wider buffer, the output transposed.
  tensor<TestType, 2> wide({vocab, width + 4});
  op_test::fill_normal(wide.view(), rng);
  const auto narrow = std::as_const(wide).view().slice(1, 2, 2 + width);  // (V, H), row stride H + 4
  tensor<float, 2> out_t({width, 6});                                     // (H, T)
  ops::embedding(op_test::two_threads, narrow, std::as_const(ids).view(), out_t.view().transpose(0, 1));
  for (index_t t = 0; t < 6; ++t)
    for (index_t c = 0; c < width; ++c) REQUIRE(out_t(c, t) == to_float(narrow(chosen[t], c)));
}

TEST_CASE("embedding rejects an out-of-range id, naming it, before writing anything", "[ops][embedding][errors]") {
  tensor<bf16, 2> table = tensor<bf16, 2>::zeros({10, 4});
  tensor<std::int64_t, 1> ids({3});
  tensor<float, 2> out({3, 4});
  for (index_t i = 0; i < out.size(); ++i) out.data()[i] = 7.0f;

  ids(0) = 1, ids(1) = 2, ids(2) = 10;
  REQUIRE_THROWS_WITH(ops::embedding(op_test::two_threads, std::as_const(table).view(), std::as_const(ids).view(), out.view()),
                      Catch::Contains("id 10") && Catch::Contains("position 2"));
  ids(2) = 3, ids(1) = -1;
  REQUIRE_THROWS_WITH(ops::embedding(op_test::two_threads, std::as_const(table).view(), std::as_const(ids).view(), out.view()),
                      Catch::Contains("id -1") && Catch::Contains("position 1"));
  for (index_t i = 0; i < out.size(); ++i) REQUIRE(out.data()[i] == 7.0f);

  ids(1) = 0;
  tensor<float, 2> out_bad({3, 5});
  REQUIRE_THROWS_WITH(ops::embedding(op_test::two_threads, std::as_const(table).view(), std::as_const(ids).view(), out_bad.view()),
                      Catch::Contains("ops::embedding") && Catch::Contains("[3,4]") && Catch::Contains("[3,5]"));
}
