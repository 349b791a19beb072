// bench_cuda — the CUDA backend against the floors of the GPU it runs on, on the shapes and
// routing distributions of the CPU suite (bench/bench_moe.cpp), plus the whole model end to end.
// bench/peers_gpu.py turns its JSON into rows of the same tables as the PyTorch peers.
//
// Shapes (bf16 weights, fp32 activations, as the library computes):
//   jetmoe-8b-mlp   E=8   k=2  H=2048  I=5632     MoE MLP of JetMoE-8B
//   jetmoe-8b-moa   E=8   k=2  H=2048  Dq=2048    MoA of JetMoE-8B
//   mixtral         E=8   k=2  H=4096  I=14336    Mixtral-8x7B-like MLP (2.8 GB of experts)
//   fine-grained    E=128 k=8  H=2048  I=768      many small experts
// Routing distributions uniform, zipf (s = 1) and one-expert (experts 0…k−1), drawn as in the
// CPU suite (bench/routing_distributions.hpp) and imposed the same way: a bias of 64 on each
// token's drawn experts, added to the router logits inside the router's own row kernel (the
// library's route_rows with JetMoE's top-k-then-softmax rule), so the router, the plan and every
// later stage do their ordinary work. Every point checks once that the plan's expert counts are
// the drawn ones. All three distributions for the two JetMoE shapes, uniform only for the
// others (JETMOE_BENCH_ALL_DISTRIBUTIONS=1: all three everywhere).
//
// Benchmarks (name/shape/distribution/T:tokens, as bench/plot.py's parse_name reads them):
//   floor/copy, floor/gemm_bf16    the floors (below), for the record
//   router          ops::linear for the logits + the steered top-k-then-softmax
//   plan            routing::build_plan (CUB) on the router's ids
//   grouped_glu     W_in + SiLU·mul over x read through the plan (indexed input)
//   grouped_linear  W_out over random (R, I) rows
//   combine         k-way weighted combine of random (R, H) rows + bias
//   moe_layer       routing::moe_mlp::forward (router GEMM, plan, fused experts, combine), queued
//   moe_layer_recorded   the same recorded once as a CUDA graph (exec::recorded_work), replayed
//   moa_map, moa_reduce  routing::mixture_of_attention's two halves (jetmoe-8b-moa)
//   generate/jetmoe-8b-random/B:b/P:p/graph:g   the random-weight JetMoE-8B-shape model (bf16
//                   weights, filled on the device) through generation::generate: a prefill of
//                   b×p tokens, then 64 greedy decode steps (JETMOE_BENCH_DECODE_STEPS);
//                   host-clock times as generate reports them; graph:1 replays each decode step
//                   as a CUDA graph, graph:0 queues it kernel by kernel. B:1/P:2048 carries issue
//                   5's two model targets; B:8/P:512 is the batch-8 case. peers_gpu.py runs
//                   transformers on the same (B, P, steps).
//
// Method. CUDA events around each call on the policy's stream. Before every timed call of a
// benchmark that reads weights (router, grouped_*, moe_layer*, moa_*), the L2 is flushed by a
// kernel that READS a 256 MiB buffer (several times the 50–60 MB L2) into a sink, outside the
// events: a memset would leave dirty lines that get written back inside the next timed window.
// plan and combine run warm (their inputs are what the step just wrote). Inputs are random (filled
// on the device), never zeros. 3 untimed warm-up calls per benchmark (the graph variant: queued,
// recorded, replayed). Then JETMOE_BENCH_REPS = 5 repetitions; each repetition times up to
// JETMOE_BENCH_CALLS = 10 calls (fewer once they add up to 20 ms) and reports their mean; the
// JSON keeps every repetition plus median, mean, stddev, cv, min and max (the console shows the
// aggregates only). generate: one call per repetition, after one untimed call of the same
// length. Clocks are not locked (the driver boosts as it likes); the floors are measured in the
// same process, just before the benchmarks.
//
// Floors, the same definitions as bench/peers_gpu.py's:
//   copy bandwidth  cudaMemcpyAsync device→device of 1 GiB of random data, bytes counted read +
//                   written (STREAM's convention, what torch's copy_ measures), best of 12
//   GEMM peak       cuBLAS bf16 8192³, bf16 out, fp32 accumulate, random data, best of 12
// floor = max(bytes / copy bandwidth, FLOPs / GEMM peak); floor_frac = floor / measured time.
// Bytes:
//   blocks (moe_layer*, moa_*), one formula shared with peers_gpu.py so that every
//   implementation of a point is held to the same floor: bf16 weights of the experts that
//   receive rows (from the drawn routing = the plan's counts) + the router weights, and the
//   activations in and out counted at 2 bytes (bf16, the least any implementation moves; the
//   library's fp32 activations get no credit for their extra bytes)
//   stages: the bytes the stage itself must move at the library's types (fp32 activations,
//   int32 indices), expert weights counted as above
// FLOPs: 2 per multiply-add of the expert GEMMs (N = T·k rows) and the router GEMM.
//
// Time budget: the registration order is the priority order (floors, the JetMoE shapes, the model,
// Mixtral-like, fine-grained); once JETMOE_BENCH_BUDGET_S (default 140) seconds have passed, the
// remaining benchmarks are skipped with an error saying so, so the JSON is always complete.
//
// Tokens: T ∈ {1, 16, 64, 256, 1024, 4096, 16384}; JETMOE_BENCH_TOKENS=1,64,512 picks a list.
// JETMOE_BENCH_SKIP_MODEL=1 leaves out generate. Without a GPU the binary says so and exits 0
// (--benchmark_list_tests still lists every benchmark).
#include <benchmark/benchmark.h>

