#pragma once
// Applying an alignment to a source's top-k rows on the GPU: the CUDA implementation of
// kernels/kokkos/apply_alignment.hpp (ApplyAlignment; that header states the semantics in full,
// apply_alignment.cu restates the math). For each target position t, with its alignment status and
// aligned source row s, the source's row mapped into the target vocabulary through the MinED/EM
// vocabulary map `id_map` (source id -> target id, -1 unmapped): unmapped and padding ids dropped,
// a target id met twice keeps the higher probability, the kept entries renormalized (or, with a
// tail bucket, the dropped mass moved to the tail), sorted by probability descending, ties by
// ascending id; nothing kept -> kFallbackEmpty; a fallback position gets the one-hot of the next
// (or, with onehot_current, the current) gold target token, or the target model's own row
// (use_target).
//
// Errors (fusellm::Error naming the position), all found before any output is written: k of the
// source or output rows above kApplyMaxK, target document offsets that do not run from 0 to T
// without decreasing, a kept position whose aligned source row is outside the source rows. (The
// CPU functor trusts its caller, src/fusellm/align/align_tokens.cpp, for these; the messages here
// follow that caller's style.)
//
// One call, waiting for the stream.
#include <cuda_runtime.h>

#include <cstdint>

namespace fusellm::cuda {

// kernels/kokkos/align_common.hpp's AlignStatus values this kernel reads and writes, and
// apply_alignment.hpp's kApplyMaxK (tests/backend/test_apply_alignment_cuda.cpp checks they agree).
inline constexpr uint8_t kAlignFallbackMany = 10;   // statuses below keep the source's row
inline constexpr uint8_t kAlignFallbackEmpty = 13;  // kept, but no top-k id survived the mapping
inline constexpr int kAlignApplyMaxK = 64;

// Sparse rows in device memory (kernels/kokkos/sparse_rows.hpp): ids and probs [rows, k]
// row-major, tail [rows] or nullptr when the rows have no tail bucket.
struct ConstDeviceRows {
  const int32_t* ids = nullptr;
  const float* probs = nullptr;
  const float* tail = nullptr;
  int64_t rows = 0, k = 0;
};
struct DeviceRows {
  int32_t* ids = nullptr;
  float* probs = nullptr;
  float* tail = nullptr;
  int64_t rows = 0, k = 0;
};

// ApplyAlignment's fields; every pointer is device memory.
struct ApplyAlignmentArgs {
  const int32_t* tgt_ids = nullptr;    // [T] concatenated target ids
  const int64_t* tgt_doc = nullptr;    // [D + 1] document offsets into the T positions
  int64_t docs = 0;                    // D
  const int32_t* src_pos = nullptr;    // [T] aligned source row per target position, or -1
  const uint8_t* status_in = nullptr;  // [T]
  const int32_t* id_map = nullptr;     // [n_map] source id -> target id, -1 unmapped
  int64_t n_map = 0;
  ConstDeviceRows src;                 // [source positions, k_in]
  DeviceRows out;                      // [T, k_out]; T = out.rows
  uint8_t* status_out = nullptr;       // [T]
  bool onehot_current = false;
  ConstDeviceRows target;              // [T, k_t], the target's own rows (use_target)
  bool use_target = false;
};

void apply_alignment(const ApplyAlignmentArgs& args, cudaStream_t stream = nullptr);

}  // namespace fusellm::cuda
