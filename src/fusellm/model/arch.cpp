// The families' shared description helpers: slot names and the config parsers every family uses.
#include "fusellm/model/arch.hpp"

#include <fmt/format.h>

#include "fusellm/core/error.hpp"

namespace fusellm::model {

const char* slot_name(Slot s) {
  switch (s) {
    case Slot::TokenEmbed: return "token embedding";
    case Slot::PosEmbed: return "position embedding";
    case Slot::FinalNormW: return "final norm weight";
    case Slot::FinalNormB: return "final norm bias";
    case Slot::LmHead: return "LM head";
    case Slot::AttnNormW: return "attention norm weight";
    case Slot::AttnNormB: return "attention norm bias";
    case Slot::Q: return "q projection";
    case Slot::K: return "k projection";
    case Slot::V: return "v projection";
    case Slot::QB: return "q bias";
    case Slot::KB: return "k bias";
    case Slot::VB: return "v bias";
    case Slot::QKV: return "fused qkv projection";
    case Slot::QKVB: return "fused qkv bias";
    case Slot::O: return "attention output projection";
    case Slot::OB: return "attention output bias";
    case Slot::MlpNormW: return "MLP norm weight";
    case Slot::MlpNormB: return "MLP norm bias";
    case Slot::Gate: return "MLP gate projection";
    case Slot::GateB: return "MLP gate bias";
    case Slot::Up: return "MLP up projection";
    case Slot::UpB: return "MLP up bias";
    case Slot::Down: return "MLP down projection";
    case Slot::DownB: return "MLP down bias";
  }
  return "?";
}

int64_t positive(const HFConfig& c, const std::string& key, int64_t value) {
  if (value <= 0) c.field_error(key, fmt::format("expected a positive integer, found {}", value));
  return value;
}

RopeConfig parse_rope(const HFConfig& c, int64_t rotary_dim, double theta, int64_t max_positions) {
  RopeConfig r;
  r.rotary_dim = rotary_dim;
  r.theta = theta;
  r.max_positions = max_positions;
  if (rotary_dim <= 0 || rotary_dim % 2)
    fail("{}: rotary dimension {} (from head_dim and the rotary fraction) must be positive and even", c.path(),
         rotary_dim);
  if (theta <= 0) fail("{}: RoPE base (rope_theta / rotary_emb_base) must be positive, found {}", c.path(), theta);
  if (!c.has("rope_scaling")) return r;
  const nlohmann::json& j = c.json()["rope_scaling"];
  if (!j.is_object()) c.field_error("rope_scaling", fmt::format("expected an object or null, found {}", j.dump()));
  const HFConfig rs(j, c.path() + ": rope_scaling");
  const std::string type = rs.has("rope_type") ? rs.get_string("rope_type") : rs.get_string("type");
  auto factor = [&] {
    const double f = rs.get_float("factor");
    if (!(f >= 1.0)) rs.field_error("factor", fmt::format("expected a number >= 1, found {}", f));
    return f;
  };
  if (type == "default") {
  } else if (type == "linear") {
    r.type = RopeConfig::Type::Linear;
    r.factor = factor();
  } else if (type == "dynamic") {
    r.type = RopeConfig::Type::Dynamic;
    r.factor = factor();
    if (rotary_dim <= 2) fail("{}: dynamic RoPE needs a rotary dimension above 2", c.path());
  } else if (type == "llama3") {
    r.type = RopeConfig::Type::Llama3;
    r.factor = factor();
    r.low_freq_factor = rs.get_float("low_freq_factor");
    r.high_freq_factor = rs.get_float("high_freq_factor");
    r.original_max_positions = positive(rs, "original_max_position_embeddings",
                                        rs.get_int("original_max_position_embeddings"));
    if (!(r.high_freq_factor > r.low_freq_factor))
      rs.field_error("high_freq_factor", "must be greater than low_freq_factor");
  } else {
    fail("{}: field 'rope_scaling': unsupported RoPE type \"{}\" (supported: default, linear, dynamic, llama3)",
         c.path(), type);
  }
  return r;
}

bool is_layer_slot(Slot s) {
  return !(s == Slot::TokenEmbed || s == Slot::PosEmbed || s == Slot::FinalNormW || s == Slot::FinalNormB ||
           s == Slot::LmHead);
}

}  // namespace fusellm::model
