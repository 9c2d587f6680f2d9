#include "fusellm/dist/nccl/nccl_check.hpp"

#include "fusellm/core/error.hpp"

namespace fusellm::dist::nccl {

void check(ncclResult_t rc, const char* call, const char* file, int line) {
  if (rc == ncclSuccess || rc == ncclInProgress) return;
  const char* last = ncclGetLastError(nullptr);
  fail("{}:{}: {} failed: {} ({}){}{}", file, line, call, ncclGetErrorString(rc), int(rc),
       last && *last ? ": " : "", last ? last : "");
}

}  // namespace fusellm::dist::nccl
