// Source scores on the GPU (sequence_ce.cuh): reproduces kernels/kokkos/sequence_ce.hpp
// (sequence_ce, SequenceCEFunctor, SegmentSumFunctor).
//
// The math, for row i with logits z_v and gold id g = g_i >= 0:
//
//     m = max_v z_v (NaN never taken as the max, as the CPU's comparison select)
//     s = sum_v exp(z_v - m)           (NaN or +Inf logits make s NaN; all -Inf gives s = 0)
//     lse = m + log(s);  ce_i = lse - z_g
//     ce_sum[d] = sum over the scored rows of d of double(ce_i), in row order;  count[d] = #rows
//
// Three kernels on the stream, one wait: a check kernel (offsets, gold ids: the CPU's checks before
// it touches the logits), the row kernel (one block per row; it returns at once when the check
// found anything, so bad offsets or gold ids leave every output unwritten), the segment kernel
// (one thread per segment, sequential in row order like the CPU; skipped after a row error).
//
// The CPU sums s with its own exp polynomial (fast_exp) in 32 lanes; here s is a block tree sum
// of expf: ce_position agrees within ~1e-6 absolute (a few ulp of lse), counts exactly, ce_sum
// within the accumulated per-row differences.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/fusion_row_math.cuh"
#include "cuda/sequence_ce.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kRowThreads = 128;

// First errors found on the device; kNoError (all ones) when none. atomicMin picks the first.
struct CEStatus {
  unsigned long long off_ends;      // 0 when offsets[0] != 0 or offsets[D] != N
  unsigned long long off_decrease;  // first segment d with offsets[d + 1] < offsets[d]
  unsigned long long gold_bad;      // first position with gold >= V
  unsigned long long row_bad;       // first row error code (row::error_code)
};

__device__ __forceinline__ bool checks_failed(const CEStatus* st) {
  return st->off_ends != row::kNoError || st->off_decrease != row::kNoError ||
         st->gold_bad != row::kNoError;
}

// sequence_ce's host checks of the offsets and its check_gold reduction.
__global__ void ce_check_kernel(const int32_t* __restrict__ gold, const int64_t* __restrict__ off,
                                int64_t N, int64_t V, int64_t D, CEStatus* st) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first == 0 && (off[0] != 0 || off[D] != N)) atomicMin(&st->off_ends, 0ull);
  for (int64_t d = first; d < D; d += stride)
    if (off[d + 1] < off[d]) atomicMin(&st->off_decrease, static_cast<unsigned long long>(d));
  for (int64_t i = first; i < N; i += stride)
    if (gold[i] >= V) atomicMin(&st->gold_bad, static_cast<unsigned long long>(i));
}

__device__ __forceinline__ float block_max(float x, float* sh) {
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(kFull, x, o);
    x = y > x ? y : x;
  }
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  float m = sh[0];
  for (int w = 1; w < kRowThreads / 32; ++w) m = sh[w] > m ? sh[w] : m;
  __syncthreads();  // sh is reused by the next reduction
  return m;
}

__device__ __forceinline__ float block_sum(float x, float* sh) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < kRowThreads / 32; ++w) s += sh[w];
  __syncthreads();
  return s;
}

// SequenceCEFunctor: ce_i = lse(z_i) - z_i[g_i], one block per row; errors as the CPU codes them
// (kNonFiniteLogit when lse is not finite, else kNonFiniteLoss when ce is not).
__global__ void __launch_bounds__(kRowThreads) ce_row_kernel(const float* __restrict__ logits,
                                                             const int32_t* __restrict__ gold,
                                                             int64_t N, int64_t V,
                                                             float* __restrict__ ce, CEStatus* st) {
  __shared__ float sh[kRowThreads / 32];
  if (checks_failed(st)) return;
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const int32_t g = gold[r];
    if (g < 0) {
      if (threadIdx.x == 0) ce[r] = 0.f;
      continue;
    }
    const float* z = logits + r * V;
    float m = -FLT_MAX;
    for (int64_t v = threadIdx.x; v < V; v += kRowThreads) m = z[v] > m ? z[v] : m;
    m = block_max(m, sh);
    float s = 0.f;
    for (int64_t v = threadIdx.x; v < V; v += kRowThreads) s += expf(z[v] - m);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
      const float lse = m + logf(s);
      const float c = lse - z[g];
      if (!row::finite_bits(lse))
        atomicMin(&st->row_bad, row::error_code(r, 0, row::kNonFiniteLogit));
      else if (!row::finite_bits(c))
        atomicMin(&st->row_bad, row::error_code(r, 0, row::kNonFiniteLoss));
      ce[r] = c;
    }
  }
}

