#pragma once
// Backward of nn.Embedding on the GPU, fp32, the CPU reference's math
// (src/fusellm/model/embedding.cpp, model::embedding_backward): the scatter-add
//   dtable[ids[t], :] += dx[t, :]
// with atomicAdd, so rows whose id repeats are summed in an unspecified order (the result is
// the CPU's up to fp32 rounding, not bit-reproducible run to run). An id outside [0, vocab) is
// skipped (the CPU reference does not check ids; the device cannot throw). Device pointers;
// leading dimensions in elements; queued on `stream`. Throws fusellm::Error on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void embedding_backward(const int32_t* ids, const float* dx, int64_t lddx, float* dtable, int64_t ldtable,
                        int64_t vocab, int64_t T, int64_t cols, cudaStream_t stream);

}  // namespace fusellm::cuda
