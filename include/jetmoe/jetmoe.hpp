// jetmoe/jetmoe.hpp — umbrella header: the tensor core, the CPU execution policy, its ops and
// the generic expert-routing primitives. The JetMoE model is <jetmoe/models/jetmoe.hpp>.
// CUDA users include <jetmoe/cuda.cuh> in addition, from a translation unit nvcc compiles.
#pragma once

#include "jetmoe/config.hpp"
#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/error.hpp"
#include "jetmoe/core/shape.hpp"
#include "jetmoe/core/tensor.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/exec/policy.hpp"

// Ops: the public entry points, then the CPU backend that implements them.
#include "jetmoe/ops/activations.hpp"
#include "jetmoe/ops/attention.hpp"
#include "jetmoe/ops/elementwise.hpp"
#include "jetmoe/ops/embedding.hpp"
#include "jetmoe/ops/linear.hpp"
#include "jetmoe/ops/rms_norm.hpp"
#include "jetmoe/ops/rope.hpp"
#include "jetmoe/ops/softmax.hpp"
#include "jetmoe/ops/top_k.hpp"
#include "jetmoe/ops/cpu/activations.hpp"
#include "jetmoe/ops/cpu/attention.hpp"
#include "jetmoe/ops/cpu/elementwise.hpp"
#include "jetmoe/ops/cpu/embedding.hpp"
#include "jetmoe/ops/cpu/linear.hpp"
#include "jetmoe/ops/cpu/rms_norm.hpp"
#include "jetmoe/ops/cpu/rope.hpp"
#include "jetmoe/ops/cpu/softmax.hpp"
#include "jetmoe/ops/cpu/top_k.hpp"

// Generic expert routing (routers, plan, dispatch, grouped linear, combine, losses, blocks).
#include "jetmoe/routing.hpp"
