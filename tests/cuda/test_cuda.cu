// The CUDA backend against the CPU backend, op by op and primitive by primitive, on seeded
// random inputs. One translation unit on purpose: nvcc is slow and CI has two cores.
//
// Every test that needs a GPU starts with SKIP_WITHOUT_GPU(): without a driver or device it
// prints "no CUDA device: skipped" and returns, so the binary starts and passes anywhere (CTest
// discovers the tests by running it at build time). A GPU the runtime cannot start fails them
// instead, as does any skip under JETMOE_REQUIRE_GPU=1 (cuda_test_support.cuh). A few tests
// need no GPU and always run.
//
// Tolerances, stated once:
//  * fp32 paths (float weights; bf16/half weights with exec::cuda::tensor_cores = false; every
//    op but linear): the two backends differ only in summation order, FMA contraction and the
//    last ulp of expf/sincosf. Bound: |gpu − cpu| ≤ 1e-5·Σ|terms| + 1e-6, where Σ|terms| is the
//    sum of magnitudes that entered the result (for a dot product Σ|x·w|), i.e. a few hundred
//    fp32 roundings of relative 6e-8 with a margin.
//  * tensor-core paths (bf16/half weights, tensor_cores = true, more than 8 rows): activations
//    are rounded to the weight type, a relative error of at most 2^-8 (bf16: 8 significant
//    bits, round to nearest) or 2^-11 (half: 11) per product, so |gpu − cpu| ≤ 2^-8·Σ|x·w|
//    (bf16) or 2^-11·Σ|x·w| (half), plus the fp32 bound.
//  * integer outputs (ids, plans, top-k indices): exact. Router gates, SiLU, GLU: 2e-6 relative
//    (a few ulps of expf/logf/cosf against glibc, through a softmax or a normalisation).
//  * The tests of long sums, tensor-core blocks and edge cases (the later ones) propagate rigorous
//    bounds instead, in terms of u = 2^-24 (fp32's unit roundoff):
//    - summation order: two fp32 sums of the same K products in any two orders differ by at
//      most (γ_K + γ'_K)·Σ|terms|, γ_K ≈ K·u (Higham, "Accuracy and Stability of Numerical
//      Algorithms", §3.1). The CPU contributes γ_K; the GPU's tensor-core adders may truncate
//      instead of rounding (Fasi et al. 2021, "Numerical behavior of NVIDIA tensor cores"): at
//      most 2u per addition. So 3·K·u·Σ|x·w| (sum_order_rel), whatever blocking or split-K.
//    - operand rounding: an fp32 activation rounded to bf16 moves by at most 2^-8 relative (8
//      significant bits, round to nearest), to half by 2^-11 (operand_rounding). Products of
//      rounded operands are exact in fp32 (8+8 or 11+11 significant bits).
//    - grid operands: inputs and router weights drawn as small multiples of 1/8 and 1/64 are
//      exact in every weight type and all their partial sums are exact in fp32, so router
//      logits agree to the bit on every path (and routing is identical by construction).
//    Through a GLU and a second GEMM the bounds are propagated row by row (glu_mlp_bound).
#include "cuda/cuda_test_support.cuh"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace jetmoe;
namespace routing = jetmoe::routing;
using gpu_policy = exec::cuda;
using jhalf = jetmoe::half;  // `half` alone is ambiguous with CUDA's global typedef

using jetmoe_cuda_test::gpu;
gpu_policy gpu_with_tensor_cores(bool on) {
  gpu_policy p = gpu();
  p.tensor_cores = on;
  return p;
}
const exec::cpu cpu{2};

// ---- host data ----------------------------------------------------------------------------------
template <class T, std::size_t R>
tensor<T, R> random_tensor(std::mt19937& rng, const dims<R>& extents, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  tensor<T, R> t(extents);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = from_float<T>(dist(rng));
  return t;
}

// Multiples of 1/4 in [-2, 2]: many exact ties, distinct values far apart.
tensor<float, 2> grid_logits(std::mt19937& rng, index_t rows, index_t cols) {
  std::uniform_int_distribution<int> dist(-8, 8);
  tensor<float, 2> m(make_dims(rows, cols));
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(dist(rng)) * 0.25f;
  return m;
}

template <class T, std::size_t R>
tensor<T, R, gpu_policy> up(const tensor<T, R>& host) {
  return exec::to_device(gpu(), host.view());
}
template <class T, std::size_t R>
tensor<std::remove_cv_t<T>, R> down(tensor_view<T, R> device) {
  return exec::to_host(gpu(), device);
}
template <class T, std::size_t R>
tensor<T, R> down(const tensor<T, R, gpu_policy>& device) {
  return exec::to_host(gpu(), device.view());
}
// The first `rows` rows of a device matrix: a device plan's N meaningful rows of R.
template <class T>
tensor<T, 2> down_rows(const tensor<T, 2, gpu_policy>& device, index_t rows) {
  return exec::to_host(gpu(), tensor_view<const T, 2>(device.view()).slice(0, 0, rows));
}
template <class T, std::size_t R>
void upload_into(const tensor<T, R>& host, tensor_view<T, R> device) {
  exec::copy_to_device<T, R>(gpu(), host.view(), device);
}

// ---- comparison ---------------------------------------------------------------------------------
// Element i passes when |got − want| ≤ rel·scale[i] + abs (scale: the Σ|terms| bound, or |want|
// when none is given). Reports the count and the first failure instead of one line per element.
template <class T, std::size_t R>
void check_close(const tensor<T, R>& got, const tensor<T, R>& want, double rel, double abs,
                 const std::vector<double>* scale = nullptr, const std::string& what = "") {
  REQUIRE(got.extents() == want.extents());
  index_t bad = 0, first_bad = -1;
  double worst = 0.0;
  for (index_t i = 0; i < got.size(); ++i) {
    const double g = to_float(got.data()[i]), w = to_float(want.data()[i]);
    const double s = scale ? (*scale)[static_cast<std::size_t>(i)] : std::fabs(w);
    const double err = std::fabs(g - w);
    const bool both_nan = std::isnan(g) && std::isnan(w);
    if (!both_nan && !(err <= rel * s + abs)) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
    if (std::isfinite(err)) worst = std::max(worst, err);
  }
  INFO(what << ": " << bad << " of " << got.size() << " elements out of tolerance (rel " << rel << ", abs " << abs
            << "); worst |error| " << worst);
  if (first_bad >= 0)
    INFO("first at flat index " << first_bad << ": got " << to_float(got.data()[first_bad]) << ", want "
                                << to_float(want.data()[first_bad]));
  CHECK(bad == 0);
}

template <class T, std::size_t R>
void check_equal(const tensor<T, R>& got, const tensor<T, R>& want, const std::string& what = "") {
  REQUIRE(got.extents() == want.extents());
  index_t bad = 0, first_bad = -1;
  for (index_t i = 0; i < got.size(); ++i)
    if (!(got.data()[i] == want.data()[i])) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
  INFO(what << ": " << bad << " of " << got.size() << " elements differ");
  if (first_bad >= 0) INFO("first at flat index " << first_bad);
  CHECK(bad == 0);
}

// Σ_k |x[t, k]·w[o, k]| for every output: the scale of a linear's rounding error.
template <class W>
std::vector<double> linear_magnitudes(const tensor<float, 2>& x, const tensor<W, 2>& w) {
  const index_t rows = x.extent(0), in = x.extent(1), out = w.extent(0);
  std::vector<double> m(static_cast<std::size_t>(rows * out), 0.0);
  for (index_t t = 0; t < rows; ++t)
    for (index_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (index_t k = 0; k < in; ++k) s += std::fabs(static_cast<double>(x(t, k)) * to_float(w(o, k)));
      m[static_cast<std::size_t>(t * out + o)] = s;
    }
  return m;
}

template <class W>
double tensor_core_rel() {
  if constexpr (std::is_same_v<W, bf16>) return 1.0 / 256.0;
  else if constexpr (std::is_same_v<W, jhalf>) return 1.0 / 2048.0;
  else return 1e-5;
}

// ---- rigorous bounds (see "Tolerances" above) -----------------------------------------------------
constexpr double fp32_u = 0x1p-24;  // fp32's unit roundoff

// |Δ| / Σ|terms| for the same K-term fp32 sum taken in two orders, one of them possibly on
// truncating tensor-core adders: γ_K (CPU) + 2γ_K (GPU) ≈ 3·K·u.
double sum_order_rel(index_t terms) { return 3.0 * static_cast<double>(terms) * fp32_u; }

// The relative error of rounding an fp32 activation to W: bf16 2^-8, half 2^-11, float none.
template <class W>
double operand_rounding() {
  if constexpr (std::is_same_v<W, bf16>) return 0x1p-8;
  else if constexpr (std::is_same_v<W, jhalf>) return 0x1p-11;
  else return 0.0;
}

// numerator / denominator with numerator uniform in [-numerators, numerators]. With
// numerators ≤ 512 and a power-of-two denominator every value is exact in float, bf16 and
// half, and so is every product of two such values and every partial sum of a few hundred.
template <class T, std::size_t R>
tensor<T, R> grid_tensor(std::mt19937& rng, const dims<R>& extents, int numerators, float denominator) {
  std::uniform_int_distribution<int> dist(-numerators, numerators);
  tensor<T, R> t(extents);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = from_float<T>(static_cast<float>(dist(rng)) / denominator);
  return t;
}

// A host copy of a host view (a CPU plan's arrays), to compare with a device download.
template <class T, std::size_t R>
tensor<std::remove_cv_t<T>, R> host_copy(tensor_view<T, R> v) {
  return exec::to_host(cpu, v);
}

}  // namespace

// ==== tests that need no GPU ===========================================================================

TEST_CASE("exec::cuda without a device: unbound policy, error formatting, size classes", "[cuda]") {
  // device_available() must answer without throwing whether or not a driver is present.
  const bool available = exec::cuda::device_available();
  INFO("device_available() = " << available);
  // probe_devices() agrees, and says why whenever the answer is no.
  const exec::cuda::device_report report = exec::cuda::probe_devices();
  INFO("probe_devices(): " << report.reason);
  CHECK(available == (report.presence == exec::cuda::device_presence::usable));
  CHECK(report.reason.empty() == available);
  CHECK(exec::cuda::device_available() == available);  // asking again changes nothing

  const exec::cuda unbound;
  CHECK_FALSE(unbound.bound());
  CHECK_THROWS_AS(unbound.allocate(16), jetmoe::error);
  CHECK_NOTHROW(unbound.deallocate(nullptr, 0));
  tensor<float, 2, exec::cuda> empty;  // default construction touches no device
  CHECK(empty.data() == nullptr);

  CHECK_THROWS_WITH(JETMOE_CUDA_CHECK(cudaErrorInvalidValue), Catch::Contains("cudaErrorInvalidValue"));
  CHECK_NOTHROW(JETMOE_CUDA_CHECK(cudaSuccess));

  using pool = exec::device_memory_pool;
  CHECK(pool::size_class(1) == 512);
  CHECK(pool::size_class(512) == 512);
  CHECK(pool::size_class(513) == 1024);
  CHECK(pool::size_class((1u << 20) + 1) == 2u << 20);
  CHECK(pool::size_class((300u << 20) + 1) == 304u << 20);

  // The pointer check is off unless asked for, and JETMOE_CUDA_CHECK_POINTERS asks only when it
  // is set to something other than "" or "0".
  CHECK_FALSE(unbound.check_pointers);
  const char* saved = std::getenv("JETMOE_CUDA_CHECK_POINTERS");
  const std::string saved_value = saved ? saved : "";
  unsetenv("JETMOE_CUDA_CHECK_POINTERS");
  CHECK_FALSE(exec::cuda::pointer_checks_requested());
  const std::pair<const char*, bool> settings[] = {{"", false}, {"0", false}, {"1", true}, {"on", true}};
  for (const auto& [value, wanted] : settings) {
    setenv("JETMOE_CUDA_CHECK_POINTERS", value, 1);
    INFO("JETMOE_CUDA_CHECK_POINTERS=" << value);
    CHECK(exec::cuda::pointer_checks_requested() == wanted);
  }
  if (saved) setenv("JETMOE_CUDA_CHECK_POINTERS", saved_value.c_str(), 1);
  else unsetenv("JETMOE_CUDA_CHECK_POINTERS");
}

// ==== policy and transfers ==============================================================================

