// Fused classifier on the GPU (fused_classifier.cuh): reproduces kernels/kokkos/fused_classifier.hpp
// (FusedClassifierFunctor, FusedTargetsCheckFunctor, run_fused_classifier).
//
// The math, per position i with g_i >= 0 (g_i < 0: padding), q_i = softmax(z_i),
// lse_i = logsumexp(z_i), S_i = sum_j P_ij (the kept mass; empty slots, id -1, count nothing):
//
//     CLM_i    = lse_i - z_i[g_i]
//     Fusion_i = sum_j P_ij (lse_i - z_i[id_ij]) = S_i lse_i - sum_j P_ij z_i[id_ij]
//     L_i      = lambda CLM_i + (1 - lambda) Fusion_i
//     dL/dz_i  = scale [ (lambda + (1 - lambda) S_i) q_i - lambda onehot(g_i) - (1 - lambda) P_i ]
//
// scale = 1/N under kMean (N = #{i : g_i >= 0}; 0 when N = 0), 1 under kSum. Padding rows get
// loss 0 and a zero gradient row. Totals: sum_i CLM_i / div, sum_i Fusion_i / div (div = N under
// kMean, 1 under kSum), loss = lambda clm + (1 - lambda) fusion, in double.
//
// Kernels, in stream order:
//  1. check (one thread per row, as FusedTargetsCheckFunctor): gold id >= V, target id < -1 or
//     >= V, target probability NaN/Inf/negative -> the minimum error code (row, slot, kind) by
//     atomicMin; N by atomicAdd. The main kernel reads both from device memory (no host round trip).
//  2. main, one block per row (a grid-stride loop over rows). Skips everything when (1) found an
//     error, so bad targets leave the logits untouched.
//       gathers: z[g] and z[id_j] (k + 1 loads, kept in shared memory for the fix-ups), and
//                sum_j P_ij z[id_j], S_i in double;
//       pass 1:  the row is read once in 16-byte slots (fusion_row_math.cuh) into registers
//                (kItems slots per thread, chunks of kThreads * kItems slots): per thread the max
//                m_t and sum_t exp(z - m_t) (one exp per logit), then one block reduction of
//                (m, s, pz, S) gives lse = M + log(S_sum);
//       pass 2:  g_v = c exp(z_v - lse), c = scale (lambda + (1 - lambda) S_i), computed from the
//                registers when the row is one chunk (V <= 32768: every V of the models here), so
//                the row moves 8 bytes per logit in fp32 (read once, written once) and 4 in bf16;
//                longer rows are read again (from L2, mostly) chunk by chunk, last chunk first;
//       fix-ups: for each distinct id among g and the target ids, one thread recomputes
//                c exp(z_v - lse) from the gathered logit, subtracts scale lambda (v = g) and then
//                scale (1 - lambda) P_ij for every slot j with id_j = v, in slot order (the CPU's
//                order of subtraction: exactly its fp32 arithmetic), and stores it once (so a bf16
//                gradient is rounded once, after the cancellation).
//     NaN/+Inf logits (lse not finite; also a row of only -Inf) and non-finite losses (the logit of
//     a target id is -Inf) set the row's error code; the block leaves that row as it is.
//  3. totals: one block sums CLM_i and Fusion_i in double in a fixed order (deterministic).
// The host copies the 40-byte status back (pinned) and finish() turns codes into messages.
//
// Exp: expf (accurate) for fp32 logits, __expf (ex2.approx) for bf16 (Elem<T>::exp).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/fused_classifier.cuh"
#include "cuda/fusion_row_math.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

using row::Elem;
using row::RowSlots;

struct Status {
  unsigned long long check_bad;  // first bad target/gold (kernel 1); kNoError when none
  unsigned long long run_bad;    // first bad row of kernel 2; kNoError when none
  unsigned long long tokens;     // N
  double sum_clm, sum_fusion;
};

// Threads per block, 16-byte slots cached per thread, blocks per SM the registers are sized for.
template <class T>
struct Config;
template <>
struct Config<float> {  // 1024 x 8 x 4 = 32768 logits per chunk, 32 registers of cache
  static constexpr int kThreads = 1024, kItems = 8, kMinBlocks = 1;
};
template <>
struct Config<__nv_bfloat16> {  // 1024 x 4 x 8 = 32768 logits per chunk, 16 registers of cache
  static constexpr int kThreads = 1024, kItems = 4, kMinBlocks = 1;
};

