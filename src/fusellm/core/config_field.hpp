#pragma once
// A settings section as a table of fields (torchtitan's JobConfig: one section per component,
// every setting with a documented default). A component declares its section once, next to the
// struct the section fills: per field the key, the type, the default (the struct's own member
// initializer unless the field says otherwise), the member it binds, the check of a value, and a
// one-line meaning. The job file (job/job_config.hpp) reads, writes back, compares and documents
// every field through these entries, so a field's name is spelled once.
//
// Errors: a value a field refuses throws BadValue with the message alone ("must be at least 1,
// found 0"); settings of one section that contradict each other throw Conflict with the keys
// involved. The reader adds the place (file and line, or the --set flag) and the field's name.
#include <fmt/format.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fusellm/core/config_value.hpp"
#include "fusellm/core/did_you_mean.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::config {

// A value a field refuses. `suffix` names an element of an array value ("[1]").
class BadValue : public Error {
 public:
  explicit BadValue(const std::string& what, std::string suffix = "") : Error(what), suffix(std::move(suffix)) {}
  std::string suffix;
};

// Settings of one section that contradict each other; `keys` are named in this order.
class Conflict : public Error {
 public:
  Conflict(std::vector<std::string> keys, const std::string& what) : Error(what), keys(std::move(keys)) {}
  std::vector<std::string> keys;
};

// A component's enum as the job file spells it; the first spelling of each value is written back.
template <typename E>
struct EnumNames {
  std::vector<std::pair<E, std::string_view>> list;

  std::string_view name(E e) const {
    for (const auto& [v, n] : list)
      if (v == e) return n;
    return "?";
  }
  std::optional<E> find(std::string_view s) const {
    for (const auto& [v, n] : list)
      if (n == s) return v;
    return std::nullopt;
  }
  std::vector<std::string_view> names() const {
    std::vector<std::string_view> all;
    for (const auto& [v, n] : list) all.push_back(n);
    return all;
  }
  // BadValue listing the choices, with a "did you mean".
  E parse(std::string_view s) const {
    if (auto e = find(s)) return *e;
    const auto c = closest_name(s, names());
    throw BadValue(fmt::format("expected one of {}, found \"{}\"{}", quoted_list(names()), s,
                               c ? fmt::format(" (did you mean \"{}\"?)", *c) : ""));
  }
};

// Where a value came from, for resolving a relative path: the job file's directory, or the
// working directory for a --set on the command line.
struct SetContext {
  std::filesystem::path base;
};

// Counts and sizes are at most INT32_MAX: the kernels take k and lengths as int, token ids and
// positions are int32, and products of two of them (tokens per step, steps of all epochs) must
// not overflow int64. A larger value would fail later, deep inside HDF5 or an allocation,
// without the field's name.
inline constexpr int64_t kMaxCount = INT32_MAX;

// The accepted range of a float setting; every float must also be finite (TOML has inf and nan).
struct FloatRange {
  enum class Kind { Any, Positive, NonNegative, Interval };
  Kind kind = Kind::Any;
  double lo = 0.0, hi = 0.0;
  bool hi_open = false;
  std::string_view why{};  // Interval: what the bounds mean, for the message

  static FloatRange positive() { return {Kind::Positive}; }
  static FloatRange non_negative() { return {Kind::NonNegative}; }
  static FloatRange interval(double lo, double hi, bool hi_open, std::string_view why) {
    return {Kind::Interval, lo, hi, hi_open, why};
  }
  std::string doc() const;     // "float > 0", "float in [0, 1)"
  void check(double v) const;  // BadValue
};

// Conversions with the job file's messages ("expected an integer, found a string (\"10\")").
int64_t integer_of(const Value& v);
double float_of(const Value& v);  // integers are accepted too ("clip = 1"), as TOML users expect
bool bool_of(const Value& v);
const std::string& string_of(const Value& v);  // non-empty
// An integer in [lo, hi] ("must be at least", then "must be at most", with "(2^31 - 1)" for kMaxCount).
int64_t count_of(const Value& v, int64_t lo, int64_t hi = kMaxCount);
std::string resolve_path(const std::string& p, const SetContext& ctx);

template <typename S>
struct Field {
  std::string_view key{};
  Value::Kind kind = Value::Kind::String;  // what it takes: a --set value for a String field is taken as written
  std::string type{};                      // documentation: "integer >= 1", "\"ce\" | \"bpb\""
  std::string default_text{};              // documentation; empty: S{}'s value as TOML
  std::string_view meaning{};
  std::string_view required{};  // non-empty: the field must be set; says what it holds (for the message)
  std::function<void(S&, const Value&, const SetContext&)> set{};  // throws BadValue
  std::function<std::optional<Value>(const S&)> get{};             // nullopt: unset
  std::function<bool(const S&)> written{};                         // null: when get() has a value

