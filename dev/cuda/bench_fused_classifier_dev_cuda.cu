// Micro-benchmark of the fused classifier variants (fused_classifier_dev.cu) against the current
// kernel (kernels/cuda/fused_classifier.cu) and a device-to-device copy of the same bytes.
//
//   bench_fused_classifier_dev_cuda [--small] [T V k reps]     (default 16384 32000 10 30)
//
// 1. Checks (always): every variant against the current kernel, gradient call and loss-only call,
//    on small edge cases (V = 1..33, V not a multiple of 8, a misaligned base, rows longer than one
//    chunk, padding rows, no tokens, k = 0, duplicate target ids and ids equal to the gold id,
//    kSum, lambda 0 and 1, bad targets and non-finite logits: the same error message) and, without
//    --small, on the timed problem itself. Tolerances (of the difference to the current kernel):
//      gradient: max |diff| <= tol * max |ref| (fp32 1e-5, bf16 1e-2), and per element
//                |diff| <= tol_e |ref| where |ref| >= 1e-2 max |ref| (fp32 1e-4, bf16 2e-2: one
//                bf16 rounding flips by <= 2^-7; fp32 differs by the lse's last bits);
//      per-position losses and totals: <= 1e-5 (fp32) / 1e-4 (bf16: __expf at other arguments)
//                relative to the largest |ref|; the token counts equal.
//    A failed check prints the case and the first bad index; the exit status is then 1.
// 2. Timing (without --small): as benchmarks/bench_fused_classifier_cuda.cu (everything an
//    enqueue puts on the stream, median of `reps` after 3 warm-up calls; before each gradient
//    call the logits are restored by a timed D2D copy, which is the bandwidth reference). One line
//    per kernel: ms, GB/s of the bytes it must move (gradient: read + write the logits; loss:
//    read), % of the copy's GB/s, and for gradient calls the 80% target (OK/BELOW).
// Exits 1 without a CUDA device, 1 on a failed check, 2 on an unexpected error.
#include <cuda_bf16.h>
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
#include "cuda/fused_classifier.cuh"
#include "fused_classifier_dev.cuh"

namespace {

using namespace fusellm;
using namespace fusellm::cuda::bench;
using cuda::dev_alloc;
using cuda::DevPtr;

template <class E>
constexpr bool kBf16 = sizeof(E) == 2;
template <class E>
const char* tname() {
  return kBf16<E> ? "bf16" : "fp32";
}

template <class E>
E from_f(float x) {
  if constexpr (kBf16<E>)
    return __float2bfloat16_rn(x);
  else
    return x;
}

struct Tol {
  float grad, grad_elem, loss;
};
template <class E>
Tol tol() {
  return kBf16<E> ? Tol{1e-2f, 2e-2f, 1e-4f} : Tol{1e-5f, 1e-4f, 1e-5f};
}

// One call's results: the error message (empty: none), the per-position terms and the totals.
struct Outcome {
  std::string error;
  std::vector<float> clm, fus;
  cuda::FusedLossTotals totals;
};

// Runs `fc` (current or variant) on a copy of `pristine` in `work`.
template <class E, class FC>
Outcome run_one(FC& fc, bool grad, E* work, const E* pristine, size_t n, int64_t T, int64_t V,
                const cuda::FusedTargets& tg_in, const cuda::FusedClassifierParams& p, float* d_clm,
                float* d_fus) {
  FUSELLM_CUDA_CHECK(cudaMemcpy(work, pristine, n * sizeof(E), cudaMemcpyDeviceToDevice));
  FUSELLM_CUDA_CHECK(cudaMemset(d_clm, 0, size_t(std::max<int64_t>(T, 1)) * sizeof(float)));
  FUSELLM_CUDA_CHECK(cudaMemset(d_fus, 0, size_t(std::max<int64_t>(T, 1)) * sizeof(float)));
  cuda::FusedTargets tg = tg_in;
  tg.clm_position = d_clm;
  tg.fusion_position = d_fus;
  Outcome o;
  try {
    if (grad)
      fc.enqueue(work, T, V, tg, p);
    else
      fc.enqueue_loss(work, T, V, tg, p);
    o.totals = fc.finish();
  } catch (const std::exception& e) {
    o.error = e.what();
  }
  FUSELLM_CUDA_CHECK(cudaDeviceSynchronize());
  o.clm = cuda::to_host(d_clm, size_t(T));
  o.fus = cuda::to_host(d_fus, size_t(T));
  return o;
}

// max |a - b| / max |b| over two host vectors (0 when both are all zero).
double rel_diff(const std::vector<float>& a, const std::vector<float>& b, size_t* where) {
  double md = 0.0, mr = 0.0;
  *where = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= md)) {
      md = d;
      *where = i;
    }
    mr = std::max(mr, std::fabs(double(b[i])));
  }
  return mr > 0 ? md / mr : md;
}

