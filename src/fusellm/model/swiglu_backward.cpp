// Backward of the SwiGLU MLP's gate (LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)),
// act_fn = nn.SiLU): with a = gate pre-activation, b = up, s = sigmoid(a), h = a s b,
//   da = dh * b * s * (1 + a (1 - s))      (d silu(a) / da = s + a s (1 - s))
//   db = dh * a * s
// The product h is recomputed from [gate | up] (swiglu_forward) rather than stored: the down
// projection's weight gradient needs it once, and it costs one exp per element.
#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void swiglu_forward(ConstMatView gate_up, MatView h) {
  const int64_t n = gate_up.cols / 2;
  if (gate_up.cols % 2 || h.cols != n || h.rows != gate_up.rows) fail("swiglu_forward: shapes do not agree");
#pragma omp parallel for schedule(static) if (h.rows * n >= 16384)
  for (int64_t r = 0; r < h.rows; ++r) {
    const float* g = gate_up.row(r);
    const float* u = g + n;
    float* hr = h.row(r);
    for (int64_t c = 0; c < n; ++c) hr[c] = g[c] / (1.f + std::exp(-g[c])) * u[c];
  }
}

void swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up) {
  const int64_t n = gate_up.cols / 2;
  if (gate_up.cols % 2 || dh.cols != n || dh.rows != gate_up.rows || dgate_up.cols != 2 * n ||
      dgate_up.rows != gate_up.rows)
    fail("swiglu_backward: shapes do not agree");
#pragma omp parallel for schedule(static) if (dh.rows * n >= 16384)
  for (int64_t r = 0; r < dh.rows; ++r) {
    const float* a = gate_up.row(r);
    const float* b = a + n;
    const float* d = dh.row(r);
    float* da = dgate_up.row(r);
    float* db = da + n;
    for (int64_t c = 0; c < n; ++c) {
      const float s = 1.f / (1.f + std::exp(-a[c]));
      da[c] = d[c] * b[c] * s * (1.f + a[c] * (1.f - s));
      db[c] = d[c] * a[c] * s;
    }
  }
}

}  // namespace fusellm::model
