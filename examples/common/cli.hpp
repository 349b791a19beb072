// examples/common/cli.hpp — a small command-line parser shared by the jetmoe tools.
//
// Options are declared with a help line and a target variable; `parse` fills them, prints
// `--help`, and turns every mistake (unknown option, missing value, bad number) into a
// one-line error with a hint, never an exception trace.
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace jetmoe::cli {

class parser {
 public:
  parser(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  parser& flag(std::string names, std::string help, bool& target) {
    options_.push_back({std::move(names), "", std::move(help), [&target](std::string_view) { target = true; return true; }, false});
    return *this;
  }
  parser& text(std::string names, std::string metavar, std::string help, std::string& target) {
    options_.push_back({std::move(names), std::move(metavar), std::move(help),
                        [&target](std::string_view v) { target = std::string(v); return true; }, true});
    return *this;
  }
  template <class Number>
  parser& number(std::string names, std::string metavar, std::string help, Number& target) {
    options_.push_back({std::move(names), std::move(metavar), std::move(help),
                        [&target](std::string_view v) { return parse_number(v, target); }, true});
    return *this;
  }

  // Returns true to go on; false after --help (exit code 0) or an error (exit code 2, in `exit_code`).
  bool parse(int argc, char** argv, int& exit_code) {
    exit_code = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        print_help(stdout);
        return false;
      }
      std::string_view name = arg, inline_value;
      bool has_inline = false;
      if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
        has_inline = true;
      }
      const option* match = find(name);
      if (match == nullptr) return fail(exit_code, "unknown option '" + std::string(arg) + "'");
      std::string_view value;
      if (match->takes_value) {
        if (has_inline) value = inline_value;
        else if (i + 1 < argc) value = argv[++i];
        else return fail(exit_code, "option '" + std::string(name) + "' needs a value " + match->metavar);
      }
      if (!match->apply(value))
        return fail(exit_code, "bad value '" + std::string(value) + "' for option '" + std::string(name) + "'");
    }
    return true;
  }

  void print_help(std::FILE* out) const {
    std::fprintf(out, "usage: %s [options]\n\n%s\n\noptions:\n", program_.c_str(), summary_.c_str());
    for (const auto& o : options_) {
      std::string left = "  " + o.names + (o.metavar.empty() ? "" : " " + o.metavar);
      std::fprintf(out, "%-30s %s\n", left.c_str(), o.help.c_str());
    }
    std::fprintf(out, "  %-28s %s\n", "-h, --help", "show this help and exit");
  }

 private:
  struct option {
    std::string names;  // e.g. "-m, --model"
    std::string metavar;
    std::string help;
    std::function<bool(std::string_view)> apply;
    bool takes_value;
  };

  const option* find(std::string_view name) const {
    for (const auto& o : options_) {
      std::string_view rest = o.names;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        std::string_view one = rest.substr(0, comma);
        while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
        if (one == name) return &o;
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
    return nullptr;
  }

  bool fail(int& exit_code, const std::string& message) const {
    std::fprintf(stderr, "%s: %s (try --help)\n", program_.c_str(), message.c_str());
    exit_code = 2;
    return false;
  }

  template <class Number>
  static bool parse_number(std::string_view text, Number& target) {
    if constexpr (std::is_floating_point_v<Number>) {
      char* end = nullptr;
      const std::string copy(text);
      const double v = std::strtod(copy.c_str(), &end);
      if (copy.empty() || end != copy.c_str() + copy.size()) return false;
      target = static_cast<Number>(v);
      return true;
    } else {
      const auto* last = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), last, target);
      return ec == std::errc() && ptr == last;
    }
  }

  std::string program_;
  std::string summary_;
  std::vector<option> options_;
};

}  // namespace jetmoe::cli
