// The whole JetMoE model on the CUDA policy against the transformers reference data: the same
// fixtures and checks as tests/model (parity, padded batches, greedy generation through the KV
// cache, the classifier, the demo model's greedy text), with the model type's policy switched to
// exec::cuda. Every test skips without a GPU (the binary still starts, for test discovery).
//
// Tolerances:
//  * fp32 fixtures (float weights, fp32 compute on both sides): as tests/model/test_parity.cpp,
//    1e-4 × max(1, |ref|max): summation order differs from PyTorch's, a few ulps per dot product.
//  * generation: exact tokens, as on the CPU; greedy picks are far from ties in these fixtures.
//  * the bf16 demo model with exec::cuda::tensor_cores = false (fp32 activations, weights
//    widened, like the CPU backend): exact greedy tokens, as on the CPU, and the fp32 bound
//    against the CPU model's logits. With tensor cores the activations are rounded to bf16
//    first: per-position logits against the CPU model within bounds measured on a CPU emulation
//    of that arithmetic (see the test), ≥ 99% of argmaxes, and the cross-entropy (1e-2).
//  * decodes against the CPU model fed the same tokens: the fp32 bound at every step, and the
//    GPU's greedy token wherever the CPU's top two logits are more than twice that bound apart.
#include "cuda/cuda_test_support.cuh"
#include "model/reference_data.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace jm = jetmoe::models::jetmoe;
using jetmoe::index_t;
using gpu_policy = jetmoe::exec::cuda;
template <class W>
using gpu_model = jm::model<W, jetmoe::routing::top_k_then_softmax, gpu_policy>;

using jetmoe_cuda_test::gpu;
using jetmoe_test::fp32_tolerance;
using jetmoe_test::require_close;

std::vector<std::int64_t> greedy(auto& model, const std::vector<std::int64_t>& prompt, index_t new_tokens) {
  jetmoe::generation::generation_options options;
  options.max_new_tokens = new_tokens;
  options.eos_token_id = std::nullopt;  // the references did not stop at EOS
  const auto result = jetmoe::generation::generate(model, {prompt}, options);
  std::vector<std::int64_t> all = prompt;
  all.insert(all.end(), result.tokens[0].begin(), result.tokens[0].end());
  return all;
}

}  // namespace

TEST_CASE("JetMoE on CUDA matches transformers: logits, hidden states, router logits, losses", "[cuda][model]") {
  SKIP_WITHOUT_GPU();
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir(name) / "reference.safetensors");
      auto model = gpu_model<float>::load(jetmoe_test::data_dir(name), gpu());
      const auto ids = ref.read<std::int64_t, 2>("input_ids");  // (B, S)
      jm::causal_lm_request request;
      request.input_ids = ids.view();
      request.labels = ids.view();
      request.hidden_states = true;
      request.router_logits = true;
      const auto out = jm::causal_lm_forward(model, request);

      require_close(out.logits, ref.read<float, 3>("logits"), name + " logits");
      const auto L = model.cfg().num_layers;
      REQUIRE(static_cast<std::int64_t>(out.trace.hidden_states.size()) == L + 1);
      for (std::int64_t i = 0; i <= L; ++i)
        require_close(out.trace.hidden_states[static_cast<std::size_t>(i)],
                      ref.read<float, 3>("hidden_states." + std::to_string(i)), name + " hidden_states." + std::to_string(i));
      for (std::int64_t l = 0; l < L; ++l) {
        require_close(out.trace.attention_router_logits[static_cast<std::size_t>(l)],
                      ref.read<float, 2>("router_logits." + std::to_string(3 * l)), name + " attention router");
        require_close(out.trace.mlp_router_logits[static_cast<std::size_t>(l)],
                      ref.read<float, 2>("router_logits." + std::to_string(3 * l + 2)), name + " mlp router");
      }
      const double want_aux = ref.read_flat<float>("aux_loss")[0], want_loss = ref.read_flat<float>("loss")[0];
      INFO(name << ": aux " << *out.aux_loss << " vs " << want_aux << ", loss " << *out.loss << " vs " << want_loss);
      CHECK(std::fabs(*out.aux_loss - want_aux) <= 1e-5 * std::fabs(want_aux));
      CHECK(std::fabs(*out.loss - want_loss) <= 1e-5 * std::fabs(want_loss));
    }
  }
}

