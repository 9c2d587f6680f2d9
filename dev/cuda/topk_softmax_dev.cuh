#pragma once
// Variants of the CUDA top-k softmax (kernels/cuda/topk_softmax.cuh), for the micro-benchmark
// bench_topk_softmax_dev_cuda: the same math, outputs, error checks and host API as
// fusellm::cuda::TopkSoftmax, with the selection kernel replaced by one of a few configurations
// (topk_softmax_dev.cu states them). The winner moves to kernels/cuda later.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/topk_softmax.cuh"

namespace fusellm::cuda::dev {

int topk_softmax_variant_count();
const char* topk_softmax_variant_name(int variant);

class TopkSoftmaxDev {
 public:
  TopkSoftmaxDev(int variant, cudaStream_t stream = nullptr);
  ~TopkSoftmaxDev();
  TopkSoftmaxDev(const TopkSoftmaxDev&) = delete;
  TopkSoftmaxDev& operator=(const TopkSoftmaxDev&) = delete;

  void enqueue(const float* logits, int64_t T, int64_t V, const TopkParams& params, int32_t* ids,
               float* probs, float* tail, const std::string& source);
  void finish();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fusellm::cuda::dev
