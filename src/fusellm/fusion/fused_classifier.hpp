#pragma once
// The FuseLLM objective on the target's logits (kernels/kokkos/fused_classifier.hpp): per position
// lambda * CLM + (1 - lambda) * soft-label CE against the fused sparse targets (paper eq. 5), its
// reduction over non-padding positions, and the gradient written into the logits in place.
#include <span>
#include <vector>

#include "fusellm/fusion/kokkos_glue.hpp"
#include "kokkos/fused_classifier.hpp"

namespace fusellm::fusion {

using kernels::FusedClassifierParams;
using kernels::LossReduction;

struct FusedLossResult {
  double loss = 0.0, clm = 0.0, fusion = 0.0;  // reduced per params.reduction
  int64_t tokens = 0;                          // positions with gold >= 0
  std::vector<float> clm_position, fusion_position;  // [T], 0 on padding
};

// logits [T, V] row-major on the host, overwritten with dL/dz; gold [T] (< 0: ignored); targets
// [T, k] over the same vocabulary.
FusedLossResult fused_classifier(std::span<float> logits, int64_t T, int64_t V,
                                 std::span<const int32_t> gold, const HostRows& targets,
                                 const FusedClassifierParams& params = {});
// Loss only (evaluation); logits are not written.
FusedLossResult fused_loss(std::span<const float> logits, int64_t T, int64_t V,
                           std::span<const int32_t> gold, const HostRows& targets,
                           const FusedClassifierParams& params = {});

// On Views of the default memory space (the trainer's path: logits stay on the device).
kernels::FusedLoss<DeviceMem> fused_classifier(const DeviceView2<float>& logits,
                                               const DeviceView1<const int32_t>& gold,
                                               const DeviceRows& targets,
                                               const FusedClassifierParams& params = {});
kernels::FusedLoss<DeviceMem> fused_loss(const DeviceView2<const float>& logits,
                                         const DeviceView1<const int32_t>& gold,
                                         const DeviceRows& targets,
                                         const FusedClassifierParams& params = {});

}  // namespace fusellm::fusion
