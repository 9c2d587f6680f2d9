// The CudaBackend's forward ops and backward GEMMs (model/cuda/cuda_backend.cpp) against the CPU
// backend (cpu_backend(), the reference), op by op: seeded random inputs, the same views on host
// memory and on device copies (strided where the decoder passes strides: column slices of
// [gate | up] and of qkv, RoPE from a column offset), the whole buffers compared afterwards: the
// view within a bound, the padding around it untouched. A mismatch names the op and its first
// element. Shapes stay small (T <= 64, widths <= 256). Skips without a GPU, except the test of
// the constructor's error.
//
// Bounds. fp32 on both sides; an op whose arithmetic is the same element by element (embedding,
// copy, clamp, RoPE, the activations) or whose only sum is a row of <= 128 terms (the norms)
// stays within 1e-5 of the largest |reference|. Where a long sum is taken in another order (the
// GEMMs, attention), each side's rounding error is bounded by gamma_n = n u / (1 - n u) times
// the sum of the magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), so the
// two differ by at most twice that; the bounds below are built from it and stated where used.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda_skip.hpp"
#include "cuda/device_buffer.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/model/backend.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm {
namespace {

using model::Activation;
using model::ConstMatView;
using model::MatView;

constexpr double kTol = 1e-5;
constexpr double kU = 1.0 / (1 << 24);  // fp32 unit roundoff

double gamma(int64_t n) { return double(n) * kU / (1.0 - double(n) * kU); }

const model::CudaBackend& gpu() {
  static const model::CudaBackend backend(0);
  return backend;
}
const model::Backend& cpu() { return model::cpu_backend(); }

// A row-major matrix [rows, cols] with leading dimension ld, on the host and on the device; the
// padding columns hold random values too (they must come back unchanged).
struct Mat {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> host;
  cuda::DevPtr<float> dev;

  Mat(int64_t r, int64_t c, int64_t l, std::mt19937& rng, float sd = 1.f) : rows(r), cols(c), ld(l) {
    std::normal_distribution<float> nd(0.f, sd);
    host.resize(size_t(r * l));
    for (float& v : host) v = nd(rng);
    dev = cuda::to_device(host);
  }
  Mat(int64_t r, int64_t c, std::mt19937& rng, float sd = 1.f) : Mat(r, c, c, rng, sd) {}
  MatView h() { return {host.data(), rows, cols, ld}; }
  MatView d() { return {dev.get(), rows, cols, ld}; }
  // A column slice [c0, c0 + n) of the same rows, on each side.
  MatView h_cols(int64_t c0, int64_t n) { return {host.data() + c0, rows, n, ld}; }
  MatView d_cols(int64_t c0, int64_t n) { return {dev.get() + c0, rows, n, ld}; }
  std::vector<float> download() const {
    gpu().sync();
    return cuda::to_host(dev.get(), host.size());
  }
};

struct Vec {
  std::vector<float> host;
  cuda::DevPtr<float> dev;
  Vec(int64_t n, std::mt19937& rng, float mean = 0.f, float sd = 1.f) {
    std::normal_distribution<float> nd(mean, sd);
    host.resize(size_t(n));
    for (float& v : host) v = nd(rng);
    dev = cuda::to_device(host);
  }
  std::span<float> h() { return host; }
  std::span<float> d() { return {dev.get(), host.size()}; }
  std::vector<float> download() const {
    gpu().sync();
    return cuda::to_host(dev.get(), host.size());
  }
};

struct Ints {
  std::vector<int32_t> host;
  cuda::DevPtr<int32_t> dev;
  explicit Ints(std::vector<int32_t> v) : host(std::move(v)), dev(cuda::to_device(host)) {}
  std::span<const int32_t> h() const { return host; }
  std::span<const int32_t> d() const { return {dev.get(), host.size()}; }
};

double max_abs(const std::vector<float>& v, int64_t rows, int64_t cols, int64_t ld) {
  double m = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(std::abs(v[size_t(r * ld + c)])));
  return m;
}

