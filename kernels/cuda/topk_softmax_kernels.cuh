#pragma once
// The top-k softmax's kernels (topk_softmax.cu states their math), templated on their
// configuration: topk_softmax.cu launches the configuration that won on an H200
// (benchmarks/RESULTS.md, dev/cuda's variants), dev/cuda benchmarks the others.
//
// One warp per row; each lane keeps its K best keys sorted in registers. What makes it fast: the
// warp shares a threshold tau, a lower bound of the row's k-th largest value, namely the k-th
// largest of the lanes' current best values (k <= 32 distinct logits are >= it, so a logit below
// tau cannot be in the top k). A lane inserts only logits >= max(its K-th best, tau); tau is
// refreshed (32 shuffles) after each of the first 4 batches of loads and every 4th batch after
// (and before the first batch's insertions, from the lanes' batch maxima), so insertions (a K-step
// compare-and-swap pass on 64-bit keys the warp waits for) become as rare as new entries of the
// warp's running top k; without tau nearly every logit of a lane's first few hundred was inserted
// (22 % of the copy bandwidth against 63 %). The batch loop runs warp-uniformly (lanes past the
// row's end consume nothing) so the shuffles are safe. With keep_tail, the online max and sum of
// exp(beta (z - max)) takes a batch's max first: one exp per logit and one rescale per batch.
// Configurations: kWarps warps (rows) per block, kUnroll 16-byte loads in flight per lane, and
// kStaged: a batch with a candidate goes through the lane's own shared-memory slots into one
// rolled insertion loop, with a register cap (__launch_bounds__ kMinBlocks) for more warps per SM.
// k > 32: an exact fallback, k rounds over the row.
//
// Internal to kernels/cuda and dev/cuda. Everything is in an unnamed namespace: each .cu file that
// includes this gets its own copy (no duplicate host stubs when both are linked into one binary).
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "cuda/fusion_row_math.cuh"

namespace fusellm::cuda::topk_rows {
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces): see above

constexpr unsigned kFull = 0xffffffffu;

struct TopkArgs {
  const float* logits;  // [T, V]
  int64_t T, V;
  int k;
  float beta;
  int32_t* ids;             // [T, k]
  float* probs;             // [T, k]
  float* tail;              // [T] with keep_tail
  unsigned long long* bad;  // first row with a non-finite logit (atomicMin)
};

__device__ __forceinline__ unsigned long long warp_max(unsigned long long x) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long y = __shfl_xor_sync(kFull, x, o);
    x = y > x ? y : x;
  }
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  return x;
}
__device__ __forceinline__ uint32_t warp_umax(uint32_t x) {
  for (int o = 16; o > 0; o >>= 1) x = max(x, __shfl_xor_sync(kFull, x, o));
  return x;
}

// The k-th largest (1 <= k <= 32) of the 32 lanes' v (no NaN): each lane counts the lanes ahead of
// it (larger, or equal with a smaller lane index: the ranks are a permutation), the lane of rank
// k - 1 broadcasts. Called by the whole warp.
__device__ __forceinline__ float warp_kth_largest(float v, int k, int lane) {
  int ahead = 0;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const float u = __shfl_sync(kFull, v, j);
    ahead += (u > v || (u == v && j < lane)) ? 1 : 0;
  }
  const unsigned who = __ballot_sync(kFull, ahead == k - 1);
  return __shfl_sync(kFull, v, __ffs(int(who)) - 1);
}

