// bench_cuda — the CUDA backend on JetMoE-8B shapes (bf16 weights, fp32 activations): every
// stage of the MoE MLP, the whole layer, and the MoA map/reduce, each against hardware floors
// measured in the same binary.
//
// Shapes: E = 8, k = 2, H = 2048, I = 5632 (MoE MLP); Dq = 2048 (MoA). Random weights and a
// random router (close to uniform routing).
//
// Benchmarks (name/T:tokens), all timed with CUDA events around the call on the policy's stream:
//   floor/read_bandwidth     a read-only kernel over 1 GiB          → bytes/s (the GEMV floor)
//   floor/gemm_bf16          cuBLAS bf16 GEMM 8192³, fp32 accumulate  → FLOP/s (the GEMM floor)
//   router, plan, grouped_glu, grouped_linear, combine            the MoE stages
//   moe_layer                routing::moe_mlp::forward (router GEMM, plan, experts, combine),
//                            queued kernel by kernel
//   moe_layer_recorded       the same recorded once as a CUDA graph and replayed
//   moa_map, moa_reduce      routing::mixture_of_attention's two halves
//   generate/8b/B:b/P:p      the whole random-weight JetMoE-8B-shape model (bf16 weights) on the
//                            GPU through generation::generate: a prefill of b×p tokens, then
//                            128 greedy decode steps; host-clock times (generate returns after
//                            the logits reach the host). Counters prefill_tok_s, decode_tok_s and
//                            their floor fractions (bench/model_cost.hpp's bytes and FLOPs over
//                            the floors below). B:1/P:2048 carries the issue's two model targets;
//                            graph:1 replays each decode step as a CUDA graph, graph:0 does not.
//
// Counters: tokens; floor_us = max(weight bytes / read bandwidth, FLOPs / GEMM rate) for the
// call; floor_frac = floor_us / measured time (1 = at the hardware floor).
//
// L2: before every timed call that reads weights, a 128 MiB memset evicts the 50 MB L2 (outside
// the timed region), as the other layers of a model would.
//
// Tokens: {1, 16, 256, 2048, 16384} by default; JETMOE_BENCH_TOKENS=1,64,512 picks a list.
// Everything here needs a GPU: without one the binary says so and exits 0.
#include <benchmark/benchmark.h>

#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include <jetmoe/cuda.cuh>
#include <jetmoe/models/jetmoe.hpp>
#pragma nv_diagnostic pop

#include "model_cost.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace jetmoe;
namespace routing = jetmoe::routing;
using gpu_policy = exec::cuda;

constexpr index_t E = 8, K = 2, H = 2048, I = 5632, Dq = 2048;

const gpu_policy& gpu() {
  static const gpu_policy policy = gpu_policy::create();
  return policy;
}

// ---- timing ----------------------------------------------------------------------------------------
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
  // Seconds `body` takes on the stream (body only enqueues work, or synchronises itself).
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

// Overwrites a buffer larger than L2 so the next call reads its weights from HBM.
void flush_l2() {
  static tensor<std::uint8_t, 1, gpu_policy> buffer(gpu(), make_dims(index_t{128} << 20));
  JETMOE_CUDA_CHECK(cudaMemsetAsync(buffer.data(), 0, static_cast<std::size_t>(buffer.size()), gpu().stream()));
}

// ---- floors ------------------------------------------------------------------------------------------
template <class Ignored = void>
__global__ void read_all(const float4* data, index_t n, float* sink) {
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  for (index_t i = kernels::global_thread(); i < n; i += kernels::grid_threads()) {
    const float4 v = data[i];
    acc.x += v.x;
    acc.y += v.y;
    acc.z += v.z;
    acc.w += v.w;
  }
  if (acc.x + acc.y + acc.z + acc.w == 12345.678f) *sink = acc.x;  // keeps the loads alive
}

struct floors {
  double read_bytes_per_s = 0.0;
  double gemm_flops_per_s = 0.0;
};

