#pragma once
// Variants of the CUDA fused classifier (kernels/cuda/fused_classifier.cuh), for the
// micro-benchmark bench_fused_classifier_dev_cuda: the same math, inputs, outputs, error checks and
// host API as fusellm::cuda::FusedClassifier, with the row kernel replaced by one of a few
// configurations (fused_classifier_dev.cu states them). The winner moves to kernels/cuda later.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "cuda/fused_classifier.cuh"

namespace fusellm::cuda::dev {

// Configurations of the row kernel; each element type has its own list (variant < count).
int fused_classifier_variant_count(bool bf16);
const char* fused_classifier_variant_name(bool bf16, int variant);

class FusedClassifierDev {
 public:
  FusedClassifierDev(int variant, cudaStream_t stream = nullptr);
  ~FusedClassifierDev();
  FusedClassifierDev(const FusedClassifierDev&) = delete;
  FusedClassifierDev& operator=(const FusedClassifierDev&) = delete;

  void enqueue(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
               const FusedClassifierParams& params = {});
  void enqueue(__nv_bfloat16* logits, int64_t T, int64_t V, const FusedTargets& targets,
               const FusedClassifierParams& params = {});
  void enqueue_loss(const float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                    const FusedClassifierParams& params = {});
  void enqueue_loss(const __nv_bfloat16* logits, int64_t T, int64_t V, const FusedTargets& targets,
                    const FusedClassifierParams& params = {});
  FusedLossTotals finish();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fusellm::cuda::dev