// Per row: the k best (value, id) keys and their softmax (the math in topk_softmax.cu;
// kernels/kokkos/topk_softmax.hpp, TopkSoftmaxFunctor).
// long: one warp per row keeps each lane's K best in registers through the scan, the threshold
// refreshes, the warp merge and the normalization; the register arrays are indexed by unrolled
// constants only, which splitting the kernel would not guarantee.
template <int K, bool kTail, int kWarps, int kUnroll, int kMinBlocks, bool kStaged>
__global__ void __launch_bounds__(32 * kWarps, kMinBlocks) topk_select_kernel(TopkArgs a) {
  // kStaged: a batch with a candidate goes through this lane's own shared-memory slots and one
  // rolled insertion loop (one copy of the insertion code instead of 4 kUnroll: fewer registers).
  __shared__ float4 sbuf[kStaged ? kWarps * kUnroll * 32 : 1];
  const int lane = int(threadIdx.x % 32);
  const float beta = a.beta;
  const int64_t V = a.V;
  const int k = a.k;
  for (int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; r < a.T;
       r += int64_t(gridDim.x) * kWarps) {
    const float* z = a.logits + r * V;
    unsigned long long h[K];  // this lane's best keys, descending; 0 = empty
#pragma unroll
    for (int i = 0; i < K; ++i) h[i] = 0ull;
    float thr = -INFINITY;  // value of h[K - 1] once the list is full
    float tau = -INFINITY;  // the warp's lower bound of the row's k-th largest value
    uint32_t amax = 0;      // max |bits|: >= 0x7f800000 when a logit is NaN or +-Inf
    float m = -FLT_MAX, se = 0.f;  // keep_tail: online max and sum of exp(beta (z - m))

    auto insert = [&](float x, int32_t id) {
      if (x >= fmaxf(thr, tau)) {
        const unsigned long long key = row::order_key(x, id);
        if (key > h[K - 1]) {
          unsigned long long c = key;
#pragma unroll
          for (int i = 0; i < K; ++i) {
            const unsigned long long hi = h[i];
            const bool gt = c > hi;
            h[i] = gt ? c : hi;
            c = gt ? hi : c;
          }
          thr = h[K - 1] ? row::order_key_value(h[K - 1]) : -INFINITY;
        }
      }
    };
    auto consume_one = [&](float x, int32_t id) {  // head and tail logits, one at a time
      amax = max(amax, __float_as_uint(x) & 0x7fffffffu);
      insert(x, id);
      if constexpr (kTail) {
        if (x > m) {
          se *= expf(beta * (m - x));
          m = x;
        }
        se += expf(beta * (x - m));
      }
    };

    // Slots [full_lo, full_hi) lie inside the row (16-byte loads); the head [0, head_end) and the
    // tail [tail_begin, V) (< 4 logits each) are read one by one (as the current kernel).
    const int off = int((reinterpret_cast<uintptr_t>(z) & 15u) / sizeof(float));
    const int64_t full_lo = off ? 1 : 0;
    const int64_t full_hi = (int64_t(off) + V) / 4;
    const int64_t head_end = V < full_lo * 4 - off ? V : full_lo * 4 - off;
    const int64_t tail_begin = head_end > full_hi * 4 - off ? head_end : full_hi * 4 - off;
    if (lane < head_end) consume_one(z[lane], lane);
    int64_t batch = 0;
    for (int64_t b0 = full_lo; b0 < full_hi; b0 += 32 * kUnroll, ++batch) {  // warp-uniform
      float4 buf[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t s = b0 + lane + int64_t(u) * 32;
        buf[u] = s < full_hi ? __ldcs(reinterpret_cast<const float4*>(z + (s * 4 - off)))
                             : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
      }
      // Slots past the row's end hold -Inf: they add nothing to the max, the non-finite check
      // (skipped for them), the insertions (skipped) or the sum of exps (exp(-Inf) = 0).
      float bm = -INFINITY;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const float4 q = buf[u];
        if (b0 + lane + int64_t(u) * 32 < full_hi)
          amax = max(amax, max(max(__float_as_uint(q.x) & 0x7fffffffu, __float_as_uint(q.y) & 0x7fffffffu),
                               max(__float_as_uint(q.z) & 0x7fffffffu, __float_as_uint(q.w) & 0x7fffffffu)));
        bm = fmaxf(bm, fmaxf(fmaxf(q.x, q.y), fmaxf(q.z, q.w)));
      }
      // First batch: tau from the lanes' batch maxima (distinct logits), before the lists fill.
      if (batch == 0) tau = warp_kth_largest(bm, k, lane);
      if (kStaged && bm >= fmaxf(thr, tau)) {
        float4* mine = sbuf + (threadIdx.x / 32) * (kUnroll * 32) + lane;  // [u * 32]: this lane's
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) mine[u * 32] = buf[u];
#pragma unroll 1
        for (int j = 0; j < 4 * kUnroll; ++j) {
          const int64_t s = b0 + lane + int64_t(j / 4) * 32;
          if (s < full_hi)
            insert(reinterpret_cast<const float*>(mine + (j / 4) * 32)[j % 4], int32_t(s * 4 - off + j % 4));
        }
      } else if (!kStaged && bm >= fmaxf(thr, tau)) {  // some logit of this batch may enter the list
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t s = b0 + lane + int64_t(u) * 32;
          if (s < full_hi) {
            const int32_t v = int32_t(s * 4 - off);
            insert(buf[u].x, v);
            insert(buf[u].y, v + 1);
            insert(buf[u].z, v + 2);
            insert(buf[u].w, v + 3);
          }
        }
      }
      if constexpr (kTail) {
        if (bm > m) {
          se *= expf(beta * (m - bm));
          m = bm;
        }
        float cs = 0.f;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const float4 q = buf[u];  // -Inf (past the end) adds exp(-Inf) = 0
          cs += expf(beta * (q.x - m)) + expf(beta * (q.y - m)) + expf(beta * (q.z - m)) +
                expf(beta * (q.w - m));
        }
        se += cs;
      }
      if (batch < 4 || (batch & 3) == 3)
        tau = warp_kth_largest(h[0] ? row::order_key_value(h[0]) : -INFINITY, k, lane);
    }
    if (tail_begin + lane < V) consume_one(z[tail_begin + lane], int32_t(tail_begin + lane));

    if (warp_umax(amax) >= 0x7f800000u) {
      if (lane == 0) atomicMin(a.bad, static_cast<unsigned long long>(r));
      continue;
    }

    // Merge (as the current kernel): k rounds of the largest head among the lanes.
    int32_t my_id = 0;
    float my_v = 0.f, m0 = 0.f;
    for (int rr = 0; rr < k; ++rr) {
      const unsigned long long best = warp_max(h[0]);
      if (h[0] == best) {  // keys are unique: one lane owns it and drops it
#pragma unroll
        for (int i = 0; i + 1 < K; ++i) h[i] = h[i + 1];
        h[K - 1] = 0ull;
      }
      const float v = row::order_key_value(best);
      if (rr == 0) m0 = v;
      if (lane == rr) {
        my_id = row::order_key_id(best);
        my_v = v;
      }
    }

    const bool mine = lane < k;
    const float e = mine ? expf(beta * (my_v - m0)) : 0.f;
    float d;
    if constexpr (kTail) {
      float M = m, S = se;
      for (int o = 16; o > 0; o >>= 1) {
        const float M2 = __shfl_xor_sync(kFull, M, o), S2 = __shfl_xor_sync(kFull, S, o);
        const float Mn = M2 > M ? M2 : M;
        S = S * expf(beta * (M - Mn)) + S2 * expf(beta * (M2 - Mn));
        M = Mn;
      }
      d = S * expf(beta * (M - m0));  // M == m0 (both the row max)
    } else {
      d = warp_sum(e);
    }
    const float p = e * (1.f / d);
    if (mine) {
      a.ids[r * k + lane] = my_id;
      a.probs[r * k + lane] = p;
    }
    if constexpr (kTail) {
      const float kept = warp_sum(mine ? p : 0.f);
      if (lane == 0) a.tail[r] = kept < 1.f ? 1.f - kept : 0.f;
    }
  }
}

