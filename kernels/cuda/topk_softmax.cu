// Top-k with temperature softmax on the GPU (topk_softmax.cuh): reproduces
// kernels/kokkos/topk_softmax.hpp (TopkSoftmaxFunctor, topk_softmax).
//
// The math, for row i with logits z_v, beta = 1 / temperature, the k largest logits
// z_(1) >= ... >= z_(k) (equal logits: ascending id, i.e. the order of the 64-bit keys
// order_key(z_v, v), fusion_row_math.cuh, which is the CPU's order exactly), m = z_(1):
//
//     e_r = exp(beta (z_(r) - m))
//     d   = sum_{r < k} e_r                      (without tail)
//         = sum_v exp(beta (z_v - m))            (keep_tail: the full softmax's denominator)
//     P[i, r] = e_r * (1 / d)
//     tail[i] = 1 - sum_r P[i, r], clamped at 0  (keep_tail)
//
// Cost: one block of one warp per row (so rows need no block barriers; 32 rows per SM in flight).
// Each lane scans its 16-byte slots of the row (coalesced across the warp, 4 loads in flight per
// lane; the row's unaligned head and tail, at most 3 logits each, element by element) and keeps its
// best K keys in registers, sorted, K a compile-time capacity >= k (1, 2, 4, 8, 12, 16, 24, 32):
// a logit is compared with the lane's K-th best value and, only when it is not below it, inserted
// by an unrolled compare-and-swap pass (register indices all compile-time). With keep_tail each
// lane also keeps an online max and sum of exp(beta (z - max)) (one exp per logit), so the row is
// read once. Non-finite logits are detected as the max of |bits| >= the bits of +Inf. The warp then
// merges its 32 sorted lists in k rounds of a shuffle max over the lanes' heads; lane r keeps the
// r-th entry and computes e_r, and d is a warp sum (or the warp-combined online sum).
// k > 32 falls back, as the CPU does for k > 32, to k rounds of "the largest key below the previous
// round's" over the row (O(k V), exact).
//
// The CPU sums d (and the tail's kept mass) in a fixed sequential order and uses its own exp
// polynomial; here d is a warp tree sum with expf: probabilities agree to ~1e-7 relative, ids
// exactly.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/fusion_row_math.cuh"
#include "cuda/topk_softmax.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr unsigned kFull = 0xffffffffu;

