// The forward pass's CPU ops against plain loops: the vectorized exp, the threaded GEMM grid,
// blockwise attention (documents, sliding window, ALiBi, grouped-query heads, ragged blocks).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(ModelOps, FastExpIsAccurateOverTheFloatRange) {
  double worst = 0;
  for (float x = -87.f; x < 88.f; x += 0.0137f) {
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::fabs(double(fast_exp(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(fast_exp(-88.f), 0.f);
  EXPECT_EQ(fast_exp(-INFINITY), 0.f);
  EXPECT_EQ(fast_exp(0.f), 1.f);
}

TEST(ModelOps, LinearMatchesLoopsForAnyThreadCount) {
  for (const auto& [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 5}, {37, 129, 65}, {300, 520, 96}}) {
    const auto x = randn(size_t(M * K), 1), w = randn(size_t(N * K), 2), b = randn(size_t(N), 3);
    std::vector<float> ref(size_t(M * N));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = b[n];
        for (int64_t k = 0; k < K; ++k) s += double(x[m * K + k]) * w[n * K + k];
        ref[m * N + n] = float(s);
      }
    for (int threads : {1, 2, 3, 4}) {
      omp_set_num_threads(threads);
      BlasThreadsGuard guard;
      std::vector<float> y(size_t(M * N), 1.f);
      linear({x.data(), M, K, K}, {w.data(), N, K, K}, b, {y.data(), M, N, N});
      std::vector<float> acc(size_t(M * N), 1.f);
      linear({x.data(), M, K, K}, {w.data(), N, K, K}, b, {acc.data(), M, N, N}, /*accumulate=*/true);
      for (int64_t i = 0; i < M * N; ++i) {
        ASSERT_NEAR(y[i], ref[i], 1e-4) << M << "x" << N << "x" << K << " threads " << threads;
        ASSERT_NEAR(acc[i], ref[i] + 1.f, 1e-4);
      }
    }
  }
  omp_set_num_threads(omp_get_num_procs());
}

// The backward pass's products (dx = dy W, dW += dy^T x): every transposition, beta 0 and 1,
// strided operands, and a call from inside a parallel region (the team of one takes every block).
TEST(ModelOps, ParallelGemmMatchesLoopsForAnyTranspositionAndThreadCount) {
  for (const auto& [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 7, 5}, {37, 129, 65}, {300, 520, 96}}) {
    const auto a = randn(size_t(M * K), 4), b = randn(size_t(N * K), 5), c0 = randn(size_t(M * N), 6);
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        // Stored as A [M, K] or [K, M], B [K, N] or [N, K], each with 3 spare columns.
        const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N, lda = ac + 3, ldb = bc + 3;
        std::vector<float> A(size_t(ar * lda), 9.f), B(size_t(br * ldb), 9.f);
        for (int64_t r = 0; r < ar; ++r)
          for (int64_t c = 0; c < ac; ++c) A[r * lda + c] = a[r * ac + c];
        for (int64_t r = 0; r < br; ++r)
          for (int64_t c = 0; c < bc; ++c) B[r * ldb + c] = b[r * bc + c];
        auto at = [&](int64_t m, int64_t k) { return double(ta ? A[k * lda + m] : A[m * lda + k]); };
        auto bt = [&](int64_t k, int64_t n) { return double(tb ? B[n * ldb + k] : B[k * ldb + n]); };
        for (const float beta : {0.f, 1.f})
          for (int threads : {1, 2, 3, 4})
            for (const bool nested : {false, true}) {
              omp_set_num_threads(threads);
              const int64_t ldc = N + 2;
              std::vector<float> C(size_t(M * ldc), 7.f);
              for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = c0[m * N + n];
              const Gemm g{ta, tb, K, A.data(), lda, B.data(), ldb, beta, C.data(), ldc};
              if (nested) {
#pragma omp parallel num_threads(2)
#pragma omp single
                parallel_gemm(g, M, N);
              } else {
                parallel_gemm(g, M, N);
              }
              for (int64_t m = 0; m < M; ++m) {
                for (int64_t n = 0; n < N; ++n) {
                  double s = beta * double(c0[m * N + n]);
                  for (int64_t k = 0; k < K; ++k) s += at(m, k) * bt(k, n);
                  ASSERT_NEAR(C[m * ldc + n], s, 1e-4) << M << "x" << N << "x" << K << " ta " << ta << " tb " << tb
                                                       << " beta " << beta << " threads " << threads
                                                       << " nested " << nested;
                }
                ASSERT_EQ(C[m * ldc + N], 7.f);  // the padding is not written
              }
            }
      }
  }
  omp_set_num_threads(omp_get_num_procs());
}

