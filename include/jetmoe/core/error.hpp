// jetmoe/core/error.hpp — the library's exception type and its check helper.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace jetmoe {

// Every error the library reports on bad input (shapes, files, configs, token ids) is a
// jetmoe::error whose message says what was wrong and where.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
[[nodiscard]] std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

// Throws jetmoe::error built from the streamed parts when `condition` is false.
template <class... Parts>
void check(bool condition, Parts&&... parts) {
  if (!condition) throw error(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace jetmoe
