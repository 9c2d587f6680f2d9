#include "fusellm/cli/job_args.hpp"

namespace fusellm::cli {

void add_job_options(CLI::App* sub, JobArgs& args, bool job_required) {
  auto* job = sub->add_option("--job", args.job, "job file (TOML)");
  if (job_required) job->required();
  sub->add_option("--set", args.overrides,
                  "section.key=value: override a setting of the job (repeatable; e.g. --set train.max_steps=10 "
                  "--set source[0].replicas=2; `fusellm config --fields` lists them)")
      ->allow_extra_args(false)
      ->needs(job);
  sub->add_option("--device", args.device, "where the models compute: auto, cpu or cuda (as --set train.device=...)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->needs(job);
}

JobConfig load_job(const JobArgs& args) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.device.empty()) overrides.push_back("train.device=" + args.device);
  return fusellm::load_job(args.job, {.overrides = overrides});
}

}  // namespace fusellm::cli
