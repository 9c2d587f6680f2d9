#include "fusellm/core/state_dict.hpp"

#include "fusellm/core/error.hpp"

namespace fusellm {

namespace {
const char* kind_name(const StateValue& v) {
  constexpr const char* names[] = {"an int64", "a uint64", "a double", "a string"};
  return names[v.index()];
}
template <class T>
const T& get(const KeyValues& kv, const std::string& key, const std::string& where) {
  const StateValue* v = kv.find(key);
  if (!v) fail("{}: value '{}' is missing", where, key);
  const T* x = std::get_if<T>(v);
  if (!x) fail("{}: value '{}' is {}, not {}", where, key, kind_name(*v), kind_name(StateValue(T{})));
  return *x;
}
}  // namespace

void KeyValues::set(const std::string& key, StateValue v) {
  for (auto& [k, old] : entries_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  entries_.emplace_back(key, std::move(v));
}

const StateValue* KeyValues::find(const std::string& key) const {
  for (const auto& [k, v] : entries_)
    if (k == key) return &v;
  return nullptr;
}

int64_t KeyValues::i64(const std::string& key, const std::string& where) const { return get<int64_t>(*this, key, where); }
uint64_t KeyValues::u64(const std::string& key, const std::string& where) const {
  return get<uint64_t>(*this, key, where);
}
double KeyValues::f64(const std::string& key, const std::string& where) const { return get<double>(*this, key, where); }
const std::string& KeyValues::str(const std::string& key, const std::string& where) const {
  return get<std::string>(*this, key, where);
}

}  // namespace fusellm