TEST_CASE("exec::cuda: pooled allocation, zeroing, strided transfers both ways", "[cuda]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(1);

  const auto before = g.pool().stats();
  { tensor<float, 2, gpu_policy> a(g, make_dims(17, 33)); }
  { tensor<float, 2, gpu_policy> b(g, make_dims(17, 33)); }  // same size class, same stream: a hit
  const auto after = g.pool().stats();
  if (g.pool().caching()) CHECK(after.hits >= before.hits + 1);  // JETMOE_CUDA_POOL=off reuses nothing

  {  // A freed block serves its own size class and classes up to 1/8 smaller, no smaller ones.
    exec::device_memory_pool pool(g.device());
    constexpr std::size_t MiB = std::size_t{1} << 20;
    void* nine = pool.allocate(9 * MiB - 100, g.stream());  // class 9 MiB
    pool.deallocate(nine, g.stream());
    if (pool.caching()) {
      CHECK(pool.stats().bytes_cached == 9 * MiB);
      void* six = pool.allocate(6 * MiB, g.stream());  // 9 > 6 + 6/8: a new block
      CHECK(six != nine);
      void* eight = pool.allocate(8 * MiB, g.stream());  // 9 ≤ 8 + 8/8: the freed one
      CHECK(eight == nine);
      CHECK(pool.stats().hits == 1);
      CHECK(pool.stats().misses == 2);
      CHECK(pool.stats().bytes_cached == 0);
      CHECK(pool.stats().bytes_in_use == 15 * MiB);
      pool.deallocate(six, g.stream());
      pool.deallocate(eight, g.stream());
      CHECK(pool.stats().bytes_cached == 15 * MiB);

      // While a graph is recorded, a held block serves the same window, and keeps its own class.
      pool.begin_hold(g.stream());
      void* held = pool.allocate(9 * MiB, g.stream());  // the cached 9 MiB block
      pool.deallocate(held, g.stream());                // held, not cached
      void* again = pool.allocate(8 * MiB, g.stream());  // class 8 MiB, within 1/8: the held block
      CHECK(again == held);
      pool.deallocate(again, g.stream());
      const auto blocks = pool.end_hold();
      REQUIRE(blocks.size() == 1);
      CHECK(blocks[0].size == 9 * MiB);
      CHECK(pool.stats().bytes_in_use == 9 * MiB);  // the graph's until given back
      pool.give_back(blocks, g.stream());
      CHECK(pool.stats().bytes_in_use == 0);
      CHECK(pool.stats().bytes_cached == 15 * MiB);
    }
  }

  {  // Blocks freed on a stream serve another only once that stream was synchronised after the free.
    exec::device_memory_pool pool(g.device());
    cudaStream_t other = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking) == cudaSuccess);
    constexpr std::size_t MiB = std::size_t{1} << 20;
    void* early = pool.allocate(3 * MiB, g.stream());
    void* late = pool.allocate(5 * MiB, g.stream());
    pool.deallocate(early, g.stream());
    const std::uint64_t mark = pool.free_mark();  // as synchronize() takes it, before the wait
    pool.deallocate(late, g.stream());            // freed while the wait runs: work may follow it
    REQUIRE(cudaStreamSynchronize(g.stream()) == cudaSuccess);
    pool.release_stream(g.stream(), mark);
    if (pool.caching()) {
      void* a = pool.allocate(3 * MiB, other);  // freed before the mark: idle, reused
      void* b = pool.allocate(5 * MiB, other);  // freed after it: still tied to g's stream
      CHECK(a == early);
      CHECK(b != late);
      CHECK(pool.stats().hits == 1);
      pool.deallocate(a, other);
      pool.deallocate(b, other);
    }
    REQUIRE(cudaStreamSynchronize(other) == cudaSuccess);
    cudaStreamDestroy(other);
  }

  const auto zeros = tensor<float, 2, gpu_policy>::zeros(g, make_dims(5, 7));
  const auto zeros_back = down(zeros);
  for (index_t i = 0; i < zeros_back.size(); ++i) CHECK(zeros_back.data()[i] == 0.0f);

  // Host strided → device, device strided → host.
  const auto host = random_tensor<float, 3>(rng, make_dims(4, 5, 6));
  const auto device = up(host);
  const auto back = down(device);
  check_equal(back, host, "round trip");
  const tensor_view<const float, 3> transposed = device.view().transpose(0, 2);  // (6, 5, 4), strided
  const auto transposed_back = down(transposed);
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 5; ++j)
      for (index_t k = 0; k < 4; ++k) CHECK(transposed_back(i, j, k) == host(k, j, i));
  const tensor_view<const float, 3> host_strided = host.view().slice(2, 1, 4);
  const auto from_strided = exec::to_device(g, host_strided);
  const auto from_strided_back = down(from_strided);
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 5; ++j)
      for (index_t k = 0; k < 3; ++k) CHECK(from_strided_back(i, j, k) == host(i, j, k + 1));

  // clone() copies through the policy.
  const auto cloned = device.clone();
  check_equal(down(cloned), host, "clone");
}

// ==== ops ===============================================================================================

TEMPLATE_TEST_CASE("ops::linear on CUDA matches the CPU backend", "[cuda][ops]", float, bf16, jhalf) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  std::mt19937 rng(2);
  for (const bool tensor_cores : {false, true}) {
    const gpu_policy g = gpu_with_tensor_cores(tensor_cores);
    for (const index_t rows : {1, 3, 8, 9, 70}) {
      for (const index_t in : {16, 45, 130}) {
        const index_t out = 67;
        const auto x = random_tensor<float, 2>(rng, make_dims(rows, in));
        const auto w = random_tensor<W, 2>(rng, make_dims(out, in), 0.5f);
        tensor<float, 2> want(make_dims(rows, out));
        ops::linear(cpu, x.view(), w.view(), want.view());
        const auto dx = up(x);
        const auto dw = up(w);
        tensor<float, 2, gpu_policy> dy(g, make_dims(rows, out));
        ops::linear(g, dx.view(), dw.view(), dy.view());
        const auto m = linear_magnitudes(x, w);
        const bool rounded = tensor_cores && !std::is_same_v<W, float> && rows > kernels::gemv_max_rows;
        const double rel = rounded ? tensor_core_rel<W>() + 1e-5 : 1e-5;
        check_close(down(dy), want, rel, 1e-6, &m,
                    "linear T=" + std::to_string(rows) + " in=" + std::to_string(in) +
                        (tensor_cores ? " tensor cores" : " fp32"));
      }
    }
  }
  // A strided x (a column window of a wider buffer) and an output with a row stride.
  const gpu_policy& g = gpu();
  const auto wide = random_tensor<float, 2>(rng, make_dims(20, 50));
  const auto w = random_tensor<W, 2>(rng, make_dims(9, 30), 0.5f);
  const tensor_view<const float, 2> x = wide.view().slice(1, 5, 35);
  tensor<float, 2> want(make_dims(20, 9));
  ops::linear(cpu, x, w.view(), want.view());
  const auto dwide = up(wide);
  const auto dw = up(w);
  tensor<float, 2, gpu_policy> dy_wide(g, make_dims(20, 16));
  const tensor_view<float, 2> dy = dy_wide.view().slice(1, 2, 11);
  ops::linear(gpu_with_tensor_cores(false), tensor_view<const float, 2>(dwide.view()).slice(1, 5, 35), dw.view(), dy);
  tensor<float, 2> x_copy(make_dims(20, 30));
  for (index_t t = 0; t < 20; ++t)
    for (index_t k = 0; k < 30; ++k) x_copy(t, k) = x(t, k);
  const auto m = linear_magnitudes(x_copy, w);
  check_close(down(tensor_view<const float, 2>(dy)), want, 1e-5, 1e-6, &m, "strided linear");
}

TEMPLATE_TEST_CASE("ops::linear on CUDA with 2048 and 2056 inputs: the vectorised GEMV loop over many steps",
                   "[cuda][ops]", float, bf16, jhalf) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  std::mt19937 rng(15);
  const index_t out = 512;
  // K = 2048: a warp's 16-byte loads cover 32·(16 / sizeof(W)) inputs per step, so the GEMV
  // loop runs 8 (bf16/half) or 16 (float) full steps; K = 2056 adds a partial last step.
  for (const index_t in : {2048, 2056}) {
    const auto w = random_tensor<W, 2>(rng, make_dims(out, in), 0.5f);  // (out, in)
    const auto dw = up(w);
    for (const index_t rows : {1, 5, 8, 70}) {
      const auto x = random_tensor<float, 2>(rng, make_dims(rows, in));  // (T, in)
      const auto dx = up(x);
      for (const bool tensor_cores : {false, true}) {
        // Tensor cores (bf16/half, T > 8) multiply x rounded to W: the reference is then the CPU
        // on that rounded x, the products are exact on both sides and only the summation order
        // differs. Every other path multiplies the fp32 x. Either way 3·K·u·Σ|x·w|: at K = 2048,
        // 3.7e-4 of Σ|x·w|, while one input dropped or read twice costs Σ|x·w|/K = 4.9e-4 of it
        // on average (and a skipped 16-byte vector 8 times that).
        const bool rounded = tensor_cores && !std::is_same_v<W, float> && rows > kernels::gemv_max_rows;
        tensor<float, 2> x_ref(x.extents());  // (T, in)
        for (index_t i = 0; i < x.size(); ++i)
          x_ref.data()[i] = rounded ? to_float(from_float<W>(x.data()[i])) : x.data()[i];
        tensor<float, 2> want(make_dims(rows, out));  // (T, out)
        ops::linear(cpu, x_ref.view(), w.view(), want.view());
        const gpu_policy g = gpu_with_tensor_cores(tensor_cores);
        tensor<float, 2, gpu_policy> dy(g, make_dims(rows, out));  // (T, out)
        ops::linear(g, dx.view(), dw.view(), dy.view());
        const auto m = linear_magnitudes(x_ref, w);
        check_close(down(dy), want, sum_order_rel(in), 1e-6, &m,
                    "linear T=" + std::to_string(rows) + " in=" + std::to_string(in) +
                        (rounded ? " tensor cores (x rounded)" : " fp32 activations"));
      }
    }
  }
}

TEST_CASE("ops::rms_norm, softmax, silu, glu, add_inplace and copy on CUDA match the CPU backend", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(3);
  for (const index_t width : {1, 7, 64, 2048, 3000}) {
    const auto x = random_tensor<float, 2>(rng, make_dims(5, width), 3.0f);
    const auto w = random_tensor<bf16, 1>(rng, make_dims(width));
    tensor<float, 2> want(x.extents());
    ops::rms_norm(cpu, x.view(), w.view(), 1e-6f, want.view());
    auto dx = up(x);
    const auto dw = up(w);
    ops::rms_norm(g, tensor_view<const float, 2>(dx.view()), dw.view(), 1e-6f, dx.view());  // in place
    check_close(down(dx), want, 2e-5, 1e-6, nullptr, "rms_norm width " + std::to_string(width));

    tensor<float, 2> soft = random_tensor<float, 2>(rng, make_dims(6, width), 20.0f);
    auto dsoft = up(soft);
    ops::softmax(cpu, soft.view());
    ops::softmax(g, dsoft.view());
    check_close(down(dsoft), soft, 1e-5, 1e-7, nullptr, "softmax width " + std::to_string(width));

    tensor<float, 2> act = random_tensor<float, 2>(rng, make_dims(4, width), 30.0f);
    auto dact = up(act);
    ops::silu(cpu, act.view());
    ops::silu(g, dact.view());
    check_close(down(dact), act, 2e-6, 1e-7, nullptr, "silu");
  }
  const auto h = random_tensor<float, 2>(rng, make_dims(9, 2 * 300), 8.0f);
  tensor<float, 2> u(make_dims(9, 300));
  ops::glu(cpu, h.view(), u.view());
  const auto dh = up(h);
  tensor<float, 2, gpu_policy> du(g, make_dims(9, 300));
  ops::glu(g, dh.view(), du.view());
  check_close(down(du), u, 2e-6, 1e-7, nullptr, "glu");

  auto a = random_tensor<float, 2>(rng, make_dims(33, 65));
  const auto b = random_tensor<float, 2>(rng, make_dims(33, 65));
  auto da = up(a);
  const auto db = up(b);
  ops::add_inplace(cpu, a.view(), b.view());
  ops::add_inplace(g, da.view(), db.view());
  check_equal(down(da), a, "add_inplace");

  // Copy between strided 4-D views, the shape of the KV-cache writes.
  const auto src = random_tensor<float, 4>(rng, make_dims(2, 3, 4, 8));
  const auto dsrc = up(src);
  tensor<float, 4, gpu_policy> store = tensor<float, 4, gpu_policy>::zeros(g, make_dims(2, 4, 5, 8));  // (B, H, C, D)
  const tensor_view<float, 4> window = store.view().slice(2, 1, 4).transpose(1, 2);  // (2, 3, 4, 8) strided
  ops::copy<gpu_policy, 4>(g, dsrc.view(), window);
  const auto stored = down(store);
  for (index_t b0 = 0; b0 < 2; ++b0)
    for (index_t s = 0; s < 3; ++s)
      for (index_t hh = 0; hh < 4; ++hh)
        for (index_t d = 0; d < 8; ++d) CHECK(stored(b0, hh, s + 1, d) == src(b0, s, hh, d));
}

