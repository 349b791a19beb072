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
//    widened, like the CPU backend): exact greedy tokens, as on the CPU. With tensor cores the
//    activations are rounded to bf16 first, which is what transformers' bf16 model computes too,
//    but the rounding points differ, so only the validation cross-entropy is compared (1e-2).
#include "cuda/cuda_test_support.cuh"
#include "model/reference_data.hpp"

#include <cmath>
#include <cstdint>
#include <string>
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

TEST_CASE("Demo model on CUDA with tensor cores: validation cross-entropy as transformers'", "[cuda][model][demo]") {
  SKIP_WITHOUT_GPU();
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  auto model = gpu_model<jetmoe::bf16>::load(jetmoe_test::demo_model_dir(), gpu());
  const auto ids = ref.read<std::int64_t, 2>("val.input_ids");  // (1, S)
  const auto want = ref.read<float, 3>("val.logits");           // (1, S, V)
  jm::causal_lm_request request;
  request.input_ids = ids.view();
  request.labels = ids.view();
  const auto out = jm::causal_lm_forward(model, request);
  // The reference's own cross-entropy of its logits against the shifted ids.
  double want_ce = 0.0;
  const index_t S = ids.extent(1), V = want.extent(2);
  for (index_t s = 0; s + 1 < S; ++s) {
    double top = -INFINITY, sum = 0.0;
    for (index_t v = 0; v < V; ++v) top = std::max(top, double(want(0, s, v)));
    for (index_t v = 0; v < V; ++v) sum += std::exp(double(want(0, s, v)) - top);
    want_ce += top + std::log(sum) - double(want(0, s, ids(0, s + 1)));
  }
  want_ce /= static_cast<double>(S - 1);
  const double got_ce = *out.loss - model.cfg().aux_loss_coef * *out.aux_loss;
  INFO("cross-entropy: ours " << got_ce << ", transformers' logits " << want_ce);
  CHECK(std::fabs(got_ce - want_ce) <= 1e-2);
}

TEST_CASE("Decode steps replayed as a CUDA graph equal the same steps queued kernel by kernel", "[cuda][model]") {
  SKIP_WITHOUT_GPU();
  // Two models on the same weights: one records its first one-token step and replays it, the
  // other queues every step. Same kernels in the same order, so the logits agree to the bit.
  auto recorded = gpu_model<float>::load(jetmoe_test::data_dir("small-untied"), gpu());
  auto queued = gpu_model<float>::load(jetmoe_test::data_dir("small-untied"), gpu());
  queued.set_step_recording(false);
  REQUIRE(recorded.step_recording());
  const index_t B = 2, P = 5, steps = 12, V = recorded.vocab_size();
  // Row 1 is left-padded by two positions, so the replayed steps also carry a key mask.
  const std::vector<std::int64_t> ids = {5, 17, 3, 9, 22, 0, 0, 4, 11, 30};
  const std::vector<std::uint8_t> real = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};

  const auto run = [&](gpu_model<float>& m) {
    auto cache = m.make_cache(B, P + steps);
    std::vector<float> all;  // (steps + 1, B, V) the logits of every step
    jetmoe::tensor<float, 2> logits(jetmoe::make_dims(B, V));
    auto hidden = m.forward(jetmoe::make_view<const std::int64_t>(ids.data(), B, P),
                            jetmoe::make_view<const std::uint8_t>(real.data(), B, P), cache);
    std::vector<std::int64_t> next(static_cast<std::size_t>(B));
    for (index_t step = 0; step <= steps; ++step) {
      m.last_position_logits(hidden, step == 0 ? P : 1, logits.view());
      all.insert(all.end(), logits.data(), logits.data() + logits.size());
      if (step == steps) break;
      for (index_t b = 0; b < B; ++b)
        next[static_cast<std::size_t>(b)] =
            jetmoe::generation::argmax(jetmoe::tensor_view<const float, 2>(logits.view()).select(b));
      hidden = m.forward(jetmoe::make_view<const std::int64_t>(next.data(), B, 1), {}, cache);
    }
    CHECK(cache.length() == P + steps);
    return all;
  };
  const std::vector<float> want = run(queued), got = run(recorded);
  CHECK_FALSE(queued.has_recorded_step());
  CHECK(recorded.has_recorded_step());  // step 1 queued, step 2 recorded, steps 3 … replayed
  REQUIRE(got.size() == want.size());
  index_t differing = 0;
  for (std::size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i];
  INFO(differing << " of " << got.size() << " logits differ between replayed and queued steps");
  CHECK(differing == 0);

  // Recording again after a prefill (which drops the recording) still matches: a second run.
  const std::vector<float> again = run(recorded);
  CHECK(again == want);
}