// Compares a variant's outcome with the current kernel's; prints and returns false on a mismatch.
template <class E>
bool compare(const std::string& what, const Outcome& ref, const Outcome& got, const E* ref_z,
             const E* got_z, size_t n, bool grad, const E* pristine) {
  const Tol t = tol<E>();
  bool ok = true;
  auto bad = [&](const std::string& msg) {
    std::printf("  FAIL %s: %s\n", what.c_str(), msg.c_str());
    ok = false;
  };
  if (ref.error != got.error) {
    bad("error \"" + got.error + "\" where the current kernel says \"" + ref.error + "\"");
    return false;
  }
  if (!ref.error.empty()) return true;  // same message; the logits may be partly written
  if (grad) {
    const DiffResult d = device_diff(got_z, ref_z, n, t.grad_elem, 1e-2f);
    const double rel = d.max_ref > 0 ? double(d.max_diff) / d.max_ref : d.max_diff;
    if (!(rel <= t.grad)) bad("gradient max |diff| / max |ref| = " + std::to_string(rel));
    if (d.first_bad != ~0ull) bad("gradient element " + std::to_string(d.first_bad) + " off by more than " + std::to_string(t.grad_elem) + " relative");
  } else {
    const DiffResult d = device_diff(got_z, pristine, n, 0.f, 0.f);
    if (d.max_diff != 0.f) bad("loss-only call changed the logits");
  }
  size_t w = 0;
  const double dc = rel_diff(got.clm, ref.clm, &w);
  if (!(dc <= t.loss)) bad("clm_position rel diff " + std::to_string(dc) + " at " + std::to_string(w));
  const double df = rel_diff(got.fus, ref.fus, &w);
  if (!(df <= t.loss)) bad("fusion_position rel diff " + std::to_string(df) + " at " + std::to_string(w));
  auto tot = [&](const char* name, double a, double b) {
    const double r = std::fabs(a - b) / std::max(std::fabs(b), 1e-30);
    if (!(r <= t.loss || std::fabs(a - b) == 0.0))
      bad(std::string("total ") + name + " " + std::to_string(a) + " vs " + std::to_string(b));
  };
  tot("loss", got.totals.loss, ref.totals.loss);
  tot("clm", got.totals.clm, ref.totals.clm);
  tot("fusion", got.totals.fusion, ref.totals.fusion);
  if (got.totals.tokens != ref.totals.tokens) bad("token counts differ");
  return ok;
}

struct Case {
  int64_t T, V, k;
  int pad_every = 0;        // every pad_every-th row is padding (0: none; 1: all)
  int misalign = 0;         // elements between the allocation and logits[0]
  float lambda = 0.9f;
  bool sum = false;         // LossReduction::kSum
  enum Inject { kNone, kBadGold, kBadId, kBadProb, kNanLogit, kInfLogit, kNegInfTarget } inject = kNone;
  float scale = 3.f;
};

std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " V=" + std::to_string(c.V) + " k=" + std::to_string(c.k) +
         " pad_every=" + std::to_string(c.pad_every) + " misalign=" + std::to_string(c.misalign) +
         " lambda=" + std::to_string(c.lambda) + (c.sum ? " sum" : " mean") +
         " inject=" + std::to_string(int(c.inject));
}

