// jetmoe/exec/cuda.cuh — the CUDA execution policy: a stream, a pooled memory resource, a
// cuBLAS handle bound to the stream, and the host↔device transfer helpers.
//
//   auto gpu = jetmoe::exec::cuda::create();              // device 0, a new stream
//   auto x = jetmoe::exec::to_device(gpu, host_x.view());  // tensor<float, 2, exec::cuda>
//   jetmoe::ops::rms_norm(gpu, x, w, 1e-6f, y);             // queued on gpu.stream()
//   auto back = jetmoe::exec::to_host(gpu, y.view());      // waits for the stream
//
// A policy is a handle: copies share one context (stream, memory pool, cuBLAS handle, error
// word), so passing it by value is cheap. A default-constructed policy is unbound: it can free
// nothing but null and exists only so that tensors and buffers can be default-constructed.
//
// Synchronisation: ops only enqueue work on the stream. The host waits only where it must read
// a result — to_host, synchronize(), a routing plan's exact counts (routing_plan::settled; the
// plan itself is built without waiting), the loss values — and those are the places that
// report device-side input errors (see kernels/common.cuh).
//
// Memory: allocate/deallocate go through a caching pool. Freed blocks are kept on free lists
// keyed by their rounded size and handed out again to requests of the same size class (or one
// up to 1/8 smaller) on the same stream, so steady-state work (every decode step after the
// first) calls no cudaMalloc. Nothing caps what the lists hold: a cudaMalloc that runs out of
// memory gives them back to the driver and tries again (release_cached() does so on demand).
// Reuse on the same stream needs no event: stream order already puts the next user after the
// last one. A block freed on another stream waits until that stream has been synchronised by
// its owner (release_stream) before it can serve a different stream.
//
// For memory checkers: with JETMOE_CUDA_POOL=off in the environment (read when a pool is made)
// the pool caches nothing. Each allocation is its own cudaMalloc of the exact size and each
// free a cudaFree after the stream has drained, so compute-sanitizer memcheck sees every
// overrun past a buffer's end and every use after free, which size classes and reuse hide.
// Slow; never for production.
//
// Only nvcc compiles this header (it includes kernels). Single device per policy: create()
// makes the policy's device current, and kernels launch on the thread's current device, so
// switch devices yourself (cudaSetDevice) when mixing policies. The pool allocates and gives its
// cache back on its own device, and destroying a policy or pool leaves the thread's current
// device as it was.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
#include "jetmoe/exec/transfer.hpp"
#include "jetmoe/kernels/common.cuh"
#include "jetmoe/kernels/copy.cuh"

// Throws jetmoe::error naming the failed call, the CUDA error and where it happened.
#define JETMOE_CUDA_CHECK(expr) ::jetmoe::exec::cuda_detail::throw_on_error((expr), #expr, __FILE__, __LINE__)
#define JETMOE_CUBLAS_CHECK(expr) ::jetmoe::exec::cuda_detail::throw_on_blas_error((expr), #expr, __FILE__, __LINE__)
// After a <<<...>>> launch: a bad configuration shows up here; a fault while the kernel runs
// shows up at the next synchronisation.
#define JETMOE_CUDA_CHECK_LAUNCH() JETMOE_CUDA_CHECK(cudaGetLastError())

namespace jetmoe::exec {

namespace cuda_detail {

inline void throw_on_error(cudaError_t status, const char* expr, const char* file, int line) {
  if (status == cudaSuccess) return;
  // The runtime also keeps a failed call's error as its "last error"; cleared here, it cannot
  // resurface at the next launch check after this exception has been handled (a failed graph
  // capture falls back to running the work plainly). A sticky error (a device fault) stays.
  cudaGetLastError();
  throw error(detail::concat("jetmoe: CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status),
                             ") from ", expr, " at ", file, ":", line));
}

inline void throw_on_blas_error(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw error(detail::concat("jetmoe: cuBLAS error ", cublasGetStatusName(status), " (", cublasGetStatusString(status),
                             ") from ", expr, " at ", file, ":", line));
}

// Makes `device` current while it lives, then gives the thread back the device it had: the
// pool's cudaMalloc lands on the pool's GPU, and freeing a policy or pool of another GPU does
// not switch the caller's. Errors are ignored here (destructors use it); a failed switch shows
// up in the call that needed it.
class scoped_device {
 public:
  explicit scoped_device(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    entered_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~scoped_device() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  scoped_device(const scoped_device&) = delete;
  scoped_device& operator=(const scoped_device&) = delete;
  bool entered() const { return entered_; }

 private:
  int previous_ = -1;
  bool entered_ = false;
};

}  // namespace cuda_detail

// ---- the caching memory pool -----------------------------------------------------------------
class device_memory_pool {
 public:
  struct statistics {
    std::size_t hits = 0;          // allocations served from a free list
    std::size_t misses = 0;        // allocations that called cudaMalloc
    std::size_t bytes_in_use = 0;  // rounded sizes of blocks handed out and not yet freed
    std::size_t bytes_cached = 0;  // rounded sizes of blocks on the free lists
  };