const floors& measured_floors() {
  static const floors f = [] {
    floors out;
    const gpu_policy& g = gpu();
    event_timer timer;
    {
      const index_t bytes = index_t{1} << 30;
      tensor<float, 1, gpu_policy> data = tensor<float, 1, gpu_policy>::zeros(g, make_dims(bytes / 4));
      tensor<float, 1, gpu_policy> sink(g, make_dims(1));
      double best = 1e9;
      for (int rep = 0; rep < 10; ++rep)
        best = std::min(best, timer.time(g.stream(), [&] {
          read_all<><<<132 * 16, 512, 0, g.stream()>>>(reinterpret_cast<const float4*>(data.data()), bytes / 16,
                                                                 sink.data());
        }));
      out.read_bytes_per_s = static_cast<double>(bytes) / best;
    }
    {
      const index_t n = 8192;
      tensor<bf16, 2, gpu_policy> a = tensor<bf16, 2, gpu_policy>::zeros(g, make_dims(n, n));
      tensor<bf16, 2, gpu_policy> b = tensor<bf16, 2, gpu_policy>::zeros(g, make_dims(n, n));
      tensor<float, 2, gpu_policy> c(g, make_dims(n, n));
      double best = 1e9;
      for (int rep = 0; rep < 10; ++rep)
        best = std::min(best, timer.time(g.stream(), [&] {
          ops::cuda_detail::cublas_linear<bf16>(g, a.data(), n, b.data(), n, c.data(), n, n, n, n);
        }));
      out.gemm_flops_per_s = 2.0 * static_cast<double>(n) * n * n / best;
    }
    return out;
  }();
  return f;
}

// mean_s: the measured seconds per call (run_timed's total over the iterations).
void set_counters(benchmark::State& state, double mean_s, index_t tokens, double weight_bytes, double flops) {
  const floors& f = measured_floors();
  const double floor_s = std::max(weight_bytes / f.read_bytes_per_s, flops / f.gemm_flops_per_s);
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["floor_us"] = floor_s * 1e6;
  state.counters["floor_frac"] = mean_s > 0 ? floor_s / mean_s : 0.0;
}

// ---- the layer's data ---------------------------------------------------------------------------------
template <class T, std::size_t R>
tensor<T, R, gpu_policy> random_device(std::mt19937& rng, const dims<R>& extents, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  tensor<T, R> host(extents);
  for (index_t i = 0; i < host.size(); ++i) host.data()[i] = from_float<T>(dist(rng));
  return exec::to_device(gpu(), host.view());
}

struct layer {
  tensor<bf16, 2, gpu_policy> router;   // (E, H)
  tensor<bf16, 3, gpu_policy> w_in;     // (E, 2I, H)
  tensor<bf16, 3, gpu_policy> w_out;    // (E, H, I)
  tensor<bf16, 1, gpu_policy> bias;     // (H)
  tensor<bf16, 3, gpu_policy> q_in;     // (E, Dq, H)
  tensor<bf16, 3, gpu_policy> q_out;    // (E, H, Dq)

  layer() {
    std::mt19937 rng(1);
    router = random_device<bf16, 2>(rng, make_dims(E, H), 0.05f);
    w_in = random_device<bf16, 3>(rng, make_dims(E, 2 * I, H), 0.02f);
    w_out = random_device<bf16, 3>(rng, make_dims(E, H, I), 0.02f);
    bias = random_device<bf16, 1>(rng, make_dims(H), 0.02f);
    q_in = random_device<bf16, 3>(rng, make_dims(E, Dq, H), 0.02f);
    q_out = random_device<bf16, 3>(rng, make_dims(E, H, Dq), 0.02f);
  }
  routing::moe_mlp_weights<bf16> mlp() const { return {router.view(), w_in.view(), w_out.view(), bias.view()}; }
  routing::moa_weights<bf16> moa() const { return {router.view(), q_in.view(), q_out.view(), bias.view()}; }
};

const layer& weights() {
  static const layer l;
  return l;
}

// Bytes of expert weights a call touches: the experts that get rows (all E unless T·k < E).
double expert_bytes(index_t tokens, double per_expert_bytes) {
  const index_t used = std::min<index_t>(E, tokens * K);
  return static_cast<double>(used) * per_expert_bytes;
}

