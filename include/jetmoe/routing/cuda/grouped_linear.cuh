// jetmoe/routing/cuda/grouped_linear.cuh — CUDA backend of the grouped expert linears.
//
// One launch covers every expert: the kernels find their (expert, row tile) from the plan's
// offsets on the device, read input rows through the plan's index (the gather is fused into
// the operand loads; no (N, in) copy is made) and, for GLU, write silu(gate) ⊙ up straight
// from the accumulators. Decoding (at most 8 rows per expert) takes the weight-streaming GEMV
// kernel. Without reading the counts, the host bounds an expert's rows by min(R, T, capacity):
// the built-in routers name an expert at most once per token, so at T ≤ 8 every E and k
// qualify (fine-grained E = 128, k = 8 decodes 16 sorted rows at batch 2). A router that
// repeats an expert within a token is still served correctly, by the GEMV's extra passes.
//
// grouped_glu_mlp runs the sorted rows in windows of `mlp_window_rows`, so its (window, I)
// intermediate — the only scratch — stays bounded whatever T is (about 92 MB at I = 5632).
// Each window is two launches: GLU into the scratch, then the output projection from it.
#pragma once

#include <algorithm>
#include <cstdint>

#include "jetmoe/exec/cuda.cuh"
#include "jetmoe/kernels/gemm.cuh"
#include "jetmoe/ops/cuda/launch.cuh"
#include "jetmoe/ops/cuda/linear.cuh"
#include "jetmoe/routing/grouped_linear.hpp"

namespace jetmoe::routing {

template <>
struct grouped_linear_impl<exec::cuda> {
  using policy_type = exec::cuda;
  using plan_type = routing_plan<exec::cuda>;
  using scratch_type = expert_scratch<exec::cuda>;

  static constexpr index_t mlp_window_rows = 4096;

  template <class W>
  static void linear(const policy_type& policy, const plan_type& plan, const expert_input& in,
                     tensor_view<const W, 3> w, tensor_view<float, 2> ys, scratch_type& /*scratch*/) {
    ops::cuda_detail::check_operands(policy, "routing::grouped_linear", {{"the output", ys}});
    kernels::gemm_args<W> a = args_for(policy, plan, in, w, w.extent(1));
    a.y = ys.data();
    a.ldy = ops::cuda_detail::row_pitch(ys, 0);
    check(ys.extent(1) <= 1 || ys.stride(1) == 1, "routing::grouped_linear: rows of the output must be contiguous");
    ops::cuda_detail::launch_row_gemm(policy, a, false, rows_per_expert_at_most(plan, plan.max_sorted_rows()));
  }

  template <class W>
  static void glu(const policy_type& policy, const plan_type& plan, const expert_input& in, tensor_view<const W, 3> w,
                  tensor_view<float, 2> u, scratch_type& /*scratch*/) {
    ops::cuda_detail::check_operands(policy, "routing::grouped_glu", {{"the output", u}});
    kernels::gemm_args<W> a = args_for(policy, plan, in, w, w.extent(1) / 2);
    a.y = u.data();
    a.ldy = ops::cuda_detail::row_pitch(u, 0);
    check(u.extent(1) <= 1 || u.stride(1) == 1, "routing::grouped_glu: rows of the output must be contiguous");
    ops::cuda_detail::launch_row_gemm(policy, a, true, rows_per_expert_at_most(plan, plan.max_sorted_rows()));
  }