TEST_CASE("JetMoE on CUDA: left-padded batch, greedy generation, classifier", "[cuda][model]") {
  SKIP_WITHOUT_GPU();
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir(name) / "reference.safetensors");
      auto model = gpu_model<float>::load(jetmoe_test::data_dir(name), gpu());

      const auto ids = ref.read<std::int64_t, 2>("padded.input_ids");        // (B, S)
      const auto mask = ref.read<std::int64_t, 2>("padded.attention_mask");  // (B, S)
      const auto want = ref.read<float, 3>("padded.logits");                 // (B, S, V)
      jm::causal_lm_request request;
      request.input_ids = ids.view();
      request.attention_mask = mask.view();
      const auto out = jm::causal_lm_forward(model, request);
      double worst = 0.0, scale = 1.0;
      for (index_t b = 0; b < ids.extent(0); ++b)
        for (index_t s = 0; s < ids.extent(1); ++s) {
          if (mask(b, s) == 0) continue;
          for (index_t v = 0; v < want.extent(2); ++v) {
            worst = std::max(worst, std::fabs(double(out.logits(b, s, v)) - double(want(b, s, v))));
            scale = std::max(scale, std::fabs(double(want(b, s, v))));
          }
        }
      INFO(name << " padded: max |diff| = " << worst);
      CHECK(worst <= fp32_tolerance * scale);

      const auto prompt = ref.read_flat<std::int64_t>("generate.prompt");  // (1, 6)
      const auto greedy_want = ref.read_flat<std::int64_t>("generate.greedy");
      CHECK(greedy(model, prompt, static_cast<index_t>(greedy_want.size() - prompt.size())) == greedy_want);

      auto classifier = gpu_model<float>::load(jetmoe_test::data_dir(name) / "classifier", gpu());
      const auto class_ids = ref.read<std::int64_t, 2>("classifier.input_ids");
      require_close(jm::classify(classifier, class_ids.view()), ref.read<float, 2>("classifier.logits"),
                    name + " classifier logits");
    }
  }
}

TEST_CASE("Demo model on CUDA (bf16 weights): greedy text exact with fp32 activations", "[cuda][model][demo]") {
  SKIP_WITHOUT_GPU();
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  gpu_policy fp32_activations = gpu();
  fp32_activations.tensor_cores = false;
  auto model = gpu_model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir(), fp32_activations);
  for (int n = 0; n < 3; ++n) {
    const auto prompt = ref.read_flat<std::int64_t>("greedy." + std::to_string(n) + ".prompt");
    const auto want = ref.read_flat<std::int64_t>("greedy." + std::to_string(n) + ".output");
    INFO("prompt " << n);
    CHECK(greedy(model, prompt, static_cast<index_t>(want.size() - prompt.size())) == want);
  }
}

namespace {
// Per-position comparison of two (1, S, V) logit tensors: the largest |Δ|, the mean |Δ|, the
// median over positions of each position's largest |Δ|, and the positions with the same argmax.
struct logit_agreement {
  double worst = 0.0, mean = 0.0, median_position_worst = 0.0, scale = 0.0;
  index_t same_argmax = 0, positions = 0;
};
logit_agreement agreement(const jetmoe::tensor<float, 3>& got, const jetmoe::tensor<float, 3>& want) {
  REQUIRE(got.extents() == want.extents());
  const index_t S = want.extent(1), V = want.extent(2);
  logit_agreement a;
  a.positions = S;
  std::vector<double> position_worst;
  for (index_t s = 0; s < S; ++s) {
    index_t got_best = 0, want_best = 0;
    double worst = 0.0;
    for (index_t v = 0; v < V; ++v) {
      const double d = std::fabs(double(got(0, s, v)) - double(want(0, s, v)));
      worst = std::max(worst, d);
      a.mean += d;
      a.scale = std::max(a.scale, std::fabs(double(want(0, s, v))));
      if (got(0, s, v) > got(0, s, got_best)) got_best = v;
      if (want(0, s, v) > want(0, s, want_best)) want_best = v;
    }
    a.worst = std::max(a.worst, worst);
    position_worst.push_back(worst);
    a.same_argmax += got_best == want_best;
  }
  a.mean /= double(S * V);
  std::sort(position_worst.begin(), position_worst.end());
  a.median_position_worst = position_worst[position_worst.size() / 2];
  return a;
}
}  // namespace

