// The CUDA backward kernels (kernels/cuda/*_backward.cuh) against the CPU reference functions of
// model/train_ops.hpp, one TEST per op, on seeded random inputs and small shapes. Every matrix is
// strided (a leading dimension past its columns, the padding holding a sentinel), and the CPU and
// the GPU start from the same buffer, so the whole buffer is compared: the padding must come
// back untouched. Tolerances are relative to the largest |reference| value: 1e-5 for fp32 where
// the arithmetic is the CPU's element for element (or differs only in the order of a sum of at
// most 128 terms: n u <= 128 * 2^-24 = 7.6e-6); a wider bound is stated where it is needed.
// Skips, saying why, without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/activation_backward.cuh"
#include "cuda/attention_backward.cuh"
#include "cuda/clamp_backward.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/embedding_backward.cuh"
#include "cuda/norm_backward.cuh"
#include "cuda/rope_backward.cuh"
#include "cuda/swiglu_backward.cuh"
#include "cuda_skip.hpp"
#include "fusellm/model/train_ops.hpp"

using namespace fusellm;
using model::ConstMatView;
using model::MatView;

namespace {

constexpr float kSentinel = 12345.f;  // the padding past each row's columns
constexpr double kTol = 1e-5;

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// A host matrix [rows, cols] with leading dimension ld; the padding holds kSentinel.
struct HostMat {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> v;
  MatView view() { return {v.data(), rows, cols, ld}; }
  ConstMatView cview() const { return {v.data(), rows, cols, ld}; }
};

HostMat random_mat(int64_t rows, int64_t cols, int64_t ld, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  HostMat m{rows, cols, ld, random_vec(size_t(rows * ld), seed, lo, hi)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < ld; ++c) m.v[size_t(r * ld + c)] = kSentinel;
  return m;
}

struct DevBuf {
  cuda::DevPtr<float> p;
  size_t n = 0;
  float* get() const { return p.get(); }
};
DevBuf upload(const std::vector<float>& v) { return {cuda::to_device(v), v.size()}; }
std::vector<float> download(const DevBuf& d) { return cuda::to_host(d.get(), d.n); }

struct Stream {
  cudaStream_t s{};
  Stream() { FUSELLM_CUDA_CHECK(cudaStreamCreate(&s)); }
  ~Stream() { cudaStreamDestroy(s); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void sync() const { FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s)); }
};

// got against ref, both [rows, ld] buffers whose first cols columns are the values: each value
// within tol * max |ref value|, the padding bit-identical. Fails with the first mismatch's place.
void expect_close(const std::vector<float>& ref, const std::vector<float>& got, int64_t rows, int64_t cols,
                  int64_t ld, double tol, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double max_ref = 0, max_err = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) max_ref = std::max(max_ref, std::abs(double(ref[size_t(r * ld + c)])));
  const double bound = tol * std::max(max_ref, 1e-30);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ld; ++c) {
      const size_t k = size_t(r * ld + c);
      if (c >= cols) {
        ASSERT_EQ(ref[k], got[k]) << what << ": padding at row " << r << ", column " << c << " was written";
        continue;
      }
      const double err = std::abs(double(ref[k]) - double(got[k]));
      ASSERT_TRUE(err <= bound) << what << ": first mismatch at row " << r << ", column " << c << ": reference "
                                << ref[k] << ", GPU " << got[k] << " (|diff| " << err << " > " << tol
                                << " x max |reference| " << max_ref << ")";
      max_err = std::max(max_err, err);
    }
  EXPECT_LE(max_err, bound) << what;
}

void expect_close(const std::vector<float>& ref, const std::vector<float>& got, double tol, const std::string& what) {
  expect_close(ref, got, 1, int64_t(ref.size()), int64_t(ref.size()), tol, what);
}

// ---- norms -----------------------------------------------------------------------------------------

