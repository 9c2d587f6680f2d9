// convert_to_f32: checkpoint dtypes (F32, F16, BF16, F64) -> the fp32 compute type.
//
// This runs over every byte of every checkpoint (GBs), so each dtype has a branch-free loop the
// compiler vectorizes (AVX2 under FUSELLM_ARCH_FLAGS), loading through memcpy because a tensor's
// bytes need not be aligned in the mapping. Large tensors are split into chunks across OpenMP
// threads; page faults of the mapping are then also taken in parallel.
#include <algorithm>
#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/io/safetensors.hpp"

namespace fusellm {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr size_t kParallelMin = size_t(1) << 20;
constexpr size_t kChunk = size_t(1) << 16;

inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// IEEE binary16 -> binary32, bit-identical to f16_to_f32 (dtype.hpp) but without its
// normalization loop, so it vectorizes. Shift exponent and mantissa into place and rebias; inf/nan
// get the exponent pushed to all ones; zero and subnormals are built as 2^-14 * (1 + m/1024) and
// the implicit 2^-14 subtracted again, which is exact (after F. Giesen's half_to_float_fast).
inline float half_to_float(uint16_t h) {
  constexpr uint32_t kExp = 0x7c00u << 13;  // f16 exponent mask, shifted into f32 position
  const uint32_t body = uint32_t(h & 0x7fffu) << 13;
  const uint32_t exp = body & kExp;
  const uint32_t rebias = body + ((127u - 15u) << 23);
  const uint32_t special = rebias + ((128u - 16u) << 23);       // inf / nan
  const float sub = bits_f32(rebias + (1u << 23)) - bits_f32(113u << 23);  // zero / subnormal
  // Select with masks rather than ?: so that GCC if-converts the loop (with -ftrapping-math it
  // will not speculate the subtraction into a branch-free select by itself).
  const uint32_t is_special = 0u - uint32_t(exp == kExp);
  const uint32_t is_small = 0u - uint32_t(exp == 0);
  const uint32_t mag = (special & is_special) | (f32_bits(sub) & is_small) | (rebias & ~(is_special | is_small));
  return bits_f32(mag | (uint32_t(h & 0x8000u) << 16));
}

void f16_chunk(const std::byte* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = half_to_float(h);
  }
}

void bf16_chunk(const std::byte* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bits_f32(uint32_t(h) << 16);  // bfloat16 is the top half of a binary32
  }
}

void f64_chunk(const std::byte* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    double d;
    std::memcpy(&d, src + 8 * i, 8);
    dst[i] = float(d);  // round to nearest, as torch's .float()
  }
}

void f32_chunk(const std::byte* src, float* dst, size_t n) { std::memcpy(dst, src, 4 * n); }

template <typename Kernel>
void run_chunked(Kernel kernel, const std::byte* src, size_t elem_size, float* dst, size_t n) {
  if (n < kParallelMin) {
    kernel(src, dst, n);
    return;
  }
  const int64_t chunks = int64_t((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t first = size_t(c) * kChunk;
    const size_t count = std::min(kChunk, n - first);
    kernel(src + first * elem_size, dst + first, count);
  }
}

}  // namespace

void convert_to_f32(const TensorInfo& t, std::span<float> out) {
  const size_t n = size_t(numel(t.shape));
  if (out.size() != n)
    fail("{}: tensor '{}': shape {} has {} elements but the output holds {}", t.file, t.name, shape_str(t.shape),
         n, out.size());
  // TensorInfo is a plain struct; a caller could have built one by hand, so re-check the span
  // that the loops below trust.
  if (t.bytes.size() != n * dtype_size(t.dtype))
    fail("{}: tensor '{}': {} bytes for {} elements of {}", t.file, t.name, t.bytes.size(), n,
         dtype_name(t.dtype));
  void (*kernel)(const std::byte*, float*, size_t) = nullptr;
  switch (t.dtype) {
    case DType::F32: kernel = f32_chunk; break;
    case DType::F16: kernel = f16_chunk; break;
    case DType::BF16: kernel = bf16_chunk; break;
    case DType::F64: kernel = f64_chunk; break;
    default:
      fail("{}: tensor '{}': dtype {} is not a floating-point type, cannot convert it to fp32", t.file, t.name,
           dtype_name(t.dtype));
  }
  if (n == 0) return;  // an empty span may carry a null pointer, which memcpy must not see
  run_chunked(kernel, t.bytes.data(), dtype_size(t.dtype), out.data(), n);
}

}  // namespace fusellm