#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include <jetmoe/cuda.cuh>
#include <jetmoe/models/jetmoe.hpp>
#pragma nv_diagnostic pop

#include "floor_counters.hpp"
#include "model_cost.hpp"
#include "routing_distributions.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace jetmoe_bench {

using namespace jetmoe;
namespace routing = jetmoe::routing;
using gpu_policy = exec::cuda;
template <class T, std::size_t R>
using device_tensor = tensor<T, R, gpu_policy>;

const gpu_policy& gpu() {
  static const gpu_policy policy = gpu_policy::create();
  return policy;
}

// ---- options -------------------------------------------------------------------------------------
int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && std::atoi(value) > 0 ? std::atoi(value) : fallback;
}
bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}
int repetitions() { return env_int("JETMOE_BENCH_REPS", 5); }
int max_calls() { return env_int("JETMOE_BENCH_CALLS", 10); }
constexpr double call_cap_seconds = 0.02;  // a repetition stops adding calls past this much GPU time
constexpr int warmup_calls = 3;
index_t decode_steps() { return env_int("JETMOE_BENCH_DECODE_STEPS", 64); }

std::vector<index_t> token_list() {
  std::vector<index_t> list = {1, 16, 64, 256, 1024, 4096, 16384};
  if (const char* env = std::getenv("JETMOE_BENCH_TOKENS"); env != nullptr && *env != '\0') {
    list.clear();
    std::stringstream in(env);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) list.push_back(std::stoll(item));
  }
  return list;
}

// The wall-clock budget: benchmarks that would start after it are skipped.
const std::chrono::steady_clock::time_point& start_time() {
  static const auto start = std::chrono::steady_clock::now();
  return start;
}
double elapsed_seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time()).count(); }
double budget_seconds() { return env_int("JETMOE_BENCH_BUDGET_S", 140); }
bool over_budget() { return elapsed_seconds() > budget_seconds(); }

// ---- device-side fills -------------------------------------------------------------------------
__device__ __host__ inline std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// data[i] uniform in [−scale, scale], a hash of (seed, i): the same values for the same seed.
template <class T>
__global__ void fill_uniform_kernel(T* data, index_t n, float scale, std::uint64_t seed) {
  for (index_t i = kernels::global_thread(); i < n; i += kernels::grid_threads()) {
    const std::uint64_t z = splitmix64(seed ^ (static_cast<std::uint64_t>(i) * 0xD1B54A32D192ED03ull));
    const float unit = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    data[i] = from_float<T>(scale * (2.0f * unit - 1.0f));
  }
}
template <class T>
__global__ void fill_constant_kernel(T* data, index_t n, float value) {
  for (index_t i = kernels::global_thread(); i < n; i += kernels::grid_threads()) data[i] = from_float<T>(value);
}

template <class T>
void fill_uniform(T* data, index_t n, float scale, std::uint64_t seed) {
  if (n == 0) return;
  fill_uniform_kernel<T><<<kernels::blocks_for(n, 256), 256, 0, gpu().stream()>>>(data, n, scale, splitmix64(seed));
  JETMOE_CUDA_CHECK_LAUNCH();
}
template <class T>
void fill_constant(T* data, index_t n, float value) {
  if (n == 0) return;
  fill_constant_kernel<T><<<kernels::blocks_for(n, 256), 256, 0, gpu().stream()>>>(data, n, value);
  JETMOE_CUDA_CHECK_LAUNCH();
}

template <class T, std::size_t R>
device_tensor<T, R> random_tensor(const dims<R>& extents, float scale, std::uint64_t seed) {
  device_tensor<T, R> t(gpu(), extents);
  fill_uniform(t.data(), t.size(), scale, seed);
  return t;
}

