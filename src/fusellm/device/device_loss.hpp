#pragma once
// The FuseLLM loss where the student's logits are (issue 15): on a GPU, the fused classifier of
// kernels/cuda/fused_classifier.cuh (lambda CLM + (1 - lambda) Fusion, paper eq. 5, mean over the
// labelled positions, dL/dz written over the logits) on the logits the forward pass left in device
// memory (TrainableModel::forward_in_backend), then dL/dz scaled by 1 / (sequences in the step):
// what train_step.cpp's sequence_loss computes on the host with the Kokkos classifier, without the
// logits [T, V] crossing PCIe twice per micro-batch. Only the gold ids and the fused sparse targets
// (T x k) go to the device.
#include <cstdint>
#include <memory>
#include <span>

#include "fusellm/model/trainable_model.hpp"

namespace fusellm::device {

struct SequenceLoss {
  double loss = 0, clm = 0, fusion = 0;  // the means over the sequence's labelled positions
};

class DeviceLoss {
 public:
  // nullptr where the model's passes run on the host, or without CUDA.
  static std::unique_ptr<DeviceLoss> make(const model::TrainableModel& model);
  virtual ~DeviceLoss() = default;

  // One sequence's loss on its logits z [T, V] (device memory, T = gold.size()): gold [T] (< 0:
  // not labelled), the fused targets target_ids / target_probs [T, k] (id -1: an empty slot;
  // host memory), lambda the CLM term's weight; dL/dz written over z and multiplied by `scale`.
  // Waits for the result. fusellm::Error (from the kernel's checks, naming the position) on a bad
  // id, a NaN or infinite logit or a non-finite loss.
  virtual SequenceLoss sequence(std::span<float> z, int64_t vocab, std::span<const int32_t> gold,
                                std::span<const int32_t> target_ids, std::span<const float> target_probs, int64_t k,
                                float lambda, float scale) = 0;
};

}  // namespace fusellm::device
