// safetensors: reading the shipped reference files, the writer's round trip, and one
// hand-made corrupt file per validation rule.
#include "jetmoe/io/safetensors.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io_test_support.hpp"

using namespace jetmoe_io_test;
using Catch::Matchers::Contains;
using jetmoe::bf16;
using jetmoe::half;
using jetmoe::make_dims;
using jetmoe::io::safetensors_dtype;
using jetmoe::io::safetensors_file;
using jetmoe::io::safetensors_writer;

namespace {
const fs::path data_dir = JETMOE_TEST_DATA_DIR;
const fs::path demo_dir = JETMOE_DEMO_MODEL_DIR;

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}
}  // namespace

// ---- the reference files ---------------------------------------------------------------------

TEST_CASE("safetensors: tiny model.safetensors lists its float32 weights", "[io][safetensors]") {
  const auto file = safetensors_file::open(data_dir / "tiny/model.safetensors");
  CHECK(file.size() == 24);  // embed + 2 layers × 11 + final norm; tied, so no lm_head
  CHECK(file.metadata().at("format") == "pt");
  CHECK_FALSE(file.contains("lm_head.weight"));
  const auto names = file.names();
  CHECK(std::is_sorted(names.begin(), names.end()));

  const auto& embed = file.info("model.embed_tokens.weight");
  CHECK(embed.dtype == safetensors_dtype::f32);
  CHECK(embed.shape == std::vector<std::int64_t>{384, 64});
  CHECK(embed.bytes.size() == 384 * 64 * 4);

  CHECK(file.info("model.layers.1.mlp.input_linear.weight").shape == std::vector<std::int64_t>{4, 192, 64});
  CHECK(file.info("model.layers.0.self_attention.kv_proj.weight").shape == std::vector<std::int64_t>{96, 64});
  CHECK(file.info("model.layers.0.self_attention.experts.input_linear.weight").shape ==
        std::vector<std::int64_t>{4, 48, 64});
  CHECK(file.info("model.norm.weight").shape == std::vector<std::int64_t>{64});

  const auto table = file.read<float>("model.embed_tokens.weight", make_dims(384, 64));
  const auto flat = file.read_flat<float>("model.embed_tokens.weight");
  REQUIRE(flat.size() == 384u * 64u);
  CHECK(table(3, 5) == flat[3 * 64 + 5]);
  const auto in_place = file.view<float>("model.embed_tokens.weight", make_dims(384, 64));
  CHECK(in_place(383, 63) == flat.back());
}

TEST_CASE("safetensors: the demo model is bfloat16 and reads as bf16 or float", "[io][safetensors]") {
  const auto file = safetensors_file::open(demo_dir / "model.safetensors");
  const auto& embed = file.info("model.embed_tokens.weight");
  CHECK(embed.dtype == safetensors_dtype::bf16);
  CHECK(embed.shape == std::vector<std::int64_t>{2048, 128});
  for (const auto& name : file.names()) CHECK(file.info(name).dtype == safetensors_dtype::bf16);

  const auto as_bf16 = file.read<bf16>("model.embed_tokens.weight", make_dims(2048, 128));
  const auto as_float = file.read<float, 2>("model.embed_tokens.weight");
  const auto in_place = file.view<bf16, 2>("model.embed_tokens.weight");
  for (int row : {0, 1, 777, 2047})
    for (int col : {0, 64, 127}) {
      CHECK(float(as_bf16(row, col)) == as_float(row, col));
      CHECK(in_place(row, col) == as_bf16(row, col));
    }
}

