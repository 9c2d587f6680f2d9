#pragma once
// Where a job computes ([train].device, `--device`): "cpu", "cuda", or "auto" (the GPU when this
// binary was built with CUDA and one is found, else the CPU). What runs on a GPU today is the
// models' forward pass (the teachers, scoring); the student's training is CPU-only until its
// backward pass and optimizer run there (src/fusellm/device/forward_backend.hpp says which).
namespace fusellm {

enum class Device { kAuto, kCpu, kCuda };  // names: job/job_config.hpp's device_name

}  // namespace fusellm
