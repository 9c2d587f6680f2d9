// Fused classifier on the GPU (kernels/cuda/fused_classifier.cu) against the Kokkos CPU path
// (kernels/kokkos/fused_classifier.hpp on Kokkos::DefaultHostExecutionSpace), on fresh random
// inputs and edge cases (padding rows, empty target rows, k larger than useful, repeated ids, V not
// a multiple of 4 or 8, rows of one chunk and of several, -Inf logits, T = 1, V = 1, unaligned
// rows, a k that needs opt-in shared memory), and the errors. fp32 logits: losses, per-position
// terms and gradients within 1e-5 relative; bf16 logits: within 1e-2 relative of the CPU run on
// the bf16-rounded logits. Each comparison prints its largest errors.
// Skips, saying why, when the machine has no usable CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda_skip.hpp"
#include "error_of.hpp"
#include "cuda/fused_classifier.cuh"
#include "fusellm/core/error.hpp"
#include "kokkos/fused_classifier.hpp"

namespace fusellm {
namespace {

// ---- device buffers (RAII) --------------------------------------------------------------------------
using cuda::DevPtr;
using cuda::dev_alloc;
using cuda::to_device;
using cuda::to_host;

float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

// ---- problems ----------------------------------------------------------------------------------------
struct Problem {
  int64_t T = 0, V = 0, k = 0;
  std::vector<float> z;
  std::vector<int32_t> gold, ids;
  std::vector<float> probs;
};

Problem bf16_rounded(Problem p) {
  for (auto& x : p.z) x = bf16_round(x);
  return p;
}

// Logits ~ N(0, scale); 20% padding; each row keeps 1..k distinct ids (the rest -1) with mass in
// [0.3, 1]; sometimes the gold id among them.
Problem random_problem(std::mt19937& rng, int64_t T, int64_t V, int64_t k, double scale) {
  Problem p;
  p.T = T;
  p.V = V;
  p.k = k;
  std::normal_distribution<float> nd(0.f, float(scale));
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  p.z.resize(size_t(T * V));
  for (auto& x : p.z) x = nd(rng);
  for (int64_t i = 0; i < T; ++i) {
    const int32_t g = ud(rng) < 0.2f ? -100 : int32_t(rng() % uint32_t(V));
    p.gold.push_back(g);
    const int64_t n = k == 0 ? 0 : 1 + int64_t(rng() % uint32_t(std::min(k, V)));
    std::vector<int32_t> chosen;
    while (int64_t(chosen.size()) < n) {
      const int32_t id = (g >= 0 && ud(rng) < 0.1f) ? g : int32_t(rng() % uint32_t(V));
      if (std::find(chosen.begin(), chosen.end(), id) == chosen.end()) chosen.push_back(id);
    }
    const float mass = 0.3f + 0.7f * ud(rng);
    std::vector<float> w(static_cast<size_t>(n));
    float sw = 0.f;
    for (auto& x : w) sw += (x = ud(rng) + 0.01f);
    std::sort(w.begin(), w.end(), std::greater<>());
    for (int64_t j = 0; j < k; ++j) {
      p.ids.push_back(j < n ? chosen[size_t(j)] : -1);
      p.probs.push_back(j < n ? w[size_t(j)] / sw * mass : 0.f);
    }
  }
  return p;
}

// ---- the two runs --------------------------------------------------------------------------------------
struct Result {
  double loss = 0, clm = 0, fusion = 0;
  int64_t tokens = 0;
  std::vector<float> clm_pos, fus_pos, grad;  // grad: the logits buffer after the call
};

using Host = Kokkos::DefaultHostExecutionSpace;

Result cpu_run(const Problem& p, float lambda, bool mean, bool grad) {
  using M = Host::memory_space;
  Kokkos::View<float**, Kokkos::LayoutRight, M> z("z", p.T, p.V);
  Kokkos::View<int32_t*, M> g("g", p.T);
  SparseRows<M> rows("t", p.T, p.k);
  for (int64_t i = 0; i < p.T; ++i) {
    g(i) = p.gold[size_t(i)];
    for (int64_t v = 0; v < p.V; ++v) z(i, v) = p.z[size_t(i * p.V + v)];
    for (int64_t j = 0; j < p.k; ++j) {
      rows.ids(i, j) = p.ids[size_t(i * p.k + j)];
      rows.probs(i, j) = p.probs[size_t(i * p.k + j)];
    }
  }
  kernels::FusedClassifierParams params;
  params.lambda = lambda;
  params.reduction = mean ? kernels::LossReduction::kMean : kernels::LossReduction::kSum;
  Kokkos::View<const int32_t*, M> cg = g;
  kernels::FusedLoss<M> l;
  if (grad) {
    l = kernels::fused_classifier(Host(), z, cg, rows, params);
  } else {
    Kokkos::View<const float**, Kokkos::LayoutRight, M> cz = z;
    l = kernels::fused_loss(Host(), cz, cg, rows, params);
  }
  Host().fence();
  Result r;
  r.loss = l.loss;
  r.clm = l.clm;
  r.fusion = l.fusion;
  r.tokens = l.tokens;
  for (int64_t i = 0; i < p.T; ++i) {
    r.clm_pos.push_back(l.clm_position(i));
    r.fus_pos.push_back(l.fusion_position(i));
    for (int64_t v = 0; v < p.V; ++v) r.grad.push_back(z(i, v));
  }
  return r;
}

float to_f(float x) { return x; }
float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class E>
E from_f(float x);
template <>
float from_f<float>(float x) {
  return x;
}
template <>
__nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

// The GPU run with logits of type E (float or __nv_bfloat16; bf16 rounds p.z), the logits placed
// `shift` elements past a 256-byte-aligned allocation (unaligned rows when shift % 4 or 8 != 0).
template <class E>
Result gpu_run(const Problem& p, float lambda, bool mean, bool grad, int64_t shift = 0) {
  std::vector<E> hz(size_t(shift) + p.z.size(), from_f<E>(0.f));
  for (size_t i = 0; i < p.z.size(); ++i) hz[size_t(shift) + i] = from_f<E>(p.z[i]);
  auto dz = to_device(hz);
  auto dg = to_device(p.gold);
  auto di = to_device(p.ids);
  auto dp = to_device(p.probs);
  auto dc = dev_alloc<float>(size_t(p.T));
  auto df = dev_alloc<float>(size_t(p.T));
  FUSELLM_CUDA_CHECK(cudaMemset(dc.get(), 0xff, size_t(std::max<int64_t>(p.T, 1)) * 4));  // poison
  FUSELLM_CUDA_CHECK(cudaMemset(df.get(), 0xff, size_t(std::max<int64_t>(p.T, 1)) * 4));
  cuda::FusedTargets t{dg.get(), di.get(), dp.get(), p.k, dc.get(), df.get()};
  cuda::FusedClassifierParams params;
  params.lambda = lambda;
  params.reduction = mean ? cuda::LossReduction::kMean : cuda::LossReduction::kSum;
  E* z = dz.get() + shift;
  const cuda::FusedLossTotals tot = grad ? cuda::fused_classifier(z, p.T, p.V, t, params)
                                         : cuda::fused_loss(static_cast<const E*>(z), p.T, p.V, t, params);
  Result r;
  r.loss = tot.loss;
  r.clm = tot.clm;
  r.fusion = tot.fusion;
  r.tokens = tot.tokens;
  r.clm_pos = to_host(dc.get(), size_t(p.T));
  r.fus_pos = to_host(df.get(), size_t(p.T));
  const auto hg = to_host(dz.get(), hz.size());
  for (size_t i = 0; i < p.z.size(); ++i) r.grad.push_back(to_f(hg[size_t(shift) + i]));
  // The padding in front of the logits is never written.
  for (int64_t i = 0; i < shift; ++i) EXPECT_EQ(to_f(hg[size_t(i)]), 0.f) << "write before the logits";
  return r;
}

// ---- comparison ------------------------------------------------------------------------------------------
// Largest error of `got` against `want`, entrywise relative with an absolute floor of
// floor_frac * max|want| (cancellation at the target ids, q ~ 0 entries); fails past `rel`.
void expect_vec_near(const std::vector<float>& got, const std::vector<float>& want, double rel,
                     double floor_frac, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  // (At least floor_frac * 1e-3: a reference that is all zeros, V = 1, still allows rounding.)
  const double floor = floor_frac * std::max(scale, 1e-3);
  double worst_abs = 0.0, worst_rel = 0.0;
  size_t worst_i = 0, bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    const double r = err / (std::fabs(double(want[i])) + floor + 1e-30);
    if (!(err <= rel * std::fabs(double(want[i])) + rel * floor) || std::isnan(got[i]) != std::isnan(want[i])) {
      if (bad++ < 5)
        ADD_FAILURE() << what << ": entry " << i << " got " << got[i] << " want " << want[i];
    }
    if (r > worst_rel) worst_rel = r, worst_i = i;
    worst_abs = std::max(worst_abs, err);
  }
  std::printf("    %-48s n=%-9zu max|want|=%.3e max abs err=%.3e max rel err=%.3e (at %zu)%s\n",
              what.c_str(), got.size(), scale, worst_abs, worst_rel, worst_i,
              bad ? "  FAILED" : "");
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " entries outside " << rel << " relative";
}

void expect_scalar_near(double got, double want, double rel, const std::string& what) {
  const double err = std::fabs(got - want);
  std::printf("    %-48s got=%.9g want=%.9g rel err=%.3e\n", what.c_str(), got, want,
              err / std::max(std::fabs(want), 1e-30));
  EXPECT_LE(err, rel * std::fabs(want) + 1e-9) << what << ": got " << got << " want " << want;
}

// fp32: 1e-5; bf16: 1e-2 against the CPU on the rounded logits.
void compare(const Result& gpu, const Result& cpu, double rel, double grad_floor, bool grad,
             const std::string& what) {
  EXPECT_EQ(gpu.tokens, cpu.tokens) << what;
  expect_scalar_near(gpu.loss, cpu.loss, rel, what + " loss");
  expect_scalar_near(gpu.clm, cpu.clm, rel, what + " clm");
  expect_scalar_near(gpu.fusion, cpu.fusion, rel, what + " fusion");
  // Per-position terms: CLM_i = lse - z[g] can cancel; floor at rel * the largest term.
  expect_vec_near(gpu.clm_pos, cpu.clm_pos, rel, 1.0, what + " clm_i");
  expect_vec_near(gpu.fus_pos, cpu.fus_pos, rel, 1.0, what + " fusion_i");
  if (grad) expect_vec_near(gpu.grad, cpu.grad, rel, grad_floor, what + " gradient");
}

constexpr double kRel32 = 1e-5, kFloor32 = 1e-1;   // gradient floor: 1e-6 of the largest entry
constexpr double kRel16 = 1e-2, kFloor16 = 1e-2;   // gradient floor: 1e-4 of the largest entry

// fp32 and bf16, gradient and loss only, against the CPU.
void check_problem(const Problem& p, float lambda, bool mean, const std::string& name,
                   int64_t shift32 = 0, int64_t shift16 = 0) {
  std::printf("  %s: T=%ld V=%ld k=%ld lambda=%.2f %s\n", name.c_str(), long(p.T), long(p.V),
              long(p.k), lambda, mean ? "mean" : "sum");
  const Result c32 = cpu_run(p, lambda, mean, true);
  compare(gpu_run<float>(p, lambda, mean, true, shift32), c32, kRel32, kFloor32, true, name + " fp32");
  const Result e32 = gpu_run<float>(p, lambda, mean, false, shift32);
  compare(e32, cpu_run(p, lambda, mean, false), kRel32, kFloor32, false, name + " fp32 loss-only");
  EXPECT_EQ(e32.grad, p.z) << name << ": the loss-only variant wrote the logits";
  const Problem pb = bf16_rounded(p);
  const Result c16 = cpu_run(pb, lambda, mean, true);
  compare(gpu_run<__nv_bfloat16>(p, lambda, mean, true, shift16), c16, kRel16, kFloor16, true,
          name + " bf16");
  const Result e16 = gpu_run<__nv_bfloat16>(p, lambda, mean, false, shift16);
  compare(e16, cpu_run(pb, lambda, mean, false), kRel16, kFloor16, false, name + " bf16 loss-only");
  EXPECT_EQ(e16.grad, pb.z) << name << ": the bf16 loss-only variant wrote the logits";
}

using fusellm::testing::expect_error;

// ---- tests -------------------------------------------------------------------------------------------------
TEST(CudaFusedClassifier, RandomRowsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(11);
  struct Case {
    int64_t T, V, k;
    double scale;
  };
  // V: not a multiple of 4 or 8, exactly one chunk (32768), a vocabulary of the models (32000),
  // more than one chunk (50001, 100003), tiny rows (one slot, a partial slot).
  for (const Case c : {Case{64, 1003, 10, 2.0}, Case{16, 32000, 10, 3.0}, Case{6, 32768, 10, 3.0},
                       Case{5, 50001, 10, 3.0}, Case{3, 100003, 16, 4.0}, Case{33, 4096, 1, 1.0},
                       Case{9, 8, 3, 1.0}, Case{7, 5, 2, 1.0}, Case{40, 257, 0, 2.0}}) {
    const Problem p = random_problem(rng, c.T, c.V, c.k, c.scale);
    const std::string name = "random T=" + std::to_string(c.T) + " V=" + std::to_string(c.V);
    check_problem(p, 0.9f, true, name);
    if (c.V == 1003)
      for (float lambda : {0.9f, 0.3f, 0.f, 1.f})
        for (bool mean : {true, false}) check_problem(p, lambda, mean, name);
  }
}

TEST(CudaFusedClassifier, UnalignedRowsAndBuffers) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  const Problem p = random_problem(rng, 9, 1003, 10, 2.0);
  for (int64_t shift : {1, 2, 3}) check_problem(p, 0.9f, true, "shift " + std::to_string(shift), shift, shift * 2 + 1);
  const Problem q = random_problem(rng, 4, 35001, 10, 2.0);  // several chunks, unaligned
  check_problem(q, 0.9f, true, "long shifted", 3, 5);
}

