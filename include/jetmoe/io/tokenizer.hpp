// jetmoe/io/tokenizer.hpp — tokenizer (a SentencePiece model) and streaming_decoder.
//
// Needs the jetmoe::tokenizer CMake target (SentencePiece, found through pkg-config).
// SentencePiece's Encode adds no BOS; encode() prepends it when asked, as JetMoE expects.
//
//   auto tok = jetmoe::io::tokenizer::load(model_dir / "tokenizer.model");
//   std::vector<std::int64_t> ids = tok.encode("The for statement");   // [bos, …]
//   jetmoe::io::streaming_decoder stream(tok);
//   for (auto id : generated) std::cout << stream.push(id) << std::flush;
//   std::cout << stream.finish();
#pragma once

#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/io/sentencepiece_check.hpp"
#include "jetmoe/io/utf8.hpp"

namespace jetmoe::io {

class tokenizer {
 public:
  static tokenizer load(const std::filesystem::path& model_file) {
    tokenizer out;
    out.path_ = model_file.string();
    // Read once, checked, then parsed from the same bytes: SentencePiece trusts the character
    // map inside (see sentencepiece_check.hpp), and a file changed in between stays unchecked.
    const std::string bytes = read_model_file(out.path_);
    check_sentencepiece_model(bytes, out.path_);
    out.processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = out.processor_->LoadFromSerializedProto(bytes);
    if (!status.ok())
      throw error(jetmoe::detail::concat(out.path_, ": cannot load SentencePiece model: ", status.ToString()));
    return out;
  }

  // Token ids of `text`, with BOS first when `add_bos` (and the model has a BOS).
  std::vector<std::int64_t> encode(std::string_view text, bool add_bos = true) const {
    std::vector<int> pieces;
    const auto status = processor_->Encode(text, &pieces);
    if (!status.ok()) throw error(jetmoe::detail::concat(path_, ": encoding failed: ", status.ToString()));
    std::vector<std::int64_t> ids;
    ids.reserve(pieces.size() + 1);
    if (add_bos && bos_id() >= 0) ids.push_back(bos_id());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return ids;
  }

  // The text of `ids`. Control tokens (BOS, EOS) decode to nothing; a leading "▁" is dropped.
  std::string decode(std::span<const std::int64_t> ids) const {
    std::vector<int> pieces;
    pieces.reserve(ids.size());
    for (const std::int64_t id : ids) pieces.push_back(checked_id(id));
    std::string text;
    const auto status = processor_->Decode(pieces, &text);
    if (!status.ok()) throw error(jetmoe::detail::concat(path_, ": decoding failed: ", status.ToString()));
    return text;
  }

  std::int64_t vocab_size() const { return processor_->GetPieceSize(); }
  std::int64_t bos_id() const { return processor_->bos_id(); }  // −1 when the model has none
  std::int64_t eos_id() const { return processor_->eos_id(); }
  std::int64_t unk_id() const { return processor_->unk_id(); }
  std::int64_t pad_id() const { return processor_->pad_id(); }

  std::string id_to_piece(std::int64_t id) const { return processor_->IdToPiece(checked_id(id)); }
  bool is_control(std::int64_t id) const { return processor_->IsControl(checked_id(id)); }

  // The byte of a byte-fallback token ("<0xE2>" → 0xE2), or −1 for any other token.
  int byte_value(std::int64_t id) const {
    const int piece = checked_id(id);
    if (!processor_->IsByte(piece)) return -1;
    const std::string spelled = processor_->IdToPiece(piece);  // "<0xE2>"
    auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
    const bool well_formed = spelled.size() == 6 && spelled.starts_with("<0x") && spelled[5] == '>' &&
                             hex(spelled[3]) >= 0 && hex(spelled[4]) >= 0;
    check(well_formed, path_, ": byte token ", id, " is spelled \"", spelled, "\", not <0xXX>");
    return hex(spelled[3]) * 16 + hex(spelled[4]);
  }

  const std::string& path() const { return path_; }
  const sentencepiece::SentencePieceProcessor& processor() const { return *processor_; }

 private:
  tokenizer() = default;

  static std::string read_model_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(static_cast<bool>(in), path, ": cannot load SentencePiece model: the file cannot be opened");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    check(!in.bad(), path, ": cannot load SentencePiece model: read error");
    return std::move(bytes).str();
  }

  int checked_id(std::int64_t id) const {
    check(0 <= id && id < vocab_size(), path_, ": token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
    return static_cast<int>(id);
  }

  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;  // stays put when moved
};

// Turns generated ids into text as they arrive. The pieces of everything pushed so far,
// concatenated with finish(), equal tokenizer::decode of all the ids: the whole prefix is
// decoded each time (so SentencePiece's leading-space rule applies exactly as in a full
// decode) and only the new suffix is returned. A character spelled by byte-fallback tokens
// (<0xE2> <0x80> <0x93>) is held back until its last byte arrives, so no half character or
// U+FFFD is ever printed for it. Decoding the prefix makes a push O(length); fine for the
// thousands of tokens of a generation.
class streaming_decoder {
 public:
  // `tok` must outlive the decoder.
  explicit streaming_decoder(const tokenizer& tok) : tokenizer_(&tok) {}

  // Adds one id; returns the text that became final with it (often empty).
  std::string push(std::int64_t id) {
    const int byte = tokenizer_->byte_value(id);  // first, so a bad id leaves the state unchanged
    ids_.push_back(id);
    bytes_.push_back(byte);
    return emit(ids_.size() - pending_byte_tokens());
  }

  // Returns whatever is still held back (an unfinished byte sequence decodes to U+FFFD).
  std::string finish() { return emit(ids_.size()); }

  // Starts a new text.
  void reset() {
    ids_.clear();
    bytes_.clear();
    emitted_ = 0;
  }

  const std::vector<std::int64_t>& ids() const { return ids_; }

 private:
  // How many trailing byte tokens start a character that is not complete yet.
  std::size_t pending_byte_tokens() const {
    std::size_t run_start = bytes_.size();  // the trailing run of byte tokens
    while (run_start > 0 && bytes_[run_start - 1] >= 0) --run_start;
    std::string tail;
    for (std::size_t i = run_start; i < bytes_.size(); ++i) tail.push_back(static_cast<char>(bytes_[i]));
    return utf8::truncated_tail(tail);  // one token per byte
  }

  std::string emit(std::size_t stable_ids) {
    const std::string text = tokenizer_->decode(std::span(ids_).first(stable_ids));
    if (text.size() <= emitted_) return {};
    std::string fresh = text.substr(emitted_);
    emitted_ = text.size();
    return fresh;
  }

  const tokenizer* tokenizer_;
  std::vector<std::int64_t> ids_;
  std::vector<int> bytes_;   // per id: its byte for a byte-fallback token, else −1
  std::size_t emitted_ = 0;  // bytes of the decoded text already returned
};

}  // namespace jetmoe::io
