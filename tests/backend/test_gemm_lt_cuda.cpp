// The cuBLASLt GEMMs (kernels/cuda/gemm_lt.cu: forward, backward_input, backward_weight) against
// a float64 CPU reference computed on the same bf16 inputs, on fresh seeded random inputs (about
// N(0, 1), rounded to bf16; never zeros):
//   - the ~1B Llama's shapes at T = 2048 (x [2048, 2048], N = 5632, 6144, 11264, 32000), a decode
//     step (M = 1), odd M (3, 17), K and N multiples of 8 but not of 16 (24, 40, 136), N and K not
//     multiples of 8 (12, 20) in views padded to an aligned ld, views with ld > cols, pointers
//     16-byte but not 256-byte aligned;
//   - accumulate (beta 1) against the reference plus the output's prior contents (random);
//   - the bias epilogue, with fp32 and with bf16 outputs;
//   - the steady state makes no heuristic query; a misaligned call is refused with a message
//     naming the call and its shapes, and leaves the output alone.
// Every output element is poisoned (NaN) before the call (or holds random prior contents when
// accumulating, NaN in the padding) and checked after it: no NaN may remain, the padding must keep
// its poison bit for bit. Inputs' padding holds NaN too, so a read of it would show.
//
// Error: ||out - ref|| / ||ref|| (float64) over every element when the product has at most 4e7
// multiply-adds, else over 6 whole rows and 6 whole columns (first, last, 4 random): computing all
// of a 2048 x 32000 x 2048 product in float64 on the CPU would take minutes.
// Bounds. fp32 output: the products of bf16 values are exact in fp32, so only the accumulation
// rounds. Tensor cores add a block of products into the accumulator with its alignment truncated
// and the sum rounded toward zero (Fasi, Higham, Mikaitis, Pranesh 2021), so the error is biased
// and grows with the sum's length P rather than its square root; a float64 model of that (blocks of
// 8, 3 guard bits, RZ) gave 3.6e-6, 1.2e-5 and 7.9e-5 at P = 2048, 5632 and 32000 on such inputs,
// so the bound is 1e-5 max(1, P / 2048): 1e-5 up to P = 2048, 1.6e-4 at P = 32000, still 10x under
// what a single rounding of the output to bf16 costs (about 1.1e-3). bf16 output: 1e-2 (that one
// rounding of each element, relative error at most 2^-9). Each check prints its error.
// Skips, saying why, when the machine has no usable CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/gemm_lt.hpp"
#include "cuda/stream.hpp"
#include "cuda_skip.hpp"
#include "error_of.hpp"

