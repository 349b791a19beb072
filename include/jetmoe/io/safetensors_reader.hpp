// jetmoe/io/safetensors_reader.hpp — safetensors_file: a validated, memory-mapped .safetensors file.
//
// Opening maps the file and checks the header as strictly as the reference (Rust)
// implementation, so every later read can trust it:
//   - the file holds the 8-byte length N, N ≤ 100 MB and 8 + N ≤ file size;
//   - the header is valid UTF-8 and a JSON object without duplicate keys;
//   - "__metadata__", when present, maps strings to strings;
//   - each tensor has a known dtype, a shape of non-negative integers and data_offsets [begin, end];
//   - product(shape) × element size (overflow-checked) equals end − begin;
//   - sorted by offset, the tensors tile the data section exactly: from 0, no gap, no overlap,
//     and the last one ends where the file ends.
// Every error is a jetmoe::error naming the file and, where one is involved, the tensor.
//
//   auto file = jetmoe::io::safetensors_file::open("model.safetensors");
//   auto w = file.read<float>("model.norm.weight", jetmoe::make_dims(hidden));  // BF16/F16/F32 → float
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/shape.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/io/mapped_file.hpp"
#include "jetmoe/io/safetensors_format.hpp"
#include "jetmoe/io/strict_json.hpp"
#include "jetmoe/io/utf8.hpp"

namespace jetmoe::io {

// One tensor of a file, as its header describes it.
struct tensor_info {
  std::string name;
  safetensors_dtype dtype = safetensors_dtype::f32;
  std::vector<std::int64_t> shape;   // may be empty: a scalar
  std::uint64_t data_offset = 0;     // begin, relative to the data section
  std::span<const std::byte> bytes;  // the tensor's bytes inside the mapping

