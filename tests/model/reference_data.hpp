// tests/model/reference_data.hpp — paths and comparison helpers for the transformers fixtures.
#pragma once

#include <jetmoe/models/jetmoe.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace jetmoe_test {

// The folders are compiled in (this checkout's); the environment variables of the same names
// override them, for test binaries run from another place (scripts/gpu-bundle.sh's bundle).
inline std::filesystem::path folder_from(const char* variable, const char* built_in) {
  const char* set = std::getenv(variable);
  return std::filesystem::path(set != nullptr && *set != '\0' ? set : built_in);
}
inline std::filesystem::path data_dir(const std::string& fixture) {
  return folder_from("JETMOE_TEST_DATA_DIR", JETMOE_TEST_DATA_DIR) / fixture;
}
inline std::filesystem::path demo_model_dir() { return folder_from("JETMOE_DEMO_MODEL_DIR", JETMOE_DEMO_MODEL_DIR); }

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
