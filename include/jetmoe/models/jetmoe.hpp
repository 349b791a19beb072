// jetmoe/models/jetmoe.hpp — the JetMoE model family: config, weights, decoder, causal LM,
// sequence classification, plus generation. Pulls in the CPU backend of everything it uses.
#pragma once

#include "jetmoe/jetmoe.hpp"
#include "jetmoe/io/checkpoint.hpp"
#include "jetmoe/io/safetensors.hpp"
#include "jetmoe/generation/generate.hpp"
#include "jetmoe/generation/kv_cache.hpp"
#include "jetmoe/generation/sampler.hpp"
#include "jetmoe/models/jetmoe/causal_lm.hpp"
#include "jetmoe/models/jetmoe/config.hpp"
#include "jetmoe/models/jetmoe/model.hpp"
#include "jetmoe/models/jetmoe/sequence_classification.hpp"
#include "jetmoe/models/jetmoe/weights.hpp"
