// jetmoe-forward — one forward pass of a JetMoE checkpoint over token ids from a file, with every
// intermediate a parity check needs written to another file.
//
//   IN.safetensors:  input_ids int64 [B,S]; optional attention_mask int64 [B,S] (1 = token,
//                    0 = padding); optional labels int64 [B,S] (used with --labels).
//   OUT.safetensors: logits float32 [B,S,V]; hidden_states.{i} float32 [B,S,H] for i = 0..L
//                    (0 = embeddings, L = after the final norm); router_logits.attention.{l} and
//                    router_logits.mlp.{l} float32 [B·S,E]; with --labels also loss [1] and
//                    aux_loss [1], as transformers' JetMoeForCausalLM reports them.
//
// This is how results are compared with PyTorch: run transformers on the same ids and diff
// the tensors. Any error is one line on stderr and exit code 2.
#include <jetmoe/io/safetensors.hpp>
#include <jetmoe/models/jetmoe.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/model_loading.hpp"

namespace {

namespace fs = std::filesystem;
namespace jm = jetmoe::models::jetmoe;
using jetmoe::index_t;

constexpr const char* program = "jetmoe-forward";

struct options {
  std::string model_dir;
  std::string input;
  std::string output;
  bool labels = false;
  std::string dtype = "float";  // parity runs want the checkpoint's values unrounded
  int threads = jetmoe::exec::cpu::default_threads();
  std::string device = "cpu";
};

// The (B, S) int64 tensors of the input file, checked against each other and the model.
struct batch {
  jetmoe::tensor<std::int64_t, 2> input_ids;
  std::optional<jetmoe::tensor<std::int64_t, 2>> attention_mask;
  std::optional<jetmoe::tensor<std::int64_t, 2>> labels;
};

batch read_batch(const fs::path& path, bool want_labels) {
  const auto file = jetmoe::io::safetensors_file::open(path);
  jetmoe::check(file.contains("input_ids"), path.string(), ": no tensor named input_ids (int64 [B,S])");
  batch out{file.read<std::int64_t, 2>("input_ids"), std::nullopt, std::nullopt};
  const auto shape = out.input_ids.extents();
  jetmoe::check(shape[0] > 0 && shape[1] > 0, path.string(), ": input_ids is empty, shape ", shape);
  if (file.contains("attention_mask")) out.attention_mask = file.read<std::int64_t, 2>("attention_mask", shape);
  if (want_labels && file.contains("labels")) out.labels = file.read<std::int64_t, 2>("labels", shape);
  return out;
}

int run(const options& opt) {
  const fs::path output = opt.output;
  std::error_code ec;
  jetmoe::check(!fs::is_directory(output, ec), "--output ", output.string(), " is a directory; give a file name");
  const batch in = read_batch(opt.input, opt.labels);
  const index_t B = in.input_ids.extent(0), S = in.input_ids.extent(1);

  // Clear messages for the mistakes a hand-made input file invites, before the weights are
  // read (the model checks again).
  jetmoe::tools::check_model_directory(opt.model_dir);
  const auto cfg = jm::load_config(fs::path(opt.model_dir) / "config.json");
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s < S; ++s) {
      const std::int64_t id = in.input_ids(b, s);
      jetmoe::check(0 <= id && id < cfg.vocab_size, opt.input, ": input_ids[", b, ", ", s, "] = ", id,
                    " is outside the vocabulary [0, ", cfg.vocab_size, ")");
    }
  jetmoe::check(S <= cfg.max_position_embeddings, opt.input, ": sequences of ", S,
                " tokens exceed the model's context of ", cfg.max_position_embeddings, " positions");