namespace fusellm {
namespace {

using bf16 = __nv_bfloat16;
using cuda::dev_alloc;
using cuda::DevPtr;
using cuda::LtGemm;
using cuda::LtIn;
using cuda::LtMat;

enum class Op { forward, backward_input, backward_weight };
const char* op_name(Op op) {
  return op == Op::forward ? "forward" : op == Op::backward_input ? "backward_input" : "backward_weight";
}

// normal(): the sum of four 16-bit uniforms, centred and scaled to unit variance.
struct Rng {
  std::mt19937_64 bits;
  explicit Rng(uint64_t seed) : bits(seed) {}
  float normal() {
    const uint64_t u = bits();
    const float sum = float(u & 0xffff) + float((u >> 16) & 0xffff) + float((u >> 32) & 0xffff) + float(u >> 48);
    return (sum / 65536.f - 2.f) * 1.7320508f;
  }
  int64_t below(int64_t n) { return int64_t(bits() % uint64_t(n)); }
};

float to_f(float x) { return x; }
float to_f(bf16 x) { return __bfloat162float(x); }
template <class T>
T from_f(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return __float2bfloat16_rn(x);
}
template <class T>
T poison() {
  return from_f<T>(std::nanf(""));
}
template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// A row-major host matrix; the ld - cols elements at the end of each row are its padding.
template <class T>
struct Host {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<T> v;
  T& at(int64_t r, int64_t c) { return v[size_t(r * ld + c)]; }
  T at(int64_t r, int64_t c) const { return v[size_t(r * ld + c)]; }
};

// Random values in [rows, cols] (or all poison), poison in the padding; ld = cols rounded up to a
// multiple of 8 (16 bytes of bf16, 32 of fp32), plus pad.
template <class T>
Host<T> make_host(int64_t rows, int64_t cols, int64_t pad, Rng* rng) {
  Host<T> m{rows, cols, (cols + 7) / 8 * 8 + pad, {}};
  m.v.assign(size_t(std::max<int64_t>(rows * m.ld, 1)), poison<T>());
  if (rng)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) m.at(r, c) = from_f<T>(rng->normal());
  return m;
}

// The matrix as dense floats, [rows, cols] or transposed to [cols, rows] (in 64 x 64 tiles: the
// transposes of 32000 x 2048 matrices would otherwise miss the cache on every element).
std::vector<float> dense(const Host<bf16>& m, bool transposed) {
  std::vector<float> d(size_t(m.rows * m.cols));
  for (int64_t r0 = 0; r0 < m.rows; r0 += 64)
    for (int64_t c0 = 0; c0 < m.cols; c0 += 64)
      for (int64_t r = r0; r < std::min(r0 + 64, m.rows); ++r)
        for (int64_t c = c0; c < std::min(c0 + 64, m.cols); ++c)
          d[size_t(transposed ? c * m.rows + r : r * m.cols + c)] = to_f(m.at(r, c));
  return d;
}

// Device copies; `shift` bytes past a 256-byte aligned allocation (16: aligned to 16 bytes only).
template <class T>
struct Dev {
  DevPtr<char> mem;
  T* p = nullptr;
};
template <class T>
Dev<T> upload(const std::vector<T>& h, int64_t shift) {
  Dev<T> d{dev_alloc<char>(h.size() * sizeof(T) + size_t(shift)), nullptr};
  d.p = reinterpret_cast<T*>(d.mem.get() + shift);
  FUSELLM_CUDA_CHECK(cudaMemcpy(d.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

struct Case {
  Op op = Op::forward;
  int64_t M = 0, N = 0, K = 0;  // the layer's: x [M, K], W [N, K], y and dy [M, N]
  bool bf16_out = false, accumulate = false, bias = false;
  int64_t pad = 0;     // elements added to every ld
  int64_t shift = 0;   // bytes every device pointer sits past a 256-byte boundary
  uint64_t seed = 1;
  std::string label() const {
    return std::string(op_name(op)) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" +
           std::to_string(K) + (bf16_out ? " bf16-out" : " fp32-out") + (accumulate ? " accumulate" : "") +
           (bias ? " bias" : "") + (pad ? " pad=" + std::to_string(pad) : "") +
           (shift ? " shift=" + std::to_string(shift) : "");
  }
};

// The operation's operands: inputs a [ar, ac] and b [br, bc], output [orows, ocols], sum length P.
struct Dims {
  int64_t ar, ac, br, bc, orows, ocols, P;
};
Dims dims(const Case& c) {
  if (c.op == Op::forward) return {c.M, c.K, c.N, c.K, c.M, c.N, c.K};                // x, W -> y
  if (c.op == Op::backward_input) return {c.M, c.N, c.N, c.K, c.M, c.K, c.N};         // dy, W -> dx
  return {c.M, c.N, c.M, c.K, c.N, c.K, c.M};                                         // dy, x -> dW
}

double bound(const Case& c) { return c.bf16_out ? 1e-2 : 1e-5 * std::max(1.0, double(dims(c).P) / 2048.0); }

struct Inputs {
  Host<bf16> a, b;
  std::vector<float> bias;
};

Inputs make_inputs(const Case& c, Rng& rng) {
  const Dims d = dims(c);
  Inputs in{make_host<bf16>(d.ar, d.ac, c.pad, &rng), make_host<bf16>(d.br, d.bc, c.pad, &rng), {}};
  if (c.bias)
    for (int64_t j = 0; j < d.ocols; ++j) in.bias.push_back(rng.normal());
  return in;
}

// out [I, J] = A [I, P] Bt [J, P]^T in float64: the operation rewritten over dense row-major copies.
struct Reference {
  std::vector<float> a, bt;
  int64_t P;
  double at(int64_t i, int64_t j) const {
    const float* x = a.data() + i * P;
    const float* y = bt.data() + j * P;
    double s = 0.0;
    for (int64_t p = 0; p < P; ++p) s += double(x[p]) * double(y[p]);
    return s;
  }
};
Reference reference(const Case& c, const Inputs& in) {
  if (c.op == Op::forward) return {dense(in.a, false), dense(in.b, false), c.K};       // x, W
  if (c.op == Op::backward_input) return {dense(in.a, false), dense(in.b, true), c.N};  // dy, W^T
  return {dense(in.a, true), dense(in.b, true), c.M};                                  // dy^T, x^T
}

// Runs the case's operation on the GPU over `prior` (the output's contents before the call).
template <class O>
Host<O> run_gpu(LtGemm& g, const Case& c, const Inputs& in, const Host<O>& prior, cudaStream_t s) {
  const auto a = upload(in.a.v, c.shift), b = upload(in.b.v, c.shift);
  const auto bias = upload(in.bias.empty() ? std::vector<float>(4) : in.bias, c.shift);
  auto o = upload(prior.v, c.shift);
  FUSELLM_CUDA_CHECK(cudaDeviceSynchronize());  // the copies ran on the legacy stream
  const LtIn ai{a.p, in.a.rows, in.a.cols, in.a.ld}, bi{b.p, in.b.rows, in.b.cols, in.b.ld};
  const LtMat<O> out{o.p, prior.rows, prior.cols, prior.ld};
  if (c.op == Op::forward) {
    g.forward(ai, bi, c.bias ? bias.p : nullptr, out, c.accumulate, s);
  } else if constexpr (std::is_same_v<O, float>) {
    if (c.op == Op::backward_input) g.backward_input(ai, bi, out, c.accumulate, s);
    else g.backward_weight(ai, bi, out, s);
  } else {
    ADD_FAILURE() << c.label() << ": the backward operations have fp32 outputs only";
  }
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  Host<O> got = prior;
  FUSELLM_CUDA_CHECK(cudaMemcpy(got.v.data(), o.p, got.v.size() * sizeof(O), cudaMemcpyDeviceToHost));
  return got;
}

// Which rows and columns the error covers: all of them, or first, last and 4 random of each.
std::vector<int64_t> sample(int64_t n, bool all, Rng& rng) {
  std::vector<int64_t> s;
  if (all || n <= 6) {
    for (int64_t i = 0; i < n; ++i) s.push_back(i);
    return s;
  }
  s = {0, n - 1, rng.below(n), rng.below(n), rng.below(n), rng.below(n)};
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

struct Outcome {
  double err2 = 0, ref2 = 0;
  int64_t checked = 0, nan = 0, padding = 0;
};

// Every element written (no NaN), the padding untouched, and the error over the sampled elements.
template <class O>
Outcome compare(const Case& c, const Inputs& in, const Host<O>& prior, const Host<O>& got, Rng& rng) {
  Outcome r;
  for (int64_t i = 0; i < got.rows; ++i)
    for (int64_t j = 0; j < got.ld; ++j) {
      if (j >= got.cols) r.padding += !same_bits(got.at(i, j), prior.at(i, j));
      else r.nan += std::isnan(to_f(got.at(i, j)));
    }
  const Reference ref = reference(c, in);
  const bool all = double(got.rows) * double(got.cols) * double(ref.P) <= 4e7;
  auto add = [&](int64_t i, int64_t j) {
    double want = ref.at(i, j) + (c.bias ? double(in.bias[size_t(j)]) : 0.0);
    if (c.accumulate || c.op == Op::backward_weight) want += double(to_f(prior.at(i, j)));
    const double d = double(to_f(got.at(i, j))) - want;
    r.err2 += d * d, r.ref2 += want * want, ++r.checked;
  };
  const std::vector<int64_t> rows = sample(got.rows, all, rng), cols = sample(got.cols, all, rng);
  for (int64_t i : rows)
    for (int64_t j = 0; j < got.cols; ++j) add(i, j);
  if (!all)
    for (int64_t j : cols)
      for (int64_t i = 0; i < got.rows; ++i) add(i, j);
  return r;
}

template <class O>
void check_case(LtGemm& g, const Case& c, cudaStream_t s) {
  Rng rng(c.seed * 7919 + uint64_t(c.M * 31 + c.N * 17 + c.K));
  const Inputs in = make_inputs(c, rng);
  const Dims d = dims(c);
  const bool prior_values = c.accumulate || c.op == Op::backward_weight;
  const Host<O> prior = make_host<O>(d.orows, d.ocols, c.pad, prior_values ? &rng : nullptr);
  const Host<O> got = run_gpu(g, c, in, prior, s);
  const Outcome r = compare(c, in, prior, got, rng);
  const double err = std::sqrt(r.err2 / r.ref2);
  std::printf("    %-70s rel err %.3e (bound %.1e) over %lld elements\n", c.label().c_str(), err, bound(c),
              (long long)r.checked);
  EXPECT_EQ(r.nan, 0) << c.label() << ": elements not written (still NaN) or NaN results";
  EXPECT_EQ(r.padding, 0) << c.label() << ": elements of the padding (columns ld - cols) changed";
  EXPECT_GT(r.checked, 0) << c.label();
  EXPECT_LE(err, bound(c)) << c.label();
}

void check(LtGemm& g, const Case& c, cudaStream_t s) {
  SCOPED_TRACE(c.label());
  if (c.bf16_out) check_case<bf16>(g, c, s);
  else check_case<float>(g, c, s);
}

Case make(Op op, int64_t M, int64_t N, int64_t K) {
  Case c;
  c.op = op, c.M = M, c.N = N, c.K = K;
  return c;
}
template <class F>
Case with(Case c, F&& f) {
  f(c);
  return c;
}

TEST(GemmLtCuda, ForwardAtTheModelShapes) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  for (int64_t N : {5632, 6144, 32000}) check(g, make(Op::forward, 2048, N, 2048), s);
  check(g, make(Op::forward, 2048, 2048, 5632), s);  // down: K = 5632
  check(g, with(make(Op::forward, 2048, 6144, 2048), [](Case& c) { c.bf16_out = true; }), s);
}

TEST(GemmLtCuda, ForwardAccumulatesIntoTheResidualStream) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  check(g, with(make(Op::forward, 2048, 2048, 2048), [](Case& c) { c.accumulate = true; }), s);
  check(g, with(make(Op::forward, 64, 40, 24), [](Case& c) { c.accumulate = c.bf16_out = true; }), s);
}

TEST(GemmLtCuda, ForwardBiasEpilogue) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  check(g, with(make(Op::forward, 512, 6144, 2048), [](Case& c) { c.bias = true; }), s);
  check(g, with(make(Op::forward, 17, 40, 24), [](Case& c) { c.bias = c.accumulate = true; }), s);
}

// Apart from the fp32 case: that cuBLASLt takes an fp32 bias with a bf16 output is to be confirmed.
TEST(GemmLtCuda, ForwardBiasEpilogueBf16Output) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  check(g, with(make(Op::forward, 256, 6144, 2048), [](Case& c) { c.bias = c.bf16_out = true; }), s);
  check(g, with(make(Op::forward, 3, 24, 40), [](Case& c) { c.bias = c.bf16_out = c.accumulate = true; }), s);
}

TEST(GemmLtCuda, BackwardInput) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  check(g, make(Op::backward_input, 2048, 32000, 2048), s);  // through the head: a sum of 32000 terms
  check(g, with(make(Op::backward_input, 2048, 11264, 2048), [](Case& c) { c.accumulate = true; }), s);
}

