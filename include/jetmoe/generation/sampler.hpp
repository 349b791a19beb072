// jetmoe/generation/sampler.hpp — picks the next token from a row of logits.
//
// Greedy when temperature is 0; otherwise temperature scaling, then an optional top-k cut, then
// an optional top-p (nucleus) cut, then a draw from the renormalised distribution. The random
// stream is std::mt19937_64 turned into doubles by hand (53 high bits), because the standard
// distributions may differ between standard libraries: the same seed gives the same tokens
// wherever the library is compiled. next_from_candidates makes the same choice from a row's k
// most likely tokens alone (ops::top_k's output), so a device policy need not send all V logits
// to the host when the options cut to top-k anyway (greedy is top-1).
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
    const std::size_t keep = kept_by_top_k(candidates_.size());
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep), candidates_.end(), by_logit);
    candidates_.resize(keep);
    sorted_logits_.resize(keep);
    for (std::size_t i = 0; i < keep; ++i) sorted_logits_[i] = logits(candidates_[i]);
    return draw_from_sorted();
  }

  // How many of a row's most likely tokens next_from_candidates needs to choose exactly as
  // next() would from the whole row: 1 when greedy, top_k when that is set, 0 (the whole row,
  // so use next()) otherwise. Lets a device hand back k candidates instead of V logits.
  std::int64_t candidates_needed() const {
    if (options_.temperature == 0.0f) return 1;
    return options_.top_k;
  }

  // values, ids: (k) a row's k most likely tokens, values descending, equal values by lower id
  // (ops::top_k's order), k ≥ candidates_needed() or the whole vocabulary. The same choice, and
  // the same draw from the random stream, as next() on the full row.
  std::int64_t next_from_candidates(tensor_view<const float, 1> values, tensor_view<const std::int32_t, 1> ids) {
    const std::int64_t k = values.extent(0);
    check(k > 0 && ids.extent(0) == k, "sampler: ", k, " candidate values for ", ids.extent(0), " ids");
    if (options_.temperature == 0.0f) return ids(0);
    const std::size_t keep = kept_by_top_k(static_cast<std::size_t>(k));
    candidates_.resize(keep);
    sorted_logits_.resize(keep);
    for (std::size_t i = 0; i < keep; ++i) {
      candidates_[i] = ids(static_cast<index_t>(i));
      sorted_logits_[i] = values(static_cast<index_t>(i));
    }
    return draw_from_sorted();
  }

 private:
  // How many of n candidates the top-k cut keeps.
  std::size_t kept_by_top_k(std::size_t n) const {
    return options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < n ? static_cast<std::size_t>(options_.top_k) : n;
  }

  // The draw over candidates_ (ids) with sorted_logits_ (their logits, descending): softmax of
  // logit / temperature in double for a stable sum, the nucleus cut, then one uniform draw.
  std::int64_t draw_from_sorted() {
    std::size_t keep = candidates_.size();
    probabilities_.resize(keep);
    const double top = static_cast<double>(sorted_logits_[0]) / options_.temperature;
    double total = 0.0;
    for (std::size_t i = 0; i < keep; ++i) {
      probabilities_[i] = std::exp(static_cast<double>(sorted_logits_[i]) / options_.temperature - top);
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

  double uniform() { return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)

  sampling_options options_;
  std::mt19937_64 rng_;
  std::vector<std::int64_t> candidates_;
  std::vector<float> sorted_logits_;
  std::vector<double> probabilities_;
};

}  // namespace jetmoe::generation