  explicit device_memory_pool(int device) : device_(device), caching_(caching_wanted()) {}
  device_memory_pool(const device_memory_pool&) = delete;
  device_memory_pool& operator=(const device_memory_pool&) = delete;
  ~device_memory_pool() {
    // Errors are ignored here: at process exit the CUDA runtime may already be shutting down.
    std::lock_guard<std::mutex> lock(mutex_);
    const cuda_detail::scoped_device on_device(device_);
    if (!on_device.entered()) return;
    cudaDeviceSynchronize();
    for (auto& [size, blocks] : free_)
      for (const block& b : blocks) cudaFree(b.ptr);
    for (auto& [ptr, size] : live_) cudaFree(ptr);  // leaked by a caller; the memory goes anyway
  }

  // Size classes: 512-byte steps up to 1 MiB, 1 MiB steps up to 256 MiB, then 16 MiB steps.
  // At most 1/8 wasted above 1 MiB except between 1 and 8 MiB; few classes, so repeated
  // shapes hit the same list.
  static std::size_t size_class(std::size_t bytes) {
    constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;
    const auto round_up = [](std::size_t n, std::size_t step) { return (n + step - 1) / step * step; };
    if (bytes <= MiB) return round_up(bytes == 0 ? 1 : bytes, 512);
    if (bytes <= 256 * MiB) return round_up(bytes, MiB);
    return round_up(bytes, 16 * MiB);
  }

  // The largest block class a request of class `size` may be handed: 1/8 more, so with the
  // rounding of size_class a request gets at most about 1/4 more than it asked for.
  static std::size_t largest_reused(std::size_t size) { return size + size / 8; }

  // Whether freed blocks are kept for reuse (see JETMOE_CUDA_POOL at the top of this header).
  bool caching() const { return caching_; }

  void* allocate(std::size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return nullptr;
    const std::size_t size = caching_ ? size_class(bytes) : bytes;
    std::lock_guard<std::mutex> lock(mutex_);
    if (holding_ && stream == hold_stream_) {
      // A block the recording freed earlier: the recorded work is one chain on this stream, so
      // in every replay its last use comes before this new one too.
      for (std::size_t i = held_.size(); i-- > 0;) {
        if (held_[i].size >= size && held_[i].size <= largest_reused(size)) {
          void* ptr = held_[i].ptr;
          live_.emplace(ptr, held_[i].size);  // the block's own class; still counted in bytes_in_use
          held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
          ++stats_.hits;
          return ptr;
        }
      }
    }
    if (caching_) {
      // The exact class, else one at most 1/8 larger (largest_reused): a buffer whose size
      // drifts from call to call (a KV cache sized by each prompt) then reuses one block instead
      // of caching one per size. Newest first (warm in L2); a block freed on this stream or an
      // idle one is safe.
      for (auto found = free_.lower_bound(size); found != free_.end() && found->first <= largest_reused(size);
           ++found) {
        std::vector<block>& blocks = found->second;
        for (std::size_t i = blocks.size(); i-- > 0;) {
          if (blocks[i].idle || blocks[i].stream == stream) {
            void* ptr = blocks[i].ptr;
            const std::size_t block_size = found->first;
            blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(i));
            live_.emplace(ptr, block_size);
            ++stats_.hits;
            stats_.bytes_cached -= block_size;
            stats_.bytes_in_use += block_size;
            return ptr;
          }
        }
      }
    }
    void* ptr = nullptr;
    const cuda_detail::scoped_device on_device(device_);
    cudaError_t status = cudaMalloc(&ptr, size);
    // Out of memory: give the cached blocks back and retry — except while a graph is being
    // recorded, where the device-wide synchronisation that needs would break the capture.
    if (status == cudaErrorMemoryAllocation && !holding_) {
      cudaGetLastError();  // clear the error, give the cached blocks back, try once more
      release_cached_locked();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw error(detail::concat("jetmoe::exec::cuda: cannot allocate ", bytes, " bytes on device ", device_, " (",
                                 cudaGetErrorString(status), "); pool holds ", stats_.bytes_in_use,
                                 " bytes in use"));
    }
    live_.emplace(ptr, size);
    ++stats_.misses;
    stats_.bytes_in_use += size;
    return ptr;
  }