// ---- kernel 1: targets check and token count ---------------------------------------------------------
__global__ void fused_check_kernel(const int32_t* __restrict__ gold, const int32_t* __restrict__ ids,
                                   const float* __restrict__ probs, int64_t T, int64_t V, int64_t k,
                                   Status* st) {
  unsigned long long bad = row::kNoError, count = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < T;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t g = gold[i];
    count += g >= 0 ? 1 : 0;
    unsigned long long code = row::kNoError;
    if (g >= V) code = row::error_code(i, 0, row::kGoldOutOfRange);
    for (int64_t j = k - 1; j >= 0; --j) {
      const int32_t id = ids[i * k + j];
      const float p = probs[i * k + j];
      unsigned long long c = row::kNoError;
      if (id < -1 || id >= V)
        c = row::error_code(i, j, row::kIdOutOfRange);
      else if (id >= 0 && (!row::finite_bits(p) || p < 0.f))
        c = row::error_code(i, j, row::kBadProb);
      code = c < code ? c : code;
    }
    bad = code < bad ? code : bad;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long b = __shfl_xor_sync(0xffffffffu, bad, o);
    bad = b < bad ? b : bad;
    count += __shfl_xor_sync(0xffffffffu, count, o);
  }
  if (threadIdx.x % 32 == 0) {
    if (bad != row::kNoError) atomicMin(&st->check_bad, bad);
    if (count) atomicAdd(&st->tokens, count);
  }
}

// ---- kernel 2: the row kernel ----------------------------------------------------------------------------
struct Acc {
  float m, s;        // max and sum of exp(z - m)
  double pz, mass;   // sum_j P_j z[id_j], sum_j P_j
};

__device__ __forceinline__ Acc combine(const Acc& a, const Acc& b) {
  const float M = a.m > b.m ? a.m : b.m;
  return {M, a.s * expf(a.m - M) + b.s * expf(b.m - M), a.pz + b.pz, a.mass + b.mass};
}

template <int kWarps>
__device__ __forceinline__ Acc block_reduce(Acc a, Acc* sh /* [kWarps + 1] */) {
  for (int o = 16; o > 0; o >>= 1) {
    const Acc b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
                __shfl_xor_sync(0xffffffffu, a.pz, o), __shfl_xor_sync(0xffffffffu, a.mass, o)};
    a = combine(a, b);
  }
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sh[w] = a;
  __syncthreads();
  if (w == 0) {
    a = lane < kWarps ? sh[lane] : Acc{-FLT_MAX, 0.f, 0.0, 0.0};
    for (int o = 16; o > 0; o >>= 1) {
      const Acc b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
                  __shfl_xor_sync(0xffffffffu, a.pz, o), __shfl_xor_sync(0xffffffffu, a.mass, o)};
      a = combine(a, b);
    }
    if (lane == 0) sh[kWarps] = a;
  }
  __syncthreads();
  return sh[kWarps];
}

template <class T>
struct RowArgs {
  T* logits;  // [T, V]
  const int32_t* gold;
  const int32_t* ids;
  const float* probs;
  int64_t rows, V, k;
  float lambda;
  bool mean;
  float* clm;
  float* fus;
  Status* st;
};

// Loads this thread's slots of chunk c into registers (elements outside the row: -Inf).
template <class T, int kThreads, int kItems>
__device__ __forceinline__ void load_chunk(uint4 (&cache)[kItems], const T* z, const RowSlots<T>& rs,
                                           int64_t c) {
  const int64_t first = c * (int64_t(kThreads) * kItems) + threadIdx.x;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int64_t s = first + int64_t(i) * kThreads;
    cache[i] = s < rs.nslots ? rs.load(z, s) : Elem<T>::neg_inf();
  }
}

