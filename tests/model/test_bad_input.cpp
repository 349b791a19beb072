// Bad input to the model: each case is a jetmoe::error with a message naming the problem,
// never a crash or a silently wrong answer.
#include <catch2/catch.hpp>

#include "model/reference_data.hpp"

#include <fstream>

namespace jm = jetmoe::models::jetmoe;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A scratch copy of the tiny fixture that a test may damage.
fs::path scratch_copy(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("jetmoe-bad-input-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(jetmoe_test::data_dir("tiny") / "config.json", dir / "config.json");
  fs::copy_file(jetmoe_test::data_dir("tiny") / "model.safetensors", dir / "model.safetensors");
  return dir;
}

// Rewrites the tiny checkpoint with one tensor dropped or reshaped.
void rewrite_checkpoint(const fs::path& dir, const std::string& victim, bool drop) {
  const auto source = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("tiny") / "model.safetensors");
  jetmoe::io::safetensors_writer writer;
  for (const auto& name : source.names()) {
    const auto& info = source.info(name);
    if (name == victim && drop) continue;
    std::vector<std::int64_t> shape = info.shape;
    auto bytes = info.bytes;
    if (name == victim) {  // same bytes, shape cut to its first half rows
      shape[0] /= 2;
      bytes = bytes.first(bytes.size() / 2);
    }
    writer.add(name, info.dtype, shape, bytes);
  }
  writer.write(dir / "model.safetensors");
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("Model loading rejects a missing tensor, a wrong shape and a broken config", "[model][errors]") {
  SECTION("missing tensor") {
    const auto dir = scratch_copy("missing");
    rewrite_checkpoint(dir, "model.layers.1.mlp.output_linear.weight", /*drop=*/true);
    REQUIRE_THROWS_WITH(jm::model<float>::load(dir), Contains("model.layers.1.mlp.output_linear.weight"));
  }
  SECTION("wrong shape") {
    const auto dir = scratch_copy("shape");
    rewrite_checkpoint(dir, "model.layers.0.self_attention.kv_proj.weight", /*drop=*/false);
    REQUIRE_THROWS_WITH(jm::model<float>::load(dir), Contains("kv_proj") && Contains("expected"));
  }
  SECTION("config missing a field") {
    const auto dir = scratch_copy("config");
    write_text(dir / "config.json", R"({"model_type": "jetmoe", "vocab_size": 384, "hidden_size": 64})");
    REQUIRE_THROWS_AS(jm::model<float>::load(dir), jetmoe::error);
  }
  SECTION("no checkpoint at all") {
    REQUIRE_THROWS_AS(jm::model<float>::load(fs::temp_directory_path() / "jetmoe-no-such-model"), jetmoe::error);
  }
}

TEST_CASE("Model inputs: out-of-range ids and over-long sequences are errors", "[model][errors]") {
  auto model = jm::model<float>::load(jetmoe_test::data_dir("tiny"));
  const auto V = model.cfg().vocab_size, context = model.cfg().max_position_embeddings;

  SECTION("token id ≥ vocab") {
    std::vector<std::int64_t> ids = {1, 5, V, 7};
    REQUIRE_THROWS_WITH(model.forward(jetmoe::make_view<const std::int64_t>(ids.data(), 1, 4)), Contains(std::to_string(V)));
  }
  SECTION("negative token id") {
    std::vector<std::int64_t> ids = {1, -3};
    REQUIRE_THROWS_AS(model.forward(jetmoe::make_view<const std::int64_t>(ids.data(), 1, 2)), jetmoe::error);
  }
  SECTION("sequence longer than the context") {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(context + 1), 3);
    REQUIRE_THROWS_WITH(model.forward(jetmoe::make_view<const std::int64_t>(ids.data(), 1, context + 1)),
                        Contains("context length"));
  }
  SECTION("prompt + new tokens past the context") {
    jetmoe::generation::generation_options options;
    options.max_new_tokens = 10;
    const std::vector<std::int64_t> prompt(static_cast<std::size_t>(context - 5), 3);
    REQUIRE_THROWS_WITH(jetmoe::generation::generate(model, {prompt}, options), Contains("context length"));
  }
  SECTION("generation with an out-of-vocabulary prompt id") {
    jetmoe::generation::generation_options options;
    REQUIRE_THROWS_WITH(jetmoe::generation::generate(model, {{1, V + 4}}, options), Contains("vocabulary"));
  }
  SECTION("the model still works after rejected input") {
    std::vector<std::int64_t> ids = {1, 5, 9};
    CHECK_NOTHROW(model.forward(jetmoe::make_view<const std::int64_t>(ids.data(), 1, 3)));
  }
}
