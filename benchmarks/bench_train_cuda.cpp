// The student's training step on the GPU, as the one-process trainer runs it (issue 15's training
// benchmark): one model directory loaded as fusellm's student (TrainableModel on the CudaBackend;
// --dtype bf16: bf16 weights and the GEMMs on tensor cores, GemmMath::kBf16), one sequence of T
// random tokens, and per step what src/fusellm/train/train_step.cpp and trainer.cpp do:
//
//   zero_grad    the gradients zeroed where they are (a device memset)
//   forward      the forward pass keeping its activations and its logits [T, V] on the GPU
//   loss         the fused classifier on the GPU (device::DeviceLoss), CLM only (lambda 1, mean
//                over the labelled positions), dL/dlogits written over the logits (train_step's
//                sequence_loss); on the CPU backend the Kokkos classifier
//   backward     the backward pass from there (the gradients stay on the GPU)
//   optimizer    on the GPU: device::DeviceOptimizer's norm, clip and AdamW (0.9, 0.95, 1e-8,
//                wd 0.1), which also refreshes the weights the passes read; on the CPU backend:
//                clip_grad_norm and AdamW on the host (Run::reduce_and_clip, Run::update)
//
// Each phase ends with the device idle. The median of REPS steps
// after WARMUP steps, on the same tokens (gold: the next token, the last position unlabelled, as
// LlamaForCausalLM shifts labels).
//
//   bench_train_cuda MODEL_DIR T REPS [--warmup N] [--dtype f32|bf16] [--device cuda|cpu]
//
// --device cpu runs the same loop on the CPU backend (nothing to upload): a check of this program
// and its driver on a machine without a GPU, at a small size.
//
// Driven by benchmarks/bench_train_cuda.py, which makes the ~1B Llama, times PyTorch +
// transformers on it in the same run and prints the ratios and MFU. Without arguments (as
// scripts/gpu_check.sh's loop over bench_*_cuda calls it) it says so and exits 0.
#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/fusion/fused_classifier.hpp"
#include "fusellm/device/device_loss.hpp"
#include "fusellm/device/device_optimizer.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/grad_clip.hpp"

namespace {

using fusellm::bench::Clock;
using fusellm::bench::median;
using fusellm::bench::seconds_since;

struct Options {
  std::string dir;
  int64_t tokens = 0;
  int reps = 0, warmup = 1;
  std::string dtype = "f32";  // [train].dtype: f32, or bf16 (bf16 weights; on the GPU, bf16 GEMMs)
  std::string device = "cuda";
};

Options parse(int argc, char** argv) {
  Options o;
  o.dir = argv[1];
  o.tokens = std::atoll(argv[2]);
  o.reps = std::atoi(argv[3]);
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--warmup" && i + 1 < argc) o.warmup = std::atoi(argv[++i]);
    else if (a == "--dtype" && i + 1 < argc) o.dtype = argv[++i];
    else if (a == "--device" && i + 1 < argc) o.device = argv[++i];
    else fusellm::fail("bench_train_cuda: unknown argument '{}'", a);
  }
  if (o.tokens < 2 || o.reps < 1 || o.warmup < 0) fusellm::fail("bench_train_cuda: T >= 2, REPS >= 1, --warmup >= 0");
  if (o.dtype != "f32" && o.dtype != "bf16") fusellm::fail("bench_train_cuda: --dtype {}: f32 or bf16", o.dtype);
  if (o.device != "cuda" && o.device != "cpu") fusellm::fail("bench_train_cuda: --device {}: cuda or cpu", o.device);
  return o;
}

// Seconds of each phase of each measured step.
struct Phases {
  std::vector<double> zero, forward, loss, backward, optimizer, step;
};

// Run::reduce_and_clip and Run::update of the one-process trainer: on the GPU, the device
// optimizer; on the host, the gradients brought there, clip_grad_norm and AdamW::step, and the
// parameters marked for the next forward's upload.
std::string optimizer_step(fusellm::model::TrainableModel& m, fusellm::device::DeviceOptimizer* on_gpu,
                           std::span<const fusellm::ParamGrad> pg, fusellm::AdamW& adamw, double& gnorm) {
  if (on_gpu) {
    gnorm = on_gpu->clip(1.0);
    return on_gpu->step(1e-5);
  }
  m.gradients_to_host();
  gnorm = fusellm::clip_grad_norm(pg, 1.0);
  std::string bad = adamw.step(pg, 1e-5);
  m.parameters_changed();
  return bad;
}