// ---- timing -------------------------------------------------------------------------------------------
class event_timer {
 public:
  event_timer() {
    JETMOE_CUDA_CHECK(cudaEventCreate(&start_));
    JETMOE_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~event_timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  event_timer(const event_timer&) = delete;
  event_timer& operator=(const event_timer&) = delete;
  // Seconds between the stream reaching `body`'s first and last queued work.
  template <class Body>
  double time(cudaStream_t stream, Body&& body) {
    JETMOE_CUDA_CHECK(cudaEventRecord(start_, stream));
    body();
    JETMOE_CUDA_CHECK(cudaEventRecord(stop_, stream));
    JETMOE_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0.0f;
    JETMOE_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms * 1e-3;
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

event_timer& timer() {
  static event_timer t;
  return t;
}

int multiprocessors() {
  static const int count = [] {
    int n = 0;
    JETMOE_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, gpu().device()));
    return n;
  }();
  return count;
}

// Reads n float4 and writes one float only if their sum is an unlikely value: the loads cannot be
// dropped, and almost nothing is written.
template <class Ignored = void>
__global__ void read_into_sink(const float4* data, index_t n, float* sink) {
  float acc = 0.0f;
  for (index_t i = kernels::global_thread(); i < n; i += kernels::grid_threads()) {
    const float4 v = data[i];
    acc += (v.x + v.y) + (v.z + v.w);
  }
  if (acc == 1234.5678f) *sink = acc;
}

// Evicts the L2 by reading a 256 MiB buffer: the next call finds its weights in HBM, as it would
// after the other layers of a model ran, and nothing dirty is left to be written back later.
void flush_l2() {
  constexpr index_t bytes = index_t{256} << 20;
  static const device_tensor<float, 1> buffer = random_tensor<float, 1>(make_dims(bytes / 4), 1.0f, 99);
  static device_tensor<float, 1> sink(gpu(), make_dims(1));
  read_into_sink<><<<4 * multiprocessors(), 512, 0, gpu().stream()>>>(reinterpret_cast<const float4*>(buffer.data()),
                                                                        bytes / 16, sink.data());
  JETMOE_CUDA_CHECK_LAUNCH();
}

// ---- floors ---------------------------------------------------------------------------------------------
struct hardware_floors {
  double copy_bytes_per_second = 0.0;
  double gemm_flops_per_second = 0.0;
};

hardware_floors& floors() {
  static hardware_floors f;
  return f;
}

void measure_floors() {
  hardware_floors& f = floors();
  const gpu_policy& g = gpu();
  {
    const index_t bytes = index_t{1} << 30;
    device_tensor<float, 1> a = random_tensor<float, 1>(make_dims(bytes / 4), 1.0f, 1);
    device_tensor<float, 1> b(g, make_dims(bytes / 4));
    double best = 1e30;
    for (int run = 0; run < 12; ++run)
      best = std::min(best, timer().time(g.stream(), [&] {
        JETMOE_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice,
                                          g.stream()));
      }));
    f.copy_bytes_per_second = 2.0 * static_cast<double>(bytes) / best;
  }
  {
    const int n = 8192;
    device_tensor<bf16, 2> a = random_tensor<bf16, 2>(make_dims(n, n), 1.0f, 2);
    device_tensor<bf16, 2> b = random_tensor<bf16, 2>(make_dims(n, n), 1.0f, 3);
    device_tensor<bf16, 2> c(g, make_dims(n, n));
    const float alpha = 1.0f, beta = 0.0f;
    double best = 1e30;
    for (int run = 0; run < 12; ++run)
      best = std::min(best, timer().time(g.stream(), [&] {
        JETMOE_CUBLAS_CHECK(cublasGemmEx(g.blas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.data(), CUDA_R_16BF, n,
                                         b.data(), CUDA_R_16BF, n, &beta, c.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
      }));
    f.gemm_flops_per_second = 2.0 * static_cast<double>(n) * n * n / best;
  }
  g.synchronize();
}

double floor_seconds(double bytes, double flops) {
  return std::max(bytes / floors().copy_bytes_per_second, flops / floors().gemm_flops_per_second);
}

// The shared counters (bench/floor_counters.hpp), on the GPU floors.
void set_floor_counters(benchmark::State& state, double seconds, double bytes, double flops) {
  const hardware_floors& f = floors();
  write_floor_counters(state, f.copy_bytes_per_second, f.gemm_flops_per_second, seconds, bytes, flops);
}

// Runs a benchmark body; a jetmoe or CUDA error becomes this benchmark's error (the JSON keeps it,
// the run goes on), and a benchmark (`id`) whose first repetition would start past the budget is
// skipped, all its repetitions (one that has started finishes them all).
template <class Body>
void guarded(benchmark::State& state, int id, Body&& body) {
  static int current = -1;
  static bool skipping = false;
  if (id != current) {
    current = id;
    skipping = over_budget();
  }
  if (skipping) {
    state.SkipWithError("skipped: bench_cuda's time budget (JETMOE_BENCH_BUDGET_S) is spent");
    return;
  }
  try {
    body();
  } catch (const std::exception& e) {
    std::cerr << "bench_cuda: error: " << e.what() << "\n";
    state.SkipWithError(e.what());
  }
}

// Times `call` (which only queues work) per repetition: up to max_calls() calls, fewer once they
// add up to call_cap_seconds, each after an L2 flush when `cold`. The first repetition of each
// benchmark (`id`) is preceded by warmup_calls untimed calls. Returns the mean seconds per call of
// the last repetition, which is also its manual time.
template <class Call>
double time_calls(benchmark::State& state, int id, bool cold, Call&& call) {
  static int warmed = -1;
  const cudaStream_t stream = gpu().stream();
  if (warmed != id) {
    for (int i = 0; i < warmup_calls; ++i) call();
    gpu().synchronize();
    warmed = id;
  }
  double mean = 0.0;
  int calls = 0;
  for (auto _ : state) {
    double total = 0.0;
    calls = 0;
    while (calls < max_calls() && (calls == 0 || total < call_cap_seconds)) {
      if (cold) flush_l2();
      total += timer().time(stream, call);
      ++calls;
    }
    mean = total / calls;
    state.SetIterationTime(mean);
  }
  gpu().synchronize();  // reports a device-side error (bad id, fault) as this benchmark's
  state.counters["calls"] = calls;
  return mean;
}

// ---- shapes and weights -----------------------------------------------------------------------------
struct mlp_shape {
  const char* name;
  index_t experts, top_k, hidden, inner;
};
constexpr mlp_shape jetmoe_mlp{"jetmoe-8b-mlp", 8, 2, 2048, 5632};
constexpr mlp_shape mixtral{"mixtral", 8, 2, 4096, 14336};
constexpr mlp_shape fine_grained{"fine-grained", 128, 8, 2048, 768};

struct moa_shape {
  const char* name;
  index_t experts, top_k, hidden, width;  // width = Dq
};
constexpr moa_shape jetmoe_moa{"jetmoe-8b-moa", 8, 2, 2048, 2048};

// Weights of one shape, filled on the device; one MLP shape alive at a time.
struct mlp_weights_holder {
  mlp_shape shape;
  device_tensor<bf16, 2> router;  // (E, H)
  device_tensor<bf16, 3> input;   // (E, 2I, H)
  device_tensor<bf16, 3> output;  // (E, H, I)
  device_tensor<bf16, 1> bias;    // (H)
  explicit mlp_weights_holder(const mlp_shape& s)
      : shape(s),
        router(random_tensor<bf16, 2>(make_dims(s.experts, s.hidden), 0.05f, 11)),
        input(random_tensor<bf16, 3>(make_dims(s.experts, 2 * s.inner, s.hidden), 0.02f, 12)),
        output(random_tensor<bf16, 3>(make_dims(s.experts, s.hidden, s.inner), 0.02f, 13)),
        bias(random_tensor<bf16, 1>(make_dims(s.hidden), 0.01f, 14)) {}
  routing::moe_mlp_weights<bf16> view() const { return {router.view(), input.view(), output.view(), bias.view()}; }
};

struct moa_weights_holder {
  device_tensor<bf16, 2> router;  // (E, H)
  device_tensor<bf16, 3> input;   // (E, Dq, H)
  device_tensor<bf16, 3> output;  // (E, H, Dq)
  device_tensor<bf16, 1> bias;    // (H)
  explicit moa_weights_holder(const moa_shape& s)
      : router(random_tensor<bf16, 2>(make_dims(s.experts, s.hidden), 0.05f, 21)),
        input(random_tensor<bf16, 3>(make_dims(s.experts, s.width, s.hidden), 0.02f, 22)),
        output(random_tensor<bf16, 3>(make_dims(s.experts, s.hidden, s.width), 0.02f, 23)),
        bias(random_tensor<bf16, 1>(make_dims(s.hidden), 0.01f, 24)) {}
  routing::moa_weights<bf16> view() const { return {router.view(), input.view(), output.view(), bias.view()}; }
};

const mlp_weights_holder& mlp_weights(const mlp_shape& s) {
  static std::unique_ptr<mlp_weights_holder> current;
  if (!current || std::string(current->shape.name) != s.name) {
    current.reset();  // free the previous shape first
    current = std::make_unique<mlp_weights_holder>(s);
  }
  return *current;
}

const moa_weights_holder& moa_weights() {
  static const moa_weights_holder w(jetmoe_moa);
  return w;
}

// ---- the steered router -------------------------------------------------------------------------------
// JetMoE's top-k-then-softmax row rule on logits + bias, the bias read inside the same row kernel
// (routing::route_rows): the router costs the launches of the plain one plus a (T, E) read.
struct steered_rule {
  const float* bias = nullptr;  // (T, E) device memory
  index_t scratch_floats(index_t /*experts*/) const { return 0; }
  JETMOE_HD void operator()(index_t token, const float* logits, index_t experts, index_t k, float* /*scratch*/,
                            std::int32_t* ids, float* gates) const {
    const float* b = bias + token * experts;
    index_t filled = 0;  // rules::select_top_k over logits[e] + b[e]: the same ranking and ties
    for (index_t e = 0; e < experts; ++e) {
      const float v = logits[e] + b[e];
      if (filled == k && !routing::rules::ranks_before(v, e, gates[k - 1], ids[k - 1])) continue;
      index_t pos = filled < k ? filled++ : k - 1;
      while (pos > 0 && routing::rules::ranks_before(v, e, gates[pos - 1], ids[pos - 1])) {
        gates[pos] = gates[pos - 1];
        ids[pos] = ids[pos - 1];
        --pos;
      }
      gates[pos] = v;
      ids[pos] = static_cast<std::int32_t>(e);
    }
    routing::rules::softmax(gates, gates, k);  // the equal bias cancels
  }
};

struct steered_router {
  const float* bias = nullptr;  // (T, E)
  index_t tokens = 0;
  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k, tensor_view<std::int32_t, 2> expert_ids,
             tensor_view<float, 2> gates) const {
    routing::check_route_arguments("bench_cuda steered_router", logits, k, k, expert_ids, gates);
    check(logits.extent(0) == tokens, "bench_cuda steered_router: steered for ", tokens, " tokens, routing ",
          logits.extent(0));
    routing::route_rows(policy, logits, k, expert_ids, gates, steered_rule{bias});
  }
};

