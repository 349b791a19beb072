// examples/common/model_loading.hpp — what both tools do before running a model: find the model
// directory, choose the weight storage type, load with a progress bar and place the weights
// where the policy computes (common/devices.hpp picks the policy).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <jetmoe/models/jetmoe.hpp>

#include "common/devices.hpp"
#include "common/progress.hpp"

namespace jetmoe::tools {

namespace fs = std::filesystem;

// ---- the bundled demo model -------------------------------------------------------------------

// Where the demo model may live, in the order tried: the source tree this binary was built from,
// the install prefix chosen at configure time, and the share/ directory next to this binary's
// bin/ (an install that was moved or made with `cmake --install --prefix`).
inline std::vector<fs::path> demo_model_candidates() {
  std::vector<fs::path> out;
#ifdef JETMOE_DEMO_MODEL_DIR
  out.emplace_back(JETMOE_DEMO_MODEL_DIR);
#endif
#ifdef JETMOE_INSTALLED_MODEL_DIR
  out.emplace_back(JETMOE_INSTALLED_MODEL_DIR);
#endif
#ifdef JETMOE_MODEL_DIR_FROM_PREFIX
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);  // Linux; elsewhere this candidate is skipped
  if (!ec) out.push_back(self.parent_path().parent_path() / JETMOE_MODEL_DIR_FROM_PREFIX);
#endif
  return out;
}

// The first candidate holding a config.json, or nullopt.
inline std::optional<fs::path> find_demo_model() {
  std::error_code ec;
  for (const fs::path& dir : demo_model_candidates())
    if (fs::is_regular_file(dir / "config.json", ec)) return dir;
  return std::nullopt;
}

// Throws a jetmoe::error when `dir` cannot be a model directory, before anything is parsed.
inline void check_model_directory(const fs::path& dir) {
  std::error_code ec;
  check(fs::exists(dir, ec), "model directory ", dir.string(), " does not exist");
  check(fs::is_directory(dir, ec), dir.string(), " is not a directory (--model takes a model directory)");
  check(fs::is_regular_file(dir / "config.json", ec), "model directory ", dir.string(),
        " has no config.json (is it a Hugging Face model folder?)");
}

// ---- options both tools share ---------------------------------------------------------------

enum class weight_storage { automatic, f32, bf16 };

inline std::optional<weight_storage> parse_weight_storage(std::string_view name) {
  if (name == "auto") return weight_storage::automatic;
  if (name == "float" || name == "f32" || name == "float32") return weight_storage::f32;
  if (name == "bf16" || name == "bfloat16") return weight_storage::bf16;
  return std::nullopt;
}

// ---- loading --------------------------------------------------------------------------------

struct load_report {
  double seconds = 0.0;
  std::uint64_t checkpoint_bytes = 0;
  std::size_t parameters = 0;
  const char* storage = "";  // "float32" or "bfloat16"
};

// Loads the model in `dir` with weights stored as float or bf16 and calls body(model, report)
// with a models::jetmoe::model<W, default router, Policy>. `automatic` keeps bf16 checkpoints in
// bf16 (exact, half the memory) and stores everything else (F32, F16) as float, so no weight is
// rounded. Returns what body returns.
template <class Policy, class Body>
auto with_model(const fs::path& dir, weight_storage storage, const Policy& policy, bool show_progress, Body&& body) {
  namespace jm = models::jetmoe;
  using clock = std::chrono::steady_clock;
  check_model_directory(dir);
  const auto start = clock::now();
  jm::config cfg = jm::load_config(dir / "config.json");

  load_progress progress(show_progress);
  std::optional<io::checkpoint> ckpt = io::checkpoint::open(dir, progress.callback());
  if (storage == weight_storage::automatic) {
    const char* probe = "model.embed_tokens.weight";
    const bool bf16_checkpoint = ckpt->contains(probe) && ckpt->info(probe).dtype == io::safetensors_dtype::bf16;
    storage = bf16_checkpoint ? weight_storage::bf16 : weight_storage::f32;
  }

  auto run = [&]<class W>(std::type_identity<W>) {
    jm::weights<W> params = jm::load_weights<W>(*ckpt, cfg);
    progress.finish();
    load_report report;
    report.checkpoint_bytes = ckpt->total_bytes();
    report.parameters = params.parameter_count();
    report.storage = name_of(dtype_of<W>()).data();
    ckpt.reset();  // the weights are copies: unmap the files before running
    jm::weights<W, Policy> placed = jm::place_weights(policy, std::move(params), cfg);  // a GPU: one upload
    if constexpr (!Policy::is_host) params = jm::weights<W>{};  // the device copy is all that is used now
    jm::model<W, routing::top_k_then_softmax, Policy> model(std::move(cfg), std::move(placed), policy);
    report.seconds = std::chrono::duration<double>(clock::now() - start).count();
    return body(model, report);
  };
  if (storage == weight_storage::bf16) return run(std::type_identity<bf16>{});
  return run(std::type_identity<float>{});
}

// "4.6M", "8.5B": a parameter count for a log line.
inline std::string format_count(std::size_t n) {
  char text[32];
  if (n >= 1'000'000'000) std::snprintf(text, sizeof text, "%.2fB", static_cast<double>(n) / 1e9);
  else if (n >= 1'000'000) std::snprintf(text, sizeof text, "%.1fM", static_cast<double>(n) / 1e6);
  else if (n >= 1'000) std::snprintf(text, sizeof text, "%.1fk", static_cast<double>(n) / 1e3);
  else std::snprintf(text, sizeof text, "%zu", n);
  return text;
}

}  // namespace jetmoe::tools
