#pragma once
// The MLP's element-wise ops on the GPU, fp32, the CUDA form of src/fusellm/model/activations.cpp
// (transformers' ACT2FN; that file states each formula):
//   activation:        out[r, c] = act(x[r, c])                          (out may be x)
//   gated_activation:  out[r, c] = act(gu[r, c]) * gu[r, n + c], c < n   (out may be gu: LlamaMLP's
//                      [gate | up], act(gate) * up left in the gate half)
//   clamp:             x = min(max(x, -c), c)                             (MPT's clip_qkv)
// Device pointers, strided rows, queued on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/act_kind.cuh"

namespace fusellm::cuda {

void activation_forward(ActKind a, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t rows, int64_t cols,
                        cudaStream_t stream);
// gate_up [rows, 2 n] (ld ldg), out [rows, n] (ld ldo).
void gated_activation_forward(ActKind a, const float* gate_up, int64_t ldg, float* out, int64_t ldo, int64_t rows,
                              int64_t n, cudaStream_t stream);
void clamp_forward(float* x, int64_t ldx, int64_t rows, int64_t cols, float c, cudaStream_t stream);

}  // namespace fusellm::cuda