// Drawn routing for one point: ids, the steering bias on the device, the counts it must give.
struct drawn_routing {
  std::vector<index_t> counts;  // (E) rows per expert
  index_t used = 0;             // experts with rows
  device_tensor<float, 2> bias;  // (T, E)

  drawn_routing(distribution d, index_t tokens, index_t experts, index_t k, std::uint64_t seed) {
    const auto chosen = draw_experts(d, tokens, experts, k, seed);
    counts = expert_counts(chosen, experts);
    used = experts_receiving(counts);
    const auto host = steering_logit_bias(chosen, tokens, experts, k);
    bias = exec::to_device(gpu(), make_view<const float>(host.data(), tokens, experts));
  }
  steered_router router(index_t tokens) const { return {bias.data(), tokens}; }

  // Throws when the plan's counts are not the drawn ones (the steering did not take).
  template <class Plan>
  void check_plan(const Plan& plan) const {
    const auto got = exec::to_host(gpu(), plan.counts());
    for (index_t e = 0; e < got.size(); ++e)
      check(got(e) == counts[static_cast<std::size_t>(e)], "bench_cuda: expert ", e, " got ", got(e),
            " rows, the drawn routing gives it ", counts[static_cast<std::size_t>(e)]);
  }
};

// The state of the point last asked for, per type: built on first use, kept while its benchmarks
// run, freed when another point comes.
template <class Point, class Make>
Point& cached_point(const std::string& key, Make&& make) {
  static std::string current_key;
  static std::unique_ptr<Point> current;
  if (!current || current_key != key) {
    current.reset();
    current_key.clear();
    current = make();
    current_key = key;
  }
  return *current;
}

std::uint64_t seed_of(const std::string& key) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char c : key) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// ---- the MoE MLP ----------------------------------------------------------------------------------------
enum class mlp_stage { router, plan, grouped_glu, grouped_linear, combine, layer, layer_recorded };
constexpr mlp_stage mlp_stages[] = {mlp_stage::router,  mlp_stage::plan,  mlp_stage::grouped_glu,  mlp_stage::grouped_linear,
                                    mlp_stage::combine, mlp_stage::layer, mlp_stage::layer_recorded};

