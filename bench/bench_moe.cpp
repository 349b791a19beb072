// bench_moe — expert dispatch on CPU across MoE shapes and routing distributions, each result
// set against the hardware floors (bench/common.hpp) and, for whole blocks, against a dense
// layer with the same FLOPs per token.
//
// Shapes (bf16 weights, fp32 activations):
//   jetmoe-8b-mlp   E=8   k=2  H=2048  I=5632     MoE MLP of JetMoE-8B
//   mixtral         E=8   k=2  H=4096  I=14336    Mixtral-8x7B-like MLP
//   fine-grained    E=128 k=8  H=2048  I=768      many small experts
//   jetmoe-8b-moa   E=8   k=2  H=2048  Dq=2048    MoA query/output projections of JetMoE-8B
//
// Routing distributions, imposed on JetMoE's real top-k-then-softmax router by adding a large
// bias to the logits of pre-drawn experts (so the router, the plan and every later stage do
// their normal work on the skewed assignment):
//   uniform     each token draws k distinct experts uniformly
//   zipf        expert e is drawn with weight 1/(e+1) (Zipf, s = 1), k distinct per token
//   one-expert  every token picks expert 0 first (and experts 1…k−1 for its other, necessarily
//               distinct, choices): all the load on the fewest experts possible
//
// Benchmarks (name/shape/distribution/T:tokens):
//   router, plan, gather, grouped_glu, grouped_linear, combine   the dispatch stages
//   moe_layer        the whole routing::moe_mlp forward (router GEMM included)
//   moa_map, moa_reduce   the two routed halves of routing::mixture_of_attention
//   dense_mlp, dense_moa_map, dense_moa_reduce   the dense equivalents (name/shape/T:tokens)
//   linear_rows      ops::linear on one expert projection (name/projection/T:rows, T ≤ 24)
//                    against the panel kernel called directly on the same data
//
// Caches: every benchmark that reads weights starts its timed call with cold caches (a 64 MiB
// write outside the timed region), as in a model where the other layers evict them; the routing
// stages (router, plan, gather, combine) run on activations left in cache.
//
// Counters: floor_us / floor_frac / compute_bound / GFLOPs / GBps (bench/common.hpp);
// dense_ratio on whole blocks = block time / time of its dense equivalent, the two alternating
// in the same iterations (dense_ms is the latter);
// experts_used = experts that received at least one row; on linear_rows, panel_ratio = the
// time of token panels for all rows / ops::linear's, alternating in the same iterations (> 1:
// the few-rows kernel, which ops::linear picks for these rows or for a ragged remainder, is
// that much faster; 1 where both are the panel kernel alone).
//
// Tokens: T ∈ {1, 16, 256, 2048} by default; JETMOE_BENCH_FULL=1 runs 1 … 16384;
// JETMOE_BENCH_TOKENS=1,64,512 picks any list. Points whose FLOPs exceed
// JETMOE_BENCH_MAX_GFLOP (default 300, ≈ 4 s on a 2-core machine) are left out unless
// JETMOE_BENCH_FULL is set. JETMOE_BENCH_REPS sets repetitions (default 3).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"
#include "routing_distributions.hpp"
#include "jetmoe/jetmoe.hpp"
#include "jetmoe/routing.hpp"

namespace {

using jetmoe::bf16;
using jetmoe::index_t;
using jetmoe::make_dims;
using jetmoe::tensor;
using jetmoe::tensor_view;
namespace routing = jetmoe::routing;
using namespace jetmoe_bench;

constexpr double weight_bytes = 2.0;  // bf16
constexpr double float_bytes = 4.0;

struct mlp_shape {
  const char* name;
  index_t experts, top_k, hidden, inner;
};
struct moa_shape {
  const char* name;
  index_t experts, top_k, hidden, width;  // width = Dq, the per-expert query width
};

constexpr mlp_shape mlp_shapes[] = {
    {"jetmoe-8b-mlp", 8, 2, 2048, 5632},
    {"mixtral", 8, 2, 4096, 14336},
    {"fine-grained", 128, 8, 2048, 768},
};
constexpr moa_shape jetmoe_moa{"jetmoe-8b-moa", 8, 2, 2048, 2048};

// ---- routing distributions (bench/routing_distributions.hpp) ---------------------------------

using jetmoe_bench::distribution;
using jetmoe_bench::distributions;
using jetmoe_bench::draw_experts;
using jetmoe_bench::name_of;

// JetMoE's router, steered: the logits of each token's pre-drawn experts get a bias far above
// the logits' spread, then the unmodified top_k_then_softmax rule runs. Gates stay the softmax
// of the chosen experts' own logits (the bias is equal for all of them and cancels).
struct steered_router {
  static constexpr float bias = jetmoe_bench::steering_bias;
  std::shared_ptr<const std::vector<std::int32_t>> chosen;  // (T, k)
  std::shared_ptr<std::vector<float>> biased;               // (T, E) scratch, reused

