// Mutation fuzzing of everything the library reads from disk: safetensors files, config.json,
// the sharded index and tokenizer.model. Each case starts from a valid fixture, damages it in
// thousands of seeded, reproducible ways and requires that loading either succeeds, with
// everything it then offers working, or throws a jetmoe::error. Any other exception fails the
// test with the mutation that caused it; a crash, overrun or undefined behaviour is what the
// ASan + UBSan stage of CI is there to catch.
//
// JETMOE_FUZZ_ITERATIONS=N scales every case (default 1: the counts below; e.g. 20 for a long
// local run), JETMOE_FUZZ_SEED=S changes the seed, JETMOE_FUZZ_VERBOSE=1 prints every mutation
// before it is tried (a crash leaves the culprit as the last line).
#include <catch2/catch.hpp>

#include "io/io_test_support.hpp"
#include "model/reference_data.hpp"

#include <jetmoe/io/tokenizer.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace jm = jetmoe::models::jetmoe;
namespace fs = std::filesystem;
using jetmoe_io_test::read_bytes;
using jetmoe_io_test::scratch_dir;
using jetmoe_io_test::write_bytes;

namespace {

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* set = std::getenv(name);
  return set != nullptr && *set != '\0' ? std::strtoull(set, nullptr, 10) : fallback;
}
std::uint64_t iterations(std::uint64_t base) { return base * std::max<std::uint64_t>(1, env_number("JETMOE_FUZZ_ITERATIONS", 1)); }
std::uint64_t seed_for(std::uint64_t salt) { return env_number("JETMOE_FUZZ_SEED", 20261202) * 0x9E3779B97F4A7C15ull + salt; }

// Runs `attempt`; a jetmoe::error counts as a clean rejection, anything else fails the test with
// `what` (the description of the mutation, enough to reproduce it).
struct outcome_counts {
  std::uint64_t accepted = 0, rejected = 0;
};
template <class Attempt>
void expect_clean(outcome_counts& counts, const std::string& what, Attempt&& attempt) {
  // A crash ends the process before any message: JETMOE_FUZZ_VERBOSE=1 prints each mutation first.
  static const bool verbose = env_number("JETMOE_FUZZ_VERBOSE", 0) != 0;
  if (verbose) std::fprintf(stderr, "fuzz: trying %s\n", what.c_str());
  try {
    attempt();
    ++counts.accepted;
  } catch (const jetmoe::error&) {
    ++counts.rejected;
  } catch (const std::exception& e) {
    FAIL_CHECK("not a jetmoe::error (" << typeid(e).name() << "): " << e.what() << "\n  after: " << what);
  }
}

// ---- byte-level mutations ----------------------------------------------------------------------

// Text that tends to matter to a JSON parser or to the numbers it reads.
const char* const interesting_tokens[] = {
    "0", "-1", "1", "2", "-0", "1e400", "-1e400", "1.5", "NaN", "null", "true", "\"\"", "[]", "{}", "[0]",
    "2147483647", "2147483648", "4294967296", "9223372036854775807", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "-9223372036854775808", "\"F32\"", "\"BF16\"", "\"I64\"",
    "\"U8\"", "\"F7\"", "\"\\u0000\"", "\"\\ud800\"", "\xff", "\xc0\xaf", ",", ":", "\"", "{", "}", "[", "]"};

// Applies 1–3 random edits to bytes [begin, end) of `image` and says what they were.
std::string mutate_bytes(std::string& image, std::size_t begin, std::size_t end, std::mt19937_64& rng) {
  std::ostringstream said;
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && end > begin; ++e) {
    const std::size_t at = begin + rng() % (end - begin);
    switch (rng() % 6) {
      case 0: {  // one random byte
        const char byte = static_cast<char>(rng() & 0xff);
        said << " byte[" << at << "]=" << (static_cast<int>(byte) & 0xff);
        image[at] = byte;
        break;
      }
      case 1: {  // one JSON-significant character
        static const char alphabet[] = "{}[]\",:0123456789-+.eE \\tnfu";
        const char byte = alphabet[rng() % (sizeof alphabet - 1)];
        said << " char[" << at << "]='" << byte << "'";
        image[at] = byte;
        break;
      }
      case 2:  // delete a byte
        said << " erase[" << at << "]";
        image.erase(at, 1);
        --end;
        break;
      case 3: {  // insert an interesting token
        const std::string token = interesting_tokens[rng() % std::size(interesting_tokens)];
        said << " insert[" << at << "]=" << token;
        image.insert(at, token);
        end += token.size();
        break;
      }
      case 4: {  // replace the number that covers `at` (or starts after it) with an interesting token
        std::size_t first = image.find_first_of("-0123456789", at);
        if (first == std::string::npos || first >= end) break;
        const std::size_t last = image.find_first_not_of("-+.eE0123456789", first);
        const std::size_t length = (last == std::string::npos ? image.size() : last) - first;
        const std::string token = interesting_tokens[rng() % std::size(interesting_tokens)];
        said << " number[" << first << "," << first + length << ")=" << token;
        image.replace(first, length, token);
        end = end + token.size() - length;
        break;
      }
      default: {  // copy a short span over another place
        const std::size_t length = std::min<std::size_t>(1 + rng() % 24, end - at);
        const std::size_t to = begin + rng() % (end - begin);
        said << " copy[" << at << "," << at + length << ")->" << to;
        const std::string span = image.substr(at, length);
        image.replace(to, std::min(length, image.size() - to), span);
        break;
      }
    }
  }
  return said.str();
}

