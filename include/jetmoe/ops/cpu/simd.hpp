// jetmoe/ops/cpu/simd.hpp — GCC/Clang vector-extension types for the register-blocked CPU
// kernels (ops/cpu/linear_*.hpp), and loads that widen bf16/half straight into registers.
//
// The types are plain `vector_size` vectors, so the compiler picks the instructions for the
// build's ISA (AVX-512, AVX2, SSE, NEON). Compilers without vector extensions do not define
// JETMOE_CPU_VECTORS and the kernels fall back to portable Eigen code.
#pragma once

#if defined(__GNUC__)  // GCC and Clang
#define JETMOE_CPU_VECTORS 1

#include <Eigen/Core>
#include <cstdint>
#include <cstring>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/ops/cpu/dot.hpp"

// Full unrolling of a kernel's fixed-size register loops, so their accumulators stay in
// registers. nvcc's front end, which sees these headers in CUDA translation units (their CPU
// results are the GPU tests' references), does not know the pragma.
#if defined(__CUDACC__)
#define JETMOE_CPU_UNROLL
#else
#define JETMOE_CPU_UNROLL _Pragma("GCC unroll 32")
#endif

namespace jetmoe::ops::cpu_detail {

struct simd_traits {
  static constexpr int lanes = Eigen::internal::packet_traits<float>::size;  // floats per register
  static constexpr int registers = lanes >= 16 ? 32 : 16;                   // vector registers (AVX-512: 32)
};

// P floats: one register (the panel kernel's unit).
typedef float panel_vector __attribute__((vector_size(simd_traits::lanes * sizeof(float))));

// 16 floats: dot.hpp's 16 lanes, one AVX-512 register or several narrower ones. A kernel that
// accumulates in dot_vectors and folds them with fold() sums in dot()'s order. Accumulate in
// them only where one is a register: with AVX2 or SSE GCC keeps such accumulators in memory
// (see few_rows_register_tiles in linear_few_rows.hpp).
typedef float dot_vector __attribute__((vector_size(dot_lanes * sizeof(float))));
typedef std::uint16_t dot_bits16 __attribute__((vector_size(dot_lanes * sizeof(std::uint16_t))));
typedef std::uint32_t dot_bits32 __attribute__((vector_size(dot_lanes * sizeof(std::uint32_t))));

// The helpers take and return vectors by reference: a 64-byte vector passed by value has a
// different calling convention with and without AVX-512, and these inline functions may be
// compiled in translation units with different -march flags (GCC's -Wpsabi).

template <class Vector>
inline void load_vector(const float* p, Vector& v) {
  std::memcpy(&v, p, sizeof v);
}

// 16 consecutive weights as floats, bit-identical to widen_one (widen.hpp) element by element.
inline void load_widened(const float* p, dot_vector& v) { load_vector(p, v); }
inline void load_widened(const bf16* p, dot_vector& v) {
  dot_bits16 narrow;
  std::memcpy(&narrow, p, sizeof narrow);
  const dot_bits32 bits = __builtin_convertvector(narrow, dot_bits32) << 16;  // bf16 is a float's top half
  std::memcpy(&v, &bits, sizeof v);
}
// widen.hpp's branch-free half → float, lane by lane (a vector comparison gives all-ones or
// zero lanes, the masks widen_one builds by hand).
inline void load_widened(const half* p, dot_vector& v) {
  dot_bits16 narrow;
  std::memcpy(&narrow, p, sizeof narrow);
  const dot_bits32 h = __builtin_convertvector(narrow, dot_bits32);
  const dot_bits32 sign = (h & 0x8000u) << 16;
  const dot_bits32 magnitude = (h & 0x7FFFu) << 13;
  const dot_bits32 exponent = magnitude & 0x0F800000u;
  const dot_bits32 is_subnormal = (dot_bits32)(exponent == 0u);
  const dot_bits32 is_inf_nan = (dot_bits32)(exponent == 0x0F800000u);
  const dot_bits32 normal = magnitude + 0x38000000u + (is_inf_nan & 0x38000000u);
  // Subnormal: 2^-14·(1 + m/1024) − 2^-14, exact, as in widen_one.
  const dot_bits32 offset_bits = magnitude + 0x38800000u;
  dot_vector offset, subnormal_value;
  std::memcpy(&offset, &offset_bits, sizeof offset);
  subnormal_value = offset - 6.103515625e-05f;  // 2^-14
  dot_bits32 subnormal;
  std::memcpy(&subnormal, &subnormal_value, sizeof subnormal);
  const dot_bits32 bits = sign | (subnormal & is_subnormal) | (normal & ~is_subnormal);
  std::memcpy(&v, &bits, sizeof v);
}

// Pins v in a register. Where a dot_vector is one register (AVX-512), GCC otherwise folds a
// load into every multiply-add that uses it, which costs load slots in load-bound loops.
inline void keep_in_register(dot_vector& v) {
#if defined(__AVX512F__) && !defined(__CUDACC__)
  __asm__("" : "+v"(v));
#else
  (void)v;
#endif
}

// dot.hpp's fold_lanes for a dot_vector (the same function, so the same order).
inline float fold(const dot_vector& lanes) {
  dot_lane_array lane;
  std::memcpy(lane.data(), &lanes, sizeof lanes);
  return fold_lanes(lane);
}

}  // namespace jetmoe::ops::cpu_detail

#endif  // __GNUC__
