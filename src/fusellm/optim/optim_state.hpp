#pragma once
// The optimizer and the learning-rate schedule as a checkpoint stores them: they adapt
// themselves into the state the trainer hands to the checkpoint store (core/state_dict.hpp), so
// that the store knows neither. AdamW gives its moments as named tensors (torch's
// optimizer.state_dict() "state": exp_avg, exp_avg_sq, step) and takes them back; the schedule is
// a few values.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/core/state_dict.hpp"
#include "fusellm/optim/adamw.hpp"
#include "fusellm/optim/lr_schedule.hpp"

namespace fusellm {

// AdamW's exp_avg (m) and exp_avg_sq (v) by parameter name, referencing the optimizer's memory;
// each shaped as shape_of(name) when that is given and holds as many values, else 1-D.
struct AdamWMoments {
  std::vector<TensorRef> m, v;
};
AdamWMoments adamw_moments(const AdamW& opt, const std::function<const Shape*(const std::string&)>& shape_of);

// Replaces AdamW's state with the moments m and v (the same names) and the step count; Error
// naming `where` when they do not pair up.
void restore_adamw(AdamW& opt, const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v, int64_t steps,
                   const std::string& where);

// AdamW's moments of [begin, end) of a flat buffer laid out by `table` (a ZeRO-1 shard, or the
// whole buffer) as flat runs: the state of each tensor's piece in that range, keyed by the
// tensor's name as flat_param_grads() keys it; zero where AdamW has none yet (no step taken).
void flat_moments(const AdamW& opt, const ParamTable& table, int64_t begin, int64_t end, std::span<float> m,
                  std::span<float> v);
// The inverse: AdamW's state replaced by those moments, one state per piece, and the step count.
void restore_flat_moments(AdamW& opt, const ParamTable& table, int64_t begin, int64_t end, std::span<const float> m,
                          std::span<const float> v, int64_t steps);

// The schedule as the values schedule_kind, schedule_base_lr, schedule_warmup_steps,
// schedule_total_steps, schedule_min_lr_ratio, schedule_num_cycles (in this order), and back.
void put_schedule(const LrSchedule& s, KeyValues& kv);
LrSchedule get_schedule(const KeyValues& kv, const std::string& where);

}  // namespace fusellm
