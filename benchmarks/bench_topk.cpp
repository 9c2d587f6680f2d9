// Top-k with temperature softmax (kernels/kokkos/topk_softmax.hpp) at the teacher's shape:
//
//   OMP_PROC_BIND=false OMP_NUM_THREADS=2 build/benchmarks/bench_topk [T V k reps]
//   python3 benchmarks/bench_topk.py [T V k reps]      # torch.topk + softmax, same threads
//
// Reports the best time, the rate at 4 B/logit (the kernel reads each logit once; the output,
// T k (4 + 4) bytes, is negligible) and, with keep_tail, the time with the full-row softmax sum
// (a second pass over each row, from L2).
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "fusellm/fusion/topk_softmax.hpp"

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  using namespace fusellm;
  using Clock = std::chrono::steady_clock;
  const int64_t T = argc > 1 ? std::atol(argv[1]) : 4096;
  const int64_t V = argc > 2 ? std::atol(argv[2]) : 32000;
  const int k = argc > 3 ? std::atoi(argv[3]) : 10;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 7;
  std::printf("top-k softmax benchmark: T=%ld V=%ld k=%d fp32, %s with %d threads, best of %d\n",
              long(T), long(V), k, fusion::ExecSpace::name(),
              int(fusion::ExecSpace::concurrency()), reps);
  fusion::DeviceView2<float> z("logits", T, V);
  {
    auto h = Kokkos::create_mirror_view(z);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 3.f);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t v = 0; v < V; ++v) h(i, v) = nd(rng);
    Kokkos::deep_copy(z, h);
  }
  for (bool tail : {false, true}) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      Kokkos::fence();
      const auto t0 = Clock::now();
      auto rows = fusion::topk_softmax(z, {k, 1.f, tail, 0}, "bench");
      Kokkos::fence();
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::printf("topk_softmax%s: %8.2f ms  %6.2f GB/s at 4 B/logit\n",
                tail ? " (keep_tail)" : "            ", best * 1e3,
                4.0 * double(T) * double(V) / best / 1e9);
  }
  return 0;
}
