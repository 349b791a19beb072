// jetmoe/core/dtype.hpp — the element types the library computes with: float, bf16 and half.
//
// bf16 and half are 16-bit storage types. Conversions from float round to nearest, ties to
// even, keep the sign of zero, map overflow to ±Inf, keep ±Inf, and keep NaN a NaN (quieted,
// sign and top payload bits kept). All of it is plain integer arithmetic on the bit patterns,
// so the same code runs on the host and (through JETMOE_HD) on a CUDA device.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "jetmoe/config.hpp"

namespace jetmoe {

namespace detail {
JETMOE_HD inline std::uint32_t float_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
JETMOE_HD inline float float_from_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
}  // namespace detail

// Brain floating point: the top 16 bits of an IEEE float (8-bit exponent, 7-bit mantissa).
struct bf16 {
  std::uint16_t bits = 0;

  bf16() = default;
  JETMOE_HD explicit bf16(float value) : bits(round_from_float(value)) {}
  JETMOE_HD explicit operator float() const { return detail::float_from_bits(std::uint32_t{bits} << 16); }

  JETMOE_HD static bf16 from_bits(std::uint16_t raw) {
    bf16 out;
    out.bits = raw;
    return out;
  }
  JETMOE_HD static std::uint16_t round_from_float(float value) {
    const std::uint32_t x = detail::float_bits(value);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: truncate, then force the quiet bit
      return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
    }
    const std::uint32_t lsb = (x >> 16) & 1u;  // ties go to the even neighbour
    return static_cast<std::uint16_t>((x + 0x7FFFu + lsb) >> 16);
  }
  friend JETMOE_HD bool operator==(bf16 a, bf16 b) { return a.bits == b.bits; }
};

// IEEE 754 binary16 (5-bit exponent, 10-bit mantissa), with subnormals.
struct half {
  std::uint16_t bits = 0;

  half() = default;
  JETMOE_HD explicit half(float value) : bits(round_from_float(value)) {}
  JETMOE_HD explicit operator float() const { return detail::float_from_bits(widen(bits)); }

  JETMOE_HD static half from_bits(std::uint16_t raw) {
    half out;
    out.bits = raw;
    return out;
  }
  JETMOE_HD static std::uint16_t round_from_float(float value) {
    std::uint32_t x = detail::float_bits(value);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    x &= 0x7FFFFFFFu;
    if (x >= 0x7F800000u) {  // Inf stays Inf; NaN keeps its top payload bits and is quieted
      const std::uint32_t nan_payload = x > 0x7F800000u ? (0x0200u | ((x >> 13) & 0x03FFu)) : 0u;
      return static_cast<std::uint16_t>(sign | 0x7C00u | nan_payload);
    }
    if (x >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // ≥ 65520 rounds to Inf
    if (x < 0x38800000u) {                            // below 2^-14: a subnormal half or zero
      if (x <= 0x33000000u) return sign;              // ≤ 2^-25 rounds to (signed) zero
      const std::uint32_t exponent = x >> 23;         // 102 … 112
      const std::uint32_t mantissa = (x & 0x007FFFFFu) | 0x00800000u;
      const std::uint32_t shift = 126u - exponent;    // bits dropped to reach units of 2^-24
      std::uint32_t result = mantissa >> shift;
      const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
      const std::uint32_t halfway = 1u << (shift - 1u);
      if (rest > halfway || (rest == halfway && (result & 1u))) ++result;
      return static_cast<std::uint16_t>(sign | result);
    }
    // Normal range: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits.
    std::uint32_t result = (x - 0x38000000u) >> 13;
    const std::uint32_t rest = x & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;  // a carry may reach Inf: correct
    return static_cast<std::uint16_t>(sign | result);
  }
  JETMOE_HD static std::uint32_t widen(std::uint16_t h) {
    const std::uint32_t sign = (std::uint32_t{h} & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1Fu;
    std::uint32_t mantissa = h & 0x03FFu;
    if (exponent == 0x1Fu) return sign | 0x7F800000u | (mantissa << 13);  // Inf / NaN
    if (exponent != 0) return sign | ((exponent + 112u) << 23) | (mantissa << 13);
    if (mantissa == 0) return sign;  // ±0
    exponent = 113;                  // subnormal: normalise into a float
    while ((mantissa & 0x0400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    return sign | (exponent << 23) | ((mantissa & 0x03FFu) << 13);
  }
  friend JETMOE_HD bool operator==(half a, half b) { return a.bits == b.bits; }
};

// ---- generic conversion, so templated code reads the same for every element type ----------
template <class T>
JETMOE_HD inline float to_float(T value) {
  return static_cast<float>(value);
}
template <class T>
JETMOE_HD inline T from_float(float value) {
  return T(value);
}

// ---- compile-time classification ---------------------------------------------------------
template <class T>
inline constexpr bool is_floating_dtype_v =
    std::is_same_v<std::remove_cv_t<T>, float> || std::is_same_v<std::remove_cv_t<T>, bf16> ||
    std::is_same_v<std::remove_cv_t<T>, half>;

// An element type the compute ops accept as input or weight: float, bf16 or half.
template <class T>
concept floating_dtype = is_floating_dtype_v<T>;

// Runtime tag, used where a type is only known from a file (safetensors) or a config.
enum class dtype_id : std::uint8_t { f32, bf16, f16, i64, i32, u8, boolean };

template <class T>
constexpr dtype_id dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return dtype_id::f32;
  else if constexpr (std::is_same_v<U, bf16>) return dtype_id::bf16;
  else if constexpr (std::is_same_v<U, half>) return dtype_id::f16;
  else if constexpr (std::is_same_v<U, std::int64_t>) return dtype_id::i64;
  else if constexpr (std::is_same_v<U, std::int32_t>) return dtype_id::i32;
  else if constexpr (std::is_same_v<U, std::uint8_t>) return dtype_id::u8;
  else if constexpr (std::is_same_v<U, bool>) return dtype_id::boolean;
  else static_assert(sizeof(U) == 0, "jetmoe: this element type has no dtype_id (use float, bf16, half, int64_t, int32_t, uint8_t or bool)");
}

constexpr std::size_t size_of(dtype_id id) {
  switch (id) {
    case dtype_id::f32: case dtype_id::i32: return 4;
    case dtype_id::bf16: case dtype_id::f16: return 2;
    case dtype_id::i64: return 8;
    case dtype_id::u8: case dtype_id::boolean: return 1;
  }
  return 0;
}

constexpr std::string_view name_of(dtype_id id) {
  switch (id) {
    case dtype_id::f32: return "float32";
    case dtype_id::bf16: return "bfloat16";
    case dtype_id::f16: return "float16";
    case dtype_id::i64: return "int64";
    case dtype_id::i32: return "int32";
    case dtype_id::u8: return "uint8";
    case dtype_id::boolean: return "bool";
  }
  return "?";
}

}  // namespace jetmoe
