#include <cublas_v2.h>

#include "cuda/cublas_check.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

void cublas_check(int status, const char* what, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("{}:{}: {} failed: {} ({})", file, line, what, cublasGetStatusName(cublasStatus_t(status)), status);
}

}  // namespace fusellm::cuda
