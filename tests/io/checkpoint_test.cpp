// checkpoint: single-file and sharded model directories, and the errors for broken ones.
#include "jetmoe/io/checkpoint.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "jetmoe/io/safetensors_writer.hpp"

using namespace jetmoe_io_test;
using Catch::Matchers::Contains;
using jetmoe::make_dims;
using jetmoe::io::checkpoint;
using jetmoe::io::checkpoint_progress;
using jetmoe::io::safetensors_dtype;
using jetmoe::io::safetensors_writer;

namespace {
const fs::path data_dir = JETMOE_TEST_DATA_DIR;

void write_floats(const fs::path& path, const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
  safetensors_writer out;
  for (const auto& [name, values] : tensors)
    out.add(name, safetensors_dtype::f32, {static_cast<std::int64_t>(values.size())}, std::as_bytes(std::span(values)));
  out.write(path);
}

// Two shards: a, b in the first, c in the second; the index lists all three.
void write_sharded(const scratch_dir& dir) {
  write_floats(dir / "model-00001-of-00002.safetensors", {{"a", {1, 2}}, {"b", {3}}});
  write_floats(dir / "model-00002-of-00002.safetensors", {{"c", {4, 5, 6}}});
  write_bytes(dir / "model.safetensors.index.json", R"({
    "metadata": {"total_size": 24},
    "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})");
}

std::string index_with(const std::string& weight_map) { return R"({"weight_map": {)" + weight_map + "}}"; }
}  // namespace

TEST_CASE("checkpoint: a directory with model.safetensors", "[io][checkpoint]") {
  const auto weights = checkpoint::open(data_dir / "tiny");
  CHECK_FALSE(weights.is_sharded());
  CHECK(weights.shard_count() == 1);
  CHECK(weights.size() == 24);
  CHECK(weights.contains("model.norm.weight"));
  CHECK(weights.read<float>("model.norm.weight", make_dims(64)).size() == 64);
  CHECK(weights.total_bytes() == weights.file_of("model.norm.weight").data_bytes());

  // The file itself may be given instead of its directory.
  CHECK(checkpoint::open(data_dir / "tiny/model.safetensors").size() == 24);
}

TEST_CASE("checkpoint: sharded index, lookup across shards, progress", "[io][checkpoint]") {
  scratch_dir dir;
  write_sharded(dir);

  std::vector<std::pair<checkpoint_progress::stage, std::uint64_t>> events;
  std::uint64_t last_total = 0;
  auto weights = checkpoint::open(dir.path(), [&](const checkpoint_progress& p) {
    events.emplace_back(p.what, p.done);
    last_total = p.total;
  });
  CHECK(weights.is_sharded());
  CHECK(weights.shard_count() == 2);
  CHECK(weights.names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(weights.total_bytes() == 24);
  REQUIRE(events.size() == 2);  // one per shard
  CHECK(events[1] == std::pair(checkpoint_progress::stage::opening, std::uint64_t{2}));
  CHECK(last_total == 2);

  CHECK(weights.read_flat<float>("c") == std::vector<float>{4, 5, 6});
  CHECK(weights.read<float>("a", make_dims(2))(1) == 2.0f);
  CHECK(weights.file_of("c").path().filename() == "model-00002-of-00002.safetensors");
  CHECK(events.back() == std::pair(checkpoint_progress::stage::reading, std::uint64_t{12 + 8}));
  CHECK(last_total == 24);

  CHECK_THAT(error_message([&] { (void)weights.info("d"); }), Contains("no tensor named \"d\""));

  // The index file may be given directly.
  CHECK(checkpoint::open(dir / "model.safetensors.index.json").size() == 3);
}

TEST_CASE("checkpoint: model.safetensors wins over an index, as in transformers", "[io][checkpoint]") {
  scratch_dir dir;
  write_sharded(dir);
  write_floats(dir / "model.safetensors", {{"only", {1}}});
  CHECK(checkpoint::open(dir.path()).names() == std::vector<std::string>{"only"});
}

TEST_CASE("checkpoint: broken directories and indexes give clear errors", "[io][checkpoint]") {
  scratch_dir dir;
  write_sharded(dir);
  const fs::path index = dir / "model.safetensors.index.json";

  SECTION("no weights at all") {
    scratch_dir empty;
    CHECK_THAT(error_message([&] { (void)checkpoint::open(empty.path()); }),
               Contains(empty.path().string()) && Contains("no model.safetensors or model.safetensors.index.json"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(empty / "absent"); }), Contains("no such file or directory"));
  }
  SECTION("a listed shard is missing") {
    write_bytes(index,
                index_with(R"("a": "model-00001-of-00002.safetensors", "z": "model-00003-of-00003.safetensors")"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains(index.string()) && Contains("shard \"model-00003-of-00003.safetensors\"") &&
                   Contains("\"z\"") && Contains("does not exist"));
  }
  SECTION("a tensor is missing from its shard") {
    write_bytes(index,
                index_with(R"("a": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors")"));
    CHECK_THAT(
        error_message([&] { (void)checkpoint::open(dir.path()); }),
        Contains("lists tensor \"c\" in shard \"model-00001-of-00002.safetensors\"") && Contains("has no such tensor"));
  }
  SECTION("a shard outside the directory") {
    write_bytes(index, index_with(R"("a": "../model-00001-of-00002.safetensors")"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains("not a file inside the model directory"));
    write_bytes(index, index_with(R"("a": "/etc/passwd")"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains("not a file inside the model directory"));
  }
  SECTION("malformed index") {
    write_bytes(index, R"({"metadata": {}})");
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains(index.string()) && Contains("no \"weight_map\""));
    write_bytes(index, index_with(R"("a": 3)"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains("weight_map entry \"a\" must be a file name"));
    write_bytes(index,
                index_with(R"("a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors")"));
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains("duplicate key \"a\" in object \"weight_map\""));
    write_bytes(index, "{");
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains(index.string()) && Contains("invalid JSON"));
  }
  SECTION("a corrupt shard names the shard file") {
    const fs::path shard = dir / "model-00002-of-00002.safetensors";
    write_bytes(shard, "tiny");
    CHECK_THAT(error_message([&] { (void)checkpoint::open(dir.path()); }),
               Contains(shard.string()) && Contains("too small"));
  }
}
