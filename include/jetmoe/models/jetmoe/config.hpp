// jetmoe/models/jetmoe/config.hpp — the JetMoE hyper-parameters and their config.json form.
//
// parse_config reads both the names current transformers writes and the legacy names of the
// published jetmoe-8b config (num_layers, moe_num_experts, moe_top_k, ffn_hidden_size,
// n_positions, layer_norm_epsilon). When a legacy and a current name are both present they
// must agree. rope_theta may sit at the top level or inside "rope_parameters". to_json writes
// the current names only.
//
//   auto cfg = jetmoe::models::jetmoe::load_config(model_dir / "config.json");
//   cfg.query_width();  // Dq = num_kv_heads · kv_channels
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "jetmoe/core/error.hpp"
#include "jetmoe/io/atomic_file.hpp"
#include "jetmoe/io/strict_json.hpp"

namespace jetmoe::models::jetmoe {

struct config {
  // Symbols as in the design notes.
  std::int64_t vocab_size = 0;         // V
  std::int64_t hidden_size = 0;        // H
  std::int64_t num_layers = 0;         // L
  std::int64_t num_experts = 0;        // E
  std::int64_t top_k = 0;              // K: experts per token, in both MoA and MoE
  std::int64_t num_kv_heads = 0;       // Hkv
  std::int64_t kv_channels = 0;        // D: the head dimension (not hidden_size / heads)
  std::int64_t intermediate_size = 0;  // I: per expert; input_linear is 2I wide
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;  // the final norm's; the per-layer norms use 1e-6
  double rope_theta = 10000.0;
  bool tie_word_embeddings = true;
  std::optional<std::int64_t> bos_token_id = 1;
  std::optional<std::int64_t> eos_token_id = 2;
  std::optional<std::int64_t> pad_token_id;  // the classifier pools at the last non-pad token
  double aux_loss_coef = 0.01;
  std::int64_t num_labels = 2;  // sequence classification; transformers' default

  std::int64_t query_width() const { return num_kv_heads * kv_channels; }  // Dq, per selected expert
  std::int64_t num_query_heads() const { return top_k * num_kv_heads; }    // K·Hkv

  // Throws jetmoe::error, starting with `source`, when the values cannot describe a model.
  void validate(std::string_view source = "jetmoe config") const;

  friend bool operator==(const config&, const config&) = default;
};

namespace config_detail {

template <class... Parts>
[[noreturn]] void fail(std::string_view source, Parts&&... parts) {
  throw ::jetmoe::error(::jetmoe::detail::concat(source, ": ", std::forward<Parts>(parts)...));
}

// Largest size accepted: keeps every product of two sizes inside int64 and indices in int32.
inline constexpr std::int64_t max_size = std::numeric_limits<std::int32_t>::max();

// Reads fields from a config object. A field may have several accepted names (current first,
// then legacy); when more than one is present their values must agree.
class field_reader {
 public:
  field_reader(const nlohmann::json& json, std::string_view source) : json_(json), source_(source) {}

  struct found {
    std::string_view name;
    const nlohmann::json* value = nullptr;
    explicit operator bool() const { return value != nullptr; }
  };

  found find(std::initializer_list<std::string_view> names) const {
    found first;
    for (const std::string_view name : names) {
      const auto it = json_.find(std::string(name));
      if (it == json_.end()) continue;
      if (!first) {
        first = {name, &*it};
      } else if (*it != *first.value) {
        fail(source_, "\"", name, "\" (", it->dump(), ") conflicts with \"", first.name, "\" (", first.value->dump(),
             ")");
      }
    }
    return first;
  }

  std::optional<std::int64_t> integer(std::initializer_list<std::string_view> names) const {
    const found f = find(names);
    if (!f) return std::nullopt;
    return as_integer(f);
  }

  std::int64_t size(std::initializer_list<std::string_view> names) const {
    const found f = find(names);
    if (!f) {
      std::string also;  // the legacy names, so the message covers every accepted spelling
      for (auto it = names.begin() + 1; it != names.end(); ++it)
        also += (also.empty() ? " (or legacy \"" : "\" or \"") + std::string(*it);
      if (!also.empty()) also += "\")";
      fail(source_, "missing field \"", *names.begin(), "\"", also);
    }
    const std::int64_t value = as_integer(f);
    if (value <= 0) fail(source_, "\"", f.name, "\" must be positive, got ", value);
    if (value > max_size) fail(source_, "\"", f.name, "\" = ", value, " is too large (limit ", max_size, ")");
    return value;
  }

  std::optional<double> number(std::initializer_list<std::string_view> names) const {
    const found f = find(names);
    if (!f) return std::nullopt;
    if (!f.value->is_number()) fail(source_, "\"", f.name, "\" must be a number, got ", f.value->dump());
    return f.value->get<double>();
  }

  std::optional<bool> boolean(std::string_view name) const {
    const found f = find({name});
    if (!f) return std::nullopt;
    if (!f.value->is_boolean()) fail(source_, "\"", name, "\" must be true or false, got ", f.value->dump());
    return f.value->get<bool>();
  }

