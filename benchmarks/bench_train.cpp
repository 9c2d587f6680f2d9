// fusellm side of the training-step benchmark (benchmarks/run_train_bench.sh): one full optimizer
// step per iteration on one sequence (micro batch 1), as src/fusellm/train/train_step.cpp and
// trainer.cpp run it: zero_grad, TrainableModel::forward, fusion::fused_classifier (gradient
// written into the logits in place), TrainableModel::backward, clip_grad_norm(1.0), AdamW::step.
// fp32 on the CPU, threads = OMP_NUM_THREADS.
//
//   bench_train DIR [--seq 512] [--warmup 2] [--iters 10] [--fusion]
//
// Loss: CLM (lambda = 1) by default; --fusion adds sparse top-10 targets and lambda = 0.9. Same
// token ids and targets as bench_train.py: ids[i] = (i * 7919 + 13) % V, gold = the next id
// (last position ignored, as LlamaForCausalLM's shifted labels), target j of position t =
// (t * 131 + j * 977 + 7) % V with probability (10 - j) / 55.
//
// Prints the median step time, tokens/s, the median of each phase, and memory:
//   peak RSS: VmHWM of /proc/self/status at the end (the whole process: binary, libraries,
//     OpenBLAS's buffers, Kokkos, the safetensors mapping while it loaded, the model);
//   baseline: VmRSS after Kokkos is up and before the model is loaded (what is not the model);
//   sum: 4 bytes x (parameters + gradients + 2 Adam moments) + the activations the backward pass
//     keeps, counted from the architecture as decoder.hpp documents them: per layer x_in and
//     x_mid [T, hidden], q/k/v [T, (H + 2 KV) D], the attention output [T, H D], [gate | up]
//     [T, 2 I]; plus x_final [T, hidden] and the logits (= dlogits, in place) [T, V].
#include <Kokkos_Core.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/fusion/fused_classifier.hpp"
#include "fusellm/model/trainable_model.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/grad_clip.hpp"

namespace {

using fusellm::bench::Clock;
using fusellm::bench::cpu_seconds;
using fusellm::bench::median;
double since(Clock::time_point t0) { return fusellm::bench::seconds_since(t0); }

// A field of /proc/self/status in MiB ("VmRSS", "VmHWM").
double status_mib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::stod(line.substr(n + 1)) / 1024.0;
  return -1;
}

constexpr double kMiB = 1024.0 * 1024.0;

struct Options {
  std::string dir;
  int seq = 512, warmup = 2, iters = 10;
  bool fusing = false;
};

// false (after a message) on a bad command line.
bool parse(int argc, char** argv, Options& o) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--seq N] [--warmup N] [--iters N] [--fusion]\n", argv[0]);
    return false;
  }
  o.dir = argv[1];
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--fusion")) o.fusing = true;
    else if (i + 1 < argc && !std::strcmp(argv[i], "--seq")) o.seq = std::stoi(argv[++i]);
    else if (i + 1 < argc && !std::strcmp(argv[i], "--warmup")) o.warmup = std::stoi(argv[++i]);
    else if (i + 1 < argc && !std::strcmp(argv[i], "--iters")) o.iters = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

// The step's inputs (bench_train.py's): ids, the shifted gold ids, the fused targets.
struct Problem {
  std::vector<int32_t> ids, gold;
  fusellm::fusion::HostRows targets;
  fusellm::fusion::FusedClassifierParams fcp;
};
Problem make_problem(int64_t T, int64_t V, bool fusing) {
  using namespace fusellm;
  const int64_t K = fusing ? 10 : 1;
  Problem p{std::vector<int32_t>(static_cast<size_t>(T)), std::vector<int32_t>(static_cast<size_t>(T)),
            fusion::HostRows("targets", T, K), {}};  // CLM: one empty slot per row, as the trainer passes
  for (int64_t i = 0; i < T; ++i) p.ids[size_t(i)] = int32_t((i * 7919 + 13) % V);
  for (int64_t i = 0; i < T; ++i) p.gold[size_t(i)] = i + 1 < T ? p.ids[size_t(i + 1)] : -1;
  if (fusing)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < K; ++j) {
        p.targets.ids(t, j) = int32_t((t * 131 + j * 977 + 7) % V);
        p.targets.probs(t, j) = float(10 - j) / 55.f;
      }
  p.fcp.lambda = fusing ? 0.9f : 1.0f;
  return p;
}

// Per measured step: wall and CPU time, and each phase's wall time.
struct Timings {
  std::vector<double> step, cpu, fwd, cls, bwd, clip, opt;
  double loss = 0, gnorm = 0;
};

