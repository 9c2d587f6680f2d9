#pragma once
// Shared pieces of the dev/cuda micro-benchmarks (.cu only): cudaEvent timing, medians, seeded
// inputs, a device-side comparison of two buffers and the report line.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"

namespace fusellm::cuda::bench {

struct Event {
  cudaEvent_t e = nullptr;
  Event() { FUSELLM_CUDA_CHECK(cudaEventCreate(&e)); }
  ~Event() { cudaEventDestroy(e); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};
inline float elapsed_ms(const Event& a, const Event& b) {
  float ms = 0.f;
  FUSELLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
  return ms;
}
inline double median(std::vector<float> v) {
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
__device__ __forceinline__ float get(float x) { return x; }
__device__ __forceinline__ float get(__nv_bfloat16 x) { return __bfloat162float(x); }

// Logits ~ approximately N(0, scale^2) (as benchmarks/bench_fused_classifier_cuda.cu).
template <class T>
__global__ void init_logits(T* z, size_t n, float scale, uint64_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t a = mix(2 * (i + seed)), b = mix(2 * (i + seed) + 1);
    const float u = float(a & 0xffff) + float(a >> 16) + float(b & 0xffff) + float(b >> 16);
    put(z + i, (u / 65536.f - 2.f) * 1.7320508f * scale);
  }
}

// Keeps the GPU busy ahead of a start event, so that host enqueueing is not timed.
__global__ void spin_kernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}
constexpr long long kSpinCycles = 400000;  // ~0.2 ms

// max |a - b| and max |b| over n elements (non-negative floats order as their bits), and the
// first index where |a - b| > tol_elem * |b| among elements with |b| >= floor (or a NaN appears).
struct DiffResult {
  float max_diff, max_ref;
  unsigned long long first_bad;  // ~0: none
};
template <class T>
__global__ void diff_kernel(const T* a, const T* b, size_t n, float tol_elem, float floor,
                            unsigned* max_diff, unsigned* max_ref, unsigned long long* first_bad) {
  float md = 0.f, mr = 0.f;
  unsigned long long fb = ~0ull;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float x = get(a[i]), y = get(b[i]);
    const float d = fabsf(x - y);
    const bool nan = (x != x) != (y != y);
    if (!(x != x && y != y)) {
      md = fmaxf(md, nan ? INFINITY : d);
      mr = fmaxf(mr, fabsf(y));
    }
    if (nan || (fabsf(y) >= floor && d > tol_elem * fabsf(y))) fb = i < fb ? i : fb;
  }
  atomicMax(max_diff, __float_as_uint(md));
  atomicMax(max_ref, __float_as_uint(mr));
  if (fb != ~0ull) atomicMin(first_bad, fb);
}

// Two passes: max |b| first (for the per-element floor), then the differences.
template <class T>
DiffResult device_diff(const T* a, const T* b, size_t n, float tol_elem, float floor_rel) {
  auto d = dev_alloc<unsigned long long>(3);
  unsigned* md = reinterpret_cast<unsigned*>(d.get());
  unsigned* mr = md + 1;
  unsigned long long* fb = d.get() + 1;
  FUSELLM_CUDA_CHECK(cudaMemset(d.get(), 0, sizeof(unsigned long long)));
  FUSELLM_CUDA_CHECK(cudaMemset(fb, 0xff, 2 * sizeof(unsigned long long)));
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256 + 1, 8192));
  diff_kernel<T><<<blocks, 256>>>(a, b, n, INFINITY, INFINITY, md, mr, fb + 1);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  unsigned h[2];
  FUSELLM_CUDA_CHECK(cudaMemcpy(h, md, sizeof h, cudaMemcpyDeviceToHost));
  float ref_max;
  std::memcpy(&ref_max, &h[1], sizeof ref_max);
  FUSELLM_CUDA_CHECK(cudaMemset(d.get(), 0, sizeof(unsigned long long)));
  diff_kernel<T><<<blocks, 256>>>(a, b, n, tol_elem, floor_rel * ref_max, md, mr, fb);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpy(h, md, sizeof h, cudaMemcpyDeviceToHost));
  DiffResult r{};
  std::memcpy(&r.max_diff, &h[0], sizeof(float));
  std::memcpy(&r.max_ref, &h[1], sizeof(float));
  FUSELLM_CUDA_CHECK(cudaMemcpy(&r.first_bad, fb, sizeof r.first_bad, cudaMemcpyDeviceToHost));
  return r;
}

// One timing line: ms, GB/s of `bytes`, % of the copy's GB/s, and the 80% target when asked.
inline void report(const std::string& name, double ms, double bytes, double copy_gbs, bool target) {
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  const double ratio = gbs / copy_gbs;
  std::printf("%-52s %8.3f ms  %8.1f GB/s  %5.1f%% of copy%s\n", name.c_str(), ms, gbs, 100.0 * ratio,
              target ? (ratio >= 0.8 ? "  [target >= 80%: OK]" : "  [target >= 80%: BELOW]") : "");
}

// A deterministic host generator for the edge-case inputs.
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 33);
  }
  float uniform() { return float(next() & 0xffffff) / 16777216.f; }  // [0, 1)
  float normal() {
    float u = 0.f;
    for (int i = 0; i < 4; ++i) u += uniform();
    return (u - 2.f) * 1.7320508f;
  }
};

}  // namespace fusellm::cuda::bench
