// MinCE / AvgCE / MinCE per position on the GPU (kernels/cuda/fusion.cu) against the Kokkos CPU path
// (kernels/kokkos/fusion.hpp's fuse on Kokkos::DefaultHostExecutionSpace): seeded random sources
// over a small target vocabulary (so ids collide across sources and AvgCE merges them), empty
// slots, tails, ties (equal scores, equal merged probabilities, all-+Inf positions), a source whose
// rows are all empty, k = 1, sequences of length 0 and 1, K = 1 and K = 8, T = 0; and the errors,
// which must name the source and the position and leave the outputs unwritten.
//
// Ids and choices must be bit-equal (the same comparisons in the same order). MinCE rows are copies
// (bit-equal). The AvgCE weights come from the device's double exp instead of glibc's (each within
// 1 ulp of double), so weights, and the AvgCE probabilities and tails computed from them, are held
// to 1e-5 of the largest reference magnitude (in practice they are bit-equal: the test prints how
// many differ at all). Skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/fusion.cuh"
#include "cuda_skip.hpp"
#include "error_of.hpp"
#include "fusellm/core/error.hpp"
#include "kokkos/fusion.hpp"

namespace fusellm {
namespace {

using cuda::to_device;
using cuda::to_host;
using kernels::FusionMode;
using testing::expect_error;
using Host = Kokkos::DefaultHostExecutionSpace;
using HM = Host::memory_space;

static_assert(cuda::kMaxFusionSources == kernels::kMaxSources);

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Src {
  std::vector<int32_t> ids;  // [T, k]
  std::vector<float> probs;  // [T, k]
  std::vector<float> tail;   // [T] or empty
  int64_t k = 0;
};

struct Fused {
  int64_t k = 0;
  std::vector<int32_t> ids, choice;
  std::vector<float> probs, tail, weights;
};

struct Case {
  FusionMode mode;
  std::vector<Src> src;
  std::vector<float> scores;  // [K, cols]
  std::vector<int64_t> off;   // [B + 1] (empty per position)
  int64_t T = 0, V = 0;
  std::vector<std::string> names;
  int64_t cols() const {
    return mode == FusionMode::kMinCEPerPosition ? T : int64_t(off.size()) - 1;
  }
};

template <class T>
std::vector<T> flat(const T* p, size_t n) {
  return n ? std::vector<T>(p, p + n) : std::vector<T>{};
}

Fused cpu_fuse(const Case& c) {
  std::vector<SparseRows<HM>> rows;
  for (const auto& s : c.src) {
    SparseRows<HM> r("src", c.T, s.k, !s.tail.empty());
    for (int64_t i = 0; i < c.T * s.k; ++i) {
      r.ids.data()[i] = s.ids[size_t(i)];
      r.probs.data()[i] = s.probs[size_t(i)];
    }
    for (size_t i = 0; i < s.tail.size(); ++i) r.tail(i) = s.tail[i];
    rows.push_back(r);
  }
  const int64_t K = int64_t(c.src.size()), cols = c.cols();
  Kokkos::View<float**, Kokkos::LayoutRight, HM> sc("scores", K, cols);
  for (int64_t i = 0; i < K * cols; ++i) sc.data()[i] = c.scores[size_t(i)];
  Kokkos::View<int64_t*, HM> off("off", c.off.size());
  for (size_t i = 0; i < c.off.size(); ++i) off(i) = c.off[i];
  auto res = kernels::fuse(Host(), c.mode, rows, c.names,
                           Kokkos::View<const float**, Kokkos::LayoutRight, HM>(sc),
                           Kokkos::View<const int64_t*, HM>(off), c.V);
  Host().fence();
  Fused f;
  f.k = res.rows.k();
  f.ids = flat(res.rows.ids.data(), size_t(c.T * f.k));
  f.probs = flat(res.rows.probs.data(), size_t(c.T * f.k));
  f.tail = flat(res.rows.tail.data(), res.rows.tail.extent(0));
  f.choice = flat(res.choice.data(), res.choice.extent(0));
  f.weights = flat(res.weights.data(), res.weights.size());
  return f;
}

constexpr int32_t kPoisonId = 0x7f7f7f7f;

Fused gpu_fuse(const Case& c) {
  const int64_t K = int64_t(c.src.size());
  std::vector<cuda::DevPtr<int32_t>> dids;
  std::vector<cuda::DevPtr<float>> dprobs, dtails;
  std::vector<cuda::FusionSource> fs;
  bool any_tail = false;
  for (const auto& s : c.src) {
    dids.push_back(to_device(s.ids));
    dprobs.push_back(to_device(s.probs));
    dtails.push_back(to_device(s.tail));
    fs.push_back({dids.back().get(), dprobs.back().get(), s.tail.empty() ? nullptr : dtails.back().get(), s.k});
    any_tail |= !s.tail.empty();
  }
  const bool per_pos = c.mode == FusionMode::kMinCEPerPosition;
  const int64_t B = per_pos ? 0 : int64_t(c.off.size()) - 1;
  const int64_t k = cuda::fused_width(c.mode, fs);
  Fused f;
  f.k = k;
  f.ids.assign(size_t(c.T * k), kPoisonId);  // poison: unwritten slots show
  f.probs.assign(size_t(c.T * k), 1e30f);
  f.tail.assign(any_tail ? size_t(c.T) : 0, 1e30f);
  f.choice.assign(size_t(per_pos ? c.T : B), kPoisonId);
  f.weights.assign(size_t(per_pos ? 0 : B * K), 1e30f);
  auto oi = to_device(f.ids);
  auto op = to_device(f.probs);
  auto ot = to_device(f.tail);
  auto oc = to_device(f.choice);
  auto ow = to_device(f.weights);
  auto dsc = to_device(c.scores);
  auto doff = to_device(c.off);
  cuda::FusionOutput out{oi.get(), op.get(), any_tail ? ot.get() : nullptr, k, oc.get(),
                         per_pos ? nullptr : ow.get()};
  // Download even when fuse throws, so a test can see that nothing was written.
  std::string err;
  try {
    cuda::fuse(c.mode, fs, c.names, c.T, dsc.get(), per_pos ? nullptr : doff.get(), B, c.V, out);
  } catch (const Error& e) {
    err = e.what();
  }
  f.ids = to_host(oi.get(), f.ids.size());
  f.probs = to_host(op.get(), f.probs.size());
  f.tail = to_host(ot.get(), f.tail.size());
  f.choice = to_host(oc.get(), f.choice.size());
  f.weights = to_host(ow.get(), f.weights.size());
  if (!err.empty()) throw Error(err);
  return f;
}

float max_abs(const std::vector<float>& v) {
  float m = 0.f;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Values within tol * (largest reference magnitude); prints the worst error and how many differ.
void compare_values(const std::vector<float>& g, const std::vector<float>& c, int64_t width,
                    const std::string& what, const char* field, double tol) {
  ASSERT_EQ(g.size(), c.size()) << what << " " << field;
  const double scale = std::max(double(max_abs(c)), 1e-30);
  double worst = 0.0;
  size_t differ = 0, bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::fabs(double(g[i]) - double(c[i]));
    if (std::memcmp(&g[i], &c[i], sizeof(float)) != 0) ++differ;
    worst = std::max(worst, err / scale);
    if (!(err <= tol * scale) && bad++ < 5)
      ADD_FAILURE() << what << ": " << field << " at row " << i / size_t(width) << " slot "
                    << i % size_t(width) << ": " << g[i] << ", CPU " << c[i];
  }
  std::printf("    %-44s %-8s not bit-equal=%zu max rel err=%.3e\n", what.c_str(), field, differ, worst);
}

void compare(const Fused& g, const Fused& c, const std::string& what, bool avg) {
  ASSERT_EQ(g.k, c.k) << what;
  ASSERT_EQ(g.ids.size(), c.ids.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < g.ids.size(); ++i)
    if (g.ids[i] != c.ids[i] && bad++ < 5)
      ADD_FAILURE() << what << ": id at row " << i / size_t(c.k) << " slot " << i % size_t(c.k)
                    << ": " << g.ids[i] << ", CPU " << c.ids[i];
  ASSERT_EQ(g.choice.size(), c.choice.size()) << what;
  for (size_t i = 0; i < g.choice.size(); ++i)
    if (g.choice[i] != c.choice[i] && bad++ < 10)
      ADD_FAILURE() << what << ": choice " << i << ": " << g.choice[i] << ", CPU " << c.choice[i];
  // MinCE copies rows: bit-equal. AvgCE: see the header comment.
  const double tol = avg ? 1e-5 : 0.0;
  compare_values(g.probs, c.probs, std::max<int64_t>(c.k, 1), what, "probs", tol);
  compare_values(g.tail, c.tail, 1, what, "tail", tol);
  compare_values(g.weights, c.weights, 1, what, "weights", 1e-5);
}

void check(const Case& c, const std::string& what) {
  const Fused cf = cpu_fuse(c);
  const Fused gf = gpu_fuse(c);
  compare(gf, cf, std::string(kernels::fusion_mode_name(c.mode)) + " " + what,
          c.mode == FusionMode::kAvgCE);
}

// Row i of a source: nf of k slots filled with distinct ids of [0, V), probabilities descending
// (ties by ascending id, the SparseRows order), quantized to eighths when `ties` (so equal values,
// and equal merged AvgCE sums, are common), the rest (-1, 0).
Src random_source(std::mt19937& rng, int64_t T, int64_t k, int64_t V, bool tail, bool ties,
                  bool empty = false) {
  Src s;
  s.k = k;
  s.ids.assign(size_t(T * k), -1);
  s.probs.assign(size_t(T * k), 0.f);
  std::vector<int32_t> pool(static_cast<size_t>(V));
  for (int64_t i = 0; i < T; ++i) {
    const int64_t nf = empty ? 0 : int64_t(rng() % uint32_t(std::min(k, V) + 1));
    for (int64_t v = 0; v < V; ++v) pool[size_t(v)] = int32_t(v);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<std::pair<float, int32_t>> e;
    for (int64_t j = 0; j < nf; ++j) {
      const float p = ties ? float(1 + rng() % 4) / 8.f
                           : std::uniform_real_distribution<float>(0.01f, 1.f)(rng);
      e.push_back({p, pool[size_t(j)]});
    }
    std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (int64_t j = 0; j < nf; ++j) {
      s.ids[size_t(i * k + j)] = e[size_t(j)].second;
      s.probs[size_t(i * k + j)] = e[size_t(j)].first;
    }
    if (tail) s.tail.push_back(std::uniform_real_distribution<float>(0.f, 0.3f)(rng));
  }
  return s;
}

// Offsets with a sequence of length 0 and one of length 1 when T allows, the rest random.
std::vector<int64_t> random_offsets(std::mt19937& rng, int64_t T, int64_t B) {
  std::vector<int64_t> cut{0, 0};  // sequence 0 is empty
  if (T >= 1 && B >= 3) cut.push_back(1);  // sequence 1 has one row
  while (int64_t(cut.size()) < B) cut.push_back(int64_t(rng() % uint32_t(T + 1)));
  std::sort(cut.begin(), cut.end());
  cut.push_back(T);
  cut.resize(size_t(B + 1));
  cut.back() = T;
  return cut;
}

std::vector<float> random_scores(std::mt19937& rng, int64_t K, int64_t cols, bool ties) {
  std::vector<float> s(size_t(K * cols));
  for (auto& x : s)
    x = ties ? float(1 + rng() % 3) * 0.5f : std::uniform_real_distribution<float>(0.2f, 4.f)(rng);
  return s;
}

std::vector<std::string> names_for(size_t K) {
  std::vector<std::string> n;
  for (size_t j = 0; j < K; ++j) n.push_back("src" + std::to_string(j));
  return n;
}

constexpr FusionMode kModes[] = {FusionMode::kMinCE, FusionMode::kAvgCE,
                                 FusionMode::kMinCEPerPosition};

Case random_case(std::mt19937& rng, FusionMode mode, const std::vector<int64_t>& ks, int64_t T,
                 int64_t B, int64_t V, bool tails, bool ties) {
  Case c;
  c.mode = mode;
  c.T = T;
  c.V = V;
  for (size_t j = 0; j < ks.size(); ++j)
    c.src.push_back(random_source(rng, T, ks[j], V, tails && j % 2 == 1, ties));
  if (mode != FusionMode::kMinCEPerPosition) c.off = random_offsets(rng, T, B);
  c.scores = random_scores(rng, int64_t(ks.size()), c.cols(), ties);
  c.names = names_for(ks.size());
  return c;
}

TEST(CudaFusion, RandomSourcesMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(41);
  for (FusionMode m : kModes)
    for (bool tails : {false, true}) {
      check(random_case(rng, m, {4, 6, 1}, 61, 5, 23, tails, false),
            std::string("K=3 k=4,6,1") + (tails ? " tails" : ""));
      check(random_case(rng, m, {10, 10}, 200, 7, 1000, tails, false),
            std::string("K=2 k=10 V=1000") + (tails ? " tails" : ""));
    }
}

TEST(CudaFusion, TiesKeepTheCpuOrder) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(42);
  // Quantized probabilities and scores: equal scores (MinCE: the first source; AvgCE: equal
  // weights, so merged sums tie and the id order decides), equal per-position CEs.
  for (FusionMode m : kModes) {
    check(random_case(rng, m, {5, 5, 3}, 80, 6, 9, false, true), "ties K=3 V=9");
    check(random_case(rng, m, {4, 4}, 40, 4, 6, true, true), "ties K=2 V=6 tails");
  }
  // Per position: rows where every CE is +Inf take source 0; +Inf against finite.
  Case c = random_case(rng, FusionMode::kMinCEPerPosition, {3, 2, 4}, 10, 0, 12, false, false);
  for (int64_t i = 0; i < 10; ++i)
    for (int64_t j = 0; j < 3; ++j)
      if (i % 3 == 0 || (i % 3 == 1 && j == 0)) c.scores[size_t(j * 10 + i)] = kInf;
  check(c, "per position +Inf");
  // Sequence scores of +Inf (reward 0) in MinCE and AvgCE.
  for (FusionMode m : {FusionMode::kMinCE, FusionMode::kAvgCE}) {
    Case s = random_case(rng, m, {3, 3}, 12, 3, 8, false, false);
    s.scores[0] = kInf;
    s.scores[1 * 3 + 1] = kInf;
    s.scores[2] = kInf;
    s.scores[1 * 3 + 2] = kInf;
    check(s, "+Inf scores");
  }
}

TEST(CudaFusion, EdgeShapes) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(43);
  for (FusionMode m : kModes) {
    // A source whose rows are all empty (nothing survived its alignment) beside a normal one.
    Case e = random_case(rng, m, {4, 3}, 30, 4, 15, false, false);
    e.src[0] = random_source(rng, 30, 4, 15, false, false, /*empty=*/true);
    check(e, "all-empty source");
    check(random_case(rng, m, {1, 1, 1}, 25, 4, 5, false, false), "k=1");
    check(random_case(rng, m, {2}, 17, 3, 10, true, false), "K=1");
    check(random_case(rng, m, {3, 1, 4, 1, 5, 2, 6, 3}, 33, 5, 20, true, false), "K=8");
    check(random_case(rng, m, {3, 2}, 1, 1, 10, false, false), "T=1");
    // T = 0: sequences all empty (the weights are still computed), or none.
    Case z = random_case(rng, m, {3, 2}, 0, 2, 10, false, false);
    check(z, "T=0");
    if (m != FusionMode::kMinCEPerPosition) {
      z.off = {0};
      z.scores.clear();
      check(z, "T=0 B=0");
    }
  }
}

