#pragma once
// Source scores on the GPU: the CUDA implementation of kernels/kokkos/sequence_ce.hpp (that header
// states the semantics in full; sequence_ce.cu restates the math). Logits z [N, V] fp32
// (row-major, device) of one source over its own tokens, gold next-token ids g [N] (g_i < 0: not
// scored), segment offsets [D + 1] into the N rows (device) ->
//
//     ce_position[i] = logsumexp(z_i) - z_i[g_i]   (0 where g_i < 0)             [N] fp32
//     ce_sum[d]      = sum of ce_position over the scored rows of segment d      [D] fp64, row order
//     count[d]       = number of scored rows of segment d                        [D] int64
//
// Errors (fusellm::Error with the CPU path's messages, naming the source and the position), all
// found before any output is written: offsets that do not run from 0 to N without decreasing, a
// gold id >= V, a NaN or +Inf logit in a scored row (or a row whose logits are all -Inf), a CE that
// is not finite (the gold logit is -Inf). Checks in the CPU's order, so the same input gives the
// same message.
//
// One call, waiting for the stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace fusellm::cuda {

// Every pointer is device memory; D >= 0 segments (doc_offsets holds D + 1 entries).
void sequence_ce(const float* logits, int64_t N, int64_t V, const int32_t* gold,
                 const int64_t* doc_offsets, int64_t D, float* ce_position, double* ce_sum,
                 int64_t* count, const std::string& source, cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
