// Top-k with temperature softmax on the GPU (kernels/cuda/topk_softmax.cu) against the Kokkos CPU
// path (kernels/kokkos/topk_softmax.hpp on Kokkos::DefaultHostExecutionSpace): random rows without
// ties and rows full of ties (identical ids: the tie order, value descending then id ascending, is
// the same), with and without the tail bucket, temperatures, every register capacity of the
// kernel and the k > 32 fallback, k = V, V not a multiple of 4, unaligned rows, T = 1; probabilities
// within 1e-5 relative, tails within 1e-5 absolute (a tail is 1 - the kept mass); and the errors.
// Each comparison prints its largest errors. Skips, saying why, without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
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
#include "cuda/topk_softmax.cuh"
#include "fusellm/core/error.hpp"
#include "kokkos/topk_softmax.hpp"

namespace fusellm {
namespace {

using cuda::DevPtr;
using cuda::dev_alloc;
using cuda::to_device;
using cuda::to_host;

struct Out {
  std::vector<int32_t> ids;
  std::vector<float> probs, tail;
};

using Host = Kokkos::DefaultHostExecutionSpace;

Out cpu_topk(const std::vector<float>& z, int64_t T, int64_t V, int k, float temp, bool tail) {
  using M = Host::memory_space;
  Kokkos::View<float**, Kokkos::LayoutRight, M> v("z", T, V);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < V; ++j) v(i, j) = z[size_t(i * V + j)];
  Kokkos::View<const float**, Kokkos::LayoutRight, M> cv = v;
  kernels::TopkParams p;
  p.k = k;
  p.temperature = temp;
  p.keep_tail = tail;
  SparseRows<M> out;
  kernels::topk_softmax(Host(), cv, p, out, "src");
  Host().fence();
  Out o;
  for (int64_t i = 0; i < T; ++i) {
    for (int r = 0; r < k; ++r) {
      o.ids.push_back(out.ids(i, r));
      o.probs.push_back(out.probs(i, r));
    }
    if (tail) o.tail.push_back(out.tail(i));
  }
  return o;
}

// The GPU run with the logits `shift` floats past an aligned allocation.
Out gpu_topk(const std::vector<float>& z, int64_t T, int64_t V, int k, float temp, bool tail,
             int64_t shift = 0, const std::string& source = "src") {
  auto dz = dev_alloc<float>(z.size() + size_t(shift));
  if (!z.empty())
    FUSELLM_CUDA_CHECK(cudaMemcpy(dz.get() + shift, z.data(), z.size() * sizeof(float), cudaMemcpyHostToDevice));
  const size_t n = size_t(T) * size_t(std::max(k, 0));
  auto di = dev_alloc<int32_t>(n);
  auto dp = dev_alloc<float>(n);
  auto dt = dev_alloc<float>(size_t(T));
  FUSELLM_CUDA_CHECK(cudaMemset(di.get(), 0xff, std::max<size_t>(n, 1) * 4));  // poison
  FUSELLM_CUDA_CHECK(cudaMemset(dp.get(), 0xff, std::max<size_t>(n, 1) * 4));
  cuda::TopkParams p;
  p.k = k;
  p.temperature = temp;
  p.keep_tail = tail;
  cuda::topk_softmax(dz.get() + shift, T, V, p, di.get(), dp.get(), tail ? dt.get() : nullptr, source);
  Out o;
  o.ids = to_host(di.get(), n);
  o.probs = to_host(dp.get(), n);
  if (tail) o.tail = to_host(dt.get(), size_t(T));
  return o;
}

void compare(const Out& g, const Out& c, int64_t T, int k, const std::string& what) {
  ASSERT_EQ(g.ids.size(), c.ids.size()) << what;
  size_t id_mismatch = 0;
  for (size_t i = 0; i < g.ids.size(); ++i)
    if (g.ids[i] != c.ids[i] && id_mismatch++ < 5)
      ADD_FAILURE() << what << ": row " << i / size_t(k) << " rank " << i % size_t(k) << " id "
                    << g.ids[i] << " want " << c.ids[i];
  double worst_p = 0.0, worst_t = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < g.probs.size(); ++i) {
    const double err = std::fabs(double(g.probs[i]) - double(c.probs[i]));
    const double rel = err / std::max(std::fabs(double(c.probs[i])), 1e-30);
    worst_p = std::max(worst_p, rel);
    if (!(err <= 1e-5 * std::fabs(double(c.probs[i])) + 1e-12) && bad++ < 5)
      ADD_FAILURE() << what << ": row " << i / size_t(k) << " rank " << i % size_t(k) << " prob "
                    << g.probs[i] << " want " << c.probs[i];
  }
  ASSERT_EQ(g.tail.size(), c.tail.size()) << what;
  for (size_t i = 0; i < g.tail.size(); ++i) {
    const double err = std::fabs(double(g.tail[i]) - double(c.tail[i]));
    worst_t = std::max(worst_t, err);
    if (!(err <= 1e-5) && bad++ < 5)
      ADD_FAILURE() << what << ": row " << i << " tail " << g.tail[i] << " want " << c.tail[i];
  }
  std::printf("    %-56s T=%-4ld k=%-3d id mismatches=%zu max rel prob err=%.3e max abs tail err=%.3e%s\n",
              what.c_str(), long(T), k, id_mismatch, worst_p, worst_t,
              (id_mismatch || bad) ? "  FAILED" : "");
  EXPECT_EQ(id_mismatch, 0u) << what;
  EXPECT_EQ(bad, 0u) << what;
}