// The case's inputs on the host (seeded), uploaded; runs the current kernel and every variant.
template <class E>
int check_case(const Case& c, uint64_t seed) {
  Lcg rng(seed);
  const size_t n = size_t(c.T) * size_t(c.V);
  std::vector<E> hz(n + size_t(c.misalign));
  for (auto& x : hz) x = from_f<E>(rng.normal() * c.scale);
  std::vector<int32_t> gold(size_t(std::max<int64_t>(c.T, 1)));
  std::vector<int32_t> ids(size_t(std::max<int64_t>(c.T * c.k, 1)));
  std::vector<float> probs(ids.size());
  for (int64_t i = 0; i < c.T; ++i) {
    const bool pad = c.pad_every == 1 || (c.pad_every > 1 && i % c.pad_every == 1);
    gold[size_t(i)] = pad ? -100 : int32_t(rng.next() % uint32_t(c.V));
    for (int64_t j = 0; j < c.k; ++j) {
      const uint32_t u = rng.next() % 8;
      int32_t id = int32_t(rng.next() % uint32_t(c.V));
      if (u == 0) id = -1;                                               // empty slot
      if (u == 1) id = gold[size_t(i)] < 0 ? 0 : gold[size_t(i)];        // the gold id again
      if (u == 2 && j > 0) id = ids[size_t(i * c.k + j - 1)];            // a duplicate
      ids[size_t(i * c.k + j)] = id;
      probs[size_t(i * c.k + j)] = 0.9f * rng.uniform() / float(c.k);
    }
  }
  const int64_t bad_row = c.T / 2;
  E* z_row = hz.data() + c.misalign + size_t(bad_row) * size_t(c.V);
  switch (c.inject) {
    case Case::kBadGold: gold[size_t(bad_row)] = int32_t(c.V); break;
    case Case::kBadId: ids[size_t(bad_row * c.k)] = int32_t(c.V) + 3; break;
    case Case::kBadProb: ids[size_t(bad_row * c.k)] = 0; probs[size_t(bad_row * c.k)] = NAN; break;
    case Case::kNanLogit: z_row[c.V / 2] = from_f<E>(NAN); gold[size_t(bad_row)] = 0; break;
    case Case::kInfLogit: z_row[c.V - 1] = from_f<E>(INFINITY); gold[size_t(bad_row)] = 0; break;
    case Case::kNegInfTarget:
      gold[size_t(bad_row)] = 0;
      z_row[c.V - 1] = from_f<E>(-INFINITY);
      ids[size_t(bad_row * c.k)] = int32_t(c.V - 1);
      probs[size_t(bad_row * c.k)] = 0.1f;
      break;
    default: break;
  }
  auto base = cuda::to_device(hz);
  auto work_ref = dev_alloc<E>(hz.size());
  auto work_var = dev_alloc<E>(hz.size());
  auto d_gold = cuda::to_device(gold);
  auto d_ids = cuda::to_device(ids);
  auto d_probs = cuda::to_device(probs);
  auto c_ref = dev_alloc<float>(size_t(std::max<int64_t>(c.T, 1)) * 2);
  auto c_var = dev_alloc<float>(size_t(std::max<int64_t>(c.T, 1)) * 2);
  const size_t T1 = size_t(std::max<int64_t>(c.T, 1));
  const cuda::FusedTargets tg{d_gold.get(), c.k ? d_ids.get() : nullptr, c.k ? d_probs.get() : nullptr,
                              c.k, nullptr, nullptr};
  cuda::FusedClassifierParams p;
  p.lambda = c.lambda;
  p.reduction = c.sum ? cuda::LossReduction::kSum : cuda::LossReduction::kMean;
  const E* pristine = base.get() + c.misalign;
  E* zr = work_ref.get() + c.misalign;
  E* zv = work_var.get() + c.misalign;
  int fails = 0;
  cuda::FusedClassifier cur;
  for (bool grad : {true, false}) {
    const Outcome ref = run_one(cur, grad, zr, pristine, n, c.T, c.V, tg, p, c_ref.get(), c_ref.get() + T1);
    for (int v = 0; v < cuda::dev::fused_classifier_variant_count(kBf16<E>); ++v) {
      cuda::dev::FusedClassifierDev fc(v);
      const Outcome got = run_one(fc, grad, zv, pristine, n, c.T, c.V, tg, p, c_var.get(), c_var.get() + T1);
      const std::string what = std::string(tname<E>()) + " " + (grad ? "gradient" : "loss") + " [" +
                               cuda::dev::fused_classifier_variant_name(kBf16<E>, v) + "] " + describe(c);
      if (!compare<E>(what, ref, got, zr, zv, n, grad, pristine)) ++fails;
    }
  }
  return fails;
}