// Runs `body` once per iteration under CUDA events, flushing L2 first when `cold`; returns the
// mean seconds per call.
template <class Body>
double run_timed(benchmark::State& state, bool cold, Body&& body) {
  event_timer timer;
  body();  // warm-up: the pool and cuBLAS settle, nothing is allocated while timing
  JETMOE_CUDA_CHECK(cudaStreamSynchronize(gpu().stream()));
  double total = 0.0;
  for (auto _ : state) {
    if (cold) flush_l2();
    const double seconds = timer.time(gpu().stream(), body);
    state.SetIterationTime(seconds);
    total += seconds;
  }
  return state.iterations() > 0 ? total / static_cast<double>(state.iterations()) : 0.0;
}

// ---- benchmarks ------------------------------------------------------------------------------------------
struct token_state {
  tensor<float, 2, gpu_policy> x, y, logits;  // (T, H), (T, H), (T, E)
  tensor<float, 3, gpu_policy> q, o;          // (T, K, Dq)
  routing::routing_workspace<gpu_policy> ws;
  explicit token_state(index_t tokens) {
    std::mt19937 rng(static_cast<unsigned>(tokens));
    x = random_device<float, 2>(rng, make_dims(tokens, H), 1.0f);
    o = random_device<float, 3>(rng, make_dims(tokens, K, Dq), 1.0f);
    y = tensor<float, 2, gpu_policy>(gpu(), make_dims(tokens, H));
    logits = tensor<float, 2, gpu_policy>(gpu(), make_dims(tokens, E));
    q = tensor<float, 3, gpu_policy>(gpu(), make_dims(tokens, K, Dq));
  }
  // Routes x once so that the stage benchmarks have a plan to work on.
  const routing::routing_plan<gpu_policy>& route() {
    ops::linear(gpu(), x.view(), weights().router.view(), logits.view());
    return routing::plan_routing(gpu(), routing::top_k_then_softmax{}, logits.view(), K, ws.plan);
  }
};

void bm_router(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  tensor<std::int32_t, 2, gpu_policy> ids(gpu(), make_dims(tokens, K));
  tensor<float, 2, gpu_policy> gates(gpu(), make_dims(tokens, K));
  const double mean = run_timed(state, true, [&] {
    ops::linear(gpu(), s.x.view(), weights().router.view(), s.logits.view());
    routing::top_k_then_softmax{}.route(gpu(), s.logits.view(), K, ids.view(), gates.view());
  });
  set_counters(state, mean, tokens, E * H * 2.0, 2.0 * tokens * E * H);
}

void bm_plan(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  s.route();
  const double mean = run_timed(state, false, [&] { routing::build_plan(gpu(), s.ws.plan, {}); });
  set_counters(state, mean, tokens, 0.0, 0.0);
}

void bm_grouped_glu(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const auto& plan = s.route();
  tensor<float, 2, gpu_policy> u(gpu(), make_dims(plan.max_sorted_rows(), I));
  const auto in = routing::expert_input::indexed(s.x.view(), plan.sorted_token());
  const double mean = run_timed(state, true, [&] { routing::grouped_glu(gpu(), plan, in, weights().w_in.view(), u.view(), s.ws.experts); });
  set_counters(state, mean, tokens, expert_bytes(tokens, 2.0 * I * H * 2.0), 2.0 * tokens * K * 2 * I * H);
}

void bm_grouped_linear(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const auto& plan = s.route();
  tensor<float, 2, gpu_policy> u = tensor<float, 2, gpu_policy>::zeros(gpu(), make_dims(plan.max_sorted_rows(), I));
  tensor<float, 2, gpu_policy> z(gpu(), make_dims(plan.max_sorted_rows(), H));
  const auto in = routing::expert_input::sorted(u.view());
  const double mean = run_timed(state, true,
            [&] { routing::grouped_linear(gpu(), plan, in, weights().w_out.view(), z.view(), s.ws.experts); });
  set_counters(state, mean, tokens, expert_bytes(tokens, 1.0 * H * I * 2.0), 2.0 * tokens * K * H * I);
}