// One norm backward call on both sides: rows 70 (two 64-row chunks of the weight-gradient sums,
// one partial), cols 100 (a partial 32-column tile), every matrix strided.
void check_norm(bool layer, bool with_bias, bool accumulate, uint32_t seed) {
  const int64_t rows = 70, n = 100;
  const float eps = 1e-5f;
  const std::string what = std::string(layer ? "layernorm" : "rmsnorm") + (with_bias ? " +bias" : "") +
                           (accumulate ? " accumulate" : " overwrite");
  HostMat x = random_mat(rows, n, n + 3, seed, -2.f, 2.f), dy = random_mat(rows, n, n + 5, seed + 1);
  HostMat dx = random_mat(rows, n, n + 1, seed + 2);
  if (!accumulate)  // the kernel must overwrite: start the GPU side from NaN, the CPU from the same
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) dx.v[size_t(r * dx.ld + c)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> w = random_vec(size_t(n), seed + 3, 0.5f, 1.5f), dw = random_vec(size_t(n), seed + 4);
  std::vector<float> db = with_bias ? random_vec(size_t(n), seed + 5) : std::vector<float>{};
  const DevBuf d_x = upload(x.v), d_dy = upload(dy.v), d_dx = upload(dx.v), d_w = upload(w), d_dw = upload(dw);
  const DevBuf d_db = upload(db);
  auto ws = cuda::dev_alloc<char>(cuda::norm_backward_workspace_bytes(rows, n));
  Stream s;
  if (layer)
    cuda::layernorm_backward(d_x.get(), x.ld, d_w.get(), eps, d_dy.get(), dy.ld, d_dx.get(), dx.ld, d_dw.get(),
                             with_bias ? d_db.get() : nullptr, rows, n, accumulate, ws.get(), s.s);
  else
    cuda::rmsnorm_backward(d_x.get(), x.ld, d_w.get(), eps, d_dy.get(), dy.ld, d_dx.get(), dx.ld, d_dw.get(), rows,
                           n, accumulate, ws.get(), s.s);
  s.sync();
  if (layer)
    model::layernorm_backward(x.cview(), w, eps, dy.cview(), dx.view(), dw, db, accumulate);
  else
    model::rmsnorm_backward(x.cview(), w, eps, dy.cview(), dx.view(), dw, accumulate);
  // dx: row sums of n = 100 terms in another order (7.6e-6 at most, see the file comment).
  expect_close(dx.v, download(d_dx), rows, n, dx.ld, kTol, what + ": dx");
  // dw, db: fp64 sums over rows on both sides; what differs is r (a row sum, as above) inside
  // each term, and the CPU's per-thread float additions of its partials (a few u).
  expect_close(dw, download(d_dw), kTol, what + ": dw");
  if (with_bias) expect_close(db, download(d_db), kTol, what + ": db");
}

// dx written over dy (norm_backward.cuh allows it: the statistics and weight gradients read dy
// first): RMSNorm, overwrite, against the CPU on separate buffers.
void check_norm_in_place(uint32_t seed) {
  const int64_t rows = 20, n = 48;
  const float eps = 1e-6f;
  HostMat x = random_mat(rows, n, n + 2, seed, -2.f, 2.f), dy = random_mat(rows, n, n + 3, seed + 1);
  HostMat dx = dy;
  std::vector<float> w = random_vec(size_t(n), seed + 2, 0.5f, 1.5f), dw(size_t(n), 0.f);
  const DevBuf d_x = upload(x.v), d_dy = upload(dy.v), d_w = upload(w), d_dw = upload(dw);
  auto ws = cuda::dev_alloc<char>(cuda::norm_backward_workspace_bytes(rows, n));
  Stream s;
  cuda::rmsnorm_backward(d_x.get(), x.ld, d_w.get(), eps, d_dy.get(), dy.ld, d_dy.get(), dy.ld, d_dw.get(), rows, n,
                         false, ws.get(), s.s);
  s.sync();
  model::rmsnorm_backward(x.cview(), w, eps, dy.cview(), dx.view(), dw, false);
  expect_close(dx.v, download(d_dy), rows, n, dx.ld, kTol, "rmsnorm in place: dx");
  expect_close(dw, download(d_dw), kTol, "rmsnorm in place: dw");
}

