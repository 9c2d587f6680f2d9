// Hugging Face checkpoint export: see export_hf.hpp.
#include "fusellm/model/export_hf.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"

namespace fusellm {

namespace {
namespace fs = std::filesystem;

const char* const kTokenizerFiles[] = {"tokenizer.json",     "tokenizer.model",         "tokenizer_config.json",
                                       "special_tokens_map.json", "added_tokens.json", "vocab.json",
                                       "merges.txt"};
}  // namespace

ExportResult export_hf(std::span<const SafetensorsEntry> tensors, const std::string& config_dir,
                       const std::string& tokenizer_dir, const std::string& out_dir, const ExportOptions& opt) {
  if (opt.dtype != DType::F32 && opt.dtype != DType::BF16 && opt.dtype != DType::F16)
    fail("export: dtype {} is not supported (F32, BF16 or F16)", dtype_name(opt.dtype));
  if (tensors.empty()) fail("export to {}: no tensors", out_dir);
  const fs::path out(out_dir);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) fail("export: cannot create {}: {}", out_dir, ec.message());
  ExportResult res;
  res.tensor_bytes = safetensors_data_bytes(tensors, opt.dtype);

  // Shards: consecutive runs of tensors up to max_shard_bytes each (a tensor larger than that
  // gets a shard of its own, as save_pretrained does).
  std::vector<std::span<const SafetensorsEntry>> shards;
  {
    size_t begin = 0;
    int64_t bytes = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const int64_t b = safetensors_data_bytes(tensors.subspan(i, 1), opt.dtype);
      if (i > begin && bytes + b > opt.max_shard_bytes) {
        shards.push_back(tensors.subspan(begin, i - begin));
        begin = i;
        bytes = 0;
      }
      bytes += b;
    }
    shards.push_back(tensors.subspan(begin));
  }
  std::set<std::string> written;
  if (shards.size() == 1) {
    write_safetensors((out / "model.safetensors").string(), tensors, opt.dtype);
    written.insert("model.safetensors");
  } else {
    nlohmann::json index = {{"metadata", {{"total_size", res.tensor_bytes}}}, {"weight_map", nlohmann::json::object()}};
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
      write_safetensors((out / name).string(), shards[s], opt.dtype);
      for (const SafetensorsEntry& e : shards[s]) index["weight_map"][e.name] = name;
      written.insert(name);
    }
    write_file_atomic((out / "model.safetensors.index.json").string(), index.dump(2) + "\n");
    written.insert("model.safetensors.index.json");
  }
  // Model files of an earlier export that this one did not rewrite.
  const std::regex model_file(R"(model(-\d+-of-\d+)?\.safetensors(\.index\.json)?)");
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (std::regex_match(n, model_file) && !written.count(n)) fs::remove(e.path());
  }

  // config.json with the dtype written.
  nlohmann::json config = read_json_file((fs::path(config_dir) / "config.json").string());
  if (!config.is_object()) fail("{}/config.json: expected a JSON object", config_dir);
  config["torch_dtype"] = opt.dtype == DType::BF16 ? "bfloat16" : opt.dtype == DType::F16 ? "float16" : "float32";
  write_file_atomic((out / "config.json").string(), config.dump(2) + "\n");
  written.insert("config.json");

  auto copy = [&](const fs::path& from, const std::string& name) {
    if (!fs::is_regular_file(from)) return;
    if (fs::exists(out / name) && fs::equivalent(from, out / name)) return;
    write_file_atomic((out / name).string(), read_text_file(from.string()));
    written.insert(name);
  };
  copy(fs::path(config_dir) / "generation_config.json", "generation_config.json");
  for (const char* f : kTokenizerFiles) copy(fs::path(tokenizer_dir) / f, f);
  res.files.assign(written.begin(), written.end());
  return res;
}

}  // namespace fusellm
