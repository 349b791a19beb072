// exec::parallel_for: every index exactly once, and as many threads as the work keeps busy —
// small work on the calling thread (a parallel region would cost more than it saves), large
// work split over the policy's threads.
#include <catch2/catch.hpp>

#include <jetmoe/exec/cpu.hpp>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

namespace {

// Which threads ran parallel_for(n, work_per_item) under a 2-thread policy; counts each index.
std::set<std::thread::id> threads_used(std::ptrdiff_t n, std::ptrdiff_t work_per_item, std::vector<int>& visits) {
  visits.assign(static_cast<std::size_t>(n), 0);
  std::vector<std::thread::id> who(static_cast<std::size_t>(n));
  jetmoe::exec::parallel_for(jetmoe::exec::cpu{.threads = 2}, n, work_per_item, [&](std::ptrdiff_t i) {
    ++visits[static_cast<std::size_t>(i)];
    who[static_cast<std::size_t>(i)] = std::this_thread::get_id();
  });
  return {who.begin(), who.end()};
}

}  // namespace

TEST_CASE("parallel_for visits each index once and threads only work worth it", "[core][exec]") {
  std::vector<int> visits;
  const auto small = threads_used(64, 16, visits);  // 1k operations in all
  CHECK(small == std::set<std::thread::id>{std::this_thread::get_id()});
  CHECK(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }));

  const std::ptrdiff_t big_item = 4 * jetmoe::exec::min_work_per_thread;
  const auto big = threads_used(64, big_item, visits);
  CHECK(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }));
#if defined(_OPENMP)
  CHECK(big.size() == 2);  // the policy's two threads (the calling one among them)
#else
  CHECK(big.size() == 1);  // built without OpenMP: always serial
#endif

  const auto empty = threads_used(0, big_item, visits);
  CHECK(visits.empty());
}
