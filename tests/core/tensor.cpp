// tensor: allocation, zeros, move semantics, clone, and the views it hands out.
#include <catch2/catch.hpp>

#include <type_traits>
#include <utility>

#include <jetmoe/core/tensor.hpp>

using namespace jetmoe;

TEST_CASE("zeros gives aligned, zero-filled memory of the right size", "[core][tensor]") {
  auto t = tensor<float, 2>::zeros({3, 5});  // (3, 5)
  REQUIRE(t.size() == 15);
  REQUIRE(t.bytes() == 15 * sizeof(float));
  REQUIRE(t.extents() == make_dims(3, 5));
  REQUIRE(reinterpret_cast<std::uintptr_t>(t.data()) % exec::cpu::alignment == 0);
  for (index_t i = 0; i < t.size(); ++i) REQUIRE(t.data()[i] == 0.0f);
  auto h = tensor<half, 1>::zeros({7});
  for (index_t i = 0; i < 7; ++i) REQUIRE(h(i).bits == 0);
}

TEST_CASE("tensors move, never copy", "[core][tensor]") {
  static_assert(!std::is_copy_constructible_v<tensor<float, 2>>);
  static_assert(!std::is_copy_assignable_v<tensor<float, 2>>);
  static_assert(std::is_nothrow_move_constructible_v<tensor<float, 2>>);
  static_assert(std::is_nothrow_move_assignable_v<tensor<float, 2>>);

  tensor<float, 2> a({2, 2});
  a(1, 1) = 4.0f;
  float* const memory = a.data();
  tensor<float, 2> b(std::move(a));
  REQUIRE(b.data() == memory);
  REQUIRE(b(1, 1) == 4.0f);
  REQUIRE(a.data() == nullptr);  // NOLINT: checking the moved-from state on purpose
  REQUIRE(a.size() == 0);

  tensor<float, 2> c({9, 9});
  c = std::move(b);
  REQUIRE(c.data() == memory);
  REQUIRE(c.extents() == make_dims(2, 2));
  REQUIRE(b.data() == nullptr);  // NOLINT

  c = std::move(c);  // self-move leaves it intact
  REQUIRE(c.data() == memory);
  REQUIRE(c(1, 1) == 4.0f);
}

TEST_CASE("clone copies deeply; views see the tensor's memory", "[core][tensor]") {
  tensor<std::int64_t, 1> a({4});
  for (index_t i = 0; i < 4; ++i) a(i) = i * 10;
  const tensor<std::int64_t, 1> b = a.clone();
  a(2) = -1;
  REQUIRE(b(2) == 20);
  REQUIRE(b.data() != a.data());

  tensor_view<std::int64_t, 1> writable = a;  // implicit, on purpose
  writable(3) = 7;
  REQUIRE(a(3) == 7);
  const tensor_view<const std::int64_t, 1> read_only = b;
  REQUIRE(read_only(1) == 10);
}

TEST_CASE("empty tensors own nothing; negative extents are rejected", "[core][tensor]") {
  tensor<float, 2> empty({0, 5});
  REQUIRE(empty.data() == nullptr);
  REQUIRE(empty.size() == 0);
  REQUIRE(empty.view().empty());
  const tensor<float, 1> defaulted;
  REQUIRE(defaulted.data() == nullptr);
  REQUIRE_THROWS_AS((tensor<float, 2>({2, -1})), jetmoe::error);
}

TEST_CASE("extents whose element or byte count overflows are rejected before allocating", "[core][tensor]") {
  // Read at run time, so the compiler does not warn about the allocations it cannot see fail.
  static volatile int shift = 32;
  const jetmoe::index_t big = jetmoe::index_t{1} << shift;
  // 2^32 · 2^32 wraps int64 to 0: without the check this would "succeed" with no memory.
  REQUIRE_THROWS_WITH((tensor<float, 2>({big, big})), Catch::Matchers::Contains("more elements than memory can address"));
  // 2^61 floats fit in int64 as a count but not as 2^63 bytes.
  REQUIRE_THROWS_AS((tensor<float, 1>({big << 29})), jetmoe::error);
  // A zero extent makes any other extent harmless.
  REQUIRE(tensor<float, 3>({0, big, big}).size() == 0);
  // Large but addressable: an allocation failure, still a jetmoe::error.
  REQUIRE_THROWS_WITH((tensor<float, 2>({big, big >> 12})), Catch::Matchers::Contains("out of host memory"));
}
