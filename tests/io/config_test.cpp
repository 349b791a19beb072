// JetMoE config.json: the shipped configs, the legacy jetmoe-8b names, and every error path.
#include "jetmoe/models/jetmoe/config.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "io_test_support.hpp"
#include "jetmoe/io/strict_json.hpp"

using namespace jetmoe_io_test;
using Catch::Matchers::Contains;
using jetmoe::models::jetmoe::config;
using jetmoe::models::jetmoe::load_config;
using jetmoe::models::jetmoe::parse_config;
using nlohmann::json;

namespace {
const fs::path data_dir = JETMOE_TEST_DATA_DIR;
const fs::path demo_dir = JETMOE_DEMO_MODEL_DIR;

// The published jetmoe-8b config.json uses these older names.
json legacy_jetmoe_8b() {
  return json::parse(R"({
    "model_type": "jetmoe", "vocab_size": 32000, "hidden_size": 2048, "num_layers": 24,
    "moe_num_experts": 8, "moe_top_k": 2, "num_key_value_heads": 16, "kv_channels": 128,
    "ffn_hidden_size": 5632, "n_positions": 4096, "layer_norm_epsilon": 1e-5, "rope_theta": 10000,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": true})");
}

// A valid current-style config to break one field at a time.
json small() {
  return json::parse(R"({
    "model_type": "jetmoe", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
    "num_local_experts": 4, "num_experts_per_tok": 2, "num_key_value_heads": 2, "kv_channels": 8,
    "intermediate_size": 48, "max_position_embeddings": 64})");
}

std::string parse_error(const json& j) {
  return error_message([&] { (void)parse_config(j, "test-config.json"); });
}
}  // namespace

TEST_CASE("config: tiny", "[io][config]") {
  const config c = load_config(data_dir / "tiny/config.json");
  CHECK(c.vocab_size == 384);
  CHECK(c.hidden_size == 64);
  CHECK(c.num_layers == 2);
  CHECK(c.num_experts == 4);
  CHECK(c.top_k == 2);
  CHECK(c.num_kv_heads == 2);
  CHECK(c.kv_channels == 24);
  CHECK(c.query_width() == 48);
  CHECK(c.num_query_heads() == 4);
  CHECK(c.intermediate_size == 96);
  CHECK(c.max_position_embeddings == 128);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_id == 2);
  CHECK_FALSE(c.pad_token_id.has_value());  // null in the file
  CHECK(c.aux_loss_coef == 0.01);
  CHECK(c.num_labels == 2);
}

TEST_CASE("config: small-untied and its classifier", "[io][config]") {
  const config c = load_config(data_dir / "small-untied/config.json");
  CHECK(c.vocab_size == 512);
  CHECK(c.hidden_size == 96);
  CHECK(c.num_layers == 3);
  CHECK(c.num_experts == 6);
  CHECK(c.num_kv_heads == 3);
  CHECK(c.kv_channels == 20);
  CHECK(c.query_width() == 60);
  CHECK(c.intermediate_size == 128);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 500.0);
  CHECK_FALSE(c.tie_word_embeddings);

  const config classifier = load_config(data_dir / "tiny/classifier/config.json");
  CHECK(classifier.num_labels == 3);  // from id2label
  CHECK(classifier.pad_token_id == 0);
}

TEST_CASE("config: the demo model", "[io][config]") {
  const config c = load_config(demo_dir / "config.json");
  CHECK(c.vocab_size == 2048);
  CHECK(c.hidden_size == 128);
  CHECK(c.num_layers == 4);
  CHECK(c.num_experts == 8);
  CHECK(c.top_k == 2);
  CHECK(c.num_kv_heads == 4);
  CHECK(c.kv_channels == 32);
  CHECK(c.intermediate_size == 256);
  CHECK(c.max_position_embeddings == 512);
  CHECK(c.tie_word_embeddings);
}

