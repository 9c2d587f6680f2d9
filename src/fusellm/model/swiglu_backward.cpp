// Backward of the SwiGLU MLP's gate (LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)),
// act_fn = nn.SiLU): with a = gate pre-activation, b = up, s = sigmoid(a), h = a s b,
//   da = dh * b * s * (1 + a (1 - s))      (d silu(a) / da = s + a s (1 - s))
//   db = dh * a * s
// The product h is recomputed from [gate | up] (the forward's gated_activation) rather than
// stored: the down projection's weight gradient needs it once, and it costs one exp per element.
// This runs 8 lanes at a time on fast_math.hpp's exp8 (std::exp does not vectorize without
// -ffast-math); a row's tail goes through the same lanes, zero-padded (fast_math.hpp's lanes).
#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/model/fast_math.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

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
    lanes(n, [&](int64_t c, int64_t k) {
      const f32x8 av = load_n(a + c, k), bv = load_n(b + c, k), dv = load_n(d + c, k);
      const f32x8 s = sigmoid8(av);
      store_n(da + c, dv * bv * s * (1.f + av * (1.f - s)), k);
      store_n(db + c, dv * av * s, k);
    });
  }
}

}  // namespace fusellm::model