TEST(CudaFusedClassifier, PaddingEmptyRowsRepeatedIdsAndSparseSlots) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  // k = 40 slots, at most 3 used: k larger than useful.
  Problem p = random_problem(rng, 8, 1001, 40, 2.0);
  for (int64_t j = 0; j < p.k; ++j) {
    for (int64_t i = 0; i < p.T; ++i) {
      p.ids[size_t(i * p.k + j)] = -1;
      p.probs[size_t(i * p.k + j)] = 0.f;
    }
  }
  auto set = [&](int64_t i, int64_t j, int32_t id, float pr) {
    p.ids[size_t(i * p.k + j)] = id;
    p.probs[size_t(i * p.k + j)] = pr;
  };
  p.gold = {-100, 5, 7, 1000, 0, -1, 999, 3};
  // row 0: padding with targets (ignored); row 1: empty targets (S = 0); row 2: the gold id twice
  // and another id; row 3: repeated id in non-adjacent slots, last vocabulary id as gold;
  // row 4: slots at the end of k; row 5: padding; row 6: one target = gold with all the mass;
  // row 7: targets at ids 0 and V - 1.
  set(0, 0, 3, 0.5f);
  set(2, 0, 7, 0.4f);
  set(2, 1, 7, 0.3f);
  set(2, 5, 11, 0.2f);
  set(3, 0, 12, 0.25f);
  set(3, 1, 13, 0.25f);
  set(3, 7, 12, 0.25f);
  set(4, 38, 100, 0.6f);
  set(4, 39, 200, 0.3f);
  set(6, 0, 999, 1.f);
  set(7, 0, 0, 0.5f);
  set(7, 1, 1000, 0.5f);
  for (bool mean : {true, false})
    for (float lambda : {0.9f, 0.25f}) check_problem(p, lambda, mean, "edge rows");
}

