#pragma once
// One setting's value as a job file spells it: TOML's value types, without the TOML library, so
// that the components below job/ can declare their settings (core/config_field.hpp) and a value
// from the file and one from the command line (`--set section.key=value`) go through the same
// checks.
#include <cstdint>
#include <string>
#include <vector>

namespace fusellm::config {

struct Value {
  enum class Kind { String, Integer, Float, Boolean, Array, Table, Date, Time, DateTime };
  Kind kind = Kind::String;
  std::string str;
  int64_t integer = 0;
  double real = 0.0;
  bool boolean = false;
  std::vector<Value> items;  // Array

  static Value of_string(std::string s);
  static Value of_integer(int64_t v);
  static Value of_float(double v);
  static Value of_bool(bool v);
  static Value of_array(std::vector<Value> items);
  static Value of_kind(Kind k);  // a table, date or time: only its kind matters (it is refused)

  bool is_number() const { return kind == Kind::Integer || kind == Kind::Float; }
  // "an integer", "a string", ...
  std::string type_name() const;
  // For messages: the type and a short rendering of the value ("a string (\"10\")").
  std::string found() const;
  // The value as TOML text: strings quoted and escaped, floats that read back as the same double.
  std::string toml() const;

  bool operator==(const Value&) const = default;
};

// A string as a TOML basic string ("...", with escapes).
std::string toml_string(std::string_view s);
// Shortest text that reads back as the same double, with a '.' or exponent so TOML sees a float.
std::string toml_float(double v);

}  // namespace fusellm::config