TEST_CASE("safetensors: reference outputs hold int64 ids; wrong reads are refused by name", "[io][safetensors]") {
  const fs::path path = data_dir / "tiny/reference.safetensors";
  const auto file = safetensors_file::open(path);
  CHECK(file.metadata().at("seed") == "1234");
  const auto ids = file.read<std::int64_t>("input_ids", make_dims(2, 11));
  CHECK(ids(0, 0) >= 0);
  CHECK(ids(1, 10) < 384);

  const std::string wrong_type = error_message([&] { (void)file.read<float, 2>("input_ids"); });
  CHECK_THAT(wrong_type, Contains("input_ids") && Contains(path.string()) && Contains("I64") && Contains("float32"));

  const std::string wrong_shape = error_message([&] { (void)file.read<std::int64_t>("input_ids", make_dims(2, 12)); });
  CHECK_THAT(wrong_shape, Contains("tensor input_ids in " + path.string() + " has shape [2, 11], expected [2, 12]"));

  const std::string wrong_rank = error_message([&] { (void)file.read<std::int64_t, 3>("input_ids"); });
  CHECK_THAT(wrong_rank, Contains("rank-3"));

  const std::string missing = error_message([&] { (void)file.info("no.such.tensor"); });
  CHECK_THAT(missing, Contains(path.string()) && Contains("no.such.tensor"));
}

// ---- conversions -----------------------------------------------------------------------------

TEST_CASE("safetensors: typed reads convert between float, bf16, half and integers", "[io][safetensors]") {
  scratch_dir dir;
  // 1 + 2^-8 and 1 + 3·2^-8 lie exactly halfway between bf16 neighbours: ties go to even.
  const std::vector<float> f32 = {1.0f, 1.00390625f, 1.01171875f, -2.5f, 65504.0f, 1e-8f};
  std::vector<std::uint16_t> f16_bits, bf16_bits;
  for (float v : f32) f16_bits.push_back(half(v).bits), bf16_bits.push_back(bf16(v).bits);
  const std::vector<std::int32_t> i32 = {-7, 0, 2147483647};
  const std::vector<std::uint8_t> flags = {0, 1, 2};  // 2 is not a valid bool byte; it reads as true

  safetensors_writer out;
  out.add("f32", safetensors_dtype::f32, {6}, bytes_of(f32));
  out.add("f16", safetensors_dtype::f16, {6}, bytes_of(f16_bits));
  out.add("bf16", safetensors_dtype::bf16, {6}, bytes_of(bf16_bits));
  out.add("i32", safetensors_dtype::i32, {3}, bytes_of(i32));
  out.add("flags", safetensors_dtype::boolean, {3}, bytes_of(flags));
  out.write(dir / "t.safetensors");
  const auto file = safetensors_file::open(dir / "t.safetensors");

  const auto rounded = file.read_flat<bf16>("f32");
  CHECK(rounded[0].bits == 0x3F80);
  CHECK(rounded[1].bits == 0x3F80);  // tie → even (down)
  CHECK(rounded[2].bits == 0x3F82);  // tie → even (up)
  CHECK(file.read_flat<bf16>("bf16") == rounded);
  CHECK(file.read_flat<float>("f16")[4] == 65504.0f);
  CHECK(file.read_flat<float>("bf16")[3] == -2.5f);
  CHECK(file.read_flat<bf16>("f16")[3] == bf16(-2.5f));
  CHECK(file.read_flat<half>("bf16")[0] == half(1.0f));
  CHECK(file.read_flat<half>("f32")[5] == half(1e-8f));
  CHECK(file.read_flat<std::int64_t>("i32") == std::vector<std::int64_t>{-7, 0, 2147483647});
  CHECK(file.read_flat<bool>("flags") == std::vector<bool>{false, true, true});
  CHECK_THROWS_AS(file.read_flat<std::int64_t>("f32"), jetmoe::error);
  CHECK_THROWS_AS(file.read_flat<bf16>("i32"), jetmoe::error);
}

// ---- the writer ------------------------------------------------------------------------------

