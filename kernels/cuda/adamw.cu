#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/adamw.cuh"
#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kAdamWThreads = 256;
constexpr int kNormThreads = 512;  // a power of two: the block trees halve it

// Whether flat element j is exempt from weight decay: an odd number of bounds <= j means j lies
// inside some [b_k, e_k). Every thread of a warp probes nearly the same addresses, so the binary
// search over the (hundreds of) bounds is served from L1.
__device__ bool exempt_from_decay(int64_t j, const int64_t* __restrict__ bounds, int64_t n_bounds) {
  int64_t lo = 0, hi = n_bounds;  // first bound > j
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (__ldg(bounds + mid) <= j) lo = mid + 1;
    else hi = mid;
  }
  return (lo & 1) != 0;
}

__device__ bool nonfinite(float x) { return (__float_as_uint(x) & 0x7f800000u) == 0x7f800000u; }

// AdamW on element offset + i, the update of optim/adamw.cpp AdamW::step (torch's
// _single_tensor_adamw), after clip_to_norm's gradient scaling (grad_clip.cpp scale_grads):
//   g  = grad * coef
//   p  = p * decay                     (decay = 1 - lr wd, or 1 for the exempt parameters)
//   m  = fma(1 - beta1, g - m, m)      torch's lerp
//   v  = fma((1 - beta2) g, g, v beta2)
//   p  = p + (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
// Each operation is rounded as the CPU rounds it (the _rn intrinsics are never contracted).
__global__ void adamw_kernel(AdamWRange r, AdamWScalars k, const float* __restrict__ grad_scale,
                             float host_grad_scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= r.n) return;
  const int64_t j = r.offset + i;
  const float coef = grad_scale ? __ldg(grad_scale) : host_grad_scale;
  const float g = __fmul_rn(r.grads[j], coef);
  const bool exempt = r.n_bounds > 0 && exempt_from_decay(j, r.no_decay_bounds, r.n_bounds);
  const float p0 = __fmul_rn(r.params[j], exempt ? 1.f : k.decay);
  const float m0 = r.m[i], v0 = r.v[i];
  const float m = fmaf(k.lerp_w, __fsub_rn(g, m0), m0);
  const float v = fmaf(__fmul_rn(k.one_minus_beta2, g), g, __fmul_rn(v0, k.beta2));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.bc2_sqrt), k.eps);
  const float p = __fadd_rn(p0, __fdiv_rn(__fmul_rn(k.neg_step_size, m), denom));
  r.params[j] = p;
  r.m[i] = m;
  r.v[i] = v;
  if (r.params_bf16) r.params_bf16[j] = __float2bfloat16_rn(p);
  if (r.first_nonfinite && (nonfinite(p) || nonfinite(m) || nonfinite(v)))
    atomicMin(r.first_nonfinite, static_cast<unsigned long long>(j));
}

