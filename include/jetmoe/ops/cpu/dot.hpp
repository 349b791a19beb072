// jetmoe/ops/cpu/dot.hpp — a dot product in a fixed summation order, for any build.
//
// 16 running lanes (lane j sums the products at k ≡ j mod 16, in k order), a fixed pairwise
// fold of the lanes, then the tail past the last multiple of 16 in k order. The order does not
// depend on pointer alignment or on the SIMD width, so every build and call site produces the
// same sums. simd.hpp's fold() applies fold_lanes to GCC/Clang vector types.
#pragma once

#include <Eigen/Core>

#include "jetmoe/core/view.hpp"

namespace jetmoe::ops::cpu_detail {

inline constexpr int dot_lanes = 16;
using dot_lane_array = Eigen::Array<float, dot_lanes, 1>;
using dot_lane_map = Eigen::Map<const dot_lane_array, Eigen::Unaligned>;

// Lanes j and j+8 are added, then j and j+4 of those eight, then (0 + 2) + (1 + 3).
inline float fold_lanes(const dot_lane_array& lane) {
  const Eigen::Array<float, 8, 1> eight = lane.head<8>() + lane.tail<8>();
  const Eigen::Array<float, 4, 1> four = eight.head<4>() + eight.tail<4>();
  return (four[0] + four[2]) + (four[1] + four[3]);
}

// Σ a[i]·b[i] for i < n.
inline float dot(const float* a, const float* b, index_t n) {
  dot_lane_array lane = dot_lane_array::Zero();
  index_t i = 0;
  for (; i + dot_lanes <= n; i += dot_lanes) lane += dot_lane_map(a + i) * dot_lane_map(b + i);
  float total = fold_lanes(lane);
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// {dot(w, x0, n), dot(w, x1, n)} with one pass over w (a third fewer loads than two dots),
// bit-identical to calling dot twice.
inline void dot_pair(const float* w, const float* x0, const float* x1, index_t n, float& out0, float& out1) {
  dot_lane_array lane0 = dot_lane_array::Zero(), lane1 = dot_lane_array::Zero();
  index_t i = 0;
  for (; i + dot_lanes <= n; i += dot_lanes) {
    const dot_lane_array wi = dot_lane_map(w + i);
    lane0 += wi * dot_lane_map(x0 + i);
    lane1 += wi * dot_lane_map(x1 + i);
  }
  float total0 = fold_lanes(lane0), total1 = fold_lanes(lane1);
  for (; i < n; ++i) {
    total0 += w[i] * x0[i];
    total1 += w[i] * x1[i];
  }
  out0 = total0;
  out1 = total1;
}

}  // namespace jetmoe::ops::cpu_detail
