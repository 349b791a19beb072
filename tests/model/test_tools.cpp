// The command-line tools, run as users run them: jetmoe-forward against the transformers
// reference (it is what users diff against PyTorch, so it gets the same fp32 tolerance as the
// model parity tests: 1e-4 × max(1, |ref|max)), and jetmoe-generate's contract: --help, errors
// as one line with exit code 2, and the demo model's greedy text with no arguments.
//
// The tool paths come from examples/CMakeLists.txt; without the examples there is nothing to run.
#if defined(JETMOE_GENERATE_TOOL) && defined(JETMOE_FORWARD_TOOL)

#include <catch2/catch.hpp>

#include <jetmoe/io/tokenizer.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "model/reference_data.hpp"

namespace fs = std::filesystem;
using jetmoe::index_t;

namespace {

using jetmoe_test::fp32_tolerance;
using jetmoe_test::require_close;

// A scratch directory, removed at the end of the test.
struct scratch_dir {
  fs::path path;
  scratch_dir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("jetmoe-test-tools-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct tool_run {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string shell_quote(const std::string& arg) {
  std::string quoted = "'";
  for (const char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `tool args…` through the shell with stdout and stderr captured in files.
tool_run run_tool(const std::string& tool, const std::vector<std::string>& args) {
  const scratch_dir dir;
  std::string command = shell_quote(tool);
  for (const auto& a : args) command += " " + shell_quote(a);
  command += " >" + shell_quote((dir.path / "out").string()) + " 2>" + shell_quote((dir.path / "err").string()) + " </dev/null";
  const int status = std::system(command.c_str());
  tool_run run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = read_text(dir.path / "out");
  run.err = read_text(dir.path / "err");
  return run;
}

std::size_t line_count(const std::string& text) {
  std::size_t lines = 0;
  for (const char c : text) lines += c == '\n';
  return lines;
}


// Exit code 2 and stderr exactly one line "<tool>: …fragment…": checks that need no model run
// before anything is printed, so no other line comes first, and nothing like a trace follows.
void require_error(const tool_run& run, const std::string& fragment) {
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  CHECK(run.exit_code == 2);
  CHECK(run.err.starts_with("jetmoe-"));
  CHECK(run.err.find(fragment) != std::string::npos);
  CHECK(line_count(run.err) == 1);
}

// --device cuda: tools built without CUDA refuse it; tools built with it (the cuda preset) run,
// or say that no GPU is visible (or that the one there cannot start).
void check_cuda_device_option(const tool_run& run) {
#if defined(JETMOE_TOOLS_WITH_CUDA)
  if (run.exit_code != 0)
    require_error(run, run.err.find("cannot start") != std::string::npos ? "the CUDA runtime cannot start"
                                                                          : "no CUDA device is visible");
#else
  require_error(run, "not available in this build");
#endif
}

}  // namespace

TEST_CASE("jetmoe-forward matches transformers: logits, hidden states, router logits, loss", "[model][tools]") {
  for (const std::string name : {"tiny", "small-untied"}) {
    SECTION(name) {
      const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir(name) / "reference.safetensors");
      const scratch_dir dir;
      jetmoe::io::safetensors_writer input;
      input.add("input_ids", ref.read<std::int64_t, 2>("input_ids"));
      input.write(dir.path / "in.safetensors");

      const auto run = run_tool(JETMOE_FORWARD_TOOL, {"--model", jetmoe_test::data_dir(name).string(), "--input",
                                                      (dir.path / "in.safetensors").string(), "--output",
                                                      (dir.path / "out.safetensors").string(), "--labels", "-t", "2"});
      INFO("stderr: " << run.err);
      REQUIRE(run.exit_code == 0);
      const auto out = jetmoe::io::safetensors_file::open(dir.path / "out.safetensors");

      require_close(out.read<float, 3>("logits"), ref.read<float, 3>("logits"), name + " logits");
      const auto config = jetmoe::models::jetmoe::load_config(jetmoe_test::data_dir(name) / "config.json");
      const auto L = config.num_layers;
      for (std::int64_t i = 0; i <= L; ++i) {
        const std::string key = "hidden_states." + std::to_string(i);
        require_close(out.read<float, 3>(key), ref.read<float, 3>(key), name + " " + key);
      }
      CHECK_FALSE(out.contains("hidden_states." + std::to_string(L + 1)));
      for (std::int64_t l = 0; l < L; ++l) {
        // transformers records the attention router twice per layer (3l, 3l+1), then the MLP's.
        const std::string layer = std::to_string(l);
        require_close(out.read<float, 2>("router_logits.attention." + layer),
                      ref.read<float, 2>("router_logits." + std::to_string(3 * l)), name + " attention router " + layer);
        require_close(out.read<float, 2>("router_logits.mlp." + layer),
                      ref.read<float, 2>("router_logits." + std::to_string(3 * l + 2)), name + " mlp router " + layer);
      }
      const double loss = out.read_flat<float>("loss")[0], want_loss = ref.read_flat<float>("loss")[0];
      const double aux = out.read_flat<float>("aux_loss")[0], want_aux = ref.read_flat<float>("aux_loss")[0];
      INFO(name << ": loss " << loss << " vs " << want_loss << ", aux " << aux << " vs " << want_aux);
      CHECK(std::fabs(loss - want_loss) <= 1e-5 * std::fabs(want_loss));
      CHECK(std::fabs(aux - want_aux) <= 1e-5 * std::fabs(want_aux));
    }
  }
}

TEST_CASE("jetmoe-forward: left-padded rows with an attention_mask match transformers where unmasked", "[model][tools]") {
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("tiny") / "reference.safetensors");
  const scratch_dir dir;
  const auto mask = ref.read<std::int64_t, 2>("padded.attention_mask");
  jetmoe::io::safetensors_writer input;
  input.add("input_ids", ref.read<std::int64_t, 2>("padded.input_ids"));
  input.add("attention_mask", mask.view());
  input.write(dir.path / "in.safetensors");

