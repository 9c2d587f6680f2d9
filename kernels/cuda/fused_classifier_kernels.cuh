#pragma once
// The fused classifier's kernels (fused_classifier.cu states their math and order), the row kernel
// templated on its configuration: fused_classifier.cu launches the configurations that won on an
// H200 (benchmarks/RESULTS.md, dev/cuda's variants), dev/cuda benchmarks the others.
//
// The row kernel holds a row on chip in `kThreads` threads: kReg 16-byte slots per thread in
// registers and kSm in shared memory (filled by cp.async, which needs no registers), so that 2
// (fp32) to 4 (bf16) rows are resident per SM and one row's loads overlap another's math and
// stores (one 1024-thread block per row left one block per SM, whose reductions and barriers idle
// the memory system: 35.7 % of the copy bandwidth in bf16 against 69.6 % here). fp32 computes one
// exp per logit: pass 1 replaces each cached logit by e = exp(z - m_t) (m_t: this thread's max over
// the row), pass 2 writes c exp(m_t - lse) e (a few ulp from c exp(z - lse)). bf16 keeps the
// logits (a float per element would not fit) and recomputes __expf, two instructions. A row longer
// than one chunk (kThreads (kReg + kSm) slots) is read chunk by chunk; pass 2 then reloads every
// chunk but the last from global memory (L2, mostly).
//
// Internal to kernels/cuda and dev/cuda. Everything is in an unnamed namespace: each .cu file
// that includes this gets its own copy of the non-template kernels (no duplicate host stubs when
// both are linked into one binary).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/cuda_check.hpp"
#include "cuda/fusion_row_math.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda::fc_rows {
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces): see above

using row::Elem;
using row::RowSlots;

struct Status {
  unsigned long long check_bad;  // first bad target/gold (kernel 1); kNoError when none
  unsigned long long run_bad;    // first bad row of kernel 2; kNoError when none
  unsigned long long tokens;     // N
  double sum_clm, sum_fusion;
};

// ---- kernel 1: targets check and token count ------------------------------------------------------
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

// ---- kernel 2: the row kernel ---------------------------------------------------------------------
struct Acc {
  float m, s;       // max and sum of exp(z - m)
  double pz, mass;  // sum_j P_j z[id_j], sum_j P_j
};

__device__ __forceinline__ Acc combine(const Acc& a, const Acc& b) {
  const float M = a.m > b.m ? a.m : b.m;
  return {M, a.s * expf(a.m - M) + b.s * expf(b.m - M), a.pz + b.pz, a.mass + b.mass};
}

__device__ __forceinline__ Acc warp_reduce(Acc a) {
  for (int o = 16; o > 0; o >>= 1) {
    const Acc b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
                __shfl_xor_sync(0xffffffffu, a.pz, o), __shfl_xor_sync(0xffffffffu, a.mass, o)};
    a = combine(a, b);
  }
  return a;
}

