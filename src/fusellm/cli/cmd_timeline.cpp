// fusellm timeline --dir OUTPUT_DIR: the summary of an MPI job's per-rank timelines
// (dist/timeline.hpp, dist/timeline_summary.hpp): per role and phase, and per rank the shares of
// its time spent computing, waiting and communicating. --json for machines.
#include <cstdio>
#include <memory>
#include <string>

#include "fusellm/cli/commands.hpp"
#include "fusellm/dist/timeline_summary.hpp"

namespace fusellm::cli {

void add_timeline(CLI::App& app) {
  auto* sub = app.add_subcommand("timeline", "summarize the per-rank timelines of a distributed job");
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  sub->add_option("--dir", *dir, "the job's output directory (holding timeline/rank-*.jsonl)")->required();
  sub->add_flag("--json", *as_json, "print one JSON object");
  sub->callback([dir, as_json] {
    const auto events = dist::read_timeline(*dir);
    const auto summary = dist::summarize_timeline(events);
    if (*as_json)
      std::printf("%s\n", dist::timeline_summary_json(summary).c_str());
    else
      std::printf("timeline of %s: %s", dir->c_str(), dist::format_timeline_summary(summary).c_str());
  });
}

}  // namespace fusellm::cli
