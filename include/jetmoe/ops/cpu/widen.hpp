// jetmoe/ops/cpu/widen.hpp — bulk widening of float/bf16/half runs to float, for the CPU ops.
//
// The scalar conversions in core/dtype.hpp branch on the exponent, which stops the compiler
// from vectorising a loop over them. These versions compute every case and select, so a loop
// over a row compiles to SIMD code. The results are bit-identical to core/dtype.hpp's
// (tests/core checks all 65536 patterns).
#pragma once

#include <cstdint>
#include <cstring>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"

namespace jetmoe::ops::cpu_detail {

inline float bits_to_float(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline std::uint32_t float_to_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// bf16 is the top half of a float.
inline float widen_one(bf16 value) { return bits_to_float(std::uint32_t{value.bits} << 16); }

// half → float without branches: move exponent and mantissa into float position, rebias, and
// blend in the subnormal and Inf/NaN variants with bit masks (ternaries here would become
// branches and stop the loop from vectorising).
inline float widen_one(half value) {
  const std::uint32_t h = value.bits;
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t magnitude = (h & 0x7FFFu) << 13;  // exponent and mantissa, float-aligned
  const std::uint32_t exponent = magnitude & 0x0F800000u;
  const std::uint32_t is_subnormal = 0u - static_cast<std::uint32_t>(exponent == 0);          // all ones or 0
  const std::uint32_t is_inf_nan = 0u - static_cast<std::uint32_t>(exponent == 0x0F800000u);  // all ones or 0
  // Normal: exponent bias 15 → 127. Inf/NaN: exponent 31 → 255 (twice the shift), payload kept.
  const std::uint32_t normal = magnitude + 0x38000000u + (is_inf_nan & 0x38000000u);
  // Subnormal: read the mantissa as 2^-14·(1 + m/1024) and subtract 2^-14, which is exact and
  // leaves m·2^-24 (or +0 for m = 0).
  const std::uint32_t subnormal =
      float_to_bits(bits_to_float(magnitude + 0x38800000u) - bits_to_float(0x38800000u));
  return bits_to_float(sign | (subnormal & is_subnormal) | (normal & ~is_subnormal));
}

inline float widen_one(float value) { return value; }

// dst[i] = float(src[i]) for i < n.
template <class W>
inline void widen(const W* src, float* dst, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = widen_one(src[i]);
}

}  // namespace jetmoe::ops::cpu_detail
