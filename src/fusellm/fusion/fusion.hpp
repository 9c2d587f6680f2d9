#pragma once
// MinCE / AvgCE fusion of the sources' aligned distributions (kernels/kokkos/fusion.hpp; paper
// eq. 3, the original's trainer.py) and, beyond the paper, MinCE per position.
#include <span>
#include <string>
#include <vector>

#include "fusellm/fusion/kokkos_glue.hpp"
#include "kokkos/fusion.hpp"

namespace fusellm::fusion {

using kernels::FusionMode;

struct Fused {
  HostRows rows;                // [T, k_out]
  std::vector<int32_t> choice;  // MinCE: chosen source per sequence [B]; per position: [T]
  std::vector<float> weights;   // AvgCE: [B, K] row-major
};

// sources: K aligned SparseRows [T, k_j] over the target vocabulary (size V); names[j] for errors.
// scores: [K, B] row-major per-sequence scores (CE, lower is better), seq_offsets: [B + 1].
Fused fuse_minCE(std::span<const HostRows> sources, std::span<const std::string> names,
                 std::span<const float> scores, std::span<const int64_t> seq_offsets, int64_t V);
Fused fuse_avgCE(std::span<const HostRows> sources, std::span<const std::string> names,
                 std::span<const float> scores, std::span<const int64_t> seq_offsets, int64_t V);
// position_ce: [K, T] row-major per-position CE of each source at each target position.
Fused fuse_minCE_per_position(std::span<const HostRows> sources, std::span<const std::string> names,
                              std::span<const float> position_ce, int64_t V);

// On Views of the default memory space (scores [K, B] or [K, T] as above).
kernels::FusionResult<DeviceMem> fuse(FusionMode mode, const std::vector<DeviceRows>& sources,
                                      const std::vector<std::string>& names,
                                      const DeviceView2<const float>& scores,
                                      const DeviceView1<const int64_t>& seq_offsets, int64_t V);

}  // namespace fusellm::fusion
