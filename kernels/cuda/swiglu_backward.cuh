#pragma once
// Backward of the SwiGLU gate on the GPU, fp32, the CPU reference's math
// (src/fusellm/model/swiglu_backward.cpp, model::swiglu_backward): gate_up [rows, 2n] holds the
// pre-activations [a | b], dh [rows, n] the gradient of silu(a) * b; with s = sigmoid(a),
//   da = dh b s (1 + a (1 - s)),   db = dh a s      into dgate_up [rows, 2n] = [da | db].
// Each element is read before it is written by the same thread, so dgate_up may alias gate_up,
// and dh may alias either half of dgate_up. Device pointers; leading dimensions in elements; queued
// on `stream`. Throws fusellm::Error on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

void swiglu_backward(const float* gate_up, int64_t ldgu, const float* dh, int64_t lddh, float* dgate_up,
                     int64_t lddgu, int64_t rows, int64_t n, cudaStream_t stream);

}  // namespace fusellm::cuda