  std::int64_t element_count() const {
    std::int64_t count = 1;
    for (const std::int64_t extent : shape) count *= extent;  // validated not to overflow
    return count;
  }
};

namespace detail {

template <class Raw>
Raw load_raw(const std::byte* p) {
  Raw value;
  std::memcpy(&value, p, sizeof value);  // tensors need not be aligned inside the file
  return value;
}

template <class Raw, class T, class Convert>
void convert_each(const std::byte* in, T* out, std::size_t count, Convert convert) {
  for (std::size_t i = 0; i < count; ++i) out[i] = convert(load_raw<Raw>(in + i * sizeof(Raw)));
}

// Converts `count` elements stored as `from` into T. Returns false when T cannot hold that
// dtype (the caller names the tensor in the error). Float targets round to nearest even.
template <class T>
bool convert_elements(safetensors_dtype from, const std::byte* in, T* out, std::size_t count) {
  using D = safetensors_dtype;
  if constexpr (std::is_same_v<T, bool>) {
    // Copying bytes into bool storage would be undefined for values other than 0 and 1.
    if (from != D::boolean) return false;
    convert_each<std::uint8_t>(in, out, count, [](std::uint8_t b) { return b != 0; });
    return true;
  } else {
    [[maybe_unused]] auto widen = [](auto raw) { return static_cast<T>(raw); };
    if (from == safetensors_dtype_of<T>()) {
      if (count > 0) std::memcpy(out, in, count * sizeof(T));
      return true;
    }
    if constexpr (std::is_same_v<T, float>) {
      switch (from) {
        case D::bf16:
          convert_each<std::uint16_t>(in, out, count, [](std::uint16_t b) { return float(bf16::from_bits(b)); });
          return true;
        case D::f16:
          convert_each<std::uint16_t>(in, out, count, [](std::uint16_t b) { return float(half::from_bits(b)); });
          return true;
        case D::f64: convert_each<double>(in, out, count, widen); return true;
        default: return false;
      }
    } else if constexpr (std::is_same_v<T, bf16>) {
      switch (from) {
        case D::f32: convert_each<float>(in, out, count, [](float f) { return bf16(f); }); return true;
        case D::f16:
          convert_each<std::uint16_t>(in, out, count, [](std::uint16_t b) { return bf16(float(half::from_bits(b))); });
          return true;
        default: return false;
      }
    } else if constexpr (std::is_same_v<T, half>) {
      switch (from) {
        case D::f32: convert_each<float>(in, out, count, [](float f) { return half(f); }); return true;
        case D::bf16:
          convert_each<std::uint16_t>(in, out, count, [](std::uint16_t b) { return half(float(bf16::from_bits(b))); });
          return true;
        default: return false;
      }
    } else if constexpr (std::is_same_v<T, std::int64_t>) {
      switch (from) {
        case D::i32: convert_each<std::int32_t>(in, out, count, widen); return true;
        case D::u32: convert_each<std::uint32_t>(in, out, count, widen); return true;
        case D::i16: convert_each<std::int16_t>(in, out, count, widen); return true;
        case D::u16: convert_each<std::uint16_t>(in, out, count, widen); return true;
        case D::i8: convert_each<std::int8_t>(in, out, count, widen); return true;
        case D::u8:
        case D::boolean: convert_each<std::uint8_t>(in, out, count, widen); return true;
        default: return false;
      }
    } else if constexpr (std::is_same_v<T, std::int32_t>) {
      switch (from) {
        case D::i16: convert_each<std::int16_t>(in, out, count, widen); return true;
        case D::u16: convert_each<std::uint16_t>(in, out, count, widen); return true;
        case D::i8: convert_each<std::int8_t>(in, out, count, widen); return true;
        case D::u8:
        case D::boolean: convert_each<std::uint8_t>(in, out, count, widen); return true;
        default: return false;
      }
    } else if constexpr (std::is_same_v<T, std::uint8_t>) {
      if (from != D::boolean) return false;
      convert_each<std::uint8_t>(in, out, count, [](std::uint8_t b) { return std::uint8_t(b != 0); });
      return true;
    } else {
      return false;
    }
  }
}

// Validates a whole file image and builds its tensor index (see the rules at the top).
struct parsed_header {
  std::map<std::string, tensor_info, std::less<>> tensors;
  std::map<std::string, std::string, std::less<>> metadata;
  std::uint64_t data_bytes = 0;
};

inline std::uint64_t read_u64_le(const std::byte* p) { return load_raw<std::uint64_t>(p); }

inline std::uint64_t json_unsigned(const nlohmann::json& value, const std::string& where) {
  check(value.is_number_unsigned(), where, " must be a non-negative integer, got ", value.dump());
  return value.get<std::uint64_t>();
}

inline parsed_header parse_safetensors(std::span<const std::byte> file, const std::string& source) {
  check(file.size() >= safetensors_length_prefix_bytes, source, ": ", file.size(),
        " bytes is too small for a safetensors file (it must start with an 8-byte header length)");
  const std::uint64_t header_bytes = read_u64_le(file.data());
  check(header_bytes <= safetensors_max_header_bytes, source, ": header length ", header_bytes, " exceeds the ",
        safetensors_max_header_bytes, "-byte limit");
  const std::uint64_t available = file.size() - safetensors_length_prefix_bytes;
  check(header_bytes <= available, source, ": header length ", header_bytes, " runs past the end of the file (",
        file.size(), " bytes)");

  const std::string_view header(reinterpret_cast<const char*>(file.data()) + safetensors_length_prefix_bytes,
                                static_cast<std::size_t>(header_bytes));
  if (const std::size_t bad = utf8::find_invalid(header); bad != std::string_view::npos)
    throw error(jetmoe::detail::concat(source, ": header is not valid UTF-8 (byte ", bad, " of the header)"));
  const nlohmann::json json = parse_json_strict(header, source);
  check(json.is_object(), source, ": header is not a JSON object but ", json.type_name());

  parsed_header out;
  out.data_bytes = available - header_bytes;
  const std::byte* data = file.data() + safetensors_length_prefix_bytes + header_bytes;

  for (const auto& [key, value] : json.items()) {
    if (key == safetensors_metadata_key) {
      check(value.is_object(), source, ": \"__metadata__\" must be an object of strings, got ", value.type_name());
      for (const auto& [meta_key, meta_value] : value.items()) {
        check(meta_value.is_string(), source, ": \"__metadata__\" entry \"", meta_key, "\" must be a string, got ",
              meta_value.type_name());
        out.metadata.emplace(meta_key, meta_value.get<std::string>());
      }
      continue;
    }

    const std::string where = jetmoe::detail::concat(source, ": tensor \"", key, "\"");
    check(value.is_object(), where, " must be described by an object, got ", value.type_name());
    tensor_info info;
    info.name = key;

    const auto dtype_it = value.find("dtype");
    check(dtype_it != value.end(), where, " has no \"dtype\"");
    check(dtype_it->is_string(), where, ": \"dtype\" must be a string, got ", dtype_it->dump());
    const auto dtype = parse_safetensors_dtype(dtype_it->get_ref<const std::string&>());
    check(dtype.has_value(), where, " has unknown dtype ", dtype_it->dump());
    info.dtype = *dtype;

    const auto shape_it = value.find("shape");
    check(shape_it != value.end(), where, " has no \"shape\"");
    check(shape_it->is_array(), where, ": \"shape\" must be an array, got ", shape_it->dump());
    std::uint64_t elements = 1;
    bool overflow = false;
    for (const auto& extent_json : *shape_it) {
      const std::uint64_t extent = json_unsigned(extent_json, where + " shape entry");
      check(extent <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), where, ": shape entry ",
            extent, " is too large");
      overflow = overflow || __builtin_mul_overflow(elements, extent, &elements);
      info.shape.push_back(static_cast<std::int64_t>(extent));
    }
    check(!overflow, where, ": the element count of shape ", shape_it->dump(), " overflows 64 bits");
    std::uint64_t expected_bytes = 0;
    check(!__builtin_mul_overflow(elements, element_size(info.dtype), &expected_bytes), where, ": shape ",
          shape_it->dump(), " times ", element_size(info.dtype), " bytes per element overflows 64 bits");

    const auto offsets_it = value.find("data_offsets");
    check(offsets_it != value.end(), where, " has no \"data_offsets\"");
    check(offsets_it->is_array() && offsets_it->size() == 2, where, ": \"data_offsets\" must be [begin, end], got ",
          offsets_it->dump());
    const std::uint64_t begin = json_unsigned((*offsets_it)[0], where + " data_offsets begin");
    const std::uint64_t end = json_unsigned((*offsets_it)[1], where + " data_offsets end");
    check(begin <= end, where, ": data_offsets [", begin, ", ", end, "] end before they begin");
    check(end <= out.data_bytes, where, ": data_offsets [", begin, ", ", end,
          "] run past the end of the data section (", out.data_bytes, " bytes)");
    check(end - begin == expected_bytes, where, ": shape ", format_shape(info.shape), " of ", header_name(info.dtype),
          " needs ", expected_bytes, " bytes but data_offsets [", begin, ", ", end, "] hold ", end - begin);

    info.data_offset = begin;
    info.bytes = {data + begin, static_cast<std::size_t>(end - begin)};
    out.tensors.emplace(key, std::move(info));
  }