// Within the view [rows, cols] (ld): |got - ref| <= bound (NaN fails); outside it: bit-equal.
void expect_close(const std::string& op, const std::vector<float>& ref, const std::vector<float>& got, int64_t rows,
                  int64_t cols, int64_t ld, double bound) {
  ASSERT_EQ(ref.size(), got.size()) << op;
  for (size_t k = 0; k < ref.size(); ++k) {
    const int64_t r = int64_t(k) / ld, c = int64_t(k) % ld;
    const bool inside = r < rows && c < cols;
    const double diff = std::abs(double(got[k]) - double(ref[k]));
    const bool ok = inside ? diff <= bound : std::memcmp(&got[k], &ref[k], sizeof(float)) == 0;
    if (!ok) {
      ADD_FAILURE() << op << ": first mismatch at (" << r << ", " << c << ")" << (inside ? "" : " (padding)")
                    << ": gpu " << got[k] << ", cpu " << ref[k] << ", |diff| " << diff << " > bound " << bound;
      return;
    }
  }
}
void expect_close(const std::string& op, const Mat& ref, const Mat& got, double bound) {
  expect_close(op, ref.host, got.download(), ref.rows, ref.cols, ref.ld, bound);
}
// The default bound: kTol times the largest |reference| in the view.
void expect_close(const std::string& op, const Mat& ref, const Mat& got) {
  expect_close(op, ref, got, kTol * max_abs(ref.host, ref.rows, ref.cols, ref.ld));
}

// Two copies of one random matrix: `ref` for the CPU, `got` for the GPU.
struct Pair {
  Mat ref, got;
  Pair(int64_t r, int64_t c, int64_t ld, uint32_t seed, float sd = 1.f)
      : ref(r, c, ld, rng(seed), sd), got(r, c, ld, rng(seed), sd) {}
  static std::mt19937& rng(uint32_t seed) {
    static std::mt19937 g;
    g.seed(seed);
    return g;
  }
};

// doc_start[t] for documents of the given lengths.
std::vector<int32_t> doc_starts(const std::vector<int32_t>& lengths) {
  std::vector<int32_t> s;
  for (int32_t n : lengths)
    for (int32_t k = 0, first = int32_t(s.size()); k < n; ++k) s.push_back(first);
  return s;
}

// ---- construction -------------------------------------------------------------------------------

TEST(CudaBackend, ConstructorNamesTheMissingDevice) {
  const int n = cuda::device_count();
  try {
    model::CudaBackend b(n == 0 ? 0 : n);  // no GPU at all, or one past the last
    FAIL() << "constructed a CudaBackend on device " << n << " of " << n;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CudaBackend"), std::string::npos) << e.what();
  }
}

TEST(CudaBackend, ShapeErrorsNameTheOp) {
  SKIP_WITHOUT_GPU();
  const MatView a{nullptr, 4, 8, 8}, b{nullptr, 5, 7, 7}, y{nullptr, 4, 5, 5};
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { gpu().linear(a, b, {}, y, false); }).find("linear"), std::string::npos);
  EXPECT_NE(message([&] { gpu().copy(a, b); }).find("copy"), std::string::npos);
  EXPECT_NE(message([&] { gpu().linear_backward_input(y, b, a, false); }).find("linear_backward_input"),
            std::string::npos);
  model::AttentionShape s;
  s.heads = 3, s.kv_heads = 2, s.head_dim = 4;
  EXPECT_NE(message([&] { gpu().causal_attention(a, {}, s, y); }).find("attention"), std::string::npos);
  s.heads = 1, s.kv_heads = 1, s.head_dim = 512;
  const MatView big{nullptr, 0, 3 * 512, 3 * 512}, big_out{nullptr, 0, 512, 512};
  EXPECT_NE(message([&] { gpu().causal_attention(big, {}, s, big_out); }).find("head_dim"), std::string::npos);
}

// ---- embedding, copy, norms ---------------------------------------------------------------------

TEST(CudaBackend, EmbedWithAndWithoutLearnedPositions) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  const int64_t T = 37, V = 50, P = 40, Hd = 48;
  Mat table(V, Hd, Hd + 3, rng), pos(P, Hd, Hd + 1, rng);
  std::uniform_int_distribution<int32_t> id(0, int32_t(V - 1)), pd(0, int32_t(P - 1));
  std::vector<int32_t> ids(T), positions(T);
  for (auto& v : ids) v = id(rng);
  for (auto& v : positions) v = pd(rng);
  const Ints dids(ids), dpos(positions);
  for (bool learned : {false, true}) {
    Pair x(T, Hd, Hd + 5, 2);
    cpu().embed(dids.h(), table.h(), dpos.h(), learned ? ConstMatView(pos.h()) : ConstMatView(), x.ref.h());
    gpu().embed(dids.d(), table.d(), dpos.d(), learned ? ConstMatView(pos.d()) : ConstMatView(), x.got.d());
    expect_close(learned ? "embed (learned positions)" : "embed", x.ref, x.got);
  }
}

