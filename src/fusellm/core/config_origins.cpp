#include "fusellm/core/config_origins.hpp"

#include <fmt/format.h>

namespace fusellm::config {

std::string FieldOrigins::id(std::string_view section, size_t index, std::string_view key) {
  return fmt::format("{}[{}].{}", section, index, key);
}

void FieldOrigins::record(std::string_view section, size_t index, std::string_view key, Origin o) {
  map_[id(section, index, key)] = std::move(o);
}

const Origin* FieldOrigins::find(std::string_view section, std::string_view key, size_t index) const {
  auto it = map_.find(id(section, index, key));
  return it == map_.end() ? nullptr : &it->second;
}

int64_t FieldOrigins::line(std::string_view section, std::string_view key, size_t index) const {
  const Origin* o = find(section, key, index);
  return o ? o->line : 0;
}

std::string FieldOrigins::where(const Origin& o) const {
  if (!o.flag.empty()) return o.flag;
  return o.line > 0 ? fmt::format("{}:{}", file, o.line) : file;
}

std::string FieldOrigins::where(std::string_view section, std::string_view key, size_t index) const {
  const Origin* o = find(section, key, index);
  return o ? where(*o) : std::string();
}

}  // namespace fusellm::config