  void deallocate(void* ptr, cudaStream_t stream) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = live_.find(ptr);
    if (found == live_.end()) return;  // not ours (or freed twice): never hand it out again
    const std::size_t size = found->second;
    live_.erase(found);
    if (holding_ && stream == hold_stream_) {  // a graph being recorded has this address in it: keep it out of reach
      held_.push_back(held_block{ptr, size});
      return;
    }
    return_block(ptr, size, stream);
  }

  // ---- holding blocks for a CUDA graph ----
  // A recorded graph has the address of every buffer it touched baked in, temporaries freed
  // during the recording included. Between begin_hold(stream) and end_hold, blocks freed on
  // that stream are set aside instead of going back to the free lists (later allocations of
  // the same recording may reuse them: the recorded work is a chain on that one stream);
  // end_hold hands them to the graph, which returns them with give_back when it is destroyed.
  // One hold per pool at a time; blocks other streams free meanwhile take the usual way.
  struct held_block {
    void* ptr;
    std::size_t size;  // size class
  };
  void begin_hold(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    check(!holding_, "jetmoe::exec::cuda: a graph is already being recorded on this memory pool");
    holding_ = true;
    hold_stream_ = stream;
  }
  std::vector<held_block> end_hold() {
    std::lock_guard<std::mutex> lock(mutex_);
    holding_ = false;
    return std::exchange(held_, {});
  }
  // Work queued on `stream` may still use the blocks: they serve that stream again at once and
  // others once it has been synchronised, like any block freed on it.
  void give_back(const std::vector<held_block>& blocks, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const held_block& b : blocks) return_block(b.ptr, b.size, stream);
  }

  // Frees counted so far. Take it before synchronising a stream and pass it to release_stream:
  // a block another thread frees on that stream while the synchronisation runs may have work
  // queued after it, so it must stay tied to the stream.
  std::uint64_t free_mark() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return frees_;
  }
  // Call after synchronising `stream`: its blocks freed before `mark` (free_mark() taken before
  // the synchronisation) may then serve any stream.
  void release_stream(cudaStream_t stream, std::uint64_t mark) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (block& b : blocks)
        if (b.stream == stream && b.freed_at < mark) b.idle = true;
  }

  // Returns every cached block to the driver (synchronises the device first).
  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  statistics stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct block {
    void* ptr;
    cudaStream_t stream;     // the stream it was freed on
    std::uint64_t freed_at;  // frees_ when it was freed (see free_mark)
    bool idle;               // that stream has since been synchronised: usable from any stream
  };

  static bool caching_wanted() {
    const char* setting = std::getenv("JETMOE_CUDA_POOL");
    return setting == nullptr || std::string_view(setting) != "off";
  }

  // A block no longer in use, last used on `stream`: onto its free list, or with caching off
  // back to the driver once the work queued on `stream` (which may still read it) has finished
  // (errors ignored there, as frees run in destructors). Call with mutex_ held.
  void return_block(void* ptr, std::size_t size, cudaStream_t stream) {
    stats_.bytes_in_use -= size;
    if (!caching_) {
      cudaStreamSynchronize(stream);
      cudaFree(ptr);
      return;
    }
    free_[size].push_back(block{ptr, stream, frees_++, false});
    stats_.bytes_cached += size;
  }

  void release_cached_locked() {
    const cuda_detail::scoped_device on_device(device_);  // the synchronisation is the pool's GPU's
    cudaDeviceSynchronize();
    for (auto& [size, blocks] : free_)
      for (const block& b : blocks) cudaFree(b.ptr);
    free_.clear();
    stats_.bytes_cached = 0;
  }

  mutable std::mutex mutex_;
  int device_;
  bool caching_ = true;  // false: JETMOE_CUDA_POOL=off, every block goes straight back to the driver
  bool holding_ = false;
  cudaStream_t hold_stream_ = nullptr;  // the stream being recorded while holding_
  std::vector<held_block> held_;  // freed during the open hold, in use by the graph being recorded
  std::map<std::size_t, std::vector<block>> free_;            // size class → free blocks, ascending
  std::unordered_map<void*, std::size_t> live_;               // handed-out block → its block's size class
  std::uint64_t frees_ = 0;                                   // blocks put on the free lists so far
  statistics stats_{};
};

