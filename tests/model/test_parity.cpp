// Parity of the JetMoE model with Hugging Face transformers 5.17 (fp32 eager) on the random-
// weight fixtures tests/data/{tiny,small-untied}: logits, every hidden state, router logits,
// loss and aux loss, left-padded logits, greedy generation and classifier logits.
//
// Tolerance (fp32 weights, fp32 compute on both sides): the two implementations sum in
// different orders (blocked GEMMs vs cuBLAS/MKL), so each dot product of length ≤ 2I = 256
// differs by a few ulps; through L ≤ 3 layers with norms that rescale to O(1) this stays far
// below 1e-4 absolute on values of magnitude O(1–10). We assert 1e-4 × max(1, |ref|max).
#include <catch2/catch.hpp>

#include "model/reference_data.hpp"

namespace jm = jetmoe::models::jetmoe;
using jetmoe::index_t;

namespace {

using jetmoe_test::fp32_tolerance;
using jetmoe_test::require_close;

struct fixture {
  jetmoe::io::safetensors_file ref;
  jm::model<float> model;
};

fixture open_fixture(const std::string& name) {
  return {jetmoe::io::safetensors_file::open(jetmoe_test::data_dir(name) / "reference.safetensors"),
          jm::model<float>::load(jetmoe_test::data_dir(name))};
}


}  // namespace

TEST_CASE("JetMoE forward matches transformers: logits, hidden states, router logits, loss", "[model][parity]") {
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      auto f = open_fixture(name);
      const auto ids = f.ref.read<std::int64_t, 2>("input_ids");  // (B, S)
      jm::causal_lm_request request;
      request.input_ids = ids.view();
      request.labels = ids.view();
      request.hidden_states = true;
      request.router_logits = true;
      const auto out = jm::causal_lm_forward(f.model, request);

      require_close(out.logits, f.ref.read<float, 3>("logits"), name + " logits");
      const auto L = f.model.cfg().num_layers;
      REQUIRE(static_cast<std::int64_t>(out.trace.hidden_states.size()) == L + 1);
      for (std::int64_t i = 0; i <= L; ++i)
        require_close(out.trace.hidden_states[static_cast<std::size_t>(i)],
                      f.ref.read<float, 3>("hidden_states." + std::to_string(i)), name + " hidden_states." + std::to_string(i));
      for (std::int64_t l = 0; l < L; ++l) {
        const auto& attention = out.trace.attention_router_logits[static_cast<std::size_t>(l)];
        const auto& mlp = out.trace.mlp_router_logits[static_cast<std::size_t>(l)];
        require_close(attention, f.ref.read<float, 2>("router_logits." + std::to_string(3 * l)), name + " attention router " + std::to_string(l));
        require_close(attention, f.ref.read<float, 2>("router_logits." + std::to_string(3 * l + 1)), name + " attention router (2nd record) " + std::to_string(l));
        require_close(mlp, f.ref.read<float, 2>("router_logits." + std::to_string(3 * l + 2)), name + " mlp router " + std::to_string(l));
      }
      const double want_aux = f.ref.read_flat<float>("aux_loss")[0];
      const double want_loss = f.ref.read_flat<float>("loss")[0];
      INFO(name << ": aux " << *out.aux_loss << " vs " << want_aux << ", loss " << *out.loss << " vs " << want_loss);
      // Scalars: averaged in double here, fp32 in PyTorch: 1e-5 relative covers the fp32 side.
      CHECK(std::fabs(*out.aux_loss - want_aux) <= 1e-5 * std::fabs(want_aux));
      CHECK(std::fabs(*out.loss - want_loss) <= 1e-5 * std::fabs(want_loss));
    }
  }
}

TEST_CASE("JetMoE left-padded batch matches transformers at unmasked positions", "[model][parity]") {
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      auto f = open_fixture(name);
      const auto ids = f.ref.read<std::int64_t, 2>("padded.input_ids");        // (B, S)
      const auto mask = f.ref.read<std::int64_t, 2>("padded.attention_mask");  // (B, S)
      const auto want = f.ref.read<float, 3>("padded.logits");                 // (B, S, V)
      jm::causal_lm_request request;
      request.input_ids = ids.view();
      request.attention_mask = mask.view();
      const auto out = jm::causal_lm_forward(f.model, request);
      const index_t B = ids.extent(0), S = ids.extent(1), V = want.extent(2);
      double worst = 0.0, scale = 1.0;
      index_t compared = 0;
      for (index_t b = 0; b < B; ++b)
        for (index_t s = 0; s < S; ++s) {
          if (mask(b, s) == 0) continue;  // padding: transformers' values there are meaningless
          ++compared;
          for (index_t v = 0; v < V; ++v) {
            worst = std::max(worst, std::fabs(double(out.logits(b, s, v)) - double(want(b, s, v))));
            scale = std::max(scale, std::fabs(double(want(b, s, v))));
          }
        }
      INFO(name << ": " << compared << " unmasked positions, max |diff| = " << worst);
      CHECK(compared > S);  // both rows contribute
      CHECK(worst <= fp32_tolerance * scale);
    }
  }
}

