#pragma once
// Whole-buffer conversions between fp32 and bf16 on the GPU, for the bf16 copy of the weights a
// bf16 forward reads and for checkpoints: fp32 -> bf16 rounds to nearest, ties to even, as
// PyTorch's .to(torch.bfloat16) (c10::BFloat16's round_to_nearest_even; overflow gives Inf, and a
// NaN stays a NaN, though not necessarily with torch's payload 0x7FC0); bf16 -> fp32 is exact.
// Host declarations; kernels in bf16_convert.cu. Device pointers; n may be 0.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream = nullptr);
void bf16_to_f32(float* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream = nullptr);
// A row-major [rows, cols] fp32 view (leading dimension in_ld) into a bf16 one (out_ld), the same
// rounding: the operands of the bf16 GEMMs (CudaBackend with GemmMath::kBf16), repacked with a
// leading dimension cuBLASLt's tensor-core kernels take. The padding of out's rows is not written.
void f32_to_bf16_2d(__nv_bfloat16* out, int64_t out_ld, const float* in, int64_t in_ld, int64_t rows, int64_t cols,
                    cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