TEST(GemmLtCuda, BackwardWeight) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  check(g, make(Op::backward_weight, 2048, 5632, 2048), s);
  check(g, make(Op::backward_weight, 2048, 32000, 2048), s);
}

// A decode step (M = 1), odd M, K and N multiples of 8 but not 16, N and K not multiples of 8,
// padded views and 16-byte-only alignment, through all three operations.
TEST(GemmLtCuda, SmallAndOddShapes) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  const int64_t shapes[][3] = {{1, 6144, 2048}, {1, 24, 40}, {3, 40, 24}, {17, 24, 136}, {64, 12, 20}, {5, 136, 40}};
  for (Op op : {Op::forward, Op::backward_input, Op::backward_weight})
    for (const auto& m : shapes) {
      check(g, make(op, m[0], m[1], m[2]), s);
      check(g, with(make(op, m[0], m[1], m[2]), [](Case& c) { c.pad = 8, c.shift = 16, c.seed = 2; }), s);
    }
  check(g, with(make(Op::forward, 17, 12, 20), [](Case& c) { c.bf16_out = c.bias = true, c.pad = 8; }), s);
}

// The same shape again makes no heuristic query; a new shape, or new pointer alignment, does one.
TEST(GemmLtCuda, SteadyStateReusesPlans) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  const Case a = make(Op::forward, 64, 40, 24), b = make(Op::backward_weight, 64, 40, 24);
  check(g, a, s);
  EXPECT_EQ(g.heuristic_queries(), 1);
  check(g, a, s);
  check(g, with(a, [](Case& c) { c.seed = 3; }), s);
  EXPECT_EQ(g.heuristic_queries(), 1);
  check(g, b, s);
  check(g, b, s);
  EXPECT_EQ(g.heuristic_queries(), 2);
  check(g, with(a, [](Case& c) { c.shift = 16; }), s);
  EXPECT_EQ(g.heuristic_queries(), 3);
  EXPECT_EQ(g.plans(), 3);
}

