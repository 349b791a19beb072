// jetmoe/routing/workspace.hpp — everything a routed block needs between and within calls.
//
// One workspace serves any number of blocks run one after another (e.g. every layer of a
// model): the arrays grow to the largest call and are then reused, so steady-state
// generation allocates nothing. The plan inside stays valid until the next block that uses
// this workspace routes again — long enough for a mixture-of-attention map → attention →
// reduce sequence.
#pragma once

#include <cstddef>

#include "jetmoe/exec/cpu.hpp"
#include "jetmoe/routing/buffer.hpp"
#include "jetmoe/routing/grouped_linear.hpp"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <exec::execution_policy Policy = exec::cpu>
struct routing_workspace {
  routing_plan<Policy> plan;
  expert_scratch<Policy> experts;             // per-tile scratch of the grouped linears
  growable_buffer<float, Policy> logits;      // (T, E) when the caller keeps no router logits
  growable_buffer<float, Policy> gathered;    // (N, H) only for expert_input_path::gathered
  growable_buffer<float, Policy> expert_out;  // (N, out) expert outputs before combine

  // Scratch currently held (the plan's small index arrays not counted).
  std::size_t scratch_bytes() const {
    return experts.input.bytes() + experts.hidden.bytes() + experts.activated.bytes() + logits.bytes() +
           gathered.bytes() + expert_out.bytes();
  }
};

// How the MoE block feeds token rows to its experts.
enum class expert_input_path {
  indexed,   // read x through the plan's index, one tile at a time (default: as fast, far less memory)
  gathered,  // gather all N rows into one (N, H) copy first, then read it in order
};

}  // namespace jetmoe::routing
