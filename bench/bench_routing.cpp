// bench_routing — expert routing on JetMoE-8B's MoE MLP shapes (E = 8, k = 2, H = 2048,
// I = 5632, bf16 weights, fp32 activations), T = 1 … 4096 tokens.
//
// Stages: router (top-k then softmax on fp32 logits), plan (counting sort), gather, grouped
// GLU GEMM (W_in + SiLU·mul), grouped output GEMM (W_out), combine; then the full layer
// (default input path) against its dense equivalent, and the two input paths against each
// other (indexed: x read through the plan one tile at a time; gathered: one (N, H) copy first).
//
// The layer benchmarks report their time as a ratio to the dense equivalent: a dense GLU MLP
// with the same FLOPs per token (intermediate width k·I, bf16 weights, the same ops::linear
// and ops::glu), timed in the same iterations, interleaved with the MoE layer so that noise
// from a shared machine hits both alike. Counters:
//   dense_ms  the dense equivalent's time per iteration
//   ratio     MoE layer time / dense time, wall clock (target: ≤ 1.25 for T ≥ 256)
//   cpu_ratio the same with process CPU time: on a machine shared with other jobs, wall time
//             also counts the waits for descheduled threads, CPU time mostly does not
//   GFLOPs    useful GEMM FLOPs of the MoE layer per second
//
// All runs use the CPU policy's default thread count (one per hardware thread) unless the
// environment sets JETMOE_BENCH_THREADS; the context line jetmoe_threads says which. On a
// busy shared machine, a single thread avoids timing the waits for descheduled workers.
#include <benchmark/benchmark.h>

#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "jetmoe/jetmoe.hpp"
#include "jetmoe/routing.hpp"

namespace {

using jetmoe::bf16;
using jetmoe::index_t;
using jetmoe::make_dims;
using jetmoe::tensor;
namespace routing = jetmoe::routing;

constexpr index_t experts = 8, top_k = 2, hidden = 2048, inner = 5632;

// Useful FLOPs of the layer's GEMMs: per routed slot, (2I × H) + (H × I) multiply-adds.
double layer_flops(index_t tokens) { return 2.0 * static_cast<double>(tokens * top_k) * 3.0 * hidden * inner; }

// Cheap deterministic fill: xorshift values in [-scale, scale].
struct xorshift {
  std::uint64_t state;
  float next(float scale) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return scale * (static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
};

template <class T, std::size_t R>
void fill(tensor<T, R>& t, float scale, std::uint64_t seed) {
  xorshift rng{seed * 0x9E3779B97F4A7C15ull + 1};
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = jetmoe::from_float<T>(rng.next(scale));
}

// Weights are built once (≈ 0.7 GB of bf16) and shared by every benchmark.
struct model {
  tensor<bf16, 2> router{make_dims(experts, hidden)};               // (E, H)
  tensor<bf16, 3> input_linear{make_dims(experts, 2 * inner, hidden)};  // (E, 2I, H)
  tensor<bf16, 3> output_linear{make_dims(experts, hidden, inner)};     // (E, H, I)
  tensor<bf16, 1> bias{make_dims(hidden)};                          // (H)
  tensor<bf16, 2> dense_in{make_dims(2 * top_k * inner, hidden)};   // (2kI, H)  dense equivalent
  tensor<bf16, 2> dense_out{make_dims(hidden, top_k * inner)};      // (H, kI)

