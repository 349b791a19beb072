// tokenizer and streaming_decoder on the demo model's SentencePiece model, plus the UTF-8
// helpers the streaming decoder relies on.
#include "jetmoe/io/tokenizer.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "jetmoe/io/sentencepiece_check.hpp"
#include "jetmoe/io/utf8.hpp"

using namespace jetmoe_io_test;
using Catch::Matchers::Contains;
using jetmoe::io::streaming_decoder;
using jetmoe::io::tokenizer;

namespace {
const fs::path demo_dir = JETMOE_DEMO_MODEL_DIR;

struct spm_case {
  std::string text;
  std::vector<std::int64_t> ids;  // without BOS
  std::string decoded;
};

// Expected ids and text come from Debian's SentencePiece command-line tools (0.1.97), run on
// models/jetmoe-pydoc-5m/tokenizer.model, not from this library:
//   spm_encode --model=tokenizer.model --output_format=id < sentences.txt
//   spm_encode ... --output_format=id < sentences.txt | spm_decode --model=tokenizer.model --input_format=id
// The non-ASCII sentences exercise byte fallback (<0xC3> <0xA9> for "é", four bytes for 😀).
const std::vector<spm_case> spm_cases = {
    {"The for statement", {340, 336, 445}, "The for statement"},
    {"A class definition defines a class", {396, 376, 821, 1172, 260, 376}, "A class definition defines a class"},
    {"  leading spaces and   inner", {1150, 509, 1580, 1951, 318, 285, 794}, "leading spaces and inner"},
    {"café – naïve 😀",
     {833, 1965, 198, 172, 1947, 2043, 294, 1950, 198, 178, 367, 1947, 243, 162, 155, 131},
     "café – naïve 😀"},
    {"def f(x):", {372, 283, 1975, 1977, 835}, "def f(x):"},
    {"Exceptions are", {1397, 611, 352}, "Exceptions are"},
    {"😀 ok", {1947, 243, 162, 155, 131, 269, 1982}, "😀 ok"},
    {"Ünïcödé → ∑",
     {1947, 198, 159, 1952, 198, 178, 1957, 198, 185, 1960, 198, 172, 1947, 229, 137, 149, 1947, 229, 139, 148},
     "Ünïcödé → ∑"},
};

const tokenizer& demo_tokenizer() {
  static const tokenizer tok = tokenizer::load(demo_dir / "tokenizer.model");
  return tok;
}

// Everything a streaming decoder returns for `ids`, as separate chunks (finish() last).
std::vector<std::string> stream_chunks(const std::vector<std::int64_t>& ids) {
  streaming_decoder stream(demo_tokenizer());
  std::vector<std::string> chunks;
  for (const std::int64_t id : ids) chunks.push_back(stream.push(id));
  chunks.push_back(stream.finish());
  return chunks;
}
std::string joined(const std::vector<std::string>& chunks) {
  std::string out;
  for (const auto& c : chunks) out += c;
  return out;
}
}  // namespace

TEST_CASE("tokenizer: special ids and vocabulary of the demo model", "[io][tokenizer]") {
  const tokenizer& tok = demo_tokenizer();
  CHECK(tok.vocab_size() == 2048);
  CHECK(tok.unk_id() == 0);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.id_to_piece(340) == "▁The");
  CHECK(tok.id_to_piece(198) == "<0xC3>");
  CHECK(tok.byte_value(198) == 0xC3);
  CHECK(tok.byte_value(340) == -1);
  CHECK(tok.is_control(1));
  CHECK_THAT(error_message([&] { (void)tok.id_to_piece(2048); }),
             Contains("token id 2048 is outside the vocabulary [0, 2048)"));
  CHECK_THAT(error_message([&] { (void)tok.decode(std::vector<std::int64_t>{5, -1}); }), Contains("token id -1"));
}