  void steer(tensor_view<const float, 2> logits, index_t k) const {
    const index_t tokens = logits.extent(0), experts = logits.extent(1);
    jetmoe::check(static_cast<index_t>(chosen->size()) == tokens * k, "steered_router: drawn for ",
                  chosen->size() / static_cast<std::size_t>(k), " tokens, routing ", tokens);
    biased->resize(static_cast<std::size_t>(tokens * experts));
    jetmoe::exec::parallel_for(policy(), tokens, [&](std::ptrdiff_t t) {
      float* row = biased->data() + t * experts;
      for (index_t e = 0; e < experts; ++e) row[e] = logits(t, e);
      for (index_t j = 0; j < k; ++j) row[(*chosen)[static_cast<std::size_t>(t * k + j)]] += bias;
    });
  }
  tensor_view<const float, 2> steered(index_t tokens, index_t experts) const {
    return jetmoe::make_view<const float>(biased->data(), tokens, experts);
  }

  template <class Policy>
  void route(const Policy& p, tensor_view<const float, 2> logits, index_t k, tensor_view<std::int32_t, 2> expert_ids,
             tensor_view<float, 2> gates) const {
    steer(logits, k);
    routing::top_k_then_softmax{}.route(p, steered(logits.extent(0), logits.extent(1)), k, expert_ids, gates);
  }
};

// ---- options ------------------------------------------------------------------------------------

std::vector<index_t> token_counts() {
  if (const char* list = std::getenv("JETMOE_BENCH_TOKENS"); list != nullptr && *list != '\0') {
    std::vector<index_t> out;
    std::stringstream in(list);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) out.push_back(std::stoll(item));
    return out;
  }
  if (env_flag("JETMOE_BENCH_FULL")) return {1, 4, 16, 64, 256, 1024, 2048, 4096, 16384};
  return {1, 16, 256, 2048};
}

int repetitions() { return env_int("JETMOE_BENCH_REPS", 3); }
double max_flops() { return env_flag("JETMOE_BENCH_FULL") ? 1e30 : 1e9 * env_int("JETMOE_BENCH_MAX_GFLOP", 300); }

// ---- weights: one shape alive at a time (Mixtral's alone are 2.8 GB) ----------------------------

struct mlp_weights_holder {
  mlp_shape shape;
  tensor<bf16, 2> router;      // (E, H)
  tensor<bf16, 3> input;       // (E, 2I, H)
  tensor<bf16, 3> output;      // (E, H, I)
  tensor<bf16, 1> bias;        // (H)
  tensor<bf16, 2> dense_in;    // (2kI, H)  the dense equivalent: same FLOPs per token
  tensor<bf16, 2> dense_out;   // (H, kI)

  explicit mlp_weights_holder(const mlp_shape& s)
      : shape(s),
        router(make_dims(s.experts, s.hidden)),
        input(make_dims(s.experts, 2 * s.inner, s.hidden)),
        output(make_dims(s.experts, s.hidden, s.inner)),
        bias(make_dims(s.hidden)),
        dense_in(make_dims(2 * s.top_k * s.inner, s.hidden)),
        dense_out(make_dims(s.hidden, s.top_k * s.inner)) {
    fill_uniform(router, 0.05f, 1);
    fill_uniform(input, 0.02f, 2);
    fill_uniform(output, 0.02f, 3);
    fill_uniform(bias, 0.01f, 4);
    fill_uniform(dense_in, 0.02f, 5);
    fill_uniform(dense_out, 0.02f, 6);
  }
  routing::moe_mlp_weights<bf16> view() const { return {router.view(), input.view(), output.view(), bias.view()}; }
};

struct moa_weights_holder {
  moa_shape shape;
  tensor<bf16, 2> router;        // (E, H)
  tensor<bf16, 3> input;         // (E, Dq, H)
  tensor<bf16, 3> output;        // (E, H, Dq)
  tensor<bf16, 1> bias;          // (H)
  tensor<bf16, 2> dense_map;     // (k·Dq, H)
  tensor<bf16, 2> dense_reduce;  // (H, k·Dq)

