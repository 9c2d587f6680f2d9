// The CUDA fused classifier (kernels/cuda/fused_classifier.cu, fp32 and bf16 logits) and top-k
// softmax (kernels/cuda/topk_softmax.cu) against the device's own copy bandwidth, measured in the
// same run on a buffer of the same size.
//
//   build/benchmarks/bench_fused_classifier_cuda [T V k reps]     (default 16384 32000 10 30)
//
// Timing: cudaEvents around each call on one stream, after 3 warm-up calls; the median of `reps`.
// A fused classifier call is everything FusedClassifier::enqueue puts on the stream (status reset,
// targets check, the row kernel, the totals, the 40-byte status copy back); finish() waits after
// the stop event. Before every repetition the logits are restored from a pristine copy with a
// device-to-device cudaMemcpyAsync, itself timed: that copy is the bandwidth reference (it counts
// read + write bytes, 2 x the buffer), measured interleaved with the kernel under the same
// conditions; it also keeps the GPU busy while the host enqueues the call (the loss-only and top-k
// loops use a short spin kernel for that), so host launch latency is not in the timings.
// Bytes the kernels must move, and are held to:
//   fused classifier, fp32: 8 B/logit (read once, gradient written once in place);
//   fused classifier, bf16: 4 B/logit (read 2, write 2);
//   loss only: 4 (fp32) or 2 (bf16) B/logit, read once;
//   top-k softmax (fp32 logits): 4 B/logit, read once (the k outputs per row are negligible).
// "achieved GB/s" = those bytes / median time; the ratio is to the copy's GB/s (target >= 80%).
// Exits 1 with a message when there is no CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/fused_classifier.cuh"
#include "cuda/topk_softmax.cuh"

namespace {

using namespace fusellm;

using cuda::dev_alloc;

struct Event {
  cudaEvent_t e = nullptr;
  Event() { FUSELLM_CUDA_CHECK(cudaEventCreate(&e)); }
  ~Event() { cudaEventDestroy(e); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};
float elapsed_ms(const Event& a, const Event& b) {
  float ms = 0.f;
  FUSELLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
  return ms;
}
double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (double(v[n / 2 - 1]) + double(v[n / 2]));
}

__device__ __forceinline__ uint32_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return uint32_t(x);
}

__device__ __forceinline__ void put(float* p, float x) { *p = x; }
__device__ __forceinline__ void put(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }

// Logits ~ approximately N(0, scale^2): the sum of four uniform 16-bit values, centred.
template <class T>
__global__ void init_logits(T* z, size_t n, float scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t a = mix(2 * i), b = mix(2 * i + 1);
    const float u = float(a & 0xffff) + float(a >> 16) + float(b & 0xffff) + float(b >> 16);
    put(z + i, (u / 65536.f - 2.f) * 1.7320508f * scale);  // unit variance, then scale
  }
}

// Keeps the GPU busy for `cycles` clocks: launched ahead of a start event, so that the host's
// enqueueing of the timed work is not part of the timing.
__global__ void spin_kernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}
constexpr long long kSpinCycles = 400000;  // ~0.2 ms

// Gold ids with 5% padding; k distinct target ids per row with probabilities summing to 0.9.
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

void report(const char* name, double ms, double bytes, double copy_gbs, bool with_target) {
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  const double ratio = gbs / copy_gbs;
  std::printf("%-34s median %8.3f ms  %9.1f MB  %8.1f GB/s  %5.1f%% of copy%s\n", name, ms,
              bytes / 1e6, gbs, 100.0 * ratio,
              with_target ? (ratio >= 0.8 ? "  [target >= 80%: OK]" : "  [target >= 80%: BELOW]") : "");
}