void check(const std::vector<float>& z, int64_t T, int64_t V, int k, float temp, bool tail,
           const std::string& what, int64_t shift = 0) {
  const std::string name = what + " V=" + std::to_string(V) + " tau=" + std::to_string(temp).substr(0, 4) +
                           (tail ? " tail" : "") + (shift ? " shift=" + std::to_string(shift) : "");
  compare(gpu_topk(z, T, V, k, temp, tail, shift), cpu_topk(z, T, V, k, temp, tail), T, k, name);
}

std::vector<float> normal_rows(std::mt19937& rng, int64_t T, int64_t V, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> z(static_cast<size_t>(T * V));
  for (auto& x : z) x = nd(rng);
  return z;
}

// Distinct values in every row: a permutation of 0..V-1, scaled (no ties anywhere).
std::vector<float> distinct_rows(std::mt19937& rng, int64_t T, int64_t V, float step) {
  std::vector<float> z(static_cast<size_t>(T * V));
  std::vector<int32_t> perm(static_cast<size_t>(V));
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t v = 0; v < V; ++v) perm[size_t(v)] = int32_t(v);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t v = 0; v < V; ++v) z[size_t(i * V + v)] = float(perm[size_t(v)] - V / 2) * step;
  }
  return z;
}

using fusellm::testing::expect_error;

TEST(CudaTopkSoftmax, DistinctRowsMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(21);
  // Every register capacity (k = 1, 2, 3, 5, 8, 10, 13, 16, 20, 32) and the fallback (33, 64).
  for (int64_t V : {1003, 32000, 50001}) {
    const int64_t T = V > 40000 ? 5 : 37;
    const auto z = distinct_rows(rng, T, V, 0.0013f);
    for (int k : {1, 2, 3, 5, 8, 10, 13, 16, 20, 32, 33, 64})
      for (bool tail : {false, true}) check(z, T, V, k, 1.f, tail, "distinct k=" + std::to_string(k));
  }
}

TEST(CudaTopkSoftmax, NormalRowsTemperaturesAndTails) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(22);
  for (int64_t V : {7, 97, 4096, 32000}) {
    const auto z = normal_rows(rng, 19, V, 3.f);
    for (float temp : {1.f, 0.7f, 2.5f})
      for (bool tail : {false, true})
        for (int k : {1, 5, 10})
          if (k <= V) check(z, 19, V, k, temp, tail, "normal k=" + std::to_string(k));
  }
}

TEST(CudaTopkSoftmax, TiesKeepValueThenIdOrder) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  for (int64_t V : {33, 1000, 32000}) {
    // Few distinct values: ties everywhere, also across the k-th place; -0.0 and +0.0 tie.
    std::vector<float> z(static_cast<size_t>(11 * V));
    for (auto& x : z) {
      const int q = int(rng() % 6);
      x = q == 0 ? -0.f : float(q) * 0.5f - 1.f;
    }
    for (int k : {1, 4, 10, 32, 33})
      if (k <= V)
        for (bool tail : {false, true}) check(z, 11, V, k, 1.f, tail, "ties k=" + std::to_string(k));
  }
  // All equal: ids 0..k-1, uniform probabilities; k = V.
  for (int64_t V : {7, 40}) {
    std::vector<float> z(size_t(3 * V), 1.25f);
    for (bool tail : {false, true}) check(z, 3, V, int(V), 1.f, tail, "all equal k=V");
  }
}

