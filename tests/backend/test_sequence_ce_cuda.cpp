// Source scores on the GPU (kernels/cuda/sequence_ce.cu) against the Kokkos CPU path
// (kernels/kokkos/sequence_ce.hpp's sequence_ce on Kokkos::DefaultHostExecutionSpace): seeded
// random logits (small and large magnitudes, V from 1 to 4099), padding positions (gold -1),
// several segments including empty ones and ones of length 1, N = 1, N = 0; and the errors, which
// must be the CPU's messages, naming the source and the position.
//
// Bounds: the CPU sums exp(z - max) with its own exp polynomial (relative error < 1e-7) in 32
// sequential lanes, the GPU with expf (2 ulp) in a 128-thread tree, so the two sums of V terms
// differ by at most ~V * 2^-24 relative (a few 1e-7 in practice for these V), and lse = max + log(sum)
// by that much absolute, plus an ulp of lse. Per-position CEs are therefore held to 1e-5 of the
// largest |CE| of the call (>= log V, or an absolute 1e-5 when that is smaller), the per-segment
// double sums of those CEs to 1e-5 of the largest |sum|; counts must be equal.
// Skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/sequence_ce.cuh"
#include "cuda_skip.hpp"
#include "error_of.hpp"
#include "fusellm/core/error.hpp"
#include "kokkos/sequence_ce.hpp"

