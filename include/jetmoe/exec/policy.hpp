// jetmoe/exec/policy.hpp — what an execution policy is, and how ops are chosen by its type.
//
// An execution policy is a small value (cpu: a thread count; cuda: a stream and a memory
// resource). Every op is a class template `xxx_impl<Policy>` whose primary template fails to
// compile with a readable message; each backend specialises it. The public function
// `ops::xxx(policy, ...)` forwards to `xxx_impl<Policy>::run`, so the backend is chosen by the
// policy's type at compile time and algorithms contain no #ifdef.
#pragma once

#include <concepts>
#include <cstddef>

namespace jetmoe::exec {

// Memory a policy hands out: its tensors are allocated, zeroed and copied through it.
template <class P>
concept execution_policy = requires(const P& p, void* ptr, const void* cptr, std::size_t bytes) {
  { p.allocate(bytes) } -> std::same_as<void*>;
  p.deallocate(ptr, bytes);
  p.fill_zero(ptr, bytes);
  p.copy(ptr, cptr, bytes);  // within the policy's own memory
  { P::is_host } -> std::convertible_to<bool>;
};

// False for every type, but only once instantiated: lets a primary template static_assert.
template <class...>
inline constexpr bool no_backend_for = false;

}  // namespace jetmoe::exec

// Body of every op's primary template.
#define JETMOE_NO_BACKEND(op_name)                                                                         \
  static_assert(::jetmoe::exec::no_backend_for<Policy>,                                                  \
                "jetmoe: " op_name " has no implementation for this execution policy. Include "          \
                "<jetmoe/jetmoe.hpp> for the CPU policy, or <jetmoe/cuda.cuh> (compiled by nvcc) for CUDA.")
