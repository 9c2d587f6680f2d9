#pragma once
// CUDA error handling and device discovery shared by the CUDA kernels (host side).
// A binary linked with cudart runs on a machine with no GPU: cudaGetDeviceCount then returns
// cudaErrorInsufficientDriver or cudaErrorNoDevice (TOOLCHAIN.md), which we report as zero
// devices so callers take the CPU path instead of failing.
#include <string>

namespace fusellm::cuda {

int device_count();                 // 0 when no usable GPU/driver
std::string device_description();   // "NVIDIA H200 (sm_90, 132 SMs, 139 GiB)" or why none
void check(int status, const char* what, const char* file, int line);  // throws fusellm::Error

}  // namespace fusellm::cuda

#define FUSELLM_CUDA_CHECK(expr) ::fusellm::cuda::check(static_cast<int>(expr), #expr, __FILE__, __LINE__)
