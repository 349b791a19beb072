// jetmoe/io/sentencepiece_check.hpp — checks the part of a tokenizer.model that SentencePiece
// trusts without checking.
//
// SentencePiece parses the protobuf safely, but a normalizer's precompiled character map (the
// NFKC rules: a Darts double-array trie and the strings it maps to) is used as it is read:
// every lookup follows the trie's offsets into memory unchecked, so a damaged or hostile
// tokenizer.model crashes the first encode() or reads outside the file. check_sentencepiece_model
// walks the protobuf far enough to find every character map (in normalizer_spec and
// denormalizer_spec) and proves that no input can make a lookup leave it:
//   * every unit a lookup can reach, for any input byte, lies inside the trie;
//   * every value a match yields points at a NUL-terminated string inside the map;
//   * no path through the trie yields more matches than SentencePiece's fixed result buffer
//     (32), which it would otherwise read past; a cycle (valid tries have none) is refused too.
// Everything else in the file is left to SentencePiece.
//
//   jetmoe::io::check_sentencepiece_model(bytes, "tokenizer.model");  // throws jetmoe::error
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "jetmoe/core/error.hpp"

namespace jetmoe::io {

namespace sentencepiece_detail {

// SentencePiece's Normalizer::kMaxTrieResultsSize: the matches one lookup may report.
inline constexpr int max_matches_per_lookup = 32;

// The protobuf wire format, read just far enough to find length-delimited fields.
class wire_reader {
 public:
  wire_reader(std::string_view bytes, std::string_view source) : bytes_(bytes), source_(source) {}

  bool done() const { return at_ == bytes_.size(); }

  std::uint64_t varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      check(at_ < bytes_.size(), source_, ": not a SentencePiece model (the protobuf ends inside a number)");
      const auto byte = static_cast<std::uint8_t>(bytes_[at_++]);
      value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
    throw error(jetmoe::detail::concat(source_, ": not a SentencePiece model (a protobuf number is over 10 bytes)"));
  }

  // The next field: its number, and its bytes when it is length-delimited (empty otherwise).
  struct field {
    std::uint64_t number;
    bool delimited;
    std::string_view bytes;
  };
  field next() {
    const std::uint64_t key = varint();
    const std::uint64_t number = key >> 3;
    switch (key & 7) {
      case 0: (void)varint(); return {number, false, {}};
      case 1: skip(8); return {number, false, {}};
      case 5: skip(4); return {number, false, {}};
      case 2: {
        const std::uint64_t length = varint();
        check(length <= bytes_.size() - at_, source_, ": not a SentencePiece model (a protobuf field of ", length,
              " bytes runs past the end)");
        const std::string_view out = bytes_.substr(at_, static_cast<std::size_t>(length));
        at_ += static_cast<std::size_t>(length);
        return {number, true, out};
      }
      default:
        throw error(jetmoe::detail::concat(source_, ": not a SentencePiece model (protobuf wire type ", key & 7,
                                           " is not used by one)"));
    }
  }

 private:
  void skip(std::size_t n) {
    check(n <= bytes_.size() - at_, source_, ": not a SentencePiece model (the protobuf ends inside a field)");
    at_ += n;
  }

  std::string_view bytes_;
  std::string_view source_;
  std::size_t at_ = 0;
};

// One Darts-clone unit: 32 bits holding a label, a leaf flag and an offset (or, for a leaf
// unit, a value). The layout is Darts-clone's.
struct trie_unit {
  std::uint32_t bits;
  bool has_leaf() const { return ((bits >> 8) & 1) == 1; }
  std::uint32_t value() const { return bits & 0x7fffffffu; }
  std::uint32_t label() const { return bits & (0x80000000u | 0xffu); }
  std::uint32_t offset() const { return (bits >> 10) << ((bits & (1u << 9)) >> 6); }
};

// Checks one precompiled character map: <trie bytes: uint32 LE><trie><NUL-terminated strings>.
inline void check_charsmap(std::string_view blob, std::string_view source, std::string_view spec) {
  auto fail = [&](auto&&... parts) {
    throw error(jetmoe::detail::concat(source, ": ", spec, ".precompiled_charsmap is corrupt: ", parts...));
  };
  if (blob.size() <= 4) fail("it is ", blob.size(), " bytes, too short to hold a trie");
  std::uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);  // little-endian, as SentencePiece writes it (x86, ARM)
  if (trie_bytes > blob.size() - 4)
    fail("the trie's size (", trie_bytes, " bytes) runs past the map's ", blob.size(), " bytes");
  const std::size_t unit_count = trie_bytes / 4;
  if (unit_count == 0) fail("the trie has no units");
  std::vector<trie_unit> units(unit_count);
  std::memcpy(units.data(), blob.data() + 4, unit_count * 4);
  const std::string_view strings = blob.substr(4 + std::size_t{trie_bytes});

