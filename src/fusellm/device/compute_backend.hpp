#pragma once
// Which backend the models' passes run on, from [train].device / `--device` (core/device.hpp):
// the CPU backend, or this process's GPU (model/cuda's CudaBackend, one per process). This is the
// only place that knows both, so that the libraries above (teach, train) choose by name and build
// the same on machines without CUDA.
#include <string>

#include "fusellm/core/device.hpp"
#include "fusellm/core/dtype.hpp"
#include "fusellm/model/backend.hpp"

namespace fusellm::device {

// kAuto -> kCuda when this binary was built with CUDA and a GPU is found, else kCpu.
// kCuda without either -> Error saying which is missing (`what` names the setting).
Device resolve(Device d, const std::string& what);

// The backend for resolve(d): cpu_backend(), or the GPU of this process's local rank (the launcher's
// OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID, modulo the GPUs found; 0 outside a launcher),
// created on first use and kept for the process's life. `gemm` ([train].dtype for the student):
// BF16 runs the GPU's GEMMs on tensor cores (model/cuda's GemmMath::kBf16, one more backend on
// the same GPU); the CPU computes fp32 either way.
const model::Backend& compute_backend(Device d, const std::string& what, DType gemm = DType::F32);

// For the log: "cpu", or "cuda:1 (NVIDIA H200 (sm_90, 132 SMs, 140 GiB))".
std::string describe(Device d, const std::string& what);

}  // namespace fusellm::device