TEST(CudaFusedClassifier, NegativeInfinityLogitsAwayFromTargets) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(14);
  Problem p = random_problem(rng, 12, 2051, 10, 2.0);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < p.T; ++i) {
    std::vector<bool> keep(size_t(p.V), false);
    if (p.gold[size_t(i)] >= 0) keep[size_t(p.gold[size_t(i)])] = true;
    for (int64_t j = 0; j < p.k; ++j)
      if (p.ids[size_t(i * p.k + j)] >= 0) keep[size_t(p.ids[size_t(i * p.k + j)])] = true;
    for (int64_t v = 0; v < p.V; ++v)
      if (!keep[size_t(v)] && (rng() % 4 == 0 || v == 0 || v == p.V - 1)) p.z[size_t(i * p.V + v)] = ninf;
  }
  // A padding row of only -Inf is fine too (it is never read).
  p.gold[3] = -100;
  for (int64_t v = 0; v < p.V; ++v) p.z[size_t(3 * p.V + v)] = ninf;
  check_problem(p, 0.9f, true, "-inf logits");
}

TEST(CudaFusedClassifier, SinglePositionAndTinyVocabulary) {
  SKIP_WITHOUT_GPU();
  // T = 1, V = 1: q = 1, loss 0, gradient 0.
  Problem one;
  one.T = 1, one.V = 1, one.k = 1;
  one.z = {3.f};
  one.gold = {0};
  one.ids = {0};
  one.probs = {1.f};
  const Result r1 = gpu_run<float>(one, 0.9f, true, true);
  EXPECT_NEAR(r1.loss, 0.0, 1e-7);
  EXPECT_NEAR(r1.grad[0], 0.f, 1e-7);
  EXPECT_EQ(r1.tokens, 1);
  check_problem(one, 0.9f, true, "T=1 V=1", 1, 3);
  // T = 1 with a few V, aligned and not.
  std::mt19937 rng(15);
  for (int64_t V : {2, 3, 4, 7, 9, 17}) {
    Problem p = random_problem(rng, 1, V, 2, 1.5);
    p.gold = {int32_t(V - 1)};
    check_problem(p, 0.9f, true, "T=1 V=" + std::to_string(V), V % 3, V % 7);
  }
  // An empty target row on V = 2: gradient lambda (q - onehot), fusion term 0.
  Problem em;
  em.T = 1, em.V = 2, em.k = 2;
  em.z = {0.f, 0.f};
  em.gold = {1};
  em.ids = {-1, -1};
  em.probs = {0.f, 0.f};
  const Result re = gpu_run<float>(em, 0.9f, true, true);
  EXPECT_NEAR(re.grad[0], 0.9f * 0.5f, 1e-7);
  EXPECT_NEAR(re.grad[1], 0.9f * (0.5f - 1.f), 1e-7);
  EXPECT_NEAR(re.fusion, 0.0, 1e-12);
}