struct TopkArgs {
  const float* logits;  // [T, V]
  int64_t T, V;
  int k;
  float beta;
  int32_t* ids;               // [T, k]
  float* probs;               // [T, k]
  float* tail;                // [T] with keep_tail
  unsigned long long* bad;    // first row with a non-finite logit (atomicMin)
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

// long: one warp per row keeps each lane's K best in registers through the scan, the warp
// merge and the normalization; the register arrays are indexed by unrolled constants only,
// which splitting the kernel would not guarantee.
template <int K, bool kTail>
__global__ void __launch_bounds__(32) topk_softmax_kernel(TopkArgs a) {
  const int lane = int(threadIdx.x);
  const float beta = a.beta;
  const int64_t V = a.V;
  const int k = a.k;
  for (int64_t r = blockIdx.x; r < a.T; r += gridDim.x) {
    const float* z = a.logits + r * V;
    unsigned long long h[K];  // this lane's best keys, descending; 0 = empty
#pragma unroll
    for (int i = 0; i < K; ++i) h[i] = 0ull;
    float thr = -INFINITY;  // value of h[K - 1] once the list is full
    uint32_t amax = 0;      // max |bits|: >= 0x7f800000 when a logit is NaN or +-Inf
    float m = -FLT_MAX, se = 0.f;  // keep_tail: online max and sum of exp(beta (z - m))

    auto consume = [&](float x, int32_t id) {
      amax = max(amax, __float_as_uint(x) & 0x7fffffffu);
      if (x >= thr) {
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
      if constexpr (kTail) {
        if (x > m) {
          se *= expf(beta * (m - x));
          m = x;
        }
        se += expf(beta * (x - m));
      }
    };

    // Slots [full_lo, full_hi) lie inside the row (16-byte loads); the head [0, head_end) and the
    // tail [tail_begin, V) (< 4 logits each) are read one by one.
    const int off = int((reinterpret_cast<uintptr_t>(z) & 15u) / sizeof(float));
    const int64_t full_lo = off ? 1 : 0;
    const int64_t full_hi = (int64_t(off) + V) / 4;
    const int64_t head_end = V < full_lo * 4 - off ? V : full_lo * 4 - off;
    const int64_t tail_begin = head_end > full_hi * 4 - off ? head_end : full_hi * 4 - off;
    if (lane < head_end) consume(z[lane], lane);
    constexpr int kUnroll = 4;
    for (int64_t s0 = full_lo + lane; s0 < full_hi; s0 += 32 * kUnroll) {
      float4 buf[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t s = s0 + int64_t(u) * 32;
        buf[u] = s < full_hi ? __ldcs(reinterpret_cast<const float4*>(z + (s * 4 - off)))
                             : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t s = s0 + int64_t(u) * 32;
        if (s < full_hi) {
          const int32_t v = int32_t(s * 4 - off);
          consume(buf[u].x, v);
          consume(buf[u].y, v + 1);
          consume(buf[u].z, v + 2);
          consume(buf[u].w, v + 3);
        }
      }
    }
    if (tail_begin + lane < V) consume(z[tail_begin + lane], int32_t(tail_begin + lane));

    if (warp_umax(amax) >= 0x7f800000u) {
      if (lane == 0) atomicMin(a.bad, static_cast<unsigned long long>(r));
      continue;
    }

    // Merge: k rounds of the largest head among the lanes; lane rr keeps entry rr.
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

// k > 32: k rounds, each selecting the largest key below the previous round's (as the CPU's
// select_rounds), then the softmax with lanes over the k entries.
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

template <int K>
void launch_k(const TopkArgs& a, bool tail, unsigned blocks, cudaStream_t stream) {
  if (tail)
    topk_softmax_kernel<K, true><<<blocks, 32, 0, stream>>>(a);
  else
    topk_softmax_kernel<K, false><<<blocks, 32, 0, stream>>>(a);
}

}  // namespace

struct TopkSoftmax::Impl {
  cudaStream_t stream = nullptr;
  unsigned long long* d_bad = nullptr;
  unsigned long long* h_bad = nullptr;  // pinned
  bool pending = false;
  const float* logits = nullptr;
  int64_t rows = 0, vocab = 0;
  std::string source;

  ~Impl() {
    if (d_bad) cudaFree(d_bad);
    if (h_bad) cudaFreeHost(h_bad);
  }
};

TopkSoftmax::TopkSoftmax(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_bad, sizeof(unsigned long long)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_bad, sizeof(unsigned long long)));
}

TopkSoftmax::~TopkSoftmax() = default;

void TopkSoftmax::enqueue(const float* logits, int64_t T, int64_t V, const TopkParams& params,
                          int32_t* ids, float* probs, float* tail, const std::string& source) {
  Impl& im = *impl_;
  im.pending = false;
  if (params.k < 1) fail("top-k of source '{}': k = {} must be at least 1", source, params.k);
  if (params.k > V)
    fail("top-k of source '{}': k = {} exceeds the vocabulary size V = {}", source, params.k, V);
  if (V > INT32_MAX) fail("top-k of source '{}': vocabulary size {} exceeds int32 ids", source, V);
  if (!(params.temperature > 0.f) || !std::isfinite(params.temperature) ||
      !std::isfinite(1.f / params.temperature))
    fail("top-k of source '{}': temperature {} must be a positive finite number", source,
         params.temperature);
  if (T < 0) fail("top-k of source '{}': negative number of positions T = {}", source, T);
  if (T > 0 && (logits == nullptr || ids == nullptr || probs == nullptr ||
                (params.keep_tail && tail == nullptr)))
    fail("top-k of source '{}': null device pointer among the logits and outputs", source);
  if (reinterpret_cast<uintptr_t>(logits) % sizeof(float) != 0)
    fail("top-k of source '{}': logits pointer is not aligned to 4 bytes", source);
  im.logits = logits;
  im.rows = T;
  im.vocab = V;
  im.source = source;
  if (T == 0) {
    im.pending = true;
    return;
  }

  FUSELLM_CUDA_CHECK(cudaMemsetAsync(im.d_bad, 0xff, sizeof(unsigned long long), im.stream));
  const TopkArgs a{logits, T, V, params.k, 1.f / params.temperature, ids, probs, tail, im.d_bad};
  const unsigned blocks = unsigned(std::min<int64_t>(T, int64_t(1) << 30));
  const bool kt = params.keep_tail;
  const int k = params.k;
  if (k <= 1)
    launch_k<1>(a, kt, blocks, im.stream);
  else if (k <= 2)
    launch_k<2>(a, kt, blocks, im.stream);
  else if (k <= 4)
    launch_k<4>(a, kt, blocks, im.stream);
  else if (k <= 8)
    launch_k<8>(a, kt, blocks, im.stream);
  else if (k <= 12)
    launch_k<12>(a, kt, blocks, im.stream);
  else if (k <= 16)
    launch_k<16>(a, kt, blocks, im.stream);
  else if (k <= 24)
    launch_k<24>(a, kt, blocks, im.stream);
  else if (k <= 32)
    launch_k<32>(a, kt, blocks, im.stream);
  else if (kt)
    topk_softmax_rounds_kernel<true><<<blocks, 32, 0, im.stream>>>(a);
  else
    topk_softmax_rounds_kernel<false><<<blocks, 32, 0, im.stream>>>(a);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(im.h_bad, im.d_bad, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, im.stream));
  im.pending = true;  // only once everything is on the stream
}

void TopkSoftmax::finish() {
  Impl& im = *impl_;
  if (!im.pending) fail("top-k: finish() without a pending enqueue()");
  im.pending = false;
  if (im.rows == 0) return;
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(im.stream));
  const unsigned long long bad = *im.h_bad;
  if (bad == row::kNoError) return;
  const int64_t r = int64_t(bad);
  std::vector<float> h(static_cast<size_t>(im.vocab));
  FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), im.logits + r * im.vocab, h.size() * sizeof(float),
                                cudaMemcpyDeviceToHost));
  std::string where = fmt::format("row {}", r);
  for (int64_t v = 0; v < im.vocab; ++v)
    if (!std::isfinite(h[size_t(v)])) {
      where = fmt::format("logit[{}, {}] = {}", r, v, h[size_t(v)]);
      break;
    }
  fail("top-k of source '{}': non-finite logit at position {} ({})", im.source, r, where);
}

void topk_softmax(const float* logits, int64_t T, int64_t V, const TopkParams& params, int32_t* ids,
                  float* probs, float* tail, const std::string& source, cudaStream_t stream) {
  TopkSoftmax t(stream);
  t.enqueue(logits, T, V, params, ids, probs, tail, source);
  t.finish();
}

}  // namespace fusellm::cuda