template <int kWarps>
__device__ __forceinline__ Acc block_reduce(Acc a, Acc* sh /* [kWarps + 1] */) {
  a = warp_reduce(a);
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sh[w] = a;
  __syncthreads();
  if (w == 0) {
    a = warp_reduce(lane < kWarps ? sh[lane] : Acc{-FLT_MAX, 0.f, 0.0, 0.0});
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

// 16-byte global -> shared copy without registers (sm_80+); completed by cp_async_wait_all in the
// issuing thread, which alone reads the slot.
__device__ __forceinline__ void cp_async16(uint4* smem, const void* gmem) {
  const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// cm = max(cm, the slot's elements), NaN ignored (a NaN still reaches the sum of exps). bf16 takes
// the max of packed pairs: unpacking here would let the compiler keep all the unpacked floats alive
// until the exp loop (twice the registers of the packed cache: spills).
__device__ __forceinline__ float slot_max(const uint4& q, float cm, float*) {
  return fmaxf(cm, fmaxf(fmaxf(__uint_as_float(q.x), __uint_as_float(q.y)),
                         fmaxf(__uint_as_float(q.z), __uint_as_float(q.w))));
}
__device__ __forceinline__ __nv_bfloat162 as_bf162(uint32_t w) {
  __nv_bfloat162 h;
  memcpy(&h, &w, sizeof h);
  return h;
}
__device__ __forceinline__ float slot_max(const uint4& q, float cm, __nv_bfloat16*) {
  const __nv_bfloat162 m2 = __hmax2(__hmax2(as_bf162(q.x), as_bf162(q.y)), __hmax2(as_bf162(q.z), as_bf162(q.w)));
  return fmaxf(cm, fmaxf(__low2float(m2), __high2float(m2)));
}

// The row kernel: per row lse, CLM_i, Fusion_i and dL/dz in place (the math in fused_classifier.cu;
// kernels/kokkos/fused_classifier.hpp, FusedClassifierFunctor).
// Slots: with off = (address of z mod 16) / sizeof(T), slot s holds row elements s kN - off + e
// (e < kN); the interior slots [lo, hi) lie wholly inside the row and are read and written with one
// 16-byte access (no per-slot boundary code in the unrolled loops, which would cost registers).
// The boundary elements (before slot lo and from slot hi on: fewer than kN each, so at most
// 2 kN - 2 <= kThreads) are taken one per thread (xe at index ve) and never leave the row.
// Slot layout of chunk c for thread t: slots c * kChunk + t + i * kThreads, i < kReg in registers
// (cache[i]), kReg <= i < kReg + kSm in shared memory at scache[(i - kReg) * kThreads + t]
// (consecutive threads, consecutive 16-byte words: no bank conflicts).
// long: one block per row runs both passes and the fix-ups over the row held on chip; split
// into functions, cache[] would cross calls the compiler may not inline (then: local memory).
template <class T, int kThreads, int kReg, int kSm, int kMinBlocks, bool kWriteGrad>
__global__ void __launch_bounds__(kThreads, kMinBlocks) fused_rows_kernel(RowArgs<T> a) {
  constexpr bool kExpOnce = std::is_same<T, float>::value;
  constexpr int kN = Elem<T>::kN;
  constexpr int kWarps = kThreads / 32;
  constexpr int64_t kChunk = int64_t(kThreads) * (kReg + kSm);
  static_assert(kThreads >= 2 * kN, "one thread per boundary element");
  __shared__ Acc red[kWarps + 1];
  __shared__ float s_zg;
  extern __shared__ uint4 dyn[];  // [kSm * kThreads] slot cache, then [k] floats
  uint4* scache = dyn + threadIdx.x;
  float* s_zslot = reinterpret_cast<float*>(dyn + kSm * kThreads);  // z at the target ids

  if (a.st->check_bad != row::kNoError) return;  // bad targets: the logits stay untouched
  const unsigned long long n = a.st->tokens;
  const float scale = a.mean ? (n > 0 ? 1.f / float(n) : 0.f) : 1.f;
  const int64_t k = a.k;
  const int64_t V = a.V;

  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    __syncthreads();  // the previous row's fix-ups are done with s_zslot and s_zg
    T* z = a.logits + r * V;
    const int32_t g = a.gold[r];

    if (g < 0) {  // padding: loss 0, gradient 0
      if constexpr (kWriteGrad) {
        const RowSlots<T> rs(z, V);
        const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
        for (int64_t s = threadIdx.x; s < rs.nslots; s += kThreads) rs.store(z, s, zero);
      }
      if (threadIdx.x == 0) {
        a.clm[r] = 0.f;
        a.fus[r] = 0.f;
      }
      continue;
    }

    // 32-bit slot and element indices: V <= INT32_MAX (checked on the host), and every index
    // formed below is < V + kChunk (interior slots: s kN - off + kN <= V).
    const int tid = int(threadIdx.x);
    const int Vi = int(V);
    const int off = int((reinterpret_cast<uintptr_t>(z) & 15u) / sizeof(T));
    const int lo = off ? 1 : 0;
    const int hi = int((int64_t(off) + V) / kN);  // < lo when the row has no interior slot
    const int head_end = Vi < lo * kN - off ? Vi : lo * kN - off;
    const int tail_begin = head_end > hi * kN - off ? head_end : hi * kN - off;
    const int nbound = head_end + (Vi - tail_begin);
    int ve = -1;  // this thread's boundary element, if any
    float xe = -INFINITY;
    if (tid < nbound) {
      ve = tid < head_end ? tid : tail_begin + (tid - head_end);
      xe = Elem<T>::to_float(z[ve]);
    }
    // Only interior slots (lo <= s < hi) are dereferenced, at slot_ptr(s).
    uint4 cache[kReg > 0 ? kReg : 1];
    const int nchunks = hi > 0 ? int((hi + kChunk - 1) / kChunk) : 1;
    auto slot_ptr = [&](int s) { return z + (s * kN - off); };

    // Pass 1: shared-memory slots first (cp.async), then the register slots, then the gathers,
    // so that all of them are in flight together.
    Acc acc{-FLT_MAX, 0.f, 0.0, 0.0};
    for (int c = 0; c < nchunks; ++c) {
      const int first = c * int(kChunk) + tid;
#pragma unroll
      for (int i = 0; i < kSm; ++i) {
        const int s = first + (kReg + i) * kThreads;
        if (s >= lo && s < hi)
          cp_async16(scache + i * kThreads, slot_ptr(s));
        else
          scache[i * kThreads] = Elem<T>::neg_inf();
      }
#pragma unroll
      for (int i = 0; i < kReg; ++i) {
        const int s = first + i * kThreads;
        cache[i] = (s >= lo && s < hi) ? *reinterpret_cast<const uint4*>(slot_ptr(s)) : Elem<T>::neg_inf();
      }
      float cm = -FLT_MAX;
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
        cm = xe > cm ? xe : cm;
      }
#pragma unroll
      for (int i = 0; i < kReg; ++i) cm = slot_max(cache[i], cm, static_cast<T*>(nullptr));
      if constexpr (kSm > 0) cp_async_wait_all();
#pragma unroll
      for (int i = 0; i < kSm; ++i) {
        cm = slot_max(scache[i * kThreads], cm, static_cast<T*>(nullptr));
        if ((i & 3) == 3) asm volatile("" ::: "memory");  // at most 4 shared slots in registers
      }
      // Read the shared slots again below rather than keep them all in registers.
      asm volatile("" ::: "memory");
      if (cm > acc.m) {
        acc.s *= expf(acc.m - cm);
        acc.m = cm;
      }
      float cs = c == 0 ? Elem<T>::exp(xe - acc.m) : 0.f;  // exp(-Inf) = 0 without an element
#pragma unroll
      for (int i = 0; i < kReg; ++i) {
        float f[kN];
        Elem<T>::unpack(cache[i], f);
#pragma unroll
        for (int e = 0; e < kN; ++e) {
          const float x = Elem<T>::exp(f[e] - acc.m);
          cs += x;
          if constexpr (kExpOnce) f[e] = x;
        }
        if constexpr (kExpOnce) cache[i] = Elem<T>::pack(f);
      }
#pragma unroll 2
      for (int i = 0; i < kSm; ++i) {  // shared slots: a run-time index is fine
        float f[kN];
        Elem<T>::unpack(scache[i * kThreads], f);
#pragma unroll
        for (int e = 0; e < kN; ++e) {
          const float x = Elem<T>::exp(f[e] - acc.m);
          cs += x;
          if constexpr (kExpOnce) f[e] = x;
        }
        if constexpr (kExpOnce) scache[i * kThreads] = Elem<T>::pack(f);
      }
      acc.s += cs;
    }
    // The reduction's barriers also order every gather (and s_zg) before the writes below.
    const float m_thread = acc.m;
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
      // Pass 2: g_v = c exp(z_v - lse) in place. Chunks before the last are reloaded slot by slot.
      const float cc = scale * (a.lambda + (1.f - a.lambda) * float(tot.mass));
      const float ccs = kExpOnce ? cc * expf(m_thread - lse) : 0.f;  // fp32: g = ccs * e
      for (int c = 0; c + 1 < nchunks; ++c) {
        for (int i = 0; i < kReg + kSm; ++i) {
          const int s = c * int(kChunk) + tid + i * kThreads;
          if (s < lo) continue;  // s < hi: only the last chunk reaches past the interior
          float f[kN];
          Elem<T>::unpack(*reinterpret_cast<const uint4*>(slot_ptr(s)), f);
#pragma unroll
          for (int e = 0; e < kN; ++e) f[e] = cc * Elem<T>::exp(f[e] - lse);
          *reinterpret_cast<uint4*>(slot_ptr(s)) = Elem<T>::pack(f);
        }
      }
      const int first = (nchunks - 1) * int(kChunk) + tid;
      auto store_grad = [&](int s, const uint4& q) {
        float f[kN];
        Elem<T>::unpack(q, f);
#pragma unroll
        for (int e = 0; e < kN; ++e) f[e] = kExpOnce ? ccs * f[e] : cc * Elem<T>::exp(f[e] - lse);
        *reinterpret_cast<uint4*>(slot_ptr(s)) = Elem<T>::pack(f);
      };
#pragma unroll
      for (int i = 0; i < kReg; ++i) {
        const int s = first + i * kThreads;
        if (s >= lo && s < hi) store_grad(s, cache[i]);
      }
#pragma unroll 2
      for (int i = 0; i < kSm; ++i) {
        const int s = first + (kReg + i) * kThreads;
        if (s >= lo && s < hi) store_grad(s, scache[i * kThreads]);
      }
      if (ve >= 0) z[ve] = Elem<T>::from_float(cc * Elem<T>::exp(xe - lse));
      __syncthreads();  // pass 2's stores are done before the fix-ups overwrite some of them
      // Fix-ups: index 0 is the gold id, 1 + j target slot j;
      // the first occurrence of an id (the gold id first) owns it and writes its final value once.
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
          bool first_occ = true;
          for (int64_t j2 = 0; j2 < j; ++j2)
            if (rid[j2] == v) {
              first_occ = false;
              break;
            }
          if (!first_occ) continue;
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

// ---- kernel 3: totals ----------------------------------------------------------------------------------
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


// ---- launch --------------------------------------------------------------------------------------------
// Launches the row kernel of one configuration; dynamic shared memory holds the slot cache and k
// floats. When that is more than the device gives one block: fails naming `what` if must_fit,
// else returns false and launches nothing (the caller takes a configuration without shared slots).
template <class T, int kThreads, int kReg, int kSm, int kMinBlocks, bool kWriteGrad>
bool launch_rows(const RowArgs<T>& args, cudaStream_t stream, const char* what, bool must_fit) {
  auto kernel = fused_rows_kernel<T, kThreads, kReg, kSm, kMinBlocks, kWriteGrad>;
  const size_t smem = size_t(kSm) * kThreads * 16 + size_t(args.k) * sizeof(float);
  int dev = 0, optin = 0;
  FUSELLM_CUDA_CHECK(cudaGetDevice(&dev));
  FUSELLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  cudaFuncAttributes fa{};
  FUSELLM_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
  if (smem + fa.sharedSizeBytes > size_t(optin)) {
    if (!must_fit) return false;
    fail("{}: k = {} target slots per position need {} bytes of shared memory; the device allows {}",
         what, args.k, smem + fa.sharedSizeBytes, optin);
  }
  FUSELLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  if (kSm > 0)
    FUSELLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                            int(cudaSharedmemCarveoutMaxShared)));
  const int64_t blocks = std::min<int64_t>(args.rows, int64_t(1) << 30);
  kernel<<<unsigned(blocks), kThreads, smem, stream>>>(args);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  return true;
}

}  // namespace
}  // namespace fusellm::cuda::fc_rows
