// Fresh weights for a model of any family (init_weights.hpp has the rules and their sources).
#include "fusellm/model/init_weights.hpp"

#include <cmath>
#include <numbers>
#include <utility>

#include "fusellm/core/error.hpp"

namespace fusellm::model {

namespace {

// SplitMix64 (Steele, Lea, Flood 2014): a fixed 64-bit generator whose output the standard does
// not leave open.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: 53 random bits, never 0 (Box-Muller takes its log).
  double uniform() { return (double(next() >> 11) + 1.0) * 0x1.0p-53; }
  // Standard normal by Box-Muller, both values of each pair used.
  double normal() {
    if (spare_) return std::exchange(spare_, false), second_;
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 2.0 * std::numbers::pi * uniform();
    second_ = r * std::sin(t), spare_ = true;
    return r * std::cos(t);
  }

 private:
  uint64_t state_;
  double second_ = 0.0;
  bool spare_ = false;
};

bool is_norm_weight(Slot s) { return s == Slot::AttnNormW || s == Slot::MlpNormW || s == Slot::FinalNormW; }
bool is_weight_matrix(Slot s) {
  return s == Slot::TokenEmbed || s == Slot::PosEmbed || s == Slot::LmHead || s == Slot::Q || s == Slot::K ||
         s == Slot::V || s == Slot::QKV || s == Slot::O || s == Slot::Gate || s == Slot::Up || s == Slot::Down;
}
// GPT2PreTrainedModel._init_weights: "c_proj.weight" (attention and MLP output projections).
bool is_scaled_residual(const Arch& a, Slot s) { return a.conv1d && (s == Slot::O || s == Slot::Down); }

}  // namespace

double initializer_range(const HFConfig& c) {
  const double std_dev = c.get_float("initializer_range", 0.02);
  if (!(std_dev > 0.0) || !std::isfinite(std_dev))
    c.field_error("initializer_range", "must be a positive number to initialize weights");
  return std_dev;
}

std::vector<float> init_parameters(const Arch& a, const DecoderParams& params, double std_dev, uint64_t seed) {
  std::vector<float> flat(size_t(params.table.total()), 0.f);
  SplitMix64 rng(seed);
  for (int i = 0; i < params.table.size(); ++i) {
    const ParamEntry& e = params.table[i];
    const Slot slot = params.sources[size_t(i)].slot;
    float* v = flat.data() + e.offset;
    if (is_norm_weight(slot)) {
      std::fill(v, v + e.size, 1.f);
    } else if (is_weight_matrix(slot)) {
      const double s = is_scaled_residual(a, slot) ? std_dev / std::sqrt(2.0 * double(a.layers)) : std_dev;
      for (int64_t k = 0; k < e.size; ++k) v[k] = float(s * rng.normal());
    }  // biases (and norm biases) stay 0
  }
  return flat;
}

std::vector<SafetensorsEntry> fresh_checkpoint_entries(const Arch& a, const DecoderParams& params,
                                                       std::span<const float> flat) {
  if (int64_t(flat.size()) != params.table.total())
    fail("init: a buffer of {} floats for a table of {}", flat.size(), params.table.total());
  std::vector<SafetensorsEntry> out;
  for (int i = 0; i < params.table.size(); ++i) {
    const ParamEntry& e = params.table[i];
    Shape shape = e.shape;
    // load_tensor's rule, reversed: GPT-2's layer matrices are stored [in, out].
    if (a.conv1d && shape.size() == 2 && is_layer_slot(params.sources[size_t(i)].slot)) std::swap(shape[0], shape[1]);
    out.push_back({e.name, shape, flat.subspan(size_t(e.offset), size_t(e.size)), {}});
  }
  return out;
}

}  // namespace fusellm::model
