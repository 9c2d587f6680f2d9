// Backward of RoPE (apply_rotary_pos_emb: q * cos + rotate_half(q) * sin). The forward is a
// rotation of each pair (x[i], x[i + h]) by theta_i, an orthogonal map, so its gradient is the
// rotation by -theta_i (the transpose):
//   dx[i]     =  dy[i] cos theta_i + dy[i + h] sin theta_i
//   dx[i + h] = -dy[i] sin theta_i + dy[i + h] cos theta_i
// Dims at and past rotary_dim passed through unchanged, and so do their gradients. In place.
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads, int64_t head_dim) {
  const int64_t h = t.half;
#pragma omp parallel for schedule(static) if (dx.rows >= 16)
  for (int64_t r = 0; r < dx.rows; ++r) {
    const float* cs = t.cos.data() + r * h;
    const float* sn = t.sin.data() + r * h;
    for (int64_t k = 0; k < heads; ++k) {
      float* a = dx.row(r) + col0 + k * head_dim;
      float* b = a + h;
#pragma omp simd
      for (int64_t i = 0; i < h; ++i) {
        const float d1 = a[i], d2 = b[i];
        a[i] = d1 * cs[i] + d2 * sn[i];
        b[i] = d2 * cs[i] - d1 * sn[i];
      }
    }
  }
}

}  // namespace fusellm::model