// k > 32, as the CPU does for k > 32: k rounds of "the largest key below the previous round's"
// over the row (O(k V), exact).
template <bool kTail>
__global__ void __launch_bounds__(32) topk_softmax_rounds_kernel(TopkArgs a) {
  const int lane = int(threadIdx.x);
  const float beta = a.beta;
  const int64_t V = a.V;
  const int k = a.k;
  for (int64_t r = blockIdx.x; r < a.T; r += gridDim.x) {
    const float* z = a.logits + r * V;
    uint32_t amax = 0;
    for (int64_t v = lane; v < V; v += 32) amax = max(amax, __float_as_uint(z[v]) & 0x7fffffffu);
    if (warp_umax(amax) >= 0x7f800000u) {
      if (lane == 0) atomicMin(a.bad, static_cast<unsigned long long>(r));
      continue;
    }
    int32_t* rid = a.ids + r * k;
    float* rp = a.probs + r * k;
    unsigned long long prev = ~0ull;
    float m0 = 0.f;
    for (int rr = 0; rr < k; ++rr) {
      unsigned long long best = 0ull;
      for (int64_t v = lane; v < V; v += 32) {
        const unsigned long long key = row::order_key(z[v], int32_t(v));
        if (key < prev && key > best) best = key;
      }
      best = warp_max(best);
      prev = best;
      if (rr == 0) m0 = row::order_key_value(best);
      if (lane == 0) {
        rid[rr] = row::order_key_id(best);
        rp[rr] = row::order_key_value(best);
      }
    }
    __syncwarp();  // lane 0's values are visible to the warp
    float d = 0.f;
    if constexpr (kTail) {
      for (int64_t v = lane; v < V; v += 32) d += expf(beta * (z[v] - m0));
    } else {
      for (int rr = lane; rr < k; rr += 32) d += expf(beta * (rp[rr] - m0));
    }
    d = warp_sum(d);
    const float inv = 1.f / d;
    float kept = 0.f;
    for (int rr = lane; rr < k; rr += 32) {
      const float p = expf(beta * (rp[rr] - m0)) * inv;
      rp[rr] = p;
      kept += p;
    }
    if constexpr (kTail) {
      kept = warp_sum(kept);
      if (lane == 0) a.tail[r] = kept < 1.f ? 1.f - kept : 0.f;
    }
  }
}

