#pragma once
// Top-k with temperature softmax of a source's logits (kernels/kokkos/topk_softmax.hpp): what a
// teacher sends per position, before alignment. Host spans or Views on the default execution space.
#include <span>
#include <string>

#include "fusellm/fusion/kokkos_glue.hpp"
#include "kokkos/topk_softmax.hpp"

namespace fusellm::fusion {

using kernels::TopkParams;

// logits: [T, V] row-major on the host. `source` names the model in error messages.
HostRows topk_softmax(std::span<const float> logits, int64_t T, int64_t V, const TopkParams& params,
                      const std::string& source);

// logits: a View of the default memory space; the result stays there.
DeviceRows topk_softmax(const DeviceView2<const float>& logits, const TopkParams& params,
                        const std::string& source);

}  // namespace fusellm::fusion
