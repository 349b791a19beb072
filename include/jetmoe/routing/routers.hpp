// jetmoe/routing/routers.hpp — every built-in router.
#pragma once

#include "jetmoe/routing/expert_choice.hpp"
#include "jetmoe/routing/noisy_top_k.hpp"
#include "jetmoe/routing/router.hpp"
#include "jetmoe/routing/sigmoid_top_k.hpp"
#include "jetmoe/routing/softmax_top_k.hpp"
#include "jetmoe/routing/switch_top1.hpp"
#include "jetmoe/routing/top_k_softmax.hpp"
