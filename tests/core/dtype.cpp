// bf16 and half conversions: round to nearest even, signed zeros, infinities, NaN, overflow,
// half subnormals, and exhaustive round trips over every 16-bit pattern.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

#include <jetmoe/core/dtype.hpp>

using jetmoe::bf16;
using jetmoe::half;

namespace {

float from_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
std::uint16_t bf16_bits(float value) { return bf16(value).bits; }
std::uint16_t half_bits(float value) { return half(value).bits; }

const float inf = std::numeric_limits<float>::infinity();
const float nan_value = std::numeric_limits<float>::quiet_NaN();

// An independent reference for float → half: the nearest of the two bracketing halves found
// by bisection over the (monotonic) positive bit patterns, ties to the even pattern, and
// overflow to Inf from 65520 = 65504 + half an ulp.
std::uint16_t reference_half(float value) {
  const std::uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const double magnitude = std::abs(static_cast<double>(value));
  if (magnitude >= 65520.0) return sign | 0x7C00;
  std::uint16_t low = 0, high = 0x7BFF;  // largest finite
  if (magnitude >= static_cast<float>(half::from_bits(high))) return sign | high;
  while (high - low > 1) {  // invariant: float(low) ≤ magnitude < float(high)
    const auto middle = static_cast<std::uint16_t>((low + high) / 2);
    if (static_cast<float>(half::from_bits(middle)) <= magnitude) low = middle; else high = middle;
  }
  const double below = magnitude - static_cast<float>(half::from_bits(low));
  const double above = static_cast<float>(half::from_bits(high)) - magnitude;
  if (below < above) return sign | low;
  if (above < below) return sign | high;
  return sign | ((low & 1) ? high : low);
}

// float → bf16 reference in double: the two bf16 neighbours are the float truncated to 16 bits
// and the next pattern up; choose the nearer, ties to even.
std::uint16_t reference_bf16(float value) {
  const std::uint32_t bits = bits_of(value);
  const auto truncated = static_cast<std::uint16_t>(bits >> 16);
  const double low = from_bits(std::uint32_t{truncated} << 16);
  const double high_candidate = from_bits(std::uint32_t(truncated + 1) << 16);  // may be ±Inf
  const double exact = value;
  const double below = std::abs(exact - low);
  // Past the largest finite bf16 the "next" value is Inf; round as if it were 2^128.
  const double high = std::isinf(high_candidate) ? std::copysign(std::ldexp(1.0, 128), exact) : high_candidate;
  const double above = std::abs(high - exact);
  if (below < above) return truncated;
  if (above < below) return static_cast<std::uint16_t>(truncated + 1);
  return (truncated & 1) ? static_cast<std::uint16_t>(truncated + 1) : truncated;
}

}  // namespace

TEST_CASE("bf16 rounds to nearest, ties to even", "[core][dtype][bf16]") {
  REQUIRE(bf16_bits(1.0f) == 0x3F80);
  REQUIRE(bf16_bits(from_bits(0x3F808000)) == 0x3F80);  // exact tie, even neighbour below
  REQUIRE(bf16_bits(from_bits(0x3F818000)) == 0x3F82);  // exact tie, odd below: round up to even
  REQUIRE(bf16_bits(from_bits(0x3F808001)) == 0x3F81);  // just above the tie
  REQUIRE(bf16_bits(from_bits(0x3F807FFF)) == 0x3F80);  // just below the tie
  REQUIRE(bf16_bits(from_bits(0xBF818000)) == 0xBF82);  // negative ties mirror positive ones
  REQUIRE(bf16_bits(from_bits(0x00008000)) == 0x0000);  // a subnormal tie rounds to +0
  REQUIRE(bf16_bits(from_bits(0x00018000)) == 0x0002);
}

