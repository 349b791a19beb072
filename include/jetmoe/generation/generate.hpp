// jetmoe/generation/generate.hpp — autoregressive generation with a KV cache.
//
// Prompts of different lengths are left-padded into one batch (padding is masked out of
// attention), run through the model once (prefill), then one token per row per step (decode).
// Works with any model that has make_cache / forward / last_position_logits /
// last_position_top_k / vocab_size / context_length, such as models::jetmoe::model.
//
// When the sampling options cut to the top k tokens (greedy is k = 1), each step asks the model
// for just those k candidates per row, selected where the policy computes; otherwise for the
// whole (B, V) logits. The choice is the same either way (sampler::next_from_candidates).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/generation/sampler.hpp"

namespace jetmoe::generation {

struct generation_options {
  index_t max_new_tokens = 64;
  sampling_options sampling{};
  std::optional<std::int64_t> eos_token_id{};  // stop a row when it produces this; none = never
  std::int64_t pad_token_id = 0;               // fills left padding (masked, so any valid id works)
};

struct generation_result {
  std::vector<std::vector<std::int64_t>> tokens;  // new tokens per prompt (EOS included when produced)
  index_t prompt_tokens = 0;                      // real prompt tokens, all rows
  index_t generated_tokens = 0;                   // new tokens, all rows
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
};

// Called with (row, token) as soon as a token is chosen; lets a CLI stream text.
using token_callback = std::function<void(std::size_t row, std::int64_t token)>;

template <class Model>
generation_result generate(Model& m, const std::vector<std::vector<std::int64_t>>& prompts,
                           const generation_options& options, const token_callback& on_token = {}) {
  using clock = std::chrono::steady_clock;
  options.sampling.validate();
  check(!prompts.empty(), "generate: no prompt");
  check(options.max_new_tokens >= 0, "generate: max_new_tokens must be ≥ 0");
  const index_t B = static_cast<index_t>(prompts.size()), V = m.vocab_size();
  index_t longest = 0;
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    check(!prompts[r].empty(), "generate: prompt ", r, " is empty (a prompt needs at least one token, e.g. BOS)");
    for (std::size_t i = 0; i < prompts[r].size(); ++i)
      check(0 <= prompts[r][i] && prompts[r][i] < V, "generate: prompt ", r, " token ", i, " has id ", prompts[r][i],
            ", outside the vocabulary [0, ", V, ")");
    longest = std::max<index_t>(longest, static_cast<index_t>(prompts[r].size()));
  }
  check(longest + options.max_new_tokens <= m.context_length(), "generate: a prompt of ", longest, " tokens + ",
        options.max_new_tokens, " new tokens exceeds the context length of ", m.context_length());

  generation_result result;
  result.tokens.resize(prompts.size());
  if (options.max_new_tokens == 0) return result;

  // Left-padded batch: (B, P) ids and "is a token" flags.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(B * longest), options.pad_token_id);
  std::vector<std::uint8_t> real(static_cast<std::size_t>(B * longest), 0);
  for (index_t r = 0; r < B; ++r) {
    const auto& p = prompts[static_cast<std::size_t>(r)];
    const index_t pad = longest - static_cast<index_t>(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      ids[static_cast<std::size_t>(r * longest + pad) + i] = p[i];
      real[static_cast<std::size_t>(r * longest + pad) + i] = 1;
    }
    result.prompt_tokens += static_cast<index_t>(p.size());
  }

  auto cache = m.make_cache(B, longest + options.max_new_tokens);
  sampler pick(options.sampling);
  // What the sampler reads each step, in host memory: k candidates per row when it needs no
  // more (greedy, top-k), else the whole row of logits.
  const index_t k = std::min<index_t>(pick.candidates_needed(), V);
  tensor<float, 2> logits(make_dims(B, k > 0 ? index_t{0} : V));  // (B, V) or empty
  tensor<float, 2> candidate_values(make_dims(B, k));              // (B, k)
  tensor<std::int32_t, 2> candidate_ids(make_dims(B, k));          // (B, k)
  std::vector<std::uint8_t> finished(static_cast<std::size_t>(B), 0);
  std::vector<std::int64_t> step_ids(static_cast<std::size_t>(B));
  const std::vector<std::uint8_t> step_real(static_cast<std::size_t>(B), 1);

  // Runs the model on (B, T) tokens, samples one token per unfinished row, and reports whether
  // any row is still going.
  auto advance = [&](const std::int64_t* batch_ids, const std::uint8_t* batch_real, index_t T) {
    const auto hidden = m.forward(make_view<const std::int64_t>(batch_ids, B, T),
                                  make_view<const std::uint8_t>(batch_real, B, T), cache);  // (B·T, H) model's memory
    if (k > 0) m.last_position_top_k(hidden, T, candidate_values.view(), candidate_ids.view());
    else m.last_position_logits(hidden, T, logits.view());
    bool any_running = false;
    for (index_t r = 0; r < B; ++r) {
      const auto row = static_cast<std::size_t>(r);
      if (finished[row]) {
        step_ids[row] = options.pad_token_id;
        continue;
      }
      const std::int64_t token =
          k > 0 ? pick.next_from_candidates(tensor_view<const float, 2>(candidate_values.view()).select(r),
                                            tensor_view<const std::int32_t, 2>(candidate_ids.view()).select(r))
                : pick.next(tensor_view<const float, 2>(logits.view()).select(r));
      result.tokens[row].push_back(token);
      ++result.generated_tokens;
      step_ids[row] = token;
      if (on_token) on_token(row, token);
      if ((options.eos_token_id && token == *options.eos_token_id) ||
          static_cast<index_t>(result.tokens[row].size()) >= options.max_new_tokens)
        finished[row] = 1;
      any_running = any_running || !finished[row];
    }
    return any_running;
  };

  auto start = clock::now();
  bool running = advance(ids.data(), real.data(), longest);
  result.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
  start = clock::now();
  while (running) running = advance(step_ids.data(), step_real.data(), 1);
  result.decode_seconds = std::chrono::duration<double>(clock::now() - start).count();
  return result;
}

}  // namespace jetmoe::generation
