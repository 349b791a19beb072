// jetmoe/routing.hpp — umbrella header for generic expert routing: routers, the routing plan,
// dispatch, grouped expert linears, combine, auxiliary losses, and the MoE MLP and
// mixture-of-attention blocks, with their CPU backend.
#pragma once

#include "jetmoe/routing/buffer.hpp"
#include "jetmoe/routing/capacity.hpp"
#include "jetmoe/routing/combine.hpp"
#include "jetmoe/routing/dispatch.hpp"
#include "jetmoe/routing/grouped_linear.hpp"
#include "jetmoe/routing/losses.hpp"
#include "jetmoe/routing/mixture_of_attention.hpp"
#include "jetmoe/routing/moe_mlp.hpp"
#include "jetmoe/routing/plan.hpp"
#include "jetmoe/routing/routers.hpp"
#include "jetmoe/routing/row_rules.hpp"
#include "jetmoe/routing/workspace.hpp"

// CPU backend (the ops it builds on come with it).
#include "jetmoe/routing/cpu/combine.hpp"
#include "jetmoe/routing/cpu/dispatch.hpp"
#include "jetmoe/routing/cpu/expert_choice.hpp"
#include "jetmoe/routing/cpu/grouped_linear.hpp"
#include "jetmoe/routing/cpu/losses.hpp"
#include "jetmoe/routing/cpu/plan.hpp"
#include "jetmoe/routing/cpu/row_rules.hpp"
