// jetmoe-generate — text generation with a JetMoE checkpoint on the CPU.
//
// With no arguments it continues "A class definition" with the bundled demo model
// (models/jetmoe-pydoc-5m), greedily. One prompt streams its text as it is generated; several
// prompts (-p given more than once) run as one left-padded batch and print each text with its
// index at the end. Text goes to stdout; the seed, timings and notes go to stderr. Any error is
// one line on stderr and exit code 2.
#include <jetmoe/io/tokenizer.hpp>
#include <jetmoe/models/jetmoe.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/model_loading.hpp"

namespace {

namespace fs = std::filesystem;
namespace jm = jetmoe::models::jetmoe;
namespace gen = jetmoe::generation;
using jetmoe::index_t;

constexpr const char* program = "jetmoe-generate";
constexpr const char* default_prompt = "A class definition";  // the demo model knows the Python reference

struct options {
  std::string model_dir;             // empty: the bundled demo model
  std::vector<std::string> prompts;  // empty: default_prompt
  std::int64_t n_predict = 64;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  std::optional<std::uint64_t> seed;
  int threads = jetmoe::exec::cpu::default_threads();
  std::string dtype = "auto";
  std::string device = "cpu";
  bool no_stop = false;
};

std::uint64_t random_seed() {
  std::random_device source;
  return (static_cast<std::uint64_t>(source()) << 32) ^ source();
}

void write_out(const std::string& text) {
  if (text.empty()) return;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// "12.3 ms" below a second, "4.56 s" above.
std::string format_seconds(double seconds) {
  char text[32];
  if (seconds < 1.0) std::snprintf(text, sizeof text, "%.1f ms", seconds * 1e3);
  else std::snprintf(text, sizeof text, "%.2f s", seconds);
  return text;
}

void print_rate(const char* what, index_t tokens, double seconds) {
  if (tokens > 0 && seconds > 0.0)
    std::fprintf(stderr, "%-11s %6lld tokens in %9s  %9.1f tokens/s\n", what, static_cast<long long>(tokens),
                 format_seconds(seconds).c_str(), static_cast<double>(tokens) / seconds);
  else
    std::fprintf(stderr, "%-11s %6lld tokens\n", what, static_cast<long long>(tokens));
}

// The continuation of `prompt` as text: decoding prompt + new tokens and keeping only what the
// new tokens add preserves the space SentencePiece encodes at the start of the first new word.
std::string continuation(const jetmoe::io::tokenizer& tok, const std::vector<std::int64_t>& prompt,
                         const std::vector<std::int64_t>& generated) {
  jetmoe::io::streaming_decoder decoder(tok);
  for (const std::int64_t id : prompt) decoder.push(id);
  (void)decoder.finish();
  std::string text;
  for (const std::int64_t id : generated) text += decoder.push(id);
  return text + decoder.finish();
}

int run(const options& opt) {
  // ---- where the model is ----
  fs::path model_dir = opt.model_dir;
  if (model_dir.empty()) {
    const auto demo = jetmoe::tools::find_demo_model();
    if (!demo) {
      std::string looked;
      for (const auto& dir : jetmoe::tools::demo_model_candidates()) looked += (looked.empty() ? "" : ", ") + dir.string();
      throw jetmoe::error("the bundled demo model is not in " + (looked.empty() ? std::string("any known place") : looked) +
                          "; give a model directory with --model DIR");
    }
    model_dir = *demo;
  }
  jetmoe::tools::check_model_directory(model_dir);
  const fs::path tokenizer_file = model_dir / "tokenizer.model";
  std::error_code ec;
  if (!fs::is_regular_file(tokenizer_file, ec))
    throw jetmoe::error("model directory " + model_dir.string() + " has no tokenizer.model (the SentencePiece model " +
                        "jetmoe-generate needs to turn text into tokens)");

  const auto tok = jetmoe::io::tokenizer::load(tokenizer_file);
  std::vector<std::string> prompts = opt.prompts;
  if (prompts.empty()) prompts.push_back(default_prompt);
  std::vector<std::vector<std::int64_t>> prompt_ids;
  index_t longest = 0;
  for (const auto& text : prompts) {
    prompt_ids.push_back(tok.encode(text));  // BOS first, as JetMoE was trained
    longest = std::max<index_t>(longest, static_cast<index_t>(prompt_ids.back().size()));
  }

  // ---- fit the request into the context (from config.json, before the weights are read) ----
  const index_t context = jm::load_config(model_dir / "config.json").max_position_embeddings;
  if (longest >= context)
    throw jetmoe::error("the prompt is " + std::to_string(longest) + " tokens (BOS included) but the model's context holds " +
                        std::to_string(context) + ", leaving no room to generate; shorten the prompt");
  gen::generation_options request;
  request.max_new_tokens = opt.n_predict;
  if (longest + request.max_new_tokens > context) {
    request.max_new_tokens = context - longest;
    std::fprintf(stderr, "note: a %lld-token prompt and %lld new tokens exceed the context of %lld; generating at most %lld\n",
                 static_cast<long long>(longest), static_cast<long long>(opt.n_predict), static_cast<long long>(context),
                 static_cast<long long>(request.max_new_tokens));
  }

  const std::uint64_t seed = opt.seed.value_or(random_seed());
  std::fprintf(stderr, "seed: %llu\n", static_cast<unsigned long long>(seed));

  const auto storage = *jetmoe::tools::parse_weight_storage(opt.dtype);
  return jetmoe::tools::with_policy(opt.device, opt.threads, [&](const auto& policy) {
  return jetmoe::tools::with_model(model_dir, storage, policy, true, [&](auto& model, const jetmoe::tools::load_report& loaded) {
    std::fprintf(stderr, "loaded %s: %s parameters, %s weights (%s checkpoint) in %s; %s\n",
                 model_dir.string().c_str(), jetmoe::tools::format_count(loaded.parameters).c_str(), loaded.storage,
                 jetmoe::tools::format_bytes(loaded.checkpoint_bytes).c_str(), format_seconds(loaded.seconds).c_str(),
                 jetmoe::tools::describe(policy).c_str());
    request.sampling = {.temperature = opt.temperature, .top_k = opt.top_k, .top_p = opt.top_p, .seed = seed};
    if (!opt.no_stop) request.eos_token_id = model.cfg().eos_token_id;
    request.pad_token_id = model.cfg().pad_token_id.value_or(0);  // masked out; any valid id will do

    // ---- generate ----
    gen::generation_result result;
    if (prompt_ids.size() == 1) {
      // Stream: the prompt as typed, then each new piece of text as soon as it is final.
      write_out(prompts.front());
      jetmoe::io::streaming_decoder decoder(tok);
      for (const std::int64_t id : prompt_ids.front()) decoder.push(id);
      (void)decoder.finish();  // already shown, as typed
      result = gen::generate(model, prompt_ids, request,
                             [&](std::size_t, std::int64_t token) { write_out(decoder.push(token)); });
      write_out(decoder.finish() + "\n");
    } else {
      result = gen::generate(model, prompt_ids, request);
      for (std::size_t row = 0; row < prompts.size(); ++row)
        write_out("[" + std::to_string(row) + "] " + prompts[row] + continuation(tok, prompt_ids[row], result.tokens[row]) +
                  "\n");
    }

    // ---- speed ----
    // The prompt pass also yields each row's first new token; the decode steps yield the rest.
    const auto rows_started = static_cast<index_t>(std::count_if(result.tokens.begin(), result.tokens.end(),
                                                                 [](const auto& t) { return !t.empty(); }));
    print_rate("prompt:", result.prompt_tokens, result.prefill_seconds);
    print_rate("generation:", result.generated_tokens - rows_started, result.decode_seconds);
    if (!model.step_recording_failure().empty())  // the steps ran, only slower
      std::fprintf(stderr, "warning: %s\n", model.step_recording_failure().c_str());
    return 0;
  });
  });
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  jetmoe::cli::parser cli(program,
                          "Continues a prompt with a JetMoE model (a Hugging Face checkpoint folder with config.json,\n"
                          "model.safetensors or shards, and tokenizer.model). Text goes to stdout; the seed, load time\n"
                          "and speed go to stderr.\n\n"
                          "examples:\n"
                          "  jetmoe-generate                                  # the demo model, greedy\n"
                          "  jetmoe-generate -p \"The for statement\" -n 100 --temp 0.8 --top-p 0.95 -s 7\n"
                          "  jetmoe-generate -m ~/models/jetmoe-8b -t 16 -p \"def quicksort(\" -p \"The capital of France\"");
  cli.text("-m, --model", "DIR", "model directory (default: the bundled demo model jetmoe-pydoc-5m)", opt.model_dir)
      .texts("-p, --prompt", "TEXT",
             "prompt; give it several times for a batch (default: \"" + std::string(default_prompt) + "\")", opt.prompts)
      .number("-n, --n-predict", "N", "new tokens to generate at most (default: 64)", opt.n_predict)
      .number("--temp", "T", "sampling temperature; 0 = greedy, the most likely token (default: 0)", opt.temperature)
      .number("--top-k", "K", "sample among the K most likely tokens only; 0 = all (default: 0)", opt.top_k)
      .number("--top-p", "P", "sample among the most likely tokens whose mass reaches P (default: 1 = all)", opt.top_p)
      .number("-s, --seed", "N", "random seed; the same seed gives the same text (default: a random one, printed)", opt.seed)
      .number("-t, --threads", "N", "CPU threads (default: all cores, " + std::to_string(opt.threads) + ")", opt.threads)
      .text("--dtype", "TYPE",
            "weight storage: float, bf16, or auto = bf16 for bf16 checkpoints, float otherwise (default: auto)", opt.dtype)
      .text("--device", "DEV", "cpu or cuda (default: cpu; cuda where the tools were built with the cuda preset)", opt.device)
      .flag("--no-stop", "keep generating after the end-of-sequence token", opt.no_stop);

  int exit_code = 0;
  if (!cli.parse(argc, argv, exit_code)) return exit_code;
  if (opt.n_predict < 0) return cli.error("--n-predict must be ≥ 0, got " + std::to_string(opt.n_predict));
  if (!(opt.temperature >= 0.0f) || !std::isfinite(opt.temperature)) return cli.error("--temp must be ≥ 0");
  if (opt.top_k < 0) return cli.error("--top-k must be ≥ 0, got " + std::to_string(opt.top_k));
  if (!(opt.top_p > 0.0f && opt.top_p <= 1.0f)) return cli.error("--top-p must be in (0, 1]");
  if (opt.threads < 1) return cli.error("--threads must be ≥ 1, got " + std::to_string(opt.threads));
  if (!jetmoe::tools::parse_weight_storage(opt.dtype))
    return cli.error("unknown --dtype '" + opt.dtype + "' (choose float, bf16 or auto)");
  if (const std::string problem = jetmoe::tools::unsupported_device(opt.device); !problem.empty())
    return cli.error(problem, opt.device != "cuda");

  try {
    return run(opt);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory (try --dtype bf16, or a smaller model)\n", program);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
  }
  return jetmoe::cli::usage_error;
}