TEST(CudaBackend, CopyStridedViews) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  Mat src(21, 30, 64, rng);
  Pair dst(21, 30, 33, 4);
  cpu().copy(src.h_cols(7, 30), dst.ref.h());
  gpu().copy(src.d_cols(7, 30), dst.got.d());
  expect_close("copy", dst.ref, dst.got, 0.0);
}

TEST(CudaBackend, RmsNormStridedAndInPlace) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const int64_t T = 45, n = 96;
  Mat x(T, n, n + 7, rng, 2.f);
  Vec w(n, rng, 1.f, 0.3f);
  Pair y(T, n, n + 2, 6);
  cpu().rmsnorm(x.h(), w.h(), 1e-5f, y.ref.h());
  gpu().rmsnorm(x.d(), w.d(), 1e-5f, y.got.d());
  expect_close("rmsnorm", y.ref, y.got);
  Pair z(T, n, n + 7, 8, 2.f);  // y = x: the norm in place
  cpu().rmsnorm(z.ref.h(), w.h(), 1e-6f, z.ref.h());
  gpu().rmsnorm(z.got.d(), w.d(), 1e-6f, z.got.d());
  expect_close("rmsnorm (in place)", z.ref, z.got);
}

TEST(CudaBackend, LayerNormWithAndWithoutBias) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const int64_t T = 40, n = 80;
  Mat x(T, n, n + 4, rng, 1.5f);
  for (float& v : x.host) v += 3.f;  // a mean far from 0: the two passes matter
  x.dev = cuda::to_device(x.host);
  Vec w(n, rng, 1.f, 0.3f), b(n, rng);
  for (bool bias : {true, false}) {
    Pair y(T, n, n + 1, 10);
    cpu().layernorm(x.h(), w.h(), bias ? b.h() : std::span<float>(), 1e-5f, y.ref.h());
    gpu().layernorm(x.d(), w.d(), bias ? b.d() : std::span<float>(), 1e-5f, y.got.d());
    expect_close(bias ? "layernorm" : "layernorm (no bias)", y.ref, y.got);
  }
}

// ---- linear and the backward GEMMs --------------------------------------------------------------

// max over the output of sum_k |a_ik| |b_kj| + |c_ij| + |bias_j| for row-major C = A B^T (A [M, K],
// B [N, K] as given by their element accessors): what the summation-order bound scales.
template <class FA, class FB, class FC>
double magnitude(int64_t M, int64_t N, int64_t K, FA a, FB b, FC c_and_bias) {
  double m = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = c_and_bias(i, j);
      for (int64_t k = 0; k < K; ++k) s += std::abs(double(a(i, k))) * std::abs(double(b(j, k)));
      m = std::max(m, s);
    }
  return m;
}
// Both sides' dot products of K terms plus an added C and bias, each within gamma_{K+2} of the
// magnitudes: they differ by at most 2 gamma_{K+2} times the largest.
double gemm_bound(int64_t K, double mag) { return 2.0 * gamma(K + 2) * mag; }

TEST(CudaBackend, LinearBiasAccumulateStrided) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  const int64_t M = 33, K = 40, N = 24;
  Mat gate_up(M, 2 * K, rng), w(N, K, K + 3, rng);  // x: the gate half of [gate | up], ld 2K
  Vec b(N, rng);
  const ConstMatView xh(gate_up.host.data(), M, K, 2 * K), xd(gate_up.dev.get(), M, K, 2 * K);
  for (int variant = 0; variant < 4; ++variant) {
    const bool bias = variant & 1, acc = variant & 2;
    Pair y(M, N, N + 2, 12);
    const std::vector<float> y0 = y.ref.host;
    cpu().linear(xh, w.h(), bias ? b.h() : std::span<float>(), y.ref.h(), acc);
    gpu().linear(xd, w.d(), bias ? b.d() : std::span<float>(), y.got.d(), acc);
    auto xa = [&](int64_t i, int64_t k) { return xh.row(i)[k]; };
    auto wb = [&](int64_t j, int64_t k) { return w.h().row(j)[k]; };
    auto cb = [&](int64_t i, int64_t j) {
      const double c = acc ? std::abs(double(y0[size_t(i * y.ref.ld + j)])) : 0.0;
      return c + (bias ? std::abs(double(b.host[size_t(j)])) : 0.0);
    };
    const double mag = magnitude(M, N, K, xa, wb, cb);
    expect_close(std::string("linear") + (bias ? " +bias" : "") + (acc ? " +accumulate" : ""), y.ref, y.got,
                 gemm_bound(K, mag));
  }
}