TEST_CASE("safetensors: writer round trip keeps every byte, aligned and padded", "[io][safetensors]") {
  scratch_dir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<std::uint16_t> b = {1, 2, 3, 4, 5};  // odd count: the next tensor would be misaligned
  const std::vector<std::int64_t> c = {-1, 1LL << 40, 7};
  const std::vector<std::uint16_t> scalar = {half(0.5f).bits};

  safetensors_writer out;
  out.set_metadata("format", "pt");
  out.set_metadata("note", "naïve");
  out.add("b.bf16", safetensors_dtype::bf16, {5}, bytes_of(b));
  out.add("a.f32", safetensors_dtype::f32, {2, 3}, bytes_of(a));
  out.add("c.i64", safetensors_dtype::i64, {3}, bytes_of(c));
  out.add("empty", safetensors_dtype::u8, {0, 4}, {});
  out.add("scalar", safetensors_dtype::f16, {}, bytes_of(scalar));
  out.write(dir / "round.safetensors");

  // Nothing but the file is left in the directory (the temporary was renamed).
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);

  const std::string raw = read_bytes(dir / "round.safetensors");
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  CHECK(header_length % 8 == 0);
  const std::string header = raw.substr(8, header_length);
  CHECK(header == out.header());
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));    // padded with spaces only
  CHECK(header.find("\"__metadata__\"") < header.find("\"a.f32\""));  // keys sorted
  CHECK(header.find("\"a.f32\"") < header.find("\"b.bf16\""));

  const auto file = safetensors_file::open(dir / "round.safetensors");
  CHECK(file.names() == std::vector<std::string>{"a.f32", "b.bf16", "c.i64", "empty", "scalar"});
  CHECK(file.metadata().at("note") == "naïve");
  for (const auto& name : file.names()) {
    const auto& t = file.info(name);
    CHECK(t.data_offset % jetmoe::io::element_size(t.dtype) == 0);
  }
  auto same_bytes = [&](const char* name, std::span<const std::byte> expected) {
    const auto got = file.info(name).bytes;
    return got.size() == expected.size() && std::equal(got.begin(), got.end(), expected.begin());
  };
  CHECK(same_bytes("a.f32", bytes_of(a)));
  CHECK(same_bytes("b.bf16", bytes_of(b)));
  CHECK(same_bytes("c.i64", bytes_of(c)));
  CHECK(same_bytes("scalar", bytes_of(scalar)));
  CHECK(file.info("empty").shape == std::vector<std::int64_t>{0, 4});
  CHECK(file.info("scalar").shape.empty());
  CHECK(file.read<float, 1>("scalar")(0) == 0.5f);  // a scalar reads as one element
  CHECK(file.read<std::uint8_t, 2>("empty").size() == 0);
  CHECK(file.view<std::int64_t>("c.i64", make_dims(3))(1) == (1LL << 40));
}

TEST_CASE("safetensors: writer takes tensors and strided views", "[io][safetensors]") {
  scratch_dir dir;
  auto m = jetmoe::tensor<float, 2>(make_dims(2, 3));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) m(i, j) = float(10 * i + j);

  safetensors_writer out;
  out.add("m", m);
  out.add("m.t", m.view().transpose(0, 1));  // gathered into row-major [3, 2]
  out.add("row1", m.view().select(1));
  out.write(dir / "views.safetensors");

  const auto file = safetensors_file::open(dir / "views.safetensors");
  CHECK(file.read_flat<float>("m") == std::vector<float>{0, 1, 2, 10, 11, 12});
  CHECK(file.read_flat<float>("m.t") == std::vector<float>{0, 10, 1, 11, 2, 12});
  CHECK(file.read_flat<float>("row1") == std::vector<float>{10, 11, 12});

  auto target = jetmoe::tensor<float, 2>(make_dims(3, 2));
  file.read_into("m.t", target.view());
  CHECK(target(2, 1) == 12.0f);
  CHECK_THROWS_AS(file.read_into("m", target.view()), jetmoe::error);  // [2,3] into [3,2]
}

