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
// a row stride of 2n: no copy; or, when the pre-activations are kept for the backward pass,
// writes it to a separate [T, n] matrix with the same arithmetic.
// clamp (MPT's clip_qkv): x = min(max(x, -c), c).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

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

// One activation on 8 lanes. The GELU tanh forms use 0.5 (1 + tanh y) = sigmoid(2 y), so all
// but the exact GELU are x * sigmoid(a(x)) on the vectorized exp.
template <Activation A>
FUSELLM_INLINE f32x8 act8(f32x8 x) {
  if constexpr (A == Activation::SiLU) {
    return x_sigmoid8(x, x);
  } else if constexpr (A == Activation::GeluTanh) {
    return x_sigmoid8(x, 2.f * 0.79788456080286536f * (x + 0.044715f * x * x * x));
  } else if constexpr (A == Activation::GeluFast) {
    return x_sigmoid8(x, 2.f * (x * 0.7978845608f * (1.f + 0.044715f * x * x)));
  } else if constexpr (A == Activation::QuickGelu) {
    return x_sigmoid8(x, 1.702f * x);
  } else if constexpr (A == Activation::ReLU) {
    return x > 0.f ? x : f32x8{};
  } else {  // exact GELU: erf has no vector form here
    for (int i = 0; i < 8; ++i) x[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
    return x;
  }
}

// out[c] = act(g[c]) (* u[c] when gated) over one row, 8 lanes at a time, the tail padded; out
// may be g (in place).
template <Activation A, bool Gated>
void row(const float* g, const float* u, float* out, int64_t n) {
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    f32x8 v = act8<A>(load8(g + c));
    if constexpr (Gated) v *= load8(u + c);
    store8(out + c, v);
  }
  if (c == n) return;
  float tg[8] = {}, tu[8] = {};
  std::memcpy(tg, g + c, sizeof(float) * size_t(n - c));
  if constexpr (Gated) std::memcpy(tu, u + c, sizeof(float) * size_t(n - c));
  f32x8 v = act8<A>(load8(tg));
  if constexpr (Gated) v *= load8(tu);
  store8(tg, v);
  std::memcpy(out + c, tg, sizeof(float) * size_t(n - c));
}

// m: the input rows ([gate | up] when gated); out: where act(gate) (* up) goes, n columns.
template <Activation A, bool Gated>
void run(ConstMatView m, MatView out) {
  const int64_t n = Gated ? m.cols / 2 : m.cols;
#pragma omp parallel for schedule(static) if (m.rows * n >= 16384)
  for (int64_t r = 0; r < m.rows; ++r) row<A, Gated>(m.row(r), m.row(r) + n, out.row(r), n);
}

template <bool Gated>
void dispatch(Activation a, ConstMatView m, MatView out) {
  switch (a) {
    case Activation::SiLU: return run<Activation::SiLU, Gated>(m, out);
    case Activation::GeluErf: return run<Activation::GeluErf, Gated>(m, out);
    case Activation::GeluTanh: return run<Activation::GeluTanh, Gated>(m, out);
    case Activation::GeluFast: return run<Activation::GeluFast, Gated>(m, out);
    case Activation::QuickGelu: return run<Activation::QuickGelu, Gated>(m, out);
    case Activation::ReLU: return run<Activation::ReLU, Gated>(m, out);
  }
}

}  // namespace

void activation(Activation a, MatView x) { dispatch<false>(a, x, x); }

void activation(Activation a, ConstMatView x, MatView out) {
  if (out.rows != x.rows || out.cols != x.cols)
    fail("activation: input [{}, {}] and output [{}, {}] do not agree", x.rows, x.cols, out.rows, out.cols);
  dispatch<false>(a, x, out);
}

void gated_activation(Activation a, MatView gate_up) {
  if (gate_up.cols % 2) fail("gated_activation: odd width {}", gate_up.cols);
  dispatch<true>(a, gate_up, gate_up);
}

void gated_activation(Activation a, ConstMatView gate_up, MatView out) {
  if (gate_up.cols % 2 || out.cols != gate_up.cols / 2 || out.rows != gate_up.rows)
    fail("gated_activation: [gate | up] [{}, {}] and output [{}, {}] do not agree", gate_up.rows, gate_up.cols,
         out.rows, out.cols);
  dispatch<true>(a, gate_up, out);
}

void clamp(MatView x, float c) {
#pragma omp parallel for schedule(static) if (x.rows * x.cols >= 65536)
  for (int64_t r = 0; r < x.rows; ++r) {
    float* p = x.row(r);
#pragma omp simd
    for (int64_t i = 0; i < x.cols; ++i) p[i] = std::clamp(p[i], -c, c);
  }
}

}  // namespace fusellm::model