// Misaligned pointers and leading dimensions, disagreeing shapes and an empty sum are refused,
// before anything is enqueued: the output keeps its contents.
TEST(GemmLtCuda, RefusesWhatItCannotCompute) {
  SKIP_WITHOUT_GPU();
  LtGemm g;
  cuda::Stream s;
  auto x = dev_alloc<bf16>(64 * 40), w = dev_alloc<bf16>(64 * 40);
  std::vector<float> sentinel(64 * 72, 1.5f);
  auto y = cuda::to_device(sentinel);
  auto b = dev_alloc<float>(72);
  const LtIn x24{x.get(), 64, 24, 24}, w24{w.get(), 40, 24, 24};
  const LtMat<float> y40{y.get(), 64, 40, 40};
  using testing::expect_error;
  expect_error([&] { g.forward({x.get() + 1, 64, 24, 24}, w24, nullptr, y40, false, s); },
               {"LtGemm::forward(x [64, 24] ld 24 bf16, W [40, 24] ld 24 bf16, y [64, 40] ld 40 fp32)",
                "x at", "not 16-byte aligned"});
  expect_error([&] { g.forward({x.get(), 64, 24, 28}, w24, nullptr, y40, false, s); },
               {"x's leading dimension 28 is not a multiple of 8 elements"});
  expect_error([&] { g.forward(x24, w24, nullptr, LtMat<float>{y.get(), 64, 40, 42}, false, s); },
               {"y's leading dimension 42 is not a multiple of 4 elements"});
  expect_error([&] { g.forward(x24, w24, b.get() + 1, y40, false, s); }, {"bias", "not 16-byte aligned"});
  expect_error([&] { g.forward(x24, LtIn{w.get(), 40, 16, 16}, nullptr, y40, false, s); },
               {"shapes do not agree"});
  const LtMat<float> dx{y.get(), 64, 24, 24};
  expect_error([&] { g.backward_input({x.get(), 64, 40, 40}, LtIn{w.get(), 40, 24, 20}, dx, false, s); },
               {"LtGemm::backward_input", "W's leading dimension 20 is below its 24 columns"});
  expect_error([&] { g.forward({x.get(), 64, 0, 8}, {w.get(), 40, 0, 8}, nullptr, y40, false, s); },
               {"a sum over no terms"});
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  EXPECT_EQ(cuda::to_host(y.get(), sentinel.size()), sentinel);
  EXPECT_EQ(g.heuristic_queries(), 0);
}

}  // namespace
}  // namespace fusellm
