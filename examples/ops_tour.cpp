// ops_tour — runs every op of the CPU backend once, on a tiny made-up MoE "layer" with random
// weights, and prints what each step did: shapes, a few numbers and how long it took.
//
//   ops_tour [--tokens T] [--threads N] [--seed S]
//
// The layer (all sizes small and invented; not a trained model):
//   ids ─► embedding (bf16 table) ─► rms_norm ─► q / kv projections (linear, bf16 weights)
//       ─► rope on q and k ─► causal attention (4 query heads reading 2 kv heads, j mod Hkv)
//       ─► rms_norm ─► router (linear) ─► top_k ─► softmax over the k picks (gates)
//       ─► each token's experts: linear ─► glu ─► linear, summed with the gates.
// Only the public API of <jetmoe/jetmoe.hpp> is used.
#include <jetmoe/jetmoe.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>

namespace {

using jetmoe::bf16;
using jetmoe::index_t;
using jetmoe::make_dims;
using jetmoe::tensor;
using jetmoe::tensor_view;

// The made-up layer's sizes.
constexpr index_t vocab = 64;
constexpr index_t hidden = 32;        // H
constexpr index_t kv_heads = 2;       // Hkv
constexpr index_t head_dim = 8;       // D
constexpr index_t q_heads = 4;        // Hq = 2 · Hkv
constexpr index_t experts = 4;        // E
constexpr index_t top_k = 2;          // K
constexpr index_t intermediate = 16;  // I
constexpr float rope_theta = 10000.0f;
constexpr float norm_eps = 1e-6f;

struct options {
  index_t tokens = 6;
  int threads = jetmoe::exec::cpu::default_threads();
  unsigned seed = 7;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--tokens" && has_value) o.tokens = std::atoll(argv[++i]);
    else if (arg == "--threads" && has_value) o.threads = std::atoi(argv[++i]);
    else if (arg == "--seed" && has_value) o.seed = static_cast<unsigned>(std::atol(argv[++i]));
    else {
      std::printf("usage: ops_tour [--tokens T] [--threads N] [--seed S]\n");
      std::exit(arg == "--help" || arg == "-h" ? 0 : 2);
    }
  }
  if (o.tokens < 1 || o.threads < 1) {
    std::fprintf(stderr, "ops_tour: --tokens and --threads must be at least 1\n");
    std::exit(2);
  }
  return o;
}

// Random tensors: float or bf16 entries uniform in [-scale, scale).
template <class T, std::size_t Rank>
tensor<T, Rank> random_tensor(const jetmoe::exec::cpu& cpu, const jetmoe::dims<Rank>& extents, std::mt19937& rng,
                              float scale) {
  tensor<T, Rank> t(cpu, extents);
  std::uniform_real_distribution<float> dist(-scale, scale);
  T* data = t.data();
  for (index_t i = 0; i < t.size(); ++i) data[i] = jetmoe::from_float<T>(dist(rng));
  return t;
}

// Runs `step`, prints its name, the result shape and the time it took.
template <class Step>
void timed(const char* name, const std::string& shape, Step&& step) {
  const auto start = std::chrono::steady_clock::now();
  std::forward<Step>(step)();
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  std::printf("  %-38s -> %-12s %9.1f us\n", name, shape.c_str(), us);
}

std::string shape_of(std::initializer_list<index_t> extents) {
  std::string s = "(";
  for (auto e : extents) s += (s.size() > 1 ? "," : "") + std::to_string(e);
  return s + ")";
}

