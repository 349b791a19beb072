// The bundled demo model (bf16 weights, trained on the Python reference) against transformers:
// the three greedy continuations exactly, and the validation logits.
//
// Tolerance for the validation logits: the reference logits are not pure fp32. Their mean
// next-token cross-entropy equals, to all printed digits, the `val_ce_128` the training log
// (models/jetmoe-pydoc-5m/training.json) recorded under bf16 mixed precision, and at position 0
// (where attention is trivial) they differ from an fp32 forward by ~1.5e-3 relative — a bf16
// rounding signature, while perturbing our weights by 1e-6 moves the logits by only ~1e-5. So
// the bound is bf16-aware: max |diff| ≤ 2^-7 · max|ref| (one bf16 step at the largest logit),
// mean |diff| ≤ 2^-8, the same argmax at every position, and the cross-entropy within 1e-3.
// A wrong op (norm eps, RoPE, head mapping, gate) moves these by 0.1–10, far past the bounds.
#include <catch2/catch.hpp>

#include "model/reference_data.hpp"

namespace jm = jetmoe::models::jetmoe;

TEST_CASE("Demo model: greedy continuations equal transformers' exactly", "[model][demo]") {
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  auto model = jm::model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir());
  for (int n = 0; n < 3; ++n) {
    const auto prompt = ref.read_flat<std::int64_t>("greedy." + std::to_string(n) + ".prompt");  // (1, 4)
    const auto want = ref.read_flat<std::int64_t>("greedy." + std::to_string(n) + ".output");    // (1, 44)
    jetmoe::generation::generation_options options;
    options.max_new_tokens = static_cast<jetmoe::index_t>(want.size() - prompt.size());
    const auto result = jetmoe::generation::generate(model, {prompt}, options);
    std::vector<std::int64_t> got = prompt;
    got.insert(got.end(), result.tokens[0].begin(), result.tokens[0].end());
    INFO("prompt " << n);
    CHECK(got == want);
  }
}

TEST_CASE("Demo model: validation logits match transformers", "[model][demo]") {
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  auto model = jm::model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir());
  const auto ids = ref.read<std::int64_t, 2>("val.input_ids");  // (1, 128)
  const auto want = ref.read<float, 3>("val.logits");           // (1, 128, 2048)
  jm::causal_lm_request request;
  request.input_ids = ids.view();
  const auto out = jm::causal_lm_forward(model, request);
  const jetmoe::index_t S = want.extent(1), V = want.extent(2);
  const double diff = jetmoe_test::max_abs_diff(out.logits, want);
  const double scale = jetmoe_test::max_abs(want);
  double mean_diff = 0.0, ce_ours = 0.0, ce_ref = 0.0;
  int same_argmax = 0;
  auto cross_entropy_at = [&](const auto& logits, jetmoe::index_t s) {
    double top = -INFINITY, sum = 0.0;
    for (jetmoe::index_t v = 0; v < V; ++v) top = std::max(top, double(logits(0, s, v)));
    for (jetmoe::index_t v = 0; v < V; ++v) sum += std::exp(double(logits(0, s, v)) - top);
    return top + std::log(sum) - double(logits(0, s, ids(0, s + 1)));
  };
  for (jetmoe::index_t s = 0; s < S; ++s) {
    jetmoe::index_t ours = 0, theirs = 0;
    for (jetmoe::index_t v = 0; v < V; ++v) {
      mean_diff += std::fabs(double(out.logits(0, s, v)) - double(want(0, s, v)));
      if (out.logits(0, s, v) > out.logits(0, s, ours)) ours = v;
      if (want(0, s, v) > want(0, s, theirs)) theirs = v;
    }
    same_argmax += ours == theirs;
    if (s + 1 < S) {
      ce_ours += cross_entropy_at(out.logits, s) / double(S - 1);
      ce_ref += cross_entropy_at(want, s) / double(S - 1);
    }
  }
  mean_diff /= double(S * V);
  INFO("max |diff| " << diff << " (logits up to " << scale << "), mean |diff| " << mean_diff << ", same argmax at "
                     << same_argmax << "/" << S << ", cross-entropy " << ce_ours << " vs " << ce_ref);
  CHECK(diff <= std::ldexp(1.0, -7) * scale);
  CHECK(mean_diff <= std::ldexp(1.0, -8));
  CHECK(same_argmax == S);
  CHECK(std::fabs(ce_ours - ce_ref) <= 1e-3);
}