// ---- structural JSON mutations -----------------------------------------------------------------

nlohmann::json interesting_value(std::mt19937_64& rng) {
  switch (rng() % 20) {
    case 0: return 0;
    case 1: return -1;
    case 2: return 1;
    case 3: return 3;
    case 4: return 1000;
    case 5: return std::int64_t{2147483647};
    case 6: return std::int64_t{2147483648};
    case 7: return std::numeric_limits<std::int64_t>::max();
    case 8: return std::numeric_limits<std::int64_t>::min();
    case 9: return std::numeric_limits<std::uint64_t>::max();
    case 10: return 0.5;
    case 11: return -0.0;
    case 12: return 1e308;
    case 13: return 2.0;
    case 14: return "silu";
    case 15: return nullptr;
    case 16: return true;
    case 17: return nlohmann::json::array({1, 2});
    case 18: return nlohmann::json::object({{"rope_type", "linear"}});
    default: return "";
  }
}

// Replaces, deletes or adds one member somewhere in `json` (objects at any depth).
std::string mutate_structure(nlohmann::json& json, std::mt19937_64& rng, const std::vector<std::string>& extra_keys) {
  std::vector<nlohmann::json*> objects;
  std::function<void(nlohmann::json&)> collect = [&](nlohmann::json& j) {
    if (j.is_object()) {
      objects.push_back(&j);
      for (auto& [key, value] : j.items()) collect(value);
    }
  };
  collect(json);
  nlohmann::json& target = *objects[rng() % objects.size()];
  const int choice = static_cast<int>(rng() % 8);
  if (choice == 0 || target.empty()) {  // add a key (possibly a legacy alias) with a random value
    const std::string key = extra_keys[rng() % extra_keys.size()];
    target[key] = interesting_value(rng);
    return "set " + key + " = " + target[key].dump();
  }
  auto it = target.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(rng() % target.size()));
  const std::string key = it.key();
  if (choice == 1) {
    target.erase(key);
    return "erase " + key;
  }
  if (choice == 2 && it->is_number_integer()) {  // off by one, either way
    const std::int64_t v = it->get<std::int64_t>() + ((rng() & 1) ? 1 : -1);
    *it = v;
    return "nudge " + key + " to " + std::to_string(v);
  }
  *it = interesting_value(rng);
  return "replace " + key + " = " + it->dump();
}

// The tiny fixture's weights as two shards and an index, as transformers' save_pretrained writes them.
void write_sharded(const fs::path& dir, nlohmann::json& index) {
  const auto source = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("tiny") / "model.safetensors");
  jetmoe::io::safetensors_writer first, second;
  index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  const auto names = source.names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& info = source.info(names[i]);
    const bool in_first = i < names.size() / 2;
    (in_first ? first : second).add(names[i], info.dtype, info.shape, info.bytes);
    index["weight_map"][names[i]] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  first.write(dir / "model-00001-of-00002.safetensors");
  second.write(dir / "model-00002-of-00002.safetensors");
}

std::vector<std::int64_t> probe_ids(std::int64_t vocab) { return {1 % vocab, 5 % vocab, 9 % vocab}; }

// Logits of the probe ids under `model`: (1, 3, V).
jetmoe::tensor<float, 3> probe_logits(jm::model<float>& model) {
  const auto ids = probe_ids(model.cfg().vocab_size);
  jm::causal_lm_request request;
  request.input_ids = jetmoe::make_view<const std::int64_t>(ids.data(), 1, 3);
  return jm::causal_lm_forward(model, request).logits;
}

