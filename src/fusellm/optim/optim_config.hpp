#pragma once
// The job file's [optim] section: AdamW (torch.optim.AdamW semantics) and its learning-rate
// schedule (optim/lr_schedule.hpp). The fields, their defaults (the paper's) and checks are
// in optim_config.cpp's table; jobs/README.md shows it.
#include <cstdint>
#include <optional>

#include "fusellm/core/config_field.hpp"
#include "fusellm/optim/lr_schedule.hpp"

namespace fusellm {

struct OptimConfig {
  double lr = 1e-5;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double clip = 1.0;
  ScheduleKind schedule = ScheduleKind::Cosine;
  double warmup_ratio = 0.008;
  std::optional<int64_t> warmup_steps;
  double min_lr_ratio = 0.0;
  bool operator==(const OptimConfig&) const = default;
};

const config::Section<OptimConfig>& optim_section();

}  // namespace fusellm