const char* name_of(mlp_stage stage) {
  switch (stage) {
    case mlp_stage::router: return "router";
    case mlp_stage::plan: return "plan";
    case mlp_stage::grouped_glu: return "grouped_glu";
    case mlp_stage::grouped_linear: return "grouped_linear";
    case mlp_stage::combine: return "combine";
    case mlp_stage::layer: return "moe_layer";
    case mlp_stage::layer_recorded: return "moe_layer_recorded";
  }
  return "?";
}

struct work {
  double bytes = 0.0, flops = 0.0;
};

constexpr double weight_bytes = 2.0;      // bf16
constexpr double float_bytes = 4.0;       // the library's fp32 activations
constexpr double block_act_bytes = 2.0;   // activations in the shared block floor (see the header)

work mlp_stage_work(mlp_stage stage, const mlp_shape& s, index_t T, index_t used) {
  const double H = static_cast<double>(s.hidden), I = static_cast<double>(s.inner), E = static_cast<double>(s.experts);
  const double k = static_cast<double>(s.top_k), tokens = static_cast<double>(T), rows = tokens * k;
  const double experts = static_cast<double>(used);
  switch (stage) {
    case mlp_stage::router:  // router weights, x, logits written and read, the steering bias, ids + gates
      return {weight_bytes * E * H + float_bytes * tokens * (H + 3.0 * E) + 8.0 * rows, 2.0 * tokens * E * H};
    case mlp_stage::plan: return {4.0 * 4.0 * rows, 0.0};  // ids in; slot, token, inverse out
    case mlp_stage::grouped_glu:
      return {weight_bytes * experts * 2.0 * I * H + float_bytes * rows * (H + I), 2.0 * rows * 2.0 * I * H};
    case mlp_stage::grouped_linear:
      return {weight_bytes * experts * H * I + float_bytes * rows * (H + I), 2.0 * rows * H * I};
    case mlp_stage::combine: return {float_bytes * (rows + tokens) * H + 8.0 * rows, 2.0 * rows * H};
    case mlp_stage::layer:
    case mlp_stage::layer_recorded:
      return {weight_bytes * (experts * 3.0 * H * I + E * H) + block_act_bytes * 2.0 * tokens * H,
              2.0 * rows * 3.0 * H * I + 2.0 * tokens * H * E};
  }
  return {};
}

// Why a recording failed, where the library says (exec::recorded_work::failure), else nothing.
template <class Recorded>
std::string recording_failure(const Recorded& r) {
  if constexpr (requires { r.failure(); })
    return r.failure().empty() ? std::string() : ": " + r.failure();
  else
    return {};
}

struct mlp_point {
  mlp_shape shape;
  index_t tokens;
  drawn_routing drawn;
  device_tensor<float, 2> x, y, logits;   // (T, H), (T, H), (T, E)
  device_tensor<std::int32_t, 2> ids;     // (T, k) the router stage's output
  device_tensor<float, 2> gates;          // (T, k)
  routing::routing_workspace<gpu_policy> stage_ws, layer_ws;
  device_tensor<float, 2> u, z;           // (R, I), (R, H) random stage inputs
  device_tensor<float, 2> u_out, z_out;   // (R, I), (R, H) stage outputs
  exec::recorded_work<gpu_policy> recorded;

  mlp_point(const mlp_shape& s, distribution d, index_t T, std::uint64_t seed)
      : shape(s), tokens(T), drawn(d, T, s.experts, s.top_k, seed),
        x(random_tensor<float, 2>(make_dims(T, s.hidden), 1.0f, seed + 1)), y(gpu(), make_dims(T, s.hidden)),
        logits(gpu(), make_dims(T, s.experts)), ids(gpu(), make_dims(T, s.top_k)), gates(gpu(), make_dims(T, s.top_k)) {
    const mlp_weights_holder& w = mlp_weights(s);
    ops::linear(gpu(), x.view(), w.router.view(), logits.view());
    const auto& plan = routing::plan_routing(gpu(), router(), logits.view(), s.top_k, stage_ws.plan);
    drawn.check_plan(plan);
    const index_t R = plan.max_sorted_rows();
    u = random_tensor<float, 2>(make_dims(R, s.inner), 1.0f, seed + 2);
    z = random_tensor<float, 2>(make_dims(R, s.hidden), 1.0f, seed + 3);
    u_out = device_tensor<float, 2>(gpu(), make_dims(R, s.inner));
    z_out = device_tensor<float, 2>(gpu(), make_dims(R, s.hidden));
    gpu().synchronize();
  }
  steered_router router() const { return drawn.router(tokens); }
};