TEST_CASE("Demo model on CUDA with tensor cores: logits against the CPU model and the fp32-activation CUDA model",
          "[cuda][model][demo]") {
  SKIP_WITHOUT_GPU();
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  const auto ids = ref.read<std::int64_t, 2>("val.input_ids");  // (1, S)
  const auto want = ref.read<float, 3>("val.logits");           // (1, S, V) transformers'
  jm::causal_lm_request request;
  request.input_ids = ids.view();
  request.labels = ids.view();

  auto cpu_model = jm::model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir());
  gpu_policy fp32_activations = gpu();
  fp32_activations.tensor_cores = false;
  auto fp32_model = gpu_model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir(), fp32_activations);
  auto tc_model = gpu_model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir(), gpu());
  REQUIRE(tc_model.policy().tensor_cores);  // the default, production path
  const auto on_cpu = jm::causal_lm_forward(cpu_model, request);
  const auto fp32 = jm::causal_lm_forward(fp32_model, request);
  const auto tc = jm::causal_lm_forward(tc_model, request);
  const index_t S = ids.extent(1);

  // fp32 activations on both sides: the fp32 parity bound, and the same argmax everywhere (the
  // CPU's router logits are ≥ 2.5e-3 from a top-2 tie and its top-2 logits ≥ 0.1 apart here).
  require_close(fp32.logits, on_cpu.logits, "fp32 activations on CUDA vs the CPU");
  CHECK(agreement(fp32.logits, on_cpu.logits).same_argmax == S);

  // Tensor cores round every GEMM input to bf16 (2^-8 relative) and accumulate in fp32. Through
  // four layers that has no useful a-priori bound: where a token's router logits are within the
  // rounding of a tie, it switches experts and its logits move by far more. The bounds below are
  // measured on a CPU emulation of exactly this arithmetic (the CPU model with every linear's x
  // rounded to bf16 first; six more runs with x perturbed by an ulp before rounding agree within
  // 3%): against the fp32 CPU model the median over positions of max|Δ| was 2^-9.1 of the
  // logits' largest |value| (27.8), the worst 2.8% of it (two positions that switch experts),
  // mean |Δ| 0.015, the same argmax at 128 of 128. Bounds: about 2× those, and ≥ 99% of
  // argmaxes. A wrong kernel (tile, rows, epilogue) moves logits by O(1) at most positions.
  for (const auto& [other, name] : {std::pair{&on_cpu, "the CPU"}, std::pair{&fp32, "fp32 activations on CUDA"}}) {
    const logit_agreement a = agreement(tc.logits, other->logits);
    INFO("tensor cores vs " << name << ": max |Δ| " << a.worst << " (logits up to " << a.scale
                            << "), median over positions " << a.median_position_worst << ", mean |Δ| " << a.mean
                            << ", same argmax at " << a.same_argmax << "/" << a.positions);
    CHECK(a.median_position_worst <= std::ldexp(1.0, -8) * a.scale);
    CHECK(a.worst <= 0.06 * a.scale);
    CHECK(a.mean <= 0.03);
    CHECK(double(a.same_argmax) >= 0.99 * double(a.positions));
  }

  // And transformers' cross-entropy (its logits: bf16 autocast) within 1e-2: the emulation's
  // differed by 4e-3 to 7e-3.
  double want_ce = 0.0;
  const index_t V = want.extent(2);
  for (index_t s = 0; s + 1 < S; ++s) {
    double top = -INFINITY, sum = 0.0;
    for (index_t v = 0; v < V; ++v) top = std::max(top, double(want(0, s, v)));
    for (index_t v = 0; v < V; ++v) sum += std::exp(double(want(0, s, v)) - top);
    want_ce += top + std::log(sum) - double(want(0, s, ids(0, s + 1)));
  }
  want_ce /= static_cast<double>(S - 1);
  const double got_ce = *tc.loss - tc_model.cfg().aux_loss_coef * *tc.aux_loss;
  INFO("cross-entropy: ours " << got_ce << ", transformers' logits " << want_ce);
  CHECK(std::fabs(got_ce - want_ce) <= 1e-2);
}