TEST_CASE("config: legacy jetmoe-8b names", "[io][config]") {
  scratch_dir dir;
  write_bytes(dir / "config.json", legacy_jetmoe_8b().dump(2));
  const config c = load_config(dir / "config.json");
  CHECK(c.vocab_size == 32000);
  CHECK(c.hidden_size == 2048);
  CHECK(c.num_layers == 24);
  CHECK(c.num_experts == 8);
  CHECK(c.top_k == 2);
  CHECK(c.num_kv_heads == 16);
  CHECK(c.kv_channels == 128);
  CHECK(c.query_width() == 2048);
  CHECK(c.num_query_heads() == 32);
  CHECK(c.intermediate_size == 5632);
  CHECK(c.max_position_embeddings == 4096);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.tie_word_embeddings);

  // Legacy and current names together are fine when they agree, an error when they do not.
  json both = legacy_jetmoe_8b();
  both["num_hidden_layers"] = 24;
  both["rms_norm_eps"] = 1e-5;
  CHECK(parse_config(both) == c);
  both["num_hidden_layers"] = 12;
  CHECK_THAT(parse_error(both),
             Contains("test-config.json") && Contains("\"num_layers\" (24) conflicts with \"num_hidden_layers\" (12)"));
  json eps = legacy_jetmoe_8b();
  eps["rms_norm_eps"] = 1e-6;
  CHECK_THAT(parse_error(eps), Contains("\"layer_norm_epsilon\"") && Contains("\"rms_norm_eps\""));
}

TEST_CASE("config: kv heads may come from num_attention_heads = K·Hkv", "[io][config]") {
  json j = small();
  j.erase("num_key_value_heads");
  j["num_attention_heads"] = 6;
  CHECK(parse_config(j).num_kv_heads == 3);
  j["num_attention_heads"] = 5;
  CHECK_THAT(parse_error(j), Contains("not a positive multiple of num_experts_per_tok (2)"));
  j.erase("num_attention_heads");
  CHECK_THAT(parse_error(j), Contains("missing field \"num_key_value_heads\""));

  json both = small();
  both["num_attention_heads"] = 4;  // 2 × 2: consistent
  CHECK(parse_config(both).num_kv_heads == 2);
  both["num_attention_heads"] = 8;
  CHECK_THAT(parse_error(both), Contains("num_attention_heads (8) conflicts"));
}

TEST_CASE("config: rope_theta at the top level or in rope_parameters", "[io][config]") {
  json j = small();
  CHECK(parse_config(j).rope_theta == 10000.0);  // transformers' default
  j["rope_parameters"] = {{"rope_theta", 500.0}, {"rope_type", "default"}};
  CHECK(parse_config(j).rope_theta == 500.0);
  j["rope_theta"] = 500;
  CHECK(parse_config(j).rope_theta == 500.0);
  j["rope_theta"] = 1000;
  CHECK_THAT(parse_error(j), Contains("rope_theta (1000) conflicts with rope_parameters.rope_theta (500)"));
  j.erase("rope_theta");
  j["rope_parameters"]["rope_type"] = "yarn";
  CHECK_THAT(parse_error(j), Contains("\"yarn\" is not supported"));
}

TEST_CASE("config: missing fields are named with the file", "[io][config]") {
  for (const char* field : {"vocab_size", "hidden_size", "num_hidden_layers", "num_local_experts",
                            "num_experts_per_tok", "kv_channels", "intermediate_size", "max_position_embeddings"}) {
    json j = small();
    j.erase(field);
    CHECK_THAT(parse_error(j), Contains("test-config.json: missing field \"" + std::string(field) + "\""));
  }
  json j = small();
  j.erase("num_local_experts");
  CHECK_THAT(parse_error(j), Contains("(or legacy \"moe_num_experts\")"));

  scratch_dir dir;
  CHECK_THAT(error_message([&] { (void)load_config(dir / "config.json"); }), Contains((dir / "config.json").string()));
  write_bytes(dir / "config.json", "{\"vocab_size\": 1,");
  CHECK_THAT(error_message([&] { (void)load_config(dir / "config.json"); }), Contains("invalid JSON"));
  write_bytes(dir / "config.json", "[]");
  CHECK_THAT(error_message([&] { (void)load_config(dir / "config.json"); }), Contains("must be a JSON object"));
}