// In-block sum of the threads' values in a fixed tree order (thread t adds t + s for s = 256, 128,
// ...), so the result does not depend on scheduling. Returns the sum in thread 0.
__device__ double block_sum(double x, double* sh) {
  sh[threadIdx.x] = x;
  __syncthreads();
  for (int s = kNormThreads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

// Stage 1 of grad_clip.cpp grad_sq_sum: block b's threads stride over the gradients with a stride
// fixed by n (gridDim.x * kNormThreads), squaring each (exact in double), then a block tree.
__global__ void sq_sum_partial_kernel(double* __restrict__ partial, const float* __restrict__ g, int64_t n) {
  __shared__ double sh[kNormThreads];
  double acc = 0;
  const int64_t stride = int64_t(gridDim.x) * kNormThreads;
  for (int64_t i = int64_t(blockIdx.x) * kNormThreads + threadIdx.x; i < n; i += stride) {
    const double x = g[i];
    acc += x * x;
  }
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Stage 2: one block adds the partial sums, thread t taking t, t + 512, ..., then a block tree.
__global__ void sq_sum_final_kernel(double* __restrict__ sum, const double* __restrict__ partial, int parts) {
  __shared__ double sh[kNormThreads];
  double acc = 0;
  for (int p = threadIdx.x; p < parts; p += kNormThreads) acc += partial[p];
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) *sum = s;
}

// grad_clip.cpp: clip_grad_norm's sqrt of the summed squares (double), then clip_coef in fp32
// ((float(norm) + float(1e-6)) reciprocal times float(max_norm)) and clip_to_norm's choice of
// scaling only by a coefficient below 1 (or NaN).
__global__ void clip_coef_kernel(float* coef, double* norm, const double* sq_sum, float eps, float max_norm,
                                 bool clip) {
  const double nrm = __dsqrt_rn(*sq_sum);
  if (norm) *norm = nrm;
  if (!clip) {
    *coef = 1.f;
    return;
  }
  const float denom = __fadd_rn(__double2float_rn(nrm), eps);
  const float c = __fmul_rn(__fdiv_rn(1.f, denom), max_norm);
  *coef = c >= 1.f ? 1.f : c;
}

unsigned blocks_for(int64_t n, int threads, const char* what) {
  const int64_t b = (n + threads - 1) / threads;
  if (b > INT32_MAX) fail("{}: {} elements need {} blocks, more than a grid holds", what, n, b);
  return unsigned(b);
}

}  // namespace

AdamWScalars adamw_scalars(const AdamWHyper& h, double lr, int64_t t) {
  if (t < 1) fail("adamw_scalars: step count {} (the first step is 1)", t);
  // As AdamW::step: Python floats (double) for the bias corrections, rounded to fp32 at the end.
  const double td = double(t);
  const double bias_correction1 = 1 - std::pow(h.beta1, td);
  const double bias_correction2 = 1 - std::pow(h.beta2, td);
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  AdamWScalars k;
  k.lerp_w = float(1 - h.beta1);
  k.beta2 = float(h.beta2);
  k.one_minus_beta2 = float(1 - h.beta2);
  k.bc2_sqrt = float(bias_correction2_sqrt);
  k.eps = float(h.eps);
  k.neg_step_size = float(-step_size);
  k.decay = float(1 - lr * h.weight_decay);
  return k;
}

void adamw_step(const AdamWRange& r, const AdamWScalars& k, const float* grad_scale, float host_grad_scale,
                cudaStream_t stream) {
  if (r.n < 0 || r.offset < 0) fail("adamw_step: range of {} elements at offset {}", r.n, r.offset);
  if (r.n_bounds < 0 || r.n_bounds % 2 != 0 || (r.n_bounds > 0 && !r.no_decay_bounds))
    fail("adamw_step: {} no-decay bounds (pairs [begin, end) expected){}", r.n_bounds,
         r.no_decay_bounds ? "" : ", and no pointer to them");
  if (r.n == 0) return;
  if (!r.params || !r.grads || !r.m || !r.v)
    fail("adamw_step: a null pointer among params, grads, m, v for a range of {} elements at offset {}", r.n,
         r.offset);
  const unsigned blocks = blocks_for(r.n, kAdamWThreads, "adamw_step");
  adamw_kernel<<<blocks, kAdamWThreads, 0, stream>>>(r, k, grad_scale, host_grad_scale);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void grad_sq_sum(double* sum, const float* grads, int64_t n, double* workspace, cudaStream_t stream) {
  if (n < 0) fail("grad_sq_sum: {} elements", n);
  if (!sum || !workspace || (n > 0 && !grads)) fail("grad_sq_sum: a null pointer (sum, workspace or grads)");
  // The partition depends on n only (not on the device), so the order of the sum does too.
  const int parts = int(std::clamp<int64_t>((n + kNormThreads - 1) / kNormThreads, 1, kGradSqSumWorkspace));
  sq_sum_partial_kernel<<<parts, kNormThreads, 0, stream>>>(workspace, grads, n);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  sq_sum_final_kernel<<<1, kNormThreads, 0, stream>>>(sum, workspace, parts);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void clip_coef(float* coef, double* norm, const double* sq_sum, double max_norm, cudaStream_t stream) {
  if (!coef || !sq_sum) fail("clip_coef: a null pointer (coef or sq_sum)");
  clip_coef_kernel<<<1, 1, 0, stream>>>(coef, norm, sq_sum, float(1e-6), float(max_norm), max_norm > 0);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
