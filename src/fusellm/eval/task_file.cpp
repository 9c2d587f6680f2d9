#include "fusellm/eval/task_file.hpp"

#include <filesystem>
#include <fstream>

#include "fusellm/core/error.hpp"
#include "fusellm/data/corpus.hpp"

namespace fusellm::eval {

using Json = nlohmann::json;

std::string TaskLine::where() const { return file_ + ":" + std::to_string(line_); }

void TaskLine::error(const std::string& what) const {
  fail("{}: {}{}", where(), what, format_.empty() ? "" : " (" + format_ + ")");
}

const Json& TaskLine::field(const std::string& key) const {
  if (!j_.contains(key) || j_[key].is_null()) error("field '" + key + "' is missing");
  return j_[key];
}

std::string TaskLine::string(const std::string& key) const {
  const Json& v = field(key);
  if (!v.is_string()) error("field '" + key + "': expected a string, found " + v.dump());
  return v.get<std::string>();
}

int64_t TaskLine::integer(const std::string& key) const {
  const Json& v = field(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  // HellaSwag's label and some exports' gold are strings of digits ("3"): the harness turns a
  // rendered target of digits into an int.
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s);
  }
  error("field '" + key + "': expected an integer, found " + v.dump());
}

namespace {
std::vector<std::string> string_list(const TaskLine& l, const Json& v, const std::string& name) {
  if (!v.is_array()) l.error("field '" + name + "': expected a list of strings, found " + v.dump());
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) l.error("field '" + name + "'[" + std::to_string(i) + "]: expected a string, found " + v[i].dump());
    out.push_back(v[i].get<std::string>());
  }
  return out;
}
}  // namespace

std::vector<std::string> TaskLine::strings(const std::string& key) const { return string_list(*this, field(key), key); }

std::vector<std::string> TaskLine::strings(const std::string& obj, const std::string& key) const {
  const Json& o = field(obj);
  if (!o.is_object() || !o.contains(key) || o[key].is_null()) error("field '" + obj + "." + key + "' is missing");
  return string_list(*this, o[key], obj + "." + key);
}

std::vector<TaskLine> read_task_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the task file", path);
  std::vector<TaskLine> out;
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (is_blank(text)) continue;
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::exception& e) {
      fail("{}:{}: not a JSON object: {}", path, line, e.what());
    }
    if (!j.is_object()) fail("{}:{}: expected a JSON object, found {}", path, line, j.type_name());
    out.emplace_back(std::move(j), path, line);
  }
  if (out.empty()) fail("{}: the task file has no document (no non-blank line)", path);
  return out;
}

std::string task_name(const std::string& path) {
  std::filesystem::path p(path);
  while (p.has_extension() && (p.extension() == ".jsonl" || p.extension() == ".json" || p.extension() == ".txt")) p = p.stem();
  return p.filename().string();
}

}  // namespace fusellm::eval
