// ops::rms_norm on the CPU against a double reference.
//
// Tolerance: the op sums H squares in fp32 (relative error ≤ H·u, all terms positive), then
// does a division, a sqrt, a reciprocal and two products, each ≤ u more. Relative error per
// element is therefore below (H/2 + 6)·u; we allow (H + 8)·FLT_EPSILON·|ref| (FLT_EPSILON = 2u).
// The reference uses the weight as stored, so bf16/half weights need no extra slack.
#include <catch2/catch.hpp>

#include <cfloat>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {

template <class W>
void check_rms_norm(tensor_view<const float, 2> x, tensor_view<const W, 1> w, float eps, tensor_view<const float, 2> y) {
  const index_t width = x.extent(1);
  for (index_t t = 0; t < x.extent(0); ++t) {
    double sum_of_squares = 0.0;
    for (index_t i = 0; i < width; ++i) sum_of_squares += static_cast<double>(x(t, i)) * x(t, i);
    const double inverse_rms = 1.0 / std::sqrt(sum_of_squares / static_cast<double>(width) + eps);
    for (index_t i = 0; i < width; ++i) {
      const double expected = op_test::as_stored(w(i)) * static_cast<double>(x(t, i)) * inverse_rms;
      const double tolerance = static_cast<double>(width + 8) * FLT_EPSILON * std::abs(expected) + 1e-30;
      INFO("H=" << width << " at (" << t << "," << i << ")");
      REQUIRE(std::abs(static_cast<double>(y(t, i)) - expected) <= tolerance);
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("rms_norm matches a double reference", "[ops][rms_norm]", float, bf16, half) {
  for (const std::uint32_t seed : {3u, 4u}) {
    std::mt19937 rng(seed);
    for (const index_t rows : {1, 3, 17})
      for (const index_t width : {1, 5, 16, 33, 2048})
        for (const float eps : {1e-6f, 1e-5f}) {
          tensor<float, 2> x({rows, width});  // (T, H)
          tensor<TestType, 1> w({width});     // (H)
          tensor<float, 2> y({rows, width});  // (T, H)
          op_test::fill_normal(x.view(), rng, 3.0f);
          op_test::fill_normal(w.view(), rng);
          ops::rms_norm(op_test::two_threads, x.view(), std::as_const(w).view(), eps, y.view());
          check_rms_norm<TestType>(x.view(), std::as_const(w).view(), eps, y.view());
        }
  }
}

TEST_CASE("rms_norm in place gives the same bits as out of place", "[ops][rms_norm]") {
  std::mt19937 rng(5);
  tensor<float, 2> x({6, 100});
  tensor<bf16, 1> w({100});
  op_test::fill_normal(x.view(), rng);
  op_test::fill_normal(w.view(), rng);
  tensor<float, 2> y({6, 100});
  ops::rms_norm(op_test::two_threads, x.view(), std::as_const(w).view(), 1e-6f, y.view());
  ops::rms_norm(op_test::two_threads, x.view(), std::as_const(w).view(), 1e-6f, x.view());
  REQUIRE(std::vector<float>(x.data(), x.data() + x.size()) == std::vector<float>(y.data(), y.data() + y.size()));
}

TEST_CASE("rms_norm handles strided rows and a zero row", "[ops][rms_norm]") {
  std::mt19937 rng(6);
  tensor<float, 2> x_wide({4, 50});  // (T, 50): x is columns [10, 40)
  tensor<float, 1> w({30});
  op_test::fill_normal(x_wide.view(), rng);
  op_test::fill_normal(w.view(), rng);
  for (index_t i = 0; i < 50; ++i) x_wide(2, i) = 0.0f;  // an all-zero row normalises to zeros (eps keeps it finite)
  const auto x = tensor_view<const float, 2>(x_wide.view()).slice(1, 10, 40);  // (T, 30), row stride 50
  // y is the transpose of a (30, T) buffer: every element strided.
  tensor<float, 2> y_t({30, 4});
  ops::rms_norm(op_test::two_threads, x, std::as_const(w).view(), 1e-6f, y_t.view().transpose(0, 1));
  check_rms_norm<float>(x, std::as_const(w).view(), 1e-6f, tensor_view<const float, 2>(y_t.view()).transpose(0, 1));
  for (index_t i = 0; i < 30; ++i) REQUIRE(y_t(i, 2) == 0.0f);
}

TEST_CASE("rms_norm rejects mismatched shapes", "[ops][rms_norm][errors]") {
  tensor<float, 2> x({2, 8});
  tensor<float, 1> w({7});
  tensor<float, 2> y({2, 8});
  REQUIRE_THROWS_WITH(ops::rms_norm(op_test::two_threads, x.view(), std::as_const(w).view(), 1e-6f, y.view()),
                      Catch::Contains("ops::rms_norm") && Catch::Contains("[8]") && Catch::Contains("[7]"));
  tensor<float, 1> w_ok({8});
  tensor<float, 2> y_bad({3, 8});
  REQUIRE_THROWS_WITH(ops::rms_norm(op_test::two_threads, x.view(), std::as_const(w_ok).view(), 1e-6f, y_bad.view()),
                      Catch::Contains("ops::rms_norm") && Catch::Contains("[2,8]") && Catch::Contains("[3,8]"));
}
