// Backward of the plain (non-gated) MLP's activation, down(act(up x)) (GPTNeoXMLP, GPT2MLP,
// MptMLP), for every activation the forward runs (activations.cpp; transformers' ACT2FN): with
// a the pre-activation and dh the gradient of h = act(a), da = dh * act'(a), where
//   gelu (GELUActivation, F.gelu)          act'(a) = Phi(a) + a phi(a),
//                                          Phi(a) = 0.5 (1 + erf(a / sqrt 2)),
//                                          phi(a) = exp(-a^2 / 2) / sqrt(2 pi)
//   gelu_new, gelu_pytorch_tanh            act(a) = a s, s = sigmoid(2 u), u = k (a + c a^3),
//     (NewGELUActivation, F.gelu(approximate="tanh"); k = sqrt(2/pi), c = 0.044715)
//                                          act'(a) = s + a s (1 - s) 2 k (1 + 3 c a^2)
//   gelu_fast (FastGELUActivation)         the same with k = 0.7978845608
//   silu                                   act'(a) = s + a s (1 - s),  s = sigmoid(a)
//   quick_gelu                             act'(a) = s + 1.702 a s (1 - s),  s = sigmoid(1.702 a)
//   relu                                   act'(a) = [a > 0]
// (0.5 (1 + tanh u) = sigmoid(2 u), the identity the forward uses.) The sigmoid forms run 8 lanes
// at a time on fast_math.hpp's exp8; the exact GELU's erf has no vector form here, as in the
// forward. In place on dh: dh becomes da.
#include <cmath>
#include <numbers>

#include "fusellm/core/error.hpp"
#include "fusellm/model/fast_math.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

namespace {

// act'(a) on 8 lanes.
template <Activation A>
FUSELLM_INLINE f32x8 derivative8(f32x8 a) {
  if constexpr (A == Activation::GeluErf) {
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt2pi = 0.39894228040143268f;
    f32x8 d;
    for (int i = 0; i < 8; ++i)
      d[i] = 0.5f * (1.f + std::erf(a[i] * inv_sqrt2)) + a[i] * inv_sqrt2pi * std::exp(-0.5f * a[i] * a[i]);
    return d;
  } else if constexpr (A == Activation::ReLU) {
    return a > 0.f ? splat8(1.f) : f32x8{};
  } else {
    // act(a) = a sigmoid(f(a)): act'(a) = s + a s (1 - s) f'(a)
    f32x8 f, df;
    if constexpr (A == Activation::SiLU) {
      f = a, df = splat8(1.f);
    } else if constexpr (A == Activation::QuickGelu) {
      f = 1.702f * a, df = splat8(1.702f);
    } else {  // GeluTanh, GeluFast: f = 2 k (a + c a^3)
      constexpr float k = A == Activation::GeluTanh ? 0.79788456080286536f : 0.7978845608f;
      f = 2.f * k * (a + 0.044715f * a * a * a);
      df = 2.f * k * (1.f + 3.f * 0.044715f * a * a);
    }
    const f32x8 s = sigmoid8(f);
    return s + a * s * (1.f - s) * df;
  }
}

template <Activation A>
void run(ConstMatView pre, MatView dh) {
  const int64_t n = pre.cols;
#pragma omp parallel for schedule(static) if (pre.rows * n >= 16384)
  for (int64_t r = 0; r < pre.rows; ++r) {
    const float* a = pre.row(r);
    float* d = dh.row(r);
    lanes(n, [&](int64_t c, int64_t k) { store_n(d + c, load_n(d + c, k) * derivative8<A>(load_n(a + c, k)), k); });
  }
}

}  // namespace

void activation_backward(Activation a, ConstMatView pre, MatView dh) {
  if (pre.rows != dh.rows || pre.cols != dh.cols)
    fail("activation_backward: pre-activations [{}, {}] and gradient [{}, {}] do not agree", pre.rows, pre.cols,
         dh.rows, dh.cols);
  switch (a) {
    case Activation::SiLU: return run<Activation::SiLU>(pre, dh);
    case Activation::GeluErf: return run<Activation::GeluErf>(pre, dh);
    case Activation::GeluTanh: return run<Activation::GeluTanh>(pre, dh);
    case Activation::GeluFast: return run<Activation::GeluFast>(pre, dh);
    case Activation::QuickGelu: return run<Activation::QuickGelu>(pre, dh);
    case Activation::ReLU: return run<Activation::ReLU>(pre, dh);
  }
}

}  // namespace fusellm::model