  model() {
    fill(router, 0.05f, 1);
    fill(input_linear, 0.02f, 2);
    fill(output_linear, 0.02f, 3);
    fill(bias, 0.01f, 4);
    fill(dense_in, 0.02f, 5);
    fill(dense_out, 0.02f, 6);
  }
  routing::moe_mlp_weights<bf16> weights() const {
    return {router.view(), input_linear.view(), output_linear.view(), bias.view()};
  }
};

const model& shared_model() {
  static const std::unique_ptr<model> m = std::make_unique<model>();
  return *m;
}

jetmoe::exec::cpu make_policy() {
  jetmoe::exec::cpu cpu;
  if (const char* env = std::getenv("JETMOE_BENCH_THREADS"); env != nullptr && std::atoi(env) > 0) cpu.threads = std::atoi(env);
  return cpu;
}

const jetmoe::exec::cpu& policy() {
  static const jetmoe::exec::cpu cpu = make_policy();
  return cpu;
}

tensor<float, 2> activations(index_t tokens, std::uint64_t seed) {
  tensor<float, 2> x(make_dims(tokens, hidden));  // (T, H)
  fill(x, 1.0f, seed);
  return x;
}

// The routed state of a batch of T tokens: logits and a built plan.
struct routed_batch {
  tensor<float, 2> x;       // (T, H)
  tensor<float, 2> logits;  // (T, E)
  routing::routing_workspace<> ws;

  explicit routed_batch(index_t tokens) : x(activations(tokens, 7)), logits(make_dims(tokens, experts)) {
    jetmoe::ops::linear(policy(), x.view(), shared_model().router.view(), logits.view());
    routing::plan_routing(policy(), routing::top_k_then_softmax{}, logits.view(), top_k, ws.plan);
  }
};

// Few iterations for the GEMM-bound runs: the suite must finish in minutes on a 2-core
// machine, and at ≥ 256 tokens one iteration is already hundreds of milliseconds.
void set_iterations(benchmark::internal::Benchmark* b, index_t tokens) {
  if (tokens <= 16) b->MinTime(0.2);
  else if (tokens <= 64) b->Iterations(3);
  else b->Iterations(tokens <= 256 ? 2 : 1);
}

// ---- stages ----------------------------------------------------------------------------------

void BM_router(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);
  tensor<std::int32_t, 2> ids(make_dims(tokens, top_k));  // (T, k)
  tensor<float, 2> gates(make_dims(tokens, top_k));       // (T, k)
  for (auto _ : state) {
    routing::top_k_then_softmax{}.route(policy(), batch.logits.view(), top_k, ids.view(), gates.view());
    benchmark::DoNotOptimize(gates.data());
  }
  state.SetItemsProcessed(state.iterations() * tokens);
}

void BM_plan(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);  // its router output stays in the plan's arrays
  for (auto _ : state) {
    batch.ws.plan.prepare(policy(), tokens, top_k, experts);  // same sizes: keeps the ids
    routing::build_plan(policy(), batch.ws.plan);
    benchmark::DoNotOptimize(batch.ws.plan.sorted_slot().data());
  }
  state.SetItemsProcessed(state.iterations() * tokens);
}

void BM_gather(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);
  tensor<float, 2> sorted(make_dims(batch.ws.plan.num_sorted_rows(), hidden));  // (N, H)
  fill(sorted, 1.0f, 10);  // touch every page now: first-touch faults are not the gather's cost
  for (auto _ : state) {
    routing::gather(policy(), batch.x.view(), batch.ws.plan.sorted_token(), sorted.view());
    benchmark::DoNotOptimize(sorted.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(sorted.bytes()) * 2);
}

