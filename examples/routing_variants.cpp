// routing_variants — one mixture-of-MLP-experts layer, the same weights and the same input,
// routed by every built-in router and by a router written here (top-p). For each it prints
// the tokens each expert processed, what was dropped or left empty, and how far the output
// moved from JetMoE's own routing (top-k then softmax).
//
//   routing_variants [--tokens T] [--threads N] [--seed S]
//
// Random weights, small invented sizes: the point is the routing, not the numbers.
#include <jetmoe/jetmoe.hpp>
#include <jetmoe/routing.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>

#include "common/cli.hpp"

namespace {

using jetmoe::index_t;
using jetmoe::make_dims;
using jetmoe::tensor;
using jetmoe::tensor_view;
namespace routing = jetmoe::routing;

constexpr index_t hidden = 64, inner = 96, experts = 8, top_k = 2;

// A user-defined router: top-p ("dynamic") routing. A token takes its most probable experts
// until their probability mass reaches `mass`, at most k of them; slots it does not need stay
// empty. Confident tokens then use one expert, unsure ones several. Nothing registers it:
// having this route() is what makes it a routing::router.
struct top_p_router {
  float mass = 0.5f;

  template <class Policy>
  void route(const Policy& policy, tensor_view<const float, 2> logits, index_t k,
             tensor_view<std::int32_t, 2> expert_ids, tensor_view<float, 2> gates) const {
    routing::check_route_arguments("top_p_router", logits, k, k, expert_ids, gates);
    // Reuse the library's row machinery: softmax over all experts, top-k, then cut at `mass`.
    routing::route_rows(policy, logits, k, expert_ids, gates, rule{mass});
  }

  struct rule {
    float mass;
    index_t scratch_floats(index_t e) const { return e; }
    void operator()(index_t, const float* logits, index_t e, index_t k, float* probs, std::int32_t* ids,
                    float* gates) const {
      routing::rules::softmax(logits, probs, e);
      routing::rules::select_top_k(probs, e, k, ids, gates);
      float covered = 0.0f;
      index_t used = 0;
      while (used < k && covered < mass) covered += gates[used++];
      for (index_t j = 0; j < used; ++j) gates[j] /= covered;  // renormalise over the kept ones
      routing::rules::clear_slots(ids, gates, used, k);
    }
  };
};
static_assert(routing::router<top_p_router>);

template <class T, std::size_t R>
void fill_uniform(tensor<T, R>& t, std::mt19937& rng, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = jetmoe::from_float<T>(dist(rng));
}

struct layer {
  tensor<float, 2> router{make_dims(experts, hidden)};
  tensor<float, 3> input_linear{make_dims(experts, 2 * inner, hidden)};
  tensor<float, 3> output_linear{make_dims(experts, hidden, inner)};
  tensor<float, 1> bias{make_dims(hidden)};
  tensor<float, 1> selection_bias{make_dims(experts)};  // for the DeepSeek-style router

  explicit layer(std::mt19937& rng) {
    fill_uniform(router, rng, 0.3f);
    fill_uniform(input_linear, rng, 0.15f);
    fill_uniform(output_linear, rng, 0.15f);
    fill_uniform(bias, rng, 0.05f);
    for (index_t e = 0; e < experts; ++e) selection_bias(e) = e < 2 ? -0.2f : 0.0f;  // discourage experts 0, 1
  }
  routing::moe_mlp_weights<float> weights() const {
    return {router.view(), input_linear.view(), output_linear.view(), bias.view()};
  }
};

// ‖a − b‖ / ‖b‖ over all elements.
double relative_distance(const tensor<float, 2>& a, const tensor<float, 2>& b) {
  double diff = 0.0, norm = 0.0;
  for (index_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a.data()[i]) - b.data()[i];
    diff += d * d;
    norm += static_cast<double>(b.data()[i]) * b.data()[i];
  }
  return std::sqrt(diff / norm);
}

