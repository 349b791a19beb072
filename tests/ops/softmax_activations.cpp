// ops::softmax, ops::silu and ops::glu on the CPU against double references.
//
// Tolerances:
//  * softmax: fp32 exp is within ~1 ulp, the row sum of N terms in fp32 is within N·u
//    relative (all terms positive), plus one division: (N + 4)·FLT_EPSILON relative.
//  * silu / glu: one exp, one add, one division (and one product for glu), each ≤ 1 ulp;
//    8·FLT_EPSILON relative, which also covers x·sigmoid(x) vs x/(1 + e^−x).
#include <catch2/catch.hpp>

#include <cfloat>
#include <limits>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {
double silu_reference(double x) { return x / (1.0 + std::exp(-x)); }
}  // namespace

TEST_CASE("softmax matches a double reference, rows sum to one", "[ops][softmax]") {
  std::mt19937 rng(31);
  for (const index_t rows : {1, 4, 9})
    for (const index_t width : {1, 2, 7, 100, 1000}) {
      tensor<float, 2> x({rows, width});  // (T, N)
      op_test::fill_normal(x.view(), rng, 4.0f);
      const tensor<float, 2> before = x.clone();
      ops::softmax(op_test::two_threads, x.view());
      for (index_t t = 0; t < rows; ++t) {
        double row_max = before(t, 0);
        for (index_t i = 1; i < width; ++i) row_max = std::max<double>(row_max, before(t, i));
        double sum = 0.0;
        for (index_t i = 0; i < width; ++i) sum += std::exp(before(t, i) - row_max);
        for (index_t i = 0; i < width; ++i) {
          const double expected = std::exp(before(t, i) - row_max) / sum;
          INFO("N=" << width << " at (" << t << "," << i << ")");
          REQUIRE(std::abs(x(t, i) - expected) <= static_cast<double>(width + 4) * FLT_EPSILON * expected);
        }
      }
    }
}

TEST_CASE("softmax does not overflow on large logits and gives -Inf zero weight", "[ops][softmax]") {
  tensor<float, 2> x({2, 3});
  x(0, 0) = 1000.0f, x(0, 1) = 1000.0f, x(0, 2) = -1000.0f;
  x(1, 0) = -std::numeric_limits<float>::infinity(), x(1, 1) = 0.0f, x(1, 2) = 88.0f;
  ops::softmax(op_test::two_threads, x.view());
  REQUIRE(x(0, 0) == 0.5f);
  REQUIRE(x(0, 1) == 0.5f);
  REQUIRE(x(0, 2) == 0.0f);
  REQUIRE(x(1, 0) == 0.0f);
  REQUIRE(x(1, 2) == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("softmax on a strided view leaves the gaps alone", "[ops][softmax]") {
  tensor<float, 2> buffer({5, 4});  // (N, T): softmax runs over columns via a transpose
  for (index_t i = 0; i < buffer.size(); ++i) buffer.data()[i] = static_cast<float>(i % 7) * 0.5f;
  const tensor<float, 2> before = buffer.clone();
  ops::softmax(op_test::two_threads, buffer.view().transpose(0, 1).slice(0, 1, 3));  // columns 1 and 2
  for (index_t c : {1, 2}) {
    double sum = 0.0;
    for (index_t r = 0; r < 5; ++r) sum += buffer(r, c);
    REQUIRE(sum == Approx(1.0).epsilon(1e-6));
  }
  for (index_t r = 0; r < 5; ++r) {
    REQUIRE(buffer(r, 0) == before(r, 0));
    REQUIRE(buffer(r, 3) == before(r, 3));
  }
}

TEST_CASE("silu matches x / (1 + e^-x), including the far tails", "[ops][activations]") {
  std::mt19937 rng(32);
  tensor<float, 2> x({3, 257});
  op_test::fill_normal(x.view(), rng, 5.0f);
  x(0, 0) = -200.0f;  // e^200 overflows in fp32: the limit −0 is expected
  x(0, 1) = 200.0f;
  x(0, 2) = 0.0f;
  const tensor<float, 2> before = x.clone();
  ops::silu(op_test::two_threads, x.view());
  for (index_t i = 0; i < x.size(); ++i) {
    const double expected = silu_reference(before.data()[i]);
    REQUIRE(std::isfinite(x.data()[i]));
    REQUIRE(std::abs(x.data()[i] - expected) <= 8.0 * FLT_EPSILON * std::abs(expected) + 1e-37);
  }
  REQUIRE(x(0, 1) == 200.0f);
}

TEST_CASE("glu gates the FIRST half: u = silu(h[:, :I]) * h[:, I:]", "[ops][activations]") {
  std::mt19937 rng(33);
  for (const index_t rows : {1, 6})
    for (const index_t inner : {1, 5, 64}) {
      tensor<float, 2> h({rows, 2 * inner});  // (T, 2I)
      tensor<float, 2> u({rows, inner});      // (T, I)
      op_test::fill_normal(h.view(), rng, 2.0f);
      ops::glu(op_test::two_threads, std::as_const(h).view(), u.view());
      for (index_t t = 0; t < rows; ++t)
        for (index_t i = 0; i < inner; ++i) {
          const double expected = silu_reference(h(t, i)) * h(t, inner + i);
          REQUIRE(std::abs(u(t, i) - expected) <= 8.0 * FLT_EPSILON * std::abs(expected) + 1e-37);
        }
    }
}

TEST_CASE("glu rejects an odd width and a mismatched output", "[ops][activations][errors]") {
  tensor<float, 2> odd({2, 5});
  tensor<float, 2> u({2, 2});
  REQUIRE_THROWS_WITH(ops::glu(op_test::two_threads, std::as_const(odd).view(), u.view()),
                      Catch::Contains("ops::glu") && Catch::Contains("[2,5]"));
  tensor<float, 2> h({2, 6});
  REQUIRE_THROWS_WITH(ops::glu(op_test::two_threads, std::as_const(h).view(), u.view()),
                      Catch::Contains("ops::glu") && Catch::Contains("[2,3]") && Catch::Contains("[2,2]"));
}