TEST(CudaTopkSoftmax, SmallAndUnalignedRows) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(24);
  for (int64_t V : {1, 2, 3, 4, 5, 6, 9, 31, 33, 131})
    for (int64_t shift : {0, 1, 2, 3}) {
      const auto z = normal_rows(rng, 1, V, 2.f);  // T = 1
      for (int k : {1, 3, 40})
        if (k <= V) check(z, 1, V, k, 1.f, k != 3, "T=1 k=" + std::to_string(k), shift);
      const auto z5 = normal_rows(rng, 5, V, 2.f);  // rows of odd length: every row unaligned
      check(z5, 5, V, std::min<int>(2, int(V)), 0.5f, true, "T=5", shift);
    }
  const auto z = normal_rows(rng, 4, 32001, 3.f);
  for (int64_t shift : {1, 3}) check(z, 4, 32001, 10, 1.f, true, "T=4", shift);
}

TEST(CudaTopkSoftmax, NegativeLogitsOnly) {
  SKIP_WITHOUT_GPU();
  // Every logit very negative (the top-k must not be fooled by an empty list's -Inf threshold).
  std::mt19937 rng(25);
  auto z = normal_rows(rng, 6, 2000, 1.f);
  for (auto& x : z) x -= 1e30f;
  for (bool tail : {false, true}) check(z, 6, 2000, 10, 1.f, tail, "large negative");
  auto w = normal_rows(rng, 6, 2000, 1.f);
  for (auto& x : w) x = -std::numeric_limits<float>::max() + std::fabs(x) * 1e30f;
  check(w, 6, 2000, 10, 1.f, false, "near -FLT_MAX");
}

TEST(CudaTopkSoftmax, EmptyInputIsNoOp) {
  SKIP_WITHOUT_GPU();
  cuda::TopkParams p;
  cuda::topk_softmax(nullptr, 0, 100, p, nullptr, nullptr, nullptr, "src");
  cuda::TopkSoftmax t;
  t.enqueue(nullptr, 0, 100, p, nullptr, nullptr, nullptr, "src");
  t.finish();
}

TEST(CudaTopkSoftmax, ErrorsNameSourceAndPosition) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(26);
  const auto z = normal_rows(rng, 6, 300, 1.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int k : {10, 40})
    for (bool tail : {false, true}) {
      auto q = z;
      q[4 * 300 + 123] = nan;
      expect_error([&] { gpu_topk(q, 6, 300, k, 1.f, tail, 0, "llama"); },
                   {"source 'llama'", "position 4", "logit[4, 123] = nan"});
      q[2 * 300 + 299] = -inf;  // the first bad row is named
      expect_error([&] { gpu_topk(q, 6, 300, k, 1.f, tail, 0, "llama"); },
                   {"position 2", "logit[2, 299] = -inf"});
      q = z;
      q[5 * 300 + 0] = inf;
      expect_error([&] { gpu_topk(q, 6, 300, k, 1.f, tail, 1, "mpt"); }, {"source 'mpt'", "position 5", "inf"});
    }
  expect_error([&] { gpu_topk(z, 6, 300, 301, 1.f, false); }, {"k = 301", "V = 300"});
  expect_error([&] { gpu_topk(z, 6, 300, 0, 1.f, false); }, {"k = 0"});
  expect_error([&] { gpu_topk(z, 6, 300, 5, 0.f, false); }, {"temperature"});
  expect_error([&] { gpu_topk(z, 6, 300, 5, -1.f, false); }, {"temperature"});
  expect_error([&] { gpu_topk(z, 6, 300, 5, std::numeric_limits<float>::infinity(), false); }, {"temperature"});
  expect_error([&] { gpu_topk(z, 6, 300, 5, nan, false); }, {"temperature"});
  expect_error([&] { gpu_topk(z, 6, 300, 5, 1e-45f, false); }, {"temperature"});
}

}  // namespace
}  // namespace fusellm
