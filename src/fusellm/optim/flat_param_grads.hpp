#pragma once
// AdamW and gradient clipping over a flat parameter buffer and its gradient buffer (the layout of
// a ParamTable, core/param_table.hpp): the ParamGrad list they take, one entry per tensor, or per
// piece of a tensor inside an offset range [begin, end) of the buffers (a ZeRO-1 shard).
//
// Each entry keeps its tensor's name: weight decay is decided by it (hf_trainer_decays), and
// AdamW keys its moments by it, so a rank that always steps the same range keeps one state per
// piece. Element-wise, the AdamW step over the pieces of a split equals the step over the whole,
// bit for bit; the clipping norm is a sum of per-entry sums (grad_clip.hpp says how a data-parallel
// run reduces them).
#include <cstdint>
#include <span>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/optim/adamw.hpp"

namespace fusellm {

// end < 0: to the end of the buffers. `grads` holds the whole buffer's gradients, or only the
// range's (end - begin floats: a ZeRO-2 shard, dist/sharded_gradients.hpp). Error when a buffer
// has another length or the range is outside [0, total].
std::vector<ParamGrad> flat_param_grads(const ParamTable& table, std::span<float> params, std::span<float> grads,
                                        int64_t begin = 0, int64_t end = -1);

}  // namespace fusellm
