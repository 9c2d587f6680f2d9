#pragma once
// A teacher's scoring where its forward pass runs (issue 15): on a GPU, the top-k softmax of
// kernels/cuda/topk_softmax.cuh and the source's CE on its own next tokens of
// kernels/cuda/sequence_ce.cuh, on the logits the forward pass left in device memory
// (Decoder::logits_in_backend): what Teacher::score computes on the host with the Kokkos kernels
// (fusion/topk_softmax.hpp, fusion/sequence_ce.hpp), without the [T, V] logits crossing PCIe.
// Only the k ids and probabilities per position, the tail, the per-position CE and the sums come
// back. The results are plain vectors (this library does not depend on Kokkos); the teacher puts
// them into its rows.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fusellm/model/decoder.hpp"

namespace fusellm::device {

struct TopkSettings {
  int64_t k = 10;
  float temperature = 1.f;
  bool keep_tail = false;
};

// One segment's scores (the CPU path's outputs, fusion::topk_softmax and fusion::score_segments).
struct SegmentScoresOnHost {
  std::vector<int32_t> ids;         // [T, k], sorted by probability descending, ties by ascending id
  std::vector<float> probs;         // [T, k]
  std::vector<float> tail;          // [T] with keep_tail, else empty
  std::vector<float> ce_position;   // [T]: logsumexp(z_i) - z_i[gold_i], 0 where gold_i < 0
  double ce_sum = 0;                // over the scored positions, in position order
  int64_t scored = 0;               // positions with gold_i >= 0
};

class DeviceScoring {
 public:
  // nullptr where `model` runs on the host, without CUDA, or when its logits are not the head's
  // output (a logit_scale other than 1: Decoder::logits_in_backend). `model` must outlive it.
  static std::unique_ptr<DeviceScoring> make(const model::Decoder& model);
  virtual ~DeviceScoring() = default;

  // The forward pass of `ids` (one segment), then its top-k rows and the CE of each position on
  // `gold` [T] (< 0: not scored), all on the device. Errors as the kernels' (naming `source` and
  // the position): a NaN or infinite logit, a gold id outside the vocabulary.
  virtual SegmentScoresOnHost score(std::span<const int32_t> ids, std::span<const int32_t> gold,
                                    const TopkSettings& topk, const std::string& source) = 0;
};

}  // namespace fusellm::device
