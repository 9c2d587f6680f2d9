#pragma once
// A task file: JSON Lines, one document per non-blank line, read whole (task files are small).
// Each line's fields are read through TaskLine, whose errors name the file, the line and the
// field ("arc.jsonl:3: field 'answerKey' is missing (ARC format, told by line 1)").
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fusellm::eval {

class TaskLine {
 public:
  TaskLine(nlohmann::json j, std::string file, int64_t line, std::string format = "")
      : j_(std::move(j)), file_(std::move(file)), line_(line), format_(std::move(format)) {}

  const nlohmann::json& json() const { return j_; }
  int64_t line() const { return line_; }
  std::string where() const;  // "file:line"
  bool has(const std::string& key) const { return j_.contains(key); }
  void set_format(std::string f) { format_ = std::move(f); }

  const nlohmann::json& field(const std::string& key) const;  // required, not null
  std::string string(const std::string& key) const;
  int64_t integer(const std::string& key) const;           // an integer, or a string of digits
  std::vector<std::string> strings(const std::string& key) const;  // a list of strings
  // `obj.key` where obj is an object field: ARC's choices.text.
  std::vector<std::string> strings(const std::string& obj, const std::string& key) const;
  [[noreturn]] void error(const std::string& what) const;  // "file:line: what (format ...)"

 private:
  nlohmann::json j_;
  std::string file_;
  int64_t line_;
  std::string format_;
};

// Every non-blank line of `path` as a JSON object; Error (file:line) on a line that is not one,
// and (file) on a file with none.
std::vector<TaskLine> read_task_file(const std::string& path);

// The task's name: the file name without its extension(s) (".jsonl", ".json", ".txt").
std::string task_name(const std::string& path);

}  // namespace fusellm::eval