TEST_CASE("ops::copy_to_positions on CUDA writes what the CPU op writes; a bad end writes nothing", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(16);
  // A copy is exact: compared with ==. The destination is a KV cache's store (B, H, C, D)
  // seen as (B, C, H, D), as the model writes it.
  const index_t batch = 2, capacity = 9, heads = 3, width = 4;
  for (const index_t count : {1, 4}) {
    for (const std::int32_t end : {static_cast<std::int32_t>(count), 6, 9}) {
      INFO("T = " << count << ", end = " << end);
      const auto src = random_tensor<float, 4>(rng, make_dims(batch, count, heads, width));   // (B, T, H, D)
      auto store = random_tensor<float, 4>(rng, make_dims(batch, heads, capacity, width));    // (B, H, C, D)
      auto dstore = up(store);
      const auto dsrc = up(src);
      tensor<std::int32_t, 1> end_host(make_dims(1));  // (1)
      end_host(0) = end;
      const auto dend = up(end_host);  // (1) read by the kernel when it runs
      ops::copy_to_positions(cpu, src.view(), store.view().transpose(1, 2), &end);
      ops::copy_to_positions(g, dsrc.view(), dstore.view().transpose(1, 2), dend.data());
      check_equal(down(dstore), store, "copy_to_positions");
    }
  }

  // Ends outside [T, C], as tests/ops/copy_to_positions.cpp tries on the CPU: the CPU op throws
  // at once, the device records the error, writes nothing, and the next wait throws it.
  const auto src = random_tensor<float, 4>(rng, make_dims(1, 2, 2, 4));     // (B, T, H, D)
  const auto before = random_tensor<float, 4>(rng, make_dims(1, 2, 5, 4));  // (B, H, C, D)
  const auto dsrc = up(src);
  for (const std::int32_t bad : {1, 6}) {  // before T, or past the capacity
    INFO("end = " << bad);
    tensor<float, 4> store(before.extents());  // (B, H, C, D)
    for (index_t i = 0; i < store.size(); ++i) store.data()[i] = before.data()[i];
    CHECK_THROWS_WITH(ops::copy_to_positions(cpu, src.view(), store.view().transpose(1, 2), &bad),
                      Catch::Contains("end position " + std::to_string(bad)));
    auto dstore = up(before);
    tensor<std::int32_t, 1> bad_host(make_dims(1));  // (1)
    bad_host(0) = bad;
    const auto dbad = up(bad_host);
    ops::copy_to_positions(g, dsrc.view(), dstore.view().transpose(1, 2), dbad.data());  // queued
    CHECK_THROWS_WITH(g.synchronize(), Catch::Contains("end position " + std::to_string(bad)));
    check_equal(down(dstore), before, "nothing written for a bad end");
    CHECK_NOTHROW(g.synchronize());  // reported once
  }
  // The end must be where the kernel can read it.
  const std::int32_t host_end = 3;
  auto dstore = up(before);
  CHECK_THROWS_WITH(ops::copy_to_positions(g, dsrc.view(), dstore.view().transpose(1, 2), &host_end),
                    Catch::Contains("host memory"));
}

TEST_CASE("ops::rope on CUDA matches the CPU backend, with host or device positions", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(4);
  for (const index_t head_dim : {2, 16, 128}) {
    auto x = random_tensor<float, 3>(rng, make_dims(11, 3, head_dim));
    tensor<std::int64_t, 1> positions(make_dims(11));
    for (index_t t = 0; t < 11; ++t) positions(t) = 3 * t + (t % 2 ? 1000 : 0);
    auto dx = up(x);
    auto dx_host_positions = up(x);
    const auto dpositions = up(positions);
    ops::rope(cpu, x.view(), positions.view(), 10000.0f);
    ops::rope(g, dx.view(), dpositions.view(), 10000.0f);
    ops::rope(g, dx_host_positions.view(), positions.view(), 10000.0f);
    // Angles up to ~1000 rad: the fp32 sin/cos of the two libraries differ in the last ulp.
    check_close(down(dx), x, 1e-5, 2e-6, nullptr, "rope D=" + std::to_string(head_dim));
    check_equal(down(dx_host_positions), down(dx), "rope host vs device positions");
  }
}

TEST_CASE("ops::top_k on CUDA: same values and indices as the CPU, ties and NaN included", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(5);
  for (const index_t n : {1, 8, 33, 1000}) {
    for (const index_t k : {index_t{1}, std::min<index_t>(n, 2), std::min<index_t>(n, 7), n}) {
      auto x = grid_logits(rng, 13, n);
      if (n > 3) {
        x(0, 2) = std::numeric_limits<float>::quiet_NaN();
        x(1, 0) = -0.0f;
        x(1, 1) = 0.0f;
      }
      tensor<float, 2> values(make_dims(13, k));
      tensor<std::int32_t, 2> indices(make_dims(13, k));
      ops::top_k(cpu, x.view(), values.view(), indices.view());
      const auto dx = up(x);
      tensor<float, 2, gpu_policy> dvalues(g, make_dims(13, k));
      tensor<std::int32_t, 2, gpu_policy> dindices(g, make_dims(13, k));
      ops::top_k(g, dx.view(), dvalues.view(), dindices.view());
      check_equal(down(dindices), indices, "top_k indices n=" + std::to_string(n) + " k=" + std::to_string(k));
      check_close(down(dvalues), values, 0.0, 0.0, nullptr, "top_k values");
    }
  }
}

TEST_CASE("ops::embedding on CUDA: host and device ids, bad ids rejected, nothing written", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(6);
  const auto table = random_tensor<bf16, 2>(rng, make_dims(50, 24));
  tensor<std::int64_t, 1> ids(make_dims(7));
  for (index_t t = 0; t < 7; ++t) ids(t) = (t * 13) % 50;
  tensor<float, 2> want(make_dims(7, 24));
  ops::embedding(cpu, table.view(), ids.view(), want.view());
  const auto dtable = up(table);
  tensor<float, 2, gpu_policy> dout(g, make_dims(7, 24));
  ops::embedding(g, dtable.view(), ids.view(), dout.view());  // host ids
  check_equal(down(dout), want, "embedding, host ids");
  const auto dids = up(ids);
  auto dout2 = tensor<float, 2, gpu_policy>::zeros(g, make_dims(7, 24));
  ops::embedding(g, dtable.view(), dids.view(), dout2.view());  // device ids
  check_equal(down(dout2), want, "embedding, device ids");

  tensor<std::int64_t, 1> bad = ids.clone();
  bad(4) = 50;
  CHECK_THROWS_WITH(ops::embedding(g, dtable.view(), bad.view(), dout.view()), Catch::Contains("position 4"));
  const auto dbad = up(bad);
  auto untouched = tensor<float, 2, gpu_policy>::zeros(g, make_dims(7, 24));
  ops::embedding(g, dtable.view(), dbad.view(), untouched.view());  // queued; reported at the next sync
  CHECK_THROWS_WITH(g.synchronize(), Catch::Contains("token id 50 at position 4"));
  const auto untouched_back = down(untouched);
  for (index_t i = 0; i < untouched_back.size(); ++i) CHECK(untouched_back.data()[i] == 0.0f);
  CHECK_NOTHROW(g.synchronize());  // the error was cleared when reported
}

namespace {
// Attention on CPU and GPU for one configuration; K and V are strided cache views.
template <class KvHeadMap>
void compare_attention(std::mt19937& rng, index_t batch, index_t q_len, index_t past, index_t q_heads,
                       index_t kv_heads, index_t head_dim, bool causal, bool with_mask, KvHeadMap map) {
  const gpu_policy& g = gpu();
  const index_t k_len = past + q_len, capacity = k_len + 3;
  const auto q = random_tensor<float, 4>(rng, make_dims(batch, q_len, q_heads, head_dim));
  const auto k_store = random_tensor<float, 4>(rng, make_dims(batch, kv_heads, capacity, head_dim));
  const auto v_store = random_tensor<float, 4>(rng, make_dims(batch, kv_heads, capacity, head_dim));
  tensor<std::uint8_t, 2> mask(make_dims(batch, k_len));
  for (index_t b = 0; b < batch; ++b)
    for (index_t j = 0; j < k_len; ++j) mask(b, j) = with_mask ? ((j + b) % 4 != 1) : 1;
  if (with_mask && batch > 1)
    for (index_t j = 0; j < k_len; ++j) mask(1, j) = j >= k_len / 2;  // a row whose early queries see nothing

  ops::attention_options options;
  options.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  options.q_offset = past;
  options.causal = causal;
  const auto window = [&](const auto& store) {
    return tensor_view<const float, 4>(store.view()).slice(2, 0, k_len).transpose(1, 2);  // (B, Tk, Hkv, D)
  };
  tensor<float, 4> want(q.extents());
  options.key_mask = with_mask ? tensor_view<const std::uint8_t, 2>(mask.view()) : tensor_view<const std::uint8_t, 2>{};
  ops::attention(cpu, q.view(), window(k_store), window(v_store), want.view(), options, map);

  const auto dq = up(q);
  const auto dk = up(k_store);
  const auto dv = up(v_store);
  const auto dmask = up(mask);
  tensor<float, 4, gpu_policy> dout(g, q.extents());
  if (with_mask) options.key_mask = dmask.view();
  ops::attention(g, dq.view(), window(dk), window(dv), dout.view(), options, map);
  INFO("B=" << batch << " Tq=" << q_len << " past=" << past << " Hq=" << q_heads << " Hkv=" << kv_heads
            << " D=" << head_dim << " causal=" << causal << " mask=" << with_mask);
  // Outputs are convex combinations of values in [-1, 1]: an absolute bound suffices.
  check_close(down(dout), want, 0.0, 2e-5, nullptr, "attention");
  if (with_mask) {  // the same mask from host memory gives the same result
    options.key_mask = mask.view();
    tensor<float, 4, gpu_policy> dout_host_mask(g, q.extents());
    ops::attention(g, dq.view(), window(dk), window(dv), dout_host_mask.view(), options, map);
    check_equal(down(dout_host_mask), down(dout), "attention with a host mask");
  }
}
}  // namespace

TEST_CASE("ops::attention on CUDA (tiles and decode) matches the CPU backend", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  for (const index_t head_dim : {16, 33, 64, 128, 200}) {  // 33: odd, so the K tile's stride is D itself
    compare_attention(rng, 2, 1, 0, 4, 2, head_dim, true, false, ops::kv_head_modulo{});       // first token
    compare_attention(rng, 2, 1, 37, 4, 2, head_dim, true, true, ops::kv_head_modulo{});       // decode
    compare_attention(rng, 2, 19, 0, 4, 2, head_dim, true, true, ops::kv_head_modulo{});       // prefill, partial tile
    compare_attention(rng, 1, 40, 5, 4, 4, head_dim, true, false, ops::kv_head_grouped{});     // chunked prefill
    compare_attention(rng, 2, 17, 3, 6, 2, head_dim, false, true, ops::kv_head_grouped{});     // not causal
  }
  compare_attention(rng, 1, 300, 0, 2, 1, 128, true, false, ops::kv_head_modulo{});  // many key chunks
  compare_attention(rng, 1, 1, 1500, 4, 2, 128, true, true, ops::kv_head_modulo{});   // decode split 24 ways
  compare_attention(rng, 2, 1, 700, 4, 2, 64, false, true, ops::kv_head_grouped{});   // split, not causal
}

TEST_CASE("ops::attention on CUDA: a NaN score makes the query's output NaN, as on the CPU", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(23);
  // (Tq, past): prefill over two key chunks, and decodes that split the keys 1 and many ways.
  for (const auto& [q_len, past] : {std::pair<index_t, index_t>{40, 0}, {1, 20}, {1, 1500}}) {
    constexpr index_t q_heads = 4, kv_heads = 2, head_dim = 64;
    const index_t k_len = past + q_len;
    auto q = random_tensor<float, 4>(rng, make_dims(1, q_len, q_heads, head_dim));   // (1, Tq, Hq, D)
    auto k = random_tensor<float, 4>(rng, make_dims(1, k_len, kv_heads, head_dim));  // (1, Tk, Hkv, D)
    const auto v = random_tensor<float, 4>(rng, make_dims(1, k_len, kv_heads, head_dim));  // (1, Tk, Hkv, D)
    // A NaN in kv head 0's key 7 reaches heads 0 and 2 of every query that sees it; a NaN in
    // query 0's head 1 makes all its scores NaN (no finite maximum at all). Heads 3 stay clean.
    k(0, 7, 0, 5) = std::numeric_limits<float>::quiet_NaN();
    q(0, 0, 1, 3) = std::numeric_limits<float>::quiet_NaN();
    ops::attention_options options;
    options.scale = 0.125f;
    options.q_offset = past;
    tensor<float, 4> want(q.extents());  // (1, Tq, Hq, D)
    ops::attention(cpu, q.view(), k.view(), v.view(), want.view(), options);
    const auto dq = up(q);
    const auto dk = up(k);
    const auto dv = up(v);
    tensor<float, 4, gpu_policy> dout(g, q.extents());  // (1, Tq, Hq, D)
    ops::attention(g, dq.view(), dk.view(), dv.view(), dout.view(), options);
    const auto got = down(dout);
    INFO("Tq=" << q_len << " past=" << past);
    // The reference has the NaNs where expected (so this test cannot pass on all-finite output) …
    CHECK(std::isnan(want(0, 0, 1, 0)));
    CHECK(std::isnan(want(0, q_len - 1, 0, 0)));
    CHECK(std::isfinite(want(0, q_len - 1, 3, 0)));
    // … and the GPU matches it: NaN where the CPU has NaN, within the attention bound elsewhere.
    check_close(got, want, 0.0, 2e-5, nullptr, "attention with NaN scores");
  }
}

