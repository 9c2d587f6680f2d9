#pragma once
// The job file's [checkpoint] section: where and how often the trainer saves (ckpt/
// checkpoint_store.hpp) and whether a run resumes. Fields, defaults and checks are in
// checkpoint_config.cpp's table; jobs/README.md shows it.
#include <cstdint>
#include <string>

#include "fusellm/core/config_field.hpp"

namespace fusellm {

struct CheckpointConfig {
  std::string dir;  // resolved; default <output_dir>/checkpoints (the job fills it in)
  int64_t interval = 500;
  int64_t keep = 3;
  bool resume = true;
  bool operator==(const CheckpointConfig&) const = default;
};

const config::Section<CheckpointConfig>& checkpoint_section();

}  // namespace fusellm
