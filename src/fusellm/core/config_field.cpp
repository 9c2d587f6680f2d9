#include "fusellm/core/config_field.hpp"

namespace fusellm::config {

std::string FloatRange::doc() const {
  switch (kind) {
    case Kind::Positive: return "float > 0";
    case Kind::NonNegative: return "float >= 0";
    case Kind::Interval: return fmt::format("float in [{}, {}{}", lo, hi, hi_open ? ")" : "]");
    case Kind::Any: break;
  }
  return "float";
}

void FloatRange::check(double v) const {
  if (!std::isfinite(v)) throw BadValue(fmt::format("must be a finite number, found {}", v));
  if (kind == Kind::Positive && !(v > 0)) throw BadValue(fmt::format("must be a finite number > 0, found {}", v));
  if (kind == Kind::NonNegative && !(v >= 0)) throw BadValue(fmt::format("must be a finite number >= 0, found {}", v));
  if (kind == Kind::Interval && !(v >= lo && (hi_open ? v < hi : v <= hi)))
    throw BadValue(fmt::format("must be in [{}, {}{} ({}), found {}", lo, hi, hi_open ? ")" : "]", why, v));
}

int64_t integer_of(const Value& v) {
  if (v.kind != Value::Kind::Integer) throw BadValue("expected an integer, found " + v.found());
  return v.integer;
}

double float_of(const Value& v) {
  if (v.kind == Value::Kind::Float) return v.real;
  if (v.kind == Value::Kind::Integer) return double(v.integer);
  throw BadValue("expected a float, found " + v.found());
}

bool bool_of(const Value& v) {
  if (v.kind != Value::Kind::Boolean) throw BadValue("expected a boolean, found " + v.found());
  return v.boolean;
}

const std::string& string_of(const Value& v) {
  if (v.kind != Value::Kind::String) throw BadValue("expected a string, found " + v.found());
  if (v.str.empty()) throw BadValue("must not be empty");
  return v.str;
}

int64_t count_of(const Value& v, int64_t lo, int64_t hi) {
  const int64_t i = integer_of(v);
  if (i < lo) throw BadValue(fmt::format("must be at least {}, found {}", lo, i));
  if (i > hi) throw BadValue(fmt::format("must be at most {}{}, found {}", hi, hi == kMaxCount ? " (2^31 - 1)" : "", i));
  return i;
}

std::string resolve_path(const std::string& p, const SetContext& ctx) {
  std::filesystem::path q(p);
  if (q.is_relative()) q = ctx.base / q;
  return q.lexically_normal().string();
}

}  // namespace fusellm::config
