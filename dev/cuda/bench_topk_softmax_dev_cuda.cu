// Micro-benchmark of the top-k softmax variants (topk_softmax_dev.cu) against the current kernel
// (kernels/cuda/topk_softmax.cu) and a device-to-device copy of the same bytes.
//
//   bench_topk_softmax_dev_cuda [--small] [T V k reps]     (default 16384 32000 10 30)
//
// 1. Checks (always): every variant against the current kernel, with and without the tail, on
//    small edge cases (V = 1..33 with k = 1, min(10, V) and V; ties: quantized logits, constant
//    rows, +-0; a misaligned base; V not a multiple of 4; k = 32 and k > 32; temperatures 0.5
//    and 3; NaN/Inf rows and k = 0 / k > V: the same error message) and, without --small, on the
//    timed problem. The ids must be equal; probabilities within 1e-5 of the largest reference
//    probability; tails within 1e-5 absolute (a probability mass). A failure prints the case and
//    the first bad position; the exit status is then 1.
// 2. Timing (without --small): as benchmarks/bench_fused_classifier_cuda.cu's top-k lines (a spin
//    kernel ahead of the start event, median of `reps` after 3 warm-up calls), against the D2D
//    copy of the logits measured in the same run (read + write; top-k reads the logits once).
// Exits 1 without a CUDA device, 1 on a failed check, 2 on an unexpected error.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "bench_util.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/topk_softmax.cuh"
#include "topk_softmax_dev.cuh"

namespace {

using namespace fusellm;
using namespace fusellm::cuda::bench;
using cuda::dev_alloc;

struct Outcome {
  std::string error;
  std::vector<int32_t> ids;
  std::vector<float> probs, tail;
};

template <class TK>
Outcome run_one(TK& tk, const float* z, int64_t T, int64_t V, const cuda::TopkParams& p) {
  const size_t nk = size_t(std::max<int64_t>(T * std::max(p.k, 0), 1));
  auto ids = dev_alloc<int32_t>(nk);
  auto probs = dev_alloc<float>(nk);
  auto tail = dev_alloc<float>(size_t(std::max<int64_t>(T, 1)));
  FUSELLM_CUDA_CHECK(cudaMemset(ids.get(), 0, nk * sizeof(int32_t)));
  FUSELLM_CUDA_CHECK(cudaMemset(probs.get(), 0, nk * sizeof(float)));
  FUSELLM_CUDA_CHECK(cudaMemset(tail.get(), 0, size_t(std::max<int64_t>(T, 1)) * sizeof(float)));
  Outcome o;
  try {
    tk.enqueue(z, T, V, p, ids.get(), probs.get(), tail.get(), "check");
    tk.finish();
  } catch (const std::exception& e) {
    o.error = e.what();
  }
  FUSELLM_CUDA_CHECK(cudaDeviceSynchronize());
  o.ids = cuda::to_host(ids.get(), nk);
  o.probs = cuda::to_host(probs.get(), nk);
  o.tail = cuda::to_host(tail.get(), size_t(std::max<int64_t>(T, 1)));
  return o;
}

bool compare(const std::string& what, const Outcome& ref, const Outcome& got, bool tail, int64_t T) {
  auto fail = [&](const std::string& msg) {
    std::printf("  FAIL %s: %s\n", what.c_str(), msg.c_str());
    return false;
  };
  if (ref.error != got.error)
    return fail("error \"" + got.error + "\" where the current kernel says \"" + ref.error + "\"");
  if (!ref.error.empty()) return true;
  for (size_t i = 0; i < ref.ids.size(); ++i)
    if (ref.ids[i] != got.ids[i])
      return fail("id at flat position " + std::to_string(i) + ": " + std::to_string(got.ids[i]) +
                  " vs " + std::to_string(ref.ids[i]));
  double mr = 0.0, md = 0.0;
  size_t w = 0;
  for (size_t i = 0; i < ref.probs.size(); ++i) {
    mr = std::max(mr, std::fabs(double(ref.probs[i])));
    const double d = std::fabs(double(ref.probs[i]) - double(got.probs[i]));
    if (!(d <= md)) {
      md = d;
      w = i;
    }
  }
  if (!(md <= 1e-5 * mr))
    return fail("probability at flat position " + std::to_string(w) + " off by " + std::to_string(md) +
                " (max " + std::to_string(mr) + ")");
  if (tail)
    for (int64_t i = 0; i < T; ++i) {
      const double d = std::fabs(double(ref.tail[size_t(i)]) - double(got.tail[size_t(i)]));
      if (!(d <= 1e-5))
        return fail("tail of row " + std::to_string(i) + ": " + std::to_string(got.tail[size_t(i)]) +
                    " vs " + std::to_string(ref.tail[size_t(i)]));
    }
  return true;
}

struct Case {
  int64_t T, V;
  int k;
  float temperature = 1.f;
  enum Kind { kNormal, kQuantized, kConstant, kSignedZeros, kNan, kInf } kind = kNormal;
  int misalign = 0;
};

std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " V=" + std::to_string(c.V) + " k=" + std::to_string(c.k) +
         " temperature=" + std::to_string(c.temperature) + " kind=" + std::to_string(int(c.kind)) +
         " misalign=" + std::to_string(c.misalign);
}