namespace {
// A prompt of B rows × P positions (`real` marks padding), then greedy one-token steps through a
// KV cache of `capacity` positions. `forced` (steps × B), when given, is fed instead of each
// step's argmax, so that a second model can walk the first one's path.
struct decode_run {
  std::vector<float> logits;          // (steps + 1, B, V) each step's last-position logits
  std::vector<std::int64_t> tokens;   // (steps, B) what was fed after each step
};
template <class Model>
decode_run decode(Model& m, index_t B, index_t P, const std::vector<std::int64_t>& ids,
                  const std::vector<std::uint8_t>& real, index_t steps, index_t capacity,
                  const std::vector<std::int64_t>* forced = nullptr) {
  const index_t V = m.vocab_size();
  auto cache = m.make_cache(B, capacity);
  decode_run run;
  jetmoe::tensor<float, 2> logits(jetmoe::make_dims(B, V));  // (B, V)
  auto hidden = m.forward(jetmoe::make_view<const std::int64_t>(ids.data(), B, P),
                          real.empty() ? jetmoe::tensor_view<const std::uint8_t, 2>{}
                                       : jetmoe::make_view<const std::uint8_t>(real.data(), B, P),
                          cache);
  std::vector<std::int64_t> next(static_cast<std::size_t>(B));
  for (index_t step = 0; step <= steps; ++step) {
    m.last_position_logits(hidden, step == 0 ? P : 1, logits.view());
    run.logits.insert(run.logits.end(), logits.data(), logits.data() + logits.size());
    if (step == steps) break;
    for (index_t b = 0; b < B; ++b)
      next[static_cast<std::size_t>(b)] =
          forced ? (*forced)[static_cast<std::size_t>(step * B + b)]
                 : jetmoe::generation::argmax(jetmoe::tensor_view<const float, 2>(logits.view()).select(b));
    run.tokens.insert(run.tokens.end(), next.begin(), next.end());
    hidden = m.forward(jetmoe::make_view<const std::int64_t>(next.data(), B, 1), {}, cache);
  }
  CHECK(cache.length() == P + steps);
  return run;
}

// A CUDA decode against the CPU model fed the same tokens: every step's logits within the fp32
// parity bound (1e-4 · max(1, |logits|max) of that step; fp32 on both sides), and each token the
// GPU picked equal to the CPU's argmax wherever the CPU's top two logits are more than twice that
// bound apart (all steps of the runs here: their top-2 gaps are ≥ 1.2e-3 at logits ≤ 3).
void check_against_cpu(const decode_run& got, const decode_run& cpu_run, index_t B, index_t V,
                       const std::string& what) {
  REQUIRE(got.logits.size() == cpu_run.logits.size());
  const index_t steps = static_cast<index_t>(got.tokens.size()) / B;
  index_t compared_tokens = 0;
  for (index_t step = 0; step <= steps; ++step) {
    const float* g = got.logits.data() + step * B * V;
    const float* c = cpu_run.logits.data() + step * B * V;
    double worst = 0.0, scale = 1.0;
    for (index_t i = 0; i < B * V; ++i) {
      worst = std::max(worst, std::fabs(double(g[i]) - double(c[i])));
      scale = std::max(scale, std::fabs(double(c[i])));
    }
    INFO(what << ", step " << step << ": max |Δ| " << worst << " (scale " << scale << ")");
    CHECK(worst <= fp32_tolerance * scale);
    if (step == steps) break;
    for (index_t b = 0; b < B; ++b) {
      const float* row = c + b * V;
      index_t best = 0;
      for (index_t v = 1; v < V; ++v) best = row[v] > row[best] ? v : best;
      double second = -INFINITY;
      for (index_t v = 0; v < V; ++v)
        if (v != best) second = std::max(second, double(row[v]));
      if (double(row[best]) - second <= 2.0 * fp32_tolerance * scale) continue;
      ++compared_tokens;
      CHECK(got.tokens[static_cast<std::size_t>(step * B + b)] == best);
    }
  }
  CHECK(compared_tokens == steps * B);  // the gaps above, so none skipped here
}
}  // namespace