// SegmentSumFunctor: per segment, the double sum of ce over scored rows in row order, and the count.
__global__ void ce_segment_kernel(const float* __restrict__ ce, const int32_t* __restrict__ gold,
                                  const int64_t* __restrict__ off, int64_t D,
                                  double* __restrict__ ce_sum, int64_t* __restrict__ count,
                                  const CEStatus* st) {
  if (checks_failed(st) || st->row_bad != row::kNoError) return;
  for (int64_t d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; d < D;
       d += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0.0;
    int64_t n = 0;
    for (int64_t i = off[d]; i < off[d + 1]; ++i)
      if (gold[i] >= 0) {
        acc += double(ce[i]);
        ++n;
      }
    ce_sum[d] = acc;
    count[d] = n;
  }
}

template <class T>
T fetch(const T* d, int64_t i) {
  T v{};
  FUSELLM_CUDA_CHECK(cudaMemcpy(&v, d + i, sizeof v, cudaMemcpyDeviceToHost));
  return v;
}

// describe_nonfinite_row (kernels/kokkos/fusion_row_math.hpp): "logit[3, 17] = nan".
std::string describe_row(const float* logits, int64_t r, int64_t V) {
  const auto h = to_host(logits + r * V, size_t(V));
  for (int64_t v = 0; v < V; ++v)
    if (!std::isfinite(h[size_t(v)])) return fmt::format("logit[{}, {}] = {}", r, v, h[size_t(v)]);
  return fmt::format("row {}", r);
}

// The CPU's messages, in the CPU's order of checks.
void throw_first_error(const CEStatus& st, const float* logits, int64_t N, int64_t V,
                       const int32_t* gold, const int64_t* off, int64_t D, const std::string& source) {
  if (st.off_ends != row::kNoError)
    fail("CE of source '{}': segment offsets must run from 0 to N = {} (got {} .. {})", source, N,
         fetch(off, 0), fetch(off, D));
  if (st.off_decrease != row::kNoError) {
    const int64_t d = int64_t(st.off_decrease);
    fail("CE of source '{}': segment offsets decrease at segment {} ({} > {})", source, d,
         fetch(off, d), fetch(off, d + 1));
  }
  if (st.gold_bad != row::kNoError) {
    const int64_t i = int64_t(st.gold_bad);
    fail("CE of source '{}': gold id {} at position {} is outside the vocabulary [0, {})", source,
         fetch(gold, i), i, V);
  }
  if (st.row_bad != row::kNoError) {
    const auto e = row::decode_error(st.row_bad);
    if (e.kind == row::kNonFiniteLogit)
      fail("CE of source '{}': non-finite logit at position {} ({})", source, e.row,
           describe_row(logits, e.row, V));
    fail("CE of source '{}': cross-entropy at position {} is not finite (the gold token's logit "
         "is -Inf)",
         source, e.row);
  }
}

}  // namespace

void sequence_ce(const float* logits, int64_t N, int64_t V, const int32_t* gold,
                 const int64_t* doc_offsets, int64_t D, float* ce_position, double* ce_sum,
                 int64_t* count, const std::string& source, cudaStream_t stream) {
  if (D < 0) fail("CE of source '{}': segment offsets must have at least one entry (0)", source);
  if (N < 0) fail("CE of source '{}': negative number of positions N = {}", source, N);
  if (V < 0) fail("CE of source '{}': negative vocabulary size V = {}", source, V);
  if (doc_offsets == nullptr || (N > 0 && (logits == nullptr || gold == nullptr ||
                                           ce_position == nullptr)) ||
      (D > 0 && (ce_sum == nullptr || count == nullptr)))
    fail("CE of source '{}': null device pointer among the logits, gold ids, offsets and outputs",
         source);

  auto d_st = dev_alloc<CEStatus>(1);
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_st.get(), 0xff, sizeof(CEStatus), stream));
  const int64_t n_check = std::max<int64_t>(std::max(N, D), 1);
  const unsigned check_blocks = unsigned(std::min<int64_t>((n_check + 255) / 256, 1024));
  ce_check_kernel<<<check_blocks, 256, 0, stream>>>(gold, doc_offsets, N, V, D, d_st.get());
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  if (N > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>(N, int64_t(1) << 30));
    ce_row_kernel<<<blocks, kRowThreads, 0, stream>>>(logits, gold, N, V, ce_position, d_st.get());
    FUSELLM_CUDA_CHECK(cudaGetLastError());
  }
  if (D > 0) {
    const unsigned blocks = unsigned(std::min<int64_t>((D + 127) / 128, 1024));
    ce_segment_kernel<<<blocks, 128, 0, stream>>>(ce_position, gold, doc_offsets, D, ce_sum, count,
                                                  d_st.get());
    FUSELLM_CUDA_CHECK(cudaGetLastError());
  }
  CEStatus st{};
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(&st, d_st.get(), sizeof st, cudaMemcpyDeviceToHost, stream));
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  throw_first_error(st, logits, N, V, gold, doc_offsets, D, source);
}

}  // namespace fusellm::cuda