TEST_CASE("safetensors: writer refuses bad tensors and leaves no file on failure", "[io][safetensors]") {
  scratch_dir dir;
  const std::vector<float> four = {1, 2, 3, 4};
  safetensors_writer out;
  out.add("w", safetensors_dtype::f32, {4}, bytes_of(four));
  CHECK_THAT(error_message([&] { out.add("w", safetensors_dtype::f32, {4}, bytes_of(four)); }),
             Contains("\"w\" was already added"));
  CHECK_THAT(error_message([&] { out.add("x", safetensors_dtype::f32, {5}, bytes_of(four)); }),
             Contains("needs 20 bytes, got 16"));
  CHECK_THAT(error_message([&] { out.add("x", safetensors_dtype::f32, {-1}, {}); }), Contains("negative"));
  CHECK_THAT(error_message([&] { out.add("__metadata__", safetensors_dtype::f32, {4}, bytes_of(four)); }),
             Contains("reserved"));
  CHECK_THAT(error_message([&] { out.add("bad\xff", safetensors_dtype::f32, {4}, bytes_of(four)); }),
             Contains("UTF-8"));

  const fs::path nowhere = dir / "missing-dir/out.safetensors";
  CHECK_THAT(error_message([&] { out.write(nowhere); }), Contains(nowhere.string()));
  CHECK_FALSE(fs::exists(nowhere.parent_path()));

  // Overwriting replaces the old file as a whole.
  write_bytes(dir / "w.safetensors", "old contents");
  out.write(dir / "w.safetensors");
  CHECK(safetensors_file::open(dir / "w.safetensors").read_flat<float>("w") == four);
}

// ---- validation: one hand-made corrupt file per rule ------------------------------------------

namespace {
// Writes `image` to a fresh file, opens it, and returns the error message (the test fails when
// opening succeeds). Every message must name the file.
std::string open_error(const scratch_dir& dir, const std::string& image) {
  static int n = 0;
  const fs::path path = dir / ("corrupt-" + std::to_string(n++) + ".safetensors");
  write_bytes(path, image);
  std::string message = error_message([&] { (void)safetensors_file::open(path); });
  CHECK_THAT(message, Contains(path.string()));
  return message;
}

const char* const two_floats = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
}  // namespace

TEST_CASE("safetensors: a well-formed hand-made file opens (control for the cases below)", "[io][safetensors]") {
  scratch_dir dir;
  write_bytes(dir / "ok.safetensors", raw_safetensors(two_floats, 8));
  const auto file = safetensors_file::open(dir / "ok.safetensors");
  CHECK(file.read_flat<float>("w") == std::vector<float>{0, 0});

  // Zero tensors and an empty data section is valid too; so are metadata and a zero-size tensor.
  write_bytes(dir / "empty.safetensors", raw_safetensors("{}", 0));
  CHECK(safetensors_file::open(dir / "empty.safetensors").size() == 0);
  write_bytes(dir / "meta.safetensors",
              raw_safetensors(R"({"__metadata__":{"k":"v"},"z":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]},)"
                              R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                              8));
  CHECK(safetensors_file::open(dir / "meta.safetensors").names() == std::vector<std::string>{"w", "z"});
}

TEST_CASE("safetensors: file and header length are checked", "[io][safetensors][validation]") {
  scratch_dir dir;
  CHECK_THAT(open_error(dir, std::string(5, '\0')), Contains("5 bytes is too small"));
  CHECK_THAT(open_error(dir, ""), Contains("0 bytes is too small"));
  CHECK_THAT(open_error(dir, raw_safetensors("{}", 0, 100)), Contains("header length 100 runs past the end"));
  CHECK_THAT(open_error(dir, raw_safetensors("{}", 0, 200'000'000)), Contains("exceeds the 100000000-byte limit"));
  CHECK_THAT(open_error(dir, raw_safetensors("{}", 0, std::numeric_limits<std::uint64_t>::max())), Contains("exceeds"));
}

TEST_CASE("safetensors: the header must be UTF-8 JSON describing an object", "[io][safetensors][validation]") {
  scratch_dir dir;
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"w": )", 0)), Contains("invalid JSON"));
  CHECK_THAT(open_error(dir, raw_safetensors(R"({} trailing)", 0)), Contains("invalid JSON"));
  CHECK_THAT(open_error(dir, raw_safetensors("{\"w\xff\":{}}", 0)), Contains("not valid UTF-8 (byte 3"));
  CHECK_THAT(open_error(dir, raw_safetensors("{\"\xc0\xaf\":{}}", 0)), Contains("not valid UTF-8"));  // overlong '/'
  CHECK_THAT(open_error(dir, raw_safetensors("[1, 2]", 0)), Contains("not a JSON object"));
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"__metadata__":{"k":1}})", 0)),
             Contains("\"__metadata__\" entry \"k\" must be a string"));
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"__metadata__":[]})", 0)), Contains("__metadata__"));
  CHECK_THAT(open_error(dir, raw_safetensors(std::string(100, '[') + std::string(100, ']'), 0)),
             Contains("nested deeper"));
}

