#include <cuda_runtime.h>

#include <cmath>

#include "cuda/attention.cuh"
#include "cuda/cuda_check.hpp"

namespace fusellm::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRows = 8;      // query rows per block, one warp each
constexpr int kKeys = kWarp;  // keys per shared-memory tile, one lane each for the scores
constexpr unsigned kFull = 0xffffffffu;

__device__ float warp_max(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(kFull, v, off));
  return v;
}
__device__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

__device__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// First key query i sees: its document's start, or the window's when that is later.
__device__ int64_t first_key(const int32_t* doc_start, int64_t i, int64_t window) {
  const int64_t f = doc_start[i];
  return window > 0 && i - window + 1 > f ? i - window + 1 : f;
}

// K's row stride in shared memory. Lanes read rows ldk floats apart: with D % 4 == 0, as float4
// in phases of 8 lanes, conflict-free when ldk / 4 is odd (D + 4 for the usual head sizes, 64,
// 80, 96, 128, 256); else scalar, conflict-free when ldk is odd.
__host__ __device__ int k_stride(int D) { return D % 4 == 0 ? D + 4 : D + 1; }

// q . k over D dims, summed in order d = 0, 1, ... (float4 loads when D % 4 == 0: q and k are then
// 16-byte aligned).
__device__ float dot_product(const float* q, const float* k, int D) {
  float dot = 0.f;
  if (D % 4 == 0) {
    for (int d = 0; d < D; d += 4) {
      const float4 qv = *reinterpret_cast<const float4*>(q + d), kv = *reinterpret_cast<const float4*>(k + d);
      dot += qv.x * kv.x;
      dot += qv.y * kv.y;
      dot += qv.z * kv.z;
      dot += qv.w * kv.w;
    }
  } else {
    for (int d = 0; d < D; ++d) dot += q[d] * k[d];
  }
  return dot;
}

struct Params {
  const float* qkv;
  int64_t ldq;
  const int32_t* doc_start;
  int64_t T;
  int H, KV, D;
  float scale;
  int64_t window;
  const float* alibi;
  float* out;
  int64_t ldo;
};

// model/attention.cpp, causal_attention(): block (query tile of kRows rows, head h), warp w the
// query i = tile start + w. The block walks the keys its rows can see in tiles of 32, staged in
// shared memory and shared by its 8 rows (K's rows padded, k_stride: lane = key reads a column
// without bank conflicts, as float4 when D % 4 == 0). Per tile and row: lane j scores key j (masked: -inf), then
// an online softmax (running max m, normalizer l; the output rescaled by exp(m_old - m_new)) and
// out += p_j v_j with lane = dimension (P dims per lane, d = lane + 32 k). The CPU takes the max
// over the whole row first; the two agree up to rounding. Every row sees key i, so l > 0.
template <int P>
__global__ void attention_kernel(Params a) {
  extern __shared__ float4 smem4[];  // float4: 16-byte aligned
  const int D = a.D, ldk = k_stride(D);
  float* Ks = reinterpret_cast<float*>(smem4);  // [kKeys][ldk]
  float* Vs = Ks + kKeys * ldk;                 // [kKeys][D]
  float* Qs = Vs + kKeys * D;                   // [kRows][D]
  const int h = blockIdx.y, g = h / (a.H / a.KV), warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t i0 = int64_t(blockIdx.x) * kRows, i_last = min64(a.T, i0 + kRows) - 1, i = i0 + warp;
  const bool active = i <= i_last;
  int64_t lo = i_last;  // the keys the block's rows see: [lo, i_last]
  for (int64_t r = i0; r <= i_last; ++r) lo = min64(lo, first_key(a.doc_start, r, a.window));
  const int64_t first = active ? first_key(a.doc_start, i, a.window) : 0;
  const float* kcol = a.qkv + int64_t(a.H + g) * D;
  const float* vcol = a.qkv + int64_t(a.H + a.KV + g) * D;
  float* q = Qs + warp * D;
  if (active)
    for (int d = lane; d < D; d += kWarp) q[d] = a.qkv[i * a.ldq + int64_t(h) * D + d];
  const float slope = a.alibi ? a.alibi[h] : 0.f;
  float m = -INFINITY, l = 0.f, o[P] = {};
  for (int64_t j0 = lo; j0 <= i_last; j0 += kKeys) {
    __syncthreads();  // the previous tile is consumed (the first time: q is written)
    for (int idx = threadIdx.x; idx < kKeys * D; idx += blockDim.x) {
      const int jj = idx / D, d = idx % D;
      const int64_t j = j0 + jj;
      Ks[jj * ldk + d] = j <= i_last ? kcol[j * a.ldq + d] : 0.f;
      Vs[jj * D + d] = j <= i_last ? vcol[j * a.ldq + d] : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    const int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j >= first && j <= i) {
      const float dot = dot_product(q, Ks + lane * ldk, D);
      s = a.scale * dot;
      if (a.alibi) s += slope * float(j - i);
    }
    const float tmax = warp_max(s);
    if (tmax == -INFINITY) continue;  // no key of this tile is visible to row i (warp-uniform)
    const float m_new = fmaxf(m, tmax), corr = expf(m - m_new);
    const float p = s == -INFINITY ? 0.f : expf(s - m_new);
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int k = 0; k < P; ++k) o[k] *= corr;
    for (int jj = 0; jj < kKeys; ++jj) {
      const float pj = __shfl_sync(kFull, p, jj);
      if (pj == 0.f) continue;  // warp-uniform: pj is broadcast
      const float* v = Vs + jj * D;
#pragma unroll
      for (int k = 0; k < P; ++k)
        if (lane + kWarp * k < D) o[k] += pj * v[lane + kWarp * k];
    }
    m = m_new;
  }
  if (!active) return;
  const float inv = 1.f / l;
  float* orow = a.out + i * a.ldo + int64_t(h) * D;
#pragma unroll
  for (int k = 0; k < P; ++k)
    if (lane + kWarp * k < D) orow[lane + kWarp * k] = o[k] * inv;
}

template <int P>
void launch(const Params& a, cudaStream_t stream) {
  const size_t smem = sizeof(float) * size_t(kKeys * k_stride(a.D) + kKeys * a.D + kRows * a.D);
  if (smem > 48 * 1024)  // above the default limit (head_dim > 160): opt in
    FUSELLM_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(smem)));
  const dim3 grid(unsigned((a.T + kRows - 1) / kRows), unsigned(a.H));
  attention_kernel<P><<<grid, kRows * kWarp, smem, stream>>>(a);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void attention_forward(const float* qkv, int64_t ldq, const int32_t* doc_start, int64_t T, int64_t heads,
                       int64_t kv_heads, int64_t head_dim, float scale, int64_t window, const float* alibi,
                       float* out, int64_t ldo, cudaStream_t stream) {
  if (T == 0 || heads == 0 || head_dim == 0) return;
  const Params a{qkv, ldq, doc_start, T, int(heads), int(kv_heads), int(head_dim), scale, window, alibi, out, ldo};
  if (head_dim <= 32) return launch<1>(a, stream);
  if (head_dim <= 64) return launch<2>(a, stream);
  if (head_dim <= 128) return launch<4>(a, stream);
  return launch<8>(a, stream);  // the caller keeps head_dim <= kAttentionMaxHeadDim
}

}  // namespace fusellm::cuda
