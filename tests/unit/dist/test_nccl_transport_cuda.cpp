// The NCCL transport against the shared Transport contract (transport_cases.hpp): ranks are
// threads (the in-process transport is the control transport), one GPU each, up to 3. With one
// GPU the messages are to oneself (they travel inside their headers; NCCL cannot send to itself
// outside a group) and the collectives run on a one-rank communicator; two GPUs or more exercise
// ncclSend/ncclRecv. Skips, saying so, without a GPU (cudaGetDeviceCount fails: TOOLCHAIN.md).
#include <gtest/gtest.h>

#include <algorithm>

#include "cuda/cuda_check.hpp"
#include "error_of.hpp"
#include "fusellm/dist/inproc/inproc_transport.hpp"
#include "fusellm/dist/nccl/nccl_transport.hpp"
#include "transport_cases.hpp"

using namespace fusellm;
using namespace fusellm::dist;

namespace {

void on_gpu_ranks(void (*body)(Transport&)) {
  const int gpus = cuda::device_count();
  if (gpus == 0) GTEST_SKIP() << "no GPU: " << cuda::device_description();
  InprocWorld::run(std::min(gpus, 3), [body](Transport& t) {
    t.set_timeout(std::chrono::seconds(60));  // NCCL's start takes seconds
    nccl::NcclTransport n(t.split(0, t.rank()), t.rank());
    n.set_timeout(std::chrono::seconds(20));
    body(n);
  });
}

}  // namespace

FUSELLM_TRANSPORT_TESTS(NcclTransport, on_gpu_ranks)

TEST(NcclTransport, WithoutAGpuItRefusesSayingWhy) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "this machine has a GPU";
  InprocWorld::run(2, [](Transport& t) {
    const std::string e = fusellm::testing::error_of([&] { nccl::NcclTransport n(t.split(0, t.rank()), t.rank()); });
    EXPECT_NE(e.find("no CUDA device"), std::string::npos) << e;
  });
}