namespace cuda_detail {

// What copies of one policy share. Created by cuda::create / cuda::on, freed with the last copy.
struct context {
  int device = 0;
  cudaStream_t stream = nullptr;
  bool owns_stream = false;
  std::shared_ptr<device_memory_pool> pool;
  kernels::device_status* status = nullptr;       // device memory, zero when no error
  kernels::device_status* status_host = nullptr;  // pinned mirror for reading it back
  std::mutex sync_mutex;                           // guards status_host (synchronize)

  std::mutex blas_mutex;
  cublasHandle_t blas = nullptr;  // created on first use, bound to `stream`
  void* blas_workspace = nullptr;

  // cuBLAS's own workspace, given explicitly so that GEMMs allocate nothing while a CUDA graph
  // is captured (32 MiB is NVIDIA's recommendation for Hopper).
  static constexpr std::size_t blas_workspace_bytes = std::size_t{32} << 20;

  context() = default;
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  ~context() {
    // Errors are ignored: nothing sensible can be done with them in a destructor.
    const scoped_device on_device(device);
    if (blas_workspace && pool) pool->deallocate(blas_workspace, stream);
    const std::uint64_t mark = pool ? pool->free_mark() : 0;
    if (pool) cudaStreamSynchronize(stream);  // a bound context; null is the legacy stream, still a stream
    if (blas) cublasDestroy(blas);
    if (pool) pool->release_stream(stream, mark);  // the stream is idle: its blocks may serve others
    if (status) cudaFree(status);
    if (status_host) cudaFreeHost(status_host);
    if (owns_stream && stream) cudaStreamDestroy(stream);
  }
};

}  // namespace cuda_detail

// ---- the policy --------------------------------------------------------------------------------
struct cuda {
  static constexpr bool is_host = false;

  // For bf16/half weights, GEMMs over more than a handful of rows round their fp32 activations
  // to the weight type and run on tensor cores with fp32 accumulation — what a bf16 PyTorch
  // model computes; each product then carries the activation's rounding (relative 2^-9 for
  // bf16, 2^-12 for half). false keeps the activations in fp32 and widens the weights instead
  // (CUDA cores, several times slower, within fp32 rounding of the CPU backend). Float
  // weights always compute in fp32 (no TF32). Decode-sized GEMMs (≤ 8 rows) are weight-read
  // bound and always keep fp32 activations. With half weights an activation beyond ±65504
  // rounds to ±Inf on this path (bf16 has fp32's range); set false for such models.
  bool tensor_cores = true;

  // Debug aid: every op first checks that its operands are in device (or managed) memory, so a
  // host tensor handed to a CUDA op is a jetmoe::error naming the op and the operand instead of
  // an illegal-address fault, which ends the CUDA context. Costs one cudaPointerGetAttributes
  // per operand per call, so it is off unless set here or by JETMOE_CUDA_CHECK_POINTERS=1 in
  // the environment (read by create()). Pinned or mapped host memory counts as host memory
  // here, although a kernel could read it. The ops that also take host memory for an input (the
  // attention mask, the RoPE positions, the embedding ids, the loss mask) tell the two apart
  // always, and upload a host one.
  bool check_pointers = false;

  // Whether JETMOE_CUDA_CHECK_POINTERS asks for check_pointers: set, and neither empty nor "0".
  static bool pointer_checks_requested() {
    const char* value = std::getenv("JETMOE_CUDA_CHECK_POINTERS");
    return value != nullptr && value[0] != '\0' && std::string_view(value) != "0";
  }

  cuda() = default;

  // A context on `device` with a new non-blocking stream and a new memory pool.
  static cuda create(int device = 0) {
    JETMOE_CUDA_CHECK(cudaSetDevice(device));
    auto ctx = std::make_shared<cuda_detail::context>();
    ctx->device = device;
    JETMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    ctx->owns_stream = true;
    ctx->pool = std::make_shared<device_memory_pool>(device);
    init_status(*ctx);
    cuda policy;
    policy.check_pointers = pointer_checks_requested();
    policy.ctx_ = std::move(ctx);
    return policy;
  }

