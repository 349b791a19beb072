// ops::linear on the CPU against a plain double-precision reference.
//
// Tolerance: the reference uses the very weights the op sees (bf16/half already rounded), so
// only fp32 accumulation error remains, for every weight type alike. Summing K products in
// fp32, in any order, is off by at most about K·u·Σ|x_k·w_k| (u = 2^-24, Higham's γ_K); we
// allow K·FLT_EPSILON·Σ|x_k·w_k| = 2K·u·Σ|x_k·w_k|, plus a tiny absolute floor.
#include <catch2/catch.hpp>

#include <array>
#include <cfloat>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {

// Checks y (T, out) against Σ_k x[t,k]·w[o,k] computed in double.
template <class W>
void check_against_reference(tensor_view<const float, 2> x, tensor_view<const W, 2> w, tensor_view<const float, 2> y) {
  const index_t in = x.extent(1);
  for (index_t t = 0; t < y.extent(0); ++t)
    for (index_t o = 0; o < y.extent(1); ++o) {
      double exact = 0.0, magnitude = 0.0;
      for (index_t k = 0; k < in; ++k) {
        const double term = static_cast<double>(x(t, k)) * op_test::as_stored(w(o, k));
        exact += term;
        magnitude += std::abs(term);
      }
      const double tolerance = static_cast<double>(in) * FLT_EPSILON * magnitude + 1e-30;
      INFO("T=" << y.extent(0) << " in=" << in << " out=" << y.extent(1) << " at (" << t << "," << o << ")");
      REQUIRE(std::abs(static_cast<double>(y(t, o)) - exact) <= tolerance);
    }
}