TEST_CASE("JetMoE greedy generation with the KV cache reproduces transformers' tokens", "[model][parity][generation]") {
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      auto f = open_fixture(name);
      const auto prompt = f.ref.read_flat<std::int64_t>("generate.prompt");  // (1, 6)
      const auto want = f.ref.read_flat<std::int64_t>("generate.greedy");    // (1, 30): prompt + 24 new
      jetmoe::generation::generation_options options;
      options.max_new_tokens = static_cast<index_t>(want.size() - prompt.size());
      options.eos_token_id = std::nullopt;  // the reference did not stop at EOS
      const auto result = jetmoe::generation::generate(f.model, {prompt}, options);
      std::vector<std::int64_t> got = prompt;
      got.insert(got.end(), result.tokens[0].begin(), result.tokens[0].end());
      CHECK(got == want);
    }
  }
}

TEST_CASE("JetMoE sequence classification matches transformers", "[model][parity][classifier]") {
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir(name) / "reference.safetensors");
      auto model = jm::model<float>::load(jetmoe_test::data_dir(name) / "classifier");
      const auto ids = ref.read<std::int64_t, 2>("classifier.input_ids");  // (B, S), row 0 right-padded
      const auto want = ref.read<float, 2>("classifier.logits");           // (B, 3)
      const auto got = jm::classify(model, ids.view());
      REQUIRE(got.extents() == want.extents());
      require_close(got, want, name + " classifier logits");
    }
  }
}

TEST_CASE("Batched generation with left padding gives each prompt its own greedy continuation", "[model][generation]") {
  auto f = open_fixture("tiny");
  const auto prompt = f.ref.read_flat<std::int64_t>("generate.prompt");
  const std::vector<std::int64_t> shorter(prompt.begin() + 2, prompt.end());
  jetmoe::generation::generation_options options;
  options.max_new_tokens = 8;
  const auto together = jetmoe::generation::generate(f.model, {prompt, shorter}, options);
  const auto alone_long = jetmoe::generation::generate(f.model, {prompt}, options);
  const auto alone_short = jetmoe::generation::generate(f.model, {shorter}, options);
  CHECK(together.tokens[0] == alone_long.tokens[0]);
  CHECK(together.tokens[1] == alone_short.tokens[0]);
}

TEST_CASE("JetMoE prefill in chunks through the KV cache matches transformers' whole-sequence logits",
          "[model][parity][generation]") {
  // The second chunk's queries sit after cached keys: attention reads the cache's end position
  // (key_count) and the new keys land through copy_to_positions, the same path a decode takes.
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      auto f = open_fixture(name);
      const auto ids = f.ref.read<std::int64_t, 2>("input_ids");  // (B, S)
      const auto want = f.ref.read<float, 3>("logits");           // (B, S, V)
      const index_t B = ids.extent(0), S = ids.extent(1), V = want.extent(2), first = S / 3;
      REQUIRE(first >= 1);
      auto cache = f.model.make_cache(B, S);
      jetmoe::tensor<float, 3> got(jetmoe::make_dims(B, S, V));
      const auto run_chunk = [&](index_t begin, index_t end) {
        jetmoe::tensor<std::int64_t, 2> chunk(jetmoe::make_dims(B, end - begin));
        for (index_t b = 0; b < B; ++b)
          for (index_t s = begin; s < end; ++s) chunk(b, s - begin) = ids(b, s);
        const auto hidden = f.model.forward(chunk.view(), {}, cache);  // (B·T, H)
        jetmoe::tensor<float, 2> logits(jetmoe::make_dims(B * (end - begin), V));
        f.model.logits(hidden, logits.view());
        for (index_t b = 0; b < B; ++b)
          for (index_t s = begin; s < end; ++s)
            for (index_t v = 0; v < V; ++v) got(b, s, v) = logits(b * (end - begin) + s - begin, v);
      };
      run_chunk(0, first);
      run_chunk(first, S - 1);
      run_chunk(S - 1, S);  // a one-token step, as in decoding
      CHECK(cache.length() == S);
      require_close(got, want, name + " chunked logits");
    }
  }
}
