// Backward of the linear layer (nn.Linear / F.linear, y[M, N] = x[M, K] W[N, K]^T + b[N]), as
// torch.nn.functional.linear's autograd computes it:
//   dx = dy W            [M, N] x [N, K]
//   dW = dy^T x          [N, M] x [M, K]   (accumulated: += over sequences of a batch)
//   db = sum_m dy[m, :]
// One product each, through parallel_gemm (ops.hpp): OpenMP threads over blocks of the output,
// single-threaded sgemm per block, as the forward's linear(). Letting OpenBLAS thread them itself
// put its pthread pool next to OpenMP's: with two threads the weight gradients did not get faster
// than with one and the OpenMP ops between them (RMSNorm, SwiGLU, RoPE) ran 3-15x slower while
// the other pool spun.
#include "fusellm/core/error.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

void linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate) {
  if (dy.rows != dx.rows || dy.cols != w.rows || w.cols != dx.cols)
    fail("linear_backward_input: shapes dy [{}, {}], W [{}, {}], dx [{}, {}] do not agree", dy.rows, dy.cols,
         w.rows, w.cols, dx.rows, dx.cols);
  if (dx.rows == 0 || dx.cols == 0) return;
  if (dy.cols == 0) {
    if (!accumulate)
      for (int64_t r = 0; r < dx.rows; ++r)
        for (int64_t c = 0; c < dx.cols; ++c) dx.row(r)[c] = 0.f;
    return;
  }
  parallel_gemm({false, false, dy.cols, dy.p, dy.ld, w.p, w.ld, accumulate ? 1.f : 0.f, dx.p, dx.ld}, dx.rows,
                dx.cols);
}

void linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw) {
  if (dy.rows != x.rows || dw.rows != dy.cols || dw.cols != x.cols)
    fail("linear_backward_weight: shapes dy [{}, {}], x [{}, {}], dW [{}, {}] do not agree", dy.rows, dy.cols,
         x.rows, x.cols, dw.rows, dw.cols);
  if (dy.rows == 0 || dw.rows == 0 || dw.cols == 0) return;
  parallel_gemm({true, false, dy.rows, dy.p, dy.ld, x.p, x.ld, 1.f, dw.p, dw.ld}, dw.rows, dw.cols);
}

void bias_backward(ConstMatView dy, std::span<float> db) {
  if (int64_t(db.size()) != dy.cols) fail("bias_backward: {} biases for {} columns", db.size(), dy.cols);
  for (int64_t r = 0; r < dy.rows; ++r) {
    const float* d = dy.row(r);
#pragma omp simd
    for (int64_t c = 0; c < dy.cols; ++c) db[c] += d[c];
  }
}

}  // namespace fusellm::model