TEST(CudaBackend, LinearBackwardInputAndWeight) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  const int64_t M = 29, N = 36, K = 20;  // y [M, N] = x [M, K] W [N, K]^T
  Mat dy_buf(M, N + 8, rng), w(N, K, K + 1, rng), x(M, K, K + 2, rng);
  MatView dyh = dy_buf.h_cols(8, N), dyd = dy_buf.d_cols(8, N);  // a column slice, as dqkv's
  for (bool acc : {false, true}) {
    Pair dx(M, K, K + 3, 14);
    const std::vector<float> dx0 = dx.ref.host;
    cpu().linear_backward_input(dyh, w.h(), dx.ref.h(), acc);
    gpu().linear_backward_input(dyd, w.d(), dx.got.d(), acc);
    // dx = dy W: element (i, k) sums over n of dy[i, n] W[n, k].
    auto dya = [&](int64_t i, int64_t n) { return dyh.row(i)[n]; };
    auto wb = [&](int64_t k, int64_t n) { return w.h().row(n)[k]; };
    auto cb = [&](int64_t i, int64_t k) { return acc ? std::abs(double(dx0[size_t(i * dx.ref.ld + k)])) : 0.0; };
    const double mag = magnitude(M, K, N, dya, wb, cb);
    expect_close(acc ? "linear_backward_input +accumulate" : "linear_backward_input", dx.ref, dx.got,
                 gemm_bound(N, mag));
  }
  Pair dw(N, K, K + 1, 15);  // dW accumulates
  const std::vector<float> dw0 = dw.ref.host;
  cpu().linear_backward_weight(dyh, x.h(), dw.ref.h());
  gpu().linear_backward_weight(dyd, x.d(), dw.got.d());
  // dW = dy^T x: element (n, k) sums over m of dy[m, n] x[m, k].
  auto dya = [&](int64_t n, int64_t m) { return dyh.row(m)[n]; };
  auto xb = [&](int64_t k, int64_t m) { return x.h().row(m)[k]; };
  auto cb = [&](int64_t n, int64_t k) { return std::abs(double(dw0[size_t(n * dw.ref.ld + k)])); };
  const double mag = magnitude(N, K, M, dya, xb, cb);
  expect_close("linear_backward_weight", dw.ref, dw.got, gemm_bound(M, mag));
}

// ---- GemmMath::kBf16: the three GEMMs on tensor cores -------------------------------------------
// The reference is the CPU's fp32 GEMM on the operands rounded to bf16 (torch's rounding,
// core/dtype.hpp): each product of two bf16 values is exact in fp32, so the two differ by the
// summation only; cuBLASLt's tensor cores may truncate instead of rounding while they accumulate,
// which doubles the unit roundoff: twice gemm_bound. Outputs whose leading dimension is a multiple
// of 4 floats are written by cuBLASLt in place, the others (ld + 2) through the scratch and
// matrix_add: both are checked, as are the padding around every output (untouched), strided
// operands (the gate half of [gate | up], a column slice of dy) and accumulation.

const model::CudaBackend& gpu_bf16() {
  static const model::CudaBackend backend(0, model::GemmMath::kBf16);
  return backend;
}

// A host copy of m's buffer with every value rounded to bf16, viewed as m is.
struct Rounded {
  std::vector<float> v;
  int64_t rows, cols, ld;
  explicit Rounded(const Mat& m) : v(m.host), rows(m.rows), cols(m.cols), ld(m.ld) {
    for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  }
  ConstMatView h(int64_t c0 = 0, int64_t n = -1) const { return {v.data() + c0, rows, n < 0 ? cols : n, ld}; }
};

