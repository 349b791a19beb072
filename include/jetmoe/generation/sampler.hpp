// jetmoe/generation/sampler.hpp — picks the next token from a row of logits.
//
// Greedy when temperature is 0; otherwise temperature scaling, then an optional top-k cut, then
// an optional top-p (nucleus) cut, then a draw from the renormalised distribution. The random
// stream is std::mt19937_64 turned into doubles by hand (53 high bits), because the standard
// distributions may differ between standard libraries: the same seed gives the same tokens
// wherever the library is compiled.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/view.hpp"

namespace jetmoe::generation {

struct sampling_options {
  float temperature = 0.0f;  // 0 = greedy (argmax, lower token id on ties)
  int top_k = 0;             // keep the k most likely tokens; 0 = no cut
  float top_p = 1.0f;        // keep the smallest set whose probability reaches p; 1 = no cut
  std::uint64_t seed = 0;

  void validate() const {
    check(std::isfinite(temperature) && temperature >= 0.0f, "sampling: temperature must be ≥ 0, got ", temperature);
    check(top_k >= 0, "sampling: top_k must be ≥ 0, got ", top_k);
    check(top_p > 0.0f && top_p <= 1.0f, "sampling: top_p must be in (0, 1], got ", top_p);
  }
};

// Index of the largest value; ties → lower index; NaN never wins over a number.
inline std::int64_t argmax(tensor_view<const float, 1> logits) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < logits.extent(0); ++i) {
    const float v = logits(i), b = logits(best);
    if (v > b || (std::isnan(b) && !std::isnan(v))) best = i;
  }
  return best;
}

class sampler {
 public:
  explicit sampler(const sampling_options& options) : options_(options), rng_(options.seed) { options.validate(); }

  const sampling_options& options() const { return options_; }

  // logits: (V) float. Returns the chosen token id.
  std::int64_t next(tensor_view<const float, 1> logits) {
    const std::int64_t vocab = logits.extent(0);
    check(vocab > 0, "sampler: empty logits");
    if (options_.temperature == 0.0f) return argmax(logits);

    // Candidates sorted by logit, descending; ties by id so the order is total.
    candidates_.resize(static_cast<std::size_t>(vocab));
    std::iota(candidates_.begin(), candidates_.end(), std::int64_t{0});
    auto by_logit = [&](std::int64_t a, std::int64_t b) {
      const float la = logits(a), lb = logits(b);
      return la > lb || (la == lb && a < b);
    };
    std::size_t keep = candidates_.size();
    if (options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < keep) keep = static_cast<std::size_t>(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep), candidates_.end(), by_logit);
    candidates_.resize(keep);

    // Softmax of logit / temperature over the kept candidates, in double for a stable sum.
    probabilities_.resize(keep);
    const double top = static_cast<double>(logits(candidates_[0])) / options_.temperature;
    double total = 0.0;
    for (std::size_t i = 0; i < keep; ++i) {
      probabilities_[i] = std::exp(static_cast<double>(logits(candidates_[i])) / options_.temperature - top);
      total += probabilities_[i];
    }
    // Nucleus: the shortest prefix whose mass reaches top_p (at least one token).
    if (options_.top_p < 1.0f) {
      double mass = 0.0;
      std::size_t cut = 0;
      while (cut < keep) {
        mass += probabilities_[cut++] / total;
        if (mass >= options_.top_p) break;
      }
      keep = cut;
      total = std::accumulate(probabilities_.begin(), probabilities_.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
    }
    const double draw = uniform() * total;
    double running = 0.0;
    for (std::size_t i = 0; i < keep; ++i) {
      running += probabilities_[i];
      if (draw < running) return candidates_[i];
    }
    return candidates_[keep - 1];  // only reached through rounding at the very top
  }

 private:
  double uniform() { return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)

  sampling_options options_;
  std::mt19937_64 rng_;
  std::vector<std::int64_t> candidates_;
  std::vector<double> probabilities_;
};

}  // namespace jetmoe::generation
