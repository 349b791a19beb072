// jetmoe/io/mapped_file.hpp — a read-only memory mapping of a whole file (POSIX mmap), RAII.
//
// Checkpoints are mapped rather than read so that opening one costs nothing until its bytes
// are used, and a tensor's bytes can be viewed in place. The mapping is private and read-only;
// like any mapping it assumes nobody truncates the file while it is open.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <utility>

#include "jetmoe/core/error.hpp"

namespace jetmoe::io {

class mapped_file {
 public:
  mapped_file() = default;

  static mapped_file open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw error(jetmoe::detail::concat(path.string(), ": cannot open: ", std::strerror(errno)));
    // The descriptor is only needed until the mapping exists.
    struct fd_closer {
      int fd;
      ~fd_closer() { ::close(fd); }
    } closer{fd};

    struct stat st {};
    if (::fstat(fd, &st) != 0)
      throw error(jetmoe::detail::concat(path.string(), ": cannot stat: ", std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) throw error(jetmoe::detail::concat(path.string(), ": not a regular file"));

    mapped_file out;
    out.path_ = path;
    out.size_ = static_cast<std::size_t>(st.st_size);
    if (out.size_ == 0) return out;  // mmap rejects length 0; an empty span is the right answer
    void* base = ::mmap(nullptr, out.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED)
      throw error(jetmoe::detail::concat(path.string(), ": cannot map into memory: ", std::strerror(errno)));
    out.base_ = base;
    return out;
  }

  mapped_file(mapped_file&& other) noexcept
      : path_(std::move(other.path_)),
        base_(std::exchange(other.base_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  mapped_file& operator=(mapped_file&& other) noexcept {
    if (this != &other) {
      unmap();
      path_ = std::move(other.path_);
      base_ = std::exchange(other.base_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() { unmap(); }

  // The mapped bytes stay at the same address when the object is moved.
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(base_), base_ ? size_ : 0}; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void unmap() {
    if (base_) ::munmap(base_, size_);
    base_ = nullptr;
  }

  std::filesystem::path path_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace jetmoe::io