TEST(CudaBackwardOps, RmsnormBackward) {
  SKIP_WITHOUT_GPU();
  check_norm(false, false, false, 11);
  check_norm(false, false, true, 21);
  check_norm_in_place(61);
}

TEST(CudaBackwardOps, LayernormBackward) {
  SKIP_WITHOUT_GPU();
  check_norm(true, true, false, 31);
  check_norm(true, true, true, 41);
  check_norm(true, false, true, 51);  // MPT: no bias
}

// ---- elementwise -------------------------------------------------------------------------------

TEST(CudaBackwardOps, ActivationBackwardEveryActivation) {
  SKIP_WITHOUT_GPU();
  using model::Activation;
  const std::pair<Activation, cuda::ActKind> all[] = {
      {Activation::SiLU, cuda::ActKind::SiLU},         {Activation::GeluErf, cuda::ActKind::GeluErf},
      {Activation::GeluTanh, cuda::ActKind::GeluTanh}, {Activation::GeluFast, cuda::ActKind::GeluFast},
      {Activation::QuickGelu, cuda::ActKind::QuickGelu}, {Activation::ReLU, cuda::ActKind::ReLU}};
  const int64_t rows = 33, n = 75;
  uint32_t seed = 100;
  for (const auto& [a, k] : all) {
    const std::string what = "activation " + std::to_string(int(a));
    HostMat pre = random_mat(rows, n, n + 2, seed++, -6.f, 6.f), dh = random_mat(rows, n, n + 7, seed++);
    pre.v[0] = 0.f, pre.v[1] = -0.f, pre.v[2] = 1e-3f;  // the kink of relu, the centre of the others
    const DevBuf d_pre = upload(pre.v), d_dh = upload(dh.v);
    Stream s;
    cuda::activation_backward(k, d_pre.get(), pre.ld, d_dh.get(), dh.ld, rows, n, s.s);
    s.sync();
    model::activation_backward(a, pre.cview(), dh.view());
    // Elementwise; expf/erff (<= 2 ulp) against the CPU's exp8 (< 2e-7 relative) / std::erf.
    expect_close(dh.v, download(d_dh), rows, n, dh.ld, kTol, what);
  }
}

TEST(CudaBackwardOps, ClampBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 40, n = 96;
  const float c = 0.5f;
  HostMat y = random_mat(rows, n, n + 4, 200, -1.f, 1.f), dy = random_mat(rows, n, n + 1, 201);
  model::clamp(y.view(), c);  // what the forward kept: many values exactly +-c (gradient 0)
  const DevBuf d_y = upload(y.v), d_dy = upload(dy.v);
  Stream s;
  cuda::clamp_backward(d_y.get(), y.ld, c, d_dy.get(), dy.ld, rows, n, s.s);
  s.sync();
  model::clamp_backward(y.cview(), c, dy.view());
  expect_close(dy.v, download(d_dy), rows, n, dy.ld, 0.0, "clamp_backward");  // a mask: exact
}

TEST(CudaBackwardOps, SwigluBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 33, n = 72;
  HostMat gu = random_mat(rows, 2 * n, 2 * n + 3, 300, -5.f, 5.f), dh = random_mat(rows, n, n + 2, 301);
  HostMat dgu = random_mat(rows, 2 * n, 2 * n + 1, 302);
  const DevBuf d_gu = upload(gu.v), d_dh = upload(dh.v), d_dgu = upload(dgu.v);
  Stream s;
  cuda::swiglu_backward(d_gu.get(), gu.ld, d_dh.get(), dh.ld, d_dgu.get(), dgu.ld, rows, n, s.s);
  // In place (dgate_up = gate_up), as the header allows.
  const DevBuf d_inplace = upload(gu.v);
  cuda::swiglu_backward(d_inplace.get(), gu.ld, d_dh.get(), dh.ld, d_inplace.get(), gu.ld, rows, n, s.s);
  s.sync();
  model::swiglu_backward(gu.cview(), dh.cview(), dgu.view());
  // Elementwise; expf against the CPU's exp8 (a few ulp).
  expect_close(dgu.v, download(d_dgu), rows, 2 * n, dgu.ld, kTol, "swiglu_backward");
  HostMat inplace = gu;
  model::swiglu_backward(gu.cview(), dh.cview(), inplace.view());
  expect_close(inplace.v, download(d_inplace), rows, 2 * n, gu.ld, kTol, "swiglu_backward in place");
}

