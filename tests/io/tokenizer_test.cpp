// tokenizer and streaming_decoder on the demo model's SentencePiece model, plus the UTF-8
// helpers the streaming decoder relies on.
#include "jetmoe/io/tokenizer.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io_test_support.hpp"
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
