#include "fusellm/eval/special_tokens.hpp"

#include <filesystem>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"

namespace fusellm::eval {

namespace fs = std::filesystem;

namespace {

using Json = nlohmann::json;

Json json_or_empty(const fs::path& p) { return fs::exists(p) ? read_json_file(p.string()) : Json::object(); }

// The class defaults (transformers' LlamaTokenizerFast, GPT2TokenizerFast, GPTNeoXTokenizerFast,
// Qwen2TokenizerFast __init__ signatures), by class name or by the model_type AutoTokenizer maps.
std::pair<std::optional<std::string>, std::optional<std::string>> class_defaults(const std::string& cls,
                                                                                 const std::string& model_type) {
  const std::string key = !cls.empty() ? cls : model_type;
  if (key.rfind("LlamaTokenizer", 0) == 0 || key == "llama" || key == "mistral") return {"<s>", "</s>"};
  if (key.rfind("GPT2Tokenizer", 0) == 0 || key.rfind("GPTNeoXTokenizer", 0) == 0 || key == "gpt2" ||
      key == "gpt_neox" || key == "mpt")
    return {"<|endoftext|>", "<|endoftext|>"};
  if (key.rfind("Qwen2Tokenizer", 0) == 0 || key == "qwen2") return {std::nullopt, "<|endoftext|>"};
  return {std::nullopt, std::nullopt};
}

// A special token field: "text", {"content": "text", ...}, or null. nullopt in `out` for null.
bool read_token_field(const Json& j, const std::string& key, const fs::path& file, std::optional<std::string>& out) {
  if (!j.contains(key)) return false;
  const Json& v = j[key];
  if (v.is_null()) {
    out.reset();
  } else if (v.is_string()) {
    out = v.get<std::string>();
  } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    out = v["content"].get<std::string>();
  } else {
    fail("{}: field '{}': expected a string, an object with a \"content\" string, or null", file.string(), key);
  }
  return true;
}

std::vector<int32_t> stop_ids(const fs::path& dir) {
  const fs::path gen = dir / "generation_config.json";
  const fs::path file = fs::exists(gen) ? gen : dir / "config.json";
  const Json j = json_or_empty(file);
  std::vector<int32_t> out;
  if (!j.contains("eos_token_id") || j["eos_token_id"].is_null()) return out;
  const Json& v = j["eos_token_id"];
  if (v.is_number_integer()) return {v.get<int32_t>()};
  if (!v.is_array()) fail("{}: field 'eos_token_id': expected an integer or a list of integers", file.string());
  for (const Json& e : v) {
    if (!e.is_number_integer())
      fail("{}: field 'eos_token_id': expected an integer or a list of integers", file.string());
    out.push_back(e.get<int32_t>());
  }
  return out;
}

}  // namespace

int32_t SpecialTokens::prefix() const {
  if (bos) return *bos;
  if (eos) return *eos;
  fail("{}: the tokenizer has neither a BOS nor an EOS token (tokenizer_config.json bos_token/eos_token): "
       "lm-evaluation-harness's rolling loglikelihood starts each document with one",
       dir);
}

SpecialTokens special_tokens(const std::string& model_dir, const Tokenizer& tok) {
  const fs::path dir(model_dir);
  const fs::path cfg_path = dir / "tokenizer_config.json", map_path = dir / "special_tokens_map.json";
  const Json cfg = json_or_empty(cfg_path), map = json_or_empty(map_path);
  const Json model = json_or_empty(dir / "config.json");
  const std::string cls = cfg.value("tokenizer_class", std::string());
  const std::string type = model.contains("model_type") && model["model_type"].is_string()
                               ? model["model_type"].get<std::string>() : std::string();
  auto [bos, eos] = class_defaults(cls, type);
  if (!read_token_field(cfg, "bos_token", cfg_path, bos)) read_token_field(map, "bos_token", map_path, bos);
  if (!read_token_field(cfg, "eos_token", cfg_path, eos)) read_token_field(map, "eos_token", map_path, eos);
  SpecialTokens s;
  s.dir = model_dir;
  if (bos) s.bos = tok.token_to_id(*bos);
  if (eos) s.eos = tok.token_to_id(*eos);
  if (s.eos) s.eos_text = tok.decode({*s.eos}, false);
  s.stop_ids = stop_ids(dir);
  return s;
}

}  // namespace fusellm::eval
