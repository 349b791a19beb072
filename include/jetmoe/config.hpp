// jetmoe/config.hpp — version and the one portability macro the library needs.
#pragma once

#define JETMOE_VERSION_MAJOR 0
#define JETMOE_VERSION_MINOR 1
#define JETMOE_VERSION_PATCH 0

// JETMOE_HD marks small functions (dtype conversions, view indexing) that must be callable
// from both host and CUDA device code. Under a host compiler it expands to nothing.
#if defined(__CUDACC__)
#define JETMOE_HD __host__ __device__
#else
#define JETMOE_HD
#endif
