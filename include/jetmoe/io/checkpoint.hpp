// jetmoe/io/checkpoint.hpp — checkpoint: the weights of a model directory, one file or sharded.
//
// A Hugging Face model directory stores its weights either as `model.safetensors` or as shards
// listed by `model.safetensors.index.json` ({"weight_map": {tensor name: shard file}}). Like
// transformers, the single file wins when both exist. Opening a sharded checkpoint checks that
// every listed shard exists, is a valid safetensors file and holds the tensors listed for it,
// so a model loader can then look tensors up by name without caring where they live. As in
// transformers, a shard's tensors that the index does not list are not part of the checkpoint.
//
//   auto weights = jetmoe::io::checkpoint::open(model_dir, [](const auto& p) { draw_bar(p.done, p.total); });
//   auto embed = weights.read<jetmoe::bf16>("model.embed_tokens.weight", jetmoe::make_dims(V, H));
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jetmoe/core/error.hpp"
#include "jetmoe/io/safetensors_reader.hpp"
#include "jetmoe/io/strict_json.hpp"

namespace jetmoe::io {

inline constexpr std::string_view single_weights_file = "model.safetensors";
inline constexpr std::string_view sharded_weights_index = "model.safetensors.index.json";

// What a progress callback is told. While opening, `done`/`total` count shards; while reading,
// they count bytes of tensor data (total = every tensor of the checkpoint, so a loader that
// reads each tensor once ends at done == total).
struct checkpoint_progress {
  enum class stage { opening, reading };
  stage what;
  std::uint64_t done;
  std::uint64_t total;
  std::string_view item;  // the shard just opened or the tensor just read
};
using checkpoint_progress_callback = std::function<void(const checkpoint_progress&)>;

class checkpoint {
 public:
  // `path` is a model directory, a .safetensors file, or a model.safetensors.index.json file.
  static checkpoint open(const std::filesystem::path& path, checkpoint_progress_callback on_progress = {}) {
    namespace fs = std::filesystem;
    checkpoint out;
    out.progress_ = std::make_unique<progress_state>();
    out.progress_->callback = std::move(on_progress);

    std::error_code ec;
    check(fs::exists(path, ec), path.string(), ": no such file or directory");
    if (fs::is_directory(path, ec)) {
      out.directory_ = path;
      if (fs::exists(path / single_weights_file, ec))
        out.open_single(path / single_weights_file);
      else if (fs::exists(path / sharded_weights_index, ec))
        out.open_sharded(path / sharded_weights_index);
      else
        throw error(jetmoe::detail::concat(path.string(), ": no ", single_weights_file, " or ", sharded_weights_index,
                                           " (is this a model directory?)"));
    } else {
      out.directory_ = path.parent_path();
      if (path.filename().string().ends_with(".index.json"))
        out.open_sharded(path);
      else
        out.open_single(path);
    }
    for (const auto& [name, shard] : out.where_)
      out.progress_->total_bytes += out.shards_[shard].info(name).bytes.size();
    return out;
  }

  checkpoint(checkpoint&&) noexcept = default;
  checkpoint& operator=(checkpoint&&) noexcept = default;

  const std::filesystem::path& directory() const { return directory_; }
  bool is_sharded() const { return sharded_; }
  std::size_t shard_count() const { return shards_.size(); }
  std::size_t size() const { return where_.size(); }  // number of tensors
  std::uint64_t total_bytes() const { return progress_->total_bytes; }

  // Replaces the callback given to open() (e.g. once the model starts reading).
  void set_progress_callback(checkpoint_progress_callback on_progress) { progress_->callback = std::move(on_progress); }