  Field&& defaults_to(std::string text) && { return default_text = std::move(text), std::move(*this); }
  Field&& typed(std::string text) && { return type = std::move(text), std::move(*this); }
  Field&& required_as(std::string_view what) && { return required = what, std::move(*this); }
  Field&& written_when(std::function<bool(const S&)> f) && { return written = std::move(f), std::move(*this); }

  bool is_written(const S& s) const { return written ? written(s) : get(s).has_value(); }
  std::string default_doc() const {
    if (!default_text.empty()) return default_text;
    const auto v = get(S{});
    return v ? "`" + v->toml() + "`" : "unset";
  }
};

// Keys set in the job (file or --set), for checks that depend on what was written.
using IsSet = std::function<bool(std::string_view key)>;

template <typename S>
struct Section {
  std::string_view name{};  // [name] in the job file
  std::string_view note{};  // documentation: what the section is, after its heading
  std::vector<Field<S>> fields{};
  std::function<void(const S&, const IsSet&)> check{};  // contradicting settings: throws Conflict
};

// ---- fields of the common kinds ---------------------------------------------------------------

template <typename S>
Field<S> integer_field(std::string_view key, int64_t S::*m, int64_t lo, std::string_view meaning,
                       int64_t hi = kMaxCount) {
  Field<S> f{key, Value::Kind::Integer, lo == INT64_MIN ? "integer" : fmt::format("integer >= {}", lo), "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) { s.*m = count_of(v, lo, hi); };
  f.get = [=](const S& s) -> std::optional<Value> { return Value::of_integer(s.*m); };
  return f;
}

template <typename S>
Field<S> optional_integer_field(std::string_view key, std::optional<int64_t> S::*m, int64_t lo,
                                std::string_view meaning) {
  Field<S> f{key, Value::Kind::Integer, fmt::format("integer >= {}", lo), "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) { s.*m = count_of(v, lo); };
  f.get = [=](const S& s) -> std::optional<Value> {
    if (!(s.*m)) return std::nullopt;
    return Value::of_integer(*(s.*m));
  };
  return f;
}

template <typename S>
Field<S> float_field(std::string_view key, double S::*m, FloatRange range, std::string_view meaning) {
  Field<S> f{key, Value::Kind::Float, range.doc(), "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) {
    const double d = float_of(v);
    range.check(d);
    s.*m = d;
  };
  f.get = [=](const S& s) -> std::optional<Value> { return Value::of_float(s.*m); };
  return f;
}

template <typename S>
Field<S> bool_field(std::string_view key, bool S::*m, std::string_view meaning) {
  Field<S> f{key, Value::Kind::Boolean, "boolean", "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) { s.*m = bool_of(v); };
  f.get = [=](const S& s) -> std::optional<Value> { return Value::of_bool(s.*m); };
  return f;
}

// A string; an empty member is unset (not written).
template <typename S>
Field<S> string_field(std::string_view key, std::string S::*m, std::string_view meaning) {
  Field<S> f{key, Value::Kind::String, "string", "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) { s.*m = string_of(v); };
  f.get = [=](const S& s) -> std::optional<Value> {
    if ((s.*m).empty()) return std::nullopt;
    return Value::of_string(s.*m);
  };
  return f;
}

// A path, resolved against the job file's directory (or the working directory for --set).
template <typename S>
Field<S> path_field(std::string_view key, std::string S::*m, std::string_view meaning) {
  Field<S> f = string_field(key, m, meaning);
  f.type = "path";
  f.set = [=](S& s, const Value& v, const SetContext& ctx) { s.*m = resolve_path(string_of(v), ctx); };
  return f;
}

template <typename S, typename E>
Field<S> choice_field(std::string_view key, E S::*m, EnumNames<E> names, std::string_view meaning) {
  std::string type;
  for (auto n : names.names()) type += (type.empty() ? "\"" : " | \"") + std::string(n) + "\"";
  Field<S> f{key, Value::Kind::String, type, "", meaning};
  f.set = [=](S& s, const Value& v, const SetContext&) { s.*m = names.parse(string_of(v)); };
  f.get = [=](const S& s) -> std::optional<Value> { return Value::of_string(std::string(names.name(s.*m))); };
  return f;
}

}  // namespace fusellm::config
