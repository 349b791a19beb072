// jetmoe/io/utf8.hpp — UTF-8 validation (RFC 3629) for file headers and streamed text.
//
// Two users: the safetensors reader rejects headers that are not valid UTF-8, and the
// streaming detokenizer holds back a multi-byte character until all of its bytes arrived.
// Overlong forms, surrogates (U+D800…U+DFFF) and code points above U+10FFFF are invalid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace jetmoe::io::utf8 {

enum class sequence_status { complete, truncated, invalid };

struct sequence {
  sequence_status status;
  std::size_t length;  // bytes consumed: the whole character, the bytes present (truncated), or 1 (invalid)
};

// Classifies the character starting at text[pos] (pos < text.size()).
inline sequence next_sequence(std::string_view text, std::size_t pos) {
  const auto lead = static_cast<std::uint8_t>(text[pos]);
  if (lead < 0x80) return {sequence_status::complete, 1};

  // Expected length and the allowed range of the second byte, which is where overlongs,
  // surrogates and out-of-range code points are ruled out.
  std::size_t length = 0;
  std::uint8_t second_lo = 0x80, second_hi = 0xBF;
  // clang-format off
  if (lead >= 0xC2 && lead <= 0xDF) length = 2;
  else if (lead == 0xE0) length = 3, second_lo = 0xA0;
  else if (lead == 0xED) length = 3, second_hi = 0x9F;
  else if (lead >= 0xE1 && lead <= 0xEF) length = 3;
  else if (lead == 0xF0) length = 4, second_lo = 0x90;
  else if (lead == 0xF4) length = 4, second_hi = 0x8F;
  else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
  else return {sequence_status::invalid, 1};  // 0x80…0xC1 or 0xF5…0xFF can never start a character
  // clang-format on

  for (std::size_t i = 1; i < length; ++i) {
    if (pos + i >= text.size()) return {sequence_status::truncated, i};
    const auto byte = static_cast<std::uint8_t>(text[pos + i]);
    const std::uint8_t lo = i == 1 ? second_lo : 0x80, hi = i == 1 ? second_hi : 0xBF;
    if (byte < lo || byte > hi) return {sequence_status::invalid, 1};
  }
  return {sequence_status::complete, length};
}

// Offset of the first byte that is not part of a valid character (a character cut off by the
// end of the text counts as invalid), or std::string_view::npos when the text is valid UTF-8.
inline std::size_t find_invalid(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    const sequence s = next_sequence(text, pos);
    if (s.status != sequence_status::complete) return pos;
    pos += s.length;
  }
  return std::string_view::npos;
}

inline bool is_valid(std::string_view text) { return find_invalid(text) == std::string_view::npos; }

// Number of bytes at the end of `text` that begin a valid character but stop before its end:
// the bytes a streaming decoder must wait on. 0 when the text ends on a character boundary
// or in bytes that no continuation could make valid.
inline std::size_t truncated_tail(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    const sequence s = next_sequence(text, pos);
    if (s.status == sequence_status::truncated) return s.length;  // only possible at the very end
    pos += s.length;
  }
  return 0;
}

}  // namespace jetmoe::io::utf8