TEST(CudaBackendBf16, LinearOnTensorCores) {
  SKIP_WITHOUT_GPU();
  EXPECT_EQ(gpu_bf16().gemm_math(), model::GemmMath::kBf16);
  std::mt19937 rng(21);
  const int64_t M = 33, K = 40, N = 24;
  Mat gate_up(M, 2 * K, rng), w(N, K, K + 3, rng);
  const Rounded gu16(gate_up), w16(w);
  Vec b(N, rng);
  const ConstMatView xh = gu16.h(0, K), xd(gate_up.dev.get(), M, K, 2 * K);
  for (int variant = 0; variant < 8; ++variant) {
    const bool bias = variant & 1, acc = variant & 2;
    const int64_t ld = variant & 4 ? N + 2 : N;  // in place, or through the scratch
    Pair y(M, N, ld, 22);
    const std::vector<float> y0 = y.ref.host;
    cpu().linear(xh, w16.h(), bias ? b.h() : std::span<float>(), y.ref.h(), acc);
    gpu_bf16().linear(xd, w.d(), bias ? b.d() : std::span<float>(), y.got.d(), acc);
    gpu_bf16().sync();
    auto xa = [&](int64_t i, int64_t k) { return xh.row(i)[k]; };
    auto wb = [&](int64_t j, int64_t k) { return w16.h().row(j)[k]; };
    auto cb = [&](int64_t i, int64_t j) {
      const double c = acc ? std::abs(double(y0[size_t(i * ld + j)])) : 0.0;
      return c + (bias ? std::abs(double(b.host[size_t(j)])) : 0.0);
    };
    expect_close(fmt::format("bf16 linear{}{} ld {}", bias ? " +bias" : "", acc ? " +accumulate" : "", ld), y.ref,
                 y.got, 2 * gemm_bound(K, magnitude(M, N, K, xa, wb, cb)));
  }
}

TEST(CudaBackendBf16, BackwardGemmsOnTensorCores) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  const int64_t M = 29, N = 36, K = 20;
  Mat dy_buf(M, N + 8, rng), w(N, K, K + 1, rng), x(M, K, K + 2, rng);
  const Rounded dy16(dy_buf), w16(w), x16(x);
  const ConstMatView dyh = dy16.h(8, N);
  const MatView dyd = dy_buf.d_cols(8, N);
  for (const int64_t ld : {K, K + 3})
    for (bool acc : {false, true}) {
      Pair dx(M, K, ld, 24);
      const std::vector<float> dx0 = dx.ref.host;
      cpu().linear_backward_input(dyh, w16.h(), dx.ref.h(), acc);
      gpu_bf16().linear_backward_input(dyd, w.d(), dx.got.d(), acc);
      gpu_bf16().sync();
      auto dya = [&](int64_t i, int64_t n) { return dyh.row(i)[n]; };
      auto wb = [&](int64_t k, int64_t n) { return w16.h().row(n)[k]; };
      auto cb = [&](int64_t i, int64_t k) { return acc ? std::abs(double(dx0[size_t(i * ld + k)])) : 0.0; };
      expect_close(fmt::format("bf16 linear_backward_input{} ld {}", acc ? " +accumulate" : "", ld), dx.ref, dx.got,
                   2 * gemm_bound(N, magnitude(M, K, N, dya, wb, cb)));
    }
  for (const int64_t ld : {K, K + 1}) {  // dW accumulates
    Pair dw(N, K, ld, 25);
    const std::vector<float> dw0 = dw.ref.host;
    cpu().linear_backward_weight(dyh, x16.h(), dw.ref.h());
    gpu_bf16().linear_backward_weight(dyd, x.d(), dw.got.d());
    gpu_bf16().sync();
    auto dya = [&](int64_t n, int64_t m) { return dyh.row(m)[n]; };
    auto xb = [&](int64_t k, int64_t m) { return x16.h().row(m)[k]; };
    auto cb = [&](int64_t n, int64_t k) { return std::abs(double(dw0[size_t(n * ld + k)])); };
    expect_close(fmt::format("bf16 linear_backward_weight ld {}", ld), dw.ref, dw.got,
                 2 * gemm_bound(M, magnitude(N, K, M, dya, xb, cb)));
  }
}

// The memory ops of the gradient accumulation (Decoder::GradientAdd::kPerPart): zero a range
// (the rest untouched), and y = x + y, the CPU's bits (one fp32 add).
TEST(CudaBackend, ZeroAndAddAsTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  Pair y(1, 1000, 1000, 32);
  Mat x(1, 1000, rng);
  cpu().zero(y.ref.host.data() + 100, 300 * sizeof(float));
  gpu().zero(y.got.dev.get() + 100, 300 * sizeof(float));
  cpu().add(x.host, y.ref.host);
  gpu().add({x.dev.get(), x.host.size()}, {y.got.dev.get(), y.ref.host.size()});
  expect_close("zero then add", y.ref, y.got, 0.0);
}

