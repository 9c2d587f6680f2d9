#pragma once
// Token embedding on the GPU, fp32, the CUDA form of src/fusellm/model/embedding.cpp's embed():
//   x[t] = table[ids[t]] (+ pos_table[positions[t]] when pos_table is given: GPT-2's learned
//   positions)
// Device pointers, row-major with leading dimensions; queued on `stream`. The ids are not range
// checked here (they are device data): the decoder checks them on the host (check_ids).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

// x [T, cols] (ld ldx); table rows of width cols (ld ldt); pos_table nullptr for none, else rows
// of width cols (ld ldp) indexed by positions [T].
void embed_forward(const int32_t* ids, const float* table, int64_t ldt, const int32_t* positions,
                   const float* pos_table, int64_t ldp, float* x, int64_t ldx, int64_t T, int64_t cols,
                   cudaStream_t stream);

}  // namespace fusellm::cuda
