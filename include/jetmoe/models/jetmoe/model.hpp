// jetmoe/models/jetmoe/model.hpp — the JetMoE decoder: embeddings, L layers of
// mixture-of-attention + mixture-of-MLP-experts, final norm.
//
//   x   = embed(ids)
//   per layer:  h = x + MoA(rms_norm(x, eps = 1e-6))       (per-layer norms always use 1e-6)
//               x = h + MoE(rms_norm(h, eps = 1e-6))
//   out = rms_norm(x, config.rms_norm_eps)
//
// MoA: the router picks S experts per token (S = k for top-k routers); expert e_s projects the
// token to its Dq = Hkv·D query values; the S·Hkv query heads (head j = s·Hkv + h) attend over
// the shared keys/values from kv_proj, query head j reading kv head j mod Hkv, with NeoX RoPE;
// expert e_s projects its heads' output back and the gates weight the sum.
//
// The model is a template over the weight storage type W, the router (any routing::router,
// JetMoE's top-k-then-softmax by default) and the execution policy: swap the router type and
// every MoA and MoE block of the model follows. Inputs (ids, masks) and results (logits, the
// trace) are host memory whatever the policy; weights, activations and the KV cache live where
// the policy computes, and the model moves data across through exec's transfer calls.
//
// A forward pass is two halves. The host half checks the inputs and stages them (ids,
// positions, the cache's mask and end position) into the policy's memory. The queued half —
// every layer — reads only buffers, never a host-side length: the cache is addressed through
// its end position on the device (ops::copy_to_positions, ops::attention's key_count). So a
// one-token step with no trace is the same queued work at every length, and a policy that can
// record work (exec::recorded_work; exec::cuda records a CUDA graph) records it once per batch
// and cache (at the second such step) and replays it for every later token. Any other forward
// drops the recording, since it may move the buffers the recording uses.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "jetmoe/core/tensor.hpp"
#include "jetmoe/exec/graph.hpp"
#include "jetmoe/exec/transfer.hpp"
#include "jetmoe/generation/kv_cache.hpp"
#include "jetmoe/io/checkpoint.hpp"
#include "jetmoe/models/jetmoe/config.hpp"
#include "jetmoe/models/jetmoe/weights.hpp"
#include "jetmoe/ops/attention.hpp"
#include "jetmoe/ops/elementwise.hpp"
#include "jetmoe/ops/embedding.hpp"
#include "jetmoe/ops/linear.hpp"
#include "jetmoe/ops/rms_norm.hpp"
#include "jetmoe/ops/rope.hpp"
#include "jetmoe/ops/top_k.hpp"
#include "jetmoe/routing/buffer.hpp"
#include "jetmoe/routing/mixture_of_attention.hpp"
#include "jetmoe/routing/moe_mlp.hpp"
#include "jetmoe/routing/top_k_softmax.hpp"
#include "jetmoe/routing/workspace.hpp"

namespace jetmoe::models::jetmoe {

// The eps of the two norms inside every layer: JetMoE hard-codes it, whatever rms_norm_eps says.
inline constexpr float layer_norm_eps = 1e-6f;

// What a forward pass records besides its output, when asked. Host tensors.
struct forward_trace {
  bool keep_hidden_states = false;
  bool keep_router_logits = false;
  bool keep_expert_counts = false;

  std::vector<tensor<float, 2>> hidden_states;            // L+1 × (B·T, H): embeddings, after each layer but
                                                          // the last, and the final norm's output
  std::vector<tensor<float, 2>> attention_router_logits;  // L × (B·T, E)
  std::vector<tensor<float, 2>> mlp_router_logits;        // L × (B·T, E)
  std::vector<std::vector<std::int32_t>> attention_expert_counts;  // L × (E): slots each expert served
  std::vector<std::vector<std::int32_t>> mlp_expert_counts;        // L × (E)

