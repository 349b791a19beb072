// jetmoe/io/safetensors_writer.hpp — safetensors_writer: collects tensors, writes one valid file.
//
// The file is laid out like the reference implementation's: the JSON header (keys sorted)
// padded with spaces to a multiple of 8 bytes, then the data ordered by element size (largest
// first) and name, so that every tensor starts at an offset aligned to its element size and can
// be viewed in place after mapping. The file is written atomically (atomic_file.hpp).
//
//   jetmoe::io::safetensors_writer out;
//   out.set_metadata("format", "pt");
//   out.add("model.norm.weight", norm.view());
//   out.write(dir / "model.safetensors");
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/io/atomic_file.hpp"
#include "jetmoe/io/safetensors_format.hpp"
#include "jetmoe/io/utf8.hpp"

namespace jetmoe::io {

class safetensors_writer {
 public:
  safetensors_writer() = default;
  // Not copyable: entries hold spans into their own buffers. Moving keeps the map's nodes.
  safetensors_writer(const safetensors_writer&) = delete;
  safetensors_writer& operator=(const safetensors_writer&) = delete;
  safetensors_writer(safetensors_writer&&) noexcept = default;
  safetensors_writer& operator=(safetensors_writer&&) noexcept = default;

  // Adds a tensor from raw little-endian bytes, copying them.
  void add(std::string name, safetensors_dtype dtype, std::vector<std::int64_t> shape,
           std::span<const std::byte> bytes) {
    entry& e = insert(std::move(name), dtype, std::move(shape), bytes.size());
    e.owned.assign(bytes.begin(), bytes.end());
    e.bytes = e.owned;
  }

  // Adds a tensor without copying: `bytes` must stay valid until write() has returned. For
  // saving a large model from memory that is already laid out right.
  void add_borrowed(std::string name, safetensors_dtype dtype, std::vector<std::int64_t> shape,
                    std::span<const std::byte> bytes) {
    insert(std::move(name), dtype, std::move(shape), bytes.size()).bytes = bytes;
  }

  // Adds a copy of a view's elements (row-major, so strided views are gathered).
  template <class T, std::size_t Rank>
  void add(std::string name, tensor_view<T, Rank> view) {
    using element = std::remove_const_t<T>;
    std::vector<std::int64_t> shape(view.extents().value, view.extents().value + Rank);
    const auto count = static_cast<std::size_t>(view.size());
    entry& e = insert(std::move(name), safetensors_dtype_of<element>(), std::move(shape), count * sizeof(element));
    e.owned.resize(count * sizeof(element));
    if (count > 0 && view.is_contiguous()) {
      std::memcpy(e.owned.data(), view.data(), e.owned.size());
    } else if (count > 0) {
      std::array<index_t, Rank> index{};  // odometer over the extents, last dimension fastest
      for (std::size_t i = 0; i < count; ++i) {
        index_t offset = 0;
        for (std::size_t d = 0; d < Rank; ++d) offset += index[d] * view.stride(d);
        std::memcpy(e.owned.data() + i * sizeof(element), view.data() + offset, sizeof(element));
        for (std::size_t d = Rank; d-- > 0;) {
          if (++index[d] < view.extent(d)) break;
          index[d] = 0;
        }
      }
    }
    e.bytes = e.owned;
  }

  template <class T, std::size_t Rank>
  void add(std::string name, const tensor<T, Rank, exec::cpu>& t) {
    add(std::move(name), t.view());
  }

  void set_metadata(std::string key, std::string value) {
    check(utf8::is_valid(key) && utf8::is_valid(value), "safetensors_writer: metadata \"", key,
          "\" is not valid UTF-8");
    metadata_[std::move(key)] = std::move(value);
  }

  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }
  std::size_t size() const { return entries_.size(); }

  // The header bytes as they will be written (without the 8-byte length): sorted-key JSON
  // padded with spaces to a multiple of 8.
  std::string header() const {
    nlohmann::json json = nlohmann::json::object();
    if (!metadata_.empty()) json[std::string(safetensors_metadata_key)] = metadata_;
    std::uint64_t offset = 0;
    for (const entry* e : data_order()) {
      json[e->name] = {{"dtype", std::string(header_name(e->dtype))},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->bytes.size()}}};
      offset += e->bytes.size();
    }
    std::string text = json.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  }

  // Writes the file atomically: on any failure the previous file at `path` (if any) is intact.
  void write(const std::filesystem::path& path) const {
    const std::string text = header();
    std::array<std::byte, safetensors_length_prefix_bytes> length{};
    const std::uint64_t n = text.size();
    std::memcpy(length.data(), &n, sizeof n);  // little-endian host (checked in safetensors_format.hpp)

    atomic_file_writer out(path);
    out.write(length);
    out.write(text);
    for (const entry* e : data_order()) out.write(e->bytes);
    out.commit();
  }

 private:
  struct entry {
    std::string name;
    safetensors_dtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> owned;  // empty when borrowed
    std::span<const std::byte> bytes;
  };

  entry& insert(std::string name, safetensors_dtype dtype, std::vector<std::int64_t> shape, std::size_t byte_count) {
    check(!name.empty(), "safetensors_writer: a tensor name must not be empty");
    check(name != safetensors_metadata_key,
          "safetensors_writer: \"__metadata__\" is reserved and cannot name a tensor");
    check(utf8::is_valid(name), "safetensors_writer: tensor name \"", name, "\" is not valid UTF-8");
    check(!contains(name), "safetensors_writer: tensor \"", name, "\" was already added");
    std::uint64_t expected = element_size(dtype);
    for (const std::int64_t extent : shape) {
      check(extent >= 0, "safetensors_writer: tensor \"", name, "\" has negative extent in shape ",
            format_shape(shape));
      check(!__builtin_mul_overflow(expected, static_cast<std::uint64_t>(extent), &expected),
            "safetensors_writer: tensor \"", name, "\": the byte size of shape ", format_shape(shape), " overflows");
    }
    check(expected == byte_count, "safetensors_writer: tensor \"", name, "\" of shape ", format_shape(shape),
          " and dtype ", header_name(dtype), " needs ", expected, " bytes, got ", byte_count);
    auto [it, inserted] = entries_.emplace(name, entry{name, dtype, std::move(shape), {}, {}});
    return it->second;
  }

  // Largest elements first, then by name: every tensor's offset is a multiple of its element size.
  std::vector<const entry*> data_order() const {
    std::vector<const entry*> order;
    order.reserve(entries_.size());
    for (const auto& kv : entries_) order.push_back(&kv.second);
    std::stable_sort(order.begin(), order.end(),
                     [](const entry* a, const entry* b) { return element_size(a->dtype) > element_size(b->dtype); });
    return order;
  }

  std::map<std::string, entry, std::less<>> entries_;  // by name
  std::map<std::string, std::string> metadata_;
};

}  // namespace jetmoe::io