void bm_mlp(benchmark::State& state, int id, mlp_stage stage, mlp_shape s, distribution d) {
  guarded(state, id, [&] {
    const index_t T = state.range(0);
    const std::string key = std::string(s.name) + "/" + name_of(d) + "/" + std::to_string(T);
    const mlp_weights_holder& w = mlp_weights(s);
    mlp_point& p = cached_point<mlp_point>(key, [&] { return std::make_unique<mlp_point>(s, d, T, seed_of(key)); });
    auto& plan = p.stage_ws.plan;
    double seconds = 0.0;
    switch (stage) {
      case mlp_stage::router: {
        const steered_router r = p.router();
        seconds = time_calls(state, id, true, [&] {
          ops::linear(gpu(), p.x.view(), w.router.view(), p.logits.view());
          r.route(gpu(), p.logits.view(), s.top_k, p.ids.view(), p.gates.view());
        });
        break;
      }
      case mlp_stage::plan:
        seconds = time_calls(state, id, false, [&] {
          plan.prepare(gpu(), T, s.top_k, s.experts);  // same sizes: the router's ids stay
          routing::build_plan(gpu(), plan);
        });
        break;
      case mlp_stage::grouped_glu: {
        const auto in = routing::expert_input::indexed(p.x.view(), plan.sorted_token());
        seconds = time_calls(state, id, true,
                             [&] { routing::grouped_glu(gpu(), plan, in, w.input.view(), p.u_out.view(), p.stage_ws.experts); });
        break;
      }
      case mlp_stage::grouped_linear: {
        const auto in = routing::expert_input::sorted(p.u.view());
        seconds = time_calls(state, id, true,
                             [&] { routing::grouped_linear(gpu(), plan, in, w.output.view(), p.z_out.view(), p.stage_ws.experts); });
        break;
      }
      case mlp_stage::combine:
        seconds = time_calls(state, id, false, [&] {
          routing::combine(gpu(), plan, tensor_view<const float, 2>(p.z.view()), p.y.view(), w.bias.view());
        });
        break;
      case mlp_stage::layer: {
        const routing::moe_mlp<steered_router> moe{.router = p.router(), .top_k = s.top_k};
        const auto weights = w.view();
        seconds = time_calls(state, id, true, [&] { moe.forward(gpu(), weights, p.x.view(), p.y.view(), p.layer_ws); });
        break;
      }
      case mlp_stage::layer_recorded: {
        // Warm-up: queued (first sight), recorded, replayed; every timed call is one graph launch.
        const routing::moe_mlp<steered_router> moe{.router = p.router(), .top_k = s.top_k};
        const auto weights = w.view();
        const exec::recording_key rkey{seed_of(key), static_cast<std::uint64_t>(T), 0, 0};
        seconds = time_calls(state, id, true, [&] {
          p.recorded.run(gpu(), rkey, [&] { moe.forward(gpu(), weights, p.x.view(), p.y.view(), p.layer_ws); });
        });
        // A recording that failed falls back to queued work: its numbers would be moe_layer's.
        check(p.recorded.has_recording(), "bench_cuda: the layer could not be recorded as a CUDA graph",
              recording_failure(p.recorded));
        break;
      }
    }
    const work needed = mlp_stage_work(stage, s, T, p.drawn.used);
    set_floor_counters(state, seconds, needed.bytes, needed.flops);
    state.counters["tokens"] = static_cast<double>(T);
    state.counters["experts_used"] = static_cast<double>(p.drawn.used);
  });
}

// ---- the MoA ----------------------------------------------------------------------------------------------
enum class moa_half { map, reduce };

work moa_work(moa_half half, const moa_shape& s, index_t T, index_t used) {
  const double H = static_cast<double>(s.hidden), Dq = static_cast<double>(s.width), E = static_cast<double>(s.experts);
  const double k = static_cast<double>(s.top_k), tokens = static_cast<double>(T), rows = tokens * k;
  const double weights = weight_bytes * static_cast<double>(used) * Dq * H;
  const double activations = block_act_bytes * tokens * (H + k * Dq);
  if (half == moa_half::map) return {weights + weight_bytes * E * H + activations, 2.0 * rows * Dq * H + 2.0 * tokens * H * E};
  return {weights + activations, 2.0 * rows * Dq * H};
}

struct moa_point {
  index_t tokens;
  drawn_routing drawn;
  device_tensor<float, 2> x, y;  // (T, H)
  device_tensor<float, 3> q, o;  // (T, k, Dq); o: a random attention output
  routing::routing_workspace<gpu_policy> ws;
  routing::mixture_of_attention<steered_router> moa;

  moa_point(const moa_shape& s, distribution d, index_t T, std::uint64_t seed)
      : tokens(T), drawn(d, T, s.experts, s.top_k, seed),
        x(random_tensor<float, 2>(make_dims(T, s.hidden), 1.0f, seed + 1)), y(gpu(), make_dims(T, s.hidden)),
        q(gpu(), make_dims(T, s.top_k, s.width)), o(random_tensor<float, 3>(make_dims(T, s.top_k, s.width), 1.0f, seed + 2)) {
    moa.router = drawn.router(T);
    moa.top_k = s.top_k;
    drawn.check_plan(moa.map(gpu(), moa_weights().view(), x.view(), q.view(), ws));  // reduce reuses this plan
    gpu().synchronize();
  }
};

void bm_moa(benchmark::State& state, int id, moa_half half, moa_shape s, distribution d) {
  guarded(state, id, [&] {
    const index_t T = state.range(0);
    const std::string key = std::string(s.name) + "/" + name_of(d) + "/" + std::to_string(T);
    const auto weights = moa_weights().view();
    moa_point& p = cached_point<moa_point>(key, [&] { return std::make_unique<moa_point>(s, d, T, seed_of(key)); });
    const double seconds =
        half == moa_half::map
            ? time_calls(state, id, true, [&] { p.moa.map(gpu(), weights, p.x.view(), p.q.view(), p.ws); })
            : time_calls(state, id, true, [&] {
                p.moa.reduce(gpu(), weights, p.ws.plan, tensor_view<const float, 3>(p.o.view()), p.y.view(), p.ws);
              });
    const work needed = moa_work(half, s, T, p.drawn.used);
    set_floor_counters(state, seconds, needed.bytes, needed.flops);
    state.counters["tokens"] = static_cast<double>(T);
    state.counters["experts_used"] = static_cast<double>(p.drawn.used);
  });
}

// ---- the whole model ------------------------------------------------------------------------------------
using gpu_8b_model = models::jetmoe::model<bf16, routing::top_k_then_softmax, gpu_policy>;

