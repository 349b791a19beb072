// tensor_view: offsets and strides of slice / select / transpose / reshape, contiguity, const
// conversion and the bounds checks.
#include <catch2/catch.hpp>

#include <type_traits>

#include <jetmoe/core/tensor.hpp>
#include <jetmoe/core/view.hpp>

using namespace jetmoe;

namespace {
// A (2, 3, 4) tensor holding 0, 1, …, 23, so an element's value is its row-major offset.
tensor<float, 3> counting_tensor() {
  tensor<float, 3> t({2, 3, 4});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(i);
  return t;
}
}  // namespace

TEST_CASE("a contiguous view has row-major strides", "[core][view]") {
  auto t = counting_tensor();
  const auto v = t.view();  // (2, 3, 4)
  REQUIRE(v.strides() == make_dims(12, 4, 1));
  REQUIRE(v.size() == 24);
  REQUIRE(v.is_contiguous());
  REQUIRE(v(1, 2, 3) == 23.0f);
  REQUIRE(&v(1, 0, 2) == t.data() + 14);
}

TEST_CASE("slice moves the pointer and shrinks one extent, keeping strides", "[core][view]") {
  auto t = counting_tensor();
  const auto middle = t.view().slice(1, 1, 3);  // (2, 2, 4)
  REQUIRE(middle.extents() == make_dims(2, 2, 4));
  REQUIRE(middle.strides() == make_dims(12, 4, 1));
  REQUIRE(middle.data() == t.data() + 4);
  REQUIRE(middle(1, 1, 2) == 12 + 8 + 2);
  REQUIRE_FALSE(middle.is_contiguous());  // rows of the middle dimension skip a block

  const auto outer = t.view().slice(0, 1, 2);  // (1, 3, 4): a whole outer block stays contiguous
  REQUIRE(outer.is_contiguous());
  REQUIRE(outer.data() == t.data() + 12);

  const auto empty = t.view().slice(2, 2, 2);
  REQUIRE(empty.empty());
  REQUIRE_THROWS_AS(t.view().slice(1, 2, 4), jetmoe::error);
  REQUIRE_THROWS_AS(t.view().slice(1, 2, 1), jetmoe::error);
  REQUIRE_THROWS_AS(t.view().slice(3, 0, 1), jetmoe::error);
}

TEST_CASE("select drops a dimension at an offset", "[core][view]") {
  auto t = counting_tensor();
  const auto second_row = t.view().select<1>(2);  // (2, 4)
  REQUIRE(second_row.extents() == make_dims(2, 4));
  REQUIRE(second_row.strides() == make_dims(12, 1));
  REQUIRE(second_row.data() == t.data() + 8);
  REQUIRE(second_row(1, 3) == 12 + 8 + 3);
  const auto first_block = t.view().select(1);  // (3, 4), default dimension 0
  REQUIRE(first_block.data() == t.data() + 12);
  REQUIRE(first_block.is_contiguous());
  const auto column = t.view().select<2>(1);  // (2, 3), stride 4 in the last dimension
  REQUIRE(column.strides() == make_dims(12, 4));
  REQUIRE(column(1, 2) == 12 + 8 + 1);
  REQUIRE_THROWS_AS(t.view().select<0>(2), jetmoe::error);
  REQUIRE_THROWS_AS(t.view().select<2>(-1), jetmoe::error);
}

TEST_CASE("transpose swaps extents and strides without copying", "[core][view]") {
  auto t = counting_tensor();
  const auto swapped = t.view().transpose(0, 2);  // (4, 3, 2)
  REQUIRE(swapped.extents() == make_dims(4, 3, 2));
  REQUIRE(swapped.strides() == make_dims(1, 4, 12));
  REQUIRE(swapped.data() == t.data());
  REQUIRE(swapped(3, 1, 1) == t(1, 1, 3));
  REQUIRE_FALSE(swapped.is_contiguous());
  REQUIRE(swapped.transpose(0, 2).is_contiguous());
  REQUIRE_THROWS_AS(t.view().transpose(0, 3), jetmoe::error);
}

TEST_CASE("reshape keeps the elements of a contiguous view and refuses the rest", "[core][view]") {
  auto t = counting_tensor();
  const auto flat = t.view().reshape(make_dims(6, 4));  // (6, 4)
  REQUIRE(flat.data() == t.data());
  REQUIRE(flat(5, 3) == 23.0f);
  REQUIRE(flat.strides() == make_dims(4, 1));
  REQUIRE(t.view().reshape(make_dims(24))(17) == 17.0f);
  REQUIRE_THROWS_WITH(t.view().reshape(make_dims(5, 5)), Catch::Contains("[2,3,4]") && Catch::Contains("[5,5]"));
  REQUIRE_THROWS_WITH(t.view().transpose(0, 1).reshape(make_dims(24)), Catch::Contains("not contiguous"));
  REQUIRE_THROWS_AS(t.view().slice(2, 0, 2).reshape(make_dims(12)), jetmoe::error);
}

TEST_CASE("size-1 dimensions do not break contiguity whatever their stride", "[core][view]") {
  float data[6] = {};
  const tensor_view<float, 3> v(data, make_dims(2, 1, 3), make_dims(3, 99, 1));
  REQUIRE(v.is_contiguous());
  REQUIRE(v.reshape(make_dims(6)).extent(0) == 6);
}

TEST_CASE("a view converts to a view of const, never back", "[core][view]") {
  static_assert(std::is_convertible_v<tensor_view<float, 2>, tensor_view<const float, 2>>);
  static_assert(!std::is_convertible_v<tensor_view<const float, 2>, tensor_view<float, 2>>);
  static_assert(!std::is_convertible_v<tensor_view<float, 2>, tensor_view<const float, 3>>);
  static_assert(std::is_trivially_copyable_v<tensor_view<const float, 4>>);
  auto t = counting_tensor();
  const tensor_view<const float, 3> read_only = t.view().slice(0, 1, 2);
  REQUIRE(read_only.data() == t.data() + 12);
  REQUIRE(read_only.strides() == make_dims(12, 4, 1));
  REQUIRE(read_only(0, 2, 1) == 21.0f);
}

TEST_CASE("make_view, reinterpret and check_shape", "[core][view]") {
  float data[6] = {0, 1, 2, 3, 4, 5};
  const auto v = make_view(data, 2, 3);  // (2, 3)
  REQUIRE(v(1, 0) == 3.0f);
  const auto raw = v.reinterpret<std::uint32_t>();
  REQUIRE(raw(0, 1) == 0x3F800000u);
  REQUIRE_NOTHROW(check_shape(v, make_dims(2, 3), "test"));
  REQUIRE_THROWS_WITH(check_shape(v, make_dims(3, 2), "my_op: x"),
                      Catch::Contains("my_op: x") && Catch::Contains("[3,2]") && Catch::Contains("[2,3]"));
}