bool all_finite(const jetmoe::tensor<float, 3>& t) {
  for (jetmoe::index_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t.data()[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("fuzz: damaged safetensors files open cleanly or fail with jetmoe::error", "[model][fuzz]") {
  // Two bases: the tiny model's own file (a real header of 29 tensors) and a hand-made one with
  // every dtype family, metadata and a zero-size tensor.
  scratch_dir dir;
  const fs::path made = dir / "made.safetensors";
  {
    jetmoe::io::safetensors_writer writer;
    const std::vector<float> f = {1.5f, -2.0f, 3.25f, 0.0f};
    const std::vector<std::int64_t> ids = {0, 7, -3};
    const std::vector<std::uint16_t> b16 = {0x3f80, 0xc000, 0x7f80};
    writer.add("a.float", jetmoe::io::safetensors_dtype::f32, {2, 2}, std::as_bytes(std::span(f)));
    writer.add("b.ids", jetmoe::io::safetensors_dtype::i64, {3}, std::as_bytes(std::span(ids)));
    writer.add("c.bf16", jetmoe::io::safetensors_dtype::bf16, {3, 1}, std::as_bytes(std::span(b16)));
    writer.add("d.half", jetmoe::io::safetensors_dtype::f16, {3}, std::as_bytes(std::span(b16)));
    writer.add("e.empty", jetmoe::io::safetensors_dtype::f32, {0, 5}, {});
    writer.set_metadata("format", "pt");
    writer.write(made);
  }
  const fs::path target = dir / "mutated.safetensors";
  for (const fs::path& base_path : {made, jetmoe_test::data_dir("tiny") / "model.safetensors"}) {
    const std::string base = read_bytes(base_path);
    std::uint64_t header_length = 0;
    std::memcpy(&header_length, base.data(), 8);
    REQUIRE(8 + header_length <= base.size());
    std::mt19937_64 rng(seed_for(base.size()));
    outcome_counts counts;
    for (std::uint64_t i = 0; i < iterations(1500); ++i) {
      std::string image = base;
      std::string what;
      const int kind = static_cast<int>(rng() % 10);
      if (kind == 0) {  // the length prefix
        const std::uint64_t lengths[] = {0, 1, header_length - 1, header_length + 1, header_length + 8,
                                         image.size() - 8, image.size() - 7, rng(), std::uint64_t{1} << 63};
        const std::uint64_t length = lengths[rng() % std::size(lengths)];
        std::memcpy(image.data(), &length, 8);
        what = "length prefix " + std::to_string(length);
      } else if (kind == 1) {  // truncation
        image.resize(rng() % image.size());
        what = "truncated to " + std::to_string(image.size());
      } else {  // the header text; the length prefix follows the edit half the time
        what = mutate_bytes(image, 8, 8 + header_length, rng);
        if (rng() & 1) {
          const std::uint64_t length = header_length + image.size() - base.size();
          std::memcpy(image.data(), &length, 8);
          what += " (length prefix follows)";
        }
      }
      write_bytes(target, image);
      expect_clean(counts, base_path.filename().string() + ":" + what, [&] {
        std::string message;
        try {
          const auto file = jetmoe::io::safetensors_file::open(target);
          // Whatever opened must read: every tensor, as float where it is a float, else as int64.
          for (const auto& name : file.names()) {
            using jetmoe::io::safetensors_dtype;
            const auto dtype = file.info(name).dtype;
            const bool floating = dtype == safetensors_dtype::f32 || dtype == safetensors_dtype::bf16 ||
                                  dtype == safetensors_dtype::f16 || dtype == safetensors_dtype::f64 ||
                                  dtype == safetensors_dtype::f8_e4m3 || dtype == safetensors_dtype::f8_e5m2;
            const bool integral = !floating;
            if (integral)
              (void)file.read_flat<std::int64_t>(name);
            else
              (void)file.read_flat<float>(name);
          }
        } catch (const jetmoe::error& e) {
          message = e.what();
          if (message.find(target.string()) == std::string::npos)
            FAIL_CHECK("the error does not name the file: " << message << "\n  after: " << what);
          throw;
        }
      });
    }
    INFO(base_path.filename().string() << ": " << counts.accepted << " accepted, " << counts.rejected << " rejected");
    // Both outcomes must occur, or the mutations are not exercising the reader.
    CHECK(counts.rejected > counts.accepted / 4);
    CHECK(counts.accepted > 0);
  }
}

TEST_CASE("fuzz: damaged config.json text is a jetmoe::error naming the file, or a valid config", "[model][fuzz]") {
  scratch_dir dir;
  const std::string base = read_bytes(jetmoe_test::data_dir("tiny") / "config.json");
  const fs::path target = dir / "config.json";
  std::mt19937_64 rng(seed_for(1));
  outcome_counts counts;
  for (std::uint64_t i = 0; i < iterations(3000); ++i) {
    std::string text = base;
    const std::string what = mutate_bytes(text, 0, text.size(), rng);
    write_bytes(target, text);
    expect_clean(counts, what, [&] {
      try {
        const jm::config c = jm::load_config(target);
        c.validate();  // what loading accepted must be a config the model can be built from
      } catch (const jetmoe::error& e) {
        if (std::string(e.what()).find(target.string()) == std::string::npos)
          FAIL_CHECK("the error does not name the file: " << e.what() << "\n  after: " << what);
        throw;
      }
    });
  }
  INFO(counts.accepted << " accepted, " << counts.rejected << " rejected");
  CHECK(counts.accepted > 0);
  CHECK(counts.rejected > 0);
}

TEST_CASE("fuzz: a model loads from a mutated config only when it works, else jetmoe::error", "[model][fuzz]") {
  // A config the weights still fit must give a model whose outputs are finite and as wide as
  // the config says; any other must be refused, by the config reader or by the checkpoint's
  // shapes. Both fixtures: the causal LM and the classifier (num_labels, id2label, pad pooling).
  const std::vector<std::string> extra_keys = {
      "num_layers", "moe_num_experts", "moe_top_k", "ffn_hidden_size", "n_positions", "layer_norm_epsilon",
      "rope_theta", "rotary_percent", "num_labels", "id2label", "glu", "rope_parameters", "num_attention_heads",
      "pad_token_id", "unknown_field"};
  for (const std::string fixture : {"tiny", "tiny/classifier"}) {
    const bool classifier = fixture != "tiny";
    scratch_dir dir;
    fs::copy_file(jetmoe_test::data_dir(fixture) / "model.safetensors", dir / "model.safetensors");
    const nlohmann::json base = jetmoe::io::read_json_file(jetmoe_test::data_dir(fixture) / "config.json");
    std::mt19937_64 rng(seed_for(classifier ? 5 : 2));
    outcome_counts counts;
    for (std::uint64_t i = 0; i < iterations(classifier ? 200 : 400); ++i) {
      nlohmann::json json = base;
      std::string what = mutate_structure(json, rng, extra_keys);
      if (rng() & 1) what += "; " + mutate_structure(json, rng, extra_keys);
      write_bytes(dir / "config.json", json.dump(2));
      expect_clean(counts, fixture + ": " + what, [&] {
        auto model = jm::model<float>::load(dir.path());
        if (classifier) {
          const auto ids = probe_ids(model.cfg().vocab_size);
          const auto logits = jm::classify(model, jetmoe::make_view<const std::int64_t>(ids.data(), 1, 3));
          if (logits.extent(1) != model.cfg().num_labels)
            FAIL_CHECK(logits.extent(1) << " label logits for num_labels = " << model.cfg().num_labels << " after: " << what);
          for (jetmoe::index_t k = 0; k < logits.size(); ++k)
            if (!std::isfinite(logits.data()[k])) FAIL_CHECK("non-finite label logits after: " << what);
        } else if (!all_finite(probe_logits(model))) {
          FAIL_CHECK("accepted config gives non-finite logits after: " << what);
        }
      });
    }
    INFO(fixture << ": " << counts.accepted << " accepted, " << counts.rejected << " rejected");
    CHECK(counts.accepted > 0);
    CHECK(counts.rejected > 0);
  }
}

TEST_CASE("fuzz: a mutated shard index loads the same model or fails with jetmoe::error", "[model][fuzz]") {
  // An index can only be accepted when it maps every tensor to the shard that holds it, so an
  // accepted one must give exactly the original model's logits.
  scratch_dir dir;
  nlohmann::json index;
  write_sharded(dir.path(), index);
  fs::copy_file(jetmoe_test::data_dir("tiny") / "config.json", dir / "config.json");
  fs::create_directories(dir / "sub");
  auto original = jm::model<float>::load(jetmoe_test::data_dir("tiny"));
  const auto want = probe_logits(original);

  const std::vector<std::string> names = [&] {
    std::vector<std::string> out;
    for (const auto& [name, shard] : index["weight_map"].items()) out.push_back(name);
    return out;
  }();
  const nlohmann::json shard_names[] = {"model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors",
                                        "",
                                        ".",
                                        "..",
                                        "sub",
                                        "sub/..",
                                        "./model-00001-of-00002.safetensors",
                                        "sub/../model-00002-of-00002.safetensors",
                                        "../model-00001-of-00002.safetensors",
                                        "/etc/passwd",
                                        "config.json",
                                        "model.safetensors.index.json",
                                        "missing.safetensors",
                                        std::string("model-00001-of-00002.safetensors\0x", 34),
                                        17,
                                        nullptr,
                                        nlohmann::json::array()};
  std::mt19937_64 rng(seed_for(3));
  outcome_counts counts;
  for (std::uint64_t i = 0; i < iterations(400); ++i) {
    nlohmann::json json = index;
    std::string what;
    const int edits = 1 + static_cast<int>(rng() % 2);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 5) {
        case 0:
        case 1: {  // point one tensor at another shard name
          const std::string& name = names[rng() % names.size()];
          json["weight_map"][name] = shard_names[rng() % std::size(shard_names)];
          what += " " + name + " -> " + json["weight_map"][name].dump();
          break;
        }
        case 2: {  // drop a tensor
          const std::string& name = names[rng() % names.size()];
          json["weight_map"].erase(name);
          what += " drop " + name;
          break;
        }
        case 3: {  // list a tensor that no shard holds
          json["weight_map"]["model.layers.9.extra"] = shard_names[rng() % 2];
          what += " add model.layers.9.extra";
          break;
        }
        default: {  // break the structure itself
          const nlohmann::json replacement = interesting_value(rng);
          if (rng() & 1) {
            json["weight_map"] = replacement;
            what += " weight_map = " + replacement.dump();
          } else {
            json = replacement;
            what += " index = " + replacement.dump();
          }
          break;
        }
      }
      if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object()) break;
    }
    write_bytes(dir / "model.safetensors.index.json", json.dump());
    expect_clean(counts, what, [&] {
      auto model = jm::model<float>::load(dir.path());
      const auto got = probe_logits(model);
      REQUIRE(got.size() == want.size());
      if (std::memcmp(got.data(), want.data(), want.bytes()) != 0)
        FAIL_CHECK("an accepted index changed the model's logits after: " << what);
    });
  }
  INFO(counts.accepted << " accepted, " << counts.rejected << " rejected");
  CHECK(counts.accepted > 0);
  CHECK(counts.rejected > 0);
}