  explicit moa_weights_holder(const moa_shape& s)
      : shape(s),
        router(make_dims(s.experts, s.hidden)),
        input(make_dims(s.experts, s.width, s.hidden)),
        output(make_dims(s.experts, s.hidden, s.width)),
        bias(make_dims(s.hidden)),
        dense_map(make_dims(s.top_k * s.width, s.hidden)),
        dense_reduce(make_dims(s.hidden, s.top_k * s.width)) {
    fill_uniform(router, 0.05f, 11);
    fill_uniform(input, 0.02f, 12);
    fill_uniform(output, 0.02f, 13);
    fill_uniform(bias, 0.01f, 14);
    fill_uniform(dense_map, 0.02f, 15);
    fill_uniform(dense_reduce, 0.02f, 16);
  }
  routing::moa_weights<bf16> view() const { return {router.view(), input.view(), output.view(), bias.view()}; }
};

std::unique_ptr<mlp_weights_holder> current_mlp;
std::unique_ptr<moa_weights_holder> current_moa;

const mlp_weights_holder& mlp_weights(const mlp_shape& s) {
  if (!current_mlp || std::string(current_mlp->shape.name) != s.name) {
    current_mlp.reset();  // free the previous shape before allocating the next
    current_moa.reset();
    remeasure_floors();   // between shapes: the machine may be faster now than at start-up
    current_mlp = std::make_unique<mlp_weights_holder>(s);
  }
  return *current_mlp;
}

const moa_weights_holder& moa_weights(const moa_shape& s) {
  if (!current_moa) {
    current_mlp.reset();
    remeasure_floors();
    current_moa = std::make_unique<moa_weights_holder>(s);
  }
  return *current_moa;
}

// ---- per-point state, kept across the repetitions of a point -----------------------------------

tensor<float, 2> random_matrix(index_t rows, index_t cols, std::uint64_t seed) {
  tensor<float, 2> m(make_dims(rows, cols));
  fill_uniform(m, 1.0f, seed);
  return m;
}

index_t experts_used(const routing::routing_plan<>& plan) {
  index_t used = 0;
  for (index_t e = 0; e < plan.num_experts(); ++e) used += plan.counts()(e) > 0 ? 1 : 0;
  return used;
}

// One MLP shape × distribution × T: input, a steered router, the layer's workspace, and a
// built plan with its intermediate buffers for the stage benchmarks.
struct mlp_point {
  const mlp_weights_holder* weights;
  index_t tokens;
  tensor<float, 2> x, y;               // (T, H)
  steered_router router;
  routing::routing_workspace<> layer_ws, stage_ws;
  tensor<float, 2> logits;             // (T, E) raw router logits
  tensor<float, 2> sorted, z;          // (N, H)
  tensor<float, 2> u;                  // (N, I)
  index_t used = 0;

  mlp_point(const mlp_shape& s, distribution d, index_t T)
      : weights(&mlp_weights(s)), tokens(T), x(random_matrix(T, s.hidden, 21)), y(make_dims(T, s.hidden)),
        logits(make_dims(T, s.experts)) {
    router.chosen = std::make_shared<const std::vector<std::int32_t>>(draw_experts(d, T, s.experts, s.top_k, 31));
    router.biased = std::make_shared<std::vector<float>>();
    jetmoe::ops::linear(policy(), x.view(), weights->router.view(), logits.view());
    const auto& plan = routing::plan_routing(policy(), router, logits.view(), s.top_k, stage_ws.plan);
    used = experts_used(plan);
    sorted = tensor<float, 2>(make_dims(plan.num_sorted_rows(), s.hidden));
    z = tensor<float, 2>(make_dims(plan.num_sorted_rows(), s.hidden));
    u = random_matrix(plan.num_sorted_rows(), s.inner, 22);
    routing::gather(policy(), x.view(), plan.sorted_token(), sorted.view());
  }
  index_t rows() const { return stage_ws.plan.num_sorted_rows(); }  // N = T·k
};

struct moa_point {
  const moa_weights_holder* weights;
  tensor<float, 2> x, y;     // (T, H)
  tensor<float, 3> q;        // (T, k, Dq)
  tensor<float, 3> o;        // (T, k, Dq) attention output stand-in
  steered_router router;
  routing::routing_workspace<> ws;
  routing::mixture_of_attention<steered_router> moa;
  index_t used = 0, rows = 0;