  // The tensors, in file order, must tile the data section with no gap and no overlap.
  std::vector<const tensor_info*> by_offset;
  by_offset.reserve(out.tensors.size());
  for (const auto& entry : out.tensors) by_offset.push_back(&entry.second);
  std::sort(by_offset.begin(), by_offset.end(), [](const tensor_info* a, const tensor_info* b) {
    return std::pair(a->data_offset, a->bytes.size()) < std::pair(b->data_offset, b->bytes.size());
  });
  std::uint64_t covered = 0;
  const tensor_info* previous = nullptr;
  for (const tensor_info* t : by_offset) {
    if (t->data_offset < covered)
      throw error(jetmoe::detail::concat(source, ": tensor \"", t->name, "\" (bytes [", t->data_offset, ", ",
                                         t->data_offset + t->bytes.size(), ")) overlaps tensor \"", previous->name,
                                         "\" (which ends at byte ", covered, ")"));
    if (t->data_offset > covered)
      throw error(jetmoe::detail::concat(source, ": ", t->data_offset - covered, " unindexed bytes before tensor \"",
                                         t->name, "\" (data offset ", covered, " to ", t->data_offset, ")"));
    covered = t->data_offset + t->bytes.size();
    previous = t;
  }
  check(covered == out.data_bytes, source, ": the data section is not fully indexed: the tensors end at byte ", covered,
        " of ", out.data_bytes);
  return out;
}

}  // namespace detail

class safetensors_file {
 public:
  safetensors_file() = default;

  static safetensors_file open(const std::filesystem::path& path) {
    safetensors_file out;
    out.mapping_ = mapped_file::open(path);
    detail::parsed_header parsed = detail::parse_safetensors(out.mapping_.bytes(), path.string());
    out.tensors_ = std::move(parsed.tensors);
    out.metadata_ = std::move(parsed.metadata);
    out.data_bytes_ = parsed.data_bytes;
    return out;
  }

  // Move-only: the index points into the mapping, which moves with it.
  safetensors_file(safetensors_file&&) noexcept = default;
  safetensors_file& operator=(safetensors_file&&) noexcept = default;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  const std::filesystem::path& path() const { return mapping_.path(); }
  std::size_t size() const { return tensors_.size(); }  // number of tensors
  std::uint64_t data_bytes() const { return data_bytes_; }
  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

