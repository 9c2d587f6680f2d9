#pragma once
// cuBLAS status checks (host side), as cuda_check.hpp does for the runtime: a failed call throws
// fusellm::Error naming the call, the file, the line and cuBLAS's name for the status. Includable
// from C++20 host code: the status travels as an int.

namespace fusellm::cuda {

void cublas_check(int status, const char* what, const char* file, int line);  // throws fusellm::Error

}  // namespace fusellm::cuda

#define FUSELLM_CUBLAS_CHECK(expr) \
  ::fusellm::cuda::cublas_check(static_cast<int>(expr), #expr, __FILE__, __LINE__)
