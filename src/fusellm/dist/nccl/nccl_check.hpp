#pragma once
// Every NCCL call is checked: FUSELLM_NCCL_CHECK throws fusellm::Error naming the call,
// file:line, ncclGetErrorString and NCCL's last error text (ncclGetLastError). CUDA calls use
// FUSELLM_CUDA_CHECK (kernels/cuda/cuda_check.hpp).
#include <nccl.h>

namespace fusellm::dist::nccl {

void check(ncclResult_t rc, const char* call, const char* file, int line);

}  // namespace fusellm::dist::nccl

#define FUSELLM_NCCL_CHECK(call) ::fusellm::dist::nccl::check((call), #call, __FILE__, __LINE__)
