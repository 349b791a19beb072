// jetmoe/core/tensor.hpp — tensor: owns memory allocated through an execution policy.
//
// Move-only. `view()` hands out a tensor_view for ops to read and write; the tensor keeps the
// memory alive. Elements start uninitialised unless `zeros` is used.
#pragma once

#include <cstddef>
#include <limits>
#include <utility>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/exec/policy.hpp"

namespace jetmoe {

template <class T, std::size_t Rank, exec::execution_policy Policy = exec::cpu>
class tensor {
  static_assert(std::is_trivially_copyable_v<T>, "jetmoe::tensor: elements must be trivially copyable");

 public:
  using element_type = T;
  using policy_type = Policy;
  static constexpr std::size_t rank = Rank;

  tensor() = default;
  tensor(const Policy& policy, const dims<Rank>& extents) : policy_(policy), extents_(extents) {
    // The element and byte counts must fit before anything is allocated: a product that wraps
    // would allocate a small block and let every later index run past it.
    index_t elements = 1;
    for (std::size_t d = 0; d < Rank; ++d) {
      check(extents[d] >= 0, "jetmoe::tensor: negative extent in ", extents);
      check(extents[d] == 0 || elements <= max_elements / extents[d], "jetmoe::tensor: ", extents,
            " has more elements than memory can address");
      elements *= extents[d];
    }
    data_ = static_cast<T*>(policy_.allocate(bytes()));
  }
  explicit tensor(const dims<Rank>& extents) requires Policy::is_host : tensor(Policy{}, extents) {}

  static tensor zeros(const Policy& policy, const dims<Rank>& extents) {
    tensor t(policy, extents);
    t.policy_.fill_zero(t.data_, t.bytes());
    return t;
  }
  static tensor zeros(const dims<Rank>& extents) requires Policy::is_host { return zeros(Policy{}, extents); }

  tensor(tensor&& other) noexcept
      : policy_(other.policy_), data_(std::exchange(other.data_, nullptr)), extents_(std::exchange(other.extents_, {})) {}
  tensor& operator=(tensor&& other) noexcept {
    if (this != &other) {
      release();
      policy_ = other.policy_;
      data_ = std::exchange(other.data_, nullptr);
      extents_ = std::exchange(other.extents_, {});
    }
    return *this;
  }
  tensor(const tensor&) = delete;
  tensor& operator=(const tensor&) = delete;
  ~tensor() { release(); }

  // A deep copy, through the policy.
  tensor clone() const {
    tensor out(policy_, extents_);
    policy_.copy(out.data_, data_, bytes());
    return out;
  }

  tensor_view<T, Rank> view() { return {data_, extents_}; }
  tensor_view<const T, Rank> view() const { return {data_, extents_}; }
  operator tensor_view<T, Rank>() { return view(); }              // NOLINT: implicit on purpose
  operator tensor_view<const T, Rank>() const { return view(); }  // NOLINT

  T* data() { return data_; }
  const T* data() const { return data_; }
  const dims<Rank>& extents() const { return extents_; }
  index_t extent(std::size_t d) const { return extents_[d]; }
  index_t size() const { return extents_.product(); }
  std::size_t bytes() const { return static_cast<std::size_t>(size()) * sizeof(T); }
  const Policy& policy() const { return policy_; }

  template <class... I>
  T& operator()(I... index) requires Policy::is_host { return view()(index...); }
  template <class... I>
  const T& operator()(I... index) const requires Policy::is_host { return view()(index...); }

 private:
  static constexpr index_t max_elements = std::numeric_limits<index_t>::max() / static_cast<index_t>(sizeof(T));

  void release() {
    if (data_) policy_.deallocate(data_, bytes());
    data_ = nullptr;
  }

  Policy policy_{};
  T* data_ = nullptr;
  dims<Rank> extents_{};
};

}  // namespace jetmoe
