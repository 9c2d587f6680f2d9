#include <cuda_runtime.h>

#include "cuda/cuda_check.hpp"
#include "cuda/stream.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

void Stream::Destroy::operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
void Event::Destroy::operator()(cudaEvent_t e) const { cudaEventDestroy(e); }

Stream::Stream() {
  cudaStream_t s = nullptr;
  FUSELLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  s_.reset(s);
}

void Stream::wait(const Event& e) const { FUSELLM_CUDA_CHECK(cudaStreamWaitEvent(get(), e.get(), 0)); }

void Stream::synchronize() const { FUSELLM_CUDA_CHECK(cudaStreamSynchronize(get())); }

Event::Event(bool timing) {
  cudaEvent_t e = nullptr;
  FUSELLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  e_.reset(e);
}

void Event::record(cudaStream_t stream) { FUSELLM_CUDA_CHECK(cudaEventRecord(get(), stream)); }

void Event::synchronize() const { FUSELLM_CUDA_CHECK(cudaEventSynchronize(get())); }

bool Event::done() const {
  const cudaError_t st = cudaEventQuery(get());
  if (st == cudaErrorNotReady) {
    cudaGetLastError();  // not an error; do not leave it for the next check
    return false;
  }
  FUSELLM_CUDA_CHECK(st);
  return true;
}

float elapsed_ms(const Event& start, const Event& stop) {
  float ms = 0.f;
  FUSELLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
  return ms;
}

namespace {

__device__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Busy-waits until the global timer (ns) has advanced by ns since the start.
__global__ void spin_kernel(int64_t ns) {
  const uint64_t t0 = global_ns();
  while (global_ns() - t0 < uint64_t(ns)) {
  }
}

}  // namespace

void spin_for(cudaStream_t stream, int64_t ns) {
  if (ns < 0) fail("spin_for: {} ns", ns);
  spin_kernel<<<1, 1, 0, stream>>>(ns);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fusellm::cuda