namespace {
// Attention over a KV store of `capacity` positions whose first `count` hold keys, the count in
// device memory (options.key_count: how every model step calls it; the queries are the last Tq
// of the `count` positions). Compared with the CPU op given the same options (the count in host
// memory) and with a double-precision brute force over the first `count` keys.
template <class KvHeadMap>
void compare_counted_attention(std::mt19937& rng, index_t batch, index_t q_len, index_t count, index_t capacity,
                               index_t q_heads, index_t kv_heads, index_t head_dim, bool causal, bool with_mask,
                               KvHeadMap map) {
  const gpu_policy& g = gpu();
  const auto q = random_tensor<float, 4>(rng, make_dims(batch, q_len, q_heads, head_dim));  // (B, Tq, Hq, D)
  auto k_store = random_tensor<float, 4>(rng, make_dims(batch, kv_heads, capacity, head_dim));  // (B, Hkv, C, D)
  auto v_store = random_tensor<float, 4>(rng, make_dims(batch, kv_heads, capacity, head_dim));  // (B, Hkv, C, D)
  // Positions count … C−1 hold no keys. Poisoned (key 0, so score 0 like a typical key; value
  // 1000), so a kernel that attends to any of them moves outputs by ~1000/count, far past every
  // bound here. The mask leaves them visible: only the count may hide them.
  for (index_t b = 0; b < batch; ++b)
    for (index_t h = 0; h < kv_heads; ++h)
      for (index_t j = count; j < capacity; ++j)
        for (index_t d = 0; d < head_dim; ++d) {
          k_store(b, h, j, d) = 0.0f;
          v_store(b, h, j, d) = 1000.0f;
        }
  tensor<std::uint8_t, 2> mask(make_dims(batch, capacity));  // (B, C)
  for (index_t b = 0; b < batch; ++b)
    for (index_t j = 0; j < capacity; ++j) mask(b, j) = with_mask ? ((j + b) % 5 != 3 || j >= count) : 1;
  if (with_mask && batch > 1)
    for (index_t j = 0; j < count / 2; ++j) mask(1, j) = 0;  // row 1 left-padded over half its keys

  ops::attention_options options;
  options.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  options.causal = causal;
  options.q_offset = 12345;  // ignored once key_count is set
  const auto window = [](const auto& store) {  // (B, C, Hkv, D) strided, as a KV cache hands it out
    return tensor_view<const float, 4>(store.view()).transpose(1, 2);
  };
  const std::int32_t host_count = static_cast<std::int32_t>(count);
  tensor<float, 4> want(q.extents());  // (B, Tq, Hq, D)
  options.key_mask = mask.view();
  options.key_count = &host_count;
  ops::attention(cpu, q.view(), window(k_store), window(v_store), want.view(), options, map);

  const auto dq = up(q);
  const auto dk = up(k_store);
  const auto dv = up(v_store);
  const auto dmask = up(mask);
  tensor<std::int32_t, 1> count_host(make_dims(1));  // (1)
  count_host(0) = host_count;
  const auto dcount = up(count_host);
  tensor<float, 4, gpu_policy> dout(g, q.extents());  // (B, Tq, Hq, D)
  options.key_mask = dmask.view();
  options.key_count = dcount.data();
  ops::attention(g, dq.view(), window(dk), window(dv), dout.view(), options, map);
  const auto got = down(dout);
  INFO("B=" << batch << " Tq=" << q_len << " count=" << count << " of " << capacity << " Hq=" << q_heads
            << " Hkv=" << kv_heads << " D=" << head_dim << " causal=" << causal << " mask=" << with_mask);
  // Against the CPU: as the attention test above (convex combinations of values in [-1, 1];
  // rounding of n ≤ 1500 terms grows like √n·u, 6·√1500·u ≈ 1.4e-5 even at six sigma).
  check_close(got, want, 0.0, 2e-5, nullptr, "attention with key_count vs the CPU");

  // Brute force in double. Bound per query, each backend against it: the fp32 scores are off by
  // Δs ≤ scale·(D + 2)·u·Σ_d|q_d·k_d| (a D-term dot and the scaling), which moves a softmax
  // average of values in [-1, 1] by ≤ Σ_j p_j·|v_j − out|·Δs_j ≤ 2·max Δs; the n exponentials
  // (≤ 2 ulp each), rescalings and the weighted sums add ≤ (4n + 64)·u.
  tensor<float, 4> exact(q.extents());  // (B, Tq, Hq, D)
  std::vector<double> bound(static_cast<std::size_t>(q.size()));
  const index_t offset = count - q_len;
  std::vector<double> scores(static_cast<std::size_t>(count));
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < q_len; ++i)
      for (index_t h = 0; h < q_heads; ++h) {
        const index_t kv = map(static_cast<int>(h), static_cast<int>(q_heads), static_cast<int>(kv_heads));
        const index_t end = causal ? std::min(count, offset + i + 1) : count;
        double top = -INFINITY, worst_dot = 0.0;
        index_t visible = 0;
        for (index_t j = 0; j < end; ++j) {
          if (!mask(b, j)) continue;
          double dot = 0.0, magnitude = 0.0;
          for (index_t d = 0; d < head_dim; ++d) {
            dot += static_cast<double>(q(b, i, h, d)) * k_store(b, kv, j, d);
            magnitude += std::fabs(static_cast<double>(q(b, i, h, d)) * k_store(b, kv, j, d));
          }
          scores[static_cast<std::size_t>(j)] = options.scale * dot;
          top = std::max(top, scores[static_cast<std::size_t>(j)]);
          worst_dot = std::max(worst_dot, magnitude);
          ++visible;
        }
        std::vector<double> acc(static_cast<std::size_t>(head_dim), 0.0);
        double sum = 0.0;
        for (index_t j = 0; j < end; ++j) {
          if (!mask(b, j)) continue;
          const double p = std::exp(scores[static_cast<std::size_t>(j)] - top);
          sum += p;
          for (index_t d = 0; d < head_dim; ++d) acc[static_cast<std::size_t>(d)] += p * v_store(b, kv, j, d);
        }
        const double ds = options.scale * static_cast<double>(head_dim + 2) * fp32_u * worst_dot;
        for (index_t d = 0; d < head_dim; ++d) {
          exact(b, i, h, d) = visible > 0 ? static_cast<float>(acc[static_cast<std::size_t>(d)] / sum) : 0.0f;
          bound[static_cast<std::size_t>(((b * q_len + i) * q_heads + h) * head_dim + d)] =
              2.0 * ds + static_cast<double>(4 * visible + 64) * fp32_u + 1e-7;
        }
      }
  check_close(got, exact, 1.0, 0.0, &bound, "GPU attention with key_count vs brute force");
  check_close(want, exact, 1.0, 0.0, &bound, "CPU attention with key_count vs brute force");
}
}  // namespace

TEST_CASE("ops::attention on CUDA with a key count on the device: the keys past it are never read", "[cuda][ops]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(19);
  // Decode (Tq = 1) over a store of 2048: split 32 ways by capacity, so at count 70 most splits
  // hold 3 keys and the last eight none; at 1500, 47 each.
  compare_counted_attention(rng, 2, 1, 70, 2048, 4, 2, 64, true, true, ops::kv_head_modulo{});
  compare_counted_attention(rng, 2, 1, 1500, 2048, 4, 2, 128, true, true, ops::kv_head_modulo{});
  compare_counted_attention(rng, 1, 1, 1500, 2048, 2, 1, 200, true, false, ops::kv_head_grouped{});
  compare_counted_attention(rng, 1, 1, 1, 2048, 4, 2, 64, true, false, ops::kv_head_modulo{});  // the first token
  compare_counted_attention(rng, 1, 1, 300, 300, 4, 2, 64, true, true, ops::kv_head_modulo{});  // a full store
  // Query tiles (Tq > 1): the queries are the last 19 of the count.
  compare_counted_attention(rng, 2, 19, 70, 2048, 4, 2, 64, true, true, ops::kv_head_modulo{});
  compare_counted_attention(rng, 2, 19, 19, 2048, 4, 2, 64, true, true, ops::kv_head_modulo{});  // a prefill
  compare_counted_attention(rng, 1, 19, 1500, 2048, 6, 2, 128, true, true, ops::kv_head_grouped{});
  compare_counted_attention(rng, 2, 17, 1500, 2048, 4, 2, 128, false, true, ops::kv_head_modulo{});  // not causal

  // The count must be where the kernels read it.
  const auto q = random_tensor<float, 4>(rng, make_dims(1, 1, 2, 16));   // (B, Tq, Hq, D)
  const auto kv = random_tensor<float, 4>(rng, make_dims(1, 8, 1, 16));  // (B, Tk, Hkv, D)
  const auto dq = up(q);
  const auto dkv = up(kv);
  tensor<float, 4, gpu_policy> dout(gpu(), q.extents());
  ops::attention_options options;
  const std::int32_t host_count = 5;
  options.key_count = &host_count;
  CHECK_THROWS_WITH(ops::attention(gpu(), dq.view(), dkv.view(), dkv.view(), dout.view(), options),
                    Catch::Contains("host memory passed as key_count"));
}

// ==== routing ===========================================================================================

namespace {
// Runs `router` on the same logits with both policies and compares the choices.
template <class Router>
void compare_router(const Router& cpu_router, const Router& gpu_router, const tensor<float, 2>& logits, index_t k,
                    const std::string& name) {
  const index_t tokens = logits.extent(0), experts = logits.extent(1);
  const index_t slots = routing::slots_per_token(cpu_router, k, experts);
  tensor<std::int32_t, 2> ids(make_dims(tokens, slots));
  tensor<float, 2> gates(make_dims(tokens, slots));
  cpu_router.route(cpu, logits.view(), k, ids.view(), gates.view());
  const auto dlogits = up(logits);
  tensor<std::int32_t, 2, gpu_policy> dids(gpu(), make_dims(tokens, slots));
  tensor<float, 2, gpu_policy> dgates(gpu(), make_dims(tokens, slots));
  gpu_router.route(gpu(), dlogits.view(), k, dids.view(), dgates.view());
  check_equal(down(dids), ids, name + " ids");
  check_close(down(dgates), gates, 2e-6, 1e-7, nullptr, name + " gates");
}
}  // namespace

TEST_CASE("every router runs on CUDA and chooses as on the CPU", "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  for (const index_t tokens : {1, 5, 1000}) {
    const auto logits = grid_logits(rng, tokens, 16);
    compare_router(routing::top_k_then_softmax{}, routing::top_k_then_softmax{}, logits, 2, "top_k_then_softmax");
    compare_router(routing::softmax_then_top_k{false}, routing::softmax_then_top_k{false}, logits, 3, "softmax_then_top_k");
    compare_router(routing::softmax_then_top_k{true}, routing::softmax_then_top_k{true}, logits, 3,
                   "softmax_then_top_k renormalised");
    compare_router(routing::switch_top1{}, routing::switch_top1{}, logits, 2, "switch_top1");
    compare_router(routing::noisy_top_k{0.5f, 11, 3}, routing::noisy_top_k{0.5f, 11, 3}, logits, 2, "noisy_top_k");
    // Expert choice compares probabilities across tokens, where an ulp of expf could reorder
    // equal-on-one-backend values: continuous logits have no such near-ties.
    const auto smooth = random_tensor<float, 2>(rng, make_dims(tokens, 16), 2.0f);
    compare_router(routing::expert_choice{1.0}, routing::expert_choice{1.0}, smooth, 2, "expert_choice");

    {  // a device plan reserves rows for E·C, not T·E: expert choice's capacity is its C
      const routing::expert_choice chooser{1.0};
      const auto dsmooth = up(smooth);
      routing::routing_plan<gpu_policy> plan;
      routing::plan_routing(gpu(), chooser, dsmooth.view(), 2, plan);
      const index_t per_expert = chooser.tokens_per_expert(tokens, 2, 16);
      CHECK(plan.max_sorted_rows() == 16 * per_expert);
      CHECK(plan.num_sorted_rows() == 16 * per_expert);
      CHECK(plan.num_dropped() == 0);
    }

    const auto bias = random_tensor<float, 1>(rng, make_dims(16), 0.1f);
    const auto dbias = up(bias);
    routing::sigmoid_top_k cpu_sigmoid{bias.view(), 4, 2, true, 2.5f};
    routing::sigmoid_top_k gpu_sigmoid{dbias.view(), 4, 2, true, 2.5f};
    compare_router(cpu_sigmoid, gpu_sigmoid, logits, 3, "sigmoid_top_k");
  }
}

TEST_CASE("sigmoid_top_k on CUDA rejects a selection bias in host memory", "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const auto logits = up(grid_logits(rng, 4, 16));                                 // (4, 16) device
  const auto host_bias = random_tensor<float, 1>(rng, make_dims(16), 0.1f);       // (16) host
  tensor<std::int32_t, 2, exec::cuda> ids(gpu(), make_dims(4, 2));                 // (4, 2)
  tensor<float, 2, exec::cuda> gates(gpu(), make_dims(4, 2));                      // (4, 2)
  const routing::sigmoid_top_k router{host_bias.view(), 4, 2, true, 1.0f};
  CHECK_THROWS_WITH(router.route(gpu(), logits.view(), 2, ids.view(), gates.view()),
                    Catch::Contains("selection_bias") && Catch::Contains("host memory"));
}

TEST_CASE("exec::cuda::check_pointers: a host operand is an error naming the op and the operand; nothing is written",
          "[cuda][ops][routing]") {
  SKIP_WITHOUT_GPU();
  gpu_policy checked = gpu();  // the same stream and pool, with the debug check on
  checked.check_pointers = true;
  std::mt19937 rng(21);
  const auto x = random_tensor<float, 2>(rng, make_dims(6, 32));           // (6, 32) host
  const auto w = random_tensor<bf16, 2>(rng, make_dims(24, 32), 0.5f);     // (24, 32) host
  const auto dx = up(x);
  const auto dw = up(w);
  auto dy = tensor<float, 2, gpu_policy>::zeros(checked, make_dims(6, 24));  // (6, 24) device
  const auto y_untouched = [&] {
    const tensor<float, 2> y = down(dy);
    for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);
  };
  CHECK_THROWS_WITH(ops::linear(checked, x.view(), dw.view(), dy.view()),
                    Catch::Contains("ops::linear: host memory passed as x"));
  CHECK_THROWS_WITH(ops::linear(checked, dx.view(), w.view(), dy.view()),
                    Catch::Contains("ops::linear: host memory passed as the weight"));
  y_untouched();

  // Device operands pass, views into the middle of an allocation too, and give the usual result.
  const auto dx_rows = tensor_view<const float, 2>(dx.view()).slice(0, 2, 6);  // (4, 32) rows 2…5
  tensor<float, 2> want(make_dims(4, 24));
  ops::linear(cpu, tensor_view<const float, 2>(x.view()).slice(0, 2, 6), w.view(), want.view());
  ops::linear(checked, dx_rows, dw.view(), dy.view().slice(0, 0, 4));
  check_close(down_rows(dy, 4), want, 1e-5, 1e-6, nullptr, "checked linear");

  // A routing primitive: the gather's rows.
  tensor<std::int32_t, 1> host_index(make_dims(3));  // (3)
  host_index(0) = 3, host_index(1) = 0, host_index(2) = 5;
  const auto index = up(host_index);                                       // (3) device
  tensor<float, 2, gpu_policy> gathered(checked, make_dims(3, 32));        // (3, 32)
  CHECK_THROWS_WITH(routing::gather(checked, x.view(), index.view(), gathered.view()),
                    Catch::Contains("routing::gather: host memory passed as the rows"));
}