TEST_CASE("config: wrong types and impossible values", "[io][config]") {
  auto with = [](const char* key, json value) {
    json j = small();
    j[key] = std::move(value);
    return parse_error(j);
  };
  CHECK_THAT(with("hidden_size", "32"), Contains("\"hidden_size\" must be an integer, got \"32\""));
  CHECK_THAT(with("hidden_size", 32.5), Contains("\"hidden_size\" must be an integer, got 32.5"));
  CHECK_THAT(with("hidden_size", true), Contains("must be an integer"));
  CHECK_THAT(with("hidden_size", 0), Contains("\"hidden_size\" must be positive, got 0"));
  CHECK_THAT(with("vocab_size", -5), Contains("must be positive"));
  CHECK_THAT(with("vocab_size", 1ULL << 40), Contains("too large"));
  CHECK_THAT(with("rms_norm_eps", "1e-6"), Contains("\"rms_norm_eps\" must be a number"));
  CHECK_THAT(with("rms_norm_eps", 0), Contains("rms_norm_eps must be positive"));
  CHECK_THAT(with("tie_word_embeddings", 1), Contains("\"tie_word_embeddings\" must be true or false"));
  CHECK_THAT(with("num_experts_per_tok", 5), Contains("k = 5") && Contains("E = 4") && Contains("k > E"));
  CHECK_THAT(with("kv_channels", 7), Contains("kv_channels (D = 7) must be even"));
  CHECK_THAT(with("model_type", "llama"), Contains("model_type is \"llama\", expected \"jetmoe\""));
  CHECK_THAT(with("activation_function", "gelu"), Contains("\"gelu\" is not supported"));
  CHECK_THAT(with("eos_token_id", 100), Contains("eos_token_id = 100 is outside the vocabulary [0, 100)"));
  CHECK_THAT(with("pad_token_id", "0"), Contains("\"pad_token_id\" must be an integer"));
  CHECK_THAT(with("rope_parameters", 3), Contains("\"rope_parameters\" must be an object"));
  json labels = small();
  labels["num_labels"] = 4;
  CHECK(parse_config(labels).num_labels == 4);
  labels["num_labels"] = 4;
  labels["id2label"] = {{"0", "a"}, {"1", "b"}};
  CHECK_THAT(parse_error(labels), Contains("num_labels (4) conflicts with the 2 entries of id2label"));
}

TEST_CASE("config: to_json and save_config round trip", "[io][config]") {
  for (const fs::path path : {data_dir / "tiny/config.json", data_dir / "small-untied/config.json",
                              data_dir / "tiny/classifier/config.json", demo_dir / "config.json"}) {
    const config c = load_config(path);
    CHECK(parse_config(jetmoe::models::jetmoe::to_json(c)) == c);
  }
  config c = parse_config(legacy_jetmoe_8b());
  c.pad_token_id = 0;
  c.num_labels = 5;
  const json written = jetmoe::models::jetmoe::to_json(c);
  CHECK(written["num_hidden_layers"] == 24);  // current names only
  CHECK_FALSE(written.contains("num_layers"));
  CHECK(written["num_attention_heads"] == 32);
  CHECK(written["id2label"].size() == 5);

  scratch_dir dir;
  jetmoe::models::jetmoe::save_config(c, dir / "config.json");
  CHECK(load_config(dir / "config.json") == c);

  c.top_k = 9;  // k > E: refused before anything is written
  CHECK_THROWS_AS(jetmoe::models::jetmoe::save_config(c, dir / "bad.json"), jetmoe::error);
  CHECK_FALSE(fs::exists(dir / "bad.json"));
}

TEST_CASE("strict JSON: duplicate keys are errors at any depth", "[io][config]") {
  using jetmoe::io::parse_json_strict;
  CHECK_THAT(error_message([] { (void)parse_json_strict(R"({"a": 1, "a": 2})", "f.json"); }),
             Contains("f.json: duplicate key \"a\" in the top-level object"));
  CHECK_THAT(error_message([] { (void)parse_json_strict(R"({"a": {"x": 1, "y": [{"z": 0, "z": 1}]}})", "f.json"); }),
             Contains("duplicate key \"z\""));
  CHECK(parse_json_strict(R"({"a": {"x": 1}, "b": {"x": 1}})", "f.json")["b"]["x"] ==
        1);  // same key, different objects
}
