// Helpers shared by the io tests: a scratch directory, raw file writing, and error capture.
#pragma once

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "jetmoe/core/error.hpp"

namespace jetmoe_io_test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class scratch_dir {
 public:
  scratch_dir() {
    static std::atomic<int> counter{0};
    path_ =
        fs::temp_directory_path() / ("jetmoe-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(std::string_view name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_bytes(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A safetensors image built by hand: the 8-byte little-endian length `declared_length`, the
// header text as given (no padding, no checks) and `data_bytes` zero bytes of data.
inline std::string raw_safetensors(std::string_view header, std::size_t data_bytes, std::uint64_t declared_length) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &declared_length, 8);
  out += header;
  out.append(data_bytes, '\0');
  return out;
}
inline std::string raw_safetensors(std::string_view header, std::size_t data_bytes) {
  return raw_safetensors(header, data_bytes, header.size());
}

// The message of the jetmoe::error that `action` throws; fails the test if it throws none.
template <class Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const jetmoe::error& e) {
    return e.what();
  }
  FAIL("expected a jetmoe::error");
  return {};
}

}  // namespace jetmoe_io_test