  const auto storage = *jetmoe::tools::parse_weight_storage(opt.dtype);
  return jetmoe::tools::with_policy(opt.device, opt.threads, [&](const auto& policy) {
  return jetmoe::tools::with_model(opt.model_dir, storage, policy, true, [&](auto& model, const jetmoe::tools::load_report& loaded) {
    std::fprintf(stderr, "loaded %s: %s parameters, %s weights, in %.2f s; %s\n", opt.model_dir.c_str(),
                 jetmoe::tools::format_count(loaded.parameters).c_str(), loaded.storage, loaded.seconds,
                 jetmoe::tools::describe(policy).c_str());

    jm::causal_lm_request request;
    request.input_ids = in.input_ids.view();
    if (in.attention_mask) request.attention_mask = in.attention_mask->view();
    if (opt.labels) request.labels = in.labels ? in.labels->view() : in.input_ids.view();
    request.hidden_states = true;
    request.router_logits = true;

    const auto start = std::chrono::steady_clock::now();
    const jm::causal_lm_output result = jm::causal_lm_forward(model, request);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    jetmoe::io::safetensors_writer out;
    out.set_metadata("format", "pt");
    out.set_metadata("producer", program);
    out.set_metadata("weights", loaded.storage);
    out.add("logits", result.logits.view());
    const index_t H = cfg.hidden_size;
    for (std::size_t i = 0; i < result.trace.hidden_states.size(); ++i)
      out.add("hidden_states." + std::to_string(i), result.trace.hidden_states[i].view().reshape(jetmoe::make_dims(B, S, H)));
    for (std::size_t l = 0; l < result.trace.mlp_router_logits.size(); ++l) {
      out.add("router_logits.attention." + std::to_string(l), result.trace.attention_router_logits[l].view());
      out.add("router_logits.mlp." + std::to_string(l), result.trace.mlp_router_logits[l].view());
    }
    if (result.loss) {
      const float loss[] = {static_cast<float>(*result.loss)};
      const float aux[] = {static_cast<float>(*result.aux_loss)};
      out.add("loss", jetmoe::make_view<const float>(loss, 1));
      out.add("aux_loss", jetmoe::make_view<const float>(aux, 1));
    }
    out.write(output);

    std::fprintf(stderr, "forward: %lld × %lld tokens in %.3f s (%.1f tokens/s)\n", static_cast<long long>(B),
                 static_cast<long long>(S), seconds, static_cast<double>(B * S) / seconds);
    if (result.loss) std::fprintf(stderr, "loss %.6f (aux_loss %.6f)\n", *result.loss, *result.aux_loss);
    std::fprintf(stderr, "wrote %s: logits, %zu hidden states, %zu router logits%s\n", output.string().c_str(),
                 result.trace.hidden_states.size(), 2 * result.trace.mlp_router_logits.size(),
                 result.loss ? ", loss, aux_loss" : "");
    return 0;
  });
  });
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  jetmoe::cli::parser cli(program,
                          "Runs a JetMoE checkpoint over the token ids in IN and writes the logits, every hidden state and\n"
                          "every router's logits to OUT (both safetensors files), for comparison with transformers.\n\n"
                          "  IN:  input_ids int64 [B,S]; optional attention_mask int64 [B,S] (1 = token, 0 = padding),\n"
                          "       optional labels int64 [B,S] (read with --labels; default labels = input_ids)\n"
                          "  OUT: logits float32 [B,S,V], hidden_states.{0..L} float32 [B,S,H] (the last after the final\n"
                          "       norm), router_logits.attention.{l} and router_logits.mlp.{l} float32 [B*S,E];\n"
                          "       with --labels also loss [1] and aux_loss [1]\n\n"
                          "example:\n"
                          "  jetmoe-forward --model models/jetmoe-pydoc-5m --input ids.safetensors --output out.safetensors");
  cli.text("-m, --model", "DIR", "model directory (required)", opt.model_dir)
      .text("-i, --input", "IN", "safetensors file with input_ids (required)", opt.input)
      .text("-o, --output", "OUT", "safetensors file to write, replaced atomically (required)", opt.output)
      .flag("--labels", "also compute loss and aux_loss (labels from IN, or input_ids)", opt.labels)
      .text("--dtype", "TYPE", "weight storage: float, bf16, or auto = as the checkpoint (default: float)", opt.dtype)
      .number("-t, --threads", "N", "CPU threads (default: all cores, " + std::to_string(opt.threads) + ")", opt.threads)
      .text("--device", "DEV", "cpu or cuda (default: cpu; cuda where the tools were built with the cuda preset)", opt.device);

  int exit_code = 0;
  if (!cli.parse(argc, argv, exit_code)) return exit_code;
  if (opt.model_dir.empty()) return cli.error("--model DIR is required");
  if (opt.input.empty()) return cli.error("--input IN.safetensors is required");
  if (opt.output.empty()) return cli.error("--output OUT.safetensors is required");
  if (opt.threads < 1) return cli.error("--threads must be ≥ 1, got " + std::to_string(opt.threads));
  if (!jetmoe::tools::parse_weight_storage(opt.dtype))
    return cli.error("unknown --dtype '" + opt.dtype + "' (choose float, bf16 or auto)");
  if (const std::string problem = jetmoe::tools::unsupported_device(opt.device); !problem.empty())
    return cli.error(problem, opt.device != "cuda");

  try {
    return run(opt);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", program);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
  }
  return jetmoe::cli::usage_error;
}
