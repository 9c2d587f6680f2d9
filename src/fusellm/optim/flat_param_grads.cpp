#include "fusellm/optim/flat_param_grads.hpp"

#include <algorithm>

#include "fusellm/core/error.hpp"

namespace fusellm {

std::vector<ParamGrad> flat_param_grads(const ParamTable& table, std::span<float> params, std::span<float> grads,
                                        int64_t begin, int64_t end) {
  const int64_t total = table.total();
  if (end < 0) end = total;
  if (begin < 0 || begin > end || end > total)
    fail("flat_param_grads: range [{}, {}) is outside the buffer [0, {})", begin, end, total);
  if (int64_t(params.size()) != total || (int64_t(grads.size()) != total && int64_t(grads.size()) != end - begin))
    fail("flat_param_grads: buffers of {} parameters and {} gradients for a table of {} (range [{}, {}))",
         params.size(), grads.size(), total, begin, end);
  // The gradients of the whole buffer, or of the range alone (a ZeRO-2 shard: sharded_gradients.hpp).
  const int64_t grad_offset = int64_t(grads.size()) == total ? 0 : begin;
  std::vector<ParamGrad> out;
  for (const ParamEntry& e : table.entries()) {
    const int64_t b = std::max(begin, e.offset), en = std::min(end, e.offset + e.size);
    if (b >= en) continue;
    const size_t off = size_t(b), n = size_t(en - b);
    out.push_back({e.name, params.subspan(off, n), grads.subspan(off - size_t(grad_offset), n), hf_trainer_decays(e.name)});
  }
  return out;
}

}  // namespace fusellm
