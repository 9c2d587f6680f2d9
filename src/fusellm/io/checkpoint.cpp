// Checkpoint: the weight files of a Hugging Face model directory, seen as one name -> tensor
// table. The file is chosen as transformers does (modeling_utils.from_pretrained): model.safetensors
// first, then model.safetensors.index.json with its shards, then pytorch_model.bin and
// pytorch_model.bin.index.json (torch zip archives, read without running their pickles); fusellm
// also accepts a directory holding exactly one *.safetensors file of another name (hand-exported
// checkpoints).
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/io/torch_zip.hpp"

namespace fusellm {

namespace fs = std::filesystem;

namespace {

// One single-file name and one index name per format, in transformers' order of preference.
struct Layout {
  const char* single;
  const char* index;
  std::unique_ptr<WeightFile> (*open)(const std::string& path);
};
template <typename File>
std::unique_ptr<WeightFile> open_as(const std::string& path) {
  return std::make_unique<File>(path);
}
constexpr Layout kLayouts[] = {
    {"model.safetensors", "model.safetensors.index.json", open_as<SafetensorsFile>},
    {"pytorch_model.bin", "pytorch_model.bin.index.json", open_as<TorchZipFile>},
};

// The shard names of an index, checked: weight_map must be a non-empty object of file names
// inside the directory. Returns shard -> one tensor it should hold (for messages).
std::map<std::string, std::string> read_weight_map(const std::string& index_path,
                                                   std::map<std::string, std::string>& weight_map) {
  const nlohmann::json index = read_json_file(index_path);
  if (!index.is_object()) fail("{}: expected a JSON object, found {}", index_path, index.type_name());
  if (!index.contains("weight_map")) fail("{}: field 'weight_map' is missing", index_path);
  const nlohmann::json& wm = index["weight_map"];
  if (!wm.is_object()) fail("{}: field 'weight_map': expected an object, found {}", index_path, wm.type_name());
  if (wm.empty()) fail("{}: field 'weight_map' is empty", index_path);
  std::map<std::string, std::string> shards;
  for (const auto& [tensor, file] : wm.items()) {
    if (!file.is_string())
      fail("{}: field 'weight_map': tensor '{}': expected a shard file name, found {}", index_path, tensor,
           file.dump());
    const std::string& name = file.get_ref<const std::string&>();
    // A shard is a file next to the index; an absolute path or '..' would read outside the
    // checkpoint, which no Hugging Face writer produces.
    const fs::path p(name);
    if (name.empty() || p.is_absolute() || std::find(p.begin(), p.end(), "..") != p.end())
      fail("{}: field 'weight_map': tensor '{}': shard '{}' is not a file name inside the checkpoint directory",
           index_path, tensor, name);
    weight_map[tensor] = name;
    shards.emplace(name, tensor);
  }
  return shards;
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("{}: checkpoint directory does not exist", dir);
  if (!fs::is_directory(dir, ec)) fail("{}: not a directory (a checkpoint is a directory)", dir);
  const fs::path root(dir);

  std::map<std::string, std::string> weight_map;  // empty unless sharded
  std::string index_path;
  for (const Layout& l : kLayouts) {
    if (fs::exists(root / l.single)) {
      files_.push_back(l.open((root / l.single).string()));
    } else if (fs::exists(root / l.index)) {
      index_path = (root / l.index).string();
      for (const auto& [shard, some_tensor] : read_weight_map(index_path, weight_map)) {
        const fs::path p = root / shard;
        if (!fs::is_regular_file(p, ec))
          fail("{}: shard '{}' (listed for tensor '{}') does not exist in {}", index_path, shard, some_tensor, dir);
        files_.push_back(l.open(p.string()));
      }
    }
    if (!files_.empty()) break;
  }
  if (files_.empty()) {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(root, ec))
      if (e.path().extension() == ".safetensors" && e.is_regular_file()) found.push_back(e.path().filename());
    std::sort(found.begin(), found.end());
    if (found.empty())
      fail("{}: no weights: expected {} or {} with its shards, {} or {} with its shards, or one *.safetensors file",
           dir, kLayouts[0].single, kLayouts[0].index, kLayouts[1].single, kLayouts[1].index);
    if (found.size() > 1)
      fail("{}: {} safetensors files ({}) but no {} to say which tensors each holds", dir, found.size(),
           fmt::join(found, ", "), kLayouts[0].index);
    files_.push_back(std::make_unique<SafetensorsFile>((root / found[0]).string()));
  }

  // One table over all files; a tensor in two shards would make the weights depend on load order.
  for (const auto& f : files_) {
    for (const auto& [name, info] : f->tensors()) {
      const auto [it, inserted] = index_.emplace(name, &info);
      if (!inserted)
        fail("{}: tensor '{}' is in two shards: {} and {}", dir, name, fs::path(it->second->file).filename().string(),
             fs::path(f->path()).filename().string());
    }
  }
  for (const auto& [name, shard] : weight_map) {
    const auto it = index_.find(name);
    if (it == index_.end())
      fail("{}: weight_map puts tensor '{}' in shard '{}', which does not hold it", index_path, name, shard);
    const std::string actual = fs::path(it->second->file).filename().string();
    if (fs::path(it->second->file) != root / shard)
      fail("{}: weight_map puts tensor '{}' in shard '{}', but it is in '{}'", index_path, name, shard, actual);
  }
}

bool Checkpoint::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    fail("{}: no tensor '{}' in the checkpoint ({} tensors in {})", dir_, name, index_.size(),
         fmt::join(shard_files(), ", "));
  return *it->second;
}

Tensor Checkpoint::load_f32(const std::string& name, const std::optional<Shape>& expect) const {
  const TensorInfo& t = info(name);
  if (expect && *expect != t.shape)
    fail("{}: tensor '{}' has shape {}, expected {}", t.file, name, shape_str(t.shape), shape_str(*expect));
  Tensor out(t.shape);
  convert_to_f32(t, out.span());
  return out;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, info] : index_) out.push_back(name);
  return out;
}

std::vector<std::string> Checkpoint::shard_files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(fs::path(f->path()).filename().string());
  return out;
}

// Tensors that are views of the same bytes (a .bin's tied lm_head.weight shares the embedding's
// storage: torch.save keeps views) count once, as transformers' num_parameters counts a tied
// parameter once; safetensors files hold no shared tensors.
int64_t Checkpoint::num_parameters() const {
  std::set<std::pair<const std::byte*, size_t>> seen;
  int64_t n = 0;
  for (const auto& [name, info] : index_)
    if (info->bytes.empty() || seen.emplace(info->bytes.data(), info->bytes.size()).second) n += numel(info->shape);
  return n;
}

std::string Checkpoint::format() const { return files_.front()->format(); }

std::map<std::string, int64_t> Checkpoint::dtype_counts() const {
  std::map<std::string, int64_t> out;
  for (const auto& [name, info] : index_) ++out[std::string(dtype_name(info->dtype))];
  return out;
}

}  // namespace fusellm