// warmup + iters optimizer steps, as train_step.cpp and trainer.cpp run one.
Timings run_steps(fusellm::model::TrainableModel& m, const Problem& p, const Options& o) {
  using namespace fusellm;
  const int64_t T = o.seq, V = m.arch().vocab;
  std::vector<ParamGrad> pg;
  for (auto& q : m.parameters()) pg.push_back({q.name, q.value.span(), q.grad.span(), hf_trainer_decays(q.name)});
  AdamW adamw({0.9, 0.95, 1e-8, 0.1});
  const double lr = 1e-5;
  Timings tm;
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    const double c0 = cpu_seconds();
    const auto t0 = Clock::now();
    m.zero_grad();
    Tensor logits = m.forward(p.ids);
    const double t_fwd = since(t0);
    const auto r = fusion::fused_classifier(logits.span(), T, V, p.gold, p.targets, p.fcp);
    const double t_cls = since(t0);
    m.backward(logits.span());
    const double t_bwd = since(t0);
    tm.gnorm = clip_grad_norm(pg, 1.0);
    const double t_clip = since(t0);
    adamw.step(pg, lr);
    m.parameters_changed();
    const double t_all = since(t0), c_all = cpu_seconds() - c0;
    tm.loss = r.loss;
    if (it >= o.warmup) {
      tm.step.push_back(t_all), tm.cpu.push_back(c_all);
      tm.fwd.push_back(t_fwd), tm.cls.push_back(t_cls - t_fwd), tm.bwd.push_back(t_bwd - t_cls);
      tm.clip.push_back(t_clip - t_bwd), tm.opt.push_back(t_all - t_clip);
    }
  }
  return tm;
}

// Peak RSS against the sum of what training must hold (the header states it).
void report_memory(const fusellm::model::TrainableModel& m, int64_t T, double baseline, double after_load,
                   double hwm_load) {
  const fusellm::model::Arch& a = m.arch();
  const int64_t V = a.vocab, Hd = a.hidden, I = a.intermediate;
  const int64_t nqkv = (a.heads + 2 * a.kv_heads) * a.head_dim, nq = a.heads * a.head_dim;
  const double P = double(m.num_parameters());
  const double per_layer = double(2 * T * Hd + T * nqkv + T * nq + T * 2 * I);
  const double acts = double(a.layers) * per_layer + double(T * Hd) + double(T * V);
  const double state_mib = 4.0 * 4.0 * P / kMiB, acts_mib = 4.0 * acts / kMiB, sum = state_mib + acts_mib;
  const double peak = status_mib("VmHWM");
  std::printf("fusellm memory MiB: peak RSS %.1f  sum %.1f (params+grads+2 moments %.1f, activations %.1f)  "
              "peak/sum = %.2fx  (baseline RSS before the model %.1f; after load RSS %.1f, peak %.1f; "
              "(peak - baseline)/sum = %.2fx)\n",
              peak, sum, state_mib, acts_mib, peak / sum, baseline, after_load, hwm_load, (peak - baseline) / sum);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) return 2;
  Kokkos::ScopeGuard kokkos;  // default init: OpenMP with OMP_NUM_THREADS
  try {
    using namespace fusellm;
    const double baseline = status_mib("VmRSS");
    model::TrainableModel m = model::TrainableModel::load(o.dir);
    const double after_load = status_mib("VmRSS"), hwm_load = status_mib("VmHWM");
    const int64_t T = o.seq;
    const Problem p = make_problem(T, m.arch().vocab, o.fusing);
    const Timings tm = run_steps(m, p, o);
    const double med = median(tm.step);
    std::printf("fusellm threads=%d seq=%lld %s median %.1f ms  %.1f tokens/s  (process cpu %.1f ms/step; %.1fM parameters; "
                "loss %.4f grad_norm %.3f)\n",
                omp_get_max_threads(), (long long)T, o.fusing ? "fusion(lambda=0.9,k=10)" : "clm(lambda=1)", med * 1e3,
                double(T) / med, median(tm.cpu) * 1e3, double(m.num_parameters()) / 1e6, tm.loss, tm.gnorm);
    std::printf("fusellm phases ms: forward %.1f  classifier %.1f  backward %.1f  clip %.1f  adamw %.1f\n",
                median(tm.fwd) * 1e3, median(tm.cls) * 1e3, median(tm.bwd) * 1e3, median(tm.clip) * 1e3,
                median(tm.opt) * 1e3);
    report_memory(m, T, baseline, after_load, hwm_load);
  } catch (const fusellm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
