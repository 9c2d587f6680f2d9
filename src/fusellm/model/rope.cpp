// Rotary position embedding (LlamaRotaryEmbedding + apply_rotary_pos_emb; GPTNeoXRotaryEmbedding
// with partial rotary), in the rotate_half layout: with d = rotary_dim, h = d / 2 and
// theta_i = pos * inv_freq[i] for i < h,
//   x'[i]     = x[i]     cos theta_i - x[i + h] sin theta_i
//   x'[i + h] = x[i + h] cos theta_i + x[i]     sin theta_i
// and dims >= d of each head pass through unchanged (GPT-NeoX's rotary_pct).
//
// inv_freq by rope type (transformers/modeling_rope_utils.py), all in fp32 as torch computes it:
//   default  inv_freq[i] = 1 / theta^(2i / d)                      _compute_default_rope_parameters
//   linear   inv_freq / factor                                     _compute_linear_scaling_rope_parameters
//   dynamic  theta' = theta (factor L / max_pos - (factor - 1))^(d / (d - 2)) when the sequence
//            length L exceeds max_pos, else theta                 _compute_dynamic_ntk_parameters
//   llama3   long wavelengths / factor, short ones kept, a smooth ramp between
//                                                                  _compute_llama3_parameters
// transformers keeps "dynamic" state across calls (it grows inv_freq with the longest sequence
// seen); here L is the length of each document, which equals a fresh model run on that document.
#include <omp.h>

#include <cmath>
#include <numbers>

#include "fusellm/core/error.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

namespace {

std::vector<float> default_inv_freq(float base, int64_t dim) {
  std::vector<float> f(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) f[i] = 1.f / std::pow(base, float(2 * i) / float(dim));
  return f;
}

}  // namespace

std::vector<float> rope_inv_freq(const RopeConfig& c, int64_t seq_len) {
  const int64_t d = c.rotary_dim;
  switch (c.type) {
    case RopeConfig::Type::Default:
      return default_inv_freq(float(c.theta), d);
    case RopeConfig::Type::Linear: {
      auto f = default_inv_freq(float(c.theta), d);
      for (float& v : f) v /= float(c.factor);
      return f;
    }
    case RopeConfig::Type::Dynamic: {
      if (seq_len <= c.max_positions) return default_inv_freq(float(c.theta), d);
      const float factor = float(c.factor);
      const float ratio = factor * float(seq_len) / float(c.max_positions) - (factor - 1.f);
      const float base = float(c.theta) * std::pow(ratio, float(double(d) / double(d - 2)));
      return default_inv_freq(base, d);
    }
    case RopeConfig::Type::Llama3: {
      auto f = default_inv_freq(float(c.theta), d);
      const float factor = float(c.factor);
      const double low_wavelen = double(c.original_max_positions) / c.low_freq_factor;
      const double high_wavelen = double(c.original_max_positions) / c.high_freq_factor;
      for (float& v : f) {
        const float wavelen = float(2 * std::numbers::pi) / v;
        if (wavelen > low_wavelen) {
          v = v / factor;
        } else if (!(wavelen < high_wavelen)) {  // medium frequencies: interpolate
          const float smooth = (float(c.original_max_positions) / wavelen - float(c.low_freq_factor)) /
                               float(c.high_freq_factor - c.low_freq_factor);
          v = (1.f - smooth) * v / factor + smooth * v;
        }
      }
      return f;
    }
  }
  fail("rope: unknown type");
}

RopeTable rope_table(const RopeConfig& c, std::span<const int32_t> positions, std::span<const int32_t> doc_len) {
  RopeTable t;
  t.half = c.rotary_dim / 2;
  const int64_t T = int64_t(positions.size());
  t.cos.resize(size_t(T * t.half));
  t.sin.resize(size_t(T * t.half));
  std::vector<float> inv = rope_inv_freq(c, doc_len.empty() ? 0 : doc_len[0]);
  int64_t inv_len = doc_len.empty() ? 0 : doc_len[0];
  for (int64_t p = 0; p < T; ++p) {
    if (c.type == RopeConfig::Type::Dynamic && doc_len[p] != inv_len) {
      inv_len = doc_len[p];
      inv = rope_inv_freq(c, inv_len);
    }
    const float pos = float(positions[p]);
    for (int64_t i = 0; i < t.half; ++i) {
      const float a = pos * inv[i];
      t.cos[p * t.half + i] = std::cos(a);
      t.sin[p * t.half + i] = std::sin(a);
    }
  }
  return t;
}

void apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim) {
  const int64_t h = t.half;
#pragma omp parallel for schedule(static) if (x.rows >= 16)
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* cs = t.cos.data() + r * h;
    const float* sn = t.sin.data() + r * h;
    for (int64_t k = 0; k < heads; ++k) {
      float* a = x.row(r) + col0 + k * head_dim;
      float* b = a + h;
#pragma omp simd
      for (int64_t i = 0; i < h; ++i) {
        const float x1 = a[i], x2 = b[i];
        a[i] = x1 * cs[i] - x2 * sn[i];
        b[i] = x2 * cs[i] + x1 * sn[i];
      }
    }
  }
}

}  // namespace fusellm::model