TEST_CASE("bf16 keeps signed zeros and infinities, overflows to Inf, keeps NaN a NaN", "[core][dtype][bf16]") {
  REQUIRE(bf16_bits(0.0f) == 0x0000);
  REQUIRE(bf16_bits(-0.0f) == 0x8000);
  REQUIRE(bf16_bits(inf) == 0x7F80);
  REQUIRE(bf16_bits(-inf) == 0xFF80);
  REQUIRE(bf16_bits(from_bits(0x7F7F8000)) == 0x7F80);  // tie above the largest finite: to Inf (even)
  REQUIRE(bf16_bits(from_bits(0x7F7F7FFF)) == 0x7F7F);  // stays the largest finite
  REQUIRE(bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);
  REQUIRE(bf16_bits(-std::numeric_limits<float>::max()) == 0xFF80);
  REQUIRE(std::isnan(static_cast<float>(bf16(nan_value))));
  REQUIRE(std::isnan(static_cast<float>(bf16(-nan_value))));
  // Payload only in the low 16 bits: plain truncation would give Inf; the quiet bit saves it.
  REQUIRE(std::isnan(static_cast<float>(bf16(from_bits(0x7F800001)))));
  REQUIRE(std::isnan(static_cast<float>(bf16(from_bits(0xFF800001)))));
  REQUIRE(static_cast<float>(bf16::from_bits(0x8000)) == 0.0f);
  REQUIRE(std::signbit(static_cast<float>(bf16::from_bits(0x8000))));
}

