#pragma once
// Device helpers shared by the CUDA row kernels of the fusion family (fused_classifier.cu,
// topk_softmax.cu, sequence_ce.cu, fusion.cu, apply_alignment.cu); the CUDA counterpart of
// kernels/kokkos/fusion_row_math.hpp, with the same definitions where the results must agree bit
// for bit:
//
// - order_key(v, id): the total order "larger value first, ties to the smaller id" as an unsigned
//   64-bit integer (fusion_row_math.hpp's order_key, -0.0 folded to +0.0, key 0 never real), so
//   top-k selection is an integer max, identical to the CPU's.
// - error codes row * 2^24 + slot * 2^8 + kind (fusion_row_math.hpp's error_code and ErrorKind),
//   reduced with atomicMin so the host can name the first bad position, as the CPU path does.
// - 16-byte "slots": a row z[0..V) of 4-byte (fp32) or 2-byte (bf16) elements is covered by the
//   16-byte-aligned segments it touches. With off = (address of z mod 16) / sizeof(T), slot s holds
//   row elements v = s * kN + e - off (e < kN = 16 / sizeof(T)). Every slot but possibly the first
//   and the last lies wholly inside the row and is read and written with one 16-byte access; the
//   two boundary slots are read and written element by element, so no access leaves the row (the
//   neighbouring row belongs to another block, which may be writing it).
//
// Only included by .cu files (nvcc).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

namespace fusellm::cuda::row {

// ---- error codes (kernels/kokkos/fusion_row_math.hpp) --------------------------------------------
constexpr unsigned long long kNoError = ~0ull;
enum ErrorKind : int64_t {
  kNonFiniteLogit = 1,
  kGoldOutOfRange = 2,
  kIdOutOfRange = 3,
  kBadProb = 4,
  kNonFiniteLoss = 5,
  kBadScore = 6,  // a source's CE score is NaN or -Inf (fusion)
};
__host__ __device__ inline unsigned long long error_code(int64_t row, int64_t slot, int64_t kind) {
  return static_cast<unsigned long long>(row * (int64_t(1) << 24) + (slot & 0xFFFF) * 256 + kind);
}
struct DecodedError {
  int64_t row, slot, kind;
};
inline DecodedError decode_error(unsigned long long code) {
  const auto c = static_cast<int64_t>(code);
  return {c >> 24, (c >> 8) & 0xFFFF, c & 0xFF};
}

// ---- scalars ---------------------------------------------------------------------------------------
// True for finite x (NaN and +-Inf have all exponent bits set); exact under any compiler flags.
__device__ __forceinline__ bool finite_bits(float x) {
  return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

__device__ __forceinline__ unsigned long long order_key(float v, int32_t id) {
  uint32_t u = __float_as_uint(v == 0.f ? 0.f : v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(u) << 32) | static_cast<unsigned long long>(~uint32_t(id));
}
__device__ __forceinline__ int32_t order_key_id(unsigned long long key) {
  return int32_t(~uint32_t(key & 0xFFFFFFFFull));
}
__device__ __forceinline__ float order_key_value(unsigned long long key) {
  uint32_t u = uint32_t(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  return __uint_as_float(u);
}

// The segment (sequence, document) holding row i, for offsets[0..n] that run from 0 to the row
// count without decreasing (checked by the caller): the largest s < n with offsets[s] <= i, so an
// empty segment (equal offsets) is never chosen. fusion.hpp's FuseRowsFunctor::sequence_of.
__device__ __forceinline__ int64_t segment_of(const int64_t* offsets, int64_t n, int64_t i) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// ---- element types: 16 bytes <-> kN floats ------------------------------------------------------------
template <class T>
struct Elem;

template <>
struct Elem<float> {
  static constexpr int kN = 4;
  static constexpr uint32_t kNegInfBits = 0xff800000u;
  __device__ __forceinline__ static float to_float(float x) { return x; }
  __device__ __forceinline__ static float from_float(float x) { return x; }
  __device__ __forceinline__ static void unpack(const uint4& r, float (&f)[kN]) {
    f[0] = __uint_as_float(r.x);
    f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z);
    f[3] = __uint_as_float(r.w);
  }
  __device__ __forceinline__ static uint4 pack(const float (&f)[kN]) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                      __float_as_uint(f[3]));
  }
  __device__ __forceinline__ static uint4 neg_inf() {
    return make_uint4(kNegInfBits, kNegInfBits, kNegInfBits, kNegInfBits);
  }
  // exp for the row math: the accurate expf (fp32 results are held to 1e-5 of the CPU's).
  __device__ __forceinline__ static float exp(float x) { return expf(x); }
};

