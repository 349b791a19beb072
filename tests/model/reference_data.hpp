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

}  // namespace jetmoe_test