TEST_CASE("routers on CUDA rank NaN logits as the CPU does: below every number, lower index first",
          "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(22);
  const index_t tokens = 40, experts = 16;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Rows by t mod 4: one NaN among numbers; one number among NaNs; only NaNs; no NaN.
  const auto with_nans = [&](tensor<float, 2> logits) {
    for (index_t t = 0; t < tokens; ++t) {
      const index_t e0 = t % experts;
      for (index_t e = 0; e < experts; ++e)
        if ((t % 4 == 0 && e == e0) || (t % 4 == 1 && e != e0) || t % 4 == 2) logits(t, e) = nan;
    }
    return logits;
  };
  const auto logits = with_nans(grid_logits(rng, tokens, experts));  // (T, E)
  compare_router(routing::top_k_then_softmax{}, routing::top_k_then_softmax{}, logits, 2, "top_k_then_softmax, NaN");
  compare_router(routing::softmax_then_top_k{false}, routing::softmax_then_top_k{false}, logits, 3,
                 "softmax_then_top_k, NaN");
  compare_router(routing::softmax_then_top_k{true}, routing::softmax_then_top_k{true}, logits, 3,
                 "softmax_then_top_k renormalised, NaN");
  compare_router(routing::switch_top1{}, routing::switch_top1{}, logits, 2, "switch_top1, NaN");
  compare_router(routing::noisy_top_k{0.5f, 11, 3}, routing::noisy_top_k{0.5f, 11, 3}, logits, 2, "noisy_top_k, NaN");
  const auto bias = random_tensor<float, 1>(rng, make_dims(experts), 0.1f);  // (E)
  const auto dbias = up(bias);
  compare_router(routing::sigmoid_top_k{bias.view(), 4, 2, true, 2.5f},
                 routing::sigmoid_top_k{dbias.view(), 4, 2, true, 2.5f}, logits, 3, "sigmoid_top_k, NaN");
  // Expert choice ranks probabilities across tokens: continuous logits, as in the test above.
  // A row with a NaN has only NaN probabilities; capacity factor 4 makes each expert take 20 of
  // the 40 tokens, more than the 10 without NaN, so the NaN rows' order (by token) decides too.
  const auto smooth = with_nans(random_tensor<float, 2>(rng, make_dims(tokens, experts), 2.0f));  // (T, E)
  compare_router(routing::expert_choice{4.0}, routing::expert_choice{4.0}, smooth, 2, "expert_choice, NaN");

  // The rule itself (routing/router.hpp), checked on the GPU's choices without the CPU's help.
  const auto dlogits = up(logits);
  tensor<std::int32_t, 2, gpu_policy> dids(gpu(), make_dims(tokens, 2));  // (T, 2)
  tensor<float, 2, gpu_policy> dgates(gpu(), make_dims(tokens, 2));       // (T, 2)
  routing::top_k_then_softmax{}.route(gpu(), dlogits.view(), 2, dids.view(), dgates.view());
  const auto ids = down(dids);
  const auto gates = down(dgates);
  for (index_t t = 0; t < tokens; ++t) {
    INFO("token " << t);
    const std::int32_t e0 = static_cast<std::int32_t>(t % experts);
    if (t % 4 == 0) {  // the NaN is never chosen, and the gates stay numbers
      CHECK((ids(t, 0) != e0 && ids(t, 1) != e0));
      CHECK((std::isfinite(gates(t, 0)) && std::isfinite(gates(t, 1))));
    } else if (t % 4 == 1) {  // the one number first, then the lowest-index NaN
      CHECK(ids(t, 0) == e0);
      CHECK(ids(t, 1) == (e0 == 0 ? 1 : 0));
    } else if (t % 4 == 2) {  // all NaN: by index
      CHECK((ids(t, 0) == 0 && ids(t, 1) == 1));
    }
  }
}

namespace {
// CPU and GPU plans built from the same hand-given (T, S) choices.
struct plan_pair {
  routing::routing_plan<exec::cpu> cpu_plan;
  routing::routing_plan<gpu_policy> gpu_plan;
};

void build_both(plan_pair& p, const tensor<std::int32_t, 2>& ids, const tensor<float, 2>& gates, index_t experts,
                routing::capacity_limit capacity) {
  const index_t tokens = ids.extent(0), slots = ids.extent(1);
  const auto c = p.cpu_plan.prepare(cpu, tokens, slots, experts);
  for (index_t i = 0; i < ids.size(); ++i) {
    c.expert_ids.data()[i] = ids.data()[i];
    c.gates.data()[i] = gates.data()[i];
  }
  routing::build_plan(cpu, p.cpu_plan, capacity);
  const auto d = p.gpu_plan.prepare(gpu(), tokens, slots, experts);
  upload_into(ids, d.expert_ids);
  upload_into(gates, d.gates);
  routing::build_plan(gpu(), p.gpu_plan, capacity);
}

void check_same_plan(const plan_pair& p, routing::capacity_limit capacity) {
  const auto& a = p.cpu_plan;
  const auto& b = p.gpu_plan;
  // The device plan's row capacity R is known before its counts: T·S, or E·capacity if smaller.
  const index_t total = b.num_tokens() * b.slots_per_token();
  const index_t bound = capacity.is_limited() ? std::min(total, capacity.per_expert * b.num_experts()) : total;
  REQUIRE(b.max_sorted_rows() == bound);
  REQUIRE(a.max_sorted_rows() == a.num_sorted_rows());  // a host plan: R = N
  REQUIRE(b.num_sorted_rows() == a.num_sorted_rows());
  REQUIRE(b.num_dropped() == a.num_dropped());
  REQUIRE(b.num_empty_slots() == a.num_empty_slots());
  const index_t rows = a.num_sorted_rows();
  const auto host = [](tensor_view<const std::int32_t, 1> v) {
    tensor<std::int32_t, 1> t(v.extents());
    for (index_t i = 0; i < v.size(); ++i) t(i) = v(i);
    return t;
  };
  check_equal(down(b.routed_counts()), host(a.routed_counts()), "routed_counts");
  check_equal(down(b.counts()), host(a.counts()), "counts");
  check_equal(down(b.offsets()), host(a.offsets()), "offsets");
  check_equal(down(b.sorted_slot().slice(0, 0, rows)), host(a.sorted_slot()), "sorted_slot");
  check_equal(down(b.sorted_token().slice(0, 0, rows)), host(a.sorted_token()), "sorted_token");
  check_equal(down(b.slot_to_sorted()), host(a.slot_to_sorted()), "slot_to_sorted");
  check_equal(down(b.dropped_slots()), host(a.dropped_slots()), "dropped_slots");
  // Padding rows N … R−1: token 0, and slots that are valid and not kept (a gather stays in bounds).
  const auto tokens = down(b.sorted_token()), slots = down(b.sorted_slot()), to_sorted = down(b.slot_to_sorted());
  for (index_t r = rows; r < bound; ++r) {
    INFO("padding row " << r);
    REQUIRE(tokens(r) == 0);
    REQUIRE((0 <= slots(r) && slots(r) < total));
    REQUIRE(to_sorted(slots(r)) == -1);
  }
}

void random_choices(std::mt19937& rng, index_t tokens, index_t slots, index_t experts, double empty_fraction,
                    tensor<std::int32_t, 2>& ids, tensor<float, 2>& gates) {
  ids = tensor<std::int32_t, 2>(make_dims(tokens, slots));
  gates = tensor<float, 2>(make_dims(tokens, slots));
  std::uniform_int_distribution<int> expert(0, static_cast<int>(experts) - 1);
  std::uniform_int_distribution<int> gate_step(0, 7);  // coarse gates: many ties for by_gate
  std::bernoulli_distribution empty(empty_fraction);
  for (index_t i = 0; i < ids.size(); ++i) {
    ids.data()[i] = empty(rng) ? routing::no_expert : expert(rng);
    gates.data()[i] = ids.data()[i] == routing::no_expert ? 0.0f : static_cast<float>(gate_step(rng)) / 8.0f;
  }
}

// One routed batch on both backends, as the grouped-linear tests use it: 2 of `experts` per
// token at random (a fraction `empty_fraction` of the slots empty) or the choices given, the
// plan built on each backend (with `capacity`), x on the host and the device, scratch, and the
// inputs read through the plans.
struct routed_batch {
  tensor<std::int32_t, 2> ids;       // (T, S): S = 2 when chosen at random
  tensor<float, 2> gates;            // (T, S)
  plan_pair p;
  index_t rows = 0;                  // N: the plans' sorted rows
  index_t gpu_rows = 0;              // R: rows of the device plan's sorted arrays (N, then padding)
  tensor<float, 2> x;                // (T, hidden)
  tensor<float, 2, gpu_policy> dx;   // (T, hidden)
  routing::expert_scratch<exec::cpu> cpu_scratch;
  routing::expert_scratch<gpu_policy> gpu_scratch;
  routing::expert_input cpu_in, gpu_in;  // x / dx through each plan's sorted_token

  routed_batch(std::mt19937& rng, index_t tokens, index_t experts, index_t hidden, double empty_fraction,
               routing::capacity_limit capacity = {}) {
    random_choices(rng, tokens, 2, experts, empty_fraction, ids, gates);
    route(rng, experts, hidden, capacity);
  }
  routed_batch(std::mt19937& rng, tensor<std::int32_t, 2> given_ids, tensor<float, 2> given_gates, index_t experts,
               index_t hidden)
      : ids(std::move(given_ids)), gates(std::move(given_gates)) {
    route(rng, experts, hidden, {});
  }

 private:
  void route(std::mt19937& rng, index_t experts, index_t hidden, routing::capacity_limit capacity) {
    build_both(p, ids, gates, experts, capacity);
    rows = p.cpu_plan.num_sorted_rows();
    gpu_rows = p.gpu_plan.max_sorted_rows();
    x = random_tensor<float, 2>(rng, make_dims(ids.extent(0), hidden));
    dx = up(x);
    cpu_in = routing::expert_input::indexed(x.view(), p.cpu_plan.sorted_token());
    gpu_in = routing::expert_input::indexed(dx.view(), p.gpu_plan.sorted_token());
  }
};
}  // namespace

TEST_CASE("routing::build_plan on CUDA equals the CPU plan, with and without capacity", "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  for (const index_t tokens : {1, 37, 3000}) {
    for (const index_t experts : {1, 8, 64}) {
      for (const double empty : {0.0, 0.2}) {
        tensor<std::int32_t, 2> ids;
        tensor<float, 2> gates;
        random_choices(rng, tokens, 2, experts, empty, ids, gates);
        const index_t tight = std::max<index_t>(1, tokens * 2 / experts / 2);
        for (const routing::capacity_limit capacity :
             {routing::capacity_limit{}, routing::capacity_limit{tight, routing::drop_policy::by_position},
              routing::capacity_limit{tight, routing::drop_policy::by_gate}, routing::capacity_limit{0}}) {
          INFO("T=" << tokens << " E=" << experts << " empty=" << empty << " capacity=" << capacity.per_expert
                    << " by_gate=" << (capacity.policy == routing::drop_policy::by_gate));
          plan_pair p;
          build_both(p, ids, gates, experts, capacity);
          check_same_plan(p, capacity);
        }
      }
    }
  }
  // No tokens at all.
  plan_pair empty_pair;
  build_both(empty_pair, tensor<std::int32_t, 2>(make_dims(0, 2)), tensor<float, 2>(make_dims(0, 2)), 4, {});
  CHECK(empty_pair.gpu_plan.num_sorted_rows() == 0);
  check_equal(down(empty_pair.gpu_plan.offsets()), tensor<std::int32_t, 1>::zeros(make_dims(5)), "empty offsets");

  // An expert id out of range: build_plan queues without waiting, and the first count asked
  // for (the wait) throws it and leaves the plan unbuilt, as the CPU's build_plan does.
  tensor<std::int32_t, 2> ids;
  tensor<float, 2> gates;
  random_choices(rng, 10, 2, 4, 0.0, ids, gates);
  ids(3, 1) = 4;
  routing::routing_plan<gpu_policy> plan;
  const auto out = plan.prepare(gpu(), 10, 2, 4);
  upload_into(ids, out.expert_ids);
  upload_into(gates, out.gates);
  routing::build_plan(gpu(), plan, {});
  CHECK_THROWS_WITH(plan.num_sorted_rows(), Catch::Contains("slot 7 names expert 4"));
  CHECK_FALSE(plan.is_built());
  gpu().synchronize();  // the error was reported once: nothing is left pending
}