TEST_CASE("Decode steps replayed as a CUDA graph equal the same steps queued kernel by kernel, and the CPU's",
          "[cuda][model]") {
  SKIP_WITHOUT_GPU();
  // Two models on the same weights: one records its first one-token step and replays it, the
  // other queues every step. Same kernels in the same order, so the logits agree to the bit.
  auto recorded = gpu_model<float>::load(jetmoe_test::data_dir("small-untied"), gpu());
  auto queued = gpu_model<float>::load(jetmoe_test::data_dir("small-untied"), gpu());
  queued.set_step_recording(false);
  REQUIRE(recorded.step_recording());
  const index_t B = 2, P = 5, steps = 12, V = recorded.vocab_size();
  // Row 1 is left-padded by two positions, so the replayed steps also carry a key mask.
  const std::vector<std::int64_t> ids = {5, 17, 3, 9, 22, 0, 0, 4, 11, 30};   // (B, P)
  const std::vector<std::uint8_t> real = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};      // (B, P)

  const decode_run want = decode(queued, B, P, ids, real, steps, P + steps);
  const decode_run got = decode(recorded, B, P, ids, real, steps, P + steps);
  CHECK_FALSE(queued.has_recorded_step());
  INFO(recorded.step_recording_failure());
  CHECK(recorded.has_recorded_step());  // step 1 queued, step 2 recorded, steps 3 … replayed
  REQUIRE(got.logits.size() == want.logits.size());
  index_t differing = 0;
  for (std::size_t i = 0; i < got.logits.size(); ++i) differing += got.logits[i] != want.logits[i];
  INFO(differing << " of " << got.logits.size() << " logits differ between replayed and queued steps");
  CHECK(differing == 0);
  CHECK(got.tokens == want.tokens);

  // Recording again after a prefill (which drops the recording) still matches: a second run.
  const decode_run again = decode(recorded, B, P, ids, real, steps, P + steps);
  CHECK(again.logits == want.logits);

  // The same decode on the CPU policy, fed the GPU's tokens: the replayed graphs compute what
  // the reference backend computes, not just what the queued kernels do.
  auto on_cpu = jm::model<float>::load(jetmoe_test::data_dir("small-untied"));
  check_against_cpu(got, decode(on_cpu, B, P, ids, real, steps, P + steps, &got.tokens), B, V, "replayed, cache of 17");
  // A cache of the whole context (256 positions) for 5 … 17 keys: the attention reads the key
  // count on the device each replay and splits its decode by capacity, most splits empty.
  const decode_run wide = decode(recorded, B, P, ids, real, steps, recorded.context_length());
  check_against_cpu(wide, decode(on_cpu, B, P, ids, real, steps, on_cpu.context_length(), &wide.tokens), B, V,
                    "replayed, cache of 256");
}

TEST_CASE("A longer decode on CUDA (200-token prompt, 40 replayed steps) follows the CPU model", "[cuda][model]") {
  SKIP_WITHOUT_GPU();
  auto model = gpu_model<float>::load(jetmoe_test::data_dir("small-untied"), gpu());
  auto on_cpu = jm::model<float>::load(jetmoe_test::data_dir("small-untied"));
  const index_t P = 200, steps = 40, V = model.vocab_size();  // 240 of the 256-position context
  std::mt19937 rng(23);
  std::uniform_int_distribution<int> token(3, static_cast<int>(V) - 1);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(P));  // (1, P)
  for (auto& id : ids) id = token(rng);
  const decode_run got = decode(model, 1, P, ids, {}, steps, model.context_length());
  INFO(model.step_recording_failure());
  CHECK(model.has_recorded_step());
  check_against_cpu(got, decode(on_cpu, 1, P, ids, {}, steps, on_cpu.context_length(), &got.tokens), 1, V,
                    "200 + 40 positions");
}
