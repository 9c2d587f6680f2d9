#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/bf16_convert.cuh"
#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond: enough blocks to fill any device

// out[i] = bf16(in[i]), round to nearest even (cvt.rn.bf16.f32): c10::BFloat16's
// round_to_nearest_even for every non-NaN value.
__global__ void f32_to_bf16_kernel(__nv_bfloat16* __restrict__ out, const float* __restrict__ in, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __float2bfloat16_rn(in[i]);
}

// out[i] = float(in[i]): the bf16 bits in the high half of an fp32, exact.
__global__ void bf16_to_f32_kernel(float* __restrict__ out, const __nv_bfloat16* __restrict__ in, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __bfloat162float(in[i]);
}

// out[r * out_ld + c] = bf16(in[r * in_ld + c]): one grid-stride loop over the rows x cols elements.
__global__ void f32_to_bf16_2d_kernel(__nv_bfloat16* __restrict__ out, int64_t out_ld, const float* __restrict__ in,
                                      int64_t in_ld, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / cols, c = i - r * cols;
    out[r * out_ld + c] = __float2bfloat16_rn(in[r * in_ld + c]);
  }
}

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)); }

void check_args(const void* out, const void* in, int64_t n, const char* what) {
  if (n < 0) fail("{}: {} elements", what, n);
  if (n > 0 && (!out || !in)) fail("{}: a null pointer for {} elements", what, n);
}

}  // namespace

void f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream) {
  check_args(out, in, n, "f32_to_bf16");
  if (n == 0) return;
  f32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, n);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void bf16_to_f32(float* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream) {
  check_args(out, in, n, "bf16_to_f32");
  if (n == 0) return;
  bf16_to_f32_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, n);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

void f32_to_bf16_2d(__nv_bfloat16* out, int64_t out_ld, const float* in, int64_t in_ld, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  if (rows < 0 || cols < 0 || in_ld < cols || out_ld < cols)
    fail("f32_to_bf16_2d: [{}, {}] with leading dimensions {} (in) and {} (out)", rows, cols, in_ld, out_ld);
  check_args(out, in, rows * cols, "f32_to_bf16_2d");
  if (rows == 0 || cols == 0) return;
  f32_to_bf16_2d_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(out, out_ld, in, in_ld, rows, cols);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
