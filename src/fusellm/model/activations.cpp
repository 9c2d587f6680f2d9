// Activations, as transformers' ACT2FN names them (transformers/activations.py):
//   silu, swish        x * sigmoid(x)                                        (LlamaMLP's act_fn)
//   gelu, gelu_python  0.5 x (1 + erf(x / sqrt 2))                           (GELUActivation)
//   gelu_new,          0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))       (NewGELUActivation,
//   gelu_pytorch_tanh                                                         PytorchGELUTanh)
//   gelu_fast          0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))   (FastGELUActivation)
//   quick_gelu         x * sigmoid(1.702 x)                                  (QuickGELUActivation)
//   relu               max(x, 0)
// The gated form (LlamaMLP: down(act(gate(x)) * up(x))) works on the fused [gate | up] output
// of one GEMM and leaves act(gate) * up in the gate half, which the down projection reads with
// a row stride of 2n: no copy.
#include <omp.h>

#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/model/fast_math.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

Activation activation_from_name(const std::string& name, const std::string& where) {
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "gelu" || name == "gelu_python") return Activation::GeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::GeluTanh;
  if (name == "gelu_fast") return Activation::GeluFast;
  if (name == "quick_gelu") return Activation::QuickGelu;
  if (name == "relu") return Activation::ReLU;
  fail("{}: unsupported activation \"{}\" (supported: silu, swish, gelu, gelu_python, gelu_new, "
       "gelu_pytorch_tanh, gelu_fast, quick_gelu, relu)",
       where, name);
}

namespace {

template <Activation A>
inline float act(float x) {
  if constexpr (A == Activation::SiLU) {
    return x / (1.f + fast_exp(-x));
  } else if constexpr (A == Activation::GeluErf) {
    return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
  } else if constexpr (A == Activation::GeluTanh) {
    return 0.5f * x * (1.f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
  } else if constexpr (A == Activation::GeluFast) {
    return 0.5f * x * (1.f + std::tanh(x * 0.7978845608f * (1.f + 0.044715f * x * x)));
  } else if constexpr (A == Activation::QuickGelu) {
    return x / (1.f + fast_exp(-1.702f * x));
  } else {
    return x > 0.f ? x : 0.f;
  }
}

template <Activation A, bool Gated>
void run(MatView m) {
  const int64_t n = Gated ? m.cols / 2 : m.cols;
#pragma omp parallel for schedule(static) if (m.rows * n >= 16384)
  for (int64_t r = 0; r < m.rows; ++r) {
    float* g = m.row(r);
    if constexpr (Gated) {
      const float* u = g + n;
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) g[c] = act<A>(g[c]) * u[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) g[c] = act<A>(g[c]);
    }
  }
}

template <bool Gated>
void dispatch(Activation a, MatView m) {
  switch (a) {
    case Activation::SiLU: return run<Activation::SiLU, Gated>(m);
    case Activation::GeluErf: return run<Activation::GeluErf, Gated>(m);
    case Activation::GeluTanh: return run<Activation::GeluTanh, Gated>(m);
    case Activation::GeluFast: return run<Activation::GeluFast, Gated>(m);
    case Activation::QuickGelu: return run<Activation::QuickGelu, Gated>(m);
    case Activation::ReLU: return run<Activation::ReLU, Gated>(m);
  }
}

}  // namespace

void activation(Activation a, MatView x) { dispatch<false>(a, x); }

void gated_activation(Activation a, MatView gate_up) {
  if (gate_up.cols % 2) fail("gated_activation: odd width {}", gate_up.cols);
  dispatch<true>(a, gate_up);
}

}  // namespace fusellm::model