  moa_point(const moa_shape& s, distribution d, index_t T)
      : weights(&moa_weights(s)), x(random_matrix(T, s.hidden, 41)), y(make_dims(T, s.hidden)),
        q(make_dims(T, s.top_k, s.width)), o(make_dims(T, s.top_k, s.width)) {
    fill_uniform(o, 1.0f, 42);
    router.chosen = std::make_shared<const std::vector<std::int32_t>>(draw_experts(d, T, s.experts, s.top_k, 43));
    router.biased = std::make_shared<std::vector<float>>();
    moa.router = router;
    moa.top_k = s.top_k;
    const auto& plan = moa.map(policy(), weights->view(), x.view(), q.view(), ws);  // reduce reuses this plan
    used = experts_used(plan);
    rows = plan.num_sorted_rows();
  }
};

// Buffers of a dense equivalent at one T.
struct dense_point {
  tensor<float, 2> x, hidden, activated, y;
};

// The state of the point last asked for, per type: built on first use, kept while the
// repetitions of that point (and its sibling stages) run, freed when another point comes.
template <class Point, class Make>
Point& cached_point(const std::string& key, Make&& make) {
  static std::string current_key;
  static std::unique_ptr<Point> current;
  if (!current || current_key != key) {
    current.reset();
    current = make();
    current_key = key;
  }
  return *current;
}

// Whether a timed call starts with cold caches (bench/common.hpp flush_caches): yes for
// everything that reads weights; the routing stages work on activations a model has just
// written, which are in cache.
enum class caches { cold, warm };

// Wall time of op per iteration, also handed to Google Benchmark as the manual time.
template <class Op>
double time_iterations(benchmark::State& state, caches start_with, Op&& op) {
  double total = 0.0;
  for (auto _ : state) {
    if (start_with == caches::cold) flush_caches();  // outside the timed region
    const auto start = std::chrono::steady_clock::now();
    op();
    const double seconds = seconds_since(start);
    state.SetIterationTime(seconds);
    total += seconds;
  }
  return total / static_cast<double>(state.iterations());
}

// A block and its dense equivalent timed in the same iterations, each call from cold caches:
// the host this VM runs on drifts by tens of percent over minutes, and alternating the two
// keeps that drift out of their ratio. The block's time is the manual time.
struct paired_seconds {
  double block = 0.0, dense = 0.0;
};

template <class Block, class Dense>
paired_seconds time_with_dense(benchmark::State& state, Block&& block, Dense&& dense) {
  paired_seconds total;
  for (auto _ : state) {
    flush_caches();
    auto start = std::chrono::steady_clock::now();
    block();
    const double block_seconds = seconds_since(start);
    flush_caches();
    start = std::chrono::steady_clock::now();
    dense();
    total.dense += seconds_since(start);
    state.SetIterationTime(block_seconds);
    total.block += block_seconds;
  }
  const auto n = static_cast<double>(state.iterations());
  return {total.block / n, total.dense / n};
}

std::string point_key(const char* shape, index_t T) { return std::string(shape) + "/T:" + std::to_string(T); }

// ---- the MLP benchmarks --------------------------------------------------------------------------

double dense_mlp_flops(const mlp_shape& s, index_t T) { return 2.0 * T * 3.0 * s.top_k * s.inner * s.hidden; }
double dense_mlp_bytes(const mlp_shape& s, index_t T) {
  return weight_bytes * 3.0 * s.top_k * s.inner * s.hidden + float_bytes * 2.0 * T * s.hidden;
}

void run_dense_mlp(const mlp_shape& s, dense_point& d) {
  const mlp_weights_holder& w = mlp_weights(s);
  jetmoe::ops::linear(policy(), d.x.view(), w.dense_in.view(), d.hidden.view());
  jetmoe::ops::glu(policy(), d.hidden.view(), d.activated.view());
  jetmoe::ops::linear(policy(), d.activated.view(), w.dense_out.view(), d.y.view());
}

dense_point& dense_mlp_point(const mlp_shape& s, index_t T) {
  return cached_point<dense_point>("dense/" + point_key(s.name, T), [&] {
    return std::make_unique<dense_point>(dense_point{
        random_matrix(T, s.hidden, 51), tensor<float, 2>(make_dims(T, 2 * s.top_k * s.inner)),
        tensor<float, 2>(make_dims(T, s.top_k * s.inner)), tensor<float, 2>(make_dims(T, s.hidden))});
  });
}

