// The backend choice (compute_backend.hpp). With CUDA (FUSELLM_HAVE_CUDA), the GPU of the local
// rank, as torchrun's LOCAL_RANK or Megatron-LM's `torch.cuda.set_device(local_rank)` choose it.
#include "fusellm/device/compute_backend.hpp"

#include <cstdlib>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "fusellm/core/error.hpp"

#ifdef FUSELLM_HAVE_CUDA
#include "cuda/cuda_check.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"
#endif

namespace fusellm::device {

namespace {

int gpus() {
#ifdef FUSELLM_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

#ifdef FUSELLM_HAVE_CUDA
int local_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"})
    if (const char* v = std::getenv(var); v && *v) return std::atoi(v);
  return 0;
}

int my_gpu() { return gpus() > 0 ? local_rank() % gpus() : 0; }
#endif

}  // namespace

Device resolve(Device d, const std::string& what) {
  if (d == Device::kCpu) return d;
  const bool found = gpus() > 0;
  if (d == Device::kAuto) return found ? Device::kCuda : Device::kCpu;
#ifndef FUSELLM_HAVE_CUDA
  fail("{} = \"cuda\": this fusellm was built without CUDA (configure with -DFUSELLM_CUDA=ON), or use \"cpu\"", what);
#else
  if (!found) fail("{} = \"cuda\": {}; use \"cpu\" or \"auto\"", what, cuda::device_description());
#endif
  return d;
}

const model::Backend& compute_backend(Device d, const std::string& what, DType gemm) {
  if (resolve(d, what) == Device::kCpu) return model::cpu_backend();
#ifdef FUSELLM_HAVE_CUDA
  static std::once_flag once32, once16;
  static std::unique_ptr<model::CudaBackend> fp32, bf16;
  if (gemm == DType::BF16) {
    std::call_once(once16, [] { bf16 = std::make_unique<model::CudaBackend>(my_gpu(), model::GemmMath::kBf16); });
    return *bf16;
  }
  std::call_once(once32, [] { fp32 = std::make_unique<model::CudaBackend>(my_gpu()); });
  return *fp32;
#else
  fail("{} (GEMMs in {}): unreachable without CUDA", what, dtype_name(gemm));
#endif
}

std::string describe(Device d, const std::string& what) {
  if (resolve(d, what) == Device::kCpu) return "cpu";
#ifdef FUSELLM_HAVE_CUDA
  return fmt::format("cuda:{} ({})", my_gpu(), cuda::device_description());
#else
  return "cpu";
#endif
}

}  // namespace fusellm::device