  void clear() {
    hidden_states.clear();
    attention_router_logits.clear();
    mlp_router_logits.clear();
    attention_expert_counts.clear();
    mlp_expert_counts.clear();
  }
};

template <class W = float, class Router = routing::top_k_then_softmax, exec::execution_policy Policy = exec::cpu>
class model {
 public:
  using weight_type = W;
  using router_type = Router;
  using policy_type = Policy;
  using cache_type = generation::kv_cache<Policy>;

  // `params` must already be where the policy computes (place_weights puts them there).
  model(config cfg, weights<W, Policy> params, const Policy& policy = {}, Router router = {})
      : config_(std::move(cfg)), weights_(std::move(params)), policy_(policy) {
    config_.validate("jetmoe::model");
    check(static_cast<std::int64_t>(weights_.layers.size()) == config_.num_layers, "jetmoe::model: ",
          weights_.layers.size(), " layers of weights for num_layers = ", config_.num_layers);
    attention_.router = router;
    attention_.top_k = config_.top_k;
    mlp_.router = router;
    mlp_.top_k = config_.top_k;
  }

  // Loads config.json and the weights (single file or sharded) from a Hugging Face model folder,
  // then places them where the policy computes (a device policy: one upload).
  static model load(const std::filesystem::path& directory, const Policy& policy = {},
                    io::checkpoint_progress_callback on_progress = {}, Router router = {}) {
    config cfg = load_config(directory / "config.json");
    const io::checkpoint ckpt = io::checkpoint::open(directory, std::move(on_progress));
    weights<W, Policy> params = place_weights(policy, load_weights<W>(ckpt, cfg), cfg);
    return model(std::move(cfg), std::move(params), policy, router);
  }

  const config& cfg() const { return config_; }
  const weights<W, Policy>& params() const { return weights_; }
  const Policy& policy() const { return policy_; }
  index_t vocab_size() const { return config_.vocab_size; }
  index_t context_length() const { return config_.max_position_embeddings; }
  // S: query slots per token (k for top-k routers), so the attention has S·Hkv query heads.
  index_t slots() const { return attention_.slots(config_.num_experts); }

  // Whether one-token steps are recorded and replayed (on by default; no effect where the
  // policy records nothing, as on the CPU). Off: every step is queued kernel by kernel.
  void set_step_recording(bool on) {
    record_steps_ = on;
    if (!on) step_.forget();
  }
  bool step_recording() const { return record_steps_; }
  // Whether a recorded step is held now (on exec::cuda: from the second one-token step of a
  // batch and cache on, until another kind of forward).
  bool has_recorded_step() const { return step_.has_recording(); }
  // Why recording a step failed, if it did (the steps then run unrecorded); empty otherwise.
  const std::string& step_recording_failure() const { return step_.failure(); }

  // A KV cache for `batch` rows of up to `capacity` positions (default: the context length).
  cache_type make_cache(index_t batch, index_t capacity = 0) const {
    if (capacity == 0) capacity = config_.max_position_embeddings;
    check(capacity <= config_.max_position_embeddings, "jetmoe::model: a cache of ", capacity,
          " positions exceeds the context length max_position_embeddings = ", config_.max_position_embeddings);
    return cache_type(policy_, static_cast<int>(config_.num_layers), batch, config_.num_kv_heads, capacity,
                      config_.kv_channels);
  }