  std::optional<std::string> string(std::string_view name) const {
    const found f = find({name});
    if (!f) return std::nullopt;
    if (!f.value->is_string()) fail(source_, "\"", name, "\" must be a string, got ", f.value->dump());
    return f.value->get<std::string>();
  }

  // A token id: absent → `fallback`, null → none, otherwise an integer.
  std::optional<std::int64_t> token_id(std::string_view name, std::optional<std::int64_t> fallback) const {
    const found f = find({name});
    if (!f) return fallback;
    if (f.value->is_null()) return std::nullopt;
    return as_integer(f);
  }

 private:
  std::int64_t as_integer(const found& f) const {
    const nlohmann::json& v = *f.value;
    if (!v.is_number_integer()) fail(source_, "\"", f.name, "\" must be an integer, got ", v.dump());
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max_size))
      fail(source_, "\"", f.name, "\" = ", v.dump(), " is too large");
    return v.get<std::int64_t>();
  }

  const nlohmann::json& json_;
  std::string_view source_;
};

}  // namespace config_detail

inline void config::validate(std::string_view source) const {
  using config_detail::fail;
  const std::pair<const char*, std::int64_t> sizes[] = {{"vocab_size", vocab_size},
                                                        {"hidden_size", hidden_size},
                                                        {"num_hidden_layers", num_layers},
                                                        {"num_local_experts", num_experts},
                                                        {"num_experts_per_tok", top_k},
                                                        {"num_key_value_heads", num_kv_heads},
                                                        {"kv_channels", kv_channels},
                                                        {"intermediate_size", intermediate_size},
                                                        {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [name, value] : sizes) {
    if (value <= 0) fail(source, name, " must be positive, got ", value);
    if (value > config_detail::max_size) fail(source, name, " = ", value, " is too large");
  }
  if (top_k > num_experts)
    fail(source, "num_experts_per_tok (k = ", top_k, ") > num_local_experts (E = ", num_experts,
         "): k > E, a token cannot choose more experts than exist");
  if (kv_channels % 2 != 0)
    fail(source, "kv_channels (D = ", kv_channels, ") must be even: RoPE rotates the pairs (i, i + D/2)");
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps))
    fail(source, "rms_norm_eps must be positive, got ", rms_norm_eps);
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) fail(source, "rope_theta must be positive, got ", rope_theta);
  if (!(aux_loss_coef >= 0) || !std::isfinite(aux_loss_coef))
    fail(source, "aux_loss_coef must be non-negative, got ", aux_loss_coef);
  if (num_labels <= 0) fail(source, "num_labels must be positive, got ", num_labels);
  const std::pair<const char*, const std::optional<std::int64_t>*> ids[] = {
      {"bos_token_id", &bos_token_id}, {"eos_token_id", &eos_token_id}, {"pad_token_id", &pad_token_id}};
  for (const auto& [name, id] : ids)
    if (id->has_value() && (**id < 0 || **id >= vocab_size))
      fail(source, name, " = ", **id, " is outside the vocabulary [0, ", vocab_size, ")");
}

