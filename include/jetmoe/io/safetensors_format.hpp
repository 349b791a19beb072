// jetmoe/io/safetensors_format.hpp — what the safetensors format fixes: its element types and limits.
//
// A file is: 8 bytes N (u64, little-endian), N bytes of UTF-8 JSON (the header), then the data
// section. The header maps each tensor name to {dtype, shape, data_offsets [begin, end)},
// offsets relative to the data section, plus an optional "__metadata__" string→string map.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "jetmoe/core/dtype.hpp"

namespace jetmoe::io {

static_assert(std::endian::native == std::endian::little,
              "jetmoe::io: safetensors data is little-endian and is read in place; big-endian hosts are not supported");

inline constexpr std::size_t safetensors_length_prefix_bytes = 8;
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;  // as the reference implementation
inline constexpr std::string_view safetensors_metadata_key = "__metadata__";

// Element types a file may declare. Every one can be opened and viewed as raw bytes; the typed
// reads convert only the ones a model needs (see safetensors_reader.hpp).
// clang-format off
enum class safetensors_dtype : std::uint8_t {
  boolean, u8, i8, f8_e5m2, f8_e4m3, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64
};
// clang-format on

struct safetensors_dtype_entry {
  safetensors_dtype dtype;
  std::string_view name;  // as spelled in the header
  std::size_t size;       // bytes per element
};

inline constexpr std::array<safetensors_dtype_entry, 15> safetensors_dtype_table{{
    {safetensors_dtype::boolean, "BOOL", 1},
    {safetensors_dtype::u8, "U8", 1},
    {safetensors_dtype::i8, "I8", 1},
    {safetensors_dtype::f8_e5m2, "F8_E5M2", 1},
    {safetensors_dtype::f8_e4m3, "F8_E4M3", 1},
    {safetensors_dtype::i16, "I16", 2},
    {safetensors_dtype::u16, "U16", 2},
    {safetensors_dtype::f16, "F16", 2},
    {safetensors_dtype::bf16, "BF16", 2},
    {safetensors_dtype::i32, "I32", 4},
    {safetensors_dtype::u32, "U32", 4},
    {safetensors_dtype::f32, "F32", 4},
    {safetensors_dtype::f64, "F64", 8},
    {safetensors_dtype::i64, "I64", 8},
    {safetensors_dtype::u64, "U64", 8},
}};

constexpr const safetensors_dtype_entry& entry_of(safetensors_dtype dtype) {
  return safetensors_dtype_table[static_cast<std::size_t>(dtype)];  // the table is in enum order
}
constexpr std::string_view header_name(safetensors_dtype dtype) { return entry_of(dtype).name; }
constexpr std::size_t element_size(safetensors_dtype dtype) { return entry_of(dtype).size; }

constexpr std::optional<safetensors_dtype> parse_safetensors_dtype(std::string_view name) {
  for (const auto& entry : safetensors_dtype_table)
    if (entry.name == name) return entry.dtype;
  return std::nullopt;
}

// The file type that stores the library's element type T (float, bf16, half, int64_t, …).
template <class T>
constexpr safetensors_dtype safetensors_dtype_of() {
  switch (dtype_of<T>()) {
    case dtype_id::f32: return safetensors_dtype::f32;
    case dtype_id::bf16: return safetensors_dtype::bf16;
    case dtype_id::f16: return safetensors_dtype::f16;
    case dtype_id::i64: return safetensors_dtype::i64;
    case dtype_id::i32: return safetensors_dtype::i32;
    case dtype_id::u8: return safetensors_dtype::u8;
    case dtype_id::boolean: return safetensors_dtype::boolean;
  }
  return safetensors_dtype::u8;
}

// "[2, 3, 4]": how error messages print a shape.
inline std::string format_shape(std::span<const std::int64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

namespace detail {
// Compile-time check that the table really is in enum order (entry_of relies on it).
constexpr bool dtype_table_in_enum_order() {
  for (std::size_t i = 0; i < safetensors_dtype_table.size(); ++i)
    if (static_cast<std::size_t>(safetensors_dtype_table[i].dtype) != i) return false;
  return true;
}
static_assert(dtype_table_in_enum_order(), "safetensors_dtype_table must list the dtypes in enum order");
}  // namespace detail

}  // namespace jetmoe::io
