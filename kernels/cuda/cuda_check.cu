#include <cuda_runtime.h>
#include <fmt/format.h>

#include "cuda/cuda_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

int device_count() {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return 0;
  }
  return n;
}

std::string device_description() {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no CUDA device ({})", cudaGetErrorString(st));
  }
  if (n == 0) return "no CUDA device";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "CUDA device 0 (properties unavailable)";
  return fmt::format("{} (sm_{}{}, {} SMs, {:.0f} GiB)", p.name, p.major, p.minor, p.multiProcessorCount,
                     double(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
}

void check(int status, const char* what, const char* file, int line) {
  if (status == cudaSuccess) return;
  // Clear the runtime's "last error" (a caught, non-sticky error must not be reported again by
  // the next launch's cudaGetLastError check); a sticky one stays whatever we do.
  cudaGetLastError();
  fail("{}:{}: {} failed: {} ({})", file, line, what, cudaGetErrorString(cudaError_t(status)), status);
}

}  // namespace fusellm::cuda