template <class E>
int edge_checks() {
  std::vector<Case> cases;
  for (int64_t V = 1; V <= 33; ++V) {
    Case c{5, V, std::min<int64_t>(3, V)};
    c.misalign = int(V % 3);
    c.pad_every = V % 4 == 0 ? 3 : 0;
    cases.push_back(c);
  }
  cases.push_back({7, 1000, 10});
  { Case c{6, 1001, 4}; c.misalign = 5; c.pad_every = 2; cases.push_back(c); }
  { Case c{3, 70001, 6}; c.misalign = 1; cases.push_back(c); }       // several chunks per row
  { Case c{4, 32003, 0}; cases.push_back(c); }                        // k = 0
  { Case c{4, 500, 5}; c.pad_every = 1; cases.push_back(c); }         // no tokens
  { Case c{5, 777, 7}; c.sum = true; c.lambda = 0.f; cases.push_back(c); }
  { Case c{5, 777, 7}; c.lambda = 1.f; c.misalign = 3; cases.push_back(c); }
  { Case c{4, 300, 40}; cases.push_back(c); }                         // k > 32
  { Case c{0, 100, 3}; cases.push_back(c); }                          // T = 0
  const Case::Inject inj[] = {Case::kBadGold, Case::kBadId, Case::kBadProb, Case::kNanLogit,
                              Case::kInfLogit, Case::kNegInfTarget};
  for (auto i : inj) {
    Case c{5, 333, 4};
    c.inject = i;
    cases.push_back(c);
  }
  int fails = 0;
  uint64_t seed = 1;
  for (const Case& c : cases) fails += check_case<E>(c, seed++);
  std::printf("%s edge cases: %zu cases x %d variants x (gradient, loss): %s\n", tname<E>(), cases.size(),
              cuda::dev::fused_classifier_variant_count(kBf16<E>), fails ? "FAILED" : "all match the current kernel");
  return fails;
}

// The timed problem: checks every variant once on it, then times the current kernel, each variant
// and the copy. Returns the number of failed checks.
// long: the checks and the timing share the problem's buffers, targets and the copy reference.
template <class E>
int bench_type(int64_t T, int64_t V, int64_t k, int reps, cudaStream_t s, const int32_t* gold,
               const int32_t* ids, const float* probs) {
  const size_t n = size_t(T) * size_t(V), bytes = n * sizeof(E);
  auto pristine = dev_alloc<E>(n);
  auto work = dev_alloc<E>(n);
  auto ref = dev_alloc<E>(n);
  init_logits<E><<<4096, 256, 0, s>>>(pristine.get(), n, 3.f, 0);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  const cuda::FusedTargets tg{gold, ids, probs, k, nullptr, nullptr};
  auto c_ref = dev_alloc<float>(size_t(2 * T));
  auto c_var = dev_alloc<float>(size_t(2 * T));
  const int nv = cuda::dev::fused_classifier_variant_count(kBf16<E>);

  int fails = 0;
  {
    cuda::FusedClassifier cur;
    for (bool grad : {true, false}) {
      const Outcome r = run_one(cur, grad, ref.get(), pristine.get(), n, T, V, tg, {}, c_ref.get(), c_ref.get() + T);
      for (int v = 0; v < nv; ++v) {
        cuda::dev::FusedClassifierDev fc(v);
        const Outcome g = run_one(fc, grad, work.get(), pristine.get(), n, T, V, tg, {}, c_var.get(), c_var.get() + T);
        const std::string what = std::string(tname<E>()) + (grad ? " gradient [" : " loss [") +
                                 cuda::dev::fused_classifier_variant_name(kBf16<E>, v) + "] timed problem";
        if (!compare<E>(what, r, g, ref.get(), work.get(), n, grad, pristine.get())) ++fails;
      }
    }
    std::printf("%s timed problem: %d variants x (gradient, loss): %s\n", tname<E>(), nv,
                fails ? "FAILED" : "all match the current kernel");
  }

  // Timing. Index -1: the current kernel.
  Event c0, c1, c2;
  std::vector<float> copy_ms;
  auto time_kernel = [&](auto& fc, bool grad) {
    std::vector<float> ms;
    for (int r = 0; r < 3 + reps; ++r) {
      if (grad) {
        FUSELLM_CUDA_CHECK(cudaEventRecord(c0.e, s));
        FUSELLM_CUDA_CHECK(cudaMemcpyAsync(work.get(), pristine.get(), bytes, cudaMemcpyDeviceToDevice, s));
        FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
        fc.enqueue(work.get(), T, V, tg);
      } else {
        spin_kernel<<<1, 1, 0, s>>>(kSpinCycles);
        FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
        fc.enqueue_loss(pristine.get(), T, V, tg);
      }
      FUSELLM_CUDA_CHECK(cudaEventRecord(c2.e, s));
      fc.finish();
      if (r >= 3) {
        ms.push_back(elapsed_ms(c1, c2));
        if (grad) copy_ms.push_back(elapsed_ms(c0, c1));
      }
    }
    return median(ms);
  };
  std::vector<std::string> names;
  std::vector<double> grad_ms, loss_ms;
  {
    cuda::FusedClassifier cur(s);
    names.push_back("current kernels/cuda");
    grad_ms.push_back(time_kernel(cur, true));
    loss_ms.push_back(time_kernel(cur, false));
  }
  for (int v = 0; v < nv; ++v) {
    cuda::dev::FusedClassifierDev fc(v, s);
    names.push_back(cuda::dev::fused_classifier_variant_name(kBf16<E>, v));
    grad_ms.push_back(time_kernel(fc, true));
    loss_ms.push_back(time_kernel(fc, false));
  }
  const double cm = median(copy_ms);
  const double copy_gbs = 2.0 * double(bytes) / (cm * 1e-3) / 1e9;
  std::printf("%-52s %8.3f ms  %8.1f GB/s  (read + write of %.1f MB)\n",
              (std::string("cudaMemcpy D2D ") + tname<E>()).c_str(), cm, copy_gbs, double(bytes) / 1e6);
  for (size_t i = 0; i < names.size(); ++i)
    report(std::string("fused_classifier ") + tname<E>() + " " + names[i], grad_ms[i], 2.0 * double(bytes),
           copy_gbs, true);
  for (size_t i = 0; i < names.size(); ++i)
    report(std::string("fused_loss ") + tname<E>() + " " + names[i], loss_ms[i], double(bytes), copy_gbs, false);
  return fails;
}