template <class Router>
void run(const char* name, const Router& router, const jetmoe::exec::cpu& policy, const layer& weights,
         const tensor<float, 2>& x, const tensor<float, 2>* baseline, tensor<float, 2>& y,
         routing::routing_workspace<>& ws) {
  const routing::moe_mlp<Router> moe{.router = router, .top_k = top_k};
  const auto& plan = moe.forward(policy, weights.weights(), x.view(), y.view(), ws);
  std::printf("%-26s", name);
  for (index_t e = 0; e < experts; ++e) std::printf(" %5d", plan.counts()(e));
  std::printf("  %7lld %5lld", static_cast<long long>(plan.num_dropped()), static_cast<long long>(plan.num_empty_slots()));
  if (baseline) std::printf("   %.3f\n", relative_distance(y, *baseline));
  else std::printf("   (reference)\n");
}

}  // namespace

int main(int argc, char** argv) {
  index_t tokens = 256;
  int threads = jetmoe::exec::cpu::default_threads();
  unsigned seed = 1;
  jetmoe::cli::parser cli("routing_variants", "Route one MoE layer with every built-in router and a custom one.");
  cli.number("-t, --tokens", "T", "tokens in the batch (default 256)", tokens)
      .number("--threads", "N", "CPU threads (default: all)", threads)
      .number("--seed", "S", "random seed (default 1)", seed);
  int exit_code = 0;
  if (!cli.parse(argc, argv, exit_code)) return exit_code;
  if (tokens < 1 || threads < 1) {
    std::fprintf(stderr, "routing_variants: --tokens and --threads must be at least 1\n");
    return 2;
  }

  try {
    std::mt19937 rng(seed);
    const layer weights(rng);
    tensor<float, 2> x(make_dims(tokens, hidden));
    fill_uniform(x, rng, 1.0f);
    const jetmoe::exec::cpu policy{threads};
    routing::routing_workspace<> ws;  // one workspace for every run
    tensor<float, 2> baseline(make_dims(tokens, hidden)), y(make_dims(tokens, hidden));

    std::printf("MoE layer: T=%lld tokens, E=%lld experts, k=%lld, H=%lld, I=%lld, %d threads\n\n",
                static_cast<long long>(tokens), static_cast<long long>(experts), static_cast<long long>(top_k),
                static_cast<long long>(hidden), static_cast<long long>(inner), threads);
    std::printf("%-26s", "router / tokens per expert");
    for (index_t e = 0; e < experts; ++e) std::printf(" %5s", ("e" + std::to_string(e)).c_str());
    std::printf("  %7s %5s   %s\n", "dropped", "empty", "|y - y_jetmoe| / |y_jetmoe|");

    run("top-k then softmax", routing::top_k_then_softmax{}, policy, weights, x, nullptr, baseline, ws);
    run("softmax then top-k", routing::softmax_then_top_k{}, policy, weights, x, &baseline, y, ws);
    run("softmax, top-k, renorm", routing::softmax_then_top_k{true}, policy, weights, x, &baseline, y, ws);
    run("sigmoid + bias (0,1: -0.2)", routing::sigmoid_top_k{weights.selection_bias.view()}, policy, weights, x,
        &baseline, y, ws);
    run("sigmoid, 4 groups keep 2", routing::sigmoid_top_k{weights.selection_bias.view(), 4, 2}, policy, weights, x,
        &baseline, y, ws);
    run("switch top-1, capacity 1.0", routing::switch_top1{1.0}, policy, weights, x, &baseline, y, ws);
    run("switch top-1, no capacity", routing::switch_top1{0.0}, policy, weights, x, &baseline, y, ws);
    run("expert choice (non-causal)", routing::expert_choice{1.0}, policy, weights, x, &baseline, y, ws);
    run("noisy top-k, std 1", routing::noisy_top_k{1.0f, 7, 0}, policy, weights, x, &baseline, y, ws);
    run("custom: top-p 0.5", top_p_router{0.5f}, policy, weights, x, &baseline, y, ws);
    std::printf("\nEvery row used the same weights, input and workspace (%zu KiB of scratch).\n",
                ws.scratch_bytes() / 1024);
  } catch (const jetmoe::error& e) {
    std::fprintf(stderr, "routing_variants: %s\n", e.what());
    return 1;
  }
  return 0;
}
