#pragma once
// Reading tokenizer.json parts with errors that name the file and the part
// ("tok/tokenizer.json: pre_tokenizer.pretokenizers[1]: unsupported type ...").
#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/core/error.hpp"

namespace fusellm::tok {

using json = nlohmann::json;

struct Ctx {
  std::string origin;  // the file (or "<string>")
  std::string part;    // "model", "normalizer.normalizers[2]"
  int depth = 0;       // nesting, bounded so that hostile files cannot exhaust the stack

  Ctx child(std::string_view key) const {
    return {origin, part.empty() ? std::string(key) : part + "." + std::string(key), depth + 1};
  }
  Ctx index(std::size_t i) const { return {origin, part + "[" + std::to_string(i) + "]", depth + 1}; }
  void check_depth() const {
    if (depth > 64) fail("nested too deeply");
  }

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw Error(origin + ": " + part + ": " + fmt::format(f, std::forward<Args>(args)...));
  }
};

inline std::string json_kind(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "something else";
  }
}

inline const json& need_object(const json& j, const Ctx& c) {
  if (!j.is_object()) c.fail("expected an object, found {}", json_kind(j));
  return j;
}

// The "type" field of a part (required, a string).
inline std::string type_of(const json& j, const Ctx& c) {
  need_object(j, c);
  auto it = j.find("type");
  if (it == j.end()) c.fail("missing field \"type\"");
  if (!it->is_string()) c.fail("field \"type\": expected a string, found {}", json_kind(*it));
  return it->get<std::string>();
}

inline const json* find_field(const json& j, std::string_view key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

inline const json& need_field(const json& j, std::string_view key, const Ctx& c) {
  auto it = j.find(key);
  if (it == j.end()) c.fail("missing field \"{}\"", key);
  return *it;
}

inline std::string get_string(const json& j, std::string_view key, const Ctx& c) {
  const json& v = need_field(j, key, c);
  if (!v.is_string()) c.fail("field \"{}\": expected a string, found {}", key, json_kind(v));
  return v.get<std::string>();
}
inline std::string get_string(const json& j, std::string_view key, const Ctx& c, const std::string& dflt) {
  const json* v = find_field(j, key);
  if (!v || v->is_null()) return dflt;
  if (!v->is_string()) c.fail("field \"{}\": expected a string, found {}", key, json_kind(*v));
  return v->get<std::string>();
}
inline bool get_bool(const json& j, std::string_view key, const Ctx& c, bool dflt) {
  const json* v = find_field(j, key);
  if (!v || v->is_null()) return dflt;
  if (!v->is_boolean()) c.fail("field \"{}\": expected true or false, found {}", key, json_kind(*v));
  return v->get<bool>();
}
inline bool get_bool(const json& j, std::string_view key, const Ctx& c) {
  const json& v = need_field(j, key, c);
  if (!v.is_boolean()) c.fail("field \"{}\": expected true or false, found {}", key, json_kind(v));
  return v.get<bool>();
}
// A non-negative integer that fits max_value.
inline uint64_t get_uint(const json& j, std::string_view key, const Ctx& c, uint64_t max_value = UINT32_MAX) {
  const json& v = need_field(j, key, c);
  if (v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)) {
    const auto x = v.get<uint64_t>();
    if (x > max_value) c.fail("field \"{}\": {} is out of range (at most {})", key, x, max_value);
    return x;
  }
  c.fail("field \"{}\": expected a non-negative integer, found {}", key, v.is_number() ? v.dump() : json_kind(v));
}
inline uint64_t get_uint(const json& j, std::string_view key, const Ctx& c, uint64_t dflt, uint64_t max_value) {
  const json* v = find_field(j, key);
  if (!v || v->is_null()) return dflt;
  return get_uint(j, key, c, max_value);
}
// A field holding exactly one character (Rust `char`), returned as UTF-8.
std::string get_char(const json& j, std::string_view key, const Ctx& c);

// Metaspace's prepend_scheme (pre-tokenizer and decoder alike): "always" (default), "first" or
// "never"; files from before the field existed carry add_prefix_space, where false meant "never".
enum class PrependScheme { Always, First, Never };
inline PrependScheme get_prepend_scheme(const json& j, const Ctx& c) {
  const std::string scheme = get_string(j, "prepend_scheme", c, "always");
  PrependScheme p = PrependScheme::Always;
  if (scheme == "first")
    p = PrependScheme::First;
  else if (scheme == "never")
    p = PrependScheme::Never;
  else if (scheme != "always")
    c.fail("field \"prepend_scheme\": unknown value \"{}\" (supported: \"always\", \"first\", \"never\")", scheme);
  if (const json* a = find_field(j, "add_prefix_space"); a && a->is_boolean() && !a->get<bool>()) p = PrependScheme::Never;
  return p;
}

// The parts of a "Sequence" normalizer, pre-tokenizer or decoder: the array in field `key`, each
// element made by `make(element, ctx)` (which gives nullptr for a JSON null: refused here).
template <class Make>
auto sequence_parts(const json& j, std::string_view key, const Ctx& c, std::string_view what, Make&& make) {
  c.check_depth();
  const json& arr = need_field(j, key, c);
  if (!arr.is_array()) c.fail("field \"{}\": expected an array, found {}", key, json_kind(arr));
  std::vector<decltype(make(arr, c))> parts;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const Ctx ic = c.child(key).index(i);
    auto p = make(arr[i], ic);
    if (!p) ic.fail("expected {}, found null", what);
    parts.push_back(std::move(p));
  }
  return parts;
}

// In a part factory's catch block: an Error from below that does not yet name the file and the
// part gets them (c.fail); one that does is rethrown as it is.
[[noreturn]] inline void rethrow_in(const Ctx& c, const Error& e) {
  const std::string what = e.what();
  if (what.rfind(c.origin + ": ", 0) == 0) throw;  // the exception being handled
  c.fail("{}", what);
}

// "a", "b" and "c" -> "\"a\", \"b\", \"c\"" for "supported: ..." lists.
inline std::string join_quoted(std::initializer_list<const char*> names) {
  std::string s;
  for (const char* n : names) {
    if (!s.empty()) s += ", ";
    s += '"';
    s += n;
    s += '"';
  }
  return s;
}

}  // namespace fusellm::tok