int run(const Options& o) {
  using namespace fusellm;
  std::optional<model::CudaBackend> gpu;
  const bool bf16 = o.dtype == "bf16";
  if (o.device == "cuda") gpu.emplace(0, bf16 ? model::GemmMath::kBf16 : model::GemmMath::kFp32);
  const model::Backend& backend = gpu ? static_cast<const model::Backend&>(*gpu) : model::cpu_backend();
  const auto t_load = Clock::now();
  model::TrainableModel m = model::TrainableModel::load(o.dir, backend);
  m.set_weight_dtype(bf16 ? DType::BF16 : DType::F32);  // as the trainer's load_target
  const double load_s = seconds_since(t_load);
  const int64_t T = o.tokens, V = m.arch().vocab;
  std::mt19937 rng(1);
  std::vector<int32_t> ids(static_cast<size_t>(T)), gold(static_cast<size_t>(T));
  for (int32_t& id : ids) id = int32_t(rng() % uint32_t(V));
  for (int64_t i = 0; i < T; ++i) gold[size_t(i)] = i + 1 < T ? ids[size_t(i + 1)] : -1;
  const fusion::HostRows targets("clm", T, 1);  // CLM only: one empty slot per row, as train_step passes
  fusion::FusedClassifierParams fcp;
  fcp.lambda = 1.0f;
  fcp.reduction = fusion::LossReduction::kMean;
  std::vector<ParamGrad> pg;
  for (auto& p : m.parameters()) pg.push_back({p.name, p.value.span(), p.grad.span(), hf_trainer_decays(p.name)});
  AdamW adamw({0.9, 0.95, 1e-8, 0.1});
  // On the GPU the optimizer runs there, as the trainer runs it (device/device_optimizer.hpp).
  const std::unique_ptr<device::DeviceOptimizer> on_gpu = device::DeviceOptimizer::make(m, adamw.options());
  // And the loss (device/device_loss.hpp): the logits stay on the GPU.
  const std::unique_ptr<device::DeviceLoss> loss_on_gpu = device::DeviceLoss::make(m);
  const std::vector<int32_t> no_ids(static_cast<size_t>(T), -1);  // CLM only: one empty slot per row
  const std::vector<float> no_probs(static_cast<size_t>(T), 0.f);

  Phases ph;
  double first_loss = 0, last_loss = 0, gnorm = 0;
  for (int it = 0; it < o.warmup + o.reps; ++it) {
    const auto t0 = Clock::now();
    m.zero_grad();
    if (gpu) gpu->sync();
    const double t_zero = seconds_since(t0);
    double loss = 0, t_fwd = 0, t_loss = 0;
    if (loss_on_gpu) {  // train_step's path on a GPU
      const std::span<float> z = m.forward_in_backend(ids);
      gpu->sync();
      t_fwd = seconds_since(t0);
      loss = loss_on_gpu->sequence(z, V, gold, no_ids, no_probs, 1, 1.f, 1.f).loss;
      t_loss = seconds_since(t0);
      m.backward_in_backend();
      gpu->sync();
    } else {
      Tensor logits = m.forward(ids);
      t_fwd = seconds_since(t0);
      loss = fusion::fused_classifier(logits.span(), T, V, gold, targets, fcp).loss;
      t_loss = seconds_since(t0);
      m.backward(logits.span());
    }
    const double t_bwd = seconds_since(t0);
    const std::string bad = optimizer_step(m, on_gpu.get(), pg, adamw, gnorm);
    const double t_all = seconds_since(t0);
    if (!std::isfinite(loss) || !std::isfinite(gnorm) || !bad.empty())
      fail("bench_train_cuda: step {}: loss {}, gradient norm {}, non-finite after the update: '{}'", it, loss, gnorm,
           bad);
    (it == 0 ? first_loss : last_loss) = loss;
    if (it < o.warmup) continue;
    ph.zero.push_back(t_zero), ph.forward.push_back(t_fwd - t_zero), ph.loss.push_back(t_loss - t_fwd);
    ph.backward.push_back(t_bwd - t_loss), ph.optimizer.push_back(t_all - t_bwd), ph.step.push_back(t_all);
  }
  const double step = median(ph.step), fwd = median(ph.forward), opt = median(ph.optimizer);
  const auto ms = [](double s) { return s * 1e3; };
  std::printf("fusellm %s %s train phases (median ms): forward %.1f, loss %.1f (the fused classifier: on the GPU, "
              "device_loss; on the host, Kokkos), backward %.1f, zero_grad %.1f, optimizer %.1f (on the GPU: "
              "device_optimizer; on the host: gradient download, clip, AdamW)\n",
              o.device.c_str(), o.dtype.c_str(), ms(fwd), ms(median(ph.loss)), ms(median(ph.backward)),
              ms(median(ph.zero)), ms(opt));
  std::printf("fusellm %s %s train step: %lld parameters, T=%lld, load %.1f s, loss %.4f -> %.4f, grad_norm %.3f, "
              "median %.1f ms of %d, %.0f tokens/s\n",
              o.device.c_str(), o.dtype.c_str(), (long long)m.num_parameters(), (long long)T, load_s, first_loss,
              last_loss, gnorm, ms(step), o.reps, double(T) / step);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::printf("bench_train_cuda: MODEL_DIR T REPS [--warmup N] [--dtype f32|bf16] [--device cuda|cpu] (run by "
                "benchmarks/bench_train_cuda.py); nothing to do\n");
    return 0;
  }
  Kokkos::ScopeGuard kokkos;  // the host fused classifier: OpenMP with OMP_NUM_THREADS
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
