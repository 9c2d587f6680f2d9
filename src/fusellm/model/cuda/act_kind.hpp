#pragma once
// model::Activation -> the CUDA kernels' cuda::ActKind, for the CudaBackend's forward and backward
// members alike.
#include "cuda/act_kind.cuh"
#include "fusellm/core/error.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

inline cuda::ActKind act_kind(Activation a) {
  switch (a) {
    case Activation::SiLU: return cuda::ActKind::SiLU;
    case Activation::GeluErf: return cuda::ActKind::GeluErf;
    case Activation::GeluTanh: return cuda::ActKind::GeluTanh;
    case Activation::GeluFast: return cuda::ActKind::GeluFast;
    case Activation::QuickGelu: return cuda::ActKind::QuickGelu;
    case Activation::ReLU: return cuda::ActKind::ReLU;
  }
  fail("cuda backend: unknown activation {}", int(a));
}

}  // namespace fusellm::model
