#pragma once
// Backward of causal self-attention over packed documents on the GPU, fp32, the CPU reference's
// math (src/fusellm/model/attention_backward.cpp, model::causal_attention_backward):
//   S = scale Q K^T + slope_h (j - i) + mask,  P = softmax_rows(S),  O = P V
//   dV = P^T dO,  dP = dO V^T,  dS = P (dP - D), D_i = dO_i . O_i,  dQ = scale dS K,  dK = scale dS^T Q
// with grouped-query attention (the H / KV query heads of a group share one K and V: their dK
// and dV add up). P is recomputed from Q and K, never stored. Key j is visible from query i iff
// s(i) <= j <= i, s(i) = max(doc_start[i], i - window + 1) (no window when sliding_window is 0);
// doc_start must be non-decreasing with doc_start[i] <= i (packed documents, as the forward).
// Writes every column of dqkv's rows (dQ, dK and dV are written, not accumulated); dqkv must not
// overlap qkv, out or dout (other warps still read the rows one warp writes).
//
// Two launches: one warp per (query head, query) computes the row's softmax statistics, D_i and
// dQ_i, keeping (max, 1 / sum, D_i) in the workspace; then one warp per (KV head, key) sums dK_j
// and dV_j over the group's heads and the queries that see j. No atomics: each output row has
// one writer, so the result is deterministic. head_dim <= 256.
//
// Device pointers (alibi too: [heads] slopes, nullptr for none); leading dimensions in elements;
// `workspace` device memory of attention_backward_workspace_bytes(T, heads) bytes, used only by
// the kernels this call queues on `stream`. Throws fusellm::Error on a CUDA error or a head_dim
// past 256.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace fusellm::cuda {

struct AttentionBackwardArgs {
  const float* qkv = nullptr;  // [T, (H + 2 KV) D]: q heads | k heads | v heads (after RoPE)
  int64_t ld_qkv = 0;
  const float* out = nullptr;  // [T, H D]: the forward's output O
  int64_t ld_out = 0;
  const float* dout = nullptr;  // [T, H D]: dO
  int64_t ld_dout = 0;
  const int32_t* doc_start = nullptr;  // [T]
  float* dqkv = nullptr;               // [T, (H + 2 KV) D]
  int64_t ld_dqkv = 0;
  int64_t T = 0, heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.f;
  int64_t sliding_window = 0;
  const float* alibi = nullptr;  // [heads] or nullptr
};

size_t attention_backward_workspace_bytes(int64_t T, int64_t heads);

void attention_backward(const AttentionBackwardArgs& a, void* workspace, cudaStream_t stream);

}  // namespace fusellm::cuda