TEST(CudaFusedClassifier, AllPaddingAndEmptyInput) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(16);
  Problem p = random_problem(rng, 5, 300, 4, 2.0);
  for (auto& g : p.gold) g = -100;
  const Result r = gpu_run<float>(p, 0.9f, true, true);
  EXPECT_EQ(r.tokens, 0);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.grad, std::vector<float>(p.z.size(), 0.f));
  EXPECT_EQ(r.clm_pos, std::vector<float>(size_t(p.T), 0.f));
  const Result rb = gpu_run<__nv_bfloat16>(p, 0.9f, false, true);
  EXPECT_EQ(rb.grad, std::vector<float>(p.z.size(), 0.f));
  // T = 0: nothing to do, totals 0.
  cuda::FusedTargets t;
  const auto tot = cuda::fused_classifier(static_cast<float*>(nullptr), 0, 10, t);
  EXPECT_EQ(tot.tokens, 0);
  EXPECT_EQ(tot.loss, 0.0);
}

TEST(CudaFusedClassifier, ManyTargetSlotsUseOptInSharedMemory) {
  SKIP_WITHOUT_GPU();
  // k = 20000 slots: 80 KB of gathered logits per block, past the default 48 KB.
  std::mt19937 rng(17);
  const Problem p = random_problem(rng, 3, 30011, 20000, 2.0);
  check_problem(p, 0.6f, true, "k=20000");
}

