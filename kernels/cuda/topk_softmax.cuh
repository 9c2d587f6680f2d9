#pragma once
// Top-k with temperature softmax on the GPU: the CUDA implementation of
// kernels/kokkos/topk_softmax.hpp (that header states the semantics in full; topk_softmax.cu
// restates the math it computes). Logits z [T, V] fp32 (row-major, device) -> for each row the k
// largest logits' ids [T, k] (int32) and probabilities [T, k] (fp32), sorted by logit descending,
// equal logits by ascending id; with keep_tail, tail [T] = the full-softmax mass outside the k ids.
//
//     without tail: P[i, r] = exp((z_(r) - z_(1)) / tau) / sum_{r' < k} exp((z_(r') - z_(1)) / tau)
//     with tail:    P[i, r] = exp((z_(r) - z_(1)) / tau) / sum_v exp((z_v - z_(1)) / tau),
//                   tail[i] = max(0, 1 - sum_r P[i, r])
//
// Errors (fusellm::Error naming the source and the position, the CPU path's messages): k < 1,
// k > V, V > INT32_MAX, a temperature that is not a positive finite number (with a finite
// reciprocal), any NaN or +-Inf logit in a row (found by the kernel; the outputs of that call are
// then undefined).
//
// As for the fused classifier (fused_classifier.cuh): topk_softmax(...) is one call that waits for
// the stream; a TopkSoftmax object enqueues without waiting and finish() waits and checks.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

namespace fusellm::cuda {

struct TopkParams {
  int k = 10;
  float temperature = 1.f;
  bool keep_tail = false;  // tail = mass outside the k ids under the full softmax
};

class TopkSoftmax {
 public:
  explicit TopkSoftmax(cudaStream_t stream = nullptr);
  ~TopkSoftmax();
  TopkSoftmax(const TopkSoftmax&) = delete;
  TopkSoftmax& operator=(const TopkSoftmax&) = delete;

  // logits [T, V], ids and probs [T, k], tail [T] (required with keep_tail, else ignored): device
  // pointers. `source` names the source model in error messages. Returns without waiting.
  void enqueue(const float* logits, int64_t T, int64_t V, const TopkParams& params, int32_t* ids,
               float* probs, float* tail, const std::string& source);
  // Waits for the stream; throws fusellm::Error naming the first row with a non-finite logit.
  void finish();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// One call: enqueue + finish on a temporary TopkSoftmax.
void topk_softmax(const float* logits, int64_t T, int64_t V, const TopkParams& params, int32_t* ids,
                  float* probs, float* tail, const std::string& source, cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