TEST_CASE("gather, scatter_to_slots and combine on CUDA equal the CPU results", "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(10);
  tensor<std::int32_t, 2> ids;
  tensor<float, 2> gates;
  random_choices(rng, 200, 3, 8, 0.1, ids, gates);
  plan_pair p;
  build_both(p, ids, gates, 8, routing::capacity_limit{60});
  const index_t rows = p.cpu_plan.num_sorted_rows(), gpu_rows = p.gpu_plan.max_sorted_rows(), width = 40;

  const auto x = random_tensor<float, 2>(rng, make_dims(200, width));
  const auto dx = up(x);
  tensor<float, 2> gathered(make_dims(rows, width));
  routing::gather(cpu, x.view(), p.cpu_plan.sorted_token(), gathered.view());
  tensor<float, 2, gpu_policy> dgathered(g, make_dims(gpu_rows, width));  // (R, D): N rows, then padding
  routing::gather(g, dx.view(), p.gpu_plan.sorted_token(), dgathered.view());
  check_equal(down_rows(dgathered, rows), gathered, "gather");

  tensor<float, 3> slots(make_dims(200, 3, width));
  routing::scatter_to_slots(cpu, p.cpu_plan, gathered.view(), slots.view());
  tensor<float, 3, gpu_policy> dslots(g, make_dims(200, 3, width));
  routing::scatter_to_slots(g, p.gpu_plan, dgathered.view(), dslots.view());
  check_equal(down(dslots), slots, "scatter_to_slots");

  const auto bias = random_tensor<bf16, 1>(rng, make_dims(width));
  const auto dbias = up(bias);
  tensor<float, 2> y(make_dims(200, width));
  routing::combine(cpu, p.cpu_plan, tensor_view<const float, 2>(gathered.view()), y.view(), bias.view());
  tensor<float, 2, gpu_policy> dy(g, make_dims(200, width));
  routing::combine(g, p.gpu_plan, tensor_view<const float, 2>(dgathered.view()), dy.view(), dbias.view());
  check_close(down(dy), y, 1e-6, 1e-6, nullptr, "combine");

  // A bad index zeroes its row and is reported at the next synchronisation.
  tensor<std::int32_t, 1> index(make_dims(3));
  index(0) = 5;
  index(1) = 200;
  index(2) = 0;
  const auto dindex = up(index);
  tensor<float, 2, gpu_policy> dbad(g, make_dims(3, width));
  routing::gather(g, dx.view(), dindex.view(), dbad.view());
  CHECK_THROWS_WITH(g.synchronize(), Catch::Contains("index 200 at 1"));
}

TEMPLATE_TEST_CASE("grouped_linear, grouped_glu and grouped_glu_mlp on CUDA match the CPU backend", "[cuda][routing]",
                   float, bf16) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  const gpu_policy g = gpu_with_tensor_cores(false);
  std::mt19937 rng(11);
  const index_t experts = 6, hidden = 48, inner = 40;
  const auto w_in = random_tensor<W, 3>(rng, make_dims(experts, 2 * inner, hidden), 0.3f);
  const auto w_out = random_tensor<W, 3>(rng, make_dims(experts, hidden, inner), 0.3f);
  const auto dw_in = up(w_in);
  const auto dw_out = up(w_out);
  // Every grouped call on both backends for one routed batch.
  const auto check_batch = [&](routed_batch& b) {
    tensor<float, 2> h(make_dims(b.rows, 2 * inner));
    routing::grouped_linear(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), h.view(), b.cpu_scratch);
    tensor<float, 2, gpu_policy> dh(g, make_dims(b.gpu_rows, 2 * inner));
    routing::grouped_linear(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), dh.view(), b.gpu_scratch);
    check_close(down_rows(dh, b.rows), h, 1e-5, 1e-5, nullptr, "grouped_linear");

    tensor<float, 2> u(make_dims(b.rows, inner));
    routing::grouped_glu(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), u.view(), b.cpu_scratch);
    tensor<float, 2, gpu_policy> du(g, make_dims(b.gpu_rows, inner));
    routing::grouped_glu(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), du.view(), b.gpu_scratch);
    check_close(down_rows(du, b.rows), u, 1e-5, 1e-5, nullptr, "grouped_glu");

    // Sorted input (after a gather) gives the same as the indexed read.
    tensor<float, 2, gpu_policy> dgathered(g, make_dims(b.gpu_rows, hidden));
    routing::gather(g, b.dx.view(), b.p.gpu_plan.sorted_token(), dgathered.view());
    tensor<float, 2, gpu_policy> du_sorted(g, make_dims(b.gpu_rows, inner));
    routing::grouped_glu(g, b.p.gpu_plan, routing::expert_input::sorted(dgathered.view()), dw_in.view(), du_sorted.view(),
                         b.gpu_scratch);
    check_equal(down_rows(du_sorted, b.rows), down_rows(du, b.rows), "grouped_glu sorted vs indexed");

    tensor<float, 2> z(make_dims(b.rows, hidden));
    routing::grouped_glu_mlp(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), w_out.view(), z.view(), b.cpu_scratch);
    tensor<float, 2, gpu_policy> dz(g, make_dims(b.gpu_rows, hidden));
    routing::grouped_glu_mlp(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), dw_out.view(), dz.view(), b.gpu_scratch);
    check_close(down_rows(dz, b.rows), z, 1e-5, 1e-5, nullptr, "grouped_glu_mlp");
  };
  for (const index_t tokens : {1, 3, 150}) {
    routed_batch b(rng, tokens, experts, hidden, 0.0);
    INFO("T=" << tokens << " N=" << b.rows);
    check_batch(b);
  }

  // T <= 8 goes to the GEMV whatever R is (an expert gets at most T rows when a token names it
  // once): R = 16 below. Hand-made repeats put 10–21 rows in one expert's segment, which the
  // GEMV must take in several 8-row passes.
  struct shape { index_t tokens, slots; int repeated; const char* what; };
  for (const shape sh : {shape{4, 4, -1, "distinct experts, T=4 k=4"}, shape{8, 2, 5, "16 rows, all to expert 5"},
                         shape{7, 3, 0, "21 rows, all to expert 0"}, shape{5, 2, 3, "10 rows to expert 3: 8 + 2"}}) {
    INFO(sh.what);
    tensor<std::int32_t, 2> ids(make_dims(sh.tokens, sh.slots));
    tensor<float, 2> gates(make_dims(sh.tokens, sh.slots));
    for (index_t t = 0; t < sh.tokens; ++t)
      for (index_t j = 0; j < sh.slots; ++j) {
        ids(t, j) = sh.repeated >= 0 ? sh.repeated : static_cast<std::int32_t>((3 * t + 5 * j) % experts);
        gates(t, j) = 0.25f;
      }
    routed_batch b(rng, std::move(ids), std::move(gates), experts, hidden);
    REQUIRE(b.rows == sh.tokens * sh.slots);
    check_batch(b);
  }
}

namespace {
// Σ_k |x[token(r), k] · w[e(r)][o][k]| for every sorted row r and output o of a CPU plan.
template <class W>
std::vector<double> grouped_magnitudes(const tensor<float, 2>& x, const routing::routing_plan<exec::cpu>& plan,
                                       const tensor<W, 3>& w) {
  const index_t rows = plan.num_sorted_rows(), out = w.extent(1), in = w.extent(2);
  std::vector<double> m(static_cast<std::size_t>(rows * out), 0.0);
  for (index_t e = 0; e < plan.num_experts(); ++e)
    for (index_t r = plan.offsets()(e); r < plan.offsets()(e + 1); ++r)
      for (index_t o = 0; o < out; ++o) {
        double s = 0.0;
        for (index_t k = 0; k < in; ++k)
          s += std::fabs(static_cast<double>(x(plan.sorted_token()(r), k)) * to_float(w(e, o, k)));
        m[static_cast<std::size_t>(r * out + o)] = s;
      }
  return m;
}
}  // namespace

TEMPLATE_TEST_CASE("grouped linears on tensor cores (WMMA) match the CPU backend within the rounding of x",
                   "[cuda][routing]", bf16, jhalf) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  const gpu_policy g = gpu_with_tensor_cores(true);
  std::mt19937 rng(14);
  const index_t experts = 5, inner = 50;  // neither a multiple of the 64/32 tiles
  const double rel = tensor_core_rel<W>() + 1e-5;
  // K = 72 takes the 16-byte operand loads, K = 70 (not a whole number of vectors) the
  // element-wise ones.
  for (const index_t hidden : {72, 70}) {
    const auto w_in = random_tensor<W, 3>(rng, make_dims(experts, 2 * inner, hidden), 0.3f);
    const auto dw_in = up(w_in);
    for (const index_t tokens : {9, 200}) {
      routed_batch b(rng, tokens, experts, hidden, 0.1);
      INFO("K=" << hidden << " T=" << tokens << " N=" << b.rows);

      tensor<float, 2> h(make_dims(b.rows, 2 * inner));
      routing::grouped_linear(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), h.view(), b.cpu_scratch);
      tensor<float, 2, gpu_policy> dh(g, make_dims(b.gpu_rows, 2 * inner));
      routing::grouped_linear(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), dh.view(), b.gpu_scratch);
      const auto m = grouped_magnitudes(b.x, b.p.cpu_plan, w_in);
      check_close(down_rows(dh, b.rows), h, rel, 1e-6, &m, "grouped_linear on tensor cores");

      // GLU: bound |Δ(silu(g)·u)| through |silu'| ≤ 1.1 and the bounds on g and u.
      tensor<float, 2> u(make_dims(b.rows, inner));
      routing::grouped_glu(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), u.view(), b.cpu_scratch);
      tensor<float, 2, gpu_policy> du(g, make_dims(b.gpu_rows, inner));
      routing::grouped_glu(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), du.view(), b.gpu_scratch);
      std::vector<double> bound(static_cast<std::size_t>(b.rows * inner));
      for (index_t r = 0; r < b.rows; ++r)
        for (index_t i = 0; i < inner; ++i) {
          const double dg = rel * m[static_cast<std::size_t>(r * 2 * inner + i)] + 1e-6;
          const double du_ = rel * m[static_cast<std::size_t>(r * 2 * inner + inner + i)] + 1e-6;
          const double gate = std::fabs(h(r, i)) + dg, upv = std::fabs(h(r, inner + i)) + du_;
          bound[static_cast<std::size_t>(r * inner + i)] = 1.1 * dg * upv + (gate + dg) * du_;
        }
      check_close(down_rows(du, b.rows), u, 1.0, 1e-6, &bound, "grouped_glu on tensor cores");
    }
  }
}

namespace {
// Relative bound of one GEMM's output against Σ|x·w| (the Tolerances above): operand rounding
// when its input may be rounded to W on tensor cores, and the summation order either way.
template <class W>
double gemm_rel(bool rounded, index_t k) {
  const double r = rounded ? operand_rounding<W>() : 0.0;
  return r + (1.0 + r) * sum_order_rel(k);
}

// Per-element bound on |GPU − CPU| for grouped_glu_mlp's output z (N, H) over a CPU plan,
// propagated row by row from the CPU's own intermediates (h, u):
//   h = W_in·x       |Δh| ≤ rel_in·Σ|x·w_in| + 1e-7
//   u = silu(g)·up   |Δu| ≤ 1.1·Δg·|up| + (|g| + Δg)·Δup + 2e-6·(|g| + Δg)·(|up| + Δup)
//                    (|silu'| ≤ 1.1 and |silu(g)| ≤ |g|; 2e-6 for the GLU's own ulps, as above)
//   z = W_out·u      |Δz| ≤ Σ|w_out|·Δu + rel_out·Σ|w_out|·(|u| + Δu) + 1e-7
// rel_in, rel_out: gemm_rel of each GEMM. `magnitude`, if given, gets Σ|w_out|·(|u| + Δu) ≥ |z|.
template <class W>
std::vector<double> glu_mlp_bound(const tensor<float, 2>& x, const routing::routing_plan<exec::cpu>& plan,
                                  const tensor<W, 3>& w_in, const tensor<W, 3>& w_out, double rel_in, double rel_out,
                                  std::vector<double>* magnitude = nullptr) {
  const index_t rows = plan.num_sorted_rows(), inner = w_out.extent(2), hidden = w_out.extent(1);
  routing::expert_scratch<exec::cpu> scratch;
  const auto in = routing::expert_input::indexed(x.view(), plan.sorted_token());
  tensor<float, 2> h(make_dims(rows, 2 * inner));  // (N, 2I)
  routing::grouped_linear(cpu, plan, in, w_in.view(), h.view(), scratch);
  tensor<float, 2> u(make_dims(rows, inner));  // (N, I)
  routing::grouped_glu(cpu, plan, in, w_in.view(), u.view(), scratch);
  const auto m = grouped_magnitudes(x, plan, w_in);  // (N, 2I) Σ|x·w_in|
  std::vector<double> bound(static_cast<std::size_t>(rows * hidden));
  if (magnitude) magnitude->assign(bound.size(), 0.0);
  std::vector<double> du(static_cast<std::size_t>(inner));  // (I)
  for (index_t e = 0; e < plan.num_experts(); ++e)
    for (index_t r = plan.offsets()(e); r < plan.offsets()(e + 1); ++r) {
      for (index_t i = 0; i < inner; ++i) {
        const double dg = rel_in * m[static_cast<std::size_t>(r * 2 * inner + i)] + 1e-7;
        const double dup = rel_in * m[static_cast<std::size_t>(r * 2 * inner + inner + i)] + 1e-7;
        const double gate = std::fabs(h(r, i)), upv = std::fabs(h(r, inner + i));
        du[static_cast<std::size_t>(i)] = 1.1 * dg * upv + (gate + dg) * dup + 2e-6 * (gate + dg) * (upv + dup);
      }
      for (index_t o = 0; o < hidden; ++o) {
        double propagated = 0.0, size = 0.0;
        for (index_t i = 0; i < inner; ++i) {
          const double a = std::fabs(to_float(w_out(e, o, i)));
          propagated += a * du[static_cast<std::size_t>(i)];
          size += a * (std::fabs(u(r, i)) + du[static_cast<std::size_t>(i)]);
        }
        bound[static_cast<std::size_t>(r * hidden + o)] = propagated + rel_out * size + 1e-7;
        if (magnitude) (*magnitude)[static_cast<std::size_t>(r * hidden + o)] = size;
      }
    }
  return bound;
}
}  // namespace