// long: one block per row runs both passes and the fix-ups over the row held in registers
// (cache[]); split into functions, the register array would be passed by reference across calls
// the compiler may not inline, and a run-time-indexed register array moves to local memory.
template <class T, int kThreads, int kItems, int kMinBlocks, bool kWriteGrad>
__global__ void __launch_bounds__(kThreads, kMinBlocks) fused_classifier_kernel(RowArgs<T> a) {
  constexpr int kN = Elem<T>::kN;
  constexpr int kWarps = kThreads / 32;
  constexpr int64_t kChunk = int64_t(kThreads) * kItems;  // slots per chunk
  __shared__ Acc red[kWarps + 1];
  __shared__ float s_zg;
  extern __shared__ float s_zslot[];  // [k]: z at the target ids, gathered before any write

  if (a.st->check_bad != row::kNoError) return;  // bad targets: the logits stay untouched
  const unsigned long long n = a.st->tokens;
  const float scale = a.mean ? (n > 0 ? 1.f / float(n) : 0.f) : 1.f;
  const int64_t k = a.k;

  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    __syncthreads();  // the previous row's fix-ups are done with s_zslot and s_zg
    T* z = a.logits + r * a.V;
    const int32_t g = a.gold[r];
    const RowSlots<T> rs(z, a.V);
    uint4 cache[kItems];

    if (g < 0) {  // padding: loss 0, gradient 0
      if constexpr (kWriteGrad) {
        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        for (int64_t s = threadIdx.x; s < rs.nslots; s += kThreads) rs.store(z, s, zero);
      }
      if (threadIdx.x == 0) {
        a.clm[r] = 0.f;
        a.fus[r] = 0.f;
      }
      continue;
    }

    // Pass 1 (+ gathers, issued after the first chunk's loads so that both are in flight).
    const int64_t nchunks = (rs.nslots + kChunk - 1) / kChunk;
    Acc acc{-FLT_MAX, 0.f, 0.0, 0.0};
    for (int64_t c = 0; c < nchunks; ++c) {
      load_chunk<T, kThreads, kItems>(cache, z, rs, c);
      if (c == 0) {
        for (int64_t j = threadIdx.x; j < k; j += kThreads) {
          const int32_t id = a.ids[r * k + j];
          float zj = 0.f;
          if (id >= 0) {
            const float p = a.probs[r * k + j];
            zj = Elem<T>::to_float(z[id]);
            acc.pz += double(p) * double(zj);
            acc.mass += double(p);
          }
          s_zslot[j] = zj;
        }
        if (threadIdx.x == 0) s_zg = Elem<T>::to_float(z[g]);
      }
      float cm = -FLT_MAX;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        float f[kN];
        Elem<T>::unpack(cache[i], f);
#pragma unroll
        for (int e = 0; e < kN; ++e) cm = f[e] > cm ? f[e] : cm;
      }
      if (cm > acc.m) {
        acc.s *= expf(acc.m - cm);
        acc.m = cm;
      }
      float cs = 0.f;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        float f[kN];
        Elem<T>::unpack(cache[i], f);
#pragma unroll
        for (int e = 0; e < kN; ++e) cs += Elem<T>::exp(f[e] - acc.m);
      }
      acc.s += cs;
    }
    // The reduction's barriers also order every gather (and s_zg) before the writes below.
    const Acc tot = block_reduce<kWarps>(acc, red);
    const float lse = tot.m + logf(tot.s);
    if (!row::finite_bits(lse)) {
      if (threadIdx.x == 0) atomicMin(&a.st->run_bad, row::error_code(r, 0, row::kNonFiniteLogit));
      continue;
    }
    const float zg = s_zg;
    const float clm = lse - zg;
    const float fus = float(tot.mass * double(lse) - tot.pz);
    if (!row::finite_bits(clm) || !row::finite_bits(fus)) {
      if (threadIdx.x == 0) atomicMin(&a.st->run_bad, row::error_code(r, 0, row::kNonFiniteLoss));
      continue;
    }
    if (threadIdx.x == 0) {
      a.clm[r] = clm;
      a.fus[r] = fus;
    }

    if constexpr (kWriteGrad) {
      // Pass 2: g_v = c exp(z_v - lse) in place; the last chunk is still in registers.
      const float cc = scale * (a.lambda + (1.f - a.lambda) * float(tot.mass));
      for (int64_t c = nchunks - 1; c >= 0; --c) {
        if (c != nchunks - 1) load_chunk<T, kThreads, kItems>(cache, z, rs, c);
        const int64_t first = c * kChunk + threadIdx.x;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const int64_t s = first + int64_t(i) * kThreads;
          if (s < rs.nslots) {
            float f[kN];
            Elem<T>::unpack(cache[i], f);
#pragma unroll
            for (int e = 0; e < kN; ++e) f[e] = cc * Elem<T>::exp(f[e] - lse);
            rs.store(z, s, Elem<T>::pack(f));
          }
        }
      }
      __syncthreads();  // pass 2's stores are done before the fix-ups overwrite some of them
      // Fix-ups: index 0 is the gold id, index 1 + j target slot j. The first occurrence of an id
      // (the gold id first) owns it and writes its final value once.
      const float dg = scale * a.lambda;
      const float dt = scale * (1.f - a.lambda);
      const int32_t* rid = a.ids + r * k;
      const float* rp = a.probs + r * k;
      for (int64_t f = threadIdx.x; f <= k; f += kThreads) {
        int32_t v = g;
        float zv = zg;
        if (f > 0) {
          const int64_t j = f - 1;
          v = rid[j];
          if (v < 0 || v == g) continue;
          bool first = true;
          for (int64_t j2 = 0; j2 < j; ++j2)
            if (rid[j2] == v) {
              first = false;
              break;
            }
          if (!first) continue;
          zv = s_zslot[j];
        }
        float val = cc * Elem<T>::exp(zv - lse);
        if (v == g) val -= dg;
        for (int64_t j2 = 0; j2 < k; ++j2)
          if (rid[j2] == v) val -= dt * rp[j2];
        z[v] = Elem<T>::from_float(val);
      }
    }
  }
}