// ---- RoPE --------------------------------------------------------------------------------------------

// doc_start of three packed documents of lengths 20, 25 and the rest of T.
std::vector<int32_t> three_docs(int64_t T, int64_t a = 20, int64_t b = 45) {
  std::vector<int32_t> s(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) s[size_t(t)] = int32_t(t < a ? 0 : t < b ? a : b);
  return s;
}

model::RopeTable table_for(const std::vector<int32_t>& doc_start, int64_t rotary_dim) {
  const int64_t T = int64_t(doc_start.size());
  std::vector<int32_t> pos(static_cast<size_t>(T)), len(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    int64_t end = t;
    while (end + 1 < T && doc_start[size_t(end + 1)] == doc_start[size_t(t)]) ++end;
    pos[size_t(t)] = int32_t(t - doc_start[size_t(t)]);
    len[size_t(t)] = int32_t(end + 1 - doc_start[size_t(t)]);
  }
  model::RopeConfig c;
  c.rotary_dim = rotary_dim;
  return model::rope_table(c, pos, len);
}

TEST(CudaBackwardOps, RopeBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t T = 50, H = 4, KV = 2, D = 16, cols = (H + 2 * KV) * D;
  const std::vector<int32_t> doc_start = three_docs(T);
  struct Case {
    int64_t rotary_dim, col0, heads;
    const char* what;
  };
  // The decoder's call (q and k heads from column 0), and partial rotary on the k heads alone.
  for (const Case& k : {Case{D, 0, H + KV, "rope q|k from col 0"}, Case{D / 2, H * D, KV, "partial rope on k"}}) {
    const model::RopeTable t = table_for(doc_start, k.rotary_dim);
    HostMat dx = random_mat(T, cols, cols + 3, 400);
    const DevBuf d_dx = upload(dx.v), d_cos = upload(t.cos), d_sin = upload(t.sin);
    Stream s;
    cuda::rope_backward(d_cos.get(), d_sin.get(), t.half, d_dx.get(), dx.ld, T, k.col0, k.heads, D, s.s);
    s.sync();
    model::apply_rope_backward(t, dx.view(), k.col0, k.heads, D);
    expect_close(dx.v, download(d_dx), T, cols, dx.ld, kTol, k.what);  // 2 products and a sum each
  }
}

// ---- embedding -----------------------------------------------------------------------------------

TEST(CudaBackwardOps, EmbeddingBackwardRepeatedIds) {
  SKIP_WITHOUT_GPU();
  const int64_t T = 64, vocab = 50, Hd = 40;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  std::mt19937 rng(500);
  for (auto& id : ids) id = int32_t(rng() % 10);  // ids 0..9: every one repeats
  ids[0] = int32_t(vocab - 1);                    // the last row
  // Positive values: then each sum's rounding error is at most (k - 1) u of the sum itself
  // (k <= T + 1 terms, in the atomics' order): 64 * 2^-24 = 3.8e-6 < 1e-5.
  HostMat dx = random_mat(T, Hd, Hd + 2, 501, 0.f, 1.f), table = random_mat(vocab, Hd, Hd + 3, 502, 0.f, 1.f);
  const DevBuf d_dx = upload(dx.v), d_table = upload(table.v);
  auto d_ids = cuda::to_device(ids);
  Stream s;
  cuda::embedding_backward(d_ids.get(), d_dx.get(), dx.ld, d_table.get(), table.ld, vocab, T, Hd, s.s);
  s.sync();
  model::embedding_backward(ids, dx.cview(), table.view());
  expect_close(table.v, download(d_table), vocab, Hd, table.ld, kTol, "embedding_backward");
}

// ---- attention ----------------------------------------------------------------------------------

struct AttnCase {
  int64_t T, H, KV, D, window;
  bool alibi;
  std::vector<int32_t> doc_start;
  const char* what;
};

