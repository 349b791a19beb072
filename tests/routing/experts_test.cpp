// Grouped expert linear, GLU, combine and the MoE / MoA blocks against naive per-token loops
// in double precision.
//
// Tolerances. The naive references use exactly the weights the kernels read (bf16 weights
// are widened exactly), so the only error is fp32 accumulation: for a dot product of n terms
// it is bounded by about n·ε·Σ|x_i·w_i| and behaves like √n·ε·Σ|x_i·w_i| in practice. We compare
// each output against 2e-6 · Σ|terms| (+1e-6 absolute for outputs near zero): with n ≤ 32 and
// ε = 6e-8 the expected √n·ε is 3.4e-7, so the margin is ~6×, the same for float, bf16 and half
// weights. Results that must not depend on threads or paths are compared bit for bit.
#include <catch2/catch.hpp>

#include <cstring>

#include "routing_test_helpers.hpp"

using namespace routing_test;
namespace routing = jetmoe::routing;
using jetmoe::bf16;
using jetmoe::make_dims;

namespace {

using plan_type = routing::routing_plan<jetmoe::exec::cpu>;

// A value and the sum of the magnitudes of the terms that made it.
struct reference_value {
  double value = 0.0, magnitude = 0.0;
  void add(double term) {
    value += term;
    magnitude += std::abs(term);
  }
};

void require_close(float got, const reference_value& expected) {
  REQUIRE(std::abs(static_cast<double>(got) - expected.value) <= 2e-6 * expected.magnitude + 1e-6);
}

template <class W>
std::vector<reference_value> naive_linear_row(const float* x, const tensor<W, 3>& w, index_t expert) {
  std::vector<reference_value> out(static_cast<std::size_t>(w.extent(1)));
  for (index_t o = 0; o < w.extent(1); ++o)
    for (index_t i = 0; i < w.extent(2); ++i) out[o].add(static_cast<double>(x[i]) * widened(w(expert, o, i)));
  return out;
}

// GLU of a reference row; the magnitude of u = silu(a)·b is propagated to first order.
std::vector<reference_value> naive_glu(const std::vector<reference_value>& h) {
  const std::size_t inner = h.size() / 2;
  std::vector<reference_value> u(inner);
  for (std::size_t i = 0; i < inner; ++i) {
    const double a = h[i].value, b = h[inner + i].value;
    u[i].value = silu_double(a) * b;
    u[i].magnitude = std::abs(silu_double(a)) * h[inner + i].magnitude + 1.1 * h[i].magnitude * std::abs(b);
  }
  return u;
}

// A whole GLU expert for one row: W_out[e] · glu(W_in[e] · x).
template <class W>
std::vector<reference_value> naive_expert(const float* x, const tensor<W, 3>& w_in, const tensor<W, 3>& w_out,
                                          index_t expert) {
  const auto u = naive_glu(naive_linear_row(x, w_in, expert));
  std::vector<reference_value> z(static_cast<std::size_t>(w_out.extent(1)));
  for (index_t o = 0; o < w_out.extent(1); ++o)
    for (index_t i = 0; i < w_out.extent(2); ++i) {
      const double wv = widened(w_out(expert, o, i));
      z[o].value += u[i].value * wv;
      z[o].magnitude += u[i].magnitude * std::abs(wv);
    }
  return z;
}

std::int32_t expert_of_row(const plan_type& plan, index_t row) {
  const std::int32_t s = plan.sorted_slot()(row);
  return plan.expert_ids()(s / plan.slots_per_token(), s % plan.slots_per_token());
}

template <class T, std::size_t R>
bool bitwise_equal(const tensor<T, R>& a, const tensor<T, R>& b) {
  return a.extents() == b.extents() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace

TEMPLATE_TEST_CASE("grouped_linear and grouped_glu match a naive per-row loop", "[routing][experts]", float, bf16,
                   jetmoe::half) {
  using W = TestType;
  std::mt19937 rng(31);
  const index_t tokens = 37, hidden = 24, inner = 20, experts = 5;
  const auto x = random_matrix(rng, tokens, hidden);
  const auto logits = random_matrix(rng, tokens, experts, 2.0f);
  const auto w = random_weights<W>(rng, experts, 2 * inner, hidden, 0.5f);
  plan_type plan;
  routing::plan_routing(two_threads(), routing::top_k_then_softmax{}, logits.view(), 2, plan);
  const index_t rows = plan.num_sorted_rows();
  routing::expert_scratch<> scratch;
  scratch.tile_rows = GENERATE(3, 512);  // several tiles per expert, and one

  tensor<float, 2> sorted(make_dims(rows, hidden));
  routing::gather(two_threads(), x.view(), plan.sorted_token(), sorted.view());

  tensor<float, 2> y(make_dims(rows, 2 * inner));
  routing::grouped_linear(two_threads(), plan, routing::expert_input::sorted(sorted.view()), w.view(), y.view(), scratch);
  for (index_t r = 0; r < rows; ++r) {
    const auto expected = naive_linear_row(&x(plan.sorted_token()(r), 0), w, expert_of_row(plan, r));
    for (index_t o = 0; o < 2 * inner; ++o) require_close(y(r, o), expected[o]);
  }

  SECTION("reading x through the plan's index gives bit-identical results") {
    tensor<float, 2> y_indexed(make_dims(rows, 2 * inner));
    routing::grouped_linear(two_threads(), plan, routing::expert_input::indexed(x.view(), plan.sorted_token()),
                            w.view(), y_indexed.view(), scratch);
    REQUIRE(bitwise_equal(y, y_indexed));
  }

  SECTION("the GLU variant: silu of the first half times the second half") {
    tensor<float, 2> u(make_dims(rows, inner));
    routing::grouped_glu(two_threads(), plan, routing::expert_input::indexed(x.view(), plan.sorted_token()),
                         w.view(), u.view(), scratch);
    for (index_t r = 0; r < rows; ++r) {
      const auto expected = naive_glu(naive_linear_row(&x(plan.sorted_token()(r), 0), w, expert_of_row(plan, r)));
      for (index_t i = 0; i < inner; ++i) require_close(u(r, i), expected[i]);
    }
  }

  SECTION("a whole GLU expert") {
    const auto w_out = random_weights<W>(rng, experts, hidden, inner, 0.5f);
    tensor<float, 2> z(make_dims(rows, hidden));
    routing::grouped_glu_mlp(two_threads(), plan, routing::expert_input::sorted(sorted.view()), w.view(),
                             w_out.view(), z.view(), scratch);
    for (index_t r = 0; r < rows; ++r) {
      const auto expected = naive_expert(&x(plan.sorted_token()(r), 0), w, w_out, expert_of_row(plan, r));
      for (index_t o = 0; o < hidden; ++o) require_close(z(r, o), expected[o]);
    }
  }
}

TEST_CASE("grouped linear checks its shapes", "[routing][experts]") {
  std::mt19937 rng(32);
  const auto x = random_matrix(rng, 6, 8);
  const auto logits = random_matrix(rng, 6, 3);
  const auto w = random_weights<float>(rng, 4, 5, 8, 1.0f);  // 4 experts, the plan has 3
  plan_type plan;
  routing::plan_routing(one_thread(), routing::top_k_then_softmax{}, logits.view(), 2, plan);
  routing::expert_scratch<> scratch;
  tensor<float, 2> y(make_dims(plan.num_sorted_rows(), 5));
  REQUIRE_THROWS_AS(routing::grouped_linear(one_thread(), plan, routing::expert_input::indexed(x.view(), plan.sorted_token()),
                                            w.view(), y.view(), scratch),
                    jetmoe::error);
  // Input rows that overlap (a stride-0 broadcast) are rejected rather than read as dense.
  const auto w3 = random_weights<float>(rng, 3, 5, 8, 1.0f);  // (3, 5, 8) matches the plan
  const jetmoe::tensor_view<const float, 2> broadcast(x.data(), make_dims(6, 8), make_dims(0, 1));  // (6, 8), one row
  REQUIRE_THROWS_WITH(routing::grouped_linear(one_thread(), plan, routing::expert_input::indexed(broadcast, plan.sorted_token()),
                                              w3.view(), y.view(), scratch),
                      Catch::Contains("routing::grouped_linear") && Catch::Contains("overlap"));
}

TEST_CASE("combine: gated sum in slot order plus bias, identical for any thread count", "[routing][experts]") {
  std::mt19937 rng(33);
  const index_t tokens = 50, hidden = 33, experts = 4;
  const auto logits = grid_logits(rng, tokens, experts);
  plan_type plan;
  routing::plan_routing(two_threads(), routing::top_k_then_softmax{}, logits.view(), 2, plan);
  const auto z = random_matrix(rng, plan.num_sorted_rows(), hidden);
  const auto bias = random_vector<bf16>(rng, hidden, 1.0f);

  tensor<float, 2> y1(make_dims(tokens, hidden)), y2(make_dims(tokens, hidden)), y3(make_dims(tokens, hidden));
  routing::combine(one_thread(), plan, z.view(), y1.view(), bias.view());
  routing::combine(two_threads(), plan, z.view(), y2.view(), bias.view());
  routing::combine(two_threads(), plan, z.view(), y3.view(), bias.view());
  REQUIRE(bitwise_equal(y1, y2));
  REQUIRE(bitwise_equal(y2, y3));
  for (index_t t = 0; t < tokens; ++t)
    for (index_t h = 0; h < hidden; ++h) {
      reference_value expected;
      for (index_t j = 0; j < 2; ++j)
        expected.add(static_cast<double>(plan.gates()(t, j)) * z(plan.slot_to_sorted()(t * 2 + j), h));
      expected.add(widened(bias(h)));
      require_close(y1(t, h), expected);
    }

  SECTION("dropped slots contribute nothing: a token with none left gets the bias") {
    routing::plan_routing(one_thread(), routing::switch_top1{0.5}, logits.view(), 1, plan);
    REQUIRE(plan.num_dropped() > 0);
    const auto z2 = random_matrix(rng, plan.num_sorted_rows(), hidden);
    routing::combine(one_thread(), plan, z2.view(), y1.view(), bias.view());
    const std::int32_t dropped_token = plan.dropped_slots()(0);
    for (index_t h = 0; h < hidden; ++h) REQUIRE(y1(dropped_token, h) == jetmoe::to_float(bias(h)));
  }
}

namespace {

// y_t = Σ_j gate · expert(x_t) + bias, with the router decisions taken from the block's plan
// (routing itself is tested against brute force elsewhere).
template <class W>
void check_moe_output(const plan_type& plan, const tensor<float, 2>& x, const tensor<W, 3>& w_in,
                      const tensor<W, 3>& w_out, const tensor<W, 1>& bias, const tensor<float, 2>& y) {
  for (index_t t = 0; t < x.extent(0); ++t) {
    std::vector<reference_value> expected(static_cast<std::size_t>(x.extent(1)));
    for (index_t j = 0; j < plan.slots_per_token(); ++j) {
      if (plan.slot_to_sorted()(t * plan.slots_per_token() + j) < 0) continue;
      const double gate = plan.gates()(t, j);
      const auto z = naive_expert(&x(t, 0), w_in, w_out, plan.expert_ids()(t, j));
      for (index_t h = 0; h < x.extent(1); ++h) {
        expected[h].value += gate * z[h].value;
        expected[h].magnitude += gate * z[h].magnitude;
      }
    }
    for (index_t h = 0; h < x.extent(1); ++h) {
      expected[h].add(widened(bias(h)));
      require_close(y(t, h), expected[h]);
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("moe_mlp equals router + per-token experts + gated sum + bias", "[routing][blocks]", float, bf16) {
  using W = TestType;
  std::mt19937 rng(41);
  const index_t hidden = 32, inner = 24, experts = 6;
  const auto w_router = random_weights<W>(rng, 1, experts, hidden, 0.5f);
  const auto w_in = random_weights<W>(rng, experts, 2 * inner, hidden, 0.4f);
  const auto w_out = random_weights<W>(rng, experts, hidden, inner, 0.4f);
  const auto bias = random_vector<W>(rng, hidden, 0.5f);
  const routing::moe_mlp_weights<W> weights{w_router.view().select(0), w_in.view(), w_out.view(), bias.view()};

  routing::routing_workspace<> ws;
  for (index_t tokens : {1, 40, 9}) {  // one workspace across sizes, as a model would use it
    const auto x = random_matrix(rng, tokens, hidden);
    tensor<float, 2> y(make_dims(tokens, hidden)), logits(make_dims(tokens, experts));

    const routing::moe_mlp<> moe{.top_k = 2};
    const auto& plan = moe.forward(two_threads(), weights, x.view(), y.view(), ws, logits.view());
    REQUIRE(plan.num_sorted_rows() == 2 * tokens);
    // The logits written back are x · W_routerᵀ.
    for (index_t t = 0; t < tokens; ++t)
      for (index_t e = 0; e < experts; ++e) {
        reference_value expected;
        for (index_t h = 0; h < hidden; ++h) expected.add(x(t, h) * widened(w_router(0, e, h)));
        require_close(logits(t, e), expected);
      }
    check_moe_output(plan, x, w_in, w_out, bias, y);

    // The gathered-input path and one thread give bit-identical output.
    tensor<float, 2> y_gathered(make_dims(tokens, hidden)), y_serial(make_dims(tokens, hidden));
    const routing::moe_mlp<> gathered{.top_k = 2, .input = routing::expert_input_path::gathered};
    gathered.forward(two_threads(), weights, x.view(), y_gathered.view(), ws);
    moe.forward(one_thread(), weights, x.view(), y_serial.view(), ws);
    REQUIRE(bitwise_equal(y, y_gathered));
    REQUIRE(bitwise_equal(y, y_serial));
  }

  SECTION("with a capacity, dropped tokens get only the bias") {
    const auto x = random_matrix(rng, 30, hidden);
    tensor<float, 2> y(make_dims(30, hidden));
    const routing::moe_mlp<routing::switch_top1> moe{.router = {0.5}, .top_k = 2};
    const auto& plan = moe.forward(two_threads(), weights, x.view(), y.view(), ws);
    REQUIRE(plan.num_dropped() > 0);
    check_moe_output(plan, x, w_in, w_out, bias, y);
  }

  SECTION("k > E is a jetmoe::error") {
    const auto x = random_matrix(rng, 3, hidden);
    tensor<float, 2> y(make_dims(3, hidden));
    const routing::moe_mlp<> moe{.top_k = experts + 1};
    REQUIRE_THROWS_AS(moe.forward(one_thread(), weights, x.view(), y.view(), ws), jetmoe::error);
  }
}

TEMPLATE_TEST_CASE("mixture_of_attention map and reduce match per-slot projections", "[routing][blocks]", float, bf16) {
  using W = TestType;
  std::mt19937 rng(42);
  const index_t tokens = 21, hidden = 20, width = 12, experts = 4, k = 2;
  const auto w_router = random_weights<W>(rng, 1, experts, hidden, 0.5f);
  const auto w_q = random_weights<W>(rng, experts, width, hidden, 0.4f);
  const auto w_o = random_weights<W>(rng, experts, hidden, width, 0.4f);
  const auto bias = random_vector<W>(rng, hidden, 0.5f);
  const routing::moa_weights<W> weights{w_router.view().select(0), w_q.view(), w_o.view(), bias.view()};
  const auto x = random_matrix(rng, tokens, hidden);

  const routing::mixture_of_attention<> moa{.top_k = k};
  REQUIRE(moa.slots(experts) == k);
  routing::routing_workspace<> ws;
  tensor<float, 3> q(make_dims(tokens, k, width));
  const auto& plan = moa.map(two_threads(), weights, x.view(), q.view(), ws);
  for (index_t t = 0; t < tokens; ++t)
    for (index_t j = 0; j < k; ++j) {
      const auto expected = naive_linear_row(&x(t, 0), w_q, plan.expert_ids()(t, j));
      for (index_t d = 0; d < width; ++d) require_close(q(t, j, d), expected[d]);
    }

  // Stand-in for attention: any (T, S, Dq) tensor.
  const auto o_flat = random_matrix(rng, tokens * k, width);
  const jetmoe::tensor_view<const float, 3> o(o_flat.data(), make_dims(tokens, k, width));
  tensor<float, 2> y(make_dims(tokens, hidden));
  moa.reduce(two_threads(), weights, plan, o, y.view(), ws);
  for (index_t t = 0; t < tokens; ++t) {
    std::vector<reference_value> expected(static_cast<std::size_t>(hidden));
    for (index_t j = 0; j < k; ++j) {
      const auto z = naive_linear_row(&o(t, j, 0), w_o, plan.expert_ids()(t, j));
      const double gate = plan.gates()(t, j);
      for (index_t h = 0; h < hidden; ++h) {
        expected[h].value += gate * z[h].value;
        expected[h].magnitude += gate * z[h].magnitude;
      }
    }
    for (index_t h = 0; h < hidden; ++h) {
      expected[h].add(widened(bias(h)));
      require_close(y(t, h), expected[h]);
    }
  }

  SECTION("expert choice: S = E slots, and slots no expert took are zero") {
    const routing::mixture_of_attention<routing::expert_choice> chooser{.router = {0.5}, .top_k = k};
    REQUIRE(chooser.slots(experts) == experts);
    tensor<float, 3> q_all(make_dims(tokens, experts, width));
    const auto& chosen = chooser.map(two_threads(), weights, x.view(), q_all.view(), ws);
    REQUIRE(chosen.num_empty_slots() > 0);
    for (index_t t = 0; t < tokens; ++t)
      for (index_t e = 0; e < experts; ++e)
        if (chosen.expert_ids()(t, e) == routing::no_expert)
          for (index_t d = 0; d < width; ++d) REQUIRE(q_all(t, e, d) == 0.0f);
  }
}
