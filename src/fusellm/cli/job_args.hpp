#pragma once
// What every subcommand that runs a job takes: `--job J` and any number of
// `--set section.key=value` overrides (job/job_config.hpp: each parsed with its field's own type
// and checks, errors naming the flag; the overridden value is part of the job, so to_toml() and
// the checkpoints record it).
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "fusellm/job/job_config.hpp"

namespace fusellm::cli {

struct JobArgs {
  std::string job;
  std::vector<std::string> overrides;
  std::string device;  // --device: the last override, train.device=<it>
};

// Adds --job (required unless `job_required` is false), --set and --device to `sub`.
void add_job_options(CLI::App* sub, JobArgs& args, bool job_required = true);
JobConfig load_job(const JobArgs& args);

}  // namespace fusellm::cli