// ---- kernel 3: totals ------------------------------------------------------------------------------------
constexpr int kTotalsThreads = 1024;
__global__ void __launch_bounds__(kTotalsThreads) fused_totals_kernel(const float* __restrict__ clm,
                                                                      const float* __restrict__ fus,
                                                                      int64_t T, Status* st) {
  __shared__ double sh[2][kTotalsThreads / 32];
  double a = 0.0, b = 0.0;
  for (int64_t i = threadIdx.x; i < T; i += kTotalsThreads) {
    a += double(clm[i]);
    b += double(fus[i]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sh[0][w] = a;
    sh[1][w] = b;
  }
  __syncthreads();
  if (w == 0) {
    a = sh[0][lane];
    b = sh[1][lane];
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_xor_sync(0xffffffffu, a, o);
      b += __shfl_xor_sync(0xffffffffu, b, o);
    }
    if (lane == 0) {
      st->sum_clm = a;
      st->sum_fusion = b;
    }
  }
}

float host_float(float x) { return x; }
float host_float(__nv_bfloat16 x) { return __bfloat162float(x); }

}  // namespace

// ---- host side ------------------------------------------------------------------------------------------------
struct FusedClassifier::Impl {
  cudaStream_t stream = nullptr;
  Status* d_status = nullptr;
  Status* h_status = nullptr;  // pinned
  float* scratch = nullptr;    // [2 * scratch_rows]: per-position terms when the caller wants none
  int64_t scratch_rows = 0;

  // The last enqueue, for finish() and its messages.
  bool pending = false;
  bool bf16 = false;
  const char* what = "fused classifier";
  const void* logits = nullptr;
  int64_t rows = 0, vocab = 0;
  FusedTargets targets;
  FusedClassifierParams params;

  ~Impl() {
    // No throwing from a destructor: errors here are ignored.
    if (scratch) cudaFree(scratch);
    if (d_status) cudaFree(d_status);
    if (h_status) cudaFreeHost(h_status);
  }

  template <class T, bool kWriteGrad>
  void launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg, const FusedClassifierParams& p);

  std::string describe_nonfinite_row(int64_t r) const;
  template <class T>
  std::string describe_row(int64_t r) const;
};