// random_init's weights (matrices uniform with stddev 0.02, norms 1, biases 0), but drawn on the
// device: no 17 GB host draw and upload.
gpu_8b_model make_random_8b() {
  namespace jm = models::jetmoe;
  const jm::config c = jetmoe_8b_config();
  jm::weights<bf16, gpu_policy> w;
  w.tied = c.tie_word_embeddings;
  std::uint64_t tensor_index = 0;
  const float half_width = 0.02f * std::sqrt(3.0f);
  jm::detail::for_each_weight(w, c, [&](auto& target, const std::string& name, const auto& shape) {
    using tensor_type = std::remove_reference_t<decltype(target)>;
    target = tensor_type(gpu(), shape);
    if (name.ends_with("layernorm.weight") || name == "model.norm.weight")
      fill_constant(target.data(), target.size(), 1.0f);
    else if (name.ends_with(".bias"))
      fill_constant(target.data(), target.size(), 0.0f);
    else
      fill_uniform(target.data(), target.size(), half_width, 2024 + (++tensor_index));
  });
  gpu().synchronize();
  return gpu_8b_model(c, std::move(w), gpu());
}

gpu_8b_model& model_8b() {
  static gpu_8b_model m = [] {
    const auto start = std::chrono::steady_clock::now();
    auto made = make_random_8b();
    std::cerr << "bench_cuda: random JetMoE-8B-shape model (bf16) ready in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
    return made;
  }();
  return m;
}

void bm_generate(benchmark::State& state, int id) {
  guarded(state, id, [&] {
    static int warmed = -1;
    const index_t batch = state.range(0), prompt = state.range(1), steps = decode_steps();
    gpu_8b_model& m = model_8b();
    m.set_step_recording(state.range(2) != 0);
    const auto prompts = random_prompts(batch, prompt, m.vocab_size());
    generation::generation_options options;
    options.max_new_tokens = steps + 1;  // greedy, no EOS: the first new token comes from the prefill
    if (warmed != id) {  // the same call: the pool holds the cache's size, cuBLAS and the kernels are loaded
      (void)generation::generate(m, prompts, options);
      warmed = id;
    }
    double prefill_s = 0.0, decode_s = 0.0, prompt_tokens = 0.0, decode_tokens = 0.0;
    for (auto _ : state) {
      const auto result = generation::generate(m, prompts, options);
      state.SetIterationTime(result.prefill_seconds + result.decode_seconds);
      prefill_s = result.prefill_seconds;
      decode_s = result.decode_seconds;
      prompt_tokens = static_cast<double>(result.prompt_tokens);
      decode_tokens = static_cast<double>(result.generated_tokens - batch);
    }
    const double b = static_cast<double>(batch), p = static_cast<double>(prompt), n = static_cast<double>(steps);
    const model_cost cost(m.cfg());
    const double prefill_bytes = 2.0 * cost.total_params(), prefill_flops = cost.prefill_flops(b, p);
    const double decode_bytes = cost.decode_bytes(b, p + n / 2.0, 2.0), decode_flops = cost.decode_flops(b, p + n / 2.0);
    const double step_s = decode_s / n;
    state.counters["batch"] = b;
    state.counters["prompt"] = p;
    state.counters["new_tokens"] = n + 1.0;
    state.counters["decode_steps"] = n;
    state.counters["prefill_s"] = prefill_s;
    state.counters["decode_step_s"] = step_s;
    state.counters["prefill_tok_s"] = prompt_tokens / prefill_s;
    state.counters["decode_tok_s"] = decode_tokens / decode_s;
    state.counters["prefill_bytes"] = prefill_bytes;
    state.counters["prefill_flops"] = prefill_flops;
    state.counters["decode_bytes"] = decode_bytes;  // per step, at the mean cached length
    state.counters["decode_flops"] = decode_flops;
    state.counters["prefill_floor_frac"] = floor_seconds(prefill_bytes, prefill_flops) / prefill_s;
    state.counters["decode_floor_frac"] = floor_seconds(decode_bytes, decode_flops) / step_s;
    state.counters["floor_copy_GBps"] = floors().copy_bytes_per_second * 1e-9;
    state.counters["floor_gemm_GFLOPs"] = floors().gemm_flops_per_second * 1e-9;
    // graph:1 must really replay its steps: a recording that failed falls back to queued steps.
    state.counters["graph_replayed"] = m.has_recorded_step() ? 1.0 : 0.0;
    if (state.range(2) != 0 && !m.has_recorded_step()) {
      std::string why;
      if constexpr (requires { m.step_recording_failure(); }) why = m.step_recording_failure();
      std::cerr << "bench_cuda: generate graph:1 ran its decode steps unrecorded" << (why.empty() ? "" : ": ") << why
                << "\n";
      state.SetLabel("decode steps NOT replayed as a graph" + (why.empty() ? std::string() : ": " + why));
    }
  });
}

// ---- registration --------------------------------------------------------------------------------------
void bm_floor_copy(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(2.0 * double(index_t{1} << 30) / floors().copy_bytes_per_second);
  state.counters["GBps"] = floors().copy_bytes_per_second * 1e-9;
}
void bm_floor_gemm(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(2.0 * 8192.0 * 8192.0 * 8192.0 / floors().gemm_flops_per_second);
  state.counters["GFLOPs"] = floors().gemm_flops_per_second * 1e-9;
}

void add_spread_statistics(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  b->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b) {
  b->UseManualTime()->Iterations(1)->Repetitions(repetitions())->DisplayAggregatesOnly(true);
  add_spread_statistics(b);
  return b;
}

