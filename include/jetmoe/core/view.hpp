// jetmoe/core/view.hpp — tensor_view: a non-owning pointer + extents + strides.
//
// A view is trivially copyable, so it can be passed by value to CUDA kernels. It never owns or
// frees memory; `jetmoe::tensor` (core/tensor.hpp) does that. Strides are in elements, so a
// view can describe a slice, a transpose or a column of a larger tensor without a copy.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/shape.hpp"

namespace jetmoe {

template <class T, std::size_t Rank>
class tensor_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  static constexpr std::size_t rank = Rank;

  tensor_view() = default;
  JETMOE_HD tensor_view(T* data, const dims<Rank>& extents, const dims<Rank>& strides)
      : data_(data), extents_(extents), strides_(strides) {}
  // Contiguous row-major view.
  JETMOE_HD tensor_view(T* data, const dims<Rank>& extents)
      : data_(data), extents_(extents), strides_(row_major_strides(extents)) {}

  // A view of T converts to a view of const T, never the other way.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  JETMOE_HD tensor_view(const tensor_view<U, Rank>& other)  // NOLINT: implicit on purpose
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  JETMOE_HD T* data() const { return data_; }
  JETMOE_HD const dims<Rank>& extents() const { return extents_; }
  JETMOE_HD const dims<Rank>& strides() const { return strides_; }
  JETMOE_HD index_t extent(std::size_t d) const { return extents_[d]; }
  JETMOE_HD index_t stride(std::size_t d) const { return strides_[d]; }
  JETMOE_HD index_t size() const { return extents_.product(); }
  JETMOE_HD bool empty() const { return size() == 0; }

  JETMOE_HD bool is_contiguous() const {
    index_t expected = 1;
    for (std::size_t d = Rank; d-- > 0;) {
      if (extents_[d] != 1 && strides_[d] != expected) return false;
      expected *= extents_[d];
    }
    return true;
  }

  template <class... I>
  JETMOE_HD T& operator()(I... index) const {
    static_assert(sizeof...(I) == Rank, "jetmoe::tensor_view: the number of indices must equal the view's rank");
    const index_t idx[] = {static_cast<index_t>(index)...};
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset += idx[d] * strides_[d];
    return data_[offset];
  }

  // The sub-range [begin, end) of dimension `dim`; same rank.
  tensor_view slice(std::size_t dim, index_t begin, index_t end) const {
    check(dim < Rank, "tensor_view::slice: dimension ", dim, " out of range for rank ", Rank);
    check(0 <= begin && begin <= end && end <= extents_[dim], "tensor_view::slice: range [", begin, ",", end,
          ") out of bounds for extent ", extents_[dim], " of dimension ", dim);
    tensor_view out = *this;
    out.data_ = data_ + begin * strides_[dim];
    out.extents_[dim] = end - begin;
    return out;
  }

  // Fixes dimension `Dim` at `index`, dropping it: rank − 1.
  template <std::size_t Dim = 0>
  tensor_view<T, Rank - 1> select(index_t index) const {
    static_assert(Rank >= 2, "jetmoe::tensor_view::select: a rank-1 view has no sub-view; index it with operator()");
    static_assert(Dim < Rank, "jetmoe::tensor_view::select: dimension out of range");
    check(0 <= index && index < extents_[Dim], "tensor_view::select: index ", index, " out of bounds for extent ",
          extents_[Dim]);
    dims<Rank - 1> e, s;
    for (std::size_t d = 0, o = 0; d < Rank; ++d) {
      if (d == Dim) continue;
      e[o] = extents_[d];
      s[o++] = strides_[d];
    }
    return {data_ + index * strides_[Dim], e, s};
  }

  // Same elements, new extents. Only a contiguous view can be reshaped (no hidden copy).
  template <std::size_t NewRank>
  tensor_view<T, NewRank> reshape(const dims<NewRank>& new_extents) const {
    check(is_contiguous(), "tensor_view::reshape: the view is not contiguous (extents ", extents_, ", strides ",
          strides_, ")");
    check(new_extents.product() == size(), "tensor_view::reshape: ", extents_, " has ", size(),
          " elements, cannot become ", new_extents);
    return {data_, new_extents};
  }

  // Swaps two dimensions (no copy; the result is strided).
  tensor_view transpose(std::size_t d0, std::size_t d1) const {
    check(d0 < Rank && d1 < Rank, "tensor_view::transpose: dimensions ", d0, ",", d1, " out of range for rank ", Rank);
    tensor_view out = *this;
    std::swap(out.extents_[d0], out.extents_[d1]);
    std::swap(out.strides_[d0], out.strides_[d1]);
    return out;
  }

  // The same bytes seen as another element type of the same size (e.g. bf16 ↔ uint16_t).
  template <class U>
  tensor_view<U, Rank> reinterpret() const {
    static_assert(sizeof(U) == sizeof(T), "jetmoe::tensor_view::reinterpret: element sizes must match");
    return {reinterpret_cast<U*>(data_), extents_, strides_};
  }

 private:
  T* data_ = nullptr;
  dims<Rank> extents_{};
  dims<Rank> strides_{};
};

static_assert(std::is_trivially_copyable_v<tensor_view<float, 3>>, "views must be passable to kernels by value");

template <class T> using vector_view = tensor_view<T, 1>;
template <class T> using matrix_view = tensor_view<T, 2>;

// Contiguous view over a pointer: make_view(ptr, rows, cols).
template <class T, class... I>
tensor_view<T, sizeof...(I)> make_view(T* data, I... extents) {
  return {data, make_dims(extents...)};
}

// Shape check used at every op boundary: throws with both shapes in the message.
template <class T, std::size_t Rank>
void check_shape(const tensor_view<T, Rank>& v, const dims<Rank>& expected, const char* what) {
  check(v.extents() == expected, what, ": expected shape ", expected, ", got ", v.extents());
}

// Rejects rows that overlap: along dimension `dim`, consecutive rows (the last dimension, which
// must be contiguous) closer than their length, as a stride-0 broadcast makes them. Matrix
// kernels on every backend take a row stride at least the row length, so such a view would be
// read as if it were dense, out of its bounds; a single row may carry any stride.
template <class T, std::size_t Rank>
void check_rows_disjoint(const tensor_view<T, Rank>& v, std::size_t dim, const char* what) {
  static_assert(Rank >= 2, "jetmoe::check_rows_disjoint: needs a dimension of rows and one of elements");
  const index_t length = v.extent(Rank - 1);
  check(v.extent(dim) <= 1 || length == 0 || v.stride(dim) >= length, what, ": rows ", v.stride(dim),
        " elements apart overlap their length ", length, " (extents ", v.extents(), ", strides ", v.strides(),
        "); copy the view into a contiguous tensor");
}

}  // namespace jetmoe