// Gold ids with 5% padding; k distinct target ids per row (as the benchmark in benchmarks/).
__global__ void init_targets(int32_t* gold, int32_t* ids, float* probs, int64_t T, int64_t V, int64_t k) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < T; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix(uint64_t(i) + 0x9e3779b97f4a7c15ull);
    gold[i] = (h % 20 == 0) ? -100 : int32_t((h >> 5) % uint32_t(V));
    for (int64_t j = 0; j < k; ++j) {
      ids[i * k + j] = int32_t((i * 7919 + j * 104729) % V);
      probs[i * k + j] = 0.9f / float(k);
    }
  }
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
      std::fprintf(stderr, "bench_fused_classifier_dev_cuda: no CUDA device: %s\n",
                   cuda::device_description().c_str());
      return 1;
    }
    std::printf("device: %s\n", cuda::device_description().c_str());
    int fails = edge_checks<float>() + edge_checks<__nv_bfloat16>();
    if (!small) {
      const int64_t T = args.size() > 0 ? args[0] : 16384;
      const int64_t V = args.size() > 1 ? args[1] : 32000;
      const int64_t k = args.size() > 2 ? args[2] : 10;
      const int reps = std::max(args.size() > 3 ? int(args[3]) : 30, 20);
      std::printf("problem: T=%ld V=%ld k=%ld, median of %d repetitions after 3 warm-up calls\n",
                  long(T), long(V), long(k), reps);
      cudaStream_t s;
      FUSELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      auto gold = dev_alloc<int32_t>(size_t(T));
      auto ids = dev_alloc<int32_t>(size_t(T * k) + 1);
      auto probs = dev_alloc<float>(size_t(T * k) + 1);
      init_targets<<<256, 256, 0, s>>>(gold.get(), ids.get(), probs.get(), T, V, k);
      FUSELLM_CUDA_CHECK(cudaGetLastError());
      FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
      fails += bench_type<__nv_bfloat16>(T, V, k, reps, s, gold.get(), ids.get(), probs.get());
      fails += bench_type<float>(T, V, k, reps, s, gold.get(), ids.get(), probs.get());
      FUSELLM_CUDA_CHECK(cudaStreamDestroy(s));
    }
    if (fails) {
      std::printf("bench_fused_classifier_dev_cuda: %d check(s) FAILED\n", fails);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fused_classifier_dev_cuda: %s\n", e.what());
    return 2;
  }
}
