// fusellm config --job J [--set section.key=value ...]: the job as it runs, every setting with
// defaults filled in and overrides applied (JobConfig::to_toml, what a checkpoint records).
// fusellm config --fields: the reference of every job-file field (section, type, default,
// meaning) as Markdown, from the one field table (job/job_fields.hpp); jobs/README.md holds it.
#include <cstdio>
#include <memory>

#include "fusellm/cli/commands.hpp"
#include "fusellm/cli/job_args.hpp"
#include "fusellm/core/error.hpp"
#include "fusellm/job/job_fields.hpp"

namespace fusellm::cli {

void add_config(CLI::App& app) {
  struct ConfigCli {
    JobArgs job;
    bool fields = false;
  };
  auto o = std::make_shared<ConfigCli>();
  auto* sub = app.add_subcommand("config", "print a job with every setting resolved, or the reference of the fields");
  add_job_options(sub, o->job, false);
  sub->add_flag("--fields", o->fields, "print every job-file field (section, type, default, meaning) as Markdown")
      ->excludes("--job");
  sub->callback([o] {
    if (o->fields) {
      std::fputs(job_fields_markdown().c_str(), stdout);
      return;
    }
    if (o->job.job.empty()) throw CLI::RequiredError("--job or --fields");
    std::fputs(load_job(o->job).to_toml().c_str(), stdout);
  });
}

}  // namespace fusellm::cli
