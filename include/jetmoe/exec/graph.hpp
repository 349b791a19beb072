// jetmoe/exec/graph.hpp — recorded work: queue a step once, replay it with one launch.
//
// A decode step queues the same kernels on the same buffers every time; only the values in
// those buffers change (the new token ids, the cache length). A policy that can record queued
// work (exec::cuda, as a CUDA graph) replays such a step for a fraction of the cost of
// launching its hundreds of kernels one by one.
//
//   exec::recorded_work<Policy> step;
//   step.run(policy, key, [&] { queue_the_step(); });  // first call for `key`: queued as it is;
//                                                        // second: recorded; later: replayed
//   step.forget();                                       // buffers moved: start afresh
//
// The work must be replayable: no host synchronisation, no host-side values that change from
// call to call (read them on the device instead, like ops::attention's key_count), and every
// buffer it touches must stay where it was (the caller forgets the recording when that may not
// hold, and the key changes when the shapes do). The primary template, used by host policies,
// has nothing to record: run() calls the work every time. exec/cuda_graph.cuh specialises it.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace jetmoe::exec {

// What a recording was made for (shapes, buffer identities): a different key records afresh.
using recording_key = std::array<std::uint64_t, 4>;

template <class Policy>
class recorded_work {
 public:
  template <class Work>
  void run(const Policy& /*policy*/, const recording_key& /*key*/, Work&& work) {
    work();
  }
  void forget() {}
  bool has_recording() const { return false; }
  const std::string& failure() const {
    static const std::string none;
    return none;
  }
};

}  // namespace jetmoe::exec