template <class W>
void run_shapes() {
  // T covers the few-rows path (with AVX-512 the register tiles, one instantiation per T ≤ 23,
  // 9…16 in two passes, 17…23 in three; with AVX2 the tiles for T ≤ 6; else the portable loop,
  // T ≤ 8) and the token-panel path: with AVX-512 one two-vector panel (24), a panel and a
  // few-rows remainder (33, 55: 32 + 23, 87: 64 + 23), a partial last panel (56: 32 + 24, 60)
  // and several panels (64); with AVX2 one-vector panels at 7 and 8, two-vector panels of 16
  // from 9 rows on (full at 16 and 64, a partial last one at 9…15, 23, 24, 55, 56, 60, 87) and
  // panels with a few-rows remainder of up to 6 rows at 17, 20, 21 and 33. The one-vector panel
  // at other T is called directly in the test of the other kernels below. Widths: in = 256 and
  // 257 put a k-chunk edge at the end and one past it, in = 513 a short last portable-loop
  // chunk and a 1-element tail past the 16 lanes, in = 7 only a tail; out = 29, 30, 37, 300
  // leave partial groups of output features for every vector width and row count.
  const index_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                15, 16, 17, 20, 21, 23, 24, 33, 55, 56, 60, 64, 87};
  const std::pair<index_t, index_t> widths[] = {{1, 1},    {7, 5},    {64, 300}, {513, 37},
                                                {1030, 19}, {256, 29}, {257, 30}};
  for (const std::uint32_t seed : {1u, 2u}) {
    std::mt19937 rng(seed);
    for (const index_t rows : row_counts)
      for (const auto& [in, out] : widths) {
        tensor<float, 2> x({rows, in});  // (T, in)
        tensor<W, 2> w({out, in});       // (out, in)
        tensor<float, 2> y({rows, out}); // (T, out)
        op_test::fill_normal(x.view(), rng);
        op_test::fill_normal(w.view(), rng, 0.05f);
        ops::linear(op_test::two_threads, x.view(), std::as_const(w).view(), y.view());
        check_against_reference<W>(x.view(), std::as_const(w).view(), y.view());
      }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("linear matches a double reference for float, bf16 and half weights", "[ops][linear]", float,
                   bf16, half) {
  run_shapes<TestType>();
}

TEMPLATE_TEST_CASE("linear reads strided views: rows of x, expert slices of w, columns of y", "[ops][linear]",
                   float, bf16, half) {
  std::mt19937 rng(7);
  for (const index_t rows : {1, 5, 20, 40, 60}) {  // AVX-512: few rows, then panels with and without a remainder
    const index_t in = 48, out = 70, experts = 3;
    tensor<float, 2> x_wide({rows, in + 11});           // (T, in + 11): x is its first `in` columns
    tensor<TestType, 3> w_all({experts, out, in});      // (E, out, in): we use expert 1
    tensor<float, 2> y_wide = tensor<float, 2>::zeros({rows, out + 5});  // (T, out + 5)
    op_test::fill_normal(x_wide.view(), rng);
    op_test::fill_normal(w_all.view(), rng, 0.1f);
    const auto x = tensor_view<const float, 2>(x_wide.view()).slice(1, 3, 3 + in);   // (T, in), row stride in + 11
    const auto w = std::as_const(w_all).view().template select<0>(1);                 // (out, in)
    const auto y = y_wide.view().slice(1, 2, 2 + out);                                 // (T, out), row stride out + 5
    ops::linear(op_test::two_threads, x, w, y);
    check_against_reference<TestType>(x, w, y);
    for (index_t t = 0; t < rows; ++t) {  // columns outside the slice stay untouched
      REQUIRE(y_wide(t, 0) == 0.0f);
      REQUIRE(y_wide(t, out + 4) == 0.0f);
    }
  }
}

TEMPLATE_TEST_CASE("linear gives bit-identical results for any thread count", "[ops][linear]", float, bf16, half) {
  std::mt19937 rng(11);
  // (T, in, out): the few-rows path in one pass and (AVX-512) two and three, a small panel call, and one big enough that both of its
  // loops (filling the panels, the tiles) really run on several threads.
  // (128 · 2100 multiply-adds per output feature pass the 2 · 2^17 that start a second thread.)
  const std::array<index_t, 3> shapes[] = {{3, 300, 530}, {12, 300, 530}, {20, 300, 530}, {40, 300, 530}, {128, 2100, 40}};
  for (const auto& [rows, in, out] : shapes) {
    tensor<float, 2> x({rows, in});
    tensor<TestType, 2> w({out, in});
    op_test::fill_normal(x.view(), rng);
    op_test::fill_normal(w.view(), rng, 0.05f);
    std::vector<std::vector<float>> results;
    for (const int threads : {1, 2, 3}) {
      tensor<float, 2> y({rows, out});
      ops::linear(exec::cpu{threads}, x.view(), std::as_const(w).view(), y.view());
      if (threads == 2) check_against_reference<TestType>(x.view(), std::as_const(w).view(), y.view());
      results.emplace_back(y.data(), y.data() + y.size());
    }
    REQUIRE(results[0] == results[1]);
    REQUIRE(results[0] == results[2]);
  }
}

TEMPLATE_TEST_CASE("linear: a row's result depends on where T puts it, not on the other rows", "[ops][linear]",
                   float, bf16, half) {
#if defined(JETMOE_CPU_VECTORS)
  // Both kernels sum every y[t, o] in one fixed order whatever tile or task it lands in: the
  // panels k in order, the few-rows tiles in dot.hpp's 16 lanes; a many-rows call puts its
  // last ragged_rows(T) rows in the few-rows tiles (AVX-512: 70 → 64 + 6, 40 → 32 + 8; AVX2:
  // 70 → 64 + 6, 40 all in panels). So a row in the panels of a 70-row call equals the same
  // row in the panels of a 40-row call on rows 5…44, and every row the few-rows tiles take
  // (the remainders, and each row of a call with as many rows as that path takes: 23 with
  // AVX-512, 6 with AVX2, else 8) equals a 1-row call.
  std::mt19937 rng(12);
  const index_t in = 333, out = 61;
  tensor<float, 2> x({70, in});
  tensor<TestType, 2> w({out, in});
  op_test::fill_normal(x.view(), rng);
  op_test::fill_normal(w.view(), rng, 0.05f);
  const auto x_rows = [&](index_t first, index_t last) { return tensor_view<const float, 2>(x.view()).slice(0, first, last); };
  const auto w_view = std::as_const(w).view();
  tensor<float, 2> y_one({1, out});  // (1, out)
  const auto check_one_row_calls = [&](const tensor<float, 2>& y, index_t first_x_row, index_t from) {
    for (index_t t = from; t < y.extent(0); ++t) {
      ops::linear(op_test::two_threads, x_rows(first_x_row + t, first_x_row + t + 1), w_view, y_one.view());
      for (index_t o = 0; o < out; ++o) REQUIRE(y_one(0, o) == y(t, o));
    }
  };
  tensor<float, 2> y_all({70, out}), y_part({40, out});  // (70, out), (40, out)
  ops::linear(op_test::two_threads, x.view(), w_view, y_all.view());
  ops::linear(op_test::two_threads, x_rows(5, 45), w_view, y_part.view());
  const index_t paneled_all = 70 - ops::cpu_detail::ragged_rows(70);
  const index_t paneled_part = 40 - ops::cpu_detail::ragged_rows(40);
  REQUIRE(paneled_part + 5 <= paneled_all);
  for (index_t t = 0; t < paneled_part; ++t)
    for (index_t o = 0; o < out; ++o) REQUIRE(y_part(t, o) == y_all(t + 5, o));
  check_one_row_calls(y_all, 0, paneled_all);
  check_one_row_calls(y_part, 5, paneled_part);

  const index_t few = ops::cpu_detail::few_rows_tuning::max_rows;
  tensor<float, 2> y_few({few, out});  // (few, out)
  ops::linear(op_test::two_threads, x_rows(0, few), w_view, y_few.view());
  check_one_row_calls(y_few, 0, 0);
#else
  SUCCEED("this compiler uses the Eigen fallbacks, whose blocking may depend on T");
#endif
}

TEMPLATE_TEST_CASE("linear's portable few-rows loop, Eigen tiles and token panels match the reference",
                   "[ops][linear]", float, bf16, half) {
  // The portable few-rows loop (T ≤ 8; ops::linear runs it in builds without AVX-512 or AVX2)
  // and the Eigen tiles (T > 8; only without vector extensions), called directly, so that a
  // vector build tests them too; and linear_many_rows at every T, which ops::linear only calls
  // from 24 rows on with AVX-512 and from 7 with AVX2 (its one-vector panels at T ≤ 16, or ≤ 8,
  // are still what the benchmarks compare the few-rows kernel with).
  std::mt19937 rng(13);
  for (const index_t rows : {1, 2, 7, 8, 9, 16, 40})
    for (const auto& [in, out] : {std::pair<index_t, index_t>{64, 300}, {513, 37}, {1030, 19}}) {
      tensor<float, 2> x({rows, in});
      tensor<TestType, 2> w({out, in});
      tensor<float, 2> y({rows, out});
      op_test::fill_normal(x.view(), rng);
      op_test::fill_normal(w.view(), rng, 0.05f);
      const tensor_view<const float, 2> x_view(x.view());
      if (rows <= 8)
        ops::cpu_detail::linear_few_rows_portable(op_test::two_threads, x_view, std::as_const(w).view(), y.view());
      else
        ops::cpu_detail::linear_eigen_tiles(op_test::two_threads, x_view, std::as_const(w).view(), y.view());
      check_against_reference<TestType>(x.view(), std::as_const(w).view(), y.view());
      ops::cpu_detail::linear_many_rows(op_test::two_threads, x_view, std::as_const(w).view(), y.view());
      check_against_reference<TestType>(x.view(), std::as_const(w).view(), y.view());
    }
}

TEST_CASE("linear with zero input features writes zeros; empty outputs are fine", "[ops][linear]") {
  tensor<float, 2> x({3, 0});
  tensor<float, 2> w({4, 0});
  tensor<float, 2> y({3, 4});
  for (index_t i = 0; i < y.size(); ++i) y.data()[i] = 9.0f;
  ops::linear(op_test::two_threads, x.view(), std::as_const(w).view(), y.view());
  for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);

  tensor<float, 2> x0({0, 5});
  tensor<bf16, 2> w0({4, 5});
  tensor<float, 2> y0({0, 4});
  REQUIRE_NOTHROW(ops::linear(op_test::two_threads, x0.view(), std::as_const(w0).view(), y0.view()));
}

