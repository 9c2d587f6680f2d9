#include "fusellm/optim/adamw.hpp"

#include <cmath>
#include <cstring>

#include "fusellm/core/error.hpp"

namespace fusellm {

bool hf_trainer_decays(std::string_view n) {
  if (n.find("bias") != std::string_view::npos) return false;
  if (n.find("norm") != std::string_view::npos) return false;  // *_layernorm, norm_1, model.norm, ...
  for (std::string_view ln : {"ln_1.", "ln_2.", "ln_f."})
    if (n.find(ln) != std::string_view::npos) return false;
  return true;
}

const AdamW::State* AdamW::find(const std::string& name) const {
  auto it = state_.find(name);
  return it == state_.end() ? nullptr : &it->second;
}

void AdamW::set_state(const std::string& name, std::vector<float> m, std::vector<float> v) {
  if (m.size() != v.size())
    fail("AdamW: state of '{}': exp_avg has {} values, exp_avg_sq {}", name, m.size(), v.size());
  state_[name] = State{std::move(m), std::move(v)};
}

namespace {
// 1 when x is Inf or NaN (all exponent bits set): an integer test, so the update loop's OR
// reduction still vectorizes, unlike std::isfinite.
inline unsigned nonfinite(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x7f800000u) == 0x7f800000u;
}
}  // namespace

std::string AdamW::step(std::span<const ParamGrad> params, double lr) {
  for (const auto& pg : params)
    if (pg.param.size() != pg.grad.size())
      fail("AdamW: parameter '{}' has {} values but its gradient {}", pg.name, pg.param.size(), pg.grad.size());

  ++step_;
  // Python floats: beta ** step with step = state_steps[i].item() (a float), all in double.
  const double t = double(step_);
  const double bias_correction1 = 1 - std::pow(opt_.beta1, t);
  const double bias_correction2 = 1 - std::pow(opt_.beta2, t);
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);  // Python's ** 0.5

  // The scalars as torch hands them to fp32 kernels (opmath of float is float on the CPU).
  const float lerp_w = float(1 - opt_.beta1);
  const float beta2 = float(opt_.beta2);
  const float one_minus_beta2 = float(1 - opt_.beta2);
  const float bc2_sqrt = float(bias_correction2_sqrt);
  const float eps = float(opt_.eps);
  const float neg_step_size = float(-step_size);

  std::string first_bad;
  for (const auto& pg : params) {
    const int64_t n = int64_t(pg.param.size());
    State& s = state_[pg.name];
    if (s.m.empty() && n > 0) s.m.assign(n, 0.f), s.v.assign(n, 0.f);
    if (int64_t(s.m.size()) != n)
      fail("AdamW: parameter '{}' has {} values, its optimizer state {}", pg.name, n, s.m.size());
    const float decay = pg.weight_decay ? float(1 - lr * opt_.weight_decay) : 1.f;
    float* p = pg.param.data();
    const float* g = pg.grad.data();
    float* m = s.m.data();
    float* v = s.v.data();
    unsigned bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= 32768)
    for (int64_t i = 0; i < n; ++i) {
      // param.mul_(1 - lr * weight_decay); torch multiplies even by 1 (wd 0): a no-op in fp32.
      float pi = p[i] * decay;
      // exp_avg.lerp_(grad, 1 - beta1): torch's vectorized CPU lerp is fmadd(w, end - self, self)
      // for |w| < 0.5.
      const float gi = g[i];
      const float mi = std::fma(lerp_w, gi - m[i], m[i]);
      // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + value * t1 * t2,
      // which torch's CPU build contracts to fma(value * t1, t2, self) (checked bit for bit).
      const float vi = std::fma(one_minus_beta2 * gi, gi, v[i] * beta2);
      // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps). std::sqrt is correctly
      // rounded; torch's CPU sqrt goes through a vectorized math routine that is not always
      // (about 1% of elements differ by an ulp), the one place besides the clipping norm where
      // we do not agree with torch bit for bit.
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      // param.addcdiv_(exp_avg, denom, value=-step_size): self + (value * t1) / t2, no fma.
      pi = pi + neg_step_size * mi / denom;
      p[i] = pi, m[i] = mi, v[i] = vi;
      bad |= nonfinite(pi) | nonfinite(mi) | nonfinite(vi);
    }
    if (bad && first_bad.empty()) first_bad = pg.name;
  }
  return first_bad;
}

}  // namespace fusellm
