// The CPU ops' branch-free widening (ops/cpu/widen.hpp) and the in-register widening loads of
// the SIMD kernels (ops/cpu/simd.hpp) must agree bit for bit with the reference conversions in
// core/dtype.hpp, for every 16-bit pattern.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include <jetmoe/ops/cpu/simd.hpp>
#include <jetmoe/ops/cpu/widen.hpp>

using namespace jetmoe;

namespace {
template <class T>
void check_all_patterns() {
  std::vector<T> source(65536);  // every pattern, in order
  for (std::uint32_t raw = 0; raw <= 0xFFFF; ++raw) source[raw] = T::from_bits(static_cast<std::uint16_t>(raw));
  std::vector<float> widened(source.size());
  ops::cpu_detail::widen(source.data(), widened.data(), static_cast<index_t>(source.size()));
#if defined(JETMOE_CPU_VECTORS)
  std::vector<float> loaded(source.size());  // one register's worth of patterns per load_widened
  for (std::size_t i = 0; i < source.size(); i += ops::cpu_detail::simd_traits::lanes) {
    ops::cpu_detail::panel_vector lanes;
    ops::cpu_detail::load_widened(source.data() + i, lanes);
    std::memcpy(&loaded[i], &lanes, sizeof lanes);
  }
  REQUIRE(std::memcmp(loaded.data(), widened.data(), widened.size() * sizeof(float)) == 0);
#endif
  int mismatches = 0;
  for (std::uint32_t raw = 0; raw <= 0xFFFF; ++raw) {
    const float expected = static_cast<float>(source[raw]);
    mismatches += std::memcmp(&expected, &widened[raw], sizeof(float)) != 0;
  }
  REQUIRE(mismatches == 0);
}
}  // namespace

TEST_CASE("bulk and in-register half widening match half → float for all 65536 patterns", "[ops][widen]") { check_all_patterns<half>(); }
TEST_CASE("bulk and in-register bf16 widening match bf16 → float for all 65536 patterns", "[ops][widen]") { check_all_patterns<bf16>(); }