std::vector<distribution> distributions_for(bool jetmoe_shape) {
  if (jetmoe_shape || env_flag("JETMOE_BENCH_ALL_DISTRIBUTIONS"))
    return {distribution::uniform, distribution::zipf, distribution::one_expert};
  return {distribution::uniform};
}

void register_mlp(const mlp_shape& s, bool jetmoe_shape, int& next_id) {
  for (const distribution d : distributions_for(jetmoe_shape))
    for (const index_t T : token_list())
      for (const mlp_stage stage : mlp_stages) {
        const std::string name = std::string(name_of(stage)) + "/" + s.name + "/" + name_of(d);
        configure(benchmark::RegisterBenchmark(name.c_str(), bm_mlp, next_id++, stage, s, d))
            ->Arg(T)
            ->ArgName("T")
            ->Unit(benchmark::kMicrosecond);
      }
}

void register_moa(const moa_shape& s, int& next_id) {
  for (const distribution d : distributions_for(true))
    for (const index_t T : token_list())
      for (const moa_half half : {moa_half::map, moa_half::reduce}) {
        const std::string name = std::string(half == moa_half::map ? "moa_map/" : "moa_reduce/") + s.name + "/" + name_of(d);
        configure(benchmark::RegisterBenchmark(name.c_str(), bm_moa, next_id++, half, s, d))
            ->Arg(T)
            ->ArgName("T")
            ->Unit(benchmark::kMicrosecond);
      }
}

// Registration order = priority order (see the budget in the header).
void register_all() {
  configure(benchmark::RegisterBenchmark("floor/copy", bm_floor_copy))->Repetitions(1)->Unit(benchmark::kMillisecond);
  configure(benchmark::RegisterBenchmark("floor/gemm_bf16", bm_floor_gemm))->Repetitions(1)->Unit(benchmark::kMillisecond);
  int id = 0;
  register_mlp(jetmoe_mlp, true, id);
  register_moa(jetmoe_moa, id);
  if (!env_flag("JETMOE_BENCH_SKIP_MODEL")) {
    // (B, P, graph): the issue-5 targets' case queued and as graphs, then batch 8.
    constexpr std::array<std::array<index_t, 3>, 3> cases{{{1, 2048, 1}, {1, 2048, 0}, {8, 512, 1}}};
    for (const auto& [batch, prompt, graph] : cases)
      configure(benchmark::RegisterBenchmark("generate/jetmoe-8b-random", bm_generate, id++))
          ->ArgNames({"B", "P", "graph"})
          ->Args({batch, prompt, graph})
          ->Unit(benchmark::kMillisecond);
  }
  register_mlp(mixtral, false, id);
  register_mlp(fine_grained, false, id);
}

void add_context() {
  cudaDeviceProp props{};
  JETMOE_CUDA_CHECK(cudaGetDeviceProperties(&props, gpu().device()));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  const auto text = [](double v) {
    std::ostringstream out;
    out << v;
    return out.str();
  };
  benchmark::AddCustomContext("gpu_name", props.name);
  benchmark::AddCustomContext("gpu_multiprocessors", std::to_string(props.multiProcessorCount));
  benchmark::AddCustomContext("gpu_l2_bytes", std::to_string(props.l2CacheSize));
  benchmark::AddCustomContext("gpu_memory_bytes", std::to_string(props.totalGlobalMem));
  benchmark::AddCustomContext("cuda_driver", std::to_string(driver));
  benchmark::AddCustomContext("cuda_runtime", std::to_string(runtime));
  benchmark::AddCustomContext("floor_copy_GBps", text(floors().copy_bytes_per_second * 1e-9));
  benchmark::AddCustomContext("floor_gemm_GFLOPs", text(floors().gemm_flops_per_second * 1e-9));
  benchmark::AddCustomContext("jetmoe_repetitions", std::to_string(repetitions()));
  benchmark::AddCustomContext("jetmoe_budget_s", text(budget_seconds()));
  benchmark::AddCustomContext("jetmoe_decode_steps", std::to_string(decode_steps()));
  benchmark::AddCustomContext(
      "note", "CUDA events per call; L2 flushed by a 256 MiB read before calls that read weights; clocks not locked; "
              "Debian's libbenchmark is a DEBUG build (its own bookkeeping only)");
}

}  // namespace jetmoe_bench

int main(int argc, char** argv) {
  using namespace jetmoe_bench;
  (void)start_time();
  bool listing = false;  // --benchmark_list_tests works without a GPU (registration touches none)
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--benchmark_list_tests", 0) == 0) listing = arg.find("=false") == std::string::npos && arg.find("=0") == std::string::npos;
  }
  const jetmoe::exec::cuda::device_report devices = jetmoe::exec::cuda::probe_devices();
  const bool device = devices.presence == jetmoe::exec::cuda::device_presence::usable;
  if (devices.presence == jetmoe::exec::cuda::device_presence::broken && !listing) {
    std::cerr << "bench_cuda: " << devices.reason << "\n";
    return 1;
  }
  if (!device && !listing) {
    std::cout << "bench_cuda: " << devices.reason << ": nothing to measure. "
                 "Run it on a machine with an NVIDIA GPU (see docs/benchmarks.md).\n";
    return 0;
  }
  if (device) {
    try {
      measure_floors();
      std::cerr << "bench_cuda: floors: copy " << floors().copy_bytes_per_second * 1e-9
                << " GB/s (read + write), bf16 GEMM " << floors().gemm_flops_per_second * 1e-12 << " TFLOP/s; budget "
                << budget_seconds() << " s\n";
      add_context();
    } catch (const std::exception& e) {
      std::cerr << "bench_cuda: cannot measure the floors: " << e.what() << "\n";
      return 1;
    }
  }
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (device) std::cerr << "bench_cuda: done in " << elapsed_seconds() << " s\n";
  return 0;
}