TEST_CASE("safetensors: each tensor entry is checked and named", "[io][safetensors][validation]") {
  scratch_dir dir;
  auto entry = [](const std::string& body) { return raw_safetensors("{\"w\":" + body + "}", 8); };
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F7","shape":[2],"data_offsets":[0,8]})")),
             Contains("tensor \"w\" has unknown dtype \"F7\""));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]})")),
             Contains("tensor \"w\" shape entry must be a non-negative integer, got -1"));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})")),
             Contains("tensor \"w\" shape entry must be a non-negative integer"));
  CHECK_THAT(open_error(dir, entry(R"({"shape":[2],"data_offsets":[0,8]})")),
             Contains("tensor \"w\" has no \"dtype\""));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","data_offsets":[0,8]})")),
             Contains("tensor \"w\" has no \"shape\""));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","shape":[2]})")),
             Contains("tensor \"w\" has no \"data_offsets\""));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})")),
             Contains("tensor \"w\": \"data_offsets\" must be [begin, end]"));
  CHECK_THAT(open_error(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})")),
             Contains("tensor \"w\": data_offsets [8, 0] end before they begin"));
  CHECK_THAT(open_error(dir, entry("[1]")), Contains("tensor \"w\" must be described by an object"));
}

TEST_CASE("safetensors: duplicate tensor names are rejected", "[io][safetensors][validation]") {
  scratch_dir dir;
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  CHECK_THAT(open_error(dir, raw_safetensors(header, 8)), Contains("duplicate key \"w\" in the top-level object"));
  // A duplicate field inside an entry hides a conflict just the same.
  CHECK_THAT(
      open_error(dir, raw_safetensors(R"({"w":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}})", 8)),
      Contains("duplicate key \"dtype\" in object \"w\""));
}

TEST_CASE("safetensors: byte sizes must match shapes, without overflow", "[io][safetensors][validation]") {
  scratch_dir dir;
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
             Contains("tensor \"w\": shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8"));
  CHECK_THAT(open_error(dir, raw_safetensors(
                                 R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}})", 8)),
             Contains("tensor \"w\": the element count of shape") && Contains("overflows"));
  CHECK_THAT(open_error(dir, raw_safetensors(
                                 R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8)),
             Contains("tensor \"w\": shape") && Contains("overflows"));
  CHECK_THAT(open_error(dir, raw_safetensors(
                                 R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]}})", 8)),
             Contains("tensor \"w\": shape entry 18446744073709551615 is too large"));
}

TEST_CASE("safetensors: tensors must tile the data section exactly", "[io][safetensors][validation]") {
  scratch_dir dir;
  // Overlap: b starts inside a.
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                             12)),
             Contains("tensor \"b\"") && Contains("overlaps tensor \"a\""));
  // Gap: 4 bytes between a and b.
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                             20)),
             Contains("4 unindexed bytes before tensor \"b\""));
  // Gap at the start.
  CHECK_THAT(open_error(dir, raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
             Contains("unindexed bytes before tensor \"a\""));
  // Trailing bytes nobody owns.
  CHECK_THAT(open_error(dir, raw_safetensors(two_floats, 12)),
             Contains("not fully indexed: the tensors end at byte 8 of 12"));
  // Offsets past the end of the file.
  CHECK_THAT(open_error(dir, raw_safetensors(two_floats, 4)),
             Contains("tensor \"w\": data_offsets [0, 8] run past the end of the data section (4 bytes)"));
  CHECK_THAT(
      open_error(
          dir,
          raw_safetensors(
              R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})", 0)),
      Contains("run past the end"));
}