// Builds a config from a parsed config.json; `source` names the file in errors.
inline config parse_config(const nlohmann::json& json, std::string_view source = "config.json") {
  using config_detail::fail;
  if (!json.is_object()) fail(source, "a config must be a JSON object, got ", json.type_name());
  const config_detail::field_reader fields(json, source);

  if (const auto type = fields.string("model_type"); type && *type != "jetmoe")
    fail(source, "model_type is \"", *type, "\", expected \"jetmoe\"");
  if (const auto act = fields.string("activation_function"); act && *act != "silu")
    fail(source, "activation_function \"", *act, "\" is not supported (JetMoE uses \"silu\")");
  if (const auto glu = fields.boolean("glu"); glu && !*glu)
    fail(source, "glu = false is not supported (JetMoE's experts are gated)");

  config c;
  c.vocab_size = fields.size({"vocab_size"});
  c.hidden_size = fields.size({"hidden_size"});
  c.num_layers = fields.size({"num_hidden_layers", "num_layers"});
  c.num_experts = fields.size({"num_local_experts", "moe_num_experts"});
  c.top_k = fields.size({"num_experts_per_tok", "moe_top_k"});
  c.kv_channels = fields.size({"kv_channels"});
  c.intermediate_size = fields.size({"intermediate_size", "ffn_hidden_size"});
  c.max_position_embeddings = fields.size({"max_position_embeddings", "n_positions"});

  // JetMoE derives num_attention_heads = K·Hkv; either may be given, and both must agree.
  const auto attention_heads = fields.integer({"num_attention_heads"});
  if (json.contains("num_key_value_heads")) {
    c.num_kv_heads = fields.size({"num_key_value_heads"});
    if (attention_heads && *attention_heads != c.top_k * c.num_kv_heads)
      fail(source, "num_attention_heads (", *attention_heads,
           ") conflicts with num_experts_per_tok × num_key_value_heads (", c.top_k, " × ", c.num_kv_heads, " = ",
           c.top_k * c.num_kv_heads, ")");
  } else if (attention_heads) {
    if (*attention_heads <= 0 || *attention_heads % c.top_k != 0)
      fail(source, "num_key_value_heads is missing and num_attention_heads (", *attention_heads,
           ") is not a positive multiple of num_experts_per_tok (", c.top_k, ")");
    c.num_kv_heads = *attention_heads / c.top_k;
  } else {
    fail(source, "missing field \"num_key_value_heads\" (or \"num_attention_heads\" = K · num_key_value_heads)");
  }

  c.rms_norm_eps = fields.number({"rms_norm_eps", "layer_norm_epsilon"}).value_or(c.rms_norm_eps);

  // RoPE: only the default (unscaled, full-width) rotation is implemented.
  std::optional<double> theta = fields.number({"rope_theta"});
  if (const auto params = fields.find({"rope_parameters"}); params && !params.value->is_null()) {
    if (!params.value->is_object()) fail(source, "\"rope_parameters\" must be an object, got ", params.value->dump());
    const std::string nested_source = std::string(source) + " (rope_parameters)";
    const config_detail::field_reader rope(*params.value, nested_source);
    if (const auto type = rope.find({"rope_type", "type"}); type && *type.value != "default")
      fail(source, "rope_parameters.", type.name, " ", type.value->dump(), " is not supported (only \"default\")");
    if (const auto nested = rope.number({"rope_theta"})) {
      if (theta && *theta != *nested)
        fail(source, "rope_theta (", *theta, ") conflicts with rope_parameters.rope_theta (", *nested, ")");
      theta = nested;
    }
  }
  c.rope_theta = theta.value_or(c.rope_theta);
  if (const auto percent = fields.number({"rotary_percent"}); percent && *percent != 1.0)
    fail(source, "rotary_percent ", *percent, " is not supported (RoPE covers the whole head)");

  c.tie_word_embeddings = fields.boolean("tie_word_embeddings").value_or(c.tie_word_embeddings);
  c.bos_token_id = fields.token_id("bos_token_id", c.bos_token_id);
  c.eos_token_id = fields.token_id("eos_token_id", c.eos_token_id);
  c.pad_token_id = fields.token_id("pad_token_id", c.pad_token_id);
  c.aux_loss_coef = fields.number({"aux_loss_coef"}).value_or(c.aux_loss_coef);

  // Classifier labels: "num_labels" or the size of "id2label" (what transformers writes).
  const auto labels = fields.integer({"num_labels"});
  std::optional<std::int64_t> mapped_labels;
  if (const auto id2label = fields.find({"id2label"}); id2label && !id2label.value->is_null()) {
    if (!id2label.value->is_object()) fail(source, "\"id2label\" must be an object, got ", id2label.value->type_name());
    mapped_labels = static_cast<std::int64_t>(id2label.value->size());
  }
  if (labels && mapped_labels && *labels != *mapped_labels)
    fail(source, "num_labels (", *labels, ") conflicts with the ", *mapped_labels, " entries of id2label");
  c.num_labels = labels.value_or(mapped_labels.value_or(c.num_labels));

  c.validate(source);
  return c;
}

// Reads and parses a config.json file.
inline config load_config(const std::filesystem::path& path) {
  return parse_config(::jetmoe::io::read_json_file(path), path.string());
}

// The config.json form, with the current transformers names. rope_theta is written both at the
// top level (read by transformers 4.x) and in rope_parameters (transformers 5).
inline nlohmann::json to_json(const config& c) {
  auto id_or_null = [](const std::optional<std::int64_t>& id) {
    return id ? nlohmann::json(*id) : nlohmann::json(nullptr);
  };
  nlohmann::json json = {
      {"model_type", "jetmoe"},
      {"architectures", {"JetMoeForCausalLM"}},
      {"activation_function", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},
      {"num_local_experts", c.num_experts},
      {"num_experts_per_tok", c.top_k},
      {"num_key_value_heads", c.num_kv_heads},
      {"num_attention_heads", c.num_query_heads()},
      {"kv_channels", c.kv_channels},
      {"intermediate_size", c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_parameters", {{"rope_theta", c.rope_theta}, {"rope_type", "default"}}},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"bos_token_id", id_or_null(c.bos_token_id)},
      {"eos_token_id", id_or_null(c.eos_token_id)},
      {"pad_token_id", id_or_null(c.pad_token_id)},
      {"aux_loss_coef", c.aux_loss_coef},
  };
  if (c.num_labels != 2) {  // transformers' default of 2 needs no mapping
    nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
    for (std::int64_t i = 0; i < c.num_labels; ++i) {
      id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
      label2id["LABEL_" + std::to_string(i)] = i;
    }
    json["id2label"] = id2label;
    json["label2id"] = label2id;
  }
  return json;
}

// Validates and writes config.json atomically.
inline void save_config(const config& c, const std::filesystem::path& path) {
  c.validate(path.string());
  ::jetmoe::io::write_file_atomically(path, to_json(c).dump(2) + "\n");
}

}  // namespace jetmoe::models::jetmoe