// The first few entries of a row, for a glance at the numbers.
void print_row(const char* label, tensor_view<const float, 2> m, index_t row, index_t count = 6) {
  std::printf("    %s[%lld]:", label, static_cast<long long>(row));
  for (index_t j = 0; j < count && j < m.extent(1); ++j) std::printf(" %+.4f", m(row, j));
  std::printf("%s\n", m.extent(1) > count ? " ..." : "");
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  const index_t T = opt.tokens;
  const jetmoe::exec::cpu cpu{.threads = opt.threads};
  std::mt19937 rng(opt.seed);

  std::printf("jetmoe %d.%d.%d ops tour: a made-up MoE layer, T=%lld tokens, H=%lld, %lld experts (top-%lld), "
              "%lld query heads over %lld kv heads of width %lld, %d thread(s)\n",
              JETMOE_VERSION_MAJOR, JETMOE_VERSION_MINOR, JETMOE_VERSION_PATCH, static_cast<long long>(T),
              static_cast<long long>(hidden), static_cast<long long>(experts), static_cast<long long>(top_k),
              static_cast<long long>(q_heads), static_cast<long long>(kv_heads), static_cast<long long>(head_dim),
              opt.threads);

  // ---- weights (random, bf16 where a real checkpoint would store bf16) ---------------------
  auto embed = random_tensor<bf16>(cpu, make_dims(vocab, hidden), rng, 1.0f);             // (V, H)
  auto norm1_w = random_tensor<float>(cpu, make_dims(hidden), rng, 0.1f);                 // (H)
  auto norm2_w = random_tensor<float>(cpu, make_dims(hidden), rng, 0.1f);                 // (H)
  for (index_t i = 0; i < hidden; ++i) {  // norm weights near 1, as a trained model's are
    norm1_w(i) += 1.0f;
    norm2_w(i) += 1.0f;
  }
  auto wq = random_tensor<bf16>(cpu, make_dims(q_heads * head_dim, hidden), rng, 0.2f);   // (Hq·D, H)
  auto wkv = random_tensor<bf16>(cpu, make_dims(2 * kv_heads * head_dim, hidden), rng, 0.2f);  // (2·Hkv·D, H)
  auto wo = random_tensor<float>(cpu, make_dims(hidden, q_heads * head_dim), rng, 0.2f);  // (H, Hq·D)
  auto w_router = random_tensor<float>(cpu, make_dims(experts, hidden), rng, 0.5f);       // (E, H)
  auto w_in = random_tensor<bf16>(cpu, make_dims(experts, 2 * intermediate, hidden), rng, 0.2f);   // (E, 2I, H)
  auto w_out = random_tensor<bf16>(cpu, make_dims(experts, hidden, intermediate), rng, 0.2f);      // (E, H, I)

  // ---- activations -----------------------------------------------------------------------
  auto ids = tensor<std::int64_t, 1>(cpu, make_dims(T));      // (T)
  auto positions = tensor<std::int64_t, 1>(cpu, make_dims(T));  // (T)
  std::uniform_int_distribution<std::int64_t> token(0, vocab - 1);
  std::printf("  token ids:");
  for (index_t t = 0; t < T; ++t) {
    ids(t) = token(rng);
    positions(t) = t;
    std::printf(" %lld", static_cast<long long>(ids(t)));
  }
  std::printf("\n\n");

  auto x = tensor<float, 2>(cpu, make_dims(T, hidden));                         // (T, H) residual stream
  auto xn = tensor<float, 2>(cpu, make_dims(T, hidden));                        // (T, H) normed
  auto q = tensor<float, 2>(cpu, make_dims(T, q_heads * head_dim));             // (T, Hq·D)
  auto kv = tensor<float, 2>(cpu, make_dims(T, 2 * kv_heads * head_dim));       // (T, 2·Hkv·D)
  auto attn = tensor<float, 4>::zeros(cpu, make_dims(1, T, q_heads, head_dim));  // (B=1, T, Hq, D)
  auto attn_proj = tensor<float, 2>(cpu, make_dims(T, hidden));                 // (T, H)
  auto router_logits = tensor<float, 2>(cpu, make_dims(T, experts));           // (T, E)
  auto gates = tensor<float, 2>(cpu, make_dims(T, top_k));                      // (T, K)
  auto chosen = tensor<std::int32_t, 2>(cpu, make_dims(T, top_k));             // (T, K)
  auto moe_out = tensor<float, 2>::zeros(cpu, make_dims(T, hidden));           // (T, H)

  const auto t_h = shape_of({T, hidden});
  const auto total_start = std::chrono::steady_clock::now();

  // The first parallel loop starts OpenMP's thread pool; do that outside the timed steps.
  timed("start the thread pool", "-", [&] { jetmoe::exec::parallel_for(cpu, opt.threads, [](std::ptrdiff_t) {}); });

  std::printf("\nattention block\n");
  timed("embedding (bf16 table)", t_h, [&] { jetmoe::ops::embedding(cpu, embed.view(), ids.view(), x.view()); });
  print_row("x", x.view(), 0);
  timed("rms_norm", t_h, [&] { jetmoe::ops::rms_norm(cpu, x.view(), norm1_w.view(), norm_eps, xn.view()); });
  timed("linear q = xn . Wq^T (bf16)", shape_of({T, q_heads * head_dim}),
        [&] { jetmoe::ops::linear(cpu, xn.view(), wq.view(), q.view()); });
  timed("linear kv = xn . Wkv^T (bf16)", shape_of({T, 2 * kv_heads * head_dim}),
        [&] { jetmoe::ops::linear(cpu, xn.view(), wkv.view(), kv.view()); });

  // q as (T, Hq, D) is a reshape of contiguous memory; k and v are the two halves of each kv
  // row, so they are strided views (row stride 2·Hkv·D) over the same buffer: no copies.
  const index_t kv_row = 2 * kv_heads * head_dim;
  auto q3 = q.view().reshape(make_dims(T, q_heads, head_dim));                                         // (T, Hq, D)
  tensor_view<float, 3> k3(kv.data(), make_dims(T, kv_heads, head_dim), make_dims(kv_row, head_dim, 1));  // (T, Hkv, D)
  tensor_view<float, 3> v3(kv.data() + kv_heads * head_dim, make_dims(T, kv_heads, head_dim),
                           make_dims(kv_row, head_dim, 1));                                           // (T, Hkv, D)
  timed("rope on q (NeoX rotate-half)", shape_of({T, q_heads, head_dim}),
        [&] { jetmoe::ops::rope(cpu, q3, positions.view(), rope_theta); });
  timed("rope on k (strided view)", shape_of({T, kv_heads, head_dim}),
        [&] { jetmoe::ops::rope(cpu, k3, positions.view(), rope_theta); });

  const auto add_batch = [&](tensor_view<float, 3> v) {  // (T, h, D) -> (1, T, h, D)
    return tensor_view<const float, 4>(v.data(), make_dims(1, v.extent(0), v.extent(1), v.extent(2)),
                                       make_dims(v.extent(0) * v.stride(0), v.stride(0), v.stride(1), v.stride(2)));
  };
  jetmoe::ops::attention_options attn_opt;
  attn_opt.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  timed("causal attention (head j -> kv j%Hkv)", shape_of({1, T, q_heads, head_dim}), [&] {
    jetmoe::ops::attention(cpu, add_batch(q3), add_batch(k3), add_batch(v3), attn.view(), attn_opt,
                           jetmoe::ops::kv_head_modulo{});
  });
  timed("linear out = attn . Wo^T", t_h, [&] {
    jetmoe::ops::linear(cpu, attn.view().reshape(make_dims(T, q_heads * head_dim)), wo.view(), attn_proj.view());
  });
  for (index_t t = 0; t < T; ++t)
    for (index_t h = 0; h < hidden; ++h) x(t, h) += attn_proj(t, h);
  print_row("x + attention", x.view(), T - 1);

  std::printf("\nMoE block\n");
  timed("rms_norm", t_h, [&] { jetmoe::ops::rms_norm(cpu, x.view(), norm2_w.view(), norm_eps, xn.view()); });
  timed("router logits = xn . Wr^T", shape_of({T, experts}),
        [&] { jetmoe::ops::linear(cpu, xn.view(), w_router.view(), router_logits.view()); });
  timed("top_k (ties: lower index first)", shape_of({T, top_k}),
        [&] { jetmoe::ops::top_k(cpu, router_logits.view(), gates.view(), chosen.view()); });
  timed("softmax over the k picks -> gates", shape_of({T, top_k}), [&] { jetmoe::ops::softmax(cpu, gates.view()); });
  for (index_t t = 0; t < T; ++t) {
    std::printf("    token %lld -> experts", static_cast<long long>(t));
    for (index_t s = 0; s < top_k; ++s) std::printf(" %d (gate %.3f)", chosen(t, s), gates(t, s));
    std::printf("\n");
  }

  // Each token runs through its K experts one row at a time: a slice of x is a (1, H) view.
  auto h = tensor<float, 2>(cpu, make_dims(1, 2 * intermediate));  // (1, 2I)
  auto u = tensor<float, 2>(cpu, make_dims(1, intermediate));       // (1, I)
  auto z = tensor<float, 2>(cpu, make_dims(1, hidden));             // (1, H)
  timed("experts: linear -> glu -> linear, x K", t_h, [&] {
    for (index_t t = 0; t < T; ++t) {
      const auto row = xn.view().slice(0, t, t + 1);  // (1, H)
      for (index_t s = 0; s < top_k; ++s) {
        const index_t e = chosen(t, s);
        jetmoe::ops::linear(cpu, row, w_in.view().select(e), h.view());   // (1, 2I)
        jetmoe::ops::glu(cpu, h.view(), u.view());                        // (1, I) = silu(h[:I]) * h[I:]
        jetmoe::ops::linear(cpu, u.view(), w_out.view().select(e), z.view());  // (1, H)
        for (index_t j = 0; j < hidden; ++j) moe_out(t, j) += gates(t, s) * z(0, j);
      }
    }
  });
  for (index_t t = 0; t < T; ++t)
    for (index_t j = 0; j < hidden; ++j) x(t, j) += moe_out(t, j);
  print_row("layer output", x.view(), T - 1);

  // SiLU on its own (the glu above applies it to the first half of h).
  auto act = tensor<float, 2>(cpu, make_dims(1, 5));
  for (index_t j = 0; j < 5; ++j) act(0, j) = static_cast<float>(j) - 2.0f;  // -2 … 2
  timed("silu on [-2, -1, 0, 1, 2]", shape_of({1, 5}), [&] { jetmoe::ops::silu(cpu, act.view()); });
  print_row("silu", act.view(), 0);

  const double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - total_start).count();
  double checksum = 0.0;
  bool finite = true;
  for (index_t t = 0; t < T; ++t)
    for (index_t j = 0; j < hidden; ++j) {
      checksum += x(t, j);
      finite = finite && std::isfinite(x(t, j));
    }
  std::printf("\ndone in %.2f ms; output checksum %.6f%s\n", total_ms, checksum, finite ? "" : " (NOT FINITE)");
  return finite ? 0 : 1;
}