TEST_CASE("tokenizer: encode and decode agree with the spm_encode / spm_decode tools", "[io][tokenizer]") {
  const tokenizer& tok = demo_tokenizer();
  for (const spm_case& c : spm_cases) {
    INFO(c.text);
    CHECK(tok.encode(c.text, false) == c.ids);
    std::vector<std::int64_t> with_bos = {1};
    with_bos.insert(with_bos.end(), c.ids.begin(), c.ids.end());
    CHECK(tok.encode(c.text) == with_bos);  // BOS prepended by default
    CHECK(tok.decode(c.ids) == c.decoded);
    CHECK(tok.decode(with_bos) == c.decoded);  // BOS decodes to nothing
  }
  CHECK(tok.encode("", true) == std::vector<std::int64_t>{1});
}

TEST_CASE("tokenizer: a missing or bogus model file is a clear error", "[io][tokenizer]") {
  scratch_dir dir;
  CHECK_THAT(error_message([&] { (void)tokenizer::load(dir / "absent.model"); }),
             Contains((dir / "absent.model").string()) && Contains("cannot load SentencePiece model"));
  write_bytes(dir / "bogus.model", "not a protobuf");
  CHECK_THAT(error_message([&] { (void)tokenizer::load(dir / "bogus.model"); }), Contains("bogus.model"));
}

TEST_CASE("streaming_decoder: concatenated pieces equal the full decode", "[io][tokenizer]") {
  const tokenizer& tok = demo_tokenizer();
  for (const spm_case& c : spm_cases) {
    INFO(c.text);
    std::vector<std::int64_t> ids = {tok.bos_id()};
    ids.insert(ids.end(), c.ids.begin(), c.ids.end());
    ids.push_back(tok.eos_id());
    const auto chunks = stream_chunks(ids);
    CHECK(joined(chunks) == c.decoded);
    for (const auto& chunk : chunks) CHECK(jetmoe::io::utf8::is_valid(chunk));  // never half a character
  }
}

TEST_CASE("streaming_decoder: leading space and held-back bytes, token by token", "[io][tokenizer]") {
  // "😀 ok" = BOS ▁ <0xF0> <0x9F> <0x98> <0x80> ▁o k
  const auto chunks = stream_chunks({1, 1947, 243, 162, 155, 131, 269, 1982});
  CHECK(chunks == std::vector<std::string>{"", "", "", "", "", "😀", " o", "k", ""});

  // Mid-text, the space before a byte-fallback character comes out at once.
  const auto mid = stream_chunks({340, 1947, 243, 162, 155, 131});
  CHECK(mid == std::vector<std::string>{"The", " ", "", "", "", "😀", ""});

  // An unfinished character is flushed by finish() exactly as decode renders it.
  const tokenizer& tok = demo_tokenizer();
  const std::vector<std::int64_t> cut = {340, 243, 162};
  CHECK(joined(stream_chunks(cut)) == tok.decode(cut));
  // A lone continuation byte can never complete: it is not held back.
  CHECK(stream_chunks({340, 162}).at(1) == tok.decode(std::vector<std::int64_t>{340, 162}).substr(3));

  streaming_decoder stream(tok);
  CHECK_THROWS_AS(stream.push(5000), jetmoe::error);
  CHECK(stream.ids().empty());  // a rejected id leaves the state unchanged
  CHECK(stream.push(340) == "The");
  stream.reset();
  CHECK(stream.push(336) == "for");  // a new text: leading space dropped again
}

TEST_CASE("streaming_decoder: random mixes of byte tokens and pieces match decode", "[io][tokenizer]") {
  const tokenizer& tok = demo_tokenizer();
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::int64_t> any_id(0, tok.vocab_size() - 1), high_byte(3 + 0x80, 3 + 0xFF);
  std::bernoulli_distribution pick_byte(0.6);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 24; ++i) ids.push_back(pick_byte(rng) ? high_byte(rng) : any_id(rng));
    INFO("trial " << trial);
    CHECK(joined(stream_chunks(ids)) == tok.decode(ids));
  }
}