  // Runs the decoder over T new tokens per row, appending their keys/values to `cache`, and
  // returns the final-normed hidden states (B·T, H) in the policy's memory, valid until the
  // next call.
  //   input_ids: (B, T) int64 host memory, each in [0, V).
  //   real:      (B, T) host memory, 1 = token, 0 = padding (never attended to); empty = all tokens.
  // New tokens sit at positions cache.length() … cache.length() + T − 1.
  tensor_view<const float, 2> forward(tensor_view<const std::int64_t, 2> input_ids, tensor_view<const std::uint8_t, 2> real,
                                      cache_type& cache, forward_trace* trace = nullptr) {
    const index_t B = input_ids.extent(0), T = input_ids.extent(1), N = B * T, H = config_.hidden_size;
    check(B > 0 && T > 0, "jetmoe::model::forward: empty input ", input_ids.extents());
    check(input_ids.is_contiguous(), "jetmoe::model::forward: input_ids must be contiguous");
    // Checked here, on the host, for every policy: a device would only report a bad id at its
    // next synchronisation, after the work of the whole step was queued.
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t)
        check(0 <= input_ids(b, t) && input_ids(b, t) < config_.vocab_size, "jetmoe::model::forward: token id ",
              input_ids(b, t), " at row ", b, ", position ", t, " is outside the vocabulary [0, ", config_.vocab_size, ")");
    check(cache.batch() == B && cache.layers() == config_.num_layers, "jetmoe::model::forward: the cache holds ",
          cache.batch(), " rows and ", cache.layers(), " layers; the input has ", B, " rows and the model ",
          config_.num_layers, " layers");
    if constexpr (requires { policy_.stream(); })  // a queued policy: the cache's writes must be ordered before the layers
      check(cache.policy().stream() == policy_.stream(), "jetmoe::model::forward: the cache queues its work on another ",
            "stream than the model; make it with model::make_cache");
    check(cache.length() + T <= config_.max_position_embeddings, "jetmoe::model::forward: ", cache.length(),
          " cached + ", T, " new positions exceed the context length max_position_embeddings = ",
          config_.max_position_embeddings);
    if (real.data() == nullptr) {
      std::vector<std::uint8_t>& ones = all_real_;
      ones.assign(static_cast<std::size_t>(N), 1);
      real = make_view<const std::uint8_t>(ones.data(), B, T);
    }
    check_shape(real, make_dims(B, T), "jetmoe::model::forward: attention mask (B, T)");
    const index_t past = cache.length();
    cache.reserve_positions(T, real);  // also stages the step's end position, past + T

    positions_.resize(static_cast<std::size_t>(N));
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) positions_[static_cast<std::size_t>(b * T + t)] = past + t;
    // Where the ops read them: the host views themselves on the CPU, device copies otherwise.
    const auto positions = staged(policy_, make_view<const std::int64_t>(positions_.data(), N), device_positions_);  // (B·T)
    const auto ids = staged(policy_, input_ids.reshape(make_dims(N)), device_ids_);  // (B·T)
    const tensor_view<float, 2> out = final_.matrix(policy_, N, H);  // (B·T, H)