void bm_dense_mlp(benchmark::State& state, mlp_shape s, index_t T) {
  mlp_weights(s);  // built here, not inside the first timed iteration
  dense_point& d = dense_mlp_point(s, T);
  const double seconds = time_iterations(state, caches::cold, [&] {
    run_dense_mlp(s, d);
    benchmark::DoNotOptimize(d.y.data());
  });
  set_floor_counters(state, seconds, dense_mlp_bytes(s, T), dense_mlp_flops(s, T));
  state.counters["tokens"] = static_cast<double>(T);
}

enum class mlp_stage { router, plan, gather, grouped_glu, grouped_linear, combine, layer };

const char* name_of(mlp_stage stage) {
  switch (stage) {
    case mlp_stage::router: return "router";
    case mlp_stage::plan: return "plan";
    case mlp_stage::gather: return "gather";
    case mlp_stage::grouped_glu: return "grouped_glu";
    case mlp_stage::grouped_linear: return "grouped_linear";
    case mlp_stage::combine: return "combine";
    case mlp_stage::layer: return "moe_layer";
  }
  return "?";
}

// Compulsory bytes and FLOPs of a stage, given N routed rows and the experts they touch.
struct work {
  double bytes = 0.0, flops = 0.0;
};

work mlp_stage_work(mlp_stage stage, const mlp_shape& s, index_t T, index_t N, index_t used) {
  const double H = static_cast<double>(s.hidden), I = static_cast<double>(s.inner), E = static_cast<double>(s.experts);
  const double k = static_cast<double>(s.top_k), rows = static_cast<double>(N), tokens = static_cast<double>(T);
  const double experts_touched = static_cast<double>(used);
  switch (stage) {
    case mlp_stage::router: return {float_bytes * tokens * E + 8.0 * tokens * k, 0.0};
    case mlp_stage::plan: return {4.0 * 4.0 * tokens * k, 0.0};  // ids in; slot, token, inverse, offsets out
    case mlp_stage::gather: return {float_bytes * 2.0 * rows * H, 0.0};
    case mlp_stage::grouped_glu:
      return {weight_bytes * experts_touched * 2.0 * I * H + float_bytes * rows * (H + I), 2.0 * rows * 2.0 * I * H};
    case mlp_stage::grouped_linear:
      return {weight_bytes * experts_touched * H * I + float_bytes * rows * (H + I), 2.0 * rows * H * I};
    case mlp_stage::combine: return {float_bytes * (rows + tokens) * H, 2.0 * rows * H};
    case mlp_stage::layer:
      return {weight_bytes * (experts_touched * 3.0 * H * I + E * H) + float_bytes * 2.0 * tokens * H,
              2.0 * rows * 3.0 * H * I + 2.0 * tokens * H * E};
  }
  return {};
}

