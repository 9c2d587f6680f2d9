#pragma once
// Element types found in safetensors files and their conversion to fp32 (the CPU compute type).
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace fusellm {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

std::string_view dtype_name(DType t);                     // "F32", as safetensors spells it
std::optional<DType> dtype_from_name(std::string_view s);  // nullopt when unknown
std::size_t dtype_size(DType t);                           // bytes per element

// IEEE binary16 -> binary32, exact (subnormals, inf, nan included).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// bfloat16 is the top half of a binary32.
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// binary32 -> bfloat16 with round-to-nearest-even (as torch does); NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// binary32 -> binary16 with round-to-nearest-even; overflow to inf.
uint16_t f32_to_f16(float f);

}  // namespace fusellm