// softmax over keys j in [max(doc start, i - window + 1), i] of scale q.k + slope (j - i).
std::vector<float> naive_attention(const std::vector<float>& qkv, int64_t T, const AttentionShape& s,
                                   const std::vector<int32_t>& doc_start) {
  const int64_t H = s.heads, KV = s.kv_heads, D = s.head_dim, ld = (H + 2 * KV) * D;
  std::vector<float> out(size_t(T * H * D));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / KV);
    for (int64_t i = 0; i < T; ++i) {
      int64_t lo = doc_start[i];
      if (s.sliding_window) lo = std::max(lo, i - s.sliding_window + 1);
      std::vector<double> p;
      double m = -1e300;
      for (int64_t j = lo; j <= i; ++j) {
        double d = 0;
        for (int64_t c = 0; c < D; ++c) d += double(qkv[i * ld + h * D + c]) * qkv[j * ld + (H + g) * D + c];
        d = d * s.scale + (s.alibi.empty() ? 0.0 : double(s.alibi[h]) * double(j - i));
        p.push_back(d);
        m = std::max(m, d);
      }
      double z = 0;
      for (double& v : p) z += (v = std::exp(v - m));
      for (int64_t c = 0; c < D; ++c) {
        double o = 0;
        for (int64_t j = lo; j <= i; ++j) o += p[j - lo] * qkv[j * ld + (H + KV + g) * D + c];
        out[i * H * D + h * D + c] = float(o / z);
      }
    }
  }
  return out;
}

TEST(ModelOps, BlockwiseAttentionMatchesNaive) {
  struct Case {
    int64_t T, H, KV, D, window;
    bool alibi;
    std::vector<int32_t> docs;  // lengths
  };
  const std::vector<Case> cases = {
      {1, 2, 2, 8, 0, false, {1}},
      {200, 4, 2, 16, 0, false, {200}},
      {200, 4, 1, 16, 0, false, {70, 1, 64, 65}},
      {150, 6, 6, 8, 33, false, {150}},
      {150, 6, 3, 8, 17, true, {100, 50}},
      {131, 3, 3, 12, 0, true, {131}},
  };
  for (const Case& c : cases) {
    const auto qkv = randn(size_t(c.T * (c.H + 2 * c.KV) * c.D), 7, 1.f);
    std::vector<int32_t> doc_start;
    for (int32_t len : c.docs)
      for (int32_t k = 0; k < len; ++k) doc_start.push_back(int32_t(doc_start.size()) - k);
    ASSERT_EQ(int64_t(doc_start.size()), c.T);
    const std::vector<float> slopes = alibi_slopes(c.H, 8.0);
    AttentionShape s;
    s.heads = c.H;
    s.kv_heads = c.KV;
    s.head_dim = c.D;
    s.scale = 1.f / std::sqrt(float(c.D));
    s.sliding_window = c.window;
    if (c.alibi) s.alibi = slopes;
    const auto ref = naive_attention(qkv, c.T, s, doc_start);
    for (int threads : {1, 3}) {
      omp_set_num_threads(threads);
      BlasThreadsGuard guard;
      std::vector<float> out(size_t(c.T * c.H * c.D), NAN);
      const int64_t ld = (c.H + 2 * c.KV) * c.D;
      causal_attention({qkv.data(), c.T, ld, ld}, doc_start, s, {out.data(), c.T, c.H * c.D, c.H * c.D});
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-5) << "T=" << c.T << " H=" << c.H << " KV=" << c.KV << " at " << i;
    }
  }
  omp_set_num_threads(omp_get_num_procs());
}

TEST(ModelOps, AlibiSlopesAsMpt) {
  // build_mpt_alibi_tensor: 2^-(k+1) for 8 heads with alibi_bias_max 8; 6 heads take the odd
  // then even slopes of the 8-head set.
  const auto s8 = alibi_slopes(8, 8.0);
  for (int k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(s8[k], std::pow(2.f, -float(k + 1)));
  const auto s6 = alibi_slopes(6, 8.0);
  const std::vector<float> want = {s8[1], s8[3], s8[5], s8[7], s8[0], s8[2]};
  EXPECT_EQ(s6, want);
}

}  // namespace
}  // namespace fusellm::model
