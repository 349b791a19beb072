// jetmoe/routing/grouped_linear.hpp — one linear layer per expert over the plan's sorted rows.
//
// Expert weights are stored (E, out, in), float, bf16 or half; accumulation is fp32. Expert e
// transforms the sorted rows [offsets[e], offsets[e+1]):
//
//   grouped_linear:   y_i = W[e] · x_i                               (N, out)
//   grouped_glu:      u_i = silu(h[:I]) ⊙ h[I:],  h = W[e] · x_i      (N, I), W[e] is (2I, in)
//   grouped_glu_mlp:  z_i = W_out[e] · u_i,  u_i as grouped_glu       (N, H): a whole GLU expert
//
// The input rows come either already in the plan's order (`expert_input::sorted`, e.g. after
// routing::gather) or from any matrix read through an index (`expert_input::indexed`, e.g.
// x (T, H) through plan.sorted_token()): the latter never materialises the full gathered
// copy, only one tile of it at a time. Inputs and outputs have R = plan.max_sorted_rows() rows;
// on a device plan rows N … R−1 are padding, neither read nor written.
//
// Work is cut into tiles of at most `tile_rows` rows of one expert, so the scratch (one tile
// of input, hidden and activated rows) stays bounded whatever T is; each tile is a dense
// ops::linear call.
#pragma once

#include <cstdint>

#include "jetmoe/core/dtype.hpp"
#include "jetmoe/core/view.hpp"
#include "jetmoe/exec/policy.hpp"
#include "jetmoe/routing/buffer.hpp"
#include "jetmoe/routing/plan.hpp"

namespace jetmoe::routing {

template <class Policy>
struct grouped_linear_impl {
  JETMOE_NO_BACKEND("routing::grouped_linear / grouped_glu / grouped_glu_mlp");
};

// Where the experts read their input rows.
struct expert_input {
  tensor_view<const float, 2> rows{};           // (N, in) when sorted, (R, in) when indexed
  tensor_view<const std::int32_t, 1> index{};  // (N) sorted row → row of `rows`
  bool through_index = false;

  static expert_input sorted(tensor_view<const float, 2> sorted_rows) { return {sorted_rows, {}, false}; }
  static expert_input indexed(tensor_view<const float, 2> rows, tensor_view<const std::int32_t, 1> index) {
    return {rows, index, true};
  }
};

// Per-tile scratch, owned by the caller and reused across calls.
template <exec::execution_policy Policy = exec::cpu>
struct expert_scratch {
  index_t tile_rows = 512;  // rows of one expert per dense GEMM; bounds the scratch below
  growable_buffer<float, Policy> input;      // (tile, in)   gathered rows, indexed input only
  growable_buffer<float, Policy> hidden;     // (tile, 2I)
  growable_buffer<float, Policy> activated;  // (tile, I)    grouped_glu_mlp only
};

namespace detail {
template <class Policy, class W>
void check_grouped(const char* who, const routing_plan<Policy>& plan, const expert_input& in,
                   tensor_view<const W, 3> w, index_t out_rows_expected, tensor_view<float, 2> out, index_t out_width) {
  static_assert(floating_dtype<W>, "jetmoe::routing: expert weights must be float, bf16 or half");
  check(plan.is_built(), who, ": the plan has not been built");
  check(w.extent(0) == plan.num_experts(), who, ": weights ", w.extents(), " hold ", w.extent(0),
        " experts, the plan routes to ", plan.num_experts());
  check(in.rows.extent(1) == w.extent(2), who, ": input rows have ", in.rows.extent(1),
        " features, the expert weights ", w.extents(), " expect ", w.extent(2));
  const index_t rows = plan.max_sorted_rows();  // R, the sorted arrays' size (N on a host policy)
  if (in.through_index)
    check(in.index.extent(0) == rows, who, ": the row index has ", in.index.extent(0), " entries for ", rows,
          " sorted rows");
  else
    check(in.rows.extent(0) == rows, who, ": ", in.rows.extent(0), " sorted input rows for ", rows,
          " sorted rows in the plan");
  check_shape(out, make_dims(out_rows_expected, out_width), who);
  check_rows_disjoint(in.rows, 0, who);
  check_rows_disjoint(w, 1, who);
  check_rows_disjoint(out, 0, who);
}
}  // namespace detail

// ys: (R, out) = per-expert x · W[e]ᵀ, with w: (E, out, in).
template <class Policy, class W>
void grouped_linear(const Policy& policy, const routing_plan<Policy>& plan, const expert_input& in,
                    tensor_view<W, 3> w, tensor_view<float, 2> ys, expert_scratch<Policy>& scratch) {
  using V = std::remove_cv_t<W>;
  const tensor_view<const V, 3> weights = w;
  detail::check_grouped("routing::grouped_linear", plan, in, weights, plan.max_sorted_rows(), ys, w.extent(1));
  grouped_linear_impl<Policy>::linear(policy, plan, in, weights, ys, scratch);
}

// u: (R, I) = silu(h[:, :I]) ⊙ h[:, I:] with h = per-expert x · W[e]ᵀ, w: (E, 2I, in).
template <class Policy, class W>
void grouped_glu(const Policy& policy, const routing_plan<Policy>& plan, const expert_input& in, tensor_view<W, 3> w,
                 tensor_view<float, 2> u, expert_scratch<Policy>& scratch) {
  using V = std::remove_cv_t<W>;
  const tensor_view<const V, 3> weights = w;
  check(w.extent(1) % 2 == 0, "routing::grouped_glu: the weights ", w.extents(),
        " must have an even output width (gate half, then up half)");
  detail::check_grouped("routing::grouped_glu", plan, in, weights, plan.max_sorted_rows(), u, w.extent(1) / 2);
  grouped_linear_impl<Policy>::glu(policy, plan, in, weights, u, scratch);
}

// z: (R, H) = per-expert W_out[e] · glu(W_in[e] · x); w_in: (E, 2I, H), w_out: (E, H, I).
template <class Policy, class W>
void grouped_glu_mlp(const Policy& policy, const routing_plan<Policy>& plan, const expert_input& in,
                     tensor_view<W, 3> w_in, tensor_view<W, 3> w_out, tensor_view<float, 2> z,
                     expert_scratch<Policy>& scratch) {
  using V = std::remove_cv_t<W>;
  const tensor_view<const V, 3> weights_in = w_in, weights_out = w_out;
  check(w_in.extent(1) % 2 == 0, "routing::grouped_glu_mlp: input weights ", w_in.extents(),
        " must have an even output width (gate half, then up half)");
  check(w_out.extent(0) == w_in.extent(0) && w_out.extent(2) == w_in.extent(1) / 2, "routing::grouped_glu_mlp: ",
        "output weights ", w_out.extents(), " do not fit input weights ", w_in.extents(), " (expected (E, out, I))");
  detail::check_grouped("routing::grouped_glu_mlp", plan, in, weights_in, plan.max_sorted_rows(), z, w_out.extent(1));
  check_rows_disjoint(weights_out, 1, "routing::grouped_glu_mlp: output weights");
  grouped_linear_impl<Policy>::glu_mlp(policy, plan, in, weights_in, weights_out, z, scratch);
}

}  // namespace jetmoe::routing
