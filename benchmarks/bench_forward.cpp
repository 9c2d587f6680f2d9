// fusellm side of the forward-pass benchmark (benchmarks/run_forward_bench.sh): fp32 CPU forward
// tokens/s of CausalLM on a checkpoint directory, threads = OMP_NUM_THREADS.
//   bench_forward DIR [--seq 512] [--warmup 2] [--iters 10] [--profile]
// Same token ids as bench_forward.py (ids[i] = (i * 7919 + 13) % vocab); median of the timed
// passes, wall time (tokens/s) and process CPU time.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/model/model.hpp"

using fusellm::bench::cpu_seconds;
using fusellm::bench::median;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--seq N] [--warmup N] [--iters N]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int seq = 512, warmup = 2, iters = 10;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seq")) seq = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::stoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    const auto lm = fusellm::CausalLM::load(dir);
    const int64_t vocab = lm->info().vocab_size;
    std::vector<int32_t> ids(static_cast<size_t>(seq));
    for (int i = 0; i < seq; ++i) ids[i] = int32_t((int64_t(i) * 7919 + 13) % vocab);
    std::vector<double> times, cpu_times;
    for (int i = 0; i < warmup + iters; ++i) {
      const double c0 = cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      const fusellm::Tensor logits = lm->forward(ids);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double dc = cpu_seconds() - c0;
      if (logits.dim(0) != seq || logits.dim(1) != vocab) throw fusellm::Error("unexpected logits shape");
      if (i >= warmup) times.push_back(dt), cpu_times.push_back(dc);
    }
    const double med = median(times), cpu = median(cpu_times);
    std::printf("fusellm threads=%d seq=%d median %.1f ms  %.1f tokens/s  (process cpu %.1f ms/pass; %.1fM parameters)\n",
                omp_get_max_threads(), seq, med * 1e3, seq / med, cpu * 1e3, double(lm->info().num_parameters) / 1e6);
  } catch (const fusellm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