void bm_combine(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const auto& plan = s.route();
  tensor<float, 2, gpu_policy> z = tensor<float, 2, gpu_policy>::zeros(gpu(), make_dims(plan.max_sorted_rows(), H));
  const double mean = run_timed(state, false, [&] {
    routing::combine(gpu(), plan, tensor_view<const float, 2>(z.view()), s.y.view(), weights().bias.view());
  });
  set_counters(state, mean, tokens, 0.0, 0.0);
}

void bm_moe_layer(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const routing::moe_mlp<> moe{};
  const auto w = weights().mlp();
  const double mean = run_timed(state, true, [&] { moe.forward(gpu(), w, s.x.view(), s.y.view(), s.ws); });
  set_counters(state, mean, tokens, E * H * 2.0 + expert_bytes(tokens, 3.0 * I * H * 2.0),
               2.0 * tokens * (E * H + K * 3 * I * H));
}

// The same layer recorded once as a CUDA graph (exec::recorded_work) and replayed: what a
// decode step pays per layer once launch overhead is gone (the plan no longer waits on the host).
void bm_moe_layer_recorded(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const routing::moe_mlp<> moe{};
  const auto w = weights().mlp();
  exec::recorded_work<gpu_policy> recorded;
  const auto queue = [&] { moe.forward(gpu(), w, s.x.view(), s.y.view(), s.ws); };
  recorded.run(gpu(), {1, 0, 0, 0}, queue);  // first sight: queued (sizes the workspace)
  recorded.run(gpu(), {1, 0, 0, 0}, queue);  // second: recorded; every timed call replays
  const double mean = run_timed(state, true, [&] { recorded.run(gpu(), {1, 0, 0, 0}, queue); });
  set_counters(state, mean, tokens, E * H * 2.0 + expert_bytes(tokens, 3.0 * I * H * 2.0),
               2.0 * tokens * (E * H + K * 3 * I * H));
}

void bm_moa_map(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const routing::mixture_of_attention<> moa{};
  const auto w = weights().moa();
  const double mean = run_timed(state, true, [&] { moa.map(gpu(), w, s.x.view(), s.q.view(), s.ws); });
  set_counters(state, mean, tokens, E * H * 2.0 + expert_bytes(tokens, 1.0 * Dq * H * 2.0),
               2.0 * tokens * (E * H + K * Dq * H));
}

void bm_moa_reduce(benchmark::State& state) {
  const index_t tokens = state.range(0);
  token_state s(tokens);
  const routing::mixture_of_attention<> moa{};
  const auto w = weights().moa();
  const auto& plan = moa.map(gpu(), w, s.x.view(), s.q.view(), s.ws);
  const double mean = run_timed(state, true, [&] { moa.reduce(gpu(), w, plan, tensor_view<const float, 3>(s.o.view()), s.y.view(), s.ws); });
  set_counters(state, mean, tokens, expert_bytes(tokens, 1.0 * H * Dq * 2.0), 2.0 * tokens * K * H * Dq);
}

void bm_floor_read(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(1.0 / measured_floors().read_bytes_per_s * (1 << 30));
  state.counters["GBps"] = measured_floors().read_bytes_per_s / 1e9;
}
void bm_floor_gemm(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(2.0 * 8192.0 * 8192.0 * 8192.0 / measured_floors().gemm_flops_per_s);
  state.counters["TFLOPs"] = measured_floors().gemm_flops_per_s / 1e12;
}

// ---- the whole model -------------------------------------------------------------------------------------
using gpu_8b_model = models::jetmoe::model<bf16, routing::top_k_then_softmax, gpu_policy>;

// Built on first use: random bf16 weights drawn on the host (all cores), uploaded once (~17 GB).
gpu_8b_model& model_8b() {
  static gpu_8b_model m = [] {
    const auto start = std::chrono::steady_clock::now();
    std::cerr << "bench_cuda: drawing and uploading random bf16 weights of the JetMoE-8B shape ...\n";
    auto made = models::jetmoe::random_init<bf16>(jetmoe_bench::jetmoe_8b_config(), 2024, gpu());
    std::cerr << "bench_cuda: model ready in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
    return made;
  }();
  return m;
}

