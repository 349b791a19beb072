// ops::copy_to_positions on the CPU: the end position is read from memory, the window it names
// is overwritten and nothing else is touched. A copy is exact, so outputs are compared with ==.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include "op_test_support.hpp"

using namespace jetmoe;
using op_test::index_t;

TEST_CASE("copy_to_positions writes T positions ending at the position read from memory", "[ops][copy]") {
  const index_t batch = 2, capacity = 9, heads = 3, width = 4;
  std::mt19937 rng(90);
  for (const index_t count : {1, 4}) {
    for (const std::int32_t end : {static_cast<std::int32_t>(count), 6, 9}) {
      INFO("T = " << count << ", end = " << end);
      tensor<float, 4> src({batch, count, heads, width});      // (B, T, H, D)
      tensor<float, 4> dst({batch, capacity, heads, width});   // (B, C, H, D)
      op_test::fill_normal(src.view(), rng);
      op_test::fill_normal(dst.view(), rng);
      const tensor<float, 4> before = [&] {
        tensor<float, 4> copy({batch, capacity, heads, width});
        for (index_t i = 0; i < dst.size(); ++i) copy.data()[i] = dst.data()[i];
        return copy;
      }();
      ops::copy_to_positions(op_test::two_threads, std::as_const(src).view(), dst.view(), &end);
      for (index_t b = 0; b < batch; ++b)
        for (index_t p = 0; p < capacity; ++p)
          for (index_t h = 0; h < heads; ++h)
            for (index_t d = 0; d < width; ++d) {
              const bool written = end - count <= p && p < end;
              REQUIRE(dst(b, p, h, d) == (written ? src(b, p - (end - count), h, d) : before(b, p, h, d)));
            }
    }
  }
}

TEST_CASE("copy_to_positions through a KV cache's transposed view, and its errors", "[ops][copy][errors]") {
  // The cache stores (B, Hkv, C, D) and hands out (B, C, Hkv, D) views; rows are 4 floats.
  tensor<float, 4> store = tensor<float, 4>::zeros({1, 2, 5, 4});  // (B, Hkv, C, D)
  tensor<float, 4> src({1, 2, 2, 4});                              // (B, T, Hkv, D)
  for (index_t i = 0; i < src.size(); ++i) src.data()[i] = static_cast<float>(i + 1);
  const std::int32_t end = 3;
  ops::copy_to_positions(op_test::two_threads, std::as_const(src).view(), store.view().transpose(1, 2), &end);
  for (index_t h = 0; h < 2; ++h)
    for (index_t p = 0; p < 5; ++p)
      for (index_t d = 0; d < 4; ++d)
        REQUIRE(store(0, h, p, d) == (p == 1 || p == 2 ? src(0, p - 1, h, d) : 0.0f));

  for (const std::int32_t bad : {1, 6}) {  // before T, or past the capacity
    REQUIRE_THROWS_WITH(
        ops::copy_to_positions(op_test::two_threads, std::as_const(src).view(), store.view().transpose(1, 2), &bad),
        Catch::Contains("end position " + std::to_string(bad)));
  }
  tensor<float, 4> wrong_heads({1, 2, 3, 4});
  REQUIRE_THROWS_WITH(ops::copy_to_positions(op_test::two_threads, std::as_const(wrong_heads).view(),
                                             store.view().transpose(1, 2), &end),
                      Catch::Contains("differ outside dimension 1"));
}