TEST_CASE("half rounds to nearest, ties to even", "[core][dtype][half]") {
  REQUIRE(half_bits(1.0f) == 0x3C00);
  REQUIRE(half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie between 1 and 1 + 2^-10: even is 1
  REQUIRE(half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie between odd 0x3C01 and even 0x3C02
  REQUIRE(half_bits(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3C01);
  REQUIRE(half_bits(-(1.0f + 3 * std::ldexp(1.0f, -11))) == 0xBC02);
  REQUIRE(half_bits(2048.0f + 1.0f) == 0x6800);  // 2049 ties between 2048 and 2050: 2048 is even
  REQUIRE(half_bits(2048.0f + 3.0f) == 0x6802);  // 2051 ties between 2050 (odd) and 2052 (even)
}

TEST_CASE("half keeps signed zeros and infinities, overflows to Inf, keeps NaN a NaN", "[core][dtype][half]") {
  REQUIRE(half_bits(0.0f) == 0x0000);
  REQUIRE(half_bits(-0.0f) == 0x8000);
  REQUIRE(half_bits(inf) == 0x7C00);
  REQUIRE(half_bits(-inf) == 0xFC00);
  REQUIRE(half_bits(65504.0f) == 0x7BFF);
  REQUIRE(half_bits(65519.0f) == 0x7BFF);  // below the halfway point to 65536: largest finite
  REQUIRE(half_bits(65520.0f) == 0x7C00);  // the halfway point: to Inf (the even neighbour)
  REQUIRE(half_bits(-65520.0f) == 0xFC00);
  REQUIRE(half_bits(1e10f) == 0x7C00);
  REQUIRE(std::isnan(static_cast<float>(half(nan_value))));
  REQUIRE(std::isnan(static_cast<float>(half(-nan_value))));
  REQUIRE(std::isnan(static_cast<float>(half(from_bits(0x7F800001)))));  // payload below half's mantissa
  REQUIRE(static_cast<float>(half::from_bits(0x7C00)) == inf);
  REQUIRE(static_cast<float>(half::from_bits(0xFC00)) == -inf);
}

TEST_CASE("half subnormals round to the 2^-24 grid", "[core][dtype][half]") {
  const float tiny = std::ldexp(1.0f, -24);  // smallest subnormal half
  REQUIRE(half_bits(tiny) == 0x0001);
  REQUIRE(static_cast<float>(half::from_bits(0x0001)) == tiny);
  REQUIRE(half_bits(std::ldexp(1.0f, -25)) == 0x0000);       // tie between 0 and 2^-24: to 0
  REQUIRE(half_bits(-std::ldexp(1.0f, -25)) == 0x8000);      // ... keeping the sign
  REQUIRE(half_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  REQUIRE(half_bits(3 * std::ldexp(1.0f, -26)) == 0x0001);   // 0.75 · 2^-24 rounds up
  REQUIRE(half_bits(3 * std::ldexp(1.0f, -25)) == 0x0002);   // 1.5 · 2^-24 ties to even 2
  REQUIRE(half_bits(5 * std::ldexp(1.0f, -25)) == 0x0002);   // 2.5 · 2^-24 ties to even 2
  REQUIRE(half_bits(1023 * tiny) == 0x03FF);                  // largest subnormal
  REQUIRE(half_bits(1023.5f * tiny) == 0x0400);               // tie with the smallest normal, which is even
  REQUIRE(half_bits(std::ldexp(1.0f, -14)) == 0x0400);        // smallest normal
  REQUIRE(half_bits(std::ldexp(1.0f, -40)) == 0x0000);
  REQUIRE(half_bits(-tiny) == 0x8001);
  REQUIRE(static_cast<float>(half::from_bits(0x83FF)) == -1023 * tiny);
}

TEST_CASE("every half and bf16 pattern survives widen then narrow", "[core][dtype]") {
  int half_mismatches = 0, bf16_mismatches = 0;
  for (std::uint32_t raw = 0; raw <= 0xFFFF; ++raw) {
    const auto bits = static_cast<std::uint16_t>(raw);
    const float h = static_cast<float>(half::from_bits(bits));
    if (std::isnan(h)) {
      half_mismatches += !std::isnan(static_cast<float>(half(h)));
    } else {
      half_mismatches += half(h).bits != bits;
    }
    const float b = static_cast<float>(bf16::from_bits(bits));
    if (std::isnan(b)) {
      bf16_mismatches += !std::isnan(static_cast<float>(bf16(b)));
    } else {
      bf16_mismatches += bf16(b).bits != bits;
    }
  }
  REQUIRE(half_mismatches == 0);
  REQUIRE(bf16_mismatches == 0);
}

TEST_CASE("narrowing agrees with an independent reference on random and near-tie floats", "[core][dtype]") {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  int half_mismatches = 0, bf16_mismatches = 0;
  auto check = [&](float value) {
    if (std::isnan(value)) return;
    half_mismatches += half(value).bits != reference_half(value);
    bf16_mismatches += bf16(value).bits != reference_bf16(value);
  };
  for (int n = 0; n < 200000; ++n) {
    check(from_bits(any_bits(rng)));                                    // every exponent
    check(std::ldexp(static_cast<float>(any_bits(rng) >> 8), -38 + n % 60));  // half's range, subnormals included
  }
  // Exact ties and their neighbours: the midpoint between consecutive halves, and between
  // consecutive bf16 values, for every positive finite pattern.
  for (std::uint32_t raw = 0; raw < 0x7BFF; ++raw) {
    const double low = static_cast<float>(half::from_bits(static_cast<std::uint16_t>(raw)));
    const double high = static_cast<float>(half::from_bits(static_cast<std::uint16_t>(raw + 1)));
    const auto middle = static_cast<float>((low + high) / 2);  // exact: needs at most 12 significant bits
    check(middle);
    check(std::nextafter(middle, 0.0f));
    check(std::nextafter(middle, inf));
    check(-middle);
  }
  for (std::uint32_t raw = 0; raw < 0x7F7F; ++raw) {
    const float middle = from_bits((raw << 16) | 0x8000u);
    check(middle);
    check(std::nextafter(middle, 0.0f));
    check(std::nextafter(middle, inf));
    check(-middle);
  }
  REQUIRE(half_mismatches == 0);
  REQUIRE(bf16_mismatches == 0);
}
