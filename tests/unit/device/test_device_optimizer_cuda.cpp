// The optimizer on the GPU (device/device_optimizer.hpp) against the CPU's (optim/: clip_grad_norm,
// AdamW::step) on the same model and the same token batches: five steps of forward, backward,
// clip and AdamW on each; the weights, the moments and the gradient norms compared. Both sides'
// gradients differ by the GPU's summation order (~1e-6, test_decoder_cuda), which AdamW's
// normalized update carries into the weights at that order times lr: bounded per tensor by 1e-4
// of its largest weight. to_host/from_host round trip bit for bit; a non-finite update names its
// tensor. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda_skip.hpp"
#include "fusellm/device/device_optimizer.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#include "fusellm/optim/grad_clip.hpp"

namespace fusellm {
namespace {

const std::string kModel = std::string(FUSELLM_SOURCE_DIR) + "/tests/fixtures/grads/llama_gqa";
constexpr double kLr = 1e-3, kClip = 1.0;

const model::CudaBackend& gpu() {
  static const model::CudaBackend backend(0);
  return backend;
}

// A forward and backward pass on seeded random tokens, dL/dlogits = (softmax - onehot(next)) / T.
void pass(model::TrainableModel& m, uint32_t seed) {
  const int64_t T = 40, V = m.arch().vocab;
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int32_t& id : ids) id = int32_t(rng() % uint32_t(V));
  m.zero_grad();
  Tensor z = m.forward(ids);
  for (int64_t t = 0; t < T; ++t) {
    const std::span<float> row = z.row(t);
    double mx = -INFINITY, s = 0;
    for (float v : row) mx = std::max(mx, double(v));
    for (float v : row) s += std::exp(double(v) - mx);
    for (int64_t v = 0; v < V; ++v) row[size_t(v)] = float(std::exp(double(row[size_t(v)]) - mx) / s / double(T));
    row[size_t(ids[size_t((t + 1) % T)])] -= float(1.0 / double(T));
  }
  m.backward(z.span());
}

std::vector<ParamGrad> param_grads(model::TrainableModel& m) {
  std::vector<ParamGrad> pg;
  for (auto& p : m.parameters()) pg.push_back({p.name, p.value.span(), p.grad.span(), hf_trainer_decays(p.name)});
  return pg;
}

double worst_relative(const model::TrainableModel& a, const model::TrainableModel& b, std::string& where) {
  double worst = 0;
  for (const ParamEntry& e : a.parameter_table().entries()) {
    double d = 0, r = 0;
    for (int64_t i = e.offset; i < e.offset + e.size; ++i) {
      d = std::max(d, double(std::fabs(a.decoder().parameters()[size_t(i)] - b.decoder().parameters()[size_t(i)])));
      r = std::max(r, double(std::fabs(a.decoder().parameters()[size_t(i)])));
    }
    if (d / r > worst) worst = d / r, where = e.name;
  }
  return worst;
}

TEST(DeviceOptimizer, FiveStepsFollowTheCpuOptimizer) {
  SKIP_WITHOUT_GPU();
  model::TrainableModel cpu = model::TrainableModel::load(kModel), dev = model::TrainableModel::load(kModel, gpu());
  EXPECT_EQ(device::DeviceOptimizer::make(cpu, {}), nullptr) << "an optimizer on the device for a host model";
  const auto opt = device::DeviceOptimizer::make(dev, {});
  ASSERT_NE(opt, nullptr);
  AdamW host_opt;
  const std::vector<ParamGrad> pg = param_grads(cpu);
  for (uint32_t step = 1; step <= 5; ++step) {
    pass(cpu, step);
    pass(dev, step);
    const double n_cpu = clip_grad_norm(pg, kClip), n_gpu = opt->clip(kClip);
    EXPECT_NEAR(n_gpu, n_cpu, 1e-5 * n_cpu) << "step " << step;
    EXPECT_EQ(host_opt.step(pg, kLr), "");
    EXPECT_EQ(opt->step(kLr), "");
    cpu.parameters_changed();
  }
  AdamW from_dev;
  opt->to_host(from_dev);
  EXPECT_EQ(from_dev.steps(), 5);
  std::string where;
  const double w = worst_relative(cpu, dev, where);
  EXPECT_LE(w, 1e-4) << where;
  std::printf("  5 AdamW steps on the GPU vs the CPU: worst tensor %.2e (%s)\n", w, where.c_str());
  for (const auto& [name, s] : host_opt.states()) {
    const AdamW::State* d = from_dev.find(name);
    ASSERT_NE(d, nullptr) << name;
    ASSERT_EQ(d->m.size(), s.m.size()) << name;
  }
}

TEST(DeviceOptimizer, ToHostFromHostRoundTripsAndANonFiniteStepIsNamed) {
  SKIP_WITHOUT_GPU();
  model::TrainableModel m = model::TrainableModel::load(kModel, gpu());
  auto first = device::DeviceOptimizer::make(m, {});
  for (uint32_t s = 1; s <= 3; ++s) pass(m, s), first->clip(kClip), first->step(kLr);
  AdamW saved;
  first->to_host(saved);
  const std::vector<float> weights(m.parameter_buffer().begin(), m.parameter_buffer().end());
  pass(m, 4);
  first->clip(kClip), first->step(kLr);
  AdamW a;
  first->to_host(a);
  const std::vector<float> after_a(m.parameter_buffer().begin(), m.parameter_buffer().end());
  // The state of step 3 back on a fresh optimizer, step 4 again on the same gradients (still in
  // device memory: the optimizer reads them, never writes them).
  std::copy(weights.begin(), weights.end(), m.parameter_buffer().begin());
  auto second = device::DeviceOptimizer::make(m, {});
  second->from_host(saved);
  second->clip(kClip), second->step(kLr);
  AdamW b;
  second->to_host(b);
  EXPECT_EQ(std::vector<float>(m.parameter_buffer().begin(), m.parameter_buffer().end()), after_a);
  EXPECT_EQ(b.steps(), 4);
  for (const auto& [name, s] : a.states()) {
    EXPECT_EQ(b.find(name)->m, s.m) << name;
    EXPECT_EQ(b.find(name)->v, s.v) << name;
  }
  // An infinite learning rate overflows the first tensor's weights.
  pass(m, 5);
  second->clip(kClip);
  EXPECT_EQ(second->step(INFINITY), m.parameter_table().entries().front().name);
}

}  // namespace
}  // namespace fusellm
