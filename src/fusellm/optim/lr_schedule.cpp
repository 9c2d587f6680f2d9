#include "fusellm/optim/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "fusellm/core/error.hpp"

namespace fusellm {

const config::EnumNames<ScheduleKind>& schedule_names() {
  static const config::EnumNames<ScheduleKind> names{
      {{ScheduleKind::Cosine, "cosine"}, {ScheduleKind::Linear, "linear"}, {ScheduleKind::Constant, "constant"}}};
  return names;
}

std::string_view schedule_name(ScheduleKind k) { return schedule_names().name(k); }

std::optional<ScheduleKind> schedule_from_name(std::string_view s) { return schedule_names().find(s); }

int64_t warmup_steps_for(int64_t total_steps, double warmup_ratio, std::optional<int64_t> warmup_steps) {
  if (warmup_steps && *warmup_steps > 0) return *warmup_steps;
  // math.ceil(num_training_steps * self.warmup_ratio): an int times a float in double precision.
  return int64_t(std::ceil(double(total_steps) * warmup_ratio));
}

double LrSchedule::factor(int64_t k) const {
  // Each branch is the Python lambda transcribed: same operations in the same order, in double.
  const double step = double(k);
  if (k < warmup_steps) {
    // Constant uses max(1.0, warmup) and the others max(1, warmup): the same value.
    return step / double(std::max<int64_t>(1, warmup_steps));
  }
  switch (kind) {
    case ScheduleKind::Constant:
      return 1.0;
    case ScheduleKind::Linear: {
      double f = std::max(0.0, double(total_steps - k) / double(std::max<int64_t>(1, total_steps - warmup_steps)));
      if (min_lr_ratio > 0) f = f * (1 - min_lr_ratio) + min_lr_ratio;
      return f;
    }
    case ScheduleKind::Cosine: {
      const double progress = double(k - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps));
      double f = 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress));
      f = f * (1 - min_lr_ratio) + min_lr_ratio;
      return std::max(0.0, f);
    }
  }
  fail("LrSchedule: unknown schedule kind {}", int(kind));
}

}  // namespace fusellm
