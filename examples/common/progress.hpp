// examples/common/progress.hpp — the loading progress the tools show on stderr.
//
// On a terminal: one bar redrawn in place (at most 10 times a second, and only once loading
// has taken a quarter of a second) and erased once the weights are in, so the screen keeps
// only the "loaded …" line. Written to a file or a pipe,
// a bar would leave a trail of carriage returns, so there it appears only for checkpoints big
// enough to take a while (one plain line per 10%), and not at all for small ones.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include <jetmoe/io/checkpoint.hpp>

namespace jetmoe::tools {

// "1.5 GB", "820.3 MB", "96.0 kB": decimal units, as file managers and `ls -h --si` show.
inline std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000.0 && unit < 4) {
    value /= 1000.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return text;
}

class load_progress {
 public:
  // Checkpoints at least this big get progress lines even when stderr is not a terminal.
  static constexpr std::uint64_t big_checkpoint_bytes = 1'000'000'000;

  explicit load_progress(bool enabled = true) : terminal_(enabled && isatty(STDERR_FILENO) == 1), enabled_(enabled) {}
  ~load_progress() { finish(); }  // also when loading fails, so the error starts on a clean line
  load_progress(const load_progress&) = delete;
  load_progress& operator=(const load_progress&) = delete;

  // A callback for io::checkpoint::open; `this` must outlive the checkpoint's loading.
  io::checkpoint_progress_callback callback() {
    return [this](const io::checkpoint_progress& p) { update(p); };
  }

  // Erases the bar (terminal) so that what follows starts on a clean line.
  void finish() {
    const std::lock_guard lock(mutex_);
    if (terminal_ && drawn_) std::fputs("\r\033[K", stderr);
    drawn_ = false;
  }

 private:
  using clock = std::chrono::steady_clock;

  void update(const io::checkpoint_progress& p) {
    if (!enabled_ || p.total == 0) return;
    const std::lock_guard lock(mutex_);  // loaders may read tensors from several threads
    if (p.what == io::checkpoint_progress::stage::opening) {
      // Only sharded checkpoints take visible time to open (one validation per shard).
      if (terminal_ && p.total > 1 && clock::now() - start_ >= std::chrono::milliseconds(250)) {
        std::fprintf(stderr, "\r\033[Kopening shard %llu/%llu", static_cast<unsigned long long>(p.done),
                     static_cast<unsigned long long>(p.total));
        drawn_ = true;
      }
      return;
    }
    const int percent = static_cast<int>(100 * p.done / p.total);
    if (terminal_) {
      // Nothing for loads that end before anyone could read a bar; then at most 10 frames a second.
      const auto now = clock::now();
      if (now - start_ < std::chrono::milliseconds(250)) return;
      if (percent == last_percent_ || (percent < 100 && now - last_draw_ < std::chrono::milliseconds(100))) return;
      last_percent_ = percent;
      last_draw_ = now;
      constexpr int width = 30;
      std::string bar(static_cast<std::size_t>(width * percent / 100), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r\033[Kloading [%s] %3d%%  %s / %s", bar.c_str(), percent, format_bytes(p.done).c_str(),
                   format_bytes(p.total).c_str());
      drawn_ = true;
    } else if (p.total >= big_checkpoint_bytes && percent / 10 != last_percent_ / 10) {
      last_percent_ = percent;
      std::fprintf(stderr, "loading: %3d%%  %s / %s\n", percent, format_bytes(p.done).c_str(),
                   format_bytes(p.total).c_str());
    }
  }

  std::mutex mutex_;
  bool terminal_;
  bool enabled_;
  bool drawn_ = false;
  int last_percent_ = -1;
  clock::time_point start_ = clock::now();
  clock::time_point last_draw_{};
};

}  // namespace jetmoe::tools
