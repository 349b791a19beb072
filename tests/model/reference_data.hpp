// tests/model/reference_data.hpp — paths and comparison helpers for the transformers fixtures.
#pragma once

#include <jetmoe/models/jetmoe.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

namespace jetmoe_test {

inline std::filesystem::path data_dir(const std::string& fixture) { return std::filesystem::path(JETMOE_TEST_DATA_DIR) / fixture; }
inline std::filesystem::path demo_model_dir() { return std::filesystem::path(JETMOE_DEMO_MODEL_DIR); }

// Largest |a − b| over two views of the same number of elements (both contiguous).
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (jetmoe::index_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return worst;
}

// Largest |x| of a view, to express tolerances relative to the scale of the values.
template <class A>
double max_abs(const A& a) {
  double worst = 0.0;
  for (jetmoe::index_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a.data()[i])));
  return worst;
}

// The fp32 parity bound against transformers (fp32 weights and compute on both sides): the two
// sum in different orders, a few ulps per dot product, which through a few layers with norms
// stays far below 1e-4 of the values' scale. CHECKs |got − want| ≤ 1e-4 · max(1, |want|max).
inline constexpr double fp32_tolerance = 1e-4;

template <class A, class B>
void require_close(const A& got, const B& want, const std::string& what) {
  const double diff = max_abs_diff(got, want);
  const double scale = std::max(1.0, max_abs(want));
  INFO(what << ": max |diff| = " << diff << ", scale " << scale);
  CHECK(diff <= fp32_tolerance * scale);
}

}  // namespace jetmoe_test