void bm_mlp_stage(benchmark::State& state, mlp_stage stage, mlp_shape s, distribution d, index_t T) {
  mlp_point& p = cached_point<mlp_point>(std::string(s.name) + "/" + name_of(d) + "/" + std::to_string(T),
                                         [&] { return std::make_unique<mlp_point>(s, d, T); });
  const mlp_weights_holder& w = *p.weights;
  auto& plan = p.stage_ws.plan;
  double seconds = 0.0;
  switch (stage) {
    case mlp_stage::router: {
      p.router.steer(p.logits.view(), s.top_k);  // the bias is the benchmark's, not the router's cost
      const auto steered = p.router.steered(T, s.experts);
      tensor<std::int32_t, 2> ids(make_dims(T, s.top_k));
      tensor<float, 2> gates(make_dims(T, s.top_k));
      seconds = time_iterations(state, caches::warm, [&] {
        routing::top_k_then_softmax{}.route(policy(), steered, s.top_k, ids.view(), gates.view());
        benchmark::DoNotOptimize(gates.data());
      });
      break;
    }
    case mlp_stage::plan:
      seconds = time_iterations(state, caches::warm, [&] {
        plan.prepare(policy(), T, s.top_k, s.experts);  // same sizes: the router's ids stay
        routing::build_plan(policy(), plan);
        benchmark::DoNotOptimize(plan.sorted_slot().data());
      });
      break;
    case mlp_stage::gather:
      seconds = time_iterations(state, caches::warm, [&] {
        routing::gather(policy(), p.x.view(), plan.sorted_token(), p.sorted.view());
        benchmark::DoNotOptimize(p.sorted.data());
      });
      break;
    case mlp_stage::grouped_glu: {
      tensor<float, 2> activated(make_dims(p.rows(), s.inner));  // (N, I)
      seconds = time_iterations(state, caches::cold, [&] {
        routing::grouped_glu(policy(), plan, routing::expert_input::sorted(p.sorted.view()), w.input.view(),
                             activated.view(), p.stage_ws.experts);
        benchmark::DoNotOptimize(activated.data());
      });
      break;
    }
    case mlp_stage::grouped_linear:
      seconds = time_iterations(state, caches::cold, [&] {
        routing::grouped_linear(policy(), plan, routing::expert_input::sorted(p.u.view()), w.output.view(), p.z.view(),
                                p.stage_ws.experts);
        benchmark::DoNotOptimize(p.z.data());
      });
      break;
    case mlp_stage::combine:
      seconds = time_iterations(state, caches::warm, [&] {
        routing::combine(policy(), plan, p.z.view(), p.y.view(), w.bias.view());
        benchmark::DoNotOptimize(p.y.data());
      });
      break;
    case mlp_stage::layer: {
      const routing::moe_mlp<steered_router> moe{.router = p.router, .top_k = s.top_k};
      const auto weights = w.view();
      dense_point& d = dense_mlp_point(s, T);
      const paired_seconds times = time_with_dense(
          state,
          [&] {
            moe.forward(policy(), weights, p.x.view(), p.y.view(), p.layer_ws);
            benchmark::DoNotOptimize(p.y.data());
          },
          [&] {
            run_dense_mlp(s, d);
            benchmark::DoNotOptimize(d.y.data());
          });
      seconds = times.block;
      state.counters["dense_ratio"] = times.block / times.dense;
      state.counters["dense_ms"] = 1e3 * times.dense;
      break;
    }
  }
  const work needed = mlp_stage_work(stage, s, T, p.rows(), p.used);
  set_floor_counters(state, seconds, needed.bytes, needed.flops);
  state.counters["tokens"] = static_cast<double>(T);
  state.counters["experts_used"] = static_cast<double>(p.used);
}

// ---- the MoA benchmarks --------------------------------------------------------------------------

enum class moa_half { map, reduce };

work moa_work(moa_half half, const moa_shape& s, index_t T, index_t N, index_t used) {
  const double H = static_cast<double>(s.hidden), Dq = static_cast<double>(s.width), E = static_cast<double>(s.experts);
  const double k = static_cast<double>(s.top_k), rows = static_cast<double>(N), tokens = static_cast<double>(T);
  const double weights = weight_bytes * static_cast<double>(used) * Dq * H;
  const double activations = float_bytes * tokens * (H + k * Dq);
  if (half == moa_half::map) return {weights + weight_bytes * E * H + activations, 2.0 * rows * Dq * H + 2.0 * tokens * H * E};
  return {weights + activations, 2.0 * rows * Dq * H};
}

work dense_moa_work(const moa_shape& s, index_t T) {
  const double H = static_cast<double>(s.hidden), kDq = static_cast<double>(s.top_k * s.width);
  return {weight_bytes * kDq * H + float_bytes * static_cast<double>(T) * (H + kDq), 2.0 * static_cast<double>(T) * kDq * H};
}

dense_point& dense_moa_point(const moa_shape& s, index_t T) {
  // x (T, H) → hidden (T, k·Dq) for map; hidden → y (T, H) for reduce.
  return cached_point<dense_point>("dense/" + point_key(s.name, T), [&] {
    return std::make_unique<dense_point>(dense_point{random_matrix(T, s.hidden, 61), random_matrix(T, s.top_k * s.width, 62),
                                                     tensor<float, 2>{}, tensor<float, 2>(make_dims(T, s.hidden))});
  });
}

void run_dense_moa(const moa_weights_holder& w, dense_point& d, moa_half half) {
  if (half == moa_half::map)
    jetmoe::ops::linear(policy(), d.x.view(), w.dense_map.view(), d.hidden.view());
  else
    jetmoe::ops::linear(policy(), d.hidden.view(), w.dense_reduce.view(), d.y.view());
}

const char* name_of(moa_half half) { return half == moa_half::map ? "map" : "reduce"; }