TEST_CASE("linear rejects mismatched shapes with a message naming both", "[ops][linear][errors]") {
  tensor<float, 2> x({2, 8});
  tensor<bf16, 2> w({6, 7});
  tensor<float, 2> y({2, 6});
  REQUIRE_THROWS_WITH(ops::linear(op_test::two_threads, x.view(), std::as_const(w).view(), y.view()),
                      Catch::Contains("ops::linear") && Catch::Contains("[2,8]") && Catch::Contains("[6,7]"));

  tensor<float, 2> w_ok({6, 8});
  tensor<float, 2> y_bad({2, 5});
  REQUIRE_THROWS_WITH(ops::linear(op_test::two_threads, x.view(), std::as_const(w_ok).view(), y_bad.view()),
                      Catch::Contains("ops::linear") && Catch::Contains("[2,6]") && Catch::Contains("[2,5]"));

  // A transposed weight has non-contiguous rows: rejected, not silently misread.
  tensor<float, 2> w_t({8, 6});
  REQUIRE_THROWS_AS(
      ops::linear(op_test::two_threads, x.view(), std::as_const(w_t).view().transpose(0, 1), y.view()), jetmoe::error);

  // A stride-0 broadcast of one row would be read as dense rows past the buffer's end; an output
  // whose rows overlap would be written twice. Both are rejected, naming the operand.
  const tensor_view<const float, 2> broadcast(x.data(), make_dims(2, 8), make_dims(0, 1));  // (2, 8), one row
  REQUIRE_THROWS_WITH(ops::linear(op_test::two_threads, broadcast, std::as_const(w_ok).view(), y.view()),
                      Catch::Contains("ops::linear: x") && Catch::Contains("overlap"));
  const tensor_view<float, 2> overlapping(y.data(), make_dims(2, 6), make_dims(3, 1));  // (2, 6), rows 3 apart
  REQUIRE_THROWS_WITH(ops::linear(op_test::two_threads, x.view(), std::as_const(w_ok).view(), overlapping),
                      Catch::Contains("ops::linear: y") && Catch::Contains("overlap"));
  // One row may carry any stride (nothing follows it).
  tensor<float, 2> one_row({1, 8});
  tensor<float, 2> one_out({1, 6});
  const tensor_view<const float, 2> one_row_any_stride(one_row.data(), make_dims(1, 8), make_dims(0, 1));
  REQUIRE_NOTHROW(ops::linear(op_test::two_threads, one_row_any_stride, std::as_const(w_ok).view(), one_out.view()));
}