TEST(CudaBackend, BiasBackwardAccumulates) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(16);
  const int64_t M = 53, N = 70;
  Mat dy(M, N, N + 6, rng);
  Vec db_ref(N, rng), db_got(N, rng);
  db_got.host = db_ref.host;
  db_got.dev = cuda::to_device(db_got.host);
  double mag = 0;  // the column sums of M + 1 terms (with db's start), in another order
  for (int64_t c = 0; c < N; ++c) {
    double s = std::abs(double(db_ref.host[size_t(c)]));
    for (int64_t r = 0; r < M; ++r) s += std::abs(double(dy.host[size_t(r * dy.ld + c)]));
    mag = std::max(mag, s);
  }
  cpu().bias_backward(dy.h(), db_ref.h());
  gpu().bias_backward(dy.d(), db_got.d());
  expect_close("bias_backward", db_ref.host, db_got.download(), 1, N, N, 2.0 * gamma(M + 1) * mag);
}

// ---- element-wise: clamp, activations -----------------------------------------------------------

TEST(CudaBackend, Clamp) {
  SKIP_WITHOUT_GPU();
  Pair x(19, 24, 31, 17, 2.f);
  cpu().clamp(x.ref.h(), 1.5f);
  gpu().clamp(x.got.d(), 1.5f);
  expect_close("clamp", x.ref, x.got, 0.0);
}

const char* name_of(Activation a) {
  switch (a) {
    case Activation::SiLU: return "silu";
    case Activation::GeluErf: return "gelu";
    case Activation::GeluTanh: return "gelu_new";
    case Activation::GeluFast: return "gelu_fast";
    case Activation::QuickGelu: return "quick_gelu";
    case Activation::ReLU: return "relu";
  }
  return "?";
}
const Activation kActivations[] = {Activation::SiLU,     Activation::GeluErf,   Activation::GeluTanh,
                                   Activation::GeluFast, Activation::QuickGelu, Activation::ReLU};

// Normal values, sd 3, and in the last row the far tails (exp's clamping on the CPU, inf on the
// GPU), compared apart (expect_split): their size would loosen the bound of the others, under
// which the GELU forms (erf against tanh differ by up to 5e-4) must stay told apart.
void add_extremes(Pair& p) {
  const float ext[] = {0.f, -0.f, 100.f, -100.f, 30.f, -30.f, 1e-8f, -1e-8f, 12.f, -12.f};
  float* last = p.ref.host.data() + (p.ref.rows - 1) * p.ref.ld;
  for (size_t k = 0; k < std::size(ext); ++k) last[k] = ext[k];
  p.got.host = p.ref.host;
  p.got.dev = cuda::to_device(p.got.host);
}
void expect_split(const std::string& op, const Mat& ref, const Mat& got) {
  const std::vector<float> g = got.download();
  const size_t split = size_t((ref.rows - 1) * ref.ld);
  const std::vector<float> r0(ref.host.begin(), ref.host.begin() + split), g0(g.begin(), g.begin() + split);
  const std::vector<float> r1(ref.host.begin() + split, ref.host.end()), g1(g.begin() + split, g.end());
  expect_close(op, r0, g0, ref.rows - 1, ref.cols, ref.ld, kTol * max_abs(r0, ref.rows - 1, ref.cols, ref.ld));
  expect_close(op + " (extremes)", r1, g1, 1, ref.cols, ref.ld, kTol * max_abs(r1, 1, ref.cols, ref.ld));
}

TEST(CudaBackend, EveryActivationInPlaceAndIntoOut) {
  SKIP_WITHOUT_GPU();
  const int64_t T = 23, n = 50;
  for (Activation a : kActivations) {
    const std::string name = name_of(a);
    Pair x(T, n, n + 6, 18, 3.f);
    add_extremes(x);
    Pair out(T, n, n + 1, 19);
    cpu().activation(a, x.ref.h(), out.ref.h());
    gpu().activation(a, x.got.d(), out.got.d());
    expect_split("activation " + name + " (into out)", out.ref, out.got);
    expect_close("activation " + name + " (input kept)", x.ref, x.got, 0.0);
    cpu().activation(a, x.ref.h());
    gpu().activation(a, x.got.d());
    expect_split("activation " + name + " (in place)", x.ref, x.got);
  }
}

