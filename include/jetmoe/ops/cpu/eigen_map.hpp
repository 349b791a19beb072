// jetmoe/ops/cpu/eigen_map.hpp — Eigen::Map over row-major float matrix views.
//
// Views keep each row contiguous but may space rows apart (a slice of a wider buffer), which
// Eigen expresses as a row-major Map with an OuterStride.
#pragma once

#include <Eigen/Core>

#include <algorithm>

#include "jetmoe/core/view.hpp"

namespace jetmoe::ops::cpu_detail {

using row_major_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_map = Eigen::Map<row_major_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using const_matrix_map = Eigen::Map<const row_major_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

// A single-row view may carry any row stride; Eigen only wants one at least the row length.
template <class T>
Eigen::OuterStride<> row_stride_of(const tensor_view<T, 2>& v) {
  return Eigen::OuterStride<>(std::max(v.stride(0), v.extent(1)));
}

inline const_matrix_map map_matrix(const tensor_view<const float, 2>& v) {
  return {v.data(), v.extent(0), v.extent(1), row_stride_of(v)};
}
inline matrix_map map_matrix(const tensor_view<float, 2>& v) {
  return {v.data(), v.extent(0), v.extent(1), row_stride_of(v)};
}

}  // namespace jetmoe::ops::cpu_detail
