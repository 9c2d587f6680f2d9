#pragma once
// 8-wide float math with GCC/Clang vector extensions (AVX2 registers under -march=x86-64-v3,
// two SSE/NEON registers elsewhere): the compiler does not vectorize expf or branchy clamps by
// itself without -ffast-math, and softmax and SiLU spend most of their time there.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

namespace fusellm::model {

using f32x8 = float __attribute__((vector_size(32)));
using i32x8 = int32_t __attribute__((vector_size(32)));

#define FUSELLM_INLINE inline __attribute__((always_inline))

FUSELLM_INLINE f32x8 load8(const float* p) {
  f32x8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FUSELLM_INLINE void store8(float* p, f32x8 v) { std::memcpy(p, &v, sizeof v); }
FUSELLM_INLINE f32x8 splat8(float x) { return f32x8{} + x; }
FUSELLM_INLINE f32x8 max8(f32x8 a, f32x8 b) { return a > b ? a : b; }
FUSELLM_INLINE float hmax8(f32x8 v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
FUSELLM_INLINE float hsum8(f32x8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// exp(x), Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (n rounded by adding 1.5 * 2^23),
// exp(r) by a degree-6 polynomial, 2^n put in the exponent bits. Relative error below 2e-7;
// exactly 0 below -87.3 (where expf is subnormal), clamped near FLT_MAX above 88.7.
FUSELLM_INLINE f32x8 exp8(f32x8 x) {
  const f32x8 lo = splat8(-87.3f), hi = splat8(88.7f), magic = splat8(12582912.f);
  f32x8 xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const f32x8 t = xc * 1.44269504088896341f + magic;
  const f32x8 n = t - magic;
  f32x8 r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const f32x8 z = r * r;
  f32x8 p = splat8(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.f;
  // n sits in the low mantissa bits of t.
  const i32x8 bits = (((i32x8)t - (i32x8)magic) + 127) << 23;
  const f32x8 e = p * (f32x8)bits;
  return x < lo ? f32x8{} : e;
}

// One row of attention scores, sr[0, ld) with ld a multiple of 8: replaced by exp(s - max) over
// the visible columns [c0, c1) and 0 elsewhere; returns the sum of the exps (the softmax's
// normalizer). Whole vectors over [c0 / 8 * 8, ceil(c1 / 8) * 8), masked columns set to -inf
// first so that exp gives them 0.
FUSELLM_INLINE float masked_exp_row(float* sr, int64_t c0, int64_t c1, int64_t ld) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t cs = c0 / 8 * 8, ce = (c1 + 7) / 8 * 8;
  std::fill(sr + cs, sr + c0, -kInf);
  std::fill(sr + c1, sr + ce, -kInf);
  f32x8 mv = splat8(-kInf);
  for (int64_t c = cs; c < ce; c += 8) mv = max8(mv, load8(sr + c));
  const f32x8 m = splat8(hmax8(mv));
  f32x8 sv{};
  for (int64_t c = cs; c < ce; c += 8) {
    const f32x8 e = exp8(load8(sr + c) - m);
    store8(sr + c, e);
    sv += e;
  }
  std::fill(sr, sr + cs, 0.f);
  std::fill(sr + ce, sr + ld, 0.f);
  return hsum8(sv);
}

// Applies f(c, count) to [0, n) in chunks of 8 lanes; count < 8 only for the tail.
template <class F>
FUSELLM_INLINE void lanes(int64_t n, F&& f) {
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) f(c, 8);
  if (c < n) f(c, n - c);
}

// Loads count (<= 8) floats, zero-padded; stores count floats.
FUSELLM_INLINE f32x8 load_n(const float* p, int64_t count) {
  if (count == 8) return load8(p);
  float t[8] = {};
  std::memcpy(t, p, sizeof(float) * size_t(count));
  return load8(t);
}
FUSELLM_INLINE void store_n(float* p, f32x8 v, int64_t count) {
  if (count == 8) return store8(p, v);
  float t[8];
  store8(t, v);
  std::memcpy(p, t, sizeof(float) * size_t(count));
}

// sigmoid(a) on 8 lanes.
FUSELLM_INLINE f32x8 sigmoid8(f32x8 a) { return 1.f / (1.f + exp8(-a)); }

// x * sigmoid(a x) = x / (1 + exp(-a x)): SiLU (a = 1), QuickGELU (a = 1.702).
FUSELLM_INLINE f32x8 x_sigmoid8(f32x8 x, f32x8 ax) { return x / (1.f + exp8(-ax)); }

}  // namespace fusellm::model
