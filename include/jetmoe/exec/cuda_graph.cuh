// jetmoe/exec/cuda_graph.cuh — exec::recorded_work for exec::cuda: the step as a CUDA graph.
//
// The first run() for a key queues the work as it is (one-off calls never pay for a recording,
// and lazily created state — cuBLAS, the pool's blocks, CUB's device queries — is created
// outside any capture). The second captures everything the work queues on the policy's stream
// into a graph (stream capture, relaxed mode so that a pool miss may still call cudaMalloc),
// makes it executable and launches it; later runs with the same key and stream launch the
// graph alone.
// While capturing, the memory pool holds every block freed (see device_memory_pool's hold):
// the graph keeps the temporaries it was recorded with until forget() or destruction, so no
// later allocation can be handed memory that a replay still writes.
//
// A recording that fails — the work throws while captured (a call that capture refuses, say),
// or ending or instantiating the capture fails — is dropped and the work is queued again as it
// is, outside any capture: the step still runs. If that plain run succeeds too, the failure was
// the recording's, so failure() keeps its message and this key is never recorded again (until
// forget()); an exception from the plain run is the work's own and propagates. So the work must
// be safe to run twice in a row (nothing of a failed capture ran on the device).
#pragma once

#include <cuda_runtime.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/exec/graph.hpp"

// cudaGraphInstantiate(&exec, graph, flags) is the CUDA 12 signature; CUDA 11 took five arguments.
static_assert(CUDART_VERSION >= 12000, "jetmoe's CUDA backend needs CUDA 12 or later");

namespace jetmoe::exec {

template <>
class recorded_work<cuda> {
 public:
  recorded_work() = default;
  recorded_work(const recorded_work&) = delete;
  recorded_work& operator=(const recorded_work&) = delete;
  recorded_work(recorded_work&& other) noexcept { *this = std::move(other); }
  recorded_work& operator=(recorded_work&& other) noexcept {
    if (this != &other) {
      forget();
      graph_ = std::exchange(other.graph_, nullptr);
      policy_ = std::move(other.policy_);
      key_ = other.key_;
      seen_ = std::exchange(other.seen_, false);
      failure_ = std::exchange(other.failure_, {});
      held_ = std::exchange(other.held_, {});
    }
    return *this;
  }
  ~recorded_work() { forget(); }

  template <class Work>
  void run(const cuda& policy, const recording_key& key, Work&& work) {
    const cudaStream_t stream = policy.stream();
    if (graph_ != nullptr && key == key_ && policy_.stream() == stream) {
      JETMOE_CUDA_CHECK(cudaGraphLaunch(graph_, stream));
      return;
    }
    if (!failure_.empty() && key == key_ && policy_.stream() == stream) {  // this key failed to record: run it plainly
      work();
      return;
    }
    const bool seen_before = seen_ && key == key_;
    forget();
    if (!seen_before) {  // first sight of this key: run it as queued work, record next time
      work();
      seen_ = true;
      key_ = key;
      return;
    }
    std::string why;
    try {
      record(policy, work);
    } catch (const std::exception& e) {
      why = e.what();
    } catch (...) {
      why = "a non-standard exception";
    }
    if (graph_ != nullptr) {
      JETMOE_CUDA_CHECK(cudaGraphLaunch(graph_, stream));
      return;
    }
    work();  // the recording failed and queued nothing: run the step as it is (its own errors propagate)
    policy_ = policy;
    key_ = key;
    seen_ = true;
    failure_ = "recording the work as a CUDA graph failed, so it runs unrecorded: " + why;
  }

  // Drops the recording and hands its held blocks back to the pool (ordered after any replay
  // still queued on the stream); the next run() of any key starts from first sight again.
  void forget() {
    seen_ = false;
    failure_.clear();
    if (graph_ != nullptr) {
      cudaGraphExecDestroy(graph_);  // a launched graph may be destroyed: the launch completes
      graph_ = nullptr;
    }
    if (!held_.empty()) {
      policy_.pool().give_back(held_, policy_.stream());
      held_.clear();
    }
  }

  bool has_recording() const { return graph_ != nullptr; }
  // Why the last recording failed (empty when none has since the last forget()).
  const std::string& failure() const { return failure_; }

 private:
  // Captures the work on the policy's stream into graph_ (instantiated, not launched), holding
  // the pool's freed blocks for it. Throws, leaving graph_ null and the pool as it was, if the
  // work throws or the capture cannot be ended or instantiated.
  template <class Work>
  void record(const cuda& policy, Work& work) {
    const cudaStream_t stream = policy.stream();
    (void)policy.blas();  // create the cuBLAS handle (if this policy has none yet) outside the capture
    device_memory_pool& pool = policy.pool();
    pool.begin_hold(stream);
    cudaGraph_t recorded = nullptr;
    try {
      JETMOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
      try {
        work();
      } catch (...) {
        cudaStreamEndCapture(stream, &recorded);  // ends the capture whatever state it is in
        if (recorded != nullptr) cudaGraphDestroy(recorded);
        cudaGetLastError();
        throw;
      }
      JETMOE_CUDA_CHECK(cudaStreamEndCapture(stream, &recorded));
      cudaGraphExec_t executable = nullptr;
      const cudaError_t made = cudaGraphInstantiate(&executable, recorded, 0);
      cudaGraphDestroy(recorded);
      JETMOE_CUDA_CHECK(made);
      graph_ = executable;
    } catch (...) {
      pool.give_back(pool.end_hold(), stream);  // nothing recorded ran: the blocks are free again
      throw;
    }
    held_ = pool.end_hold();
    policy_ = policy;
  }

  cudaGraphExec_t graph_ = nullptr;
  cuda policy_{};            // the stream and pool of the recording
  recording_key key_{};      // of the recording, or of the last run when seen_ and no graph
  bool seen_ = false;
  std::string failure_;      // why key_'s recording failed (it then runs unrecorded until forget()); empty if it did not
  std::vector<device_memory_pool::held_block> held_;  // temporaries the graph was recorded with
};

}  // namespace jetmoe::exec