  const auto run = run_tool(JETMOE_FORWARD_TOOL, {"-m", jetmoe_test::data_dir("tiny").string(), "-i",
                                                  (dir.path / "in.safetensors").string(), "-o",
                                                  (dir.path / "out.safetensors").string(), "-t", "1"});
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  const auto out = jetmoe::io::safetensors_file::open(dir.path / "out.safetensors");
  CHECK_FALSE(out.contains("loss"));  // no --labels
  const auto logits = out.read<float, 3>("logits");
  const auto want = ref.read<float, 3>("padded.logits");
  REQUIRE(logits.extents() == want.extents());
  double worst = 0.0, scale = 1.0;
  for (index_t b = 0; b < want.extent(0); ++b)
    for (index_t s = 0; s < want.extent(1); ++s) {
      if (mask(b, s) == 0) continue;
      for (index_t v = 0; v < want.extent(2); ++v) {
        worst = std::max(worst, std::fabs(static_cast<double>(logits(b, s, v)) - want(b, s, v)));
        scale = std::max(scale, std::fabs(static_cast<double>(want(b, s, v))));
      }
    }
  INFO("padded logits: max |diff| = " << worst << ", scale " << scale);
  CHECK(worst <= fp32_tolerance * scale);
}

TEST_CASE("jetmoe-forward: bad input is one clear line and exit code 2", "[model][tools]") {
  const scratch_dir dir;
  const std::string tiny = jetmoe_test::data_dir("tiny").string();
  const std::string in = (dir.path / "in.safetensors").string(), out = (dir.path / "out.safetensors").string();

  require_error(run_tool(JETMOE_FORWARD_TOOL, {"--input", in, "--output", out}), "--model DIR is required");
  require_error(run_tool(JETMOE_FORWARD_TOOL, {"-m", tiny, "-i", in, "-o", out}), "in.safetensors");  // no such file

  auto ids = jetmoe::tensor<std::int64_t, 2>::zeros(jetmoe::make_dims(1, 3));
  auto write_input = [&] {
    jetmoe::io::safetensors_writer input;
    input.add("input_ids", ids);
    input.write(in);
  };
  write_input();
  check_cuda_device_option(run_tool(JETMOE_FORWARD_TOOL, {"-m", tiny, "-i", in, "-o", out, "--device", "cuda"}));
  fs::remove(out);

  ids(0, 1) = 384;  // tiny's vocabulary is [0, 384)
  write_input();
  require_error(run_tool(JETMOE_FORWARD_TOOL, {"-m", tiny, "-i", in, "-o", out}), "outside the vocabulary");
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("jetmoe-generate: --help, and mistakes are one line with exit code 2", "[model][tools]") {
  const auto help = run_tool(JETMOE_GENERATE_TOOL, {"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.starts_with("usage: jetmoe-generate"));
  for (const char* option : {"--model", "--prompt", "--n-predict", "--temp", "--top-k", "--top-p", "--seed", "--threads",
                             "--dtype", "--device", "--no-stop"})
    CHECK(help.out.find(option) != std::string::npos);

  require_error(run_tool(JETMOE_GENERATE_TOOL, {"--frobnicate"}), "unknown option '--frobnicate'");
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"-n"}), "needs a value");
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"-n", "many"}), "bad value 'many'");
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"--top-p", "1.5"}), "--top-p");
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"--dtype", "int4"}), "unknown --dtype");
  check_cuda_device_option(run_tool(JETMOE_GENERATE_TOOL, {"--device", "cuda", "-n", "2"}));
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"--model", "/nonexistent/jetmoe-model"}), "does not exist");
  // A model folder without tokenizer.model cannot turn a prompt into tokens.
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"--model", jetmoe_test::data_dir("tiny").string()}), "tokenizer.model");
}