  // A lookup stands at a "base" b (the position a node's offset points to) and moves, on input
  // byte c, to unit b ^ c. Depth-first over the bases reachable from the root's: each must keep
  // all 256 moves inside the trie; matches_below[b] is the most matches a path from b can yield.
  enum class state : std::uint8_t { unseen, open, closed };
  std::vector<state> seen(unit_count, state::unseen);
  std::vector<std::uint8_t> matches_below(unit_count, 0);
  struct frame {
    std::uint32_t base;
    std::uint32_t next_byte;
  };
  // The edge `unit` leads from base `parent` to base `child`, whose paths are all explored.
  auto fold = [&](std::uint32_t parent, std::uint32_t child, trie_unit unit) {
    const int total = matches_below[child] + (unit.has_leaf() ? 1 : 0);
    if (total > max_matches_per_lookup)
      fail("one input can match ", total, " rules, more than SentencePiece's ", max_matches_per_lookup);
    if (total > matches_below[parent]) matches_below[parent] = static_cast<std::uint8_t>(total);
  };
  const std::uint32_t root = units[0].offset();
  if (root >= unit_count) fail("the root's offset ", root, " points outside the trie (", unit_count, " units)");
  std::vector<frame> stack = {{root, 0}};
  seen[root] = state::open;
  while (!stack.empty()) {
    frame& top = stack.back();
    if (top.next_byte == 256) {  // every child done: close the node and fold its count upward
      seen[top.base] = state::closed;
      const std::uint32_t done = top.base;
      stack.pop_back();
      if (!stack.empty()) {
        const std::uint32_t parent = stack.back().base;
        fold(parent, done, units[parent ^ (stack.back().next_byte - 1)]);
      }
      continue;
    }
    const std::uint32_t byte = top.next_byte++;
    const std::uint32_t at = top.base ^ byte;
    if (at >= unit_count) fail("input byte ", byte, " leads to unit ", at, ", outside the trie (", unit_count, " units)");
    const trie_unit unit = units[at];
    if (unit.label() != byte) continue;  // no child for this byte: the lookup stops here
    const std::uint32_t child = at ^ unit.offset();
    if (child >= unit_count) fail("unit ", at, " points to unit ", child, ", outside the trie");
    if (unit.has_leaf()) {
      const std::uint32_t value = units[child].value();
      if (value >= strings.size() || std::memchr(strings.data() + value, '\0', strings.size() - value) == nullptr)
        fail("a rule's replacement at byte ", value, " is not a NUL-terminated string inside the map (",
             strings.size(), " bytes)");
    }
    if (seen[child] == state::open) fail("the trie has a cycle through unit ", child);
    if (seen[child] == state::unseen) {
      seen[child] = state::open;
      stack.push_back({child, 0});  // its count folds into this node when it closes
      continue;
    }
    fold(top.base, child, unit);
  }
}

}  // namespace sentencepiece_detail

// Throws jetmoe::error, starting with `source`, unless every precompiled character map in the
// serialized ModelProto `bytes` is safe to use (see the header comment).
inline void check_sentencepiece_model(std::string_view bytes, std::string_view source) {
  using namespace sentencepiece_detail;
  constexpr std::uint64_t normalizer_spec = 3, denormalizer_spec = 5, precompiled_charsmap = 2;
  wire_reader model(bytes, source);
  while (!model.done()) {
    const auto field = model.next();
    if (!field.delimited || (field.number != normalizer_spec && field.number != denormalizer_spec)) continue;
    const std::string_view spec = field.number == normalizer_spec ? "normalizer_spec" : "denormalizer_spec";
    // Protobuf merges repeated occurrences (the last map wins): checking each covers them all.
    wire_reader fields(field.bytes, source);
    while (!fields.done()) {
      const auto inner = fields.next();
      if (inner.delimited && inner.number == precompiled_charsmap && !inner.bytes.empty())
        check_charsmap(inner.bytes, source, spec);
    }
  }
}

}  // namespace jetmoe::io
