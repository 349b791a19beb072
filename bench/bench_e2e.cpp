// bench_e2e — end-to-end generation on CPU: prefill and decode tokens per second through
// generation::generate (greedy, KV cache), batch 1 and 8.
//
// Models (bf16 weights, fp32 compute):
//   demo              the bundled models/jetmoe-pydoc-5m (4 layers, H = 128): prompt 128, 64 new tokens
//   jetmoe-8b-random  random weights at the JetMoE-8B shape (8.5 B parameters, ≈ 17 GB in bf16):
//                     prompt 64, 8 new tokens. Only with JETMOE_BENCH_8B=1: drawing the weights
//                     takes a while and needs ≈ 18.5 GB free; the run is skipped with a message
//                     when MemAvailable is lower. Built once and reused for both batch sizes.
//
// Each row of the batch gets its own random prompt of the same length (no padding). One
// generate call per iteration: the first new token comes from the prefill pass, the rest are
// decode steps. Counters:
//   prefill_tok_s        prompt tokens (all rows) / prefill seconds
//   decode_tok_s         decode-step tokens (all rows) / decode seconds
//   prefill_floor_frac   FLOP floor of the prefill (2 · active parameters · tokens + attention) / time
//   decode_floor_frac    bandwidth floor of a decode step / its time; the weights a step reads are
//                        estimated for uniform routing: E·(1 − (1 − k/E)^B) distinct experts per
//                        routed block (exactly k at batch 1)
//   floor_copy_GBps, floor_gemm_GFLOPs   the floors the point was held to: the best measured in
//                        this process, at start-up and (demo) again right after the point
// JETMOE_BENCH_PROMPT / JETMOE_BENCH_NEW_TOKENS override the lengths for both models.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "model_cost.hpp"
#include "jetmoe/models/jetmoe.hpp"

namespace {

using jetmoe::bf16;
using jetmoe::index_t;
using namespace jetmoe_bench;
namespace jm = jetmoe::models::jetmoe;
using bf16_model = jm::model<bf16>;

double available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kib = 0.0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024.0;
  return 0.0;
}

struct model_slot {
  std::unique_ptr<bf16_model> model;
  std::string failure;  // why it could not be built, when it could not
  double build_seconds = 0.0;
};

model_slot& demo_model() {
  static model_slot slot = [] {
    model_slot s;
    const auto start = std::chrono::steady_clock::now();
    try {
      s.model = std::make_unique<bf16_model>(bf16_model::load(JETMOE_DEMO_MODEL_DIR, policy()));
    } catch (const std::exception& e) {
      s.failure = e.what();
    }
    s.build_seconds = seconds_since(start);
    return s;
  }();
  return slot;
}

model_slot& jetmoe_8b_model() {
  static model_slot slot = [] {
    model_slot s;
    const jm::config c = jetmoe_8b_config();
    const double needed = 2.0 * model_cost(c).total_params() + 1.5 * (1u << 30);
    const double available = available_memory_bytes();
    if (available < needed) {
      s.failure = "skipped: the 8B-shape model needs " + std::to_string(needed / (1u << 30)) + " GiB, MemAvailable is " +
                  std::to_string(available / (1u << 30)) + " GiB";
      std::cerr << "bench_e2e: " << s.failure << "\n";
      return s;
    }
    remeasure_floors();  // before 17 GB of weights take the memory the copy test needs
    std::cerr << "bench_e2e: drawing random bf16 weights for the JetMoE-8B shape ...\n";
    const auto start = std::chrono::steady_clock::now();
    s.model = std::make_unique<bf16_model>(jm::random_init<bf16>(c, 2024, policy()));
    s.build_seconds = seconds_since(start);
    std::cerr << "bench_e2e: built in " << s.build_seconds << " s\n";
    return s;
  }();
  return slot;
}