namespace fusellm {
namespace {

using cuda::to_device;
using cuda::to_host;
using testing::expect_error;
using Host = Kokkos::DefaultHostExecutionSpace;
using HM = Host::memory_space;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct CE {
  std::vector<float> pos;
  std::vector<double> sum;
  std::vector<int64_t> count;
};

struct Input {
  std::vector<float> z;  // [N, V]
  int64_t N = 0, V = 0;
  std::vector<int32_t> gold;
  std::vector<int64_t> off;
};

CE cpu_ce(const Input& in, const std::string& source = "src") {
  Kokkos::View<float**, Kokkos::LayoutRight, HM> z("z", in.N, in.V);
  for (int64_t i = 0; i < in.N * in.V; ++i) z.data()[i] = in.z[size_t(i)];
  Kokkos::View<int32_t*, HM> g("g", in.gold.size());
  for (size_t i = 0; i < in.gold.size(); ++i) g(i) = in.gold[i];
  Kokkos::View<int64_t*, HM> o("o", in.off.size());
  for (size_t i = 0; i < in.off.size(); ++i) o(i) = in.off[i];
  auto r = kernels::sequence_ce(Host(), Kokkos::View<const float**, Kokkos::LayoutRight, HM>(z),
                                Kokkos::View<const int32_t*, HM>(g),
                                Kokkos::View<const int64_t*, HM>(o), source);
  CE c;
  c.pos.assign(r.ce_position.data(), r.ce_position.data() + r.ce_position.extent(0));
  c.sum.assign(r.ce_sum.data(), r.ce_sum.data() + r.ce_sum.extent(0));
  c.count.assign(r.count.data(), r.count.data() + r.count.extent(0));
  return c;
}

constexpr float kPoison = 1e30f;

// Outputs poisoned; downloaded also when sequence_ce throws (then rethrown), so tests can see what
// was written.
CE gpu_ce(const Input& in, const std::string& source = "src", CE* after_error = nullptr) {
  const int64_t D = int64_t(in.off.size()) - 1;
  auto dz = to_device(in.z);
  auto dg = to_device(in.gold);
  auto doff = to_device(in.off);
  auto dpos = to_device(std::vector<float>(size_t(in.N), kPoison));
  auto dsum = to_device(std::vector<double>(size_t(std::max<int64_t>(D, 0)), double(kPoison)));
  auto dcnt = to_device(std::vector<int64_t>(size_t(std::max<int64_t>(D, 0)), -7));
  std::string err;
  try {
    cuda::sequence_ce(dz.get(), in.N, in.V, dg.get(), doff.get(), D, dpos.get(), dsum.get(),
                      dcnt.get(), source);
  } catch (const Error& e) {
    err = e.what();
  }
  CE c;
  c.pos = to_host(dpos.get(), size_t(in.N));
  c.sum = to_host(dsum.get(), size_t(std::max<int64_t>(D, 0)));
  c.count = to_host(dcnt.get(), size_t(std::max<int64_t>(D, 0)));
  if (!err.empty()) {
    if (after_error) *after_error = c;
    throw Error(err);
  }
  return c;
}

// zmax: the largest finite |logit|. lse = max + log(sum) and ce = lse - z_g are rounded at the
// logits' magnitude, so where that is large (shifted rows) the two paths may also differ by an ulp
// of each: 2 * 2^-23 * zmax more.
void compare(const CE& g, const CE& c, float zmax, const std::string& what) {
  ASSERT_EQ(g.pos.size(), c.pos.size()) << what;
  double scale = 1.0;  // CEs are >= 0; an absolute 1e-5 floor for tiny ones
  for (float x : c.pos) scale = std::max(scale, double(std::fabs(x)));
  const double tol = 1e-5 * scale + 2.0 * std::ldexp(double(zmax), -23);
  double worst = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < g.pos.size(); ++i) {
    const double err = std::fabs(double(g.pos[i]) - double(c.pos[i]));
    worst = std::max(worst, err / scale);
    if (!(err <= tol) && bad++ < 5)
      ADD_FAILURE() << what << ": ce at position " << i << ": " << g.pos[i] << ", CPU " << c.pos[i];
  }
  EXPECT_EQ(g.count, c.count) << what;
  ASSERT_EQ(g.sum.size(), c.sum.size()) << what;
  double sscale = 1.0, sworst = 0.0;
  for (double x : c.sum) sscale = std::max(sscale, std::fabs(x));
  const double stol = 1e-5 * sscale + double(g.pos.size()) * 2.0 * std::ldexp(double(zmax), -23);
  for (size_t d = 0; d < g.sum.size(); ++d) {
    const double err = std::fabs(g.sum[d] - c.sum[d]);
    sworst = std::max(sworst, err / sscale);
    if (!(err <= stol) && bad++ < 10)
      ADD_FAILURE() << what << ": ce_sum of segment " << d << ": " << g.sum[d] << ", CPU " << c.sum[d];
  }
  std::printf("    %-40s max rel err ce=%.3e sum=%.3e%s\n", what.c_str(), worst, sworst,
              bad ? "  FAILED" : "");
}

// Offsets with an empty segment first and one of length 1 when N allows, the rest random.
std::vector<int64_t> offsets(std::mt19937& rng, int64_t N, int64_t D) {
  std::vector<int64_t> cut{0, 0};
  if (N >= 1 && D >= 3) cut.push_back(1);
  while (int64_t(cut.size()) < D) cut.push_back(int64_t(rng() % uint32_t(N + 1)));
  std::sort(cut.begin(), cut.end());
  cut.resize(size_t(D));
  cut.push_back(N);
  cut[0] = 0;
  return cut;
}

Input random_input(std::mt19937& rng, int64_t N, int64_t V, int64_t D, float scale, float shift = 0.f) {
  Input in;
  in.N = N;
  in.V = V;
  std::normal_distribution<float> nd(0.f, scale);
  in.z.resize(size_t(N * V));
  for (auto& x : in.z) x = nd(rng) + shift;
  for (int64_t i = 0; i < N; ++i) in.gold.push_back(rng() % 5 == 0 ? -1 : int32_t(rng() % uint32_t(V)));
  in.off = offsets(rng, N, D);
  return in;
}

void check(const Input& in, const std::string& what) {
  float zmax = 0.f;
  for (float x : in.z)
    if (std::isfinite(x)) zmax = std::max(zmax, std::fabs(x));
  compare(gpu_ce(in), cpu_ce(in), zmax,
          what + " N=" + std::to_string(in.N) + " V=" + std::to_string(in.V));
}

TEST(CudaSequenceCE, RandomLogitsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(51);
  for (int64_t V : {1, 2, 7, 127, 1000, 4099})
    for (float scale : {1.f, 8.f}) {
      check(random_input(rng, 37, V, 5, scale), "normal scale=" + std::to_string(int(scale)));
    }
  check(random_input(rng, 11, 333, 2, 3.f, -1e4f), "shifted -1e4");
  check(random_input(rng, 11, 333, 3, 3.f, 5e3f), "shifted +5e3");
}

TEST(CudaSequenceCE, EdgeShapes) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(52);
  check(random_input(rng, 1, 50, 1, 2.f), "one row");
  Input pad = random_input(rng, 9, 20, 3, 2.f);
  for (auto& g : pad.gold) g = -1;  // nothing scored: CE 0, counts 0
  check(pad, "all padding");
  Input one = random_input(rng, 20, 31, 20, 2.f);  // many segments, most of length 0 or 1
  check(one, "20 segments");
  Input empty;
  empty.off = {0};
  check(empty, "empty, no segments");
  empty.off = {0, 0, 0};
  check(empty, "empty, 2 segments");
  // -Inf logits (not the gold one) are allowed: they add nothing to the sum.
  Input ninf = random_input(rng, 6, 40, 2, 2.f);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t v = 0; v < 40; v += 3)
      if (ninf.gold[size_t(i)] != int32_t(v)) ninf.z[size_t(i * 40 + v)] = -kInf;
  check(ninf, "-Inf logits");
}

