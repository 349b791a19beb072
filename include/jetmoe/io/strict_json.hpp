// jetmoe/io/strict_json.hpp — JSON parsing that refuses duplicate object keys.
//
// nlohmann::json keeps the last of two equal keys without a word. For a safetensors header
// that would silently hide a tensor, and for an index or a config it would hide a conflict,
// so every JSON file the library reads goes through here.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "jetmoe/core/error.hpp"

namespace jetmoe::io {

// Deeper nesting than any file the library reads; a cap keeps hostile input from growing the
// parser's bookkeeping without bound.
inline constexpr int max_json_depth = 64;

// Parses `text`; `source` (usually the file path) starts every error message.
inline nlohmann::json parse_json_strict(std::string_view text, std::string_view source) {
  struct open_object {
    std::string where;  // how a message names this object
    std::set<std::string, std::less<>> keys;
  };
  std::vector<open_object> objects;
  std::string last_key;  // the key whose value is being parsed: names a nested object

  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using event_t = nlohmann::json::parse_event_t;
    if (depth > max_json_depth)
      throw error(jetmoe::detail::concat(source, ": JSON nested deeper than ", max_json_depth, " levels"));
    switch (event) {
      case event_t::object_start:
        objects.push_back({objects.empty() ? std::string("the top-level object") : "object \"" + last_key + "\"", {}});
        break;
      case event_t::object_end: objects.pop_back(); break;
      case event_t::key: {
        last_key = parsed.get<std::string>();
        if (!objects.back().keys.insert(last_key).second)
          throw error(jetmoe::detail::concat(source, ": duplicate key \"", last_key, "\" in ", objects.back().where));
        break;
      }
      default: break;
    }
    return true;
  };

  try {
    return nlohmann::json::parse(text.begin(), text.end(), on_event);
  } catch (const nlohmann::json::exception& e) {
    throw error(jetmoe::detail::concat(source, ": invalid JSON: ", e.what()));
  }
}

// Reads and strictly parses a JSON file; errors name the path.
inline nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), path.string(), ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  check(!in.bad(), path.string(), ": read error");
  return parse_json_strict(text.str(), path.string());
}

}  // namespace jetmoe::io