TEMPLATE_TEST_CASE("grouped_glu_mlp on CUDA and tensor cores: 4096-row windows, padding rows, capacity drops",
                   "[cuda][routing]", bf16, jhalf) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  std::mt19937 rng(17);
  const index_t experts = 6, hidden = 48, inner = 40;
  const auto w_in = random_tensor<W, 3>(rng, make_dims(experts, 2 * inner, hidden), 0.3f);  // (E, 2I, H)
  const auto w_out = random_tensor<W, 3>(rng, make_dims(experts, hidden, inner), 0.3f);    // (E, H, I)
  const auto dw_in = up(w_in);
  const auto dw_out = up(w_out);
  constexpr index_t unlimited = routing::capacity_limit::unlimited;
  struct batch_shape {
    index_t tokens;
    double empty;
    index_t capacity;
    const char* what;
  };
  const batch_shape shapes[] = {
      {150, 0.1, unlimited, "R = 300 with ~30 empty slots: padding rows past N"},
      {2050, 0.0, unlimited, "R = 4100: a window of 4096 rows, then one of 4 (on the GEMV)"},
      {2100, 0.0, unlimited, "R = 4200: windows of 4096 and 104 rows"},
      {300, 0.0, 40, "capacity 40: R = 240 of 600 slots, the rest dropped"},
      {300, 0.0, 6, "capacity 6: at most 6 rows per expert, so the GEMV at T = 300"},
  };
  for (const batch_shape& shape : shapes) {
    routed_batch b(rng, shape.tokens, experts, hidden, shape.empty, routing::capacity_limit{shape.capacity});
    INFO(shape.what << ": T=" << shape.tokens << " N=" << b.rows << " R=" << b.gpu_rows);
    REQUIRE(b.p.gpu_plan.num_sorted_rows() == b.rows);
    check_equal(down(b.p.gpu_plan.sorted_token().slice(0, 0, b.rows)), host_copy(b.p.cpu_plan.sorted_token()),
                "sorted tokens");
    if (shape.capacity != unlimited) REQUIRE(b.p.cpu_plan.num_dropped() > 0);
    tensor<float, 2> z(make_dims(b.rows, hidden));  // (N, H)
    routing::grouped_glu_mlp(cpu, b.p.cpu_plan, b.cpu_in, w_in.view(), w_out.view(), z.view(), b.cpu_scratch);
    for (const bool tensor_cores : {false, true}) {
      INFO((tensor_cores ? "tensor cores" : "CUDA cores"));
      const gpu_policy g = gpu_with_tensor_cores(tensor_cores);
      // On tensor cores a window of more than 8 rows rounds both GEMMs' inputs (x, then u) to W.
      const auto bound = glu_mlp_bound(b.x, b.p.cpu_plan, w_in, w_out, gemm_rel<W>(tensor_cores, hidden),
                                       gemm_rel<W>(tensor_cores, inner));
      // Rows N … R−1 are padding, neither read nor written: they keep the sentinel.
      tensor<float, 2> sentinel(make_dims(b.gpu_rows, hidden));  // (R, H)
      for (index_t i = 0; i < sentinel.size(); ++i) sentinel.data()[i] = 777.0f;
      auto dz = up(sentinel);
      routing::grouped_glu_mlp(g, b.p.gpu_plan, b.gpu_in, dw_in.view(), dw_out.view(), dz.view(), b.gpu_scratch);
      check_close(down_rows(dz, b.rows), z, 1.0, 0.0, &bound, "grouped_glu_mlp");
      const auto got = down(dz);
      index_t touched = 0;
      for (index_t r = b.rows; r < b.gpu_rows; ++r)
        for (index_t o = 0; o < hidden; ++o) touched += got(r, o) != 777.0f;
      CHECK(touched == 0);
    }
  }
}

namespace {
// One MoE MLP's weights on both sides. The router is on the grid (multiples of 1/64 in
// [-1/2, 1/2]); with x on the grid too (multiples of 1/8 in [-1, 1]) every router logit is a
// multiple of 2^-9 below 2^6 and so exact in fp32 on every path (GEMV, cuBLAS on tensor cores,
// the CPU): both backends route identically by construction, ties included.
template <class W>
struct moe_case {
  tensor<W, 2> router;  // (E, H)
  tensor<W, 3> w_in;    // (E, 2I, H)
  tensor<W, 3> w_out;   // (E, H, I)
  tensor<W, 1> bias;    // (H)
  tensor<W, 2, gpu_policy> drouter;
  tensor<W, 3, gpu_policy> dw_in, dw_out;
  tensor<W, 1, gpu_policy> dbias;

  moe_case(std::mt19937& rng, index_t experts, index_t hidden, index_t inner)
      : router(grid_tensor<W, 2>(rng, make_dims(experts, hidden), 32, 64.0f)),
        w_in(random_tensor<W, 3>(rng, make_dims(experts, 2 * inner, hidden), 0.2f)),
        w_out(random_tensor<W, 3>(rng, make_dims(experts, hidden, inner), 0.2f)),
        bias(random_tensor<W, 1>(rng, make_dims(hidden), 0.1f)) {
    upload();
  }
  void upload() {  // again after editing the host weights
    drouter = up(router);
    dw_in = up(w_in);
    dw_out = up(w_out);
    dbias = up(bias);
  }
  routing::moe_mlp_weights<W> on_cpu() const { return {router.view(), w_in.view(), w_out.view(), bias.view()}; }
  routing::moe_mlp_weights<W> on_gpu() const { return {drouter.view(), dw_in.view(), dw_out.view(), dbias.view()}; }
};

// Bound on |Δy| for y_t = Σ_j gate_j·z_{row(t, j)} + bias (routing::combine) from per-row bounds
// dz and magnitudes mz ≥ |z| (N, H) on the CPU plan: the gates differ by ≤ 2e-6 relative (the
// router tolerance above), the S + 1 fp32 additions by sum_order_rel(S + 1) of what they add.
template <class B>
std::vector<double> combine_bound(const routing::routing_plan<exec::cpu>& plan, const std::vector<double>& dz,
                                  const std::vector<double>& mz, index_t hidden, const tensor<B, 1>& bias) {
  const index_t tokens = plan.num_tokens(), slots = plan.slots_per_token();
  std::vector<double> bound(static_cast<std::size_t>(tokens * hidden));
  for (index_t t = 0; t < tokens; ++t)
    for (index_t o = 0; o < hidden; ++o) {
      double b = 0.0, size = std::fabs(to_float(bias(o)));
      for (index_t j = 0; j < slots; ++j) {
        const std::int32_t row = plan.slot_to_sorted()(t * slots + j);
        if (row < 0) continue;
        const double gate = std::fabs(plan.gates()(t, j));
        const std::size_t at = static_cast<std::size_t>(row * hidden + o);
        b += gate * (1.0 + 2e-6) * dz[at] + 2e-6 * gate * mz[at];
        size += gate * mz[at];
      }
      bound[static_cast<std::size_t>(t * hidden + o)] = b + sum_order_rel(slots + 1) * size + 1e-6;
    }
  return bound;
}

struct routing_summary {
  std::vector<std::int32_t> counts;  // (E) the CPU plan's rows per expert
  index_t dropped = 0;
};

// Runs `moe` on both backends over x on the grid (so rounding x to W is exact: the first GEMM
// differs only in summation order) and checks: router logits to the bit, the same routing
// (ids, gates within 2e-6, kept rows, drops), and y within the propagated bound. The second
// GEMM may round u to W when the policy has tensor cores on (plans of more than 8 rows).
template <class W, class Router>
routing_summary compare_moe_layer(const gpu_policy& g, const routing::moe_mlp<Router>& moe, const moe_case<W>& w,
                                  const tensor<float, 2>& x, const std::string& what) {
  const index_t tokens = x.extent(0), hidden = x.extent(1), experts = w.router.extent(0), inner = w.w_out.extent(2);
  INFO(what << ": T=" << tokens << " E=" << experts << " k=" << moe.top_k
            << (g.tensor_cores ? ", tensor cores" : ", CUDA cores"));
  routing::routing_workspace<exec::cpu> cpu_ws;
  routing::routing_workspace<gpu_policy> gpu_ws;
  const auto dx = up(x);
  tensor<float, 2> y(make_dims(tokens, hidden));                   // (T, H)
  tensor<float, 2> logits(make_dims(tokens, experts));             // (T, E)
  tensor<float, 2, gpu_policy> dy(g, make_dims(tokens, hidden));   // (T, H)
  tensor<float, 2, gpu_policy> dlogits(g, make_dims(tokens, experts));  // (T, E)
  const auto& cp = moe.forward(cpu, w.on_cpu(), x.view(), y.view(), cpu_ws, logits.view());
  const auto& gp = moe.forward(g, w.on_gpu(), dx.view(), dy.view(), gpu_ws, dlogits.view());
  check_close(down(dlogits), logits, 0.0, 0.0, nullptr, what + ": router logits (exact: grid operands)");
  check_equal(down(gp.expert_ids()), host_copy(cp.expert_ids()), what + ": expert ids");
  check_close(down(gp.gates()), host_copy(cp.gates()), 2e-6, 1e-7, nullptr, what + ": gates");
  REQUIRE(gp.num_sorted_rows() == cp.num_sorted_rows());
  REQUIRE(gp.num_dropped() == cp.num_dropped());
  check_equal(down(gp.slot_to_sorted()), host_copy(cp.slot_to_sorted()), what + ": slot_to_sorted");
  std::vector<double> mz;
  const auto dz =
      glu_mlp_bound(x, cp, w.w_in, w.w_out, gemm_rel<W>(false, hidden), gemm_rel<W>(g.tensor_cores, inner), &mz);
  const auto bound = combine_bound(cp, dz, mz, hidden, w.bias);
  check_close(down(dy), y, 1.0, 0.0, &bound, what + ": output");
  routing_summary summary;
  for (index_t e = 0; e < experts; ++e) summary.counts.push_back(cp.counts()(e));
  summary.dropped = cp.num_dropped();
  return summary;
}
}  // namespace