TEST(CudaBackend, EveryGatedActivationInPlaceAndIntoOut) {
  SKIP_WITHOUT_GPU();
  const int64_t T = 21, n = 36;
  for (Activation a : kActivations) {
    const std::string name = name_of(a);
    Pair gu(T, 2 * n, 2 * n + 3, 20, 3.f);
    add_extremes(gu);
    Pair out(T, n, n + 2, 21);
    cpu().gated_activation(a, gu.ref.h(), out.ref.h());
    gpu().gated_activation(a, gu.got.d(), out.got.d());
    expect_split("gated_activation " + name + " (into out)", out.ref, out.got);
    expect_close("gated_activation " + name + " (input kept)", gu.ref, gu.got, 0.0);
    cpu().gated_activation(a, gu.ref.h());
    gpu().gated_activation(a, gu.got.d());
    // The gate half changes, the up half stays: both checked, over the whole [gate | up].
    expect_split("gated_activation " + name + " (in place)", gu.ref, gu.got);
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------

// The table of documents of the given lengths, as the decoder builds it.
model::RopeTable table_for(const std::vector<int32_t>& lengths, int64_t rotary_dim, model::RopeConfig::Type type) {
  model::RopeConfig c;
  c.type = type;
  c.rotary_dim = rotary_dim;
  c.factor = 2.0;
  c.max_positions = 8;
  std::vector<int32_t> pos, len;
  for (int32_t n : lengths)
    for (int32_t k = 0; k < n; ++k) pos.push_back(k), len.push_back(n);
  return model::rope_table(c, pos, len);
}

TEST(CudaBackend, RopePartialRotaryOnQkvColumns) {
  SKIP_WITHOUT_GPU();
  const int64_t H = 4, KV = 2, D = 16, T = 30, ld = (H + 2 * KV) * D;
  // Partial rotary (8 of 16 dims) over the q and k heads from column 0, as the decoder does.
  const model::RopeTable part = table_for({12, 18}, 8, model::RopeConfig::Type::Default);
  Pair qkv(T, ld, ld, 22, 2.f);
  cpu().apply_rope(part, qkv.ref.h(), 0, H + KV, D);
  gpu().apply_rope(part, qkv.got.d(), 0, H + KV, D);
  expect_close("apply_rope (partial, q and k heads)", qkv.ref, qkv.got);
  // Full rotary over the k heads only (col0 = H D), a dynamic-NTK table, a padded row.
  const model::RopeTable full = table_for({30}, D, model::RopeConfig::Type::Dynamic);
  Pair x(T, ld, ld + 4, 23, 2.f);
  cpu().apply_rope(full, x.ref.h(), H * D, KV, D);
  gpu().apply_rope(full, x.got.d(), H * D, KV, D);
  expect_close("apply_rope (k heads from col0)", x.ref, x.got);
}

// A second, longer table grows the scratch buffers; a third, shorter one with other values must
// replace the contents (not reuse the last upload); the same table again may reuse them.
TEST(CudaBackend, RopeScratchGrowsAndFollowsTheTable) {
  SKIP_WITHOUT_GPU();
  const int64_t D = 32, heads = 3;
  struct Step {
    std::vector<int32_t> docs;
    model::RopeConfig::Type type;
  };
  const Step steps[] = {{{8}, model::RopeConfig::Type::Default},
                        {{20, 44}, model::RopeConfig::Type::Default},
                        {{5, 3}, model::RopeConfig::Type::Linear},
                        {{5, 3}, model::RopeConfig::Type::Linear}};
  uint32_t seed = 24;
  for (const Step& s : steps) {
    const model::RopeTable t = table_for(s.docs, D, s.type);
    const int64_t T = int64_t(t.cos.size()) / t.half;
    Pair x(T, heads * D, heads * D, seed++, 2.f);
    cpu().apply_rope(t, x.ref.h(), 0, heads, D);
    gpu().apply_rope(t, x.got.d(), 0, heads, D);
    expect_close("apply_rope (T = " + std::to_string(T) + ")", x.ref, x.got);
  }
  // upload_rope itself (the backward pass's entry): the device copy equals the table.
  const model::RopeTable t = table_for({7, 9}, 12, model::RopeConfig::Type::Default);
  const model::CudaBackend::DeviceRope r = gpu().upload_rope(t);
  ASSERT_EQ(r.half, t.half);
  gpu().sync();
  EXPECT_EQ(cuda::to_host(r.cos, t.cos.size()), t.cos);
  EXPECT_EQ(cuda::to_host(r.sin, t.sin.size()), t.sin);
  EXPECT_EQ(gpu().upload_alibi({}), nullptr);
}

// ---- attention ----------------------------------------------------------------------------------

struct AttentionCase {
  std::string name;
  int64_t H, KV, D;
  std::vector<int32_t> docs;  // document lengths
  int64_t window = 0;
  bool alibi = false;
  int64_t pad = 0;  // extra columns of qkv's and out's rows
};

// Bound (see the top): the scores differ by delta <= 2 gamma_D scale max_ij sum_d |q_d k_d| plus
// the rounding of the ALiBi term and of the scaling (2 u |s|); exp adds < 5e-7 relative on the
// two sides together. A softmax whose scores move by at most delta moves each p_ij by a factor
// within exp(+-2 delta), so out moves by <= ~2 (delta + 5e-7) max|v|; the weighted sum of T
// terms and the normalization add 2 gamma_{T+2} max|v|.
double attention_bound(const AttentionCase& c, const Mat& qkv, float scale, const std::vector<float>& slopes) {
  const int64_t T = qkv.rows, H = c.H, KV = c.KV, D = c.D;
  double qk = 0, vmax = 0, smax = 0;
  for (int64_t i = 0; i < T; ++i)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / KV);
      const float* q = qkv.host.data() + i * qkv.ld + h * D;
      for (int64_t j = 0; j <= i; ++j) {
        const float* k = qkv.host.data() + j * qkv.ld + (H + g) * D;
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += std::abs(double(q[d]) * k[d]);
        qk = std::max(qk, s);
        smax = std::max(smax, scale * s + (slopes.empty() ? 0.0 : std::abs(slopes[size_t(h)]) * double(i - j)));
      }
    }
  for (int64_t j = 0; j < T; ++j)
    for (int64_t d = 0; d < KV * D; ++d)
      vmax = std::max(vmax, double(std::abs(qkv.host[size_t(j * qkv.ld + (H + KV) * D + d)])));
  const double delta = 2.0 * gamma(D) * scale * qk + 4.0 * kU * smax;
  return 2.0 * (delta + 5e-7) * vmax + 2.0 * gamma(T + 2) * vmax;
}

