#pragma once
// Causal self-attention over packed documents on the GPU, fp32, the CUDA form of
// src/fusellm/model/attention.cpp's causal_attention() (which states the math): for query i of
// head h (KV head g = h / (H / KV)), over keys j with s(i) <= j <= i,
//   s(i) = max(doc_start[i], i - window + 1)   (the window term only when window > 0),
//   p_ij = softmax_j(scale q_i . k_j + slope_h (j - i)),   out_i = sum_j p_ij v_j
// qkv [T, (H + 2 KV) D] (columns q heads | k heads | v heads, ld ldq), out [T, H D] (ld ldo),
// doc_start [T] and alibi [H] (nullptr: none) on the device; queued on `stream`. head_dim <= 256.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

constexpr int64_t kAttentionMaxHeadDim = 256;

void attention_forward(const float* qkv, int64_t ldq, const int32_t* doc_start, int64_t T, int64_t heads,
                       int64_t kv_heads, int64_t head_dim, float scale, int64_t window, const float* alibi,
                       float* out, int64_t ldo, cudaStream_t stream);

}  // namespace fusellm::cuda