void check_attention(const AttnCase& k, uint32_t seed) {
  const int64_t T = k.T, H = k.H, KV = k.KV, D = k.D, cols = (H + 2 * KV) * D;
  const std::vector<float> slopes = k.alibi ? model::alibi_slopes(H, 8.0) : std::vector<float>{};
  model::AttentionShape shape;
  shape.heads = H, shape.kv_heads = KV, shape.head_dim = D, shape.scale = 1.f / std::sqrt(float(D));
  shape.sliding_window = k.window, shape.alibi = slopes;
  HostMat qkv = random_mat(T, cols, cols + 4, seed, -2.f, 2.f), out = random_mat(T, H * D, H * D + 1, seed + 1);
  HostMat dout = random_mat(T, H * D, H * D + 3, seed + 2), dqkv = random_mat(T, cols, cols + 2, seed + 3);
  for (int64_t r = 0; r < T; ++r)  // every value must be written: poison the GPU's start (and the CPU's)
    for (int64_t c = 0; c < cols; ++c) dqkv.v[size_t(r * dqkv.ld + c)] = std::numeric_limits<float>::quiet_NaN();
  model::causal_attention(qkv.cview(), k.doc_start, shape, out.view());  // O as the forward made it
  const DevBuf d_qkv = upload(qkv.v), d_out = upload(out.v), d_dout = upload(dout.v), d_dqkv = upload(dqkv.v);
  const DevBuf d_alibi = upload(slopes);
  auto d_doc = cuda::to_device(k.doc_start);
  auto ws = cuda::dev_alloc<char>(cuda::attention_backward_workspace_bytes(T, H));
  cuda::AttentionBackwardArgs a;
  a.qkv = d_qkv.get(), a.ld_qkv = qkv.ld, a.out = d_out.get(), a.ld_out = out.ld, a.dout = d_dout.get();
  a.ld_dout = dout.ld, a.doc_start = d_doc.get(), a.dqkv = d_dqkv.get(), a.ld_dqkv = dqkv.ld;
  a.T = T, a.heads = H, a.kv_heads = KV, a.head_dim = D, a.scale = shape.scale, a.sliding_window = k.window;
  a.alibi = k.alibi ? d_alibi.get() : nullptr;
  Stream s;
  cuda::attention_backward(a, ws.get(), s.s);
  s.sync();
  model::causal_attention_backward(qkv.cview(), out.cview(), dout.cview(), k.doc_start, shape, dqkv.view());
  // Sums in other orders (dot products over D dims, dQ / dK / dV over up to T keys or G T
  // queries), P from expf and an online max/sum against the CPU's exp8 and two-pass softmax (a few
  // u each), and dP - D_i cancelling: the linear bound is (D + G T + 8) u times the terms'
  // magnitudes, with D + G T + 8 <= 200 here (3e-5 relative to those magnitudes); the terms may
  // exceed the largest output several times over where they cancel, hence 1e-4.
  expect_close(dqkv.v, download(d_dqkv), T, cols, dqkv.ld, 1e-4, k.what);
}

TEST(CudaBackwardOps, AttentionBackward) {
  SKIP_WITHOUT_GPU();
  std::vector<int32_t> docs = three_docs(64);
  docs[63] = 63;  // a last one-token document: a row with a single visible key
  check_attention({64, 4, 2, 16, 0, false, docs, "GQA 4/2, four documents"}, 600);
  check_attention({64, 4, 2, 16, 7, true, three_docs(64, 30, 50), "GQA, sliding window 7, ALiBi"}, 610);
  check_attention({50, 4, 4, 40, 0, false, std::vector<int32_t>(50, 0), "MHA, head_dim 40 (partial lanes)"}, 620);
  check_attention({24, 2, 1, 128, 5, true, three_docs(24, 9, 16), "MQA, head_dim 128, window, ALiBi"}, 630);
  check_attention({17, 3, 1, 8, 0, true, three_docs(17, 5, 11), "three heads, head_dim 8"}, 640);
}

}  // namespace
