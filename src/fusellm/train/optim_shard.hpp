#pragma once
// One student rank's file of a ZeRO-1 checkpoint (sharded_checkpoint.hpp): AdamW's moments of its
// shard [begin, end) of the flat parameter buffer (dist/shard_layout.hpp), "optim-<r>-of-<R>.h5":
//
//   group "shard"   exp_avg, exp_avg_sq: 1-D, end - begin floats each, the moments of the flat
//                   buffer's [begin, end) in the ParamTable's layout (tensors cut where the shard cuts)
//   values          step, shard_rank, shard_ranks, shard_begin, shard_end, shard_total,
//                   optim_steps, save_id
//
// save_id is one random 64-bit id shared by every file of one save (state.h5 records it too): a
// shard file of another job or another save is refused by it, even beside a manifest rewritten
// to match the file's bytes.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "fusellm/core/state_dict.hpp"
#include "fusellm/core/tensor.hpp"

namespace fusellm {

struct OptimShard {
  std::string file;  // its name in the step directory
  int rank = 0, ranks = 1;
  int64_t begin = 0, end = 0, total = 0;
  int64_t optim_steps = 0;
  uint64_t save_id = 0;
  Tensor m, v;  // exp_avg, exp_avg_sq of [begin, end)
};

std::string optim_shard_file(int rank, int ranks);
// (rank, ranks) of a name optim_shard_file() gives; nullopt for any other name.
std::optional<std::pair<int, int>> parse_optim_shard_file(const std::string& name);

// What a rank writes: `s` without m and v, which are given by reference.
StateDictRef optim_shard_state(int64_t step, const OptimShard& s, std::span<const float> m, std::span<const float> v);
// A loaded shard file, its values checked against its name; Error naming `where` and the field.
OptimShard read_optim_shard(const std::string& file, StateDict&& s, const std::string& where);

}  // namespace fusellm