void BM_grouped_glu(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);
  const auto& plan = batch.ws.plan;
  tensor<float, 2> sorted(make_dims(plan.num_sorted_rows(), hidden));  // (N, H)
  tensor<float, 2> u(make_dims(plan.num_sorted_rows(), inner));        // (N, I)
  routing::gather(policy(), batch.x.view(), plan.sorted_token(), sorted.view());
  for (auto _ : state) {
    routing::grouped_glu(policy(), plan, routing::expert_input::sorted(sorted.view()),
                         shared_model().input_linear.view(), u.view(), batch.ws.experts);
    benchmark::DoNotOptimize(u.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(state.iterations() * layer_flops(tokens) * 2.0 / 3.0 * 1e-9,
                                                benchmark::Counter::kIsRate);
}

void BM_grouped_linear(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);
  const auto& plan = batch.ws.plan;
  tensor<float, 2> u(make_dims(plan.num_sorted_rows(), inner));   // (N, I)
  tensor<float, 2> z(make_dims(plan.num_sorted_rows(), hidden));  // (N, H)
  fill(u, 0.5f, 8);
  for (auto _ : state) {
    routing::grouped_linear(policy(), plan, routing::expert_input::sorted(u.view()),
                            shared_model().output_linear.view(), z.view(), batch.ws.experts);
    benchmark::DoNotOptimize(z.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(state.iterations() * layer_flops(tokens) / 3.0 * 1e-9,
                                                benchmark::Counter::kIsRate);
}

void BM_combine(benchmark::State& state) {
  const index_t tokens = state.range(0);
  routed_batch batch(tokens);
  const auto& plan = batch.ws.plan;
  tensor<float, 2> z(make_dims(plan.num_sorted_rows(), hidden));  // (N, H)
  tensor<float, 2> y(make_dims(tokens, hidden));                  // (T, H)
  fill(z, 1.0f, 9);
  fill(y, 1.0f, 11);  // touched before timing, as for the gather
  for (auto _ : state) {
    routing::combine(policy(), plan, z.view(), y.view(), shared_model().bias.view());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(z.bytes() + y.bytes()));
}

// ---- the full layer, against its dense equivalent ------------------------------------------------

struct dense_equivalent {
  tensor<float, 2> h, u, y;  // (T, 2kI), (T, kI), (T, H)
  explicit dense_equivalent(index_t tokens)
      : h(make_dims(tokens, 2 * top_k * inner)), u(make_dims(tokens, top_k * inner)), y(make_dims(tokens, hidden)) {}
  void run(const tensor<float, 2>& x) {
    const model& m = shared_model();
    jetmoe::ops::linear(policy(), x.view(), m.dense_in.view(), h.view());
    jetmoe::ops::glu(policy(), h.view(), u.view());
    jetmoe::ops::linear(policy(), u.view(), m.dense_out.view(), y.view());
  }
};

// CPU seconds used by the whole process (all threads) so far.
double process_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

void moe_layer(benchmark::State& state, routing::expert_input_path path) {
  using clock = std::chrono::steady_clock;
  const index_t tokens = state.range(0);
  const auto x = activations(tokens, 10);
  tensor<float, 2> y(make_dims(tokens, hidden));  // (T, H)
  routing::routing_workspace<> ws;
  const routing::moe_mlp<> moe{.top_k = top_k, .input = path};
  const auto weights = shared_model().weights();
  dense_equivalent dense(tokens);
  moe.forward(policy(), weights, x.view(), y.view(), ws);  // warm-up: grows the workspace
  dense.run(x);

  double moe_seconds = 0.0, dense_seconds = 0.0, moe_cpu = 0.0, dense_cpu = 0.0;
  for (auto _ : state) {
    const auto start = clock::now();
    const double cpu_start = process_cpu_seconds();
    moe.forward(policy(), weights, x.view(), y.view(), ws);
    benchmark::DoNotOptimize(y.data());
    const auto middle = clock::now();
    const double cpu_middle = process_cpu_seconds();
    dense.run(x);
    benchmark::DoNotOptimize(dense.y.data());
    const auto end = clock::now();
    const double cpu_end = process_cpu_seconds();
    const double moe_time = std::chrono::duration<double>(middle - start).count();
    moe_seconds += moe_time;
    dense_seconds += std::chrono::duration<double>(end - middle).count();
    moe_cpu += cpu_middle - cpu_start;
    dense_cpu += cpu_end - cpu_middle;
    state.SetIterationTime(moe_time);
  }
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["dense_ms"] = 1e3 * dense_seconds / iterations;
  state.counters["ratio"] = moe_seconds / dense_seconds;
  state.counters["cpu_ratio"] = moe_cpu / dense_cpu;
  state.counters["GFLOPs"] = layer_flops(tokens) * iterations / moe_seconds * 1e-9;
  state.counters["scratch_MiB"] = static_cast<double>(ws.scratch_bytes()) / (1024.0 * 1024.0);
}

void BM_moe_layer(benchmark::State& state) { moe_layer(state, routing::expert_input_path::indexed); }

// The two input paths head to head, interleaved in the same iterations (their outputs are
// bit-identical; only speed and memory differ). Time = indexed; counters: gathered_ms and
// gathered / indexed.
void BM_input_paths(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const index_t tokens = state.range(0);
  const auto x = activations(tokens, 11);
  tensor<float, 2> y(make_dims(tokens, hidden));  // (T, H)
  routing::routing_workspace<> ws_indexed, ws_gathered;
  const routing::moe_mlp<> indexed{.top_k = top_k, .input = routing::expert_input_path::indexed};
  const routing::moe_mlp<> gathered{.top_k = top_k, .input = routing::expert_input_path::gathered};
  const auto weights = shared_model().weights();
  indexed.forward(policy(), weights, x.view(), y.view(), ws_indexed);
  gathered.forward(policy(), weights, x.view(), y.view(), ws_gathered);

  // Alternate which path goes first, so neither always inherits the other's cache state.
  const auto timed = [&](const routing::moe_mlp<>& moe, routing::routing_workspace<>& ws) {
    const auto start = clock::now();
    moe.forward(policy(), weights, x.view(), y.view(), ws);
    benchmark::DoNotOptimize(y.data());
    return std::chrono::duration<double>(clock::now() - start).count();
  };
  double indexed_seconds = 0.0, gathered_seconds = 0.0;
  bool indexed_first = true;
  for (auto _ : state) {
    double indexed_time = 0.0;
    if (indexed_first) {
      indexed_time = timed(indexed, ws_indexed);
      gathered_seconds += timed(gathered, ws_gathered);
    } else {
      gathered_seconds += timed(gathered, ws_gathered);
      indexed_time = timed(indexed, ws_indexed);
    }
    indexed_first = !indexed_first;
    indexed_seconds += indexed_time;
    state.SetIterationTime(indexed_time);
  }
  state.counters["gathered_ms"] = 1e3 * gathered_seconds / static_cast<double>(state.iterations());
  state.counters["gathered/indexed"] = gathered_seconds / indexed_seconds;
  state.counters["indexed_MiB"] = static_cast<double>(ws_indexed.scratch_bytes()) / (1024.0 * 1024.0);
  state.counters["gathered_MiB"] = static_cast<double>(ws_gathered.scratch_bytes()) / (1024.0 * 1024.0);
}

void register_all() {
  for (auto* b : {benchmark::RegisterBenchmark("BM_router", BM_router), benchmark::RegisterBenchmark("BM_plan", BM_plan),
                  benchmark::RegisterBenchmark("BM_gather", BM_gather),
                  benchmark::RegisterBenchmark("BM_combine", BM_combine)}) {
    for (index_t t : {1, 16, 64, 256, 1024, 4096}) b->Arg(t);
    b->MinTime(0.05)->Unit(benchmark::kMicrosecond);
  }
  // Fewer points for the GEMM-bound runs, to keep the suite within a few minutes on 2 cores:
  // the stages and the path comparison stop at 1024 tokens; the layer goes to 4096.
  using bench_fn = void (*)(benchmark::State&);
  const auto add = [](const char* name, bench_fn fn, std::initializer_list<index_t> tokens, bool manual_time) {
    for (index_t t : tokens) {
      auto* b = benchmark::RegisterBenchmark(name, fn);
      b->Arg(t)->Unit(benchmark::kMillisecond);
      if (manual_time) b->UseManualTime();
      set_iterations(b, t);
    }
  };
  add("BM_grouped_glu", BM_grouped_glu, {1, 16, 256, 1024}, false);
  add("BM_grouped_linear", BM_grouped_linear, {1, 16, 256, 1024}, false);
  add("BM_moe_layer", BM_moe_layer, {1, 16, 64, 256, 1024, 4096}, true);
  add("BM_input_paths", BM_input_paths, {1, 64, 256, 1024}, true);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("jetmoe_threads", std::to_string(policy().threads));
  benchmark::AddCustomContext("jetmoe_shapes", "E=8 k=2 H=2048 I=5632, bf16 weights, fp32 activations");
  benchmark::AddCustomContext("note", "Debian's libbenchmark is a debug build; it only affects bookkeeping between iterations");
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
