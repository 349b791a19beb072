// tests/ops/op_test_support.hpp — shared helpers for the op tests: seeded random tensors,
// rounding to a weight type, and double-precision row helpers for the references.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <jetmoe/jetmoe.hpp>

namespace op_test {

using jetmoe::index_t;

inline const jetmoe::exec::cpu two_threads{2};

// Fills every element of a (possibly strided) view with N(0, scale²) values rounded to T.
template <class T, std::size_t Rank>
void fill_normal(jetmoe::tensor_view<T, Rank> v, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  jetmoe::dims<Rank> index{};
  for (index_t n = 0; n < v.size(); ++n) {
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset += index[d] * v.stride(d);
    v.data()[offset] = T(normal(rng));
    for (std::size_t d = Rank; d-- > 0;) {  // odometer over the extents
      if (++index[d] < v.extent(d)) break;
      index[d] = 0;
    }
  }
}

// float → W → float: the value the op actually sees for a weight stored as W.
template <class W>
double as_stored(W value) {
  return static_cast<double>(jetmoe::to_float(value));
}

template <class W>
std::string dtype_name() {
  return std::string(jetmoe::name_of(jetmoe::dtype_of<W>()));
}

}  // namespace op_test
