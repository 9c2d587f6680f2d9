// [train].device's choice of backend (device/compute_backend.hpp): "cpu" is the CPU backend,
// "auto" the GPU only when one is found, and "cuda" where there is none (this machine, CI) an
// error that names the setting and what is missing. On a machine with a GPU (the lent H200) the
// same binary takes the GPU; test_decoder_cuda checks what runs there.
#include <gtest/gtest.h>

#include <string>

#include "fusellm/core/error.hpp"
#include "fusellm/device/compute_backend.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include "cuda/cuda_check.hpp"
#endif

namespace fusellm {
namespace {

bool have_gpu() {
#ifdef FUSELLM_HAVE_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

const std::string kWhat = "job.toml:3: [train].device";

TEST(ComputeBackend, CpuIsTheCpuBackend) {
  EXPECT_EQ(device::resolve(Device::kCpu, kWhat), Device::kCpu);
  EXPECT_EQ(&device::compute_backend(Device::kCpu, kWhat), &model::cpu_backend());
  EXPECT_EQ(device::describe(Device::kCpu, kWhat), "cpu");
}

TEST(ComputeBackend, AutoTakesTheGpuOnlyWhenThereIsOne) {
  EXPECT_EQ(device::resolve(Device::kAuto, kWhat), have_gpu() ? Device::kCuda : Device::kCpu);
  const model::Backend& b = device::compute_backend(Device::kAuto, kWhat);
  EXPECT_STREQ(b.name(), have_gpu() ? "cuda" : "cpu");
  EXPECT_EQ(b.host_memory(), !have_gpu());
  if (have_gpu()) EXPECT_EQ(device::describe(Device::kAuto, kWhat).rfind("cuda:", 0), 0u);
}

TEST(ComputeBackend, CudaWithoutAGpuNamesTheSettingAndWhatIsMissing) {
  if (have_gpu()) GTEST_SKIP() << "a GPU is present: \"cuda\" is valid here";
  try {
    device::resolve(Device::kCuda, kWhat);
    FAIL() << "\"cuda\" accepted without a GPU";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(kWhat + " = \"cuda\": ", 0), 0u) << msg;
#ifdef FUSELLM_HAVE_CUDA
    EXPECT_NE(msg.find("no CUDA device"), std::string::npos) << msg;
#else
    EXPECT_NE(msg.find("built without CUDA"), std::string::npos) << msg;
#endif
  }
  EXPECT_THROW(device::compute_backend(Device::kCuda, kWhat), Error);
}

}  // namespace
}  // namespace fusellm