  // Every tensor name, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& entry : where_) out.push_back(entry.first);
    return out;
  }
  bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }

  // The shard that holds `name`.
  const safetensors_file& file_of(std::string_view name) const {
    const auto it = where_.find(name);
    if (it == where_.end())
      throw error(jetmoe::detail::concat(directory_.string(), ": the checkpoint has no tensor named \"", name, "\""));
    return shards_[it->second];
  }
  const tensor_info& info(std::string_view name) const { return file_of(name).info(name); }

  // Reads as safetensors_file does, and reports progress.
  template <class T>
  std::vector<T> read_flat(std::string_view name) const {
    auto out = file_of(name).read_flat<T>(name);
    report_read(name);
    return out;
  }
  template <class T, std::size_t Rank>
  tensor<T, Rank> read(std::string_view name) const {
    auto out = file_of(name).read<T, Rank>(name);
    report_read(name);
    return out;
  }
  template <class T, std::size_t Rank>
  tensor<T, Rank> read(std::string_view name, const dims<Rank>& expected) const {
    auto out = file_of(name).read<T, Rank>(name, expected);
    report_read(name);
    return out;
  }
  template <class T, std::size_t Rank>
  void read_into(std::string_view name, tensor_view<T, Rank> out) const {
    file_of(name).read_into(name, out);
    report_read(name);
  }
  template <class T, std::size_t Rank>
  tensor_view<const T, Rank> view(std::string_view name, const dims<Rank>& expected) const {
    auto out = file_of(name).view<T, Rank>(name, expected);
    report_read(name);
    return out;
  }

 private:
  checkpoint() = default;

  struct progress_state {
    checkpoint_progress_callback callback;
    std::atomic<std::uint64_t> bytes_read{0};  // reads may come from several threads
    std::uint64_t total_bytes = 0;
  };

  void report(checkpoint_progress::stage what, std::uint64_t done, std::uint64_t total, std::string_view item) const {
    if (progress_->callback) progress_->callback({what, done, total, item});
  }
  void report_read(std::string_view name) const {
    const std::uint64_t done = progress_->bytes_read += info(name).bytes.size();
    report(checkpoint_progress::stage::reading, done, progress_->total_bytes, name);
  }

  void open_single(const std::filesystem::path& file) {
    shards_.push_back(safetensors_file::open(file));
    for (const std::string& name : shards_.back().names()) where_.emplace(name, 0);
    report(checkpoint_progress::stage::opening, 1, 1, file.filename().string());
  }

  void open_sharded(const std::filesystem::path& index_path) {
    sharded_ = true;
    const std::string index = index_path.string();
    const nlohmann::json json = read_json_file(index_path);
    check(json.is_object(), index, ": expected a JSON object");
    const auto map_it = json.find("weight_map");
    check(map_it != json.end(), index, ": no \"weight_map\"");
    check(map_it->is_object(), index, ": \"weight_map\" must be an object of tensor name → shard file");

    // Group tensors by shard, refusing shard names that could point outside the directory.
    std::map<std::string, std::vector<std::string>> tensors_of_shard;
    for (const auto& [name, shard_json] : map_it->items()) {
      check(shard_json.is_string(), index, ": weight_map entry \"", name, "\" must be a file name, got ",
            shard_json.dump());
      const std::filesystem::path shard = shard_json.get<std::string>();
      bool escapes = shard.empty() || shard.is_absolute();
      for (const auto& part : shard) escapes = escapes || part == "..";
      check(!escapes, index, ": weight_map entry \"", name, "\" names shard \"", shard.string(),
            "\", which is not a file inside the model directory");
      tensors_of_shard[shard.lexically_normal().string()].push_back(name);
    }

    const std::filesystem::path base = index_path.parent_path();
    std::uint64_t opened = 0;
    for (const auto& [shard, tensor_names] : tensors_of_shard) {
      const std::filesystem::path shard_path = base / shard;
      std::error_code ec;
      check(std::filesystem::exists(shard_path, ec), index, ": shard \"", shard, "\" (listed for ", tensor_names.size(),
            " tensors, e.g. \"", tensor_names.front(), "\") does not exist in ", base.string());
      safetensors_file file = safetensors_file::open(shard_path);
      for (const std::string& name : tensor_names) {
        check(file.contains(name), index, " lists tensor \"", name, "\" in shard \"", shard, "\", but ",
              shard_path.string(), " has no such tensor");
        where_.emplace(name, shards_.size());
      }
      shards_.push_back(std::move(file));
      report(checkpoint_progress::stage::opening, ++opened, tensors_of_shard.size(), shard);
    }
  }

  std::filesystem::path directory_;
  bool sharded_ = false;
  std::vector<safetensors_file> shards_;
  std::map<std::string, std::size_t, std::less<>> where_;  // tensor name → index into shards_
  std::unique_ptr<progress_state> progress_;               // behind a pointer so the atomic moves
};

}  // namespace jetmoe::io
