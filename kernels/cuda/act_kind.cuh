#pragma once
// The activations the CUDA kernels know, forward (activations.cuh) and backward
// (activation_backward.cuh), in the order of model::Activation (ops.hpp); the backend maps one to
// the other by name (src/fusellm/model/cuda/act_kind.hpp).

namespace fusellm::cuda {

enum class ActKind : int { SiLU, GeluErf, GeluTanh, GeluFast, QuickGelu, ReLU };

}  // namespace fusellm::cuda
