// Causal attention's backward on the GPU (attention_backward.cuh states the math and the plan).
// A warp holds one row of a head (q_i, dO_i, or k_j, v_j): lane l owns dims l, l + 32, ...
// (NPL = dims per lane), so every q.k is a lane-local sum then a butterfly over the warp, which
// leaves the identical value in every lane. Both kernels compute a score with the same explicit
// roundings (score() below), so the P of the key-side kernel is bit for bit the query side's.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/attention_backward.cuh"
#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kStats = 3;  // per (head, query): max score, 1 / sum exp, D_i

// Every lane ends with the same bits: each butterfly step adds the same two values, swapped.
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

template <int NPL>
__device__ __forceinline__ void load_row(const float* p, int64_t D, int lane, float (&r)[NPL]) {
#pragma unroll
  for (int k = 0; k < NPL; ++k) {
    const int64_t d = lane + int64_t(k) * kWarp;
    r[k] = d < D ? p[d] : 0.f;
  }
}

template <int NPL>
__device__ __forceinline__ float warp_dot(const float (&a)[NPL], const float (&b)[NPL]) {
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NPL; ++k) s = __fmaf_rn(a[k], b[k], s);
  return warp_sum(s);
}

// scale q.k + slope (j - i), with pinned roundings (see the file comment).
template <int NPL>
__device__ __forceinline__ float score(const float (&q)[NPL], const float (&k)[NPL], float scale, float slope,
                                       int64_t i, int64_t j) {
  return __fadd_rn(__fmul_rn(scale, warp_dot(q, k)), __fmul_rn(slope, float(j - i)));
}

// s(i): the first key query i sees (its document's start, or the sliding window's).
__device__ __forceinline__ int64_t first_visible(const int32_t* doc_start, int64_t i, int64_t window) {
  const int64_t f = doc_start[i];
  return window > 0 && i - window + 1 > f ? i - window + 1 : f;
}

// Query side, one warp per (head h = blockIdx.y, query i): the row's softmax statistics (online
// max and sum), D_i = dO_i . O_i, then dQ_i = sum_j dS_ij K_j with dS_ij = scale P_ij (dP_ij - D_i),
// dP_ij = dO_i . V_j (attention_backward.cpp's block_backward, one row at a time).
template <int NPL>
__global__ void attention_backward_query_kernel(AttentionBackwardArgs a, float* stats) {
  const int lane = threadIdx.x % kWarp;
  const int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp, h = blockIdx.y;
  if (i >= a.T) return;
  const int64_t H = a.heads, KV = a.kv_heads, D = a.head_dim, g = h / (H / KV);
  const float slope = a.alibi ? a.alibi[h] : 0.f;
  const int64_t first = first_visible(a.doc_start, i, a.sliding_window);
  const float* kcol = a.qkv + (H + g) * D;
  const float* vcol = a.qkv + (H + KV + g) * D;
  float q[NPL], dO[NPL], kj[NPL], vj[NPL];
  load_row(a.qkv + i * a.ld_qkv + h * D, D, lane, q);
  load_row(a.dout + i * a.ld_dout + h * D, D, lane, dO);
  float m = -INFINITY, l = 0.f;
  for (int64_t j = first; j <= i; ++j) {
    load_row(kcol + j * a.ld_qkv, D, lane, kj);
    const float s = score(q, kj, a.scale, slope, i, j);
    const float m_new = fmaxf(m, s);
    l = l * expf(m - m_new) + expf(s - m_new);
    m = m_new;
  }
  const float inv_l = 1.f / l;
  float o[NPL];
  load_row(a.out + i * a.ld_out + h * D, D, lane, o);
  const float Di = warp_dot(dO, o);
  float dq[NPL] = {};
  for (int64_t j = first; j <= i; ++j) {
    load_row(kcol + j * a.ld_qkv, D, lane, kj);
    load_row(vcol + j * a.ld_qkv, D, lane, vj);
    const float p = expf(score(q, kj, a.scale, slope, i, j) - m) * inv_l;
    const float ds = a.scale * p * (warp_dot(dO, vj) - Di);
#pragma unroll
    for (int k = 0; k < NPL; ++k) dq[k] += ds * kj[k];
  }
  float* dqrow = a.dqkv + i * a.ld_dqkv + h * D;
#pragma unroll
  for (int k = 0; k < NPL; ++k)
    if (lane + int64_t(k) * kWarp < D) dqrow[lane + k * kWarp] = dq[k];
  if (lane == 0) {
    float* st = stats + (h * a.T + i) * kStats;
    st[0] = m, st[1] = inv_l, st[2] = Di;
  }
}