  // The same device and memory pool on another stream, which the caller keeps alive (and
  // synchronises before destroying). Its own cuBLAS handle and error word.
  cuda on(cudaStream_t stream) const {
    const auto& self = context("exec::cuda::on");
    JETMOE_CUDA_CHECK(cudaSetDevice(self.device));  // the error word below is allocated on it
    auto ctx = std::make_shared<cuda_detail::context>();
    ctx->device = self.device;
    ctx->stream = stream;
    ctx->owns_stream = false;
    ctx->pool = self.pool;
    init_status(*ctx);
    cuda policy;
    policy.tensor_cores = tensor_cores;
    policy.check_pointers = check_pointers;
    policy.ctx_ = std::move(ctx);
    return policy;
  }

  // Whether this process can use a GPU, and if not, why. `absent` is the ordinary no-GPU
  // machine: no driver, or a driver with no device. `broken` is everything else the runtime can
  // fail with at start-up (a driver older than the runtime, a device the sandbox withholds, …):
  // a GPU machine that cannot run us, which callers must not mistake for a CPU-only machine.
  enum class device_presence { usable, absent, broken };
  struct device_report {
    device_presence presence = device_presence::absent;
    std::string reason;  // empty when usable
  };
  static device_report probe_devices() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status == cudaSuccess && count > 0) return {device_presence::usable, {}};
    if (status == cudaSuccess || status == cudaErrorNoDevice) {
      cudaGetLastError();  // leave no error behind for the next call
      return {device_presence::absent, "no CUDA device is visible (a driver, but no GPU)"};
    }
    cudaGetLastError();
    int driver = 0, runtime = 0;
    const bool driver_known = cudaDriverGetVersion(&driver) == cudaSuccess;
    cudaRuntimeGetVersion(&runtime);
    cudaGetLastError();
    // No driver at all (cudaErrorInsufficientDriver), or the toolkit's stub libcuda standing in
    // for one (cudaErrorStubLibrary): either way the driver reports version 0.
    if (driver_known && driver == 0)
      return {device_presence::absent, "no CUDA device is visible (no CUDA driver is installed)"};
    return {device_presence::broken,
            detail::concat("the CUDA runtime cannot start: ", cudaGetErrorName(status), " (",
                           cudaGetErrorString(status), "); driver supports CUDA ", driver / 1000, ".",
                           driver % 1000 / 10, ", this build's runtime is ", runtime / 1000, ".",
                           runtime % 1000 / 10)};
  }

  // True when a CUDA driver and at least one device are present and the runtime starts. Never
  // throws; probe_devices() says why not.
  static bool device_available() noexcept {
    try {
      return probe_devices().presence == device_presence::usable;
    } catch (...) {  // only an allocation of the reason can throw
      return false;
    }
  }

  bool bound() const { return ctx_ != nullptr; }
  int device() const { return context("exec::cuda::device").device; }
  cudaStream_t stream() const { return context("exec::cuda::stream").stream; }
  device_memory_pool& pool() const { return *context("exec::cuda::pool").pool; }
  kernels::device_status* status() const { return context("exec::cuda::status").status; }

  // The context's cuBLAS handle, bound to the stream, with an explicit workspace.
  cublasHandle_t blas() const {
    cuda_detail::context& ctx = context("exec::cuda::blas");
    std::lock_guard<std::mutex> lock(ctx.blas_mutex);
    if (ctx.blas == nullptr) {
      cublasHandle_t handle = nullptr;
      JETMOE_CUBLAS_CHECK(cublasCreate(&handle));
      try {
        JETMOE_CUBLAS_CHECK(cublasSetStream(handle, ctx.stream));
        JETMOE_CUBLAS_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST));
        JETMOE_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));  // no TF32 for fp32 GEMMs
        void* workspace = ctx.pool->allocate(cuda_detail::context::blas_workspace_bytes, ctx.stream);
        ctx.blas_workspace = workspace;
        JETMOE_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace, cuda_detail::context::blas_workspace_bytes));
      } catch (...) {
        cublasDestroy(handle);
        if (ctx.blas_workspace != nullptr) {  // the next call allocates its own
          ctx.pool->deallocate(ctx.blas_workspace, ctx.stream);
          ctx.blas_workspace = nullptr;
        }
        throw;
      }
      ctx.blas = handle;
    }
    return ctx.blas;
  }

  // ---- the execution_policy interface (tensors allocate through it) ----
  void* allocate(std::size_t bytes) const {
    if (bytes == 0) return nullptr;
    const auto& ctx = context("exec::cuda::allocate");
    return ctx.pool->allocate(bytes, ctx.stream);
  }
  void deallocate(void* ptr, std::size_t /*bytes*/) const {
    if (ptr == nullptr || ctx_ == nullptr) return;
    ctx_->pool->deallocate(ptr, ctx_->stream);
  }
  void fill_zero(void* ptr, std::size_t bytes) const {
    if (bytes == 0) return;
    JETMOE_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream()));
  }
  // Device to device, ordered on the stream.
  void copy(void* dst, const void* src, std::size_t bytes) const {
    if (bytes == 0) return;
    JETMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
  }

  // Waits for everything queued on the stream, then throws the first device-side input error
  // (a bad token id, expert id or gather index) recorded since the last check, clearing it.
  void synchronize() const {
    cuda_detail::context& ctx = context("exec::cuda::synchronize");
    // Copies of a policy share the status mirror: one synchronisation at a time reads it.
    std::lock_guard<std::mutex> lock(ctx.sync_mutex);
    const std::uint64_t mark = ctx.pool->free_mark();
    JETMOE_CUDA_CHECK(cudaMemcpyAsync(ctx.status_host, ctx.status, sizeof(kernels::device_status),
                                      cudaMemcpyDeviceToHost, ctx.stream));
    JETMOE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    ctx.pool->release_stream(ctx.stream, mark);
    const kernels::device_status found = *ctx.status_host;
    if (found.code == kernels::no_device_error) return;
    JETMOE_CUDA_CHECK(cudaMemsetAsync(ctx.status, 0, sizeof(kernels::device_status), ctx.stream));
    throw error(describe(found));
  }

  static std::string describe(const kernels::device_status& s) {
    switch (s.code) {
      case kernels::bad_embedding_id:
        return detail::concat("ops::embedding: token id ", s.value, " at position ", s.where,
                              " is outside the vocabulary [0, ", s.bound, ") (found on the device; nothing was written)");
      case kernels::bad_gather_index:
        return detail::concat("routing::gather: index ", s.value, " at ", s.where, " is outside the ", s.bound,
                              " input rows (found on the device; that row was zeroed)");
      case kernels::bad_position:
        return detail::concat("ops::copy_to_positions: end position ", s.value, " read on the device is outside the ",
                              s.bound, " positions of the destination (found on the device; nothing was written)");
      case kernels::bad_expert_id:
        return detail::concat("routing::build_plan: slot ", s.where, " names expert ", s.value, ", outside [0, ",
                              s.bound, ")");
      default:
        return detail::concat("jetmoe::exec::cuda: unknown device error code ", s.code);
    }
  }

 private:
  static void init_status(cuda_detail::context& ctx) {
    JETMOE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ctx.status), sizeof(kernels::device_status)));
    // On the context's stream, and waited for: a non-blocking stream does not wait for the
    // legacy default stream, so a plain cudaMemset could land after the first report().
    JETMOE_CUDA_CHECK(cudaMemsetAsync(ctx.status, 0, sizeof(kernels::device_status), ctx.stream));
    JETMOE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
    JETMOE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ctx.status_host), sizeof(kernels::device_status)));
  }

  cuda_detail::context& context(const char* who) const {
    check(ctx_ != nullptr, who, ": this exec::cuda policy is unbound (default-constructed); make one with "
                                "exec::cuda::create()");
    return *ctx_;
  }

  std::shared_ptr<cuda_detail::context> ctx_;
};