int check_case(const Case& c, uint64_t seed) {
  Lcg rng(seed);
  const size_t n = size_t(c.T) * size_t(c.V);
  std::vector<float> hz(n + size_t(c.misalign));
  for (auto& x : hz) {
    const float u = rng.normal() * 3.f;
    switch (c.kind) {
      case Case::kQuantized: x = std::round(u); break;     // many ties
      case Case::kConstant: x = 1.5f; break;
      case Case::kSignedZeros: x = (rng.next() & 1) ? 0.f : -0.f; break;
      default: x = u;
    }
  }
  if (c.kind == Case::kSignedZeros && n > 3) hz[size_t(c.misalign) + 3] = 1.f;
  const int64_t bad_row = c.T / 2;
  if (c.kind == Case::kNan) hz[size_t(c.misalign) + size_t(bad_row * c.V + c.V / 2)] = NAN;
  if (c.kind == Case::kInf) hz[size_t(c.misalign) + size_t(bad_row * c.V + c.V - 1)] = -INFINITY;
  auto d = cuda::to_device(hz);
  const float* z = d.get() + c.misalign;
  int fails = 0;
  for (bool tail : {false, true}) {
    cuda::TopkParams p;
    p.k = c.k;
    p.temperature = c.temperature;
    p.keep_tail = tail;
    cuda::TopkSoftmax cur;
    const Outcome ref = run_one(cur, z, c.T, c.V, p);
    for (int v = 0; v < cuda::dev::topk_softmax_variant_count(); ++v) {
      cuda::dev::TopkSoftmaxDev tk(v);
      const Outcome got = run_one(tk, z, c.T, c.V, p);
      const std::string what = std::string("[") + cuda::dev::topk_softmax_variant_name(v) + "] " +
                               describe(c) + (tail ? " tail" : "");
      if (!compare(what, ref, got, tail, c.T)) ++fails;
    }
  }
  return fails;
}

int edge_checks() {
  std::vector<Case> cases;
  for (int64_t V = 1; V <= 33; ++V)
    for (int k : {1, int(std::min<int64_t>(10, V)), int(V)}) {
      Case c{3, V, k};
      c.misalign = int(V % 4);
      c.kind = V % 3 == 0 ? Case::kQuantized : Case::kNormal;
      cases.push_back(c);
    }
  cases.push_back({9, 1000, 10});
  { Case c{5, 4099, 32}; c.misalign = 1; cases.push_back(c); }
  { Case c{5, 4099, 12}; c.misalign = 2; c.kind = Case::kQuantized; cases.push_back(c); }
  { Case c{4, 2000, 10}; c.kind = Case::kConstant; cases.push_back(c); }      // all ties
  { Case c{4, 2001, 5}; c.kind = Case::kSignedZeros; c.misalign = 3; cases.push_back(c); }
  { Case c{3, 500, 40}; cases.push_back(c); }                                // k > 32
  { Case c{3, 32003, 10}; c.temperature = 0.5f; c.misalign = 2; cases.push_back(c); }
  { Case c{3, 777, 7}; c.temperature = 3.f; cases.push_back(c); }
  { Case c{5, 300, 10}; c.kind = Case::kNan; cases.push_back(c); }
  { Case c{5, 301, 10}; c.kind = Case::kInf; c.misalign = 1; cases.push_back(c); }
  { Case c{3, 100, 0}; cases.push_back(c); }                                 // k = 0: error
  { Case c{3, 5, 6}; cases.push_back(c); }                                   // k > V: error
  { Case c{0, 100, 4}; cases.push_back(c); }                                 // T = 0
  int fails = 0;
  uint64_t seed = 100;
  for (const Case& c : cases) fails += check_case(c, seed++);
  std::printf("top-k edge cases: %zu cases x %d variants x (no tail, tail): %s\n", cases.size(),
              cuda::dev::topk_softmax_variant_count(), fails ? "FAILED" : "all match the current kernel");
  return fails;
}

