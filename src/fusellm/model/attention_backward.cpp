// Backward of causal self-attention over packed documents, as autograd differentiates
// transformers' eager_attention_forward / LlamaAttention (repeat_kv for grouped-query attention,
// softmax in fp32, then P V):
//   S = scale Q K^T + mask,  P = softmax_rows(S),  O = P V
//   dV = P^T dO
//   dP = dO V^T
//   dS = P * (dP - D),  D_i = sum_j P_ij dP_ij = dO_i . O_i      (softmax backward)
//   dQ = scale dS K,   dK = scale dS^T Q
// With grouped-query attention the H / KV query heads of a group share one K and V, so their dK
// and dV add up (repeat_kv's backward).
//
// ALiBi (MptAttention: the bias slope_h (j - i) added to the scores before the softmax, as
// attention.cpp adds it) is a constant: it enters only through the recomputed P, S = scale Q K^T +
// slope_h (j - i) + mask, and the formulas above are unchanged.
//
// Memory: P is recomputed per (head, block of queries) from Q and K (FlashAttention-2's backward
// does the same), so nothing T x T is ever stored between forward and backward: the forward
// keeps only its output O. The mask is the forward's (attention.cpp): key j visible from query i
// iff s(i) <= j <= i, s(i) = max(start of i's document, i - window + 1).
//
// Threads take KV heads: each owns its group's dK and dV columns, so no two threads write the
// same gradient. Inside, query blocks of kBlock rows, with sgemm for the five products.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/model/fast_math.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

namespace {

constexpr int64_t kBlock = 64;

// What every (head, query block) of one call shares.
struct Problem {
  ConstMatView qkv, out, dout;
  MatView dqkv;
  const AttentionShape& s;
  std::vector<int32_t> first;  // first visible key of each query
  int64_t T, H, KV, D;
};

// Query i sees keys [first[i], i]: its document's start, or the sliding window's.
std::vector<int32_t> first_visible(std::span<const int32_t> doc_start, int64_t sliding_window) {
  std::vector<int32_t> first(doc_start.size());
  for (size_t i = 0; i < first.size(); ++i) {
    int64_t f = doc_start[i];
    if (sliding_window > 0) f = std::max<int64_t>(f, int64_t(i) - sliding_window + 1);
    first[i] = int32_t(f);
  }
  return first;
}

// Rows [i0, i0 + mb) of P = masked softmax(scale Q K^T (+ ALiBi)) (keys from lo, ld columns per row), 8
// lanes at a time on exp8 as the forward (attention.cpp) computes it: rows padded to whole
// vectors, masked columns exp(-inf) = 0. Also D_i = dO_i . O_i into Drow.
void probabilities(const Problem& p, int64_t h, int64_t i0, int64_t mb, int64_t lo, int64_t ld, float* P,
                   float* Drow) {
  const int64_t D = p.D;
  for (int64_t r = 0; r < mb; ++r) {
    const int64_t i = i0 + r;
    float* pr = P + r * ld;
    const int64_t c0 = p.first[i] - lo, c1 = i - lo + 1;
    const int64_t cs = c0 / 8 * 8, ce = (c1 + 7) / 8 * 8;
    if (!p.s.alibi.empty()) {  // the forward's bias, with the forward's arithmetic
      const float slope = p.s.alibi[h];
      const f32x8 iota = {0, 1, 2, 3, 4, 5, 6, 7};
      for (int64_t c = cs; c < ce; c += 8) store8(pr + c, load8(pr + c) + slope * (iota + float(lo - i + c)));
    }
    const f32x8 inv = splat8(1.f / masked_exp_row(pr, c0, c1, ld));
    for (int64_t c = cs; c < ce; c += 8) store8(pr + c, load8(pr + c) * inv);
    const float* orow = p.out.row(i) + h * D;
    const float* dorow = p.dout.row(i) + h * D;
    f32x8 dv8{};
    int64_t c = 0;
    for (; c + 8 <= D; c += 8) dv8 += load8(orow + c) * load8(dorow + c);
    float d = hsum8(dv8);
    for (; c < D; ++c) d += orow[c] * dorow[c];
    Drow[r] = d;
  }
}

// One query block b of query head h (KV head g): its dQ rows, and its share of dK and dV.
void block_backward(const Problem& p, int64_t g, int64_t h, int64_t b, float* P, float* dP, float* Drow) {
  const int64_t H = p.H, KV = p.KV, D = p.D;
  const int64_t i0 = b * kBlock, i1 = std::min(p.T, i0 + kBlock), mb = i1 - i0;
  const int64_t lo = p.first[i0], nk = i1 - lo, ld = (nk + 7) / 8 * 8;
  const ConstMatView &qkv = p.qkv, &dout = p.dout;
  const MatView& dqkv = p.dqkv;
  const float* q = qkv.row(i0) + h * D;
  const float* k = qkv.row(lo) + (H + g) * D;
  const float* v = qkv.row(lo) + (H + KV + g) * D;
  const float* dO = dout.row(i0) + h * D;
  float* dq = dqkv.row(i0) + h * D;
  float* dk = dqkv.row(lo) + (H + g) * D;
  float* dv = dqkv.row(lo) + (H + KV + g) * D;
  // S = scale Q K^T, then P = masked softmax (and D_i)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(mb), int(nk), int(D), p.s.scale, q, int(qkv.ld), k,
              int(qkv.ld), 0.f, P, int(ld));
  probabilities(p, h, i0, mb, lo, ld, P, Drow);
  // dV += P^T dO
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nk), int(D), int(mb), 1.f, P, int(ld), dO, int(dout.ld),
              1.f, dv, int(dqkv.ld));
  // dP = dO V^T
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(mb), int(nk), int(D), 1.f, dO, int(dout.ld), v,
              int(qkv.ld), 0.f, dP, int(ld));
  // dS = P (dP - D), scaled here so that dQ and dK need no further scaling.
  for (int64_t r = 0; r < mb; ++r) {
    const float* pr = P + r * ld;
    float* dpr = dP + r * ld;
    const float dr = Drow[r], scale = p.s.scale;
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) dpr[c] = scale * pr[c] * (dpr[c] - dr);
  }
  // dQ = dS K (each query row belongs to one block: written, not accumulated)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(mb), int(D), int(nk), 1.f, dP, int(ld), k, int(qkv.ld),
              0.f, dq, int(dqkv.ld));
  // dK += dS^T Q
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nk), int(D), int(mb), 1.f, dP, int(ld), q, int(qkv.ld),
              1.f, dk, int(dqkv.ld));
}

}  // namespace

void causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                               std::span<const int32_t> doc_start, const AttentionShape& s, MatView dqkv) {
  const int64_t T = qkv.rows, H = s.heads, KV = s.kv_heads, D = s.head_dim;
  if (H % KV) fail("attention backward: {} heads are not a multiple of {} KV heads", H, KV);
  if (qkv.cols != (H + 2 * KV) * D || out.cols != H * D || out.rows != T || dout.cols != H * D ||
      dout.rows != T || dqkv.rows != T || dqkv.cols != qkv.cols || int64_t(doc_start.size()) != T)
    fail("attention backward: shapes do not agree");
  if (T == 0) return;
  const int64_t group = H / KV;
  const int64_t blocks = (T + kBlock - 1) / kBlock;
  const Problem p{qkv, out, dout, dqkv, s, first_visible(doc_start, s.sliding_window), T, H, KV, D};
  int64_t max_span = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kBlock, i1 = std::min(T, i0 + kBlock);
    max_span = std::max<int64_t>(max_span, i1 - p.first[i0]);
  }

  // dK and dV accumulate over blocks and heads: start from zero.
  for (int64_t t = 0; t < T; ++t) std::fill(dqkv.row(t) + H * D, dqkv.row(t) + (H + 2 * KV) * D, 0.f);

  BlasThreadsGuard blas_one_thread;  // sgemm inside the OpenMP region below
  const int threads = int(std::min<int64_t>(num_threads(), KV));
#pragma omp parallel num_threads(threads)
  {
    const size_t scratch = static_cast<size_t>(kBlock * ((max_span + 7) / 8 * 8));
    std::vector<float> P(scratch), dP(scratch);
    float Drow[kBlock];
#pragma omp for schedule(dynamic, 1)
    for (int64_t g = 0; g < KV; ++g)
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t b = 0; b < blocks; ++b) block_backward(p, g, h, b, P.data(), dP.data(), Drow);
  }
}

}  // namespace fusellm::model