TEST_CASE("fuzz: a damaged tokenizer.model loads and works, or fails with jetmoe::error", "[model][fuzz]") {
  // SentencePiece parses the protobuf; what is checked here is the wrapper: load errors arrive
  // as jetmoe::error, and a model that loads can encode, decode and answer per-id questions.
  scratch_dir dir;
  const std::string base = read_bytes(jetmoe_test::demo_model_dir() / "tokenizer.model");
  const fs::path target = dir / "tokenizer.model";
  std::mt19937_64 rng(seed_for(4));
  outcome_counts counts;
  for (std::uint64_t i = 0; i < iterations(300); ++i) {
    std::string image = base;
    std::string what;
    if (rng() % 4 == 0) {
      image.resize(rng() % image.size());
      what = "truncated to " + std::to_string(image.size());
    } else {
      for (int e = 0, n = 1 + static_cast<int>(rng() % 4); e < n; ++e) {
        const std::size_t at = rng() % image.size();
        image[at] = static_cast<char>(rng() & 0xff);
        what += " byte[" + std::to_string(at) + "]";
      }
    }
    write_bytes(target, image);
    expect_clean(counts, what, [&] {
      const auto tok = jetmoe::io::tokenizer::load(target);
      const auto ids = tok.encode("def f(x):\n    return x + 1  # ünïcode");
      (void)tok.decode(ids);
      for (std::int64_t id = 0; id < tok.vocab_size(); ++id) {
        (void)tok.byte_value(id);
        (void)tok.is_control(id);
      }
    });
  }
  INFO(counts.accepted << " accepted, " << counts.rejected << " rejected");
  CHECK(counts.accepted > 0);
  CHECK(counts.rejected > 0);
}