void bm_generate_8b(benchmark::State& state) {
  const index_t batch = state.range(0), prompt = state.range(1), new_tokens = 129;
  gpu_8b_model& m = model_8b();
  m.set_step_recording(state.range(2) != 0);  // decode steps replayed as a CUDA graph, or queued one by one
  const auto prompts = jetmoe_bench::random_prompts(batch, prompt, m.vocab_size());
  generation::generation_options options;
  options.max_new_tokens = new_tokens;  // greedy, no EOS: every row runs the full length
  (void)generation::generate(m, prompts, {.max_new_tokens = 2});  // warm-up: pool, cuBLAS, kernels
  double prefill_s = 0.0, decode_s = 0.0, prompt_tokens = 0.0, decode_tokens = 0.0;
  for (auto _ : state) {
    const auto result = generation::generate(m, prompts, options);
    state.SetIterationTime(result.prefill_seconds + result.decode_seconds);
    prefill_s += result.prefill_seconds;
    decode_s += result.decode_seconds;
    prompt_tokens += static_cast<double>(result.prompt_tokens);
    decode_tokens += static_cast<double>(result.generated_tokens - batch);  // the first came from the prefill
  }
  const double iterations = static_cast<double>(state.iterations()), steps = static_cast<double>(new_tokens - 1);
  const double b = static_cast<double>(batch), p = static_cast<double>(prompt);
  const jetmoe_bench::model_cost cost(m.cfg());
  const floors& f = measured_floors();
  auto floor_of = [&](double bytes, double flops) { return std::max(bytes / f.read_bytes_per_s, flops / f.gemm_flops_per_s); };
  const double prefill_floor = floor_of(2.0 * cost.total_params(), cost.prefill_flops(b, p));
  const double decode_floor = floor_of(cost.decode_bytes(b, p + steps / 2.0), cost.decode_flops(b, p + steps / 2.0));
  const double step_s = decode_s / iterations / steps;
  state.counters["prefill_tok_s"] = prompt_tokens / prefill_s;
  state.counters["decode_tok_s"] = decode_tokens / decode_s;
  state.counters["prefill_ms"] = 1e3 * prefill_s / iterations;
  state.counters["decode_step_ms"] = 1e3 * step_s;
  state.counters["prefill_floor_frac"] = prefill_floor / (prefill_s / iterations);
  state.counters["decode_floor_frac"] = decode_floor / step_s;
}

std::vector<index_t> token_list() {
  std::vector<index_t> list = {1, 16, 256, 2048, 16384};
  if (const char* env = std::getenv("JETMOE_BENCH_TOKENS")) {
    list.clear();
    std::stringstream in(env);
    std::string item;
    while (std::getline(in, item, ','))
      if (!item.empty()) list.push_back(std::stoll(item));
  }
  return list;
}

void register_all() {
  benchmark::RegisterBenchmark("floor/read_bandwidth", bm_floor_read)->UseManualTime()->Iterations(1);
  benchmark::RegisterBenchmark("floor/gemm_bf16", bm_floor_gemm)->UseManualTime()->Iterations(1);
  const std::pair<const char*, void (*)(benchmark::State&)> stages[] = {
      {"router", bm_router},         {"plan", bm_plan},           {"grouped_glu", bm_grouped_glu},
      {"grouped_linear", bm_grouped_linear}, {"combine", bm_combine}, {"moe_layer", bm_moe_layer},
      {"moe_layer_recorded", bm_moe_layer_recorded}, {"moa_map", bm_moa_map}, {"moa_reduce", bm_moa_reduce},
  };
  for (const auto& [name, fn] : stages) {
    auto* b = benchmark::RegisterBenchmark(name, fn)->UseManualTime()->Unit(benchmark::kMicrosecond)->ArgName("T");
    for (const index_t t : token_list()) b->Arg(t);
  }
  benchmark::RegisterBenchmark("generate/8b", bm_generate_8b)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->ArgNames({"B", "P", "graph"})
      ->Args({1, 2048, 1})
      ->Args({1, 2048, 0})
      ->Args({8, 128, 1})
      ->Iterations(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (!exec::cuda::device_available()) {
    std::cout << "bench_cuda: no CUDA device; nothing to measure\n";
    return 0;
  }
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