void bm_dense_moa(benchmark::State& state, moa_shape s, index_t T, moa_half half) {
  const moa_weights_holder& w = moa_weights(s);  // built before timing starts
  dense_point& d = dense_moa_point(s, T);
  const double seconds = time_iterations(state, caches::cold, [&] {
    run_dense_moa(w, d, half);
    benchmark::DoNotOptimize(d.y.data());
    benchmark::DoNotOptimize(d.hidden.data());
  });
  const work needed = dense_moa_work(s, T);
  set_floor_counters(state, seconds, needed.bytes, needed.flops);
  state.counters["tokens"] = static_cast<double>(T);
}

void bm_moa(benchmark::State& state, moa_shape s, distribution d, index_t T, moa_half half) {
  moa_point& p = cached_point<moa_point>(std::string(s.name) + "/" + name_of(d) + "/" + std::to_string(T),
                                         [&] { return std::make_unique<moa_point>(s, d, T); });
  const auto weights = p.weights->view();
  const auto& plan = p.ws.plan;
  dense_point& dense_buffers = dense_moa_point(s, T);
  const auto dense = [&] {
    run_dense_moa(*p.weights, dense_buffers, half);
    benchmark::DoNotOptimize(dense_buffers.y.data());
    benchmark::DoNotOptimize(dense_buffers.hidden.data());
  };
  paired_seconds times;
  if (half == moa_half::map) {
    times = time_with_dense(
        state,
        [&] {
          p.moa.map(policy(), weights, p.x.view(), p.q.view(), p.ws);
          benchmark::DoNotOptimize(p.q.data());
        },
        dense);
  } else {
    times = time_with_dense(
        state,
        [&] {
          p.moa.reduce(policy(), weights, plan, p.o.view(), p.y.view(), p.ws);
          benchmark::DoNotOptimize(p.y.data());
        },
        dense);
  }
  const double seconds = times.block;
  state.counters["dense_ratio"] = times.block / times.dense;
  state.counters["dense_ms"] = 1e3 * times.dense;
  const work needed = moa_work(half, s, T, p.rows, p.used);
  set_floor_counters(state, seconds, needed.bytes, needed.flops);
  state.counters["tokens"] = static_cast<double>(T);
  state.counters["experts_used"] = static_cast<double>(p.used);
}

// ---- ops::linear's kernels on the expert projections --------------------------------------------

// One expert's projection of a shape above: in → out features, bf16 weights.
struct projection {
  const char* name;
  index_t in, out;
};
constexpr projection projections[] = {
    {"fine-grained-in", 2048, 2 * 768},    // W_in of a fine-grained expert (gate and up)
    {"fine-grained-out", 768, 2048},       // its W_out
    {"jetmoe-8b-in", 2048, 2 * 5632},      // W_in of a JetMoE-8B MLP expert
    {"jetmoe-8b-out", 5632, 2048},         // its W_out
};
// Row counts around the few-rows / panel boundary (an expert tile of T rows, or a decode batch).
constexpr index_t linear_row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 20, 22, 23, 24, 33, 38};

// Compulsory bytes (bf16 weights, fp32 x and y) and FLOPs of one linear_rows call.
work linear_rows_work(const projection& pr, index_t T) {
  return {weight_bytes * pr.in * pr.out + float_bytes * T * (pr.in + pr.out), 2.0 * static_cast<double>(T) * pr.in * pr.out};
}

struct linear_point {
  tensor<bf16, 2> w;    // (out, in)
  tensor<float, 2> x;   // (T, in)
  tensor<float, 2> y;   // (T, out)
};

void bm_linear_rows(benchmark::State& state, projection pr, index_t T) {
  linear_point& p = cached_point<linear_point>(point_key(pr.name, T), [&] {
    auto made = std::make_unique<linear_point>(linear_point{tensor<bf16, 2>(make_dims(pr.out, pr.in)),
                                                            random_matrix(T, pr.in, 51), tensor<float, 2>(make_dims(T, pr.out))});
    fill_uniform(made->w, 0.02f, 52);
    return made;
  });
  const tensor_view<const float, 2> x = p.x.view();
  const tensor_view<const bf16, 2> w = p.w.view();
  const paired_seconds times = time_with_dense(
      state,
      [&] {
        jetmoe::ops::linear(policy(), x, w, p.y.view());
        benchmark::DoNotOptimize(p.y.data());
      },
      [&] {
        // The panel kernel alone, without the few-rows kernel's share of a ragged remainder.
        jetmoe::ops::cpu_detail::linear_token_panels(policy(), x, w, p.y.view());
        benchmark::DoNotOptimize(p.y.data());
      });
  const work needed = linear_rows_work(pr, T);
  set_floor_counters(state, times.block, needed.bytes, needed.flops);
  state.counters["panel_ratio"] = times.dense / times.block;
  state.counters["panel_GFLOPs"] = needed.flops / times.dense * 1e-9;
  state.counters["tokens"] = static_cast<double>(T);
  state.counters["few_rows_max"] = static_cast<double>(jetmoe::ops::cpu_detail::few_rows_tuning::max_rows);
}