TEMPLATE_TEST_CASE("moe_mlp and mixture_of_attention on CUDA, tensor cores and CUDA cores, within propagated bounds",
                   "[cuda][routing]", float, bf16, jhalf) {
  SKIP_WITHOUT_GPU();
  using W = TestType;
  std::mt19937 rng(20);
  const index_t experts = 8, hidden = 64, inner = 48, width = 32;
  const moe_case<W> w(rng, experts, hidden, inner);
  const auto q_in = random_tensor<W, 3>(rng, make_dims(experts, width, hidden), 0.2f);   // (E, Dq, H)
  const auto q_out = random_tensor<W, 3>(rng, make_dims(experts, hidden, width), 0.2f);  // (E, H, Dq)
  const auto dq_in = up(q_in);
  const auto dq_out = up(q_out);
  const routing::moa_weights<W> cpu_a{w.router.view(), q_in.view(), q_out.view(), w.bias.view()};
  const routing::moa_weights<W> gpu_a{w.drouter.view(), dq_in.view(), dq_out.view(), w.dbias.view()};
  const routing::moe_mlp<> moe{};
  routing::moe_mlp<> gathered{};
  gathered.input = routing::expert_input_path::gathered;
  const routing::mixture_of_attention<> moa{};
  const index_t slots = moa.slots(experts);
  for (const bool tensor_cores : {true, false}) {
    const gpu_policy g = gpu_with_tensor_cores(tensor_cores);
    for (const index_t tokens : {1, 4, 9, 257}) {  // R = 2, 8 (the GEMV, fp32), 18, 514 (tiles; WMMA if rounded)
      const auto x = grid_tensor<float, 2>(rng, make_dims(tokens, hidden), 8, 8.0f);  // (T, H)
      compare_moe_layer(g, moe, w, x, "moe_mlp");
      if (tokens == 257) compare_moe_layer(g, gathered, w, x, "moe_mlp, gathered input");

      // MoA on the same router and x: compare_moe_layer checked the routing is the same.
      INFO("MoA: T=" << tokens << (tensor_cores ? ", tensor cores" : ", CUDA cores"));
      routing::routing_workspace<exec::cpu> cpu_ws;
      routing::routing_workspace<gpu_policy> gpu_ws;
      const auto dx = up(x);
      tensor<float, 3> q(make_dims(tokens, slots, width));                  // (T, S, Dq)
      tensor<float, 3, gpu_policy> dq(g, make_dims(tokens, slots, width));  // (T, S, Dq)
      const auto& cp = moa.map(cpu, cpu_a, x.view(), q.view(), cpu_ws);
      const auto& gp = moa.map(g, gpu_a, dx.view(), dq.view(), gpu_ws);
      check_equal(down(gp.slot_to_sorted()), host_copy(cp.slot_to_sorted()), "moa slot_to_sorted");
      // Queries: x is exact in W, so only the summation order of the H-term sums.
      const auto m = grouped_magnitudes(x, cp, q_in);  // (N, Dq)
      std::vector<double> q_bound(static_cast<std::size_t>(q.size()), 0.0);  // empty slots: exact zeros
      for (index_t s = 0; s < tokens * slots; ++s) {
        const std::int32_t row = cp.slot_to_sorted()(s);
        if (row < 0) continue;
        for (index_t c = 0; c < width; ++c)
          q_bound[static_cast<std::size_t>(s * width + c)] =
              sum_order_rel(hidden) * m[static_cast<std::size_t>(row * width + c)] + 1e-7;
      }
      check_close(down(dq), q, 1.0, 0.0, &q_bound, "moa map");

      // Reduce from one attention output o on both sides: z_r = W_o[e]·o[slot(r)] may round o.
      const auto o = random_tensor<float, 3>(rng, make_dims(tokens, slots, width));  // (T, S, Dq)
      const auto d_o = up(o);
      tensor<float, 2> y(make_dims(tokens, hidden));                  // (T, H)
      tensor<float, 2, gpu_policy> dy(g, make_dims(tokens, hidden));  // (T, H)
      moa.reduce(cpu, cpu_a, cp, o.view(), y.view(), cpu_ws);
      moa.reduce(g, gpu_a, gp, d_o.view(), dy.view(), gpu_ws);
      const index_t rows = cp.num_sorted_rows();
      std::vector<double> dz(static_cast<std::size_t>(rows * hidden)), mz(dz.size());
      for (index_t e = 0; e < experts; ++e)
        for (index_t r = cp.offsets()(e); r < cp.offsets()(e + 1); ++r) {
          const index_t s = cp.sorted_slot()(r);
          for (index_t out = 0; out < hidden; ++out) {
            double size = 0.0;
            for (index_t c = 0; c < width; ++c)
              size += std::fabs(static_cast<double>(o(s / slots, s % slots, c)) * to_float(q_out(e, out, c)));
            dz[static_cast<std::size_t>(r * hidden + out)] = gemm_rel<W>(tensor_cores, width) * size + 1e-7;
            mz[static_cast<std::size_t>(r * hidden + out)] = size;
          }
        }
      const auto bound = combine_bound(cp, dz, mz, hidden, w.bias);
      check_close(down(dy), y, 1.0, 0.0, &bound, "moa reduce");
    }
  }
}

TEST_CASE("moe_mlp on CUDA, both paths: one expert for all, k = E, capacity drops, E = 128 k = 8, a NaN router row",
          "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  using W = bf16;
  std::mt19937 rng(21);
  for (const bool tensor_cores : {false, true}) {
    const gpu_policy g = gpu_with_tensor_cores(tensor_cores);
    {
      // Every token's first choice is expert 5: x[:, 0] = 1 and router row 5 weighs it 8; all
      // other router weights are at most 1/16, so the other logits are ≤ 63/16 < 8 − 63/16.
      const index_t experts = 8, hidden = 64, inner = 32, tokens = 600;
      moe_case<W> w(rng, experts, hidden, inner);
      w.router = grid_tensor<W, 2>(rng, make_dims(experts, hidden), 4, 64.0f);  // (E, H)
      for (index_t e = 0; e < experts; ++e) w.router(e, 0) = from_float<W>(e == 5 ? 8.0f : 0.0f);
      w.upload();
      auto x = grid_tensor<float, 2>(rng, make_dims(tokens, hidden), 8, 8.0f);  // (T, H)
      for (index_t t = 0; t < tokens; ++t) x(t, 0) = 1.0f;
      routing::moe_mlp<> top1{};
      top1.top_k = 1;
      CHECK(compare_moe_layer(g, top1, w, x, "all tokens to expert 5 (k = 1)").counts[5] == tokens);
      CHECK(compare_moe_layer(g, routing::moe_mlp<>{}, w, x, "expert 5 first for all (k = 2)").counts[5] == tokens);
    }
    {
      const index_t experts = 4, tokens = 100;
      const moe_case<W> w(rng, experts, 64, 32);
      const auto x = grid_tensor<float, 2>(rng, make_dims(tokens, 64), 8, 8.0f);  // (T, H)
      routing::moe_mlp<> all{};
      all.top_k = experts;
      const auto summary = compare_moe_layer(g, all, w, x, "k = E = 4");
      for (index_t e = 0; e < experts; ++e) CHECK(summary.counts[static_cast<std::size_t>(e)] == tokens);
    }
    {
      // Switch routing with capacity factor 0.5: ceil(0.5 · 300 / 8) = 19 slots per expert
      // (R = 152 of 300), the rest dropped by position; dropped tokens get only the bias.
      const index_t experts = 8, tokens = 300;
      const moe_case<W> w(rng, experts, 64, 32);
      const auto x = grid_tensor<float, 2>(rng, make_dims(tokens, 64), 8, 8.0f);  // (T, H)
      routing::moe_mlp<routing::switch_top1> switch_moe{};
      switch_moe.router.capacity_factor = 0.5;
      const auto summary = compare_moe_layer(g, switch_moe, w, x, "switch_top1, capacity 19");
      CHECK(summary.dropped > 0);
      for (const std::int32_t c : summary.counts) CHECK(c <= 19);
    }
    {
      // Fine-grained: 128 experts, 8 per token (R = 8: the GEMV over 128 segments; R = 2400).
      const index_t experts = 128;
      const moe_case<W> w(rng, experts, 64, 16);
      routing::moe_mlp<> fine{};
      fine.top_k = 8;
      for (const index_t tokens : {1, 300}) {
        const auto x = grid_tensor<float, 2>(rng, make_dims(tokens, 64), 8, 8.0f);  // (T, H)
        compare_moe_layer(g, fine, w, x, "E = 128, k = 8");
      }
    }
    {
      // Router row 2 is NaN, so every token's logit 2 is NaN, which ranks below every number
      // (routing/router.hpp): expert 2 is never chosen and the output stays finite.
      const index_t experts = 8;
      moe_case<W> w(rng, experts, 64, 32);
      for (index_t c = 0; c < 64; ++c) w.router(2, c) = from_float<W>(std::numeric_limits<float>::quiet_NaN());
      w.upload();
      for (const index_t tokens : {5, 200}) {
        const auto x = grid_tensor<float, 2>(rng, make_dims(tokens, 64), 8, 8.0f);  // (T, H)
        CHECK(compare_moe_layer(g, routing::moe_mlp<>{}, w, x, "a NaN router row").counts[2] == 0);
      }
    }
  }
}

TEST_CASE("router losses on CUDA equal the CPU values", "[cuda][routing]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy& g = gpu();
  std::mt19937 rng(13);
  const auto a = random_tensor<float, 2>(rng, make_dims(24, 8), 3.0f);
  const auto b = random_tensor<float, 2>(rng, make_dims(24, 8), 3.0f);
  const auto da = up(a);
  const auto db = up(b);
  const tensor_view<const float, 2> cpu_list[] = {a.view(), b.view()};
  const tensor_view<const float, 2> gpu_list[] = {da.view(), db.view()};
  tensor<std::int64_t, 2> mask(make_dims(3, 8));
  for (index_t i = 0; i < mask.size(); ++i) mask.data()[i] = i % 5 != 2;
  const auto dmask = up(mask);

  CHECK(routing::load_balancing_loss(g, gpu_list, 2) == Approx(routing::load_balancing_loss(cpu, cpu_list, 2)).epsilon(1e-6));
  CHECK(routing::load_balancing_loss(g, gpu_list, 2, dmask.view()) ==
        Approx(routing::load_balancing_loss(cpu, cpu_list, 2, mask.view())).epsilon(1e-6));
  CHECK(routing::load_balancing_loss(g, gpu_list, 2, mask.view()) ==  // host mask, uploaded
        Approx(routing::load_balancing_loss(cpu, cpu_list, 2, mask.view())).epsilon(1e-6));
  CHECK(routing::router_z_loss(g, gpu_list, dmask.view()) ==
        Approx(routing::router_z_loss(cpu, cpu_list, mask.view())).epsilon(1e-6));
  CHECK(routing::switch_plus_z_loss(g, da.view(), 2) == Approx(routing::switch_plus_z_loss(cpu, a.view(), 2)).epsilon(1e-6));
}

// ==== recorded work (CUDA graphs) ======================================================================

// A step that makes and frees two temporaries of one size and adds 1 + 1 to every element of
// `acc`, so the element's value counts the steps that really ran: twice the number of runs.
TEST_CASE("exec::recorded_work: replays, reuses its own frees while recording, falls back when capture fails",
          "[cuda]") {
  SKIP_WITHOUT_GPU();
  const gpu_policy g = gpu_policy::create();  // its own stream and pool: the statistics are this test's alone
  // Recording creates the cuBLAS handle first, whose workspace comes from the pool; make it now so
  // that the snapshot below already counts it.
  (void)g.blas();
  constexpr index_t width = 256;
  auto acc = tensor<float, 2, gpu_policy>::zeros(g, make_dims(1, width));  // (1, width) the step counter
  tensor<float, 2> ones_host(make_dims(1, width));                          // (1, width)
  for (index_t c = 0; c < width; ++c) ones_host(0, c) = 1.0f;
  const auto ones = up(ones_host);  // (1, width)
  bool sync_inside = false;         // true: the step also waits for the stream, which capture refuses
  const auto step = [&] {
    for (int twice = 0; twice < 2; ++twice) {
      tensor<float, 2, gpu_policy> temporary(g, make_dims(1, width));  // (1, width), freed at once
      g.copy(temporary.data(), ones.data(), static_cast<std::size_t>(width) * sizeof(float));
      ops::add_inplace(g, acc.view(), tensor_view<const float, 2>(temporary.view()));
    }
    if (sync_inside) JETMOE_CUDA_CHECK(cudaStreamSynchronize(g.stream()));
  };
  const auto count = [&] {
    const auto back = down(acc);
    for (index_t c = 1; c < width; ++c) REQUIRE(back(0, c) == back(0, 0));
    return back(0, 0);
  };

  exec::recorded_work<gpu_policy> work;
  const exec::recording_key key{1, 2, 3, 4};
  work.run(g, key, step);  // first sight: queued as it is
  CHECK_FALSE(work.has_recording());
  CHECK(count() == 2.0f);
  const auto after_plain = g.pool().stats();
  work.run(g, key, step);  // recorded and launched
  REQUIRE(work.has_recording());
  CHECK(work.failure().empty());
  for (int i = 0; i < 3; ++i) work.run(g, key, step);  // replayed
  CHECK(count() == 10.0f);
  if (g.pool().caching()) {
    // The second temporary of the recording reuses the block the first freed, and replays
    // allocate nothing: no cudaMalloc after the plain run.
    CHECK(g.pool().stats().misses == after_plain.misses);
  }
  work.forget();  // the held block goes back to the pool
  CHECK_FALSE(work.has_recording());
  CHECK(g.pool().stats().bytes_in_use == after_plain.bytes_in_use);

  // Capture refused: the step still runs (once per call), unrecorded, and says why.
  sync_inside = true;
  work.run(g, key, step);  // first sight again
  work.run(g, key, step);  // capture fails inside the work; then it runs plainly
  CHECK_FALSE(work.has_recording());
  CHECK_FALSE(work.failure().empty());
  work.run(g, key, step);  // known to fail: plain at once
  CHECK(count() == 16.0f);
  CHECK(g.pool().stats().bytes_in_use == after_plain.bytes_in_use);
  // The stream is usable afterwards: a plain step with no capture still works.
  sync_inside = false;
  work.forget();
  CHECK(work.failure().empty());
  work.run(g, key, step);
  CHECK(count() == 18.0f);
}

TEST_CASE("exec::recorded_work on the legacy stream: capture cannot begin, the step still runs", "[cuda]") {
  SKIP_WITHOUT_GPU();
  // cudaStreamBeginCapture refuses the legacy (null) stream. The failed call must not leave its
  // error behind for the fallback's first launch check to report as that kernel's.
  const gpu_policy legacy = gpu().on(nullptr);
  constexpr index_t width = 64;
  auto acc = tensor<float, 2, gpu_policy>::zeros(legacy, make_dims(1, width));  // (1, width)
  tensor<float, 2> ones_host(make_dims(1, width));                               // (1, width)
  for (index_t c = 0; c < width; ++c) ones_host(0, c) = 1.0f;
  const auto ones = exec::to_device(legacy, ones_host.view());                    // (1, width)
  const auto step = [&] { ops::add_inplace(legacy, acc.view(), tensor_view<const float, 2>(ones.view())); };
  exec::recorded_work<gpu_policy> work;
  const exec::recording_key key{1, 1, 1, 1};
  for (int i = 0; i < 3; ++i) REQUIRE_NOTHROW(work.run(legacy, key, step));
  CHECK_FALSE(work.has_recording());
  CHECK_FALSE(work.failure().empty());
  const auto back = exec::to_host(legacy, acc.view());  // (1, width)
  for (index_t c = 0; c < width; ++c) CHECK(back(0, c) == 3.0f);
}