template <>
struct Elem<__nv_bfloat16> {
  static constexpr int kN = 8;
  static constexpr uint32_t kNegInfPair = 0xff80ff80u;  // two bf16 -Inf
  __device__ __forceinline__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ __forceinline__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  __device__ __forceinline__ static void unpack_word(uint32_t w, float& lo, float& hi) {
    lo = __uint_as_float(w << 16);  // the element at the lower address
    hi = __uint_as_float(w & 0xffff0000u);
  }
  __device__ __forceinline__ static uint32_t pack_word(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x = lo at the lower address
    uint32_t w;
    memcpy(&w, &h, sizeof w);
    return w;
  }
  __device__ __forceinline__ static void unpack(const uint4& r, float (&f)[kN]) {
    unpack_word(r.x, f[0], f[1]);
    unpack_word(r.y, f[2], f[3]);
    unpack_word(r.z, f[4], f[5]);
    unpack_word(r.w, f[6], f[7]);
  }
  __device__ __forceinline__ static uint4 pack(const float (&f)[kN]) {
    return make_uint4(pack_word(f[0], f[1]), pack_word(f[2], f[3]), pack_word(f[4], f[5]),
                      pack_word(f[6], f[7]));
  }
  __device__ __forceinline__ static uint4 neg_inf() {
    return make_uint4(kNegInfPair, kNegInfPair, kNegInfPair, kNegInfPair);
  }
  // bf16 results are held to 1e-2: the approximate exp (ex2.approx, ~2 ulp of fp32) keeps the
  // kernel at memory speed at 4 bytes per logit.
  __device__ __forceinline__ static float exp(float x) { return __expf(x); }
};

// ---- 16-byte slots of a row ----------------------------------------------------------------------------
template <class T>
struct RowSlots {
  static constexpr int kN = Elem<T>::kN;
  int off;         // row elements missing from the front of slot 0 (0 when the row is 16-byte aligned)
  int64_t V;       // row length
  int64_t nslots;  // 16-byte segments the row touches

  __device__ __forceinline__ RowSlots(const T* z, int64_t v)
      : off(int((reinterpret_cast<uintptr_t>(z) & 15u) / sizeof(T))), V(v),
        nslots((int64_t(off) + v + kN - 1) / kN) {}

  __device__ __forceinline__ bool full(int64_t s) const {
    return (s > 0 || off == 0) && (s + 1) * kN <= int64_t(off) + V;
  }

  // Slot s (< nslots) as raw 16 bytes; elements outside the row read as -Inf.
  __device__ __forceinline__ uint4 load(const T* z, int64_t s) const {
    if (full(s)) return *reinterpret_cast<const uint4*>(z + (s * kN - off));
    // Through floats (exact for fp32 and bf16 values), so that the array stays in registers.
    float f[kN];
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      const int64_t v = s * kN + i - off;
      f[i] = (v >= 0 && v < V) ? Elem<T>::to_float(z[v]) : -INFINITY;
    }
    return Elem<T>::pack(f);
  }

  // Writes the row elements of slot s (< nslots) from raw 16 bytes.
  __device__ __forceinline__ void store(T* z, int64_t s, const uint4& r) const {
    if (full(s)) {
      *reinterpret_cast<uint4*>(z + (s * kN - off)) = r;
      return;
    }
    float f[kN];
    Elem<T>::unpack(r, f);
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      const int64_t v = s * kN + i - off;
      if (v >= 0 && v < V) z[v] = Elem<T>::from_float(f[i]);
    }
  }
};

}  // namespace fusellm::cuda::row
