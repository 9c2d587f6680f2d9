#pragma once
// Learning-rate schedules with linear warmup, reproducing transformers 4.46's schedule functions
// exactly (optimization.py):
//   constant: _get_constant_schedule_with_warmup_lr_lambda
//   linear:   _get_linear_schedule_with_warmup_lr_lambda
//   cosine:   _get_cosine_schedule_with_warmup_lr_lambda (num_cycles 0.5; with min_lr_ratio > 0 it is
//             get_cosine_with_min_lr_schedule_with_warmup's min_lr_rate)
// and how the HF Trainer turns them into learning rates: torch's LambdaLR gives
// lr = base_lr * lambda(k), where k counts the scheduler.step() calls so far; the Trainer calls
// scheduler.step() after each optimizer.step(). So the optimizer step that takes the model from
// k to k + 1 completed steps uses lr(k), and with warmup the very first step uses lr 0, as in
// the original FuseLLM run.
//
// Beyond transformers: min_lr_ratio also applies to "linear" (factor * (1 - r) + r after warmup);
// with its default 0 both schedules are transformers' exactly.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fusellm/core/config_field.hpp"

namespace fusellm {

enum class ScheduleKind { Constant, Linear, Cosine };

// The job file's spellings ([optim].schedule), in the order its messages list them.
const config::EnumNames<ScheduleKind>& schedule_names();

std::string_view schedule_name(ScheduleKind k);                      // "constant", "linear", "cosine"
std::optional<ScheduleKind> schedule_from_name(std::string_view s);  // nullopt when unknown

// TrainingArguments.get_warmup_steps: warmup_steps when > 0, else ceil(total * warmup_ratio),
// computed in double exactly as Python does (100 * 0.07 = 7.000000000000001 -> 8 warmup steps).
int64_t warmup_steps_for(int64_t total_steps, double warmup_ratio, std::optional<int64_t> warmup_steps);

// Everything the schedule needs; a checkpoint stores it, so a resumed run continues the same curve.
struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double base_lr = 1e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr_ratio = 0.0;
  double num_cycles = 0.5;  // transformers' default: half a cosine wave, from base_lr down to 0

  // The lr_lambda after k completed optimizer steps (the multiplier of base_lr).
  double factor(int64_t k) const;
  // The learning rate of the optimizer step taken after k completed steps.
  double lr(int64_t k) const { return base_lr * factor(k); }

  bool operator==(const LrSchedule&) const = default;
};

}  // namespace fusellm