// Key side, one warp per (KV head g = blockIdx.y, key j): over the group's heads h and the
// queries i >= j that see j (a contiguous run, doc_start being non-decreasing),
//   dV_j = sum P_ij dO_i,   dK_j = sum dS_ij Q_i,
// with P_ij recomputed from the query side's statistics.
template <int NPL>
__global__ void attention_backward_key_kernel(AttentionBackwardArgs a, const float* stats) {
  const int lane = threadIdx.x % kWarp;
  const int64_t j = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp, g = blockIdx.y;
  if (j >= a.T) return;
  const int64_t H = a.heads, KV = a.kv_heads, D = a.head_dim, group = H / KV;
  float kj[NPL], vj[NPL], qi[NPL], dO[NPL];
  load_row(a.qkv + j * a.ld_qkv + (H + g) * D, D, lane, kj);
  load_row(a.qkv + j * a.ld_qkv + (H + KV + g) * D, D, lane, vj);
  float dk[NPL] = {}, dv[NPL] = {};
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const float slope = a.alibi ? a.alibi[h] : 0.f;
    for (int64_t i = j; i < a.T && first_visible(a.doc_start, i, a.sliding_window) <= j; ++i) {
      load_row(a.qkv + i * a.ld_qkv + h * D, D, lane, qi);
      load_row(a.dout + i * a.ld_dout + h * D, D, lane, dO);
      const float* st = stats + (h * a.T + i) * kStats;
      const float p = expf(score(qi, kj, a.scale, slope, i, j) - st[0]) * st[1];
      const float ds = a.scale * p * (warp_dot(dO, vj) - st[2]);
#pragma unroll
      for (int k = 0; k < NPL; ++k) {
        dv[k] += p * dO[k];
        dk[k] += ds * qi[k];
      }
    }
  }
  float* dkrow = a.dqkv + j * a.ld_dqkv + (H + g) * D;
  float* dvrow = a.dqkv + j * a.ld_dqkv + (H + KV + g) * D;
#pragma unroll
  for (int k = 0; k < NPL; ++k)
    if (lane + int64_t(k) * kWarp < D) dkrow[lane + k * kWarp] = dk[k], dvrow[lane + k * kWarp] = dv[k];
}

template <int NPL>
void launch(const AttentionBackwardArgs& a, float* stats, cudaStream_t stream) {
  const unsigned row_blocks = unsigned((a.T + kWarpsPerBlock - 1) / kWarpsPerBlock);
  attention_backward_query_kernel<NPL>
      <<<dim3(row_blocks, unsigned(a.heads)), kWarpsPerBlock * kWarp, 0, stream>>>(a, stats);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  attention_backward_key_kernel<NPL>
      <<<dim3(row_blocks, unsigned(a.kv_heads)), kWarpsPerBlock * kWarp, 0, stream>>>(a, stats);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t attention_backward_workspace_bytes(int64_t T, int64_t heads) {
  return size_t(T * heads * kStats) * sizeof(float);
}

void attention_backward(const AttentionBackwardArgs& a, void* workspace, cudaStream_t stream) {
  if (a.heads <= 0 || a.kv_heads <= 0 || a.heads % a.kv_heads)
    fail("attention_backward (cuda): {} heads are not a positive multiple of {} KV heads", a.heads, a.kv_heads);
  if (a.T == 0 || a.head_dim == 0) return;
  float* stats = static_cast<float*>(workspace);
  const int64_t npl = (a.head_dim + kWarp - 1) / kWarp;
  if (npl <= 1) return launch<1>(a, stats, stream);
  if (npl <= 2) return launch<2>(a, stats, stream);
  if (npl <= 4) return launch<4>(a, stats, stream);
  if (npl <= 8) return launch<8>(a, stats, stream);
  fail("attention_backward (cuda): head_dim {} exceeds 256", a.head_dim);
}

}  // namespace fusellm::cuda
