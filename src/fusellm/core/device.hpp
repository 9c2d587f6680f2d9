#pragma once
// Where a job computes ([train].device, `--device`): "cpu", "cuda", or "auto" (the GPU when this
// binary was built with CUDA and one is found, else the CPU). On a GPU: the teachers' forward
// pass and the student's forward and backward passes; the student's optimizer step stays on the
// host (model/trainable_model.hpp). src/fusellm/device/compute_backend.hpp makes the choice.
namespace fusellm {

enum class Device { kAuto, kCpu, kCuda };  // names: job/job_config.hpp's device_name

}  // namespace fusellm