TEST_CASE("jetmoe-generate with no arguments prints the demo model's greedy text", "[model][tools]") {
  // reference greedy.1 is "A class definition" (the tool's default prompt), 40 greedy tokens.
  const auto tok = jetmoe::io::tokenizer::load(jetmoe_test::demo_model_dir() / "tokenizer.model");
  const auto ref = jetmoe::io::safetensors_file::open(jetmoe_test::data_dir("jetmoe-pydoc-5m") / "reference.safetensors");
  REQUIRE(tok.encode("A class definition") == ref.read_flat<std::int64_t>("greedy.1.prompt"));
  std::vector<std::int64_t> expected = ref.read_flat<std::int64_t>("greedy.1.output");
  if (const auto eos = std::find(expected.begin(), expected.end(), tok.eos_id()); eos != expected.end())
    expected.erase(eos, expected.end());  // the tool stops at EOS
  while (tok.byte_value(expected.back()) >= 0) expected.pop_back();  // no half character at the cut
  const std::string expected_text = tok.decode(expected);

  const auto run = run_tool(JETMOE_GENERATE_TOOL, {});
  INFO("stdout: " << run.out << "\nstderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.starts_with(expected_text));
  CHECK(run.out.size() > expected_text.size());  // 64 tokens by default, more than the reference's 40
  CHECK(run.err.find("seed: ") != std::string::npos);
  CHECK(run.err.find("loaded ") != std::string::npos);
  CHECK(run.err.find("prompt:") != std::string::npos);
  CHECK(run.err.find("generation:") != std::string::npos);
  CHECK(run.err.find("tokens/s") != std::string::npos);
}

TEST_CASE("jetmoe-generate: a seed repeats a sampled text; batched prompts print by index", "[model][tools]") {
  const std::vector<std::string> sampled = {"-t", "1", "-n", "16", "--temp", "0.9", "--top-k", "40", "-s", "1234"};
  const auto first = run_tool(JETMOE_GENERATE_TOOL, sampled);
  const auto second = run_tool(JETMOE_GENERATE_TOOL, sampled);
  REQUIRE(first.exit_code == 0);
  CHECK(first.out == second.out);
  CHECK(first.err.find("seed: 1234\n") != std::string::npos);

  const auto batch =
      run_tool(JETMOE_GENERATE_TOOL, {"-t", "1", "-n", "8", "-p", "The for statement", "-p", "Exceptions are"});
  INFO("stdout: " << batch.out << "\nstderr: " << batch.err);
  REQUIRE(batch.exit_code == 0);
  CHECK(batch.out.starts_with("[0] The for statement"));
  CHECK(batch.out.find("\n[1] Exceptions are") != std::string::npos);
  CHECK(line_count(batch.out) == 2);
}

TEST_CASE("jetmoe-generate: a prompt near the context shortens -n with a note; a longer one is an error", "[model][tools]") {
  const auto tok = jetmoe::io::tokenizer::load(jetmoe_test::demo_model_dir() / "tokenizer.model");
  const auto config = jetmoe::models::jetmoe::load_config(jetmoe_test::demo_model_dir() / "config.json");
  const auto context = static_cast<std::size_t>(config.max_position_embeddings);  // 512
  std::string prompt;
  while (tok.encode(prompt + "The for statement ").size() < context - 8) prompt += "The for statement ";
  const std::size_t prompt_tokens = tok.encode(prompt).size();
  REQUIRE(prompt_tokens + 64 > context);
  REQUIRE(prompt_tokens < context);

  const auto shortened = run_tool(JETMOE_GENERATE_TOOL, {"-t", "1", "-p", prompt, "-n", "64"});
  INFO("stderr: " << shortened.err);
  CHECK(shortened.exit_code == 0);
  CHECK(shortened.err.find("note: ") != std::string::npos);
  CHECK(shortened.err.find("generating at most " + std::to_string(context - prompt_tokens)) != std::string::npos);

  std::string too_long = prompt;
  while (tok.encode(too_long).size() <= context) too_long += "The for statement ";
  require_error(run_tool(JETMOE_GENERATE_TOOL, {"-t", "1", "-p", too_long}), "context");
}

#endif  // JETMOE_GENERATE_TOOL && JETMOE_FORWARD_TOOL