template <class T>
std::string FusedClassifier::Impl::describe_row(int64_t r) const {
  std::vector<T> h(static_cast<size_t>(vocab));
  FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), static_cast<const T*>(logits) + r * vocab, size_t(vocab) * sizeof(T),
                                cudaMemcpyDeviceToHost));
  for (int64_t v = 0; v < vocab; ++v) {
    const float x = host_float(h[size_t(v)]);
    if (!(x - x == 0.f)) return fmt::format("logit[{}, {}] = {}", r, v, x);
  }
  return fmt::format("row {}", r);
}

std::string FusedClassifier::Impl::describe_nonfinite_row(int64_t r) const {
  return bf16 ? describe_row<__nv_bfloat16>(r) : describe_row<float>(r);
}

template <class T, bool kWriteGrad>
void FusedClassifier::Impl::launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg,
                                   const FusedClassifierParams& p) {
  what = kWriteGrad ? "fused classifier" : "fused loss";
  pending = false;
  if (T_ < 0) fail("{}: negative number of positions T = {}", what, T_);
  if (V_ < 1) fail("{}: empty vocabulary", what);
  if (V_ > INT32_MAX) fail("{}: vocabulary size {} exceeds int32 ids", what, V_);
  if (tg.k < 0) fail("{}: negative number of target slots k = {}", what, tg.k);
  if (!(p.lambda >= 0.f && p.lambda <= 1.f))
    fail("{}: lambda = {} must lie in [0, 1]", what, p.lambda);
  if (T_ > 0 && (z == nullptr || tg.gold == nullptr ||
                 (tg.k > 0 && (tg.target_ids == nullptr || tg.target_probs == nullptr))))
    fail("{}: null device pointer among the logits, gold ids and targets", what);
  if (reinterpret_cast<uintptr_t>(z) % sizeof(T) != 0)
    fail("{}: logits pointer is not aligned to its element size", what);
  bf16 = sizeof(T) == 2;
  logits = z;
  rows = T_;
  vocab = V_;
  targets = tg;
  params = p;
  if (T_ == 0) {
    pending = true;
    return;
  }

  float* clm = tg.clm_position;
  float* fus = tg.fusion_position;
  if (clm == nullptr || fus == nullptr) {
    if (scratch_rows < T_) {
      if (scratch) FUSELLM_CUDA_CHECK(cudaFree(scratch));
      scratch = nullptr;
      scratch_rows = 0;
      FUSELLM_CUDA_CHECK(cudaMalloc(&scratch, size_t(2 * T_) * sizeof(float)));
      scratch_rows = T_;
    }
    if (clm == nullptr) clm = scratch;
    if (fus == nullptr) fus = scratch + T_;
  }

  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_status, 0, sizeof(Status), stream));
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_status, 0xff, 2 * sizeof(unsigned long long), stream));

  const int64_t check_blocks = std::min<int64_t>((T_ + 255) / 256, 4096);
  fused_check_kernel<<<unsigned(check_blocks), 256, 0, stream>>>(tg.gold, tg.target_ids,
                                                                 tg.target_probs, T_, V_, tg.k,
                                                                 d_status);
  FUSELLM_CUDA_CHECK(cudaGetLastError());

  using C = Config<T>;
  auto kernel = fused_classifier_kernel<T, C::kThreads, C::kItems, C::kMinBlocks, kWriteGrad>;
  const size_t smem = size_t(tg.k) * sizeof(float);
  if (smem > 48 * 1024) {
    int dev = 0, optin = 0;
    FUSELLM_CUDA_CHECK(cudaGetDevice(&dev));
    FUSELLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaFuncAttributes fa{};
    FUSELLM_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    if (smem + fa.sharedSizeBytes > size_t(optin))
      fail("{}: k = {} target slots per position need {} bytes of shared memory; the device allows {}",
           what, tg.k, smem + fa.sharedSizeBytes, optin);
    FUSELLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  RowArgs<T> args{z,  tg.gold, tg.target_ids, tg.target_probs, T_, V_, tg.k, p.lambda,
                  p.reduction == LossReduction::kMean, clm, fus, d_status};
  const int64_t blocks = std::min<int64_t>(T_, int64_t(1) << 30);
  kernel<<<unsigned(blocks), C::kThreads, smem, stream>>>(args);
  FUSELLM_CUDA_CHECK(cudaGetLastError());

  fused_totals_kernel<<<1, kTotalsThreads, 0, stream>>>(clm, fus, T_, d_status);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(h_status, d_status, sizeof(Status), cudaMemcpyDeviceToHost, stream));
  pending = true;  // only once everything is on the stream
}

