#pragma once
// RAII for the CUDA and NCCL handles of the NCCL transport: a stream, an event, a device buffer,
// a communicator. Destructors cannot throw: they release without checking (a failure there
// leaves nothing to recover).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <utility>

#include "cuda/cuda_check.hpp"
#include "fusellm/dist/nccl/nccl_check.hpp"

namespace fusellm::dist::nccl {

template <class Derived, class H>
class UniqueHandle {  // move-only ownership of one handle
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(H h) : h_(h) {}
  UniqueHandle(UniqueHandle&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
  UniqueHandle& operator=(UniqueHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, H{});
    }
    return *this;
  }
  ~UniqueHandle() { reset(); }
  H get() const { return h_; }
  H take() { return std::exchange(h_, H{}); }  // gives up ownership without releasing
  void reset() {
    if (h_) Derived::release(h_);
    h_ = H{};
  }

 private:
  H h_{};
};

// A non-blocking stream (no implicit synchronization with the legacy default stream).
class CudaStream : public UniqueHandle<CudaStream, cudaStream_t> {
 public:
  static CudaStream create() {
    cudaStream_t s = nullptr;
    FUSELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return CudaStream(s);
  }
  static void release(cudaStream_t s) { cudaStreamDestroy(s); }
  using UniqueHandle::UniqueHandle;
};

class CudaEvent : public UniqueHandle<CudaEvent, cudaEvent_t> {
 public:
  static CudaEvent create() {
    cudaEvent_t e = nullptr;
    FUSELLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return CudaEvent(e);
  }
  static void release(cudaEvent_t e) { cudaEventDestroy(e); }
  using UniqueHandle::UniqueHandle;
};

// `bytes` of device memory (none for 0 bytes).
class DeviceBuffer : public UniqueHandle<DeviceBuffer, void*> {
 public:
  static DeviceBuffer create(size_t bytes) {
    void* p = nullptr;
    if (bytes > 0) FUSELLM_CUDA_CHECK(cudaMalloc(&p, bytes));
    return DeviceBuffer(p);
  }
  static void release(void* p) { cudaFree(p); }
  using UniqueHandle::UniqueHandle;
};

// A communicator: destroyed normally (ncclCommDestroy waits for its work), or aborted
// (ncclCommAbort) when an operation timed out and may never finish.
class NcclComm : public UniqueHandle<NcclComm, ncclComm_t> {
 public:
  static NcclComm create(int nranks, const ncclUniqueId& id, int rank) {
    ncclComm_t c = nullptr;
    FUSELLM_NCCL_CHECK(ncclCommInitRank(&c, nranks, id, rank));
    return NcclComm(c);
  }
  static void release(ncclComm_t c) { ncclCommDestroy(c); }
  void abort() {
    if (ncclComm_t c = take()) ncclCommAbort(c);
  }
  using UniqueHandle::UniqueHandle;
};

}  // namespace fusellm::dist::nccl
