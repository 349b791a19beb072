// jetmoe/core/shape.hpp — extents (the size of each dimension) and strides, in elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>

#include "jetmoe/config.hpp"

namespace jetmoe {

using index_t = std::int64_t;

// A fixed-rank list of sizes. Used both for extents and for strides. A plain C array rather
// than std::array keeps it usable in device code without relaxed-constexpr flags.
template <std::size_t Rank>
struct dims {
  static_assert(Rank >= 1, "jetmoe: tensors have rank 1 or more (use a rank-1 tensor of extent 1 for a scalar)");
  index_t value[Rank] = {};

  JETMOE_HD constexpr index_t& operator[](std::size_t d) { return value[d]; }
  JETMOE_HD constexpr const index_t& operator[](std::size_t d) const { return value[d]; }
  JETMOE_HD static constexpr std::size_t size() { return Rank; }

  // Product of all entries: the element count when these are extents.
  JETMOE_HD constexpr index_t product() const {
    index_t total = 1;
    for (std::size_t d = 0; d < Rank; ++d) total *= value[d];
    return total;
  }
  friend constexpr bool operator==(const dims& a, const dims& b) {
    for (std::size_t d = 0; d < Rank; ++d)
      if (a.value[d] != b.value[d]) return false;
    return true;
  }
};

template <class... I>
constexpr dims<sizeof...(I)> make_dims(I... sizes) {
  return dims<sizeof...(I)>{{static_cast<index_t>(sizes)...}};
}

// Row-major (last dimension fastest) strides for the given extents.
template <std::size_t Rank>
JETMOE_HD constexpr dims<Rank> row_major_strides(const dims<Rank>& extents) {
  dims<Rank> strides;
  index_t running = 1;
  for (std::size_t d = Rank; d-- > 0;) {
    strides[d] = running;
    running *= extents[d];
  }
  return strides;
}

template <std::size_t Rank>
std::ostream& operator<<(std::ostream& out, const dims<Rank>& d) {
  out << '[';
  for (std::size_t i = 0; i < Rank; ++i) out << (i ? "," : "") << d[i];
  return out << ']';
}

}  // namespace jetmoe
