// ops::rope on the CPU against a reference written from the formula in ops/rope.hpp.
//
// The angle is part of the definition (transformers computes inv_freq and p·inv_freq in fp32),
// so the reference forms the same fp32 angle and then evaluates cos, sin and the rotation in
// double. What remains is fp32 cos/sin (≤ 1 ulp in glibc) and one product and one sum:
// |error| ≤ 4·FLT_EPSILON·(|x_i| + |x_{i+D/2}|) is a safe bound.
#include <catch2/catch.hpp>

#include <cfloat>
#include <tuple>
#include <vector>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

namespace {

// before: (T, heads, D) copy of the input; after: the op's output.
void check_rope(tensor_view<const float, 3> before, tensor_view<const float, 3> after,
                tensor_view<const std::int64_t, 1> positions, float theta) {
  const index_t half_width = before.extent(2) / 2;
  for (index_t t = 0; t < before.extent(0); ++t)
    for (index_t i = 0; i < half_width; ++i) {
      const float inv_freq = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(2 * half_width));
      const float angle = static_cast<float>(positions(t)) * inv_freq;
      const double c = std::cos(static_cast<double>(angle)), s = std::sin(static_cast<double>(angle));
      for (index_t h = 0; h < before.extent(1); ++h) {
        const double a = before(t, h, i), b = before(t, h, i + half_width);
        const double tolerance = 4.0 * FLT_EPSILON * (std::abs(a) + std::abs(b)) + 1e-30;
        INFO("t=" << t << " head=" << h << " i=" << i << " position=" << positions(t));
        REQUIRE(std::abs(after(t, h, i) - (a * c - b * s)) <= tolerance);
        REQUIRE(std::abs(after(t, h, i + half_width) - (b * c + a * s)) <= tolerance);
      }
    }
}

}  // namespace

TEST_CASE("rope rotates each (i, i + D/2) pair by position · inv_freq_i", "[ops][rope]") {
  std::mt19937 rng(21);
  for (const float theta : {10000.0f, 500000.0f})
    for (const auto& [rows, heads, width] : {std::tuple<index_t, index_t, index_t>{1, 1, 2}, {3, 4, 8}, {7, 2, 128}}) {
      tensor<float, 3> x({rows, heads, width});  // (T, heads, D)
      tensor<std::int64_t, 1> positions({rows});  // (T): arbitrary, not monotonic, some large
      op_test::fill_normal(x.view(), rng);
      for (index_t t = 0; t < rows; ++t) positions(t) = (t * 977 + 5) % 4099;
      const tensor<float, 3> before = x.clone();
      ops::rope(op_test::two_threads, x.view(), std::as_const(positions).view(), theta);
      check_rope(before.view(), std::as_const(x).view(), std::as_const(positions).view(), theta);
    }
}

TEST_CASE("rope at position 0 is the identity", "[ops][rope]") {
  std::mt19937 rng(22);
  tensor<float, 3> x({1, 3, 16});
  op_test::fill_normal(x.view(), rng);
  const tensor<float, 3> before = x.clone();
  tensor<std::int64_t, 1> positions = tensor<std::int64_t, 1>::zeros({1});
  ops::rope(op_test::two_threads, x.view(), std::as_const(positions).view(), 10000.0f);
  for (index_t i = 0; i < x.size(); ++i) REQUIRE(x.data()[i] == before.data()[i]);
}

TEST_CASE("rope works on a strided view (a (heads, T, D) buffer seen as (T, heads, D))", "[ops][rope]") {
  std::mt19937 rng(23);
  const index_t rows = 5, heads = 3, width = 12;
  tensor<float, 3> buffer({heads, rows, width});  // (heads, T, D)
  op_test::fill_normal(buffer.view(), rng);
  const tensor<float, 3> before_buffer = buffer.clone();
  tensor<std::int64_t, 1> positions({rows});
  for (index_t t = 0; t < rows; ++t) positions(t) = 100 + t;
  ops::rope(op_test::two_threads, buffer.view().transpose(0, 1), std::as_const(positions).view(), 10000.0f);
  check_rope(before_buffer.view().transpose(0, 1), std::as_const(buffer).view().transpose(0, 1),
             std::as_const(positions).view(), 10000.0f);
}

TEST_CASE("rope rejects an odd head dimension and a wrong number of positions", "[ops][rope][errors]") {
  tensor<float, 3> odd({2, 1, 5});
  tensor<std::int64_t, 1> positions = tensor<std::int64_t, 1>::zeros({2});
  REQUIRE_THROWS_WITH(ops::rope(op_test::two_threads, odd.view(), std::as_const(positions).view(), 10000.0f),
                      Catch::Contains("ops::rope") && Catch::Contains("even"));
  tensor<float, 3> x({3, 1, 4});
  REQUIRE_THROWS_WITH(ops::rope(op_test::two_threads, x.view(), std::as_const(positions).view(), 10000.0f),
                      Catch::Contains("ops::rope") && Catch::Contains("[3]") && Catch::Contains("[2]"));
}
