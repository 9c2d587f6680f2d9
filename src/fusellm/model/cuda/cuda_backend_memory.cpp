// The CudaBackend's memory (model/backend.hpp's memory interface): the decoder's weights and
// buffers are device blocks from cudaMalloc, made once and grown rarely (GrowingBuffer), never per
// step; tokens go in and logits come out by copies queued on the backend's stream, in order with
// its ops.
#include <cuda_runtime_api.h>

#include "cuda/cuda_check.hpp"
#include "cuda/matrix_add.cuh"
#include "fusellm/core/error.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"

namespace fusellm::model {

namespace {

struct DeviceMemory final : Backend::Memory {
  explicit DeviceMemory(size_t n) {
    FUSELLM_CUDA_CHECK(cudaMalloc(&data, n));
    bytes = n;
  }
  ~DeviceMemory() override { cudaFree(data); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

}  // namespace

std::unique_ptr<Backend::Memory> CudaBackend::allocate(size_t bytes) const {
  return std::make_unique<DeviceMemory>(bytes ? bytes : 1);
}

// From pageable host memory cudaMemcpyAsync returns once the source has been staged, so the
// caller may reuse it at once; the copy itself is ordered with the stream's kernels.
void CudaBackend::copy_in(void* dst, const void* src, size_t bytes) const {
  if (bytes) FUSELLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void CudaBackend::copy_out(void* dst, const void* src, size_t bytes) const {
  if (bytes) FUSELLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  sync();  // the bytes are the host's once this returns; an earlier kernel's error surfaces here
}

void CudaBackend::zero(void* dst, size_t bytes) const {
  if (bytes) FUSELLM_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream()));
}

// matrix_add's y = y + x over one row: the same bits as x + y.
void CudaBackend::add(std::span<const float> x, std::span<float> y) const {
  if (x.size() != y.size()) fail("add: {} values into {}", x.size(), y.size());
  const int64_t n = int64_t(y.size());
  cuda::matrix_add(y.data(), n, x.data(), n, n ? 1 : 0, n, /*accumulate=*/true, stream());
}

}  // namespace fusellm::model
