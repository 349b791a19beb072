// Shared helpers for the routing tests: random data and small reference computations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "jetmoe/jetmoe.hpp"
#include "jetmoe/routing.hpp"

namespace routing_test {

using jetmoe::index_t;
using jetmoe::tensor;

// Policies with one and two threads: results must not depend on which one runs.
inline jetmoe::exec::cpu one_thread() { return jetmoe::exec::cpu{1}; }
inline jetmoe::exec::cpu two_threads() { return jetmoe::exec::cpu{2}; }

// Uniform values in [-scale, scale].
inline tensor<float, 2> random_matrix(std::mt19937& rng, index_t rows, index_t cols, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  tensor<float, 2> m(jetmoe::make_dims(rows, cols));
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

template <class W>
tensor<W, 3> random_weights(std::mt19937& rng, index_t experts, index_t out, index_t in, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  tensor<W, 3> w(jetmoe::make_dims(experts, out, in));
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = jetmoe::from_float<W>(dist(rng));
  return w;
}

template <class W>
tensor<W, 1> random_vector(std::mt19937& rng, index_t n, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  tensor<W, 1> v(jetmoe::make_dims(n));
  for (index_t i = 0; i < n; ++i) v.data()[i] = jetmoe::from_float<W>(dist(rng));
  return v;
}

// Logits on a coarse grid (multiples of 1/4 in [-2, 2]): rows are full of exact ties, and
// distinct values are far enough apart that fp32 softmax keeps their order.
inline tensor<float, 2> grid_logits(std::mt19937& rng, index_t rows, index_t cols) {
  std::uniform_int_distribution<int> dist(-8, 8);
  tensor<float, 2> m(jetmoe::make_dims(rows, cols));
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(dist(rng)) * 0.25f;
  return m;
}

// Expert order by a full sort — independent of the routers' insertion selection.
inline std::vector<std::int32_t> rank_by_sort(const std::vector<float>& scores) {
  std::vector<std::int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  });
  return order;
}

inline std::vector<float> row_of(const tensor<float, 2>& m, index_t r) {
  return {m.data() + r * m.extent(1), m.data() + (r + 1) * m.extent(1)};
}

inline std::vector<double> softmax_double(const std::vector<float>& x) {
  const double max_value = *std::max_element(x.begin(), x.end());
  std::vector<double> p(x.size());
  double sum = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) sum += p[i] = std::exp(static_cast<double>(x[i]) - max_value);
  for (double& v : p) v /= sum;
  return p;
}

inline double silu_double(double v) { return v / (1.0 + std::exp(-v)); }

template <class W>
double widened(W w) {
  return static_cast<double>(jetmoe::to_float(w));
}

// Owning storage for a router's output on T tokens × S slots.
struct route_result {
  tensor<std::int32_t, 2> ids;
  tensor<float, 2> gates;
  route_result(index_t tokens, index_t slots)
      : ids(jetmoe::make_dims(tokens, slots)), gates(jetmoe::make_dims(tokens, slots)) {}
};

template <class Router>
route_result run_router(const Router& r, const jetmoe::exec::cpu& policy, const tensor<float, 2>& logits, index_t k) {
  const index_t slots = jetmoe::routing::slots_per_token(r, k, logits.extent(1));
  route_result out(logits.extent(0), slots);
  r.route(policy, logits.view(), k, out.ids.view(), out.gates.view());
  return out;
}

}  // namespace routing_test
