// Causal self-attention over packed documents (LlamaAttention/eager_attention, GPTNeoXAttention._attn,
// MptAttention, GPT2Attention._attn; repeat_kv for grouped-query attention):
//   for query i of head h (KV head g = h / (H / KV)), over keys j with s(i) <= j <= i,
//     s(i) = max(first token of i's document, i - window + 1),
//     p_ij = softmax_j(scale * q_i . k_j + slope_h * (j - i)),   o_i = sum_j p_ij v_j
// ALiBi's term is absent when no slopes are given, the window when sliding_window is 0.
//
// Blockwise: queries go in blocks of kBlock rows; a block needs the keys from s(first row) to its
// last row, so the scores it materializes are kBlock x (that span), never T x T, and keys a
// block cannot see (later tokens, earlier documents, outside the window) are never multiplied.
// Per (head, block): S = scale Q_blk K_span^T (sgemm), masked softmax in place (unnormalized,
// the 1/sum applied to the D-wide output instead of the span-wide row), O_blk = P V_span (sgemm),
// written straight into the head's columns of `out`. OpenMP spreads the (head, block) pairs over
// threads, longest spans first.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/model/fast_math.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

namespace {

constexpr int64_t kBlock = 64;

}  // namespace

void causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s, MatView out) {
  const int64_t T = qkv.rows, H = s.heads, KV = s.kv_heads, D = s.head_dim;
  if (H % KV) fail("attention: {} heads are not a multiple of {} KV heads", H, KV);
  if (qkv.cols != (H + 2 * KV) * D || out.cols != H * D || out.rows != T || int64_t(doc_start.size()) != T)
    fail("attention: shapes do not agree");
  if (T == 0) return;
  const int64_t group = H / KV;
  const int64_t blocks = (T + kBlock - 1) / kBlock;
  const bool alibi = !s.alibi.empty();

  // First visible key of each query.
  std::vector<int32_t> first(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    int64_t f = doc_start[i];
    if (s.sliding_window > 0) f = std::max<int64_t>(f, i - s.sliding_window + 1);
    first[i] = int32_t(f);
  }
  // Work items, longest key span first (dynamic scheduling then balances the tail).
  std::vector<int64_t> items(static_cast<size_t>(H * blocks));
  for (int64_t k = 0; k < H * blocks; ++k) items[k] = k;
  auto span_of = [&](int64_t b) {
    const int64_t i0 = b * kBlock, i1 = std::min(T, i0 + kBlock);
    return i1 - first[i0];
  };
  std::stable_sort(items.begin(), items.end(),
                   [&](int64_t a, int64_t b) { return span_of(a % blocks) > span_of(b % blocks); });

  int64_t max_span = 0;
  for (int64_t b = 0; b < blocks; ++b) max_span = std::max(max_span, span_of(b));
  const int threads = int(std::min<int64_t>(num_threads(), H * blocks));

#pragma omp parallel num_threads(threads)
  {
    std::vector<float> S(static_cast<size_t>(kBlock * (max_span + 8)));
    float inv_sum[kBlock];
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < H * blocks; ++it) {
      const int64_t h = items[it] / blocks, b = items[it] % blocks;
      const int64_t g = h / group;
      const int64_t i0 = b * kBlock, i1 = std::min(T, i0 + kBlock), mb = i1 - i0;
      const int64_t lo = first[i0], nk = i1 - lo;
      const float* q = qkv.row(i0) + h * D;
      const float* k = qkv.row(lo) + (H + g) * D;
      const float* v = qkv.row(lo) + (H + KV + g) * D;
      const int64_t ldS = (nk + 7) / 8 * 8;  // rows padded to whole 8-lane vectors
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(mb), int(nk), int(D), s.scale, q, int(qkv.ld), k,
                  int(qkv.ld), 0.f, S.data(), int(ldS));
      const float slope = alibi ? s.alibi[h] : 0.f;
      for (int64_t r = 0; r < mb; ++r) {
        const int64_t i = i0 + r;
        float* sr = S.data() + r * ldS;
        // Visible columns [c0, c1); the vectors cover [cs, ce), the rest is zero.
        const int64_t c0 = first[i] - lo, c1 = i - lo + 1;
        const int64_t cs = c0 / 8 * 8, ce = (c1 + 7) / 8 * 8;
        if (alibi) {
          const f32x8 iota = {0, 1, 2, 3, 4, 5, 6, 7};
          for (int64_t c = cs; c < ce; c += 8)
            store8(sr + c, load8(sr + c) + slope * (iota + float(lo - i + c)));
        }
        inv_sum[r] = 1.f / masked_exp_row(sr, c0, c1, ldS);
      }
      float* o = out.row(i0) + h * D;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(mb), int(D), int(nk), 1.f, S.data(), int(ldS), v,
                  int(qkv.ld), 0.f, o, int(out.ld));
      for (int64_t r = 0; r < mb; ++r) {
        float* orow = o + r * out.ld;
        const float f = inv_sum[r];
#pragma omp simd
        for (int64_t c = 0; c < D; ++c) orow[c] *= f;
      }
    }
  }
}

}  // namespace fusellm::model
