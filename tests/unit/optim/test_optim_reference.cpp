// AdamW, the schedules and clip_grad_norm against torch 2.5.1 + transformers 4.46.3
// (tests/reference/gen_optim.py -> tests/fixtures/optim/reference.json).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/grad_clip.hpp"
#include "fusellm/optim/lr_schedule.hpp"

using namespace fusellm;
using nlohmann::json;

namespace {

const json& reference() {
  static const json j = [] {
    std::ifstream f(std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/optim/reference.json");
    if (!f) throw std::runtime_error("missing tests/fixtures/optim/reference.json (run tests/reference/gen_optim.py)");
    return json::parse(f);
  }();
  return j;
}

std::vector<float> floats(const json& a) {
  std::vector<float> v;
  for (const auto& x : a) v.push_back(float(x.get<double>()));
  return v;
}

double rel_err(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

}  // namespace

TEST(OptimReference, AdamWCosineWarmupClipMatchesTorchEveryStep) {
  const json& r = reference()["adamw"];
  const json& c = r["config"];
  AdamW opt({.beta1 = c["beta1"], .beta2 = c["beta2"], .eps = c["eps"], .weight_decay = c["weight_decay"]});
  LrSchedule sched{.kind = ScheduleKind::Cosine,
                   .base_lr = c["lr"],
                   .warmup_steps = warmup_steps_for(c["total_steps"], c["warmup_ratio"], std::nullopt),
                   .total_steps = c["total_steps"]};
  ASSERT_EQ(sched.warmup_steps, c["warmup_steps"].get<int64_t>());

  std::vector<std::string> names;
  std::map<std::string, std::vector<float>> params, grads;
  for (auto& [name, init] : r["init"].items()) names.push_back(name), params[name] = floats(init);

  double worst_param = 0, worst_norm = 0;
  int clipped = 0;
  int64_t bit_equal = 0, values = 0;
  for (size_t k = 0; k < r["steps"].size(); ++k) {
    const json& s = r["steps"][k];
    std::vector<ParamGrad> pg;
    for (const auto& n : names) {
      grads[n] = floats(s["grads"][n]);
      bool decay = r["decay"][n];
      EXPECT_EQ(hf_trainer_decays(n), decay) << n;
      pg.push_back({n, params[n], grads[n], decay});
    }
    const double norm = clip_grad_norm(pg, c["max_grad_norm"]);
    clipped += norm > 1.0;
    worst_norm = std::max(worst_norm, rel_err(norm, s["norm"]));
    // No BLAS here: an fp64 sum of squares (ours) against torch's fp32 per-tensor norms, ~1e-7.
    ASSERT_LT(rel_err(norm, s["norm"]), 1e-6) << "step " << k;
    const double lr = sched.lr(int64_t(k));
    ASSERT_EQ(lr, s["lr"].get<double>()) << "step " << k;  // same double operations: exact
    opt.step(pg, lr);
    // Relative to the tensor's scale (max |p|): torch's fp32 norm differs from ours in the last
    // bit (grad_clip.hpp), which moves a parameter near zero by an ulp of its neighbours.
    for (const auto& n : names) {
      const auto want = floats(s["params"][n]);
      double scale = 0, diff = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, double(std::abs(want[i])));
        diff = std::max(diff, double(std::abs(params[n][i] - want[i])));
        bit_equal += params[n][i] == want[i];
        ++values;
      }
      worst_param = std::max(worst_param, diff / scale);
      ASSERT_LT(diff / scale, 1e-6) << "step " << k << " " << n;
    }
  }
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, int(r["steps"].size()));
  EXPECT_EQ(opt.steps(), int64_t(r["steps"].size()));
  for (const auto& n : names) {
    const auto m = floats(r["final_state"][n]["m"]), v = floats(r["final_state"][n]["v"]);
    const auto* st = opt.find(n);
    ASSERT_NE(st, nullptr);
    for (size_t i = 0; i < m.size(); ++i) {
      // The moments see the clip factor, whose last bit differs (above): ~1 ulp of fp32 each step.
      EXPECT_LT(std::abs(st->m[i] - m[i]), 1e-6 * std::abs(m[i]) + 1e-12) << n << " m[" << i << "]";
      EXPECT_LT(std::abs(st->v[i] - v[i]), 1e-6 * std::abs(v[i]) + 1e-15) << n << " v[" << i << "]";
    }
  }
  std::printf("vs torch over %zu steps: max relative difference params %.3g, grad norm %.3g; %lld of %lld "
              "parameter values bit-identical\n",
              r["steps"].size(), worst_param, worst_norm, (long long)bit_equal, (long long)values);
}

TEST(OptimReference, SchedulesMatchTransformers) {
  for (const json& s : reference()["schedules"]) {
    const std::string kind = s["kind"];
    const int64_t total = s["total"];
    const int64_t steps_arg = s["warmup_steps_arg"];
    LrSchedule sched{.kind = kind == "cosine_min_lr" ? ScheduleKind::Cosine : *schedule_from_name(kind),
                     .base_lr = s["base_lr"],
                     .warmup_steps = warmup_steps_for(total, s["warmup_ratio"],
                                                      steps_arg > 0 ? std::optional(steps_arg) : std::nullopt),
                     .total_steps = total,
                     .min_lr_ratio = s["min_lr_ratio"]};
    const std::string what = kind + " total " + std::to_string(total);
    ASSERT_EQ(sched.warmup_steps, s["warmup_steps"].get<int64_t>()) << what;
    for (size_t k = 0; k < s["lrs"].size(); ++k) {
      const double want = s["lrs"][k];
      EXPECT_NEAR(sched.lr(int64_t(k)), want, 1e-15 * std::abs(want)) << what << " k " << k;
    }
  }
}
