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

// P floats: one register, the unit of the panel kernel and of the few-rows tiles, with its
// 16- and 32-bit integer twins for the widening loads.
typedef float panel_vector __attribute__((vector_size(simd_traits::lanes * sizeof(float))));
typedef std::uint16_t panel_bits16 __attribute__((vector_size(simd_traits::lanes * sizeof(std::uint16_t))));
typedef std::uint32_t panel_bits32 __attribute__((vector_size(simd_traits::lanes * sizeof(std::uint32_t))));

// The helpers take and return vectors by reference: a 64-byte vector passed by value has a
// different calling convention with and without AVX-512, and these inline functions may be
// compiled in translation units with different -march flags (GCC's -Wpsabi).

inline void load_vector(const float* p, panel_vector& v) { std::memcpy(&v, p, sizeof v); }

// simd_traits::lanes consecutive weights as floats, bit-identical to widen_one (widen.hpp)
// element by element.
inline void load_widened(const float* p, panel_vector& v) { load_vector(p, v); }
inline void load_widened(const bf16* p, panel_vector& v) {
  panel_bits16 narrow;
  std::memcpy(&narrow, p, sizeof narrow);
  const panel_bits32 bits = __builtin_convertvector(narrow, panel_bits32) << 16;  // bf16 is a float's top half
  std::memcpy(&v, &bits, sizeof v);
}
// widen.hpp's branch-free half → float, lane by lane (a vector comparison gives all-ones or
// zero lanes, the masks widen_one builds by hand).
inline void load_widened(const half* p, panel_vector& v) {
  panel_bits16 narrow;
  std::memcpy(&narrow, p, sizeof narrow);
  const panel_bits32 h = __builtin_convertvector(narrow, panel_bits32);
  const panel_bits32 sign = (h & 0x8000u) << 16;
  const panel_bits32 magnitude = (h & 0x7FFFu) << 13;
  const panel_bits32 exponent = magnitude & 0x0F800000u;
  const panel_bits32 is_subnormal = (panel_bits32)(exponent == 0u);
  const panel_bits32 is_inf_nan = (panel_bits32)(exponent == 0x0F800000u);
  const panel_bits32 normal = magnitude + 0x38000000u + (is_inf_nan & 0x38000000u);
  // Subnormal: 2^-14·(1 + m/1024) − 2^-14, exact, as in widen_one.
  const panel_bits32 offset_bits = magnitude + 0x38800000u;
  panel_vector offset, subnormal_value;
  std::memcpy(&offset, &offset_bits, sizeof offset);
  subnormal_value = offset - 6.103515625e-05f;  // 2^-14
  panel_bits32 subnormal;
  std::memcpy(&subnormal, &subnormal_value, sizeof subnormal);
  const panel_bits32 bits = sign | (subnormal & is_subnormal) | (normal & ~is_subnormal);
  std::memcpy(&v, &bits, sizeof v);
}

// Pins v in a register. GCC otherwise folds a load into every multiply-add that uses it,
// which costs load slots in load-bound loops.
inline void keep_in_register(panel_vector& v) {
#if defined(__AVX512F__) && !defined(__CUDACC__)
  __asm__("" : "+v"(v));
#elif defined(__AVX__) && !defined(__CUDACC__)
  __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}

}  // namespace jetmoe::ops::cpu_detail

#endif  // __GNUC__