  template <class W>
  static void glu_mlp(const policy_type& policy, const plan_type& plan, const expert_input& in,
                      tensor_view<const W, 3> w_in, tensor_view<const W, 3> w_out, tensor_view<float, 2> z,
                      scratch_type& scratch) {
    ops::cuda_detail::check_operands(policy, "routing::grouped_glu_mlp",
                                      {{"the output projection's weights", w_out}, {"the output", z}});
    check(z.extent(1) <= 1 || z.stride(1) == 1, "routing::grouped_glu_mlp: rows of the output must be contiguous");
    const index_t rows = plan.max_sorted_rows(), inner = w_out.extent(2);  // R (N on the device), I
    if (rows == 0 || z.extent(1) == 0) return;
    const index_t window = std::min(rows, mlp_window_rows);
    const tensor_view<float, 2> activated = scratch.activated.matrix(policy, window, inner);  // (window, I)

    kernels::gemm_args<W> up = args_for(policy, plan, in, w_in, inner);
    up.y = activated.data();
    up.ldy = inner;

    // The output projection reads the window's activations in sorted order (no index).
    kernels::gemm_args<W> down;
    down.x = activated.data();
    down.ldx = inner;
    down.offsets = plan.offsets().data();
    down.segments = static_cast<int>(plan.num_experts());
    down.rows = rows;
    down.w = w_out.data();
    down.w_expert_stride = w_out.stride(0);
    down.w_row_stride = ops::cuda_detail::row_pitch(w_out, 1);
    down.k = inner;
    down.out = w_out.extent(1);
    down.y = z.data();
    down.ldy = ops::cuda_detail::row_pitch(z, 0);
    check(w_out.extent(2) <= 1 || w_out.stride(2) == 1, "routing::grouped_glu_mlp: weight rows must be contiguous");

    for (index_t first = 0; first < rows; first += window) {
      const index_t last = std::min(rows, first + window);
      up.row_begin = down.row_begin = first;
      up.row_end = down.row_end = last;
      up.y_row_offset = first;    // activated row = sorted row − first
      down.x_row_offset = first;  // ... and read back the same way
      const index_t per_expert = rows_per_expert_at_most(plan, last - first);
      ops::cuda_detail::launch_row_gemm(policy, up, true, per_expert);
      ops::cuda_detail::launch_row_gemm(policy, down, false, per_expert);
    }
  }

 private:
  // The most sorted rows one expert gets within `window` rows, as the host can bound it: one per
  // token (see the top of this file), and never more than the plan's capacity, so
  // min(window, T, capacity). It picks the kernel, nothing more.
  static index_t rows_per_expert_at_most(const plan_type& plan, index_t window) {
    return std::min({window, plan.num_tokens(), plan.capacity().per_expert});
  }

  // Arguments shared by every grouped call: input rows (sorted or through the index), the
  // plan's offsets as segments, the weights. The output is the caller's to fill in.
  template <class W>
  static kernels::gemm_args<W> args_for(const policy_type& policy, const plan_type& plan, const expert_input& in,
                                        tensor_view<const W, 3> w, index_t out) {
    ops::cuda_detail::check_operands(policy, "routing: grouped expert linear",
                                      {{"the expert input rows", in.rows},
                                       {"the row index", in.through_index ? in.index : decltype(in.index){}},
                                       {"the expert weights", w}});
    check(in.rows.extent(1) <= 1 || in.rows.stride(1) == 1, "routing: rows of the expert input must be contiguous");
    check(w.extent(2) <= 1 || w.stride(2) == 1, "routing: rows of the expert weights must be contiguous");
    check(!in.through_index || in.index.extent(0) <= 1 || in.index.stride(0) == 1,
          "routing: the row index must be contiguous");
    kernels::gemm_args<W> a;
    a.x = in.rows.data();
    a.ldx = ops::cuda_detail::row_pitch(in.rows, 0);
    a.index = in.through_index ? in.index.data() : nullptr;
    a.x_rows = in.rows.extent(0);
    a.status = policy.status();
    a.offsets = plan.offsets().data();
    a.segments = static_cast<int>(plan.num_experts());
    a.rows = plan.max_sorted_rows();
    a.row_begin = 0;
    a.row_end = plan.max_sorted_rows();
    a.w = w.data();
    a.w_expert_stride = w.stride(0);
    a.w_row_stride = ops::cuda_detail::row_pitch(w, 1);
    a.k = w.extent(2);
    a.out = out;
    return a;
  }
};

}  // namespace jetmoe::routing