int bench(int64_t T, int64_t V, int k, int reps) {
  cudaStream_t s;
  FUSELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const size_t n = size_t(T) * size_t(V), bytes = n * sizeof(float);
  auto z = dev_alloc<float>(n);
  auto copy = dev_alloc<float>(n);
  init_logits<float><<<4096, 256, 0, s>>>(z.get(), n, 3.f, 0);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  const int nv = cuda::dev::topk_softmax_variant_count();
  int fails = 0;
  for (bool tail : {false, true}) {
    cuda::TopkParams p;
    p.k = k;
    p.keep_tail = tail;
    cuda::TopkSoftmax cur;
    const Outcome ref = run_one(cur, z.get(), T, V, p);
    for (int v = 0; v < nv; ++v) {
      cuda::dev::TopkSoftmaxDev tk(v);
      const Outcome got = run_one(tk, z.get(), T, V, p);
      if (!compare(std::string("[") + cuda::dev::topk_softmax_variant_name(v) + "] timed problem" +
                       (tail ? " tail" : ""),
                   ref, got, tail, T))
        ++fails;
    }
  }
  std::printf("top-k timed problem: %d variants x (no tail, tail): %s\n", nv,
              fails ? "FAILED" : "all match the current kernel");

  Event c0, c1, c2;
  std::vector<float> copy_ms;
  for (int r = 0; r < 3 + reps; ++r) {
    spin_kernel<<<1, 1, 0, s>>>(kSpinCycles);
    FUSELLM_CUDA_CHECK(cudaEventRecord(c0.e, s));
    FUSELLM_CUDA_CHECK(cudaMemcpyAsync(copy.get(), z.get(), bytes, cudaMemcpyDeviceToDevice, s));
    FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
    FUSELLM_CUDA_CHECK(cudaEventSynchronize(c1.e));
    if (r >= 3) copy_ms.push_back(elapsed_ms(c0, c1));
  }
  const double cm = median(copy_ms);
  const double copy_gbs = 2.0 * double(bytes) / (cm * 1e-3) / 1e9;
  std::printf("%-52s %8.3f ms  %8.1f GB/s  (read + write of %.1f MB)\n", "cudaMemcpy D2D fp32", cm, copy_gbs,
              double(bytes) / 1e6);
  auto ids = dev_alloc<int32_t>(size_t(T) * size_t(k) + 1);
  auto probs = dev_alloc<float>(size_t(T) * size_t(k) + 1);
  auto tl = dev_alloc<float>(size_t(T) + 1);
  auto time = [&](auto& tk, const cuda::TopkParams& p) {
    std::vector<float> ms;
    for (int r = 0; r < 3 + reps; ++r) {
      spin_kernel<<<1, 1, 0, s>>>(kSpinCycles);
      FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
      tk.enqueue(z.get(), T, V, p, ids.get(), probs.get(), tl.get(), "bench");
      FUSELLM_CUDA_CHECK(cudaEventRecord(c2.e, s));
      tk.finish();
      if (r >= 3) ms.push_back(elapsed_ms(c1, c2));
    }
    return median(ms);
  };
  for (bool tail : {false, true}) {
    cuda::TopkParams p;
    p.k = k;
    p.keep_tail = tail;
    const std::string suffix = " k=" + std::to_string(k) + (tail ? " tail" : "");
    {
      cuda::TopkSoftmax cur(s);
      report("topk_softmax current kernels/cuda" + suffix, time(cur, p), double(bytes), copy_gbs, false);
    }
    for (int v = 0; v < nv; ++v) {
      cuda::dev::TopkSoftmaxDev tk(v, s);
      report(std::string("topk_softmax [") + cuda::dev::topk_softmax_variant_name(v) + "]" + suffix, time(tk, p),
             double(bytes), copy_gbs, false);
    }
  }
  FUSELLM_CUDA_CHECK(cudaStreamDestroy(s));
  return fails;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool small = false;
    std::vector<long> args;
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--small") == 0)
        small = true;
      else
        args.push_back(std::atol(argv[i]));
    }
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_topk_softmax_dev_cuda: no CUDA device: %s\n",
                   cuda::device_description().c_str());
      return 1;
    }
    std::printf("device: %s\n", cuda::device_description().c_str());
    int fails = edge_checks();
    if (!small) {
      const int64_t T = args.size() > 0 ? args[0] : 16384;
      const int64_t V = args.size() > 1 ? args[1] : 32000;
      const int k = args.size() > 2 ? int(args[2]) : 10;
      const int reps = std::max(args.size() > 3 ? int(args[3]) : 30, 20);
      std::printf("problem: T=%ld V=%ld k=%d, median of %d repetitions after 3 warm-up calls\n", long(T),
                  long(V), k, reps);
      fails += bench(T, V, k, reps);
    }
    if (fails) {
      std::printf("bench_topk_softmax_dev_cuda: %d check(s) FAILED\n", fails);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_topk_softmax_dev_cuda: %s\n", e.what());
    return 2;
  }
}