// ---- registration --------------------------------------------------------------------------------

// Cheap points run for a minimum time (Google Benchmark's iteration search doubles as warm-up);
// points whose floor alone is over 20 ms run one iteration per repetition; fixed_iterations > 0
// sets the count instead.
void configure(benchmark::internal::Benchmark* b, index_t T, const work& estimate, int fixed_iterations = 0) {
  const double floor = floor_seconds(estimate.bytes, estimate.flops);
  b->Arg(T)->ArgName("T")->UseManualTime()->MeasureProcessCPUTime()->Repetitions(repetitions());
  b->Unit(floor > 1e-3 ? benchmark::kMillisecond : benchmark::kMicrosecond);
  if (fixed_iterations > 0)
    b->Iterations(fixed_iterations);
  else if (floor > 0.02)
    b->Iterations(1);
  else
    b->MinTime(0.1);
  add_spread_statistics(b);
}

std::vector<std::string> left_out;

void register_all() {
  const double budget = max_flops();
  for (const mlp_shape& s : mlp_shapes) {
    for (index_t T : token_counts()) {
      if (dense_mlp_flops(s, T) > budget) {
        left_out.push_back(point_key(s.name, T));
        continue;
      }
      const std::string dense_name = std::string("dense_mlp/") + s.name;
      configure(benchmark::RegisterBenchmark(dense_name.c_str(), bm_dense_mlp, s, T), T,
                {dense_mlp_bytes(s, T), dense_mlp_flops(s, T)});
      for (distribution d : distributions) {
        for (mlp_stage stage : {mlp_stage::router, mlp_stage::plan, mlp_stage::gather, mlp_stage::grouped_glu,
                                mlp_stage::grouped_linear, mlp_stage::combine, mlp_stage::layer}) {
          const std::string name = std::string(name_of(stage)) + "/" + s.name + "/" + name_of(d);
          const work estimate = mlp_stage_work(stage, s, T, T * s.top_k, std::min(s.experts, T * s.top_k));
          configure(benchmark::RegisterBenchmark(name.c_str(), bm_mlp_stage, stage, s, d, T), T, estimate);
        }
      }
    }
  }
  const moa_shape& s = jetmoe_moa;
  for (index_t T : token_counts()) {
    if (dense_moa_work(s, T).flops * 2.0 > budget) {
      left_out.push_back(point_key(s.name, T));
      continue;
    }
    for (moa_half half : {moa_half::map, moa_half::reduce}) {
      const std::string name = std::string("dense_moa_") + name_of(half) + "/" + s.name;
      configure(benchmark::RegisterBenchmark(name.c_str(), bm_dense_moa, s, T, half), T, dense_moa_work(s, T));
    }
    for (distribution d : distributions)
      for (moa_half half : {moa_half::map, moa_half::reduce}) {
        const std::string name = std::string("moa_") + name_of(half) + "/" + s.name + "/" + name_of(d);
        configure(benchmark::RegisterBenchmark(name.c_str(), bm_moa, s, d, T, half), T,
                  moa_work(half, s, T, T * s.top_k, std::min(s.experts, T * s.top_k)));
      }
  }
  for (const projection& pr : projections)
    for (index_t T : linear_row_counts) {
      const std::string name = std::string("linear_rows/") + pr.name;
      // A fixed count, not a minimum time: the two cache flushes per iteration would make the
      // search for it take longer than the calls.
      configure(benchmark::RegisterBenchmark(name.c_str(), bm_linear_rows, pr, T), T, linear_rows_work(pr, T), 20);
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_common_context();
  register_all();
  std::string skipped;
  for (const auto& key : left_out) skipped += (skipped.empty() ? "" : ", ") + key;
  if (!skipped.empty())
    std::cerr << "bench_moe: left out (over JETMOE_BENCH_MAX_GFLOP; JETMOE_BENCH_FULL=1 runs them): " << skipped << "\n";
  benchmark::AddCustomContext("jetmoe_left_out", skipped.empty() ? "none" : skipped);
  benchmark::AddCustomContext("jetmoe_mode", env_flag("JETMOE_BENCH_FULL") ? "full" : "quick");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