    if (trace) trace->clear();
    const auto queue_layers = [&] { run_layers(ids, positions, B, T, cache, out, trace); };
    if (record_steps_ && T == 1 && trace == nullptr) {
      // Same batch, same cache (and so the same capacity), same buffers: the same queued work.
      step_.run(policy_, exec::recording_key{static_cast<std::uint64_t>(B), cache.serial(), 0, 0}, queue_layers);
    } else {
      step_.forget();  // this call may grow (move) buffers that a recording points into
      queue_layers();
    }
    cache.commit_positions(T);
    return out;
  }

  // Convenience: a whole sequence batch without a cache kept afterwards.
  tensor_view<const float, 2> forward(tensor_view<const std::int64_t, 2> input_ids,
                                      tensor_view<const std::uint8_t, 2> real = {}, forward_trace* trace = nullptr) {
    scratch_cache_ = make_cache(input_ids.extent(0), std::max<index_t>(input_ids.extent(1), 1));
    return forward(input_ids, real, scratch_cache_, trace);
  }

  // logits (rows, V) = hidden (rows, H) · W_lmᵀ, all in the policy's memory.
  void logits(tensor_view<const float, 2> hidden, tensor_view<float, 2> out) const {
    ops::linear(policy_, hidden, weights_.output_embedding(), out);
  }

  // The same into host memory: straight there on the CPU, through a policy buffer elsewhere.
  //   hidden: (rows, H) policy memory, e.g. forward's result;  out: (rows, V) host.
  void logits_to_host(tensor_view<const float, 2> hidden, tensor_view<float, 2> out) {
    if constexpr (Policy::is_host) {
      logits(hidden, out);
    } else {
      const tensor_view<float, 2> computed = logits_.matrix(policy_, out.extent(0), out.extent(1));  // (rows, V)
      logits(hidden, computed);
      copy_to_host(policy_, tensor_view<const float, 2>(computed), out);
    }
  }

  // Logits of each row's last position, into host memory: what a generation step samples from.
  //   hidden: (B·T, H) forward's result for (B, T) tokens;  out: (B, V) host.
  void last_position_logits(tensor_view<const float, 2> hidden, index_t T, tensor_view<float, 2> out) {
    logits_to_host(last_positions(hidden, T, out.extent(0), "jetmoe::model::last_position_logits"), out);
  }

  // The k most likely tokens of each row's last position, into host memory, selected where the
  // policy computes (ops::top_k: values descending, equal values by lower id): all a greedy or
  // top-k sampler needs (generation::sampler::next_from_candidates), without the (B, V) logits.
  //   hidden: (B·T, H) forward's result;  values: (B, k) host;  ids: (B, k) host, 1 ≤ k ≤ V.
  void last_position_top_k(tensor_view<const float, 2> hidden, index_t T, tensor_view<float, 2> values,
                           tensor_view<std::int32_t, 2> ids) {
    const index_t B = values.extent(0), k = values.extent(1), V = config_.vocab_size;
    check_shape(ids, values.extents(), "jetmoe::model::last_position_top_k: ids (B, k)");
    const tensor_view<const float, 2> last = last_positions(hidden, T, B, "jetmoe::model::last_position_top_k");
    const tensor_view<float, 2> computed = logits_.matrix(policy_, B, V);  // (B, V)
    logits(last, computed);
    if constexpr (Policy::is_host) {
      ops::top_k(policy_, tensor_view<const float, 2>(computed), values, ids);  // straight into the host views
    } else {
      // One transfer, so one wait for the stream per step: the ids and the values' bits side by
      // side in one buffer of 4-byte words (device memory has no type; the host reads the
      // values back with bit_cast).
      const tensor_view<std::int32_t, 3> both = top_ids_.cube(policy_, 2, B, k);  // (2, B, k) ids, value bits
      const tensor_view<std::int32_t, 2> top_ids(both.data(), make_dims(B, k));                // (B, k)
      const tensor_view<float, 2> top_values(reinterpret_cast<float*>(both.data() + B * k), make_dims(B, k));  // (B, k)
      ops::top_k(policy_, tensor_view<const float, 2>(computed), top_values, top_ids);
      top_host_.resize(static_cast<std::size_t>(2 * B * k));
      copy_to_host(policy_, tensor_view<const std::int32_t, 3>(both),
                   tensor_view<std::int32_t, 3>(top_host_.data(), make_dims(2, B, k)));
      for (index_t b = 0; b < B; ++b)
        for (index_t j = 0; j < k; ++j) {
          ids(b, j) = top_host_[static_cast<std::size_t>(b * k + j)];
          values(b, j) = std::bit_cast<float>(top_host_[static_cast<std::size_t>(B * k + b * k + j)]);
        }
    }
  }

 private:
  // The queued half of forward: every layer and the final norm into `out`, for B rows of T new
  // tokens whose ids and positions are staged in policy memory and whose cache window has been
  // reserved. Reads nothing that changes between steps on the host, so a one-token step (no
  // trace) can be recorded and replayed: the cache is addressed through cache.end_of_step().
  void run_layers(tensor_view<const std::int64_t, 1> ids, tensor_view<const std::int64_t, 1> positions, index_t B,
                  index_t T, cache_type& cache, tensor_view<float, 2> out, forward_trace* trace) {
    const index_t N = B * T;
    const index_t H = config_.hidden_size, E = config_.num_experts, Hkv = config_.num_kv_heads;
    const index_t D = config_.kv_channels, Dq = config_.query_width(), S = slots();
    const tensor_view<float, 2> x = x_.matrix(policy_, N, H);      // (B·T, H) the residual stream
    const tensor_view<float, 2> normed = normed_.matrix(policy_, N, H);  // (B·T, H)
    const tensor_view<float, 2> y = y_.matrix(policy_, N, H);      // (B·T, H) a block's output
    const tensor_view<float, 3> q = q_.cube(policy_, N, S, Dq);    // (B·T, S, Dq) queries, slot-major
    const tensor_view<float, 3> o = o_.cube(policy_, N, S, Dq);    // (B·T, S, Dq) attention output
    const tensor_view<float, 2> kv = kv_.matrix(policy_, N, 2 * Dq);  // (B·T, 2·Dq) keys then values

    ops::embedding(policy_, weights_.embed_tokens.view(), ids, x);
    if (trace && trace->keep_hidden_states) trace->hidden_states.push_back(snapshot(x));

    // Views of the same buffers in the shapes attention and RoPE want.
    const tensor_view<float, 3> q_heads = q.reshape(make_dims(N, S * Hkv, D));        // (B·T, S·Hkv, D)
    const tensor_view<float, 4> q_attn = q.reshape(make_dims(B, T, S * Hkv, D));      // (B, T, S·Hkv, D)
    const tensor_view<float, 4> o_attn = o.reshape(make_dims(B, T, S * Hkv, D));      // (B, T, S·Hkv, D)
    const tensor_view<float, 3> k_new(kv.data(), make_dims(N, Hkv, D), make_dims(2 * Dq, D, 1));       // (B·T, Hkv, D)
    const tensor_view<float, 4> k_rows(kv.data(), make_dims(B, T, Hkv, D), make_dims(T * 2 * Dq, 2 * Dq, D, 1));
    const tensor_view<float, 4> v_rows(kv.data() + Dq, make_dims(B, T, Hkv, D), make_dims(T * 2 * Dq, 2 * Dq, D, 1));

    // The whole cache is attended to; its end position (read where the work runs) says how many
    // keys hold data, and the new queries are its last T.
    ops::attention_options attention_options;
    attention_options.scale = 1.0f / std::sqrt(static_cast<float>(D));
    attention_options.causal = true;
    attention_options.key_mask = cache.full_key_mask();  // (B, C)
    attention_options.key_count = cache.end_of_step();
    const float theta = static_cast<float>(config_.rope_theta);

    for (index_t l = 0; l < config_.num_layers; ++l) {
      const layer_weights<W, Policy>& lw = weights_.layers[static_cast<std::size_t>(l)];
      const int layer = static_cast<int>(l);

      // ---- mixture of attention heads ----
      ops::rms_norm(policy_, x, lw.input_norm.view(), layer_norm_eps, normed);
      const tensor_view<float, 2> attention_logits = router_logits_slot(trace, N, E);  // (B·T, E) or empty
      const auto& attention_plan = attention_.map(policy_, lw.moa(), normed, q, workspace_, attention_logits);
      if (attention_logits.data()) trace->attention_router_logits.push_back(snapshot(attention_logits));
      if (trace && trace->keep_expert_counts) trace->attention_expert_counts.push_back(counts_of(attention_plan));
      ops::linear(policy_, normed, lw.kv_proj.view(), kv);
      ops::rope(policy_, q_heads, positions, theta);
      ops::rope(policy_, k_new, positions, theta);
      const tensor_view<float, 4> key_store = cache.key_store(layer), value_store = cache.value_store(layer);  // (B, C, Hkv, D)
      ops::copy_to_positions(policy_, tensor_view<const float, 4>(k_rows), key_store, cache.end_of_step());
      ops::copy_to_positions(policy_, tensor_view<const float, 4>(v_rows), value_store, cache.end_of_step());
      ops::attention(policy_, q_attn, key_store, value_store, o_attn, attention_options, ops::kv_head_modulo{});
      attention_.reduce(policy_, lw.moa(), attention_plan, o, y, workspace_);
      ops::add_inplace(policy_, x, y);

      // ---- mixture of MLP experts ----
      ops::rms_norm(policy_, x, lw.post_attention_norm.view(), layer_norm_eps, normed);
      const tensor_view<float, 2> mlp_logits = router_logits_slot(trace, N, E);  // (B·T, E) or empty
      const auto& mlp_plan = mlp_.forward(policy_, lw.mlp(), normed, y, workspace_, mlp_logits);
      if (mlp_logits.data()) trace->mlp_router_logits.push_back(snapshot(mlp_logits));
      if (trace && trace->keep_expert_counts) trace->mlp_expert_counts.push_back(counts_of(mlp_plan));
      ops::add_inplace(policy_, x, y);

      if (trace && trace->keep_hidden_states && l + 1 < config_.num_layers) trace->hidden_states.push_back(snapshot(x));
    }

    ops::rms_norm(policy_, x, weights_.final_norm.view(), static_cast<float>(config_.rms_norm_eps), out);
    if (trace && trace->keep_hidden_states) trace->hidden_states.push_back(snapshot(out));
  }

  // (B, H) the hidden state of each row's last position, in the policy's memory: `hidden`
  // itself when T = 1, else those rows gathered into a buffer.
  tensor_view<const float, 2> last_positions(tensor_view<const float, 2> hidden, index_t T, index_t B, const char* who) {
    const index_t H = hidden.extent(1);
    check(hidden.extent(0) == B * T, who, ": ", hidden.extent(0), " hidden rows for B = ", B, " rows of T = ", T,
          " tokens");
    if (T == 1) return hidden;
    const tensor_view<const float, 2> last = hidden.reshape(make_dims(B, T, H)).template select<1>(T - 1);  // (B, H) strided
    const tensor_view<float, 2> gathered = last_rows_.matrix(policy_, B, H);                                // (B, H)
    ops::copy<Policy, 2>(policy_, last, gathered);
    return gathered;
  }

  // A host copy of a (rows, cols) view in the policy's memory.
  tensor<float, 2> snapshot(tensor_view<const float, 2> v) const { return to_host(policy_, v); }

  // Where a router writes its logits when the trace keeps them: a policy buffer, copied to the
  // trace right after the block. Empty when they are not kept (the block uses its workspace).
  tensor_view<float, 2> router_logits_slot(const forward_trace* trace, index_t N, index_t E) {
    if (trace == nullptr || !trace->keep_router_logits) return {};
    return router_logits_.matrix(policy_, N, E);
  }
  template <class Plan>
  std::vector<std::int32_t> counts_of(const Plan& plan) const {
    const auto counts = to_host(policy_, plan.counts());  // (E)
    return std::vector<std::int32_t>(counts.data(), counts.data() + counts.size());
  }

  config config_;
  weights<W, Policy> weights_;
  Policy policy_;
  routing::mixture_of_attention<Router> attention_;
  routing::moe_mlp<Router> mlp_;
  routing::routing_workspace<Policy> workspace_;
  routing::growable_buffer<float, Policy> x_, normed_, y_, q_, o_, kv_, final_;
  routing::growable_buffer<float, Policy> router_logits_, logits_, last_rows_;
  routing::growable_buffer<std::int32_t, Policy> top_ids_;  // ids and value bits, (2, B, k) (unused on the CPU)
  std::vector<std::int32_t> top_host_;                      // the same on the host (unused on the CPU)
  routing::growable_buffer<std::int64_t, Policy> device_ids_, device_positions_;  // unused on the CPU
  std::vector<std::int64_t> positions_;
  std::vector<std::uint8_t> all_real_;
  cache_type scratch_cache_;
  bool record_steps_ = true;
  exec::recorded_work<Policy> step_;  // the last one-token step, for replay
};

// A model of any shape (the 8B one included: about 16 GiB as bf16) with random weights, for
// benchmarks and experiments: random_weights(c, seed, stddev) drawn on the host, then placed
// where the policy computes. The same seed gives the same model whatever the thread count.
template <class W = float, class Router = routing::top_k_then_softmax, exec::execution_policy Policy = exec::cpu>
model<W, Router, Policy> random_init(const config& c, std::uint64_t seed, const Policy& policy = {},
                                     float stddev = 0.02f, Router router = {}) {
  exec::cpu host;
  if constexpr (std::is_same_v<Policy, exec::cpu>) host = policy;  // its thread count
  return model<W, Router, Policy>(c, place_weights(policy, random_weights<W>(c, seed, stddev, host), c), policy, router);
}

}  // namespace jetmoe::models::jetmoe