static_assert(execution_policy<cuda>, "exec::cuda must model execution_policy");

// ---- host ↔ device transfers -----------------------------------------------------------------
namespace cuda_detail {

// Copies a (possibly strided) host view into a contiguous host buffer.
template <class T, std::size_t Rank>
std::vector<std::remove_cv_t<T>> pack(tensor_view<T, Rank> v) {
  using V = std::remove_cv_t<T>;
  std::vector<V> out(static_cast<std::size_t>(v.size()));
  transfer_detail::host_copy(tensor_view<const V, Rank>(v), tensor_view<V, Rank>(out.data(), v.extents()), "exec::cuda pack");
  return out;
}

// Writes a contiguous host buffer into a (possibly strided) host view.
template <class T, std::size_t Rank>
void unpack(const std::remove_cv_t<T>* packed, tensor_view<T, Rank> v) {
  transfer_detail::host_copy(tensor_view<const T, Rank>(packed, v.extents()), v, "exec::cuda unpack");
}

// dst = src for device views of equal extents, any strides, on the policy's stream.
template <class T, std::size_t Rank>
void device_copy(const cuda& policy, tensor_view<const T, Rank> src, tensor_view<T, Rank> dst) {
  check(src.extents() == dst.extents(), "exec::cuda copy: source ", src.extents(), " and destination ",
        dst.extents(), " differ");
  if (src.empty()) return;
  if (src.is_contiguous() && dst.is_contiguous()) {
    policy.copy(dst.data(), src.data(), static_cast<std::size_t>(src.size()) * sizeof(T));
    return;
  }
  constexpr int block = 256;
  kernels::strided_copy<T, Rank><<<kernels::blocks_for(src.size(), block), block, 0, policy.stream()>>>(src, dst);
  JETMOE_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda_detail

// host (any strides) → device view (contiguous), queued on the stream. Pageable host memory may
// be reused as soon as this returns (the runtime stages it before returning); pinned memory
// (cudaMallocHost) is read later, by the copy itself, so keep it unchanged until the stream
// has passed this point.
template <class T, std::size_t Rank>
void copy_to_device(const cuda& policy, tensor_view<const T, Rank> host, tensor_view<T, Rank> device) {
  check(host.extents() == device.extents(), "exec::copy_to_device: host ", host.extents(), " and device ",
        device.extents(), " differ");
  check(device.is_contiguous(), "exec::copy_to_device: the device view must be contiguous");
  if (host.empty()) return;
  const std::size_t bytes = static_cast<std::size_t>(host.size()) * sizeof(T);
  if (host.is_contiguous()) {
    JETMOE_CUDA_CHECK(cudaMemcpyAsync(device.data(), host.data(), bytes, cudaMemcpyHostToDevice, policy.stream()));
    return;
  }
  const auto packed = cuda_detail::pack(host);
  JETMOE_CUDA_CHECK(cudaMemcpyAsync(device.data(), packed.data(), bytes, cudaMemcpyHostToDevice, policy.stream()));
  // `packed` dies here: the pageable-source rule above makes that safe.
}

// device (any strides) → host view (any strides). Synchronises the stream (an API boundary:
// device-side input errors are reported here too).
template <class T, std::size_t Rank>
void copy_to_host(const cuda& policy, tensor_view<const T, Rank> device, tensor_view<T, Rank> host) {
  check(host.extents() == device.extents(), "exec::copy_to_host: device ", device.extents(), " and host ",
        host.extents(), " differ");
  if (device.empty()) {
    policy.synchronize();
    return;
  }
  tensor<T, Rank, cuda> staging;  // contiguous device copy, only when `device` is strided
  tensor_view<const T, Rank> source = device;
  if (!device.is_contiguous()) {
    staging = tensor<T, Rank, cuda>(policy, device.extents());
    cuda_detail::device_copy<T, Rank>(policy, device, staging.view());
    source = staging.view();
  }
  const std::size_t bytes = static_cast<std::size_t>(device.size()) * sizeof(T);
  if (host.is_contiguous()) {
    JETMOE_CUDA_CHECK(cudaMemcpyAsync(host.data(), source.data(), bytes, cudaMemcpyDeviceToHost, policy.stream()));
    policy.synchronize();
  } else {
    std::vector<T> packed(static_cast<std::size_t>(device.size()));
    JETMOE_CUDA_CHECK(cudaMemcpyAsync(packed.data(), source.data(), bytes, cudaMemcpyDeviceToHost, policy.stream()));
    policy.synchronize();
    cuda_detail::unpack(packed.data(), host);
  }
}

// to_device / to_host for this policy: exec/transfer.hpp's, over the two copies above.

// A device view holding `host`'s elements, in `buffer` (anything with reserve(policy, count)
// returning T*, like routing::growable_buffer): how generic code hands host inputs to ops.
// exec/transfer.hpp's exec::cpu overload returns the host view itself.
template <class T, std::size_t Rank, class Buffer>
tensor_view<const T, Rank> staged(const cuda& policy, tensor_view<const T, Rank> host, Buffer& buffer) {
  const tensor_view<T, Rank> device(buffer.reserve(policy, host.size()), host.extents());
  copy_to_device<T, Rank>(policy, host, device);
  return device;
}

}  // namespace jetmoe::exec
