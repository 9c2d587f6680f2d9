#pragma once
// config.json of a Hugging Face checkpoint, with typed getters whose errors name the file and
// the field ("/m/config.json: field 'num_attention_heads': expected an integer, found "x"").
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fusellm {

class HFConfig {
 public:
  static HFConfig load(const std::string& path);  // path of config.json (or its directory)
  HFConfig(nlohmann::json j, std::string path)
      : j_(std::move(j)), path_(std::move(path)), looked_at_(std::make_shared<std::set<std::string>>()) {}

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }
  bool has(const std::string& key) const;  // present and not null
  int64_t get_int(const std::string& key) const;  // required
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& dflt) const;
  // The first of several synonymous keys that is present (GPT-2's n_embd vs hidden_size).
  int64_t get_int_any(std::initializer_list<const char*> keys) const;
  [[noreturn]] void field_error(const std::string& key, const std::string& what) const;
  // The top-level fields no getter (nor has()) has looked at, in file order: what a family's
  // parser neither used nor checked (model/arch.hpp's unknown_fields). Copies share the record.
  std::vector<std::string> unread_fields() const;

 private:
  nlohmann::json j_;
  std::string path_;
  std::shared_ptr<std::set<std::string>> looked_at_;
};

// Reads a whole file into a string; Error naming the path when it cannot.
std::string read_text_file(const std::string& path);
nlohmann::json read_json_file(const std::string& path);  // parse errors name the file and offset

}  // namespace fusellm
