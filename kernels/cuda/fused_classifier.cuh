#pragma once
// Fused classifier on the GPU: the CUDA implementation of kernels/kokkos/fused_classifier.hpp
// (that header states the objective and its gradient in full; fused_classifier.cu restates the
// math it computes). Given logits z [T, V] (fp32 or bf16, row-major, device), gold next-token ids
// g [T] (g_i < 0: padding, ignored) and the fused sparse targets P [T, k] (ids, -1 for an empty
// slot, and probabilities; kernels/kokkos/sparse_rows.hpp), it computes per position
//
//     CLM_i = lse_i - z_i[g_i],   Fusion_i = sum_j P_ij (lse_i - z_i[id_ij]),
//     L_i = lambda CLM_i + (1 - lambda) Fusion_i,
//
// their totals (kMean: divided by N = #{i : g_i >= 0}; kSum: not), and, for fused_classifier,
// writes dL/dz into the logits in place (bf16 logits get a bf16 gradient; all arithmetic is fp32).
//
// Host API in the manner of the CPU one: device pointers, a cudaStream_t; errors are thrown as
// fusellm::Error naming the first bad position, with the CPU path's messages (gold id >= V, target
// id < -1 or >= V, target probability NaN/Inf/negative: found before the logits are touched;
// NaN/+Inf logits, or a non-finite loss at a position: the logits hold a partly written gradient).
//
// Two ways to call it:
//   - fused_classifier(...) / fused_loss(...): one call, waits for the stream, returns the totals.
//   - a FusedClassifier object (reusable workspace): enqueue(...) returns at once, finish() waits
//     and returns the totals or throws. A training loop keeps one object; enqueue + finish is what
//     the free functions do with a temporary one (which costs a pinned-memory allocation per call).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

namespace fusellm::cuda {

enum class LossReduction { kMean, kSum };

struct FusedClassifierParams {
  float lambda = 0.9f;  // weight of the CLM term (paper: 0.9), in [0, 1]
  LossReduction reduction = LossReduction::kMean;
};

struct FusedLossTotals {
  double loss = 0.0;    // lambda * clm + (1 - lambda) * fusion, reduced
  double clm = 0.0;     // reduced CLM term
  double fusion = 0.0;  // reduced fusion term
  int64_t tokens = 0;   // N, positions with gold >= 0
};

// The sparse targets and outputs of one call; every pointer is device memory.
//   gold [T], target_ids [T, k], target_probs [T, k] (k may be 0: CLM only);
//   clm_position, fusion_position [T]: per-position terms (0 on padding), or nullptr when not
//   wanted (a workspace of the FusedClassifier object holds them then).
struct FusedTargets {
  const int32_t* gold = nullptr;
  const int32_t* target_ids = nullptr;
  const float* target_probs = nullptr;
  int64_t k = 0;
  float* clm_position = nullptr;
  float* fusion_position = nullptr;
};

class FusedClassifier {
 public:
  explicit FusedClassifier(cudaStream_t stream = nullptr);
  ~FusedClassifier();
  FusedClassifier(const FusedClassifier&) = delete;
  FusedClassifier& operator=(const FusedClassifier&) = delete;

  // Loss and gradient: logits [T, V] are overwritten with dL/dz. Returns without waiting.
  void enqueue(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
               const FusedClassifierParams& params = {});
  void enqueue(__nv_bfloat16* logits, int64_t T, int64_t V, const FusedTargets& targets,
               const FusedClassifierParams& params = {});
  // Loss only (evaluation): logits are read, not written.
  void enqueue_loss(const float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                    const FusedClassifierParams& params = {});
  void enqueue_loss(const __nv_bfloat16* logits, int64_t T, int64_t V, const FusedTargets& targets,
                    const FusedClassifierParams& params = {});

  // Waits for the stream, checks the device's error flags (throws fusellm::Error naming the first
  // bad position) and returns the totals of the last enqueue.
  FusedLossTotals finish();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// One call: enqueue + finish on a temporary FusedClassifier.
FusedLossTotals fused_classifier(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                                 const FusedClassifierParams& params = {},
                                 cudaStream_t stream = nullptr);
FusedLossTotals fused_classifier(__nv_bfloat16* logits, int64_t T, int64_t V,
                                 const FusedTargets& targets,
                                 const FusedClassifierParams& params = {},
                                 cudaStream_t stream = nullptr);
FusedLossTotals fused_loss(const float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                           const FusedClassifierParams& params = {}, cudaStream_t stream = nullptr);
FusedLossTotals fused_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                           const FusedTargets& targets, const FusedClassifierParams& params = {},
                           cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
