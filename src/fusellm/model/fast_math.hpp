#pragma once
// Branch-free float functions that the compiler vectorizes inside `#pragma omp simd` loops
// (glibc's expf is a call per element; softmax and SiLU spend most of their time in it).
#include <cstdint>
#include <cstring>

namespace fusellm::model {

// exp(x) for fp32, Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (n by the round-to-nearest
// magic constant 1.5 * 2^23), exp(r) by a degree-6 polynomial, 2^n put in the exponent bits.
// Relative error below 2e-7 over the whole range; 0 below -87.3 (where expf is subnormal).
inline float fast_exp(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float magic = 12582912.f;  // 1.5 * 2^23
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.f;
  int32_t ti;
  std::memcpy(&ti, &t, 4);
  int32_t mi;
  std::memcpy(&mi, &magic, 4);
  const int32_t bits = (ti - mi + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x < -87.3f ? 0.f : p * scale;
}

}  // namespace fusellm::model
