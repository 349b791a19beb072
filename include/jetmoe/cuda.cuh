// jetmoe/cuda.cuh — umbrella header of the CUDA backend: the exec::cuda policy, the CUDA
// implementations of every op and routing primitive, and (through <jetmoe/jetmoe.hpp>) the
// CPU library they sit next to. Include it from a translation unit that nvcc compiles (.cu);
// switching a call's policy from exec::cpu to exec::cuda then selects these backends.
#pragma once

// Eigen, pulled in by the CPU policy, marks defaulted members __host__ __device__, which nvcc
// reports as ignored (warning 20012) once per member; harmless, and not ours to fix.
#pragma nv_diagnostic push
#pragma nv_diag_suppress 20012
#include "jetmoe/jetmoe.hpp"
#pragma nv_diagnostic pop

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/exec/cuda_graph.cuh"

#include "jetmoe/ops/cuda/activations.cuh"
#include "jetmoe/ops/cuda/attention.cuh"
#include "jetmoe/ops/cuda/elementwise.cuh"
#include "jetmoe/ops/cuda/embedding.cuh"
#include "jetmoe/ops/cuda/linear.cuh"
#include "jetmoe/ops/cuda/rms_norm.cuh"
#include "jetmoe/ops/cuda/rope.cuh"
#include "jetmoe/ops/cuda/softmax.cuh"
#include "jetmoe/ops/cuda/top_k.cuh"

#include "jetmoe/routing/cuda/combine.cuh"
#include "jetmoe/routing/cuda/dispatch.cuh"
#include "jetmoe/routing/cuda/expert_choice.cuh"
#include "jetmoe/routing/cuda/grouped_linear.cuh"
#include "jetmoe/routing/cuda/losses.cuh"
#include "jetmoe/routing/cuda/plan.cuh"
#include "jetmoe/routing/cuda/row_rules.cuh"
