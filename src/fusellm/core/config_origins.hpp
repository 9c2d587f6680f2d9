#pragma once
// Where each setting of a job came from: its line in the job file, or the `--set` flag that gave
// it. The reader records it while parsing and the parsed job keeps it (JobConfig::origins), so
// every later message about a setting (a cache made with another top_k, an lr that overflowed the
// weights) names the line without reading the file again. A field absent here has its default.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace fusellm::config {

struct Origin {
  int64_t line = 0;  // in the job file; 0 for a --set
  std::string flag;  // "--set optim.lr=1e-4", or empty
};

class FieldOrigins {
 public:
  std::string file;  // the job file

  // `key` empty: the section's table itself (its header line).
  void record(std::string_view section, size_t index, std::string_view key, Origin o);
  const Origin* find(std::string_view section, std::string_view key, size_t index = 0) const;
  bool is_set(std::string_view section, std::string_view key, size_t index = 0) const {
    return find(section, key, index) != nullptr;
  }
  // The line in the job file; 0 when the field is not written there (a default, or a --set).
  int64_t line(std::string_view section, std::string_view key, size_t index = 0) const;
  // "job.toml:12", "--set optim.lr=1e-4", or "" for a default.
  std::string where(std::string_view section, std::string_view key, size_t index = 0) const;
  std::string where(const Origin& o) const;

 private:
  static std::string id(std::string_view section, size_t index, std::string_view key);
  std::map<std::string, Origin, std::less<>> map_;
};

}  // namespace fusellm::config