  // Tensor names in sorted order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& entry : tensors_) out.push_back(entry.first);
    return out;
  }
  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

  const tensor_info& info(std::string_view name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end())
      throw error(jetmoe::detail::concat(path().string(), ": no tensor named \"", name, "\" (the file has ",
                                         tensors_.size(), " tensors)"));
    return it->second;
  }

  // All elements in row-major order, converted to T.
  template <class T>
  std::vector<T> read_flat(std::string_view name) const {
    const tensor_info& t = info(name);
    if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> has no data() to convert into
      const auto count = static_cast<std::size_t>(t.element_count());
      std::unique_ptr<bool[]> flags(new bool[count]);
      convert_into(t, flags.get(), count);
      return std::vector<bool>(flags.get(), flags.get() + count);
    } else {
      std::vector<T> out(static_cast<std::size_t>(t.element_count()));
      convert_into(t, out.data(), out.size());
      return out;
    }
  }

  // The tensor as an owning CPU tensor of rank Rank (a scalar reads as rank 1, extent 1).
  template <class T, std::size_t Rank>
  tensor<T, Rank> read(std::string_view name) const {
    const tensor_info& t = info(name);
    tensor<T, Rank> out(extents_as<Rank>(t));
    convert_into(t, out.data(), static_cast<std::size_t>(out.size()));
    return out;
  }

  // As read(), and the shape must equal `expected`.
  template <class T, std::size_t Rank>
  tensor<T, Rank> read(std::string_view name, const dims<Rank>& expected) const {
    check_shape(info(name), expected);
    return read<T, Rank>(name);
  }

  // Converts the tensor into existing contiguous memory whose extents must match its shape.
  template <class T, std::size_t Rank>
  void read_into(std::string_view name, tensor_view<T, Rank> out) const {
    static_assert(!std::is_const_v<T>, "jetmoe::io::safetensors_file::read_into: the destination must be writable");
    const tensor_info& t = info(name);
    check_shape(t, out.extents());
    check(out.is_contiguous(), "tensor ", t.name, " in ", path().string(),
          ": read_into needs a contiguous destination");
    convert_into(t, out.data(), static_cast<std::size_t>(out.size()));
  }

  // A zero-copy view into the mapping. The stored dtype must be exactly T's and the bytes
  // aligned for T (files written by safetensors_writer always are); otherwise use read().
  template <class T, std::size_t Rank>
  tensor_view<const T, Rank> view(std::string_view name) const {
    const tensor_info& t = info(name);
    check(t.dtype == safetensors_dtype_of<T>(), "tensor ", t.name, " in ", path().string(), " is ",
          header_name(t.dtype), "; it cannot be viewed as ", name_of(dtype_of<T>()));
    check(reinterpret_cast<std::uintptr_t>(t.bytes.data()) % alignof(T) == 0, "tensor ", t.name, " in ",
          path().string(), " is not aligned for a ", name_of(dtype_of<T>()), " view; read it instead");
    return {reinterpret_cast<const T*>(t.bytes.data()), extents_as<Rank>(t)};
  }

  template <class T, std::size_t Rank>
  tensor_view<const T, Rank> view(std::string_view name, const dims<Rank>& expected) const {
    check_shape(info(name), expected);
    return view<T, Rank>(name);
  }

 private:
  template <std::size_t Rank>
  dims<Rank> extents_as(const tensor_info& t) const {
    if constexpr (Rank == 1)
      if (t.shape.empty()) return make_dims(1);  // a scalar reads as one element
    check(t.shape.size() == Rank, "tensor ", t.name, " in ", path().string(), " has shape ", format_shape(t.shape),
          ", expected a rank-", Rank, " tensor");
    dims<Rank> extents;
    for (std::size_t d = 0; d < Rank; ++d) extents[d] = t.shape[d];
    return extents;
  }

  template <std::size_t Rank>
  void check_shape(const tensor_info& t, const dims<Rank>& expected) const {
    bool same = t.shape.size() == Rank || (t.shape.empty() && Rank == 1 && expected[0] == 1);
    for (std::size_t d = 0; same && d < t.shape.size(); ++d) same = t.shape[d] == expected[d];
    if (!same) {
      const std::vector<std::int64_t> wanted(expected.value, expected.value + Rank);
      throw error(jetmoe::detail::concat("tensor ", t.name, " in ", path().string(), " has shape ",
                                         format_shape(t.shape), ", expected ", format_shape(wanted)));
    }
  }

  template <class T>
  void convert_into(const tensor_info& t, T* out, std::size_t count) const {
    if (!detail::convert_elements<T>(t.dtype, t.bytes.data(), out, count))
      throw error(jetmoe::detail::concat("tensor ", t.name, " in ", path().string(), " is ", header_name(t.dtype),
                                         ", which cannot be read as ", name_of(dtype_of<T>())));
  }

  mapped_file mapping_;
  std::map<std::string, tensor_info, std::less<>> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::uint64_t data_bytes_ = 0;
};

}  // namespace jetmoe::io