void expect_same_error(const Input& in, const std::vector<std::string>& parts, const std::string& src = "src") {
  const std::string cpu = testing::error_of([&] { cpu_ce(in, src); });
  expect_error([&] { gpu_ce(in, src); }, parts);
  EXPECT_EQ(testing::error_of([&] { gpu_ce(in, src); }), cpu);
}

TEST(CudaSequenceCE, ErrorsNameSourceAndPosition) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(53);
  const Input base = random_input(rng, 8, 300, 3, 1.f);
  auto scored = [&](Input& in, int64_t i) {
    if (in.gold[size_t(i)] < 0) in.gold[size_t(i)] = 7;
  };
  {
    Input in = base;
    scored(in, 4);
    scored(in, 6);
    in.z[size_t(4 * 300 + 123)] = kNaN;
    in.z[size_t(6 * 300 + 5)] = kInf;
    expect_same_error(in, {"source 'llama'", "non-finite logit at position 4", "logit[4, 123] = nan"},
                      "llama");
    in.z[size_t(4 * 300 + 123)] = 0.f;
    expect_same_error(in, {"position 6", "logit[6, 5] = inf"});
  }
  {
    Input in = base;
    scored(in, 2);
    for (int64_t v = 0; v < 300; ++v) in.z[size_t(2 * 300 + v)] = -kInf;  // all -Inf: lse = -Inf
    expect_same_error(in, {"non-finite logit at position 2", "logit[2, 0] = -inf"});
  }
  {
    Input in = base;
    scored(in, 5);
    in.z[size_t(5 * 300 + in.gold[5])] = -kInf;  // the gold logit: CE = +Inf
    expect_same_error(in, {"cross-entropy at position 5 is not finite"});
  }
  {
    Input in = base;
    in.gold[3] = 300;  // == V
    in.gold[6] = 1000;
    scored(in, 1);
    in.z[size_t(1 * 300)] = kNaN;  // the gold check comes first, as on the CPU
    expect_same_error(in, {"gold id 300 at position 3", "outside the vocabulary [0, 300)"});
    // ... and leaves every output unwritten.
    CE after;
    EXPECT_NE(testing::error_of([&] { gpu_ce(in, "src", &after); }), "");
    for (float x : after.pos) EXPECT_EQ(x, kPoison);
    for (double x : after.sum) EXPECT_EQ(x, double(kPoison));
    for (int64_t x : after.count) EXPECT_EQ(x, -7);
  }
  {
    Input in = base;
    in.off = {0, 5, 7};
    expect_same_error(in, {"offsets must run from 0 to N = 8", "got 0 .. 7"});
    in.off = {1, 5, 8};
    expect_same_error(in, {"got 1 .. 8"});
    in.off = {0, 5, 3, 8};
    in.gold[0] = 300;  // offsets come before gold ids
    expect_same_error(in, {"offsets decrease at segment 1 (5 > 3)"});
  }
}

}  // namespace
}  // namespace fusellm