void run_attention(const AttentionCase& c) {
  const int64_t T = std::accumulate(c.docs.begin(), c.docs.end(), int64_t(0));
  const int64_t cols = (c.H + 2 * c.KV) * c.D;
  std::mt19937 rng(uint32_t(100 + c.D + T));
  Mat qkv(T, cols, cols + c.pad, rng, 1.f);
  const Ints starts(doc_starts(c.docs));
  const std::vector<float> slopes = c.alibi ? model::alibi_slopes(c.H, 8.0) : std::vector<float>();
  model::AttentionShape s;
  s.heads = c.H, s.kv_heads = c.KV, s.head_dim = c.D;
  s.scale = float(1.0 / std::sqrt(double(c.D)));
  s.sliding_window = c.window;
  s.alibi = slopes;  // host data on both backends (the GPU's uploads it)
  Pair out(T, c.H * c.D, c.H * c.D + c.pad, 31);
  cpu().causal_attention(qkv.h(), starts.h(), s, out.ref.h());
  gpu().causal_attention(qkv.d(), starts.d(), s, out.got.d());
  expect_close("causal_attention " + c.name, out.ref, out.got, attention_bound(c, qkv, s.scale, slopes));
}

TEST(CudaBackend, AttentionGqaDocumentsWindowAlibi) {
  SKIP_WITHOUT_GPU();
  const AttentionCase cases[] = {
      {"GQA 4/2, three documents, strided", 4, 2, 16, {13, 17, 18}, 0, false, 5},
      {"GQA 4/2, sliding window 7, two documents", 4, 2, 16, {25, 30}, 7, false, 0},
      {"ALiBi, 4 heads, two documents", 4, 4, 32, {20, 21}, 0, true, 3},
      {"ALiBi + window 5, 3 heads", 3, 3, 8, {9, 3, 11}, 5, true, 0},
      {"one document of 64, GQA 2/1, head_dim 64", 2, 1, 64, {64}, 0, false, 0},
      {"head_dim 80 (not a multiple of 32), GQA 4/2", 4, 2, 80, {10, 9}, 0, false, 2},
      {"head_dim 128", 2, 2, 128, {17}, 0, false, 0},
      {"head_dim 256 (more shared memory), one token documents", 1, 1, 256, {1, 1, 3}, 0, false, 1},
  };
  for (const AttentionCase& c : cases) run_attention(c);
}

}  // namespace
}  // namespace fusellm
