// Teacher forward throughput on the GPU: one model directory, loaded as fusellm loads a teacher
// with [train].device = "cuda" (the one decoder on the CudaBackend, fp32; with "bf16" as the 4th
// argument, its GEMMs on tensor cores: GemmMath::kBf16), a sequence of T random
// tokens, the median wall time of REPS forward passes (logits copied to the host included, as a
// teacher needs them there). Driven by bench_forward_cuda.py, which makes the ~1B Llama, times
// PyTorch + transformers on it in the same run, and prints the ratio. Without arguments (as
// scripts/gpu_check.sh's loop over bench_*_cuda calls it) it says so and exits 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "fusellm/io/safetensors.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#include "fusellm/model/decoder.hpp"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::printf("bench_forward_cuda: MODEL_DIR T REPS [fp32|bf16] (run by benchmarks/bench_forward_cuda.py); nothing to do\n");
    return 0;
  }
  using namespace fusellm;
  const std::string dir = argv[1];
  const int64_t T = std::atoll(argv[2]);
  const int reps = std::atoi(argv[3]);
  const bool bf16 = argc > 4 && std::string(argv[4]) == "bf16";  // the GEMMs on tensor cores
  const model::CudaBackend gpu(0, bf16 ? model::GemmMath::kBf16 : model::GemmMath::kFp32);
  const auto t0 = Clock::now();
  const Checkpoint ck(dir);
  const model::Decoder d(model::read_arch(dir), ck, gpu);
  gpu.sync();
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::mt19937 rng(1);
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int32_t& id : ids) id = int32_t(rng() % uint32_t(d.arch().vocab));
  d.forward(ids);  // warm-up: workspace, cuBLAS's own workspace
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto a = Clock::now();
    const Tensor logits = d.forward(ids);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  std::printf("fusellm cuda %s-GEMM forward: %lld parameters, T=%lld, load %.1f s, median %.1f ms of %d, %.0f tokens/s\n",
              bf16 ? "bf16" : "fp32", (long long)d.info().num_parameters, (long long)T, load_s, med, reps, double(T) / (med / 1e3));
  return 0;
}
