#include "fusellm/core/config_value.hpp"

#include <fmt/format.h>

#include <sstream>

namespace fusellm::config {

Value Value::of_string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.str = std::move(s);
  return v;
}
Value Value::of_integer(int64_t i) {
  Value v;
  v.kind = Kind::Integer;
  v.integer = i;
  return v;
}
Value Value::of_float(double d) {
  Value v;
  v.kind = Kind::Float;
  v.real = d;
  return v;
}
Value Value::of_bool(bool b) {
  Value v;
  v.kind = Kind::Boolean;
  v.boolean = b;
  return v;
}
Value Value::of_array(std::vector<Value> items) {
  Value v;
  v.kind = Kind::Array;
  v.items = std::move(items);
  return v;
}
Value Value::of_kind(Kind k) {
  Value v;
  v.kind = k;
  return v;
}

std::string Value::type_name() const {
  switch (kind) {
    case Kind::String: return "a string";
    case Kind::Integer: return "an integer";
    case Kind::Float: return "a float";
    case Kind::Boolean: return "a boolean";
    case Kind::Array: return "an array";
    case Kind::Table: return "a table";
    case Kind::Date: return "a date";
    case Kind::Time: return "a time";
    case Kind::DateTime: return "a date-time";
  }
  return "nothing";
}

std::string Value::found() const {
  std::ostringstream os;
  if (kind == Kind::String) os << '"' << str << '"';
  else if (kind == Kind::Integer) os << integer;
  else if (kind == Kind::Float) os << real;
  else if (kind == Kind::Boolean) os << (boolean ? "true" : "false");
  std::string v = os.str();
  if (v.size() > 60) v = v.substr(0, 57) + "...";
  return v.empty() ? type_name() : type_name() + " (" + v + ")";
}

std::string Value::toml() const {
  switch (kind) {
    case Kind::String: return toml_string(str);
    case Kind::Integer: return std::to_string(integer);
    case Kind::Float: return toml_float(real);
    case Kind::Boolean: return boolean ? "true" : "false";
    case Kind::Array: {
      std::string s = "[";
      for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i].toml();
      return s + "]";
    }
    default: return "{}";
  }
}

std::string toml_string(std::string_view s) {
  std::string o = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (ch < 0x20 || ch == 0x7f) o += fmt::format("\\u{:04X}", ch);
        else o += char(ch);
    }
  }
  return o + "\"";
}

std::string toml_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

}  // namespace fusellm::config
