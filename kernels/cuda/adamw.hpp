#pragma once
// Host glue for cuda/adamw.cuh from C++20 code: the no-decay bounds of a flat buffer laid out by a
// ParamTable, decided as the CPU optimizer decides them (flat_param_grads: hf_trainer_decays of
// each tensor's name), and the hyperparameters from AdamWOptions. Header-only, so fusellm_cuda
// (compiled as C++17) needs neither ParamTable nor optim/adamw.hpp.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/adamw.cuh"
#include "fusellm/core/error.hpp"
#include "fusellm/core/param_table.hpp"
#include "fusellm/optim/adamw.hpp"

namespace fusellm::cuda {

inline AdamWHyper adamw_hyper(const AdamWOptions& o) { return {o.beta1, o.beta2, o.eps, o.weight_decay}; }

// AdamWRange::no_decay_bounds for [begin, end) of the buffer (end < 0: to its end): absolute
// offsets b0, e0, b1, e1, ... of the exempt tensors' pieces inside the range, adjacent ones merged.
inline std::vector<int64_t> no_decay_bounds(const ParamTable& table, int64_t begin = 0, int64_t end = -1) {
  if (end < 0) end = table.total();
  if (begin < 0 || begin > end || end > table.total())
    fail("no_decay_bounds: range [{}, {}) is outside the buffer [0, {})", begin, end, table.total());
  std::vector<int64_t> b;
  for (const ParamEntry& e : table.entries()) {
    if (hf_trainer_decays(e.name)) continue;
    const int64_t lo = std::max(begin, e.offset), hi = std::min(end, e.offset + e.size);
    if (lo >= hi) continue;
    if (!b.empty() && b.back() == lo) b.back() = hi;  // continues the previous exempt run
    else b.insert(b.end(), {lo, hi});
  }
  return b;
}

}  // namespace fusellm::cuda
