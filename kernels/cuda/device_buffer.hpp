#pragma once
// Device memory as RAII handles, for tests, benchmarks and host glue: a unique_ptr that
// cudaFree's, allocation with a checked cudaMalloc (at least one element, so an empty input still
// gets a valid pointer), and checked copies to and from std::vector.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "cuda/cuda_check.hpp"

namespace fusellm::cuda {

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
template <class T>
using DevPtr = std::unique_ptr<T, CudaFree>;

template <class T>
DevPtr<T> dev_alloc(size_t n) {
  T* p = nullptr;
  FUSELLM_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return DevPtr<T>(p);
}

template <class T>
DevPtr<T> to_device(const std::vector<T>& h) {
  auto d = dev_alloc<T>(h.size());
  if (!h.empty()) FUSELLM_CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  if (n) FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

}  // namespace fusellm::cuda