template <int K, int kWarps, int kUnroll, int kMinBlocks, bool kStaged>
void launch_k(const TopkArgs& a, bool tail, cudaStream_t stream) {
  const unsigned blocks = unsigned(std::min<int64_t>((a.T + kWarps - 1) / kWarps, int64_t(1) << 30));
  if (tail)
    topk_select_kernel<K, true, kWarps, kUnroll, kMinBlocks, kStaged><<<blocks, 32 * kWarps, 0, stream>>>(a);
  else
    topk_select_kernel<K, false, kWarps, kUnroll, kMinBlocks, kStaged><<<blocks, 32 * kWarps, 0, stream>>>(a);
}

// Launches one configuration for any k: the lanes' list capacity K is the smallest of 1, 2, 4, 8,
// 12, 16, 24, 32 that holds k (fewer registers for small k); k > 32 takes the rounds kernel.
template <int kWarps, int kUnroll, int kMinBlocks, bool kStaged>
void launch_topk(const TopkArgs& a, bool kt, cudaStream_t stream) {
  const int k = a.k;
  if (k <= 1)
    launch_k<1, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 2)
    launch_k<2, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 4)
    launch_k<4, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 8)
    launch_k<8, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 12)
    launch_k<12, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 16)
    launch_k<16, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 24)
    launch_k<24, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else if (k <= 32)
    launch_k<32, kWarps, kUnroll, kMinBlocks, kStaged>(a, kt, stream);
  else {
    const unsigned blocks = unsigned(std::min<int64_t>(a.T, int64_t(1) << 30));
    if (kt)
      topk_softmax_rounds_kernel<true><<<blocks, 32, 0, stream>>>(a);
    else
      topk_softmax_rounds_kernel<false><<<blocks, 32, 0, stream>>>(a);
  }
}

}  // namespace
}  // namespace fusellm::cuda::topk_rows