std::string fuse_error(const Case& c) {
  return testing::error_of([&] { gpu_fuse(c); });
}

// The GPU's message must be the CPU's (same first error, same words).
void expect_same_error(const Case& c, const std::vector<std::string>& parts) {
  const std::string cpu = testing::error_of([&] { cpu_fuse(c); });
  expect_error([&] { gpu_fuse(c); }, parts);
  EXPECT_EQ(fuse_error(c), cpu);
}

TEST(CudaFusion, ErrorsNameSourceAndPosition) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(44);
  for (FusionMode m : kModes) {
    Case base = random_case(rng, m, {3, 2}, 6, 2, 5, false, false);
    base.names = {"llama", "mpt"};
    base.src[0].ids = {0, 1, -1, 2, 3, 4, 0, -1, -1, 1, 2, 3, 4, 0, 1, 2, -1, -1};
    base.src[0].probs = {0.5f, 0.3f, 0.f, 0.6f, 0.2f, 0.1f, 1.f, 0.f, 0.f,
                         0.4f, 0.3f, 0.2f, 0.5f, 0.4f, 0.1f, 1.f, 0.f, 0.f};
    const std::string mode = kernels::fusion_mode_name(m);
    {
      Case c = base;
      c.src[1].ids[2 * 2 + 1] = 5;  // position 2, slot 1: id == V
      c.src[1].probs[2 * 2 + 1] = 0.1f;
      c.src[0].ids[4 * 3 + 0] = -2;  // a later position
      expect_same_error(c, {mode + " fusion", "'mpt'", "id 5", "position 2", "slot 1", "[0, 5)"});
    }
    {
      Case c = base;
      c.src[0].probs[3 * 3 + 2] = kNaN;  // position 3 slot 2 (id 3)
      expect_same_error(c, {"'llama'", "probability nan", "position 3", "slot 2"});
      c.src[0].probs[3 * 3 + 2] = -0.5f;
      expect_same_error(c, {"'llama'", "probability -0.5", "position 3", "slot 2"});
      c.src[0].probs[3 * 3 + 2] = 0.2f;
      c.src[0].ids[1 * 3 + 1] = -7;  // position 1 slot 1
      expect_same_error(c, {"'llama'", "id -7", "position 1", "slot 1"});
    }
    {
      Case c = base;
      if (m == FusionMode::kMinCEPerPosition) {
        c.scores[1 * 6 + 4] = kNaN;  // source 1, position 4
        expect_same_error(c, {"'mpt'", "score nan", "position 4"});
        c.scores[0 * 6 + 4] = -kInf;  // source 0 at the same position comes first
        expect_same_error(c, {"'llama'", "score -inf", "position 4"});
      } else {
        c.scores[1 * 2 + 1] = kNaN;  // source 1, sequence 1
        expect_same_error(c, {"'mpt'", "score nan", "sequence 1"});
        c.src[1].ids[0] = 99;  // a bad id: the score error still comes first, as on the CPU
        expect_same_error(c, {"'mpt'", "score nan", "sequence 1"});
        c.scores[0 * 2 + 1] = -kInf;
        expect_same_error(c, {"'llama'", "score -inf", "sequence 1"});
      }
    }
    if (m != FusionMode::kMinCEPerPosition) {
      Case c = base;
      c.off = {0, 7};
      c.scores.resize(2);
      expect_same_error(c, {"offsets must run from 0 to T = 6", "got 0 .. 7"});
      c.off = {0, 4, 3, 6};
      c.scores.resize(6);
      expect_same_error(c, {"offsets decrease at sequence 1"});
      c.off = {1, 6};
      c.scores.resize(2);
      expect_same_error(c, {"got 1 .. 6"});
    }
    {
      Case c = base;
      c.src.clear();
      c.scores.clear();
      expect_error([&] { gpu_fuse(c); }, {mode + " fusion: no sources"});
      Case many = random_case(rng, m, std::vector<int64_t>(9, 2), 4, 2, 5, false, false);
      expect_same_error(many, {"9 sources, at most 8"});
    }
  }
}

