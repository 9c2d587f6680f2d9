#pragma once
// The fusion functions of kernels/kokkos/fusion.hpp (paper eq. 3, and MinCE per position beyond
// the paper), apart from the kernels so that the job file's [distill].fusion names them without
// pulling in Kokkos.
namespace fusellm::kernels {

enum class FusionMode { kMinCE, kAvgCE, kMinCEPerPosition };

inline const char* fusion_mode_name(FusionMode m) {
  switch (m) {
    case FusionMode::kMinCE: return "MinCE";
    case FusionMode::kAvgCE: return "AvgCE";
    case FusionMode::kMinCEPerPosition: return "MinCE per position";
  }
  return "?";
}

}  // namespace fusellm::kernels