TEST_CASE("utf8: validation and truncated tails", "[io][tokenizer]") {
  using namespace jetmoe::io::utf8;
  CHECK(is_valid("plain ascii"));
  CHECK(is_valid("café – 😀 ∑"));
  CHECK(find_invalid("ab\xff") == 2);
  CHECK_FALSE(is_valid("\xc0\xaf"));          // overlong "/"
  CHECK_FALSE(is_valid("\xe0\x80\xaf"));      // overlong, 3 bytes
  CHECK_FALSE(is_valid("\xed\xa0\x80"));      // UTF-16 surrogate
  CHECK_FALSE(is_valid("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid("\xe2\x80"));          // cut off

  CHECK(truncated_tail("abc") == 0);
  CHECK(truncated_tail("ab\xe2") == 1);
  CHECK(truncated_tail("ab\xe2\x80") == 2);
  CHECK(truncated_tail("ab\xe2\x80\x93") == 0);
  CHECK(truncated_tail("\xf0\x9f\x98") == 3);
  CHECK(truncated_tail("\x80") == 0);      // a stray continuation byte will never complete
  CHECK(truncated_tail("\xe2\x41") == 0);  // broken, not waiting
  CHECK(truncated_tail("\xed\xa0") == 0);  // would be a surrogate
}

// ---- check_sentencepiece_model: the character-map trie SentencePiece trusts -------------------

namespace {
// A protobuf length-delimited field: key (number, wire type 2), length, bytes.
std::string delimited_field(int number, const std::string& bytes) {
  std::string out(1, static_cast<char>(number << 3 | 2));
  for (std::uint64_t n = bytes.size(); ; n >>= 7) {
    if (n < 0x80) {
      out += static_cast<char>(n);
      break;
    }
    out += static_cast<char>((n & 0x7f) | 0x80);
  }
  return out + bytes;
}

// A Darts-clone trie, built by hand, for one key of `length` 'a's where every prefix is a rule
// mapping to "A" (so an input of n 'a's matches min(n, length) rules). Node i (after i bytes)
// has its children's base in block i + 1; its leaf unit sits at that base. Returned as the
// units, so a test can damage one before packing.
std::vector<std::uint32_t> chain_trie(int length) {
  const auto base = [](int node) { return static_cast<std::uint32_t>(256 * (node + 1)); };
  std::vector<std::uint32_t> units(static_cast<std::size_t>(256 * (length + 2)), 0);
  units[0] = base(0) << 10 | 0xff;  // the root: offset to base(0); label 0xff so byte 0 finds no child
  units[base(0)] = 0xff;             // likewise at the root's own base
  for (int node = 1; node <= length; ++node) {
    const std::uint32_t edge = base(node - 1) ^ 'a';
    units[edge] = (edge ^ base(node)) << 10 | 1u << 8 | 'a';  // label 'a', has a leaf, offset to the child
    units[base(node)] = 0x80000000u | 0;                       // the leaf: value 0, the offset of "A"
  }
  return units;
}
std::string charsmap(const std::vector<std::uint32_t>& units, const std::string& strings = std::string("A\0", 2)) {
  const auto trie_bytes = static_cast<std::uint32_t>(units.size() * 4);
  std::string out(4 + trie_bytes, '\0');
  std::memcpy(out.data(), &trie_bytes, 4);
  std::memcpy(out.data() + 4, units.data(), trie_bytes);
  return out + strings;
}
std::string model_with_charsmap(const std::string& map, int spec = 3) {
  return delimited_field(1, delimited_field(1, "piece")) + delimited_field(spec, delimited_field(2, map));
}
std::string check_error(const std::string& model) {
  return error_message([&] { jetmoe::io::check_sentencepiece_model(model, "t.model"); });
}
}  // namespace

TEST_CASE("sentencepiece check: valid character maps pass, each kind of damage is named", "[io][tokenizer]") {
  using jetmoe::io::check_sentencepiece_model;
  // Controls: the hand-made trie, the longest chain SentencePiece can report, and a model
  // without any map.
  CHECK_NOTHROW(check_sentencepiece_model(model_with_charsmap(charsmap(chain_trie(1))), "t.model"));
  CHECK_NOTHROW(check_sentencepiece_model(model_with_charsmap(charsmap(chain_trie(32))), "t.model"));
  CHECK_NOTHROW(check_sentencepiece_model(model_with_charsmap(charsmap(chain_trie(3)), 5), "t.model"));
  CHECK_NOTHROW(check_sentencepiece_model(delimited_field(1, delimited_field(1, "piece")), "t.model"));

  // 33 rules on one path overflow SentencePiece's 32-entry result buffer.
  CHECK_THAT(check_error(model_with_charsmap(charsmap(chain_trie(33)))), Contains("t.model: normalizer_spec") &&
                                                                             Contains("can match 33 rules"));
  auto damaged = [](int length, auto&& edit) {
    auto units = chain_trie(length);
    edit(units);
    return model_with_charsmap(charsmap(units));
  };
  CHECK_THAT(check_error(damaged(1, [](auto& u) { u[0] = 100000u << 10; })), Contains("root's offset"));
  CHECK_THAT(check_error(damaged(1, [](auto& u) { u[256 ^ 'a'] = (9999u << 10) | 1u << 8 | 'a'; })),
             Contains("outside the trie"));
  // A trie cut short inside a block: some bytes lead from node 1's base (512) past its end.
  CHECK_THAT(check_error(damaged(1, [](auto& u) { u.resize(600); })), Contains("input byte 88 leads to unit 600"));
  CHECK_THAT(check_error(damaged(2, [](auto& u) { u[512] = 0x80000000u | 7; })), Contains("replacement at byte 7"));
  // An edge back to the root's base: a cycle.
  CHECK_THAT(check_error(damaged(2, [](auto& u) {
               const std::uint32_t edge = 512 ^ 'a';
               u[edge] = (edge ^ 256u) << 10 | 'a';
             })),
             Contains("cycle"));
  CHECK_THAT(check_error(model_with_charsmap(charsmap(chain_trie(1), "A"))), Contains("NUL-terminated"));
  CHECK_THAT(check_error(model_with_charsmap(std::string("\xff\xff\x00\x00xxxx", 8))), Contains("runs past"));
  CHECK_THAT(check_error(model_with_charsmap(std::string("\x02\x00\x00\x00xx", 6))), Contains("no units"));
  CHECK_THAT(check_error(model_with_charsmap("abc")), Contains("too short"));

  // The protobuf around it.
  CHECK_THAT(check_error("\x1a\x7f"), Contains("runs past the end"));
  CHECK_THAT(check_error("\x08\x80"), Contains("ends inside a number"));
  CHECK_THAT(check_error("\x0b"), Contains("wire type 3"));
}

TEST_CASE("tokenizer: a damaged character map in tokenizer.model is refused before SentencePiece uses it",
          "[io][tokenizer]") {
  // The demo model's map starts with its trie size (0x2b400 bytes) and a root unit of 0x8400;
  // pointing the root far outside the trie used to crash the first encode() inside SentencePiece.
  std::string bytes = read_bytes(demo_dir / "tokenizer.model");
  const std::string start("\x00\xb4\x02\x00\x00\x84\x00\x00", 8);
  const std::size_t at = bytes.find(start);
  REQUIRE(at != std::string::npos);
  REQUIRE(bytes.find(start, at + 1) == std::string::npos);
  bytes[at + 7] = '\x7f';  // root unit 0x7f008400: offset 0x1fc021, past the trie's 44288 units
  scratch_dir dir;
  write_bytes(dir / "tokenizer.model", bytes);
  CHECK_THAT(error_message([&] { (void)tokenizer::load(dir / "tokenizer.model"); }),
             Contains((dir / "tokenizer.model").string()) && Contains("normalizer_spec.precompiled_charsmap is corrupt"));
}