FusedClassifier::FusedClassifier(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_status, sizeof(Status)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_status, sizeof(Status)));
}

FusedClassifier::~FusedClassifier() = default;

void FusedClassifier::enqueue(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                              const FusedClassifierParams& params) {
  impl_->launch<float, true>(logits, T, V, targets, params);
}
void FusedClassifier::enqueue(__nv_bfloat16* logits, int64_t T, int64_t V,
                              const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, true>(logits, T, V, targets, params);
}
void FusedClassifier::enqueue_loss(const float* logits, int64_t T, int64_t V,
                                   const FusedTargets& targets, const FusedClassifierParams& params) {
  // The loss-only kernel never writes the logits (kWriteGrad = false).
  impl_->launch<float, false>(const_cast<float*>(logits), T, V, targets, params);
}
void FusedClassifier::enqueue_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                                   const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, false>(const_cast<__nv_bfloat16*>(logits), T, V, targets, params);
}

FusedLossTotals FusedClassifier::finish() {
  Impl& im = *impl_;
  if (!im.pending) fail("fused classifier: finish() without a pending enqueue()");
  im.pending = false;
  FusedLossTotals out;
  if (im.rows == 0) return out;
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(im.stream));
  const Status st = *im.h_status;
  const char* what = im.what;
  const int64_t V = im.vocab, k = im.targets.k;
  if (st.check_bad != row::kNoError) {
    const auto e = row::decode_error(st.check_bad);
    if (e.kind == row::kGoldOutOfRange) {
      int32_t g = 0;
      FUSELLM_CUDA_CHECK(cudaMemcpy(&g, im.targets.gold + e.row, sizeof g, cudaMemcpyDeviceToHost));
      fail("{}: gold id {} at position {} is outside the vocabulary [0, {})", what, g, e.row, V);
    }
    int32_t id = 0;
    float p = 0.f;
    FUSELLM_CUDA_CHECK(cudaMemcpy(&id, im.targets.target_ids + e.row * k + e.slot, sizeof id,
                                  cudaMemcpyDeviceToHost));
    FUSELLM_CUDA_CHECK(cudaMemcpy(&p, im.targets.target_probs + e.row * k + e.slot, sizeof p,
                                  cudaMemcpyDeviceToHost));
    if (e.kind == row::kIdOutOfRange)
      fail("{}: fused target id {} at position {} (slot {}) is outside the vocabulary [0, {})", what,
           id, e.row, e.slot, V);
    fail("{}: fused target probability {} at position {} (slot {}) is not a finite non-negative "
         "number",
         what, p, e.row, e.slot);
  }
  if (st.run_bad != row::kNoError) {
    const auto e = row::decode_error(st.run_bad);
    if (e.kind == row::kNonFiniteLogit)
      fail("{}: non-finite logit at position {} ({})", what, e.row, im.describe_nonfinite_row(e.row));
    fail("{}: loss at position {} is not finite (the logit of a target id is -Inf)", what, e.row);
  }
  out.tokens = int64_t(st.tokens);
  const bool mean = im.params.reduction == LossReduction::kMean;
  const double div = mean ? (out.tokens > 0 ? double(out.tokens) : 1.0) : 1.0;
  out.clm = st.sum_clm / div;
  out.fusion = st.sum_fusion / div;
  out.loss = double(im.params.lambda) * out.clm + (1.0 - double(im.params.lambda)) * out.fusion;
  return out;
}

FusedLossTotals fused_classifier(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                                 const FusedClassifierParams& params, cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_classifier(__nv_bfloat16* logits, int64_t T, int64_t V,
                                 const FusedTargets& targets, const FusedClassifierParams& params,
                                 cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_loss(const float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                           const FusedClassifierParams& params, cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue_loss(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                           const FusedTargets& targets, const FusedClassifierParams& params,
                           cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue_loss(logits, T, V, targets, params);
  return fc.finish();
}

}  // namespace fusellm::cuda
