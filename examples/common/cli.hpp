// examples/common/cli.hpp — a small command-line parser shared by the jetmoe tools.
//
// Options are declared with a help line and a target variable; `parse` fills them, prints
// `--help`, and turns every mistake (unknown option, missing value, bad number) into a
// one-line error with a hint, never an exception trace. Checks that only make sense after
// parsing (a required option, a value out of range) report through `error`, in the same form.
#pragma once

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace jetmoe::cli {

// The exit code of every usage or run-time error of the tools.
inline constexpr int usage_error = 2;

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
  // An option that may be given several times; each value is appended in order.
  parser& texts(std::string names, std::string metavar, std::string help, std::vector<std::string>& target) {
    options_.push_back({std::move(names), std::move(metavar), std::move(help),
                        [&target](std::string_view v) { target.emplace_back(v); return true; }, true});
    return *this;
  }
  template <class Number>
  parser& number(std::string names, std::string metavar, std::string help, Number& target) {
    options_.push_back({std::move(names), std::move(metavar), std::move(help),
                        [&target](std::string_view v) { return parse_number(v, target); }, true});
    return *this;
  }
  // A number whose absence the program wants to notice (e.g. "no seed given: draw one").
  template <class Number>
  parser& number(std::string names, std::string metavar, std::string help, std::optional<Number>& target) {
    options_.push_back({std::move(names), std::move(metavar), std::move(help),
                        [&target](std::string_view v) {
                          Number value{};
                          if (!parse_number(v, value)) return false;
                          target = value;
                          return true;
                        },
                        true});
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
      if (!arg.starts_with("-") || arg == "-")
        return fail(exit_code, "unexpected argument '" + std::string(arg) + "'; every input is given with an option");
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
      } else if (has_inline) {
        return fail(exit_code, "option '" + std::string(name) + "' takes no value");
      }
      if (!match->apply(value))
        return fail(exit_code, "bad value '" + std::string(value) + "' for option '" + std::string(name) + "'");
    }
    return true;
  }

  // Reports a mistake found after parsing, like parse() does; returns the exit code to use.
  // `hint` adds "(try --help)", for mistakes the help text can fix.
  int error(const std::string& message, bool hint = true) const {
    std::fprintf(stderr, "%s: %s%s\n", program_.c_str(), message.c_str(), hint ? " (try --help)" : "");
    return usage_error;
  }

  void print_help(std::FILE* out) const {
    std::fprintf(out, "usage: %s [options]\n\n%s\n\noptions:\n", program_.c_str(), summary_.c_str());
    for (const auto& o : options_) {
      std::string left = "  " + o.names + (o.metavar.empty() ? "" : " " + o.metavar);
      if (left.size() > 30) left += "\n" + std::string(31, ' ');  // keep the help column aligned
      std::fprintf(out, "%-30s %s\n", left.c_str(), o.help.c_str());
    }
    std::fprintf(out, "  %-28s %s\n", "-h, --help", "show this help and exit");
  }

  const std::string& program() const { return program_; }

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
    exit_code = error(message);
    return false;
  }

  template <class Number>
  static bool parse_number(std::string_view text, Number& target) {
    if constexpr (std::is_floating_point_v<Number>) {
      char* end = nullptr;
      const std::string copy(text);
      const double v = std::strtod(copy.c_str(), &end);
      if (copy.empty() || copy.front() == ' ' || end != copy.c_str() + copy.size()) return false;
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