// Fused classifier (gradient, then loss only) on logits of type E; returns the copy GB/s.
template <class E>
double bench_classifier(const char* tname, int64_t T, int64_t V, int64_t k, int reps, cudaStream_t s,
                        const int32_t* gold, const int32_t* ids, const float* probs) {
  const size_t n = size_t(T) * size_t(V), bytes = n * sizeof(E);
  auto pristine = dev_alloc<E>(n);
  auto work = dev_alloc<E>(n);
  init_logits<E><<<4096, 256, 0, s>>>(pristine.get(), n, 3.f);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(s));
  cuda::FusedClassifier fc(s);
  const cuda::FusedTargets tg{gold, ids, probs, k, nullptr, nullptr};
  Event c0, c1, c2;
  std::vector<float> copy_ms, grad_ms, loss_ms;
  double loss = 0.0;
  for (int r = 0; r < 3 + reps; ++r) {
    FUSELLM_CUDA_CHECK(cudaEventRecord(c0.e, s));
    FUSELLM_CUDA_CHECK(cudaMemcpyAsync(work.get(), pristine.get(), bytes, cudaMemcpyDeviceToDevice, s));
    FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
    fc.enqueue(work.get(), T, V, tg);
    FUSELLM_CUDA_CHECK(cudaEventRecord(c2.e, s));
    loss = fc.finish().loss;
    if (r >= 3) {
      copy_ms.push_back(elapsed_ms(c0, c1));
      grad_ms.push_back(elapsed_ms(c1, c2));
    }
  }
  double eval_loss = 0.0;
  for (int r = 0; r < 3 + reps; ++r) {
    spin_kernel<<<1, 1, 0, s>>>(kSpinCycles);
    FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
    fc.enqueue_loss(pristine.get(), T, V, tg);
    FUSELLM_CUDA_CHECK(cudaEventRecord(c2.e, s));
    eval_loss = fc.finish().loss;
    if (r >= 3) loss_ms.push_back(elapsed_ms(c1, c2));
  }
  const double cm = median(copy_ms);
  const double copy_gbs = 2.0 * double(bytes) / (cm * 1e-3) / 1e9;
  std::printf("%-34s median %8.3f ms  %9.1f MB  %8.1f GB/s  (read + write of a %.1f MB buffer)\n",
              (std::string("cudaMemcpy D2D ") + tname).c_str(), cm, 2.0 * double(bytes) / 1e6,
              copy_gbs, double(bytes) / 1e6);
  const double per = double(sizeof(E));
  report((std::string("fused_classifier ") + tname).c_str(), median(grad_ms), 2.0 * per * double(n),
         copy_gbs, true);
  report((std::string("fused_loss ") + tname).c_str(), median(loss_ms), per * double(n), copy_gbs,
         false);
  std::printf("%-34s loss %.6f (gradient call), %.6f (loss only)\n", "", loss, eval_loss);
  return copy_gbs;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_fused_classifier_cuda: no CUDA device: %s\n",
                   cuda::device_description().c_str());
      return 1;
    }
    const int64_t T = argc > 1 ? std::atol(argv[1]) : 16384;
    const int64_t V = argc > 2 ? std::atol(argv[2]) : 32000;
    const int64_t k = argc > 3 ? std::atol(argv[3]) : 10;
    const int reps = std::max(argc > 4 ? std::atoi(argv[4]) : 30, 20);
    std::printf("device: %s\n", cuda::device_description().c_str());
    std::printf("problem: T=%ld V=%ld k=%ld, median of %d repetitions after 3 warm-up calls\n",
                long(T), long(V), long(k), reps);
    cudaStream_t s;
    FUSELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    auto gold = dev_alloc<int32_t>(size_t(T));
    auto ids = dev_alloc<int32_t>(size_t(T * k) + 1);
    auto probs = dev_alloc<float>(size_t(T * k) + 1);
    init_targets<<<256, 256, 0, s>>>(gold.get(), ids.get(), probs.get(), T, V, k);
    FUSELLM_CUDA_CHECK(cudaGetLastError());

    const double copy32 = bench_classifier<float>("fp32", T, V, k, reps, s, gold.get(), ids.get(), probs.get());
    bench_classifier<__nv_bfloat16>("bf16", T, V, k, reps, s, gold.get(), ids.get(), probs.get());

    // Top-k softmax on fp32 logits, against the fp32 copy bandwidth.
    {
      const size_t n = size_t(T) * size_t(V);
      auto z = dev_alloc<float>(n);
      init_logits<float><<<4096, 256, 0, s>>>(z.get(), n, 3.f);
      FUSELLM_CUDA_CHECK(cudaGetLastError());
      auto oid = dev_alloc<int32_t>(size_t(T * k) + 1);
      auto op = dev_alloc<float>(size_t(T * k) + 1);
      auto ot = dev_alloc<float>(size_t(T) + 1);
      cuda::TopkSoftmax tk(s);
      Event c1, c2;
      for (bool tail : {false, true}) {
        cuda::TopkParams p;
        p.k = int(k);
        p.keep_tail = tail;
        std::vector<float> ms;
        for (int r = 0; r < 3 + reps; ++r) {
          spin_kernel<<<1, 1, 0, s>>>(kSpinCycles);
          FUSELLM_CUDA_CHECK(cudaEventRecord(c1.e, s));
          tk.enqueue(z.get(), T, V, p, oid.get(), op.get(), ot.get(), "bench");
          FUSELLM_CUDA_CHECK(cudaEventRecord(c2.e, s));
          tk.finish();
          if (r >= 3) ms.push_back(elapsed_ms(c1, c2));
        }
        const std::string name = "topk_softmax fp32 k=" + std::to_string(k) + (tail ? " tail" : "");
        report(name.c_str(), median(ms), 4.0 * double(n), copy32, false);
      }
    }
    FUSELLM_CUDA_CHECK(cudaStreamDestroy(s));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_fused_classifier_cuda: %s\n", e.what());
    return 2;
  }
}
