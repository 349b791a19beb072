// jetmoe/io/atomic_file.hpp — write a file so that readers see the old one or the whole new one.
//
// The bytes go to a temporary file next to the target, are flushed to disk, and the temporary
// is renamed over the target. If anything fails (disk full, an exception from the producer)
// the temporary is removed and the target is untouched.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "jetmoe/core/error.hpp"

namespace jetmoe::io {

class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::filesystem::path target) : target_(std::move(target)) {
    // A name unique to this process and call; O_EXCL makes a collision an error, not a clobber.
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
      temp_ = target_;
      temp_ += jetmoe::detail::concat(".tmp.", ::getpid(), ".", counter++);
      // 0666 minus the umask: the same permissions a plain create would give.
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && errno != EEXIST) break;
    }
    if (fd_ < 0)
      throw error(jetmoe::detail::concat(target_.string(),
                                         ": cannot create a temporary file next to it: ", std::strerror(errno)));
  }
  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  ~atomic_file_writer() {
    if (fd_ >= 0) {  // never committed: leave no trace
      ::close(fd_);
      ::unlink(temp_.c_str());
    }
  }

  void write(std::span<const std::byte> bytes) {
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ::ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        throw error(jetmoe::detail::concat(target_.string(), ": write failed: ", std::strerror(n < 0 ? errno : EIO)));
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  void write(std::string_view text) { write(std::as_bytes(std::span<const char>(text.data(), text.size()))); }

  // Flushes, closes and renames over the target. Afterwards the writer is spent.
  void commit() {
    if (::fsync(fd_) != 0)
      throw error(jetmoe::detail::concat(target_.string(), ": fsync failed: ", std::strerror(errno)));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      const int saved = errno;
      ::unlink(temp_.c_str());
      throw error(jetmoe::detail::concat(target_.string(), ": close failed: ", std::strerror(saved)));
    }
    if (::rename(temp_.c_str(), target_.c_str()) != 0) {
      const int saved = errno;
      ::unlink(temp_.c_str());
      throw error(jetmoe::detail::concat(target_.string(),
                                         ": cannot rename the temporary file into place: ", std::strerror(saved)));
    }
  }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
};

// Writes `text` to `path` atomically.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  atomic_file_writer out(path);
  out.write(text);
  out.commit();
}

}  // namespace jetmoe::io