TEST(CudaFusedClassifier, ObjectReuseAndPerPositionNullptr) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(18);
  const Problem p = random_problem(rng, 20, 777, 5, 2.0);
  const Result c = cpu_run(p, 0.9f, true, true);
  cuda::FusedClassifier fc;
  for (int rep = 0; rep < 3; ++rep) {
    auto dz = to_device(p.z);
    auto dg = to_device(p.gold);
    auto di = to_device(p.ids);
    auto dp = to_device(p.probs);
    cuda::FusedTargets t{dg.get(), di.get(), dp.get(), p.k, nullptr, nullptr};
    fc.enqueue(dz.get(), p.T, p.V, t);
    const auto tot = fc.finish();
    expect_scalar_near(tot.loss, c.loss, kRel32, "reused object loss");
    expect_vec_near(to_host(dz.get(), p.z.size()), c.grad, kRel32, kFloor32, "reused object gradient");
  }
  expect_error([&] { fc.finish(); }, {"finish"});
}

TEST(CudaFusedClassifier, ErrorsNamePosition) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  Problem p = random_problem(rng, 5, 40, 4, 1.0);
  p.gold = {1, 2, 3, 4, 5};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (bool grad : {true, false}) {
    Problem q = p;
    q.z[3 * 40 + 17] = nan;
    expect_error([&] { gpu_run<float>(q, 0.9f, true, grad); }, {"position 3", "logit[3, 17] = nan"});
    expect_error([&] { gpu_run<__nv_bfloat16>(q, 0.9f, true, grad); }, {"position 3", "logit[3, 17] = nan"});
    q.z[1 * 40 + 30] = nan;  // the first bad position is named
    expect_error([&] { gpu_run<float>(q, 0.9f, true, grad); }, {"position 1", "logit[1, 30] = nan"});
    q = p;
    q.z[2 * 40 + 39] = inf;
    expect_error([&] { gpu_run<float>(q, 0.9f, true, grad); }, {"position 2", "inf"});
    q = p;
    q.z[1 * 40 + 2] = -inf;  // the gold logit of position 1
    expect_error([&] { gpu_run<float>(q, 0.9f, true, grad); }, {"position 1", "not finite"});
    expect_error([&] { gpu_run<__nv_bfloat16>(q, 0.9f, true, grad); }, {"position 1", "not finite"});
    q = p;
    for (int64_t v = 0; v < 40; ++v) q.z[size_t(4 * 40 + v)] = -inf;  // a row of only -Inf
    expect_error([&] { gpu_run<float>(q, 0.9f, true, grad); }, {"position 4"});
  }
  // Bad targets are found before the logits are touched.
  auto untouched = [&](const Problem& q, const std::vector<std::string>& parts) {
    auto dz = to_device(q.z);
    auto dg = to_device(q.gold);
    auto di = to_device(q.ids);
    auto dp = to_device(q.probs);
    cuda::FusedTargets t{dg.get(), di.get(), dp.get(), q.k, nullptr, nullptr};
    expect_error([&] { cuda::fused_classifier(dz.get(), q.T, q.V, t); }, parts);
    EXPECT_EQ(to_host(dz.get(), q.z.size()), q.z) << "logits written despite bad targets";
  };
  Problem q = p;
  q.gold[2] = 40;
  untouched(q, {"gold id 40", "position 2", "[0, 40)"});
  q = p;
  q.ids[3 * 4 + 0] = 41;
  untouched(q, {"target id 41", "position 3", "slot 0"});
  q = p;
  q.ids[4 * 4 + 0] = -2;
  untouched(q, {"target id -2", "position 4"});
  q = p;
  q.ids[0] = 0;
  q.probs[0] = -0.5f;
  untouched(q, {"probability -0.5", "position 0"});
  q = p;
  q.ids[0] = 0;
  q.probs[0] = nan;
  untouched(q, {"probability nan", "position 0"});
  q = p;
  q.ids[2 * 4 + 3] = 40;
  q.gold[4] = 99;  // two bad rows: the first is named
  untouched(q, {"position 2", "slot 3"});
  // Bad parameters, checked on the host.
  auto dz = to_device(p.z);
  auto dg = to_device(p.gold);
  auto di = to_device(p.ids);
  auto dp = to_device(p.probs);
  cuda::FusedTargets t{dg.get(), di.get(), dp.get(), p.k, nullptr, nullptr};
  cuda::FusedClassifierParams bad;
  bad.lambda = 1.5f;
  expect_error([&] { cuda::fused_classifier(dz.get(), p.T, p.V, t, bad); }, {"lambda"});
  expect_error([&] { cuda::fused_classifier(dz.get(), p.T, 0, t); }, {"empty vocabulary"});
}

}  // namespace
}  // namespace fusellm