// remeasure_after: measure the floors again right after the timed runs (keeping the best so
// far), so that a point is not held to floors caught in a slow minute before it. Not for the
// 8B-shape model, whose 17 GB leave no room for the copy test's buffers.
void bm_generate(benchmark::State& state, model_slot& (*get)(), index_t batch, index_t prompt, index_t new_tokens,
                 bool remeasure_after) {
  model_slot& slot = get();
  if (!slot.model) {
    state.SkipWithError(slot.failure.c_str());
    for (auto _ : state) {
    }
    return;
  }
  bf16_model& m = *slot.model;
  const auto prompts = random_prompts(batch, prompt, m.vocab_size());
  jetmoe::generation::generation_options options;
  options.max_new_tokens = new_tokens;  // greedy by default; no EOS: every row runs the full length

  double prefill_seconds = 0.0, decode_seconds = 0.0, prompt_tokens = 0.0, decode_tokens = 0.0;
  for (auto _ : state) {
    const auto result = jetmoe::generation::generate(m, prompts, options);
    benchmark::DoNotOptimize(result.tokens.data());
    state.SetIterationTime(result.prefill_seconds + result.decode_seconds);
    prefill_seconds += result.prefill_seconds;
    decode_seconds += result.decode_seconds;
    prompt_tokens += static_cast<double>(result.prompt_tokens);
    decode_tokens += static_cast<double>(result.generated_tokens - batch);  // the first came from prefill
  }
  if (remeasure_after) remeasure_floors();
  const double iterations = static_cast<double>(state.iterations());
  const model_cost cost(m.cfg());
  const double steps = static_cast<double>(new_tokens - 1);
  const double b = static_cast<double>(batch), p = static_cast<double>(prompt);
  // Decode floor: the mean step, at the mean cache length of the decode phase.
  const double mean_cached = p + steps / 2.0;
  const double decode_floor = floor_seconds(cost.decode_bytes(b, mean_cached), cost.decode_flops(b, mean_cached));
  const double prefill_floor = floor_seconds(2.0 * cost.total_params(), cost.prefill_flops(b, p));
  const double prefill_per_iteration = prefill_seconds / iterations;
  const double step_seconds = steps > 0 ? decode_seconds / iterations / steps : 0.0;

  state.counters["prefill_tok_s"] = prompt_tokens / prefill_seconds;
  state.counters["decode_tok_s"] = decode_tokens > 0 ? decode_tokens / decode_seconds : 0.0;
  state.counters["prefill_ms"] = 1e3 * prefill_per_iteration;
  state.counters["decode_step_ms"] = 1e3 * step_seconds;
  state.counters["prefill_floor_ms"] = 1e3 * prefill_floor;
  state.counters["decode_step_floor_ms"] = 1e3 * decode_floor;
  state.counters["prefill_floor_frac"] = prefill_floor / prefill_per_iteration;
  state.counters["decode_floor_frac"] = step_seconds > 0 ? decode_floor / step_seconds : 0.0;
  state.counters["batch"] = b;
  state.counters["prompt"] = p;
  state.counters["new_tokens"] = static_cast<double>(new_tokens);
  state.counters["parameters"] = cost.total_params();
  state.counters["build_s"] = slot.build_seconds;
  write_floors_held_to(state, floors().copy_bytes_per_second, floors().gemm_flops_per_second);
}

void register_model(const char* name, model_slot& (*get)(), index_t prompt, index_t new_tokens, bool slow) {
  prompt = env_int("JETMOE_BENCH_PROMPT", static_cast<int>(prompt));
  new_tokens = env_int("JETMOE_BENCH_NEW_TOKENS", static_cast<int>(new_tokens));
  for (index_t batch : {1, 8}) {
    const std::string full_name = std::string("generate/") + name + "/B:" + std::to_string(batch);
    auto* b = benchmark::RegisterBenchmark(full_name.c_str(), bm_generate, get, batch, prompt, new_tokens, !slow);
    b->UseManualTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
    if (slow) {
      b->Iterations(1)->Repetitions(env_int("JETMOE_BENCH_8B_REPS", 1));
    } else {
      b->MinTime(0.5)->Repetitions(env_int("JETMOE_BENCH_REPS", 3));
    }
    add_spread_statistics(b);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_common_context();
  register_model("demo", demo_model, 128, 64, false);
  const bool with_8b = env_flag("JETMOE_BENCH_8B");
  if (with_8b) register_model("jetmoe-8b-random", jetmoe_8b_model, 64, 8, true);
  benchmark::AddCustomContext("jetmoe_8b", with_8b ? "run" : "not run (set JETMOE_BENCH_8B=1)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