TEST(CudaFusion, ErrorsLeaveOutputsUnwritten) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(45);
  for (FusionMode m : kModes) {
    Case c = random_case(rng, m, {3, 2}, 20, 3, 7, true, false);
    c.src[1].probs[19 * 2] = kNaN;  // the last position
    c.src[1].ids[19 * 2] = 0;
    const std::string msg = fuse_error(c);
    EXPECT_NE(msg.find("position 19"), std::string::npos) << msg;
    // The same call on poisoned outputs, which must keep their poison.
    const int64_t K = 2;
    std::vector<cuda::DevPtr<int32_t>> di;
    std::vector<cuda::DevPtr<float>> dp, dt;
    std::vector<cuda::FusionSource> fs;
    for (const auto& s : c.src) {
      di.push_back(to_device(s.ids));
      dp.push_back(to_device(s.probs));
      dt.push_back(to_device(s.tail));
      fs.push_back({di.back().get(), dp.back().get(), s.tail.empty() ? nullptr : dt.back().get(), s.k});
    }
    const int64_t k = cuda::fused_width(m, fs), B = int64_t(c.off.size()) - 1;
    const bool pp = m == FusionMode::kMinCEPerPosition;
    auto oi = to_device(std::vector<int32_t>(size_t(20 * k), kPoisonId));
    auto op = to_device(std::vector<float>(size_t(20 * k), 1e30f));
    auto ot = to_device(std::vector<float>(20, 1e30f));
    auto oc = to_device(std::vector<int32_t>(20, kPoisonId));
    auto ow = to_device(std::vector<float>(size_t(std::max<int64_t>(B, 1) * K), 1e30f));
    auto ds = to_device(c.scores);
    auto doff = to_device(c.off);
    cuda::FusionOutput out{oi.get(), op.get(), ot.get(), k, oc.get(), ow.get()};
    EXPECT_NE(testing::error_of([&] {
                cuda::fuse(m, fs, c.names, 20, ds.get(), pp ? nullptr : doff.get(), pp ? 0 : B, 7, out);
              }),
              "");
    for (int32_t x : to_host(oi.get(), size_t(20 * k))) ASSERT_EQ(x, kPoisonId) << "ids written";
    for (float x : to_host(op.get(), size_t(20 * k))) ASSERT_EQ(x, 1e30f) << "probs written";
    for (float x : to_host(ot.get(), 20)) ASSERT_EQ(x, 1e30f) << "tail written";
    for (int32_t x : to_host(oc.get(), 20)) ASSERT_EQ(x, kPoisonId) << "choice written";
    for (float x : to_host(ow.get(), size_t(std::max<int64_t>(B, 1) * K))) ASSERT_EQ(x, 1e30f) << "weights written";
  }
}

}  // namespace
}  // namespace fusellm
