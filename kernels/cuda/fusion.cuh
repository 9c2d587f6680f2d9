#pragma once
// Fusion of K sources' aligned distributions on the GPU: the CUDA implementation of
// kernels/kokkos/fusion.hpp (fuse; that header states MinCE, AvgCE and MinCE per position in full,
// fusion.cu restates the math). Sources j = 0..K-1 (K <= kMaxFusionSources): sparse rows [T, k_j]
// over the target vocabulary [0, V) (ids -1 empty), optional tails [T]; scores [K, B] per-sequence
// CE (MinCE, AvgCE; B = sequences cut from the T rows by seq_offsets [B + 1]) or [K, T] per-position
// CE (kMinCEPerPosition; seq_offsets unused) ->
//   rows [T, fused_width(mode, sources)] (+ tail [T] when any source has one),
//   choice: [B] the MinCE source per sequence, or [T] the per-position choice,
//   weights [B, K]: the AvgCE softmax of the rewards exp(-CE) (MinCE and AvgCE; the CPU computes
//   them for both).
//
// Errors (fusellm::Error with the CPU path's messages, naming the source and the position), all
// found before any output is written and reported in the CPU's order: no sources or more than
// kMaxFusionSources, sequence offsets that do not run from 0 to T without decreasing, a NaN or -Inf
// score, an id < -1 or >= V, a probability NaN/Inf/negative.
//
// One call, waiting for the stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kokkos/fusion_mode.hpp"  // FusionMode (plain C++, no Kokkos)

namespace fusellm::cuda {

using FusionMode = kernels::FusionMode;

inline constexpr int kMaxFusionSources = 8;  // kernels/kokkos/fusion.hpp's kMaxSources

// One source's aligned rows (device memory): ids, probs [T, k] row-major; tail [T] or nullptr.
struct FusionSource {
  const int32_t* ids = nullptr;
  const float* probs = nullptr;
  const float* tail = nullptr;
  int64_t k = 0;
};

// The fused output (device memory), sized by the caller: ids, probs [T, k] with
// k = fused_width(mode, sources); tail [T] when any source has a tail (else nullptr); choice [B]
// (MinCE, AvgCE) or [T] (per position); weights [B, K] (MinCE, AvgCE; unused per position).
struct FusionOutput {
  int32_t* ids = nullptr;
  float* probs = nullptr;
  float* tail = nullptr;
  int64_t k = 0;
  int32_t* choice = nullptr;
  float* weights = nullptr;
};

// The output width the CPU's fuse allocates: sum_j k_j for AvgCE (the union of the ids), else
// max_j k_j.
int64_t fused_width(FusionMode mode, const std::vector<FusionSource>& sources);

// scores [K, score_cols] row-major (device): score_cols = B (MinCE, AvgCE) or T (per position).
// seq_offsets [B + 1] (device; may be null per position, B then ignored). `names[j]` names source
// j in error messages ("#j" when missing).
void fuse(FusionMode mode, const std::vector<FusionSource>& sources,
          const std::vector<std::string>& names, int64_t T, const float* scores,
          const int64_t* seq_offsets, int64_t B, int64_t V, const FusionOutput& out,
          cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
