#include "fusellm/fusion/topk_softmax.hpp"

namespace fusellm::fusion {

DeviceRows topk_softmax(const DeviceView2<const float>& logits, const TopkParams& params,
                        const std::string& source) {
  DeviceRows out;
  kernels::topk_softmax(ExecSpace(), logits, params, out, source);
  return out;
}

HostRows topk_softmax(std::span<const float> logits, int64_t T, int64_t V, const TopkParams& params,
                      const std::string& source) {
  return rows_to_host(
      topk_softmax(to_device(logits, T, V, "top-k logits of source '" + source + "'"), params,
                   source));
}

}  // namespace fusellm::fusion
