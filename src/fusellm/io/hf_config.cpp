// config.json of a Hugging Face checkpoint and the JSON/text file readers the io layer shares.
// Getters are strict about types (a string where an integer belongs is an error, not a zero),
// and every error names the file and the field, so a bad config is fixed without a debugger.
#include "fusellm/io/hf_config.hpp"

#include <fmt/ranges.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {

std::string found(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: is a directory, expected a file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error: {}", path, std::strerror(errno));
  return std::move(ss).str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    fail("{}: invalid JSON at byte {}: {}", path, e.byte, e.what());
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number beyond double ("1e999")
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

HFConfig HFConfig::load(const std::string& path) {
  std::error_code ec;
  const std::string file =
      std::filesystem::is_directory(path, ec) ? (std::filesystem::path(path) / "config.json").string() : path;
  nlohmann::json j = read_json_file(file);
  if (!j.is_object()) fail("{}: expected a JSON object, found {}", file, j.type_name());
  return HFConfig(std::move(j), file);
}

void HFConfig::field_error(const std::string& key, const std::string& what) const {
  fail("{}: field '{}': {}", path_, key, what);
}

bool HFConfig::has(const std::string& key) const {
  looked_at_->insert(key);
  const auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

namespace {

// The value under `key`, or an error for a missing (absent or null) required field.
const nlohmann::json& required(const HFConfig& c, const std::string& key) {
  if (!c.has(key)) fail("{}: field '{}' is missing", c.path(), key);
  return c.json()[key];
}

int64_t to_int(const HFConfig& c, const std::string& key, const nlohmann::json& v) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      c.field_error(key, fmt::format("expected an integer, found {} (out of range)", found(v)));
    return v.get<int64_t>();
  }
  // Some exporters write integral values as floats ("max_position_embeddings": 2048.0); Python
  // code would use them as ints, so accept those and only those.
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 0x1p63) return int64_t(d);
  }
  c.field_error(key, fmt::format("expected an integer, found {}", found(v)));
}

double to_float(const HFConfig& c, const std::string& key, const nlohmann::json& v) {
  if (!v.is_number()) c.field_error(key, fmt::format("expected a number, found {}", found(v)));
  return v.get<double>();
}

}  // namespace

int64_t HFConfig::get_int(const std::string& key) const { return to_int(*this, key, required(*this, key)); }

int64_t HFConfig::get_int(const std::string& key, int64_t dflt) const {
  return has(key) ? to_int(*this, key, j_[key]) : dflt;
}

double HFConfig::get_float(const std::string& key) const { return to_float(*this, key, required(*this, key)); }

double HFConfig::get_float(const std::string& key, double dflt) const {
  return has(key) ? to_float(*this, key, j_[key]) : dflt;
}

bool HFConfig::get_bool(const std::string& key, bool dflt) const {
  if (!has(key)) return dflt;
  const nlohmann::json& v = j_[key];
  if (!v.is_boolean()) field_error(key, fmt::format("expected true or false, found {}", found(v)));
  return v.get<bool>();
}

std::string HFConfig::get_string(const std::string& key) const {
  const nlohmann::json& v = required(*this, key);
  if (!v.is_string()) field_error(key, fmt::format("expected a string, found {}", found(v)));
  return v.get<std::string>();
}

std::string HFConfig::get_string(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_string(key) : dflt;
}

std::vector<std::string> HFConfig::unread_fields() const {
  std::vector<std::string> out;
  if (!j_.is_object()) return out;
  for (const auto& [key, value] : j_.items())
    if (!looked_at_->count(key)) out.push_back(key);
  return out;
}

int64_t HFConfig::get_int_any(std::initializer_list<const char*> keys) const {
  std::vector<std::string> names;
  for (const char* k : keys) {
    if (has(k)) return get_int(k);
    names.push_back(fmt::format("'{}'", k));
  }
  fail("{}: none of the fields {} is present", path_, fmt::join(names, ", "));
}

}  // namespace fusellm
